//! The native recurrent cell steps against an f64 oracle of the ONNX
//! equations, for every kernel this CPU has: each cell over whole
//! sequences (forward and reverse, from zero or given states, one chunk of
//! input projections or several with a partial last one), hidden sizes and
//! input features around the vector and block widths, an output sequence
//! written by some steps, and the `extern "C"` entry point.

#![allow(unsafe_code, clippy::expect_used)]

use nnc_runtime::kernels::cell::{Cell, CellWeights, PackedCell, Sequence};
use nnc_runtime::kernels::gemm::MicroKernel;
use nnc_runtime::kernels::tasks::nnc_cell_step;

mod common;
use common::{kernels, Rng};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One layer and direction's weights and its sequence.
struct Case {
    cell: Cell,
    hidden: usize,
    features: usize,
    sequence: Sequence,
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// `gru`'s `n` gate `b_hh`.
    recurrent_bias: Vec<f32>,
}

impl Case {
    fn new(cell: Cell, hidden: usize, features: usize, sequence: Sequence, rng: &mut Rng) -> Case {
        // Scaled so pre-activations stay in the range where the gates are
        // not saturated.
        let rows = cell.gates() * hidden;
        Case {
            cell,
            hidden,
            features,
            sequence,
            w_ih: rng.scaled(rows * features, 2.0 / (features as f32).sqrt()),
            w_hh: rng.scaled(rows * hidden, 2.0 / (hidden as f32).sqrt()),
            bias: (hidden % 2 == 1).then(|| rng.scaled(rows, 0.5)),
            recurrent_bias: rng.scaled(hidden, 0.5),
        }
    }

    fn pack(&self, kernel: MicroKernel) -> PackedCell {
        let weights = CellWeights {
            input: &self.w_ih,
            recurrent: &self.w_hh,
            bias: self.bias.as_deref(),
            recurrent_bias: Some(&self.recurrent_bias),
        };
        PackedCell::pack(
            kernel,
            self.cell,
            self.hidden,
            self.features,
            self.sequence,
            weights,
        )
        .expect("the weights fit")
    }

    /// The oracle of one step at time `t`: `(h_t, c_t)` from `x_t`,
    /// `h_{t-1}` and `c_{t-1}`.
    fn reference(&self, x: &[f32], h: &[f64], c: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (n, f) = (self.hidden, self.features);
        let rows = self.cell.gates() * n;
        let dot = |w: &[f32], v: &mut dyn Iterator<Item = f64>| -> f64 {
            w.iter().zip(v).map(|(&w, v)| w as f64 * v).sum()
        };
        let p: Vec<f64> = (0..rows)
            .map(|r| {
                let b = self.bias.as_ref().map_or(0.0, |b| b[r] as f64);
                b + dot(
                    &self.w_ih[r * f..(r + 1) * f],
                    &mut x.iter().map(|&v| v as f64),
                )
            })
            .collect();
        let z: Vec<f64> = (0..rows)
            .map(|r| dot(&self.w_hh[r * n..(r + 1) * n], &mut h.iter().copied()))
            .collect();
        let gate = |g: usize, u: usize| p[g * n + u] + z[g * n + u];
        let mut h_new = vec![0.0; n];
        let mut c_new = vec![0.0; n];
        for u in 0..n {
            match self.cell {
                Cell::Rnn => h_new[u] = gate(0, u).tanh(),
                Cell::Lstm => {
                    let (i, f) = (sigmoid(gate(0, u)), sigmoid(gate(1, u)));
                    let (g, o) = (gate(2, u).tanh(), sigmoid(gate(3, u)));
                    c_new[u] = f * c[u] + i * g;
                    h_new[u] = o * c_new[u].tanh();
                }
                Cell::Gru => {
                    let (r, zg) = (sigmoid(gate(0, u)), sigmoid(gate(1, u)));
                    let product = z[2 * n + u] + self.recurrent_bias[u] as f64;
                    let candidate = (p[2 * n + u] + r * product).tanh();
                    h_new[u] = (1.0 - zg) * candidate + zg * h[u];
                }
            }
        }
        (h_new, c_new)
    }

