//! The native recurrent cell step against an f64 oracle of the ONNX
//! equations, for every kernel this CPU has: each cell, hidden sizes around
//! the block widths, the first step from zero states, a second output, both
//! sweep orders, and a short sequence of steps through the `extern "C"`
//! entry point; and the transposition the batch-1 kernels regroup with.

#![allow(unsafe_code, clippy::expect_used)]

use nnc_compiler::backend::cell::{transpose, Cell, PackedCell};
use nnc_compiler::backend::gemm::MicroKernel;
use nnc_compiler::backend::native::nnc_cell_step;

/// Deterministic pseudo-random floats in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| scale * self.next()).collect()
    }
}

fn kernels() -> Vec<MicroKernel> {
    MicroKernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One cell's weights and state.
struct Case {
    cell: Cell,
    hidden: usize,
    w_hh: Vec<f32>,
    /// `gru`'s `n` gate `b_hh`.
    bias: Vec<f32>,
}

impl Case {
    fn new(cell: Cell, hidden: usize, rng: &mut Rng) -> Case {
        // Scaled so pre-activations stay in the range where the gates are
        // not saturated.
        let scale = 2.0 / (hidden as f32).sqrt();
        Case {
            cell,
            hidden,
            w_hh: rng.vec(cell.gates() * hidden * hidden, scale),
            bias: rng.vec(hidden, 1.0),
        }
    }

    /// The oracle: `(h_t, c_t)` from `p`, `h_{t-1}` and `c_{t-1}`.
    fn reference(&self, p: &[f32], h: &[f32], c: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let n = self.hidden;
        let z: Vec<f64> = (0..self.cell.gates() * n)
            .map(|row| {
                (0..n)
                    .map(|k| self.w_hh[row * n + k] as f64 * h[k] as f64)
                    .sum()
            })
            .collect();
        let gate = |g: usize, u: usize| p[g * n + u] as f64 + z[g * n + u];
        let mut h_new = vec![0.0; n];
        let mut c_new = vec![0.0; n];
        for u in 0..n {
            match self.cell {
                Cell::Rnn => h_new[u] = gate(0, u).tanh(),
                Cell::Lstm => {
                    let (i, f) = (sigmoid(gate(0, u)), sigmoid(gate(1, u)));
                    let (g, o) = (gate(2, u).tanh(), sigmoid(gate(3, u)));
                    c_new[u] = f * c[u] as f64 + i * g;
                    h_new[u] = o * c_new[u].tanh();
                }
                Cell::Gru => {
                    let (r, zg) = (sigmoid(gate(0, u)), sigmoid(gate(1, u)));
                    let product = z[2 * n + u] + self.bias[u] as f64;
                    let candidate = (p[2 * n + u] as f64 + r * product).tanh();
                    h_new[u] = (1.0 - zg) * candidate + zg * h[u] as f64;
                }
            }
        }
        (h_new, c_new)
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 2e-5 * (1.0 + w.abs()),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

#[test]
fn one_step_matches_the_oracle() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for kernel in kernels() {
        for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
            for hidden in [1, 5, 8, 16, 17, 31, 32, 33, 48, 64, 65, 100, 128] {
                let case = Case::new(cell, hidden, &mut rng);
                let packed = PackedCell::pack(kernel, cell, &case.w_hh, hidden, Some(&case.bias))
                    .expect("the weights fit");
                assert_eq!(packed.kernel(), kernel);
                for recur in [true, false] {
                    for (with_out, backward) in [(true, false), (false, true), (true, true)] {
                        let what = format!(
                            "{kernel:?} {} hidden={hidden} recur={recur} out={with_out} \
                             backward={backward}",
                            cell.name()
                        );
                        let p = rng.vec(cell.gates() * hidden, 1.5);
                        let h_old = if recur {
                            rng.vec(hidden, 1.0)
                        } else {
                            vec![0.0; hidden]
                        };
                        let c_old = rng.vec(hidden, 2.0);
                        // Without `recur` the kernel must not read `h`.
                        let mut h = if recur {
                            h_old.clone()
                        } else {
                            vec![f32::NAN; hidden]
                        };
                        let mut c = c_old.clone();
                        let mut previous = vec![f32::NAN; hidden];
                        let mut out = vec![f32::NAN; hidden + 1];
                        let out_ptr = if with_out {
                            out.as_mut_ptr()
                        } else {
                            std::ptr::null_mut()
                        };
                        // SAFETY: every buffer has the documented length.
                        unsafe {
                            packed.step(
                                p.as_ptr(),
                                h.as_mut_ptr(),
                                c.as_mut_ptr(),
                                previous.as_mut_ptr(),
                                out_ptr,
                                recur,
                                backward,
                            )
                        };
                        let (h_want, c_want) = case.reference(&p, &h_old, &c_old);
                        assert_close(&format!("{what}: h"), &h, &h_want);
                        if cell == Cell::Lstm {
                            assert_close(&format!("{what}: c"), &c, &c_want);
                        } else {
                            assert_eq!(c, c_old, "{what}: c is not the cell's");
                        }
                        if with_out {
                            assert_eq!(&out[..hidden], &h[..], "{what}: out");
                        }
                        assert!(out[hidden].is_nan(), "{what}: wrote past out");
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
            let hidden = 37;
            let case = Case::new(cell, hidden, &mut rng);
            let packed = PackedCell::pack(kernel, cell, &case.w_hh, hidden, Some(&case.bias))
                .expect("the weights fit");
            let (mut h, mut c) = (rng.vec(hidden, 1.0), rng.vec(hidden, 1.0));
            let mut previous = vec![0.0; hidden];
            for step in 0..6 {
                let p = rng.vec(cell.gates() * hidden, 1.0);
                let (h_want, c_want) = case.reference(&p, &h, &c);
                // SAFETY: every buffer has the documented length.
                unsafe {
                    nnc_cell_step(
                        &packed,
                        p.as_ptr(),
                        h.as_mut_ptr(),
                        c.as_mut_ptr(),
                        previous.as_mut_ptr(),
                        std::ptr::null_mut(),
                        1,
                        step % 2,
                    )
                };
                let what = format!("{kernel:?} {} step {step}", cell.name());
                assert_close(&format!("{what}: h"), &h, &h_want);
                if cell == Cell::Lstm {
                    assert_close(&format!("{what}: c"), &c, &c_want);
                }
            }
        }
    }
}

#[test]
fn short_weights_are_rejected() {
    let w = vec![0.0; 4 * 3 * 3 - 1];
    assert!(PackedCell::pack(MicroKernel::Portable, Cell::Lstm, &w, 3, None).is_none());
    let b = vec![0.0; 2];
    let w = vec![0.0; 3 * 3 * 3];
    assert!(PackedCell::pack(MicroKernel::Portable, Cell::Gru, &w, 3, Some(&b)).is_none());
}

#[test]
fn transpose_matches_the_definition() {
    let mut rng = Rng(7);
    for rows in [1, 3, 8, 9, 16, 31, 32, 40] {
        for cols in [1, 2, 7, 8, 15, 24, 64, 65] {
            let from = rng.vec(rows * cols, 1.0);
            let mut to = vec![f32::NAN; rows * cols + 1];
            // SAFETY: `from` holds `rows * cols` floats, `to` more.
            unsafe { transpose(from.as_ptr(), to.as_mut_ptr(), rows, cols) };
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        to[c * rows + r],
                        from[r * cols + c],
                        "{rows}x{cols} at ({r}, {c})"
                    );
                }
            }
            assert!(
                to[rows * cols].is_nan(),
                "{rows}x{cols}: wrote past the end"
            );
        }
    }
}