    /// Runs every step with `kernel` (through the `extern "C"` entry point
    /// when `entry`) and compares each step's `h` (and `c`) and the output
    /// sequence with the oracle.
    fn check(&self, kernel: MicroKernel, entry: bool, rng: &mut Rng) {
        let packed = self.pack(kernel);
        assert_eq!(packed.kernel(), kernel);
        let (n, seq) = (self.hidden, self.sequence.steps);
        let what = format!(
            "{kernel:?} {} hidden={n} features={} {:?}",
            self.cell.name(),
            self.features,
            self.sequence
        );
        let x = rng.scaled(seq * self.features, 1.0);
        // Everything the steps must write before they read starts as NaN.
        let mut p = vec![f32::NAN; seq * self.cell.gates() * n];
        let (mut h, mut c) = (rng.scaled(n, 1.0), rng.scaled(n, 1.0));
        if self.sequence.zero_start {
            h.fill(f32::NAN);
            c.fill(0.0);
        }
        let mut h_want: Vec<f64> = if self.sequence.zero_start {
            vec![0.0; n]
        } else {
            h.iter().map(|&v| v as f64).collect()
        };
        let mut c_want: Vec<f64> = c.iter().map(|&v| v as f64).collect();
        let mut previous = vec![f32::NAN; n];
        let mut out = vec![f32::NAN; seq * n + 1];
        for i in 0..seq {
            let t = if self.sequence.reverse {
                seq - 1 - i
            } else {
                i
            };
            let (xp, pp, hp, cp) = (x.as_ptr(), p.as_mut_ptr(), h.as_mut_ptr(), c.as_mut_ptr());
            // Odd steps also write the output sequence.
            let out_t = if i % 2 == 1 {
                out[t * n..].as_mut_ptr()
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: every buffer has the documented length.
            unsafe {
                if entry {
                    nnc_cell_step(&packed, i, xp, pp, hp, cp, previous.as_mut_ptr(), out_t)
                } else {
                    packed.step(i, xp, pp, hp, cp, previous.as_mut_ptr(), out_t)
                }
            };
            (h_want, c_want) = self.reference(
                &x[t * self.features..(t + 1) * self.features],
                &h_want,
                &c_want,
            );
            assert_close(&format!("{what}: h at step {i}"), &h, &h_want);
            if self.cell == Cell::Lstm {
                assert_close(&format!("{what}: c at step {i}"), &c, &c_want);
            }
            if i % 2 == 1 {
                assert_eq!(&out[t * n..(t + 1) * n], &h[..], "{what}: out at step {i}");
            } else {
                assert!(
                    out[t * n..(t + 1) * n].iter().all(|v| v.is_nan()),
                    "{what}: out at step {i}"
                );
            }
        }
        assert!(out[seq * n].is_nan(), "{what}: wrote past out");
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 5e-5 * (1.0 + w.abs()),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

#[test]
fn sequences_match_the_oracle() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for kernel in kernels() {
        for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
            for hidden in [1, 5, 16, 17, 33, 64, 65] {
                for features in [3, 40] {
                    for steps in [1, 9, 19] {
                        for (reverse, zero_start) in [(false, true), (true, false), (true, true)] {
                            let sequence = Sequence {
                                steps,
                                reverse,
                                zero_start,
                            };
                            Case::new(cell, hidden, features, sequence, &mut rng)
                                .check(kernel, false, &mut rng);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn steps_through_the_entry_point_match_the_oracle() {
    let mut rng = Rng(42);
    for kernel in kernels() {
        for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
            let sequence = Sequence {
                steps: 26,
                reverse: false,
                zero_start: false,
            };
            Case::new(cell, 37, 20, sequence, &mut rng).check(kernel, true, &mut rng);
        }
    }
}

#[test]
fn short_weights_are_rejected() {
    let sequence = Sequence {
        steps: 2,
        reverse: false,
        zero_start: true,
    };
    let (w_ih, w_hh) = (vec![0.0; 4 * 3 * 2], vec![0.0; 4 * 3 * 3]);
    let weights = CellWeights {
        input: &w_ih,
        recurrent: &w_hh[1..],
        bias: None,
        recurrent_bias: None,
    };
    let pack = |w| PackedCell::pack(MicroKernel::Portable, Cell::Lstm, 3, 2, sequence, w);
    assert!(pack(weights).is_none());
    assert!(pack(CellWeights {
        input: &w_ih[1..],
        recurrent: &w_hh,
        ..weights
    })
    .is_none());
    assert!(pack(CellWeights {
        recurrent: &w_hh,
        bias: Some(&[0.0; 11]),
        ..weights
    })
    .is_none());
    assert!(pack(CellWeights {
        recurrent: &w_hh,
        ..weights
    })
    .is_some());
}
