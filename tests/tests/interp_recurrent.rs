//! The reference interpreter's `rnn` and `lstm`: two time steps checked
//! against the cell equations written out in the test, a two-layer network
//! against two chained one-layer runs, `batch_first` against a transposed
//! time-major run, batch independence, and operand errors.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{RecurrentAttrs, RecurrentOutput, RnnDirection};
use nnc_runtime::Tensor;
use nnc_tests::{assert_close, random, tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn attrs(hidden: usize, layers: usize, bias: bool, batch_first: bool) -> RecurrentAttrs {
    RecurrentAttrs {
        linear_before_reset: true,
        hidden,
        layers,
        bias,
        batch_first,
        direction: RnnDirection::Forward,
        initial_state: false,
        lengths: Vec::new(),
        output: RecurrentOutput::Sequence,
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

// ------------------------------------------------------------- rnn by hand

#[test]
fn rnn_two_steps_by_hand() {
    // input 2, hidden 2, batch 1, seq 2.
    let w_ih: [[f64; 2]; 2] = [[0.5, -0.25], [0.1, 0.2]];
    let w_hh: [[f64; 2]; 2] = [[0.3, 0.0], [-0.4, 0.6]];
    let b_ih: [f64; 2] = [0.1, -0.1];
    let b_hh: [f64; 2] = [0.05, 0.0];
    let x1: [f64; 2] = [1.0, 2.0];
    let x2: [f64; 2] = [-1.0, 0.5];

    // h1 = tanh(W_ih x1 + b_ih + W_hh h0 + b_hh) with h0 = 0.
    let h1: [f64; 2] = std::array::from_fn(|j| {
        (w_ih[j][0] * x1[0] + w_ih[j][1] * x1[1] + b_ih[j] + b_hh[j]).tanh()
    });
    // h2 = tanh(W_ih x2 + b_ih + W_hh h1 + b_hh).
    let h2: [f64; 2] = std::array::from_fn(|j| {
        (w_ih[j][0] * x2[0]
            + w_ih[j][1] * x2[1]
            + b_ih[j]
            + w_hh[j][0] * h1[0]
            + w_hh[j][1] * h1[1]
            + b_hh[j])
            .tanh()
    });

    let flat = |m: [[f64; 2]; 2]| m.iter().flatten().map(|&v| v as f32).collect::<Vec<f32>>();
    let x = tensor(&[2, 1, 2], &[1.0, 2.0, -1.0, 0.5]);
    let w_ih_t = tensor(&[2, 2], &flat(w_ih));
    let w_hh_t = tensor(&[2, 2], &flat(w_hh));
    let b_ih_t = tensor(&[2], &b_ih.map(|v| v as f32));
    let b_hh_t = tensor(&[2], &b_hh.map(|v| v as f32));
    let y = interp::rnn(
        &x,
        &[&w_ih_t, &w_hh_t, &b_ih_t, &b_hh_t],
        &attrs(2, 1, true, false),
    )
    .unwrap();
    let expected = [h1[0], h1[1], h2[0], h2[1]].map(|v| v as f32);
    assert_close(&y, &[2, 1, 2], &expected, 1e-6);

    // Without biases both terms disappear.
    let h1: [f64; 2] = std::array::from_fn(|j| (w_ih[j][0] * x1[0] + w_ih[j][1] * x1[1]).tanh());
    let h2: [f64; 2] = std::array::from_fn(|j| {
        (w_ih[j][0] * x2[0] + w_ih[j][1] * x2[1] + w_hh[j][0] * h1[0] + w_hh[j][1] * h1[1]).tanh()
    });
    let y = interp::rnn(&x, &[&w_ih_t, &w_hh_t], &attrs(2, 1, false, false)).unwrap();
    let expected = [h1[0], h1[1], h2[0], h2[1]].map(|v| v as f32);
    assert_close(&y, &[2, 1, 2], &expected, 1e-6);
}

// ------------------------------------------------------------- lstm by hand

#[test]
fn lstm_two_steps_by_hand() {
    // input 2, hidden 2, batch 1, seq 2; rows 0-1 gate i, 2-3 f, 4-5 g, 6-7 o.
    let w_ih: [[f64; 2]; 8] = [
        [0.5, -0.3],
        [0.2, 0.8],
        [-0.6, 0.1],
        [0.9, -0.2],
        [0.7, 0.4],
        [-0.5, 0.3],
        [0.1, -0.9],
        [0.6, 0.2],
    ];
    let w_hh: [[f64; 2]; 8] = [
        [0.3, -0.1],
        [0.05, 0.2],
        [-0.4, 0.6],
        [0.1, 0.1],
        [0.2, 0.9],
        [-0.3, -0.7],
        [0.5, 0.05],
        [-0.2, 0.4],
    ];
    let b_ih = [0.1, -0.2, 0.3, 0.0, -0.1, 0.2, 0.05, -0.05];
    let b_hh = [0.0, 0.1, -0.3, 0.2, 0.15, 0.0, 0.1, 0.2];
    let xs = [[1.0, -1.0], [0.5, 2.0]];

    // One step of the cell, written out per gate.
    let step = |x: [f64; 2], h: [f64; 2], c: [f64; 2]| -> ([f64; 2], [f64; 2]) {
        let pre = |r: usize| {
            w_ih[r][0] * x[0]
                + w_ih[r][1] * x[1]
                + b_ih[r]
                + w_hh[r][0] * h[0]
                + w_hh[r][1] * h[1]
                + b_hh[r]
        };
        let mut h_new = [0.0; 2];
        let mut c_new = [0.0; 2];
        for j in 0..2 {
            let i = sigmoid(pre(j));
            let f = sigmoid(pre(2 + j));
            let g = pre(4 + j).tanh();
            let o = sigmoid(pre(6 + j));
            c_new[j] = f * c[j] + i * g;
            h_new[j] = o * c_new[j].tanh();
        }
        (h_new, c_new)
    };
    let (h1, c1) = step(xs[0], [0.0; 2], [0.0; 2]);
    let (h2, _) = step(xs[1], h1, c1);

    let flat = |m: &[[f64; 2]]| m.iter().flatten().map(|&v| v as f32).collect::<Vec<f32>>();
    let x = tensor(&[2, 1, 2], &flat(&xs));
    let params = [
        tensor(&[8, 2], &flat(&w_ih)),
        tensor(&[8, 2], &flat(&w_hh)),
        tensor(&[8], &b_ih.map(|v| v as f32)),
        tensor(&[8], &b_hh.map(|v| v as f32)),
    ];
    let refs: Vec<&Tensor> = params.iter().collect();
    let y = interp::lstm(&x, &refs, &attrs(2, 1, true, false)).unwrap();
    let expected = [h1[0], h1[1], h2[0], h2[1]].map(|v| v as f32);
    assert_close(&y, &[2, 1, 2], &expected, 1e-6);
}

// ------------------------------------------------------------- structure

type Kernel = fn(&Tensor, &[&Tensor], &RecurrentAttrs) -> Result<Tensor, InterpError>;

/// Parameters of `layers` layers, `gates` row blocks each.
fn params(
    gates: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    bias: bool,
    rng: &mut ChaCha8Rng,
) -> Vec<Tensor> {
    let mut out = Vec::new();
    for l in 0..layers {
        let in_l = if l == 0 { input } else { hidden };
        out.push(random(&[gates * hidden, in_l], rng));
        out.push(random(&[gates * hidden, hidden], rng));
        if bias {
            out.push(random(&[gates * hidden], rng));
            out.push(random(&[gates * hidden], rng));
        }
    }
    out
}

/// Swaps the first two dims of a rank-3 tensor.
fn swap01(t: &Tensor) -> Tensor {
    let (a, b, c) = (t.shape()[0], t.shape()[1], t.shape()[2]);
    let mut data = Vec::with_capacity(t.len());
    for j in 0..b {
        for i in 0..a {
            data.extend_from_slice(&t.data()[(i * b + j) * c..][..c]);
        }
    }
    Tensor::new(vec![b, a, c], data).unwrap()
}

fn kernels() -> [(&'static str, usize, Kernel); 2] {
    [("rnn", 1, interp::rnn), ("lstm", 4, interp::lstm)]
}

#[test]
fn two_layers_equal_two_chained_single_layers() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let (seq, batch, input, hidden) = (5, 2, 4, 3);
    for (name, gates, kernel) in kernels() {
        for bias in [true, false] {
            let x = random(&[seq, batch, input], &mut rng);
            let p = params(gates, input, hidden, 2, bias, &mut rng);
            let refs: Vec<&Tensor> = p.iter().collect();
            let both = kernel(&x, &refs, &attrs(hidden, 2, bias, false)).unwrap();
            let per_layer = refs.len() / 2;
            let first = kernel(&x, &refs[..per_layer], &attrs(hidden, 1, bias, false)).unwrap();
            let second =
                kernel(&first, &refs[per_layer..], &attrs(hidden, 1, bias, false)).unwrap();
            assert_close(&both, second.shape(), second.data(), 1e-6);
            // The first layer alone differs, so the check has teeth.
            assert_ne!(first.data(), both.data(), "{name}");
        }
    }
}

#[test]
fn batch_first_is_the_transposed_time_major_run() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (seq, batch, input, hidden) = (4, 3, 2, 5);
    for (_, gates, kernel) in kernels() {
        let x = random(&[seq, batch, input], &mut rng);
        let p = params(gates, input, hidden, 2, true, &mut rng);
        let refs: Vec<&Tensor> = p.iter().collect();
        let time_major = kernel(&x, &refs, &attrs(hidden, 2, true, false)).unwrap();
        let batch_major = kernel(&swap01(&x), &refs, &attrs(hidden, 2, true, true)).unwrap();
        assert_eq!(batch_major.shape(), &[batch, seq, hidden]);
        let expected = swap01(&time_major);
        assert_close(&batch_major, expected.shape(), expected.data(), 1e-6);
    }
}

#[test]
fn samples_in_a_batch_are_independent() {
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let (seq, batch, input, hidden) = (6, 3, 3, 4);
    for (_, gates, kernel) in kernels() {
        let x = random(&[seq, batch, input], &mut rng);
        let p = params(gates, input, hidden, 1, true, &mut rng);
        let refs: Vec<&Tensor> = p.iter().collect();
        let a = attrs(hidden, 1, true, false);
        let all = swap01(&kernel(&x, &refs, &a).unwrap());
        let xb = swap01(&x);
        for b in 0..batch {
            let one = Tensor::new(
                vec![seq, 1, input],
                xb.data()[b * seq * input..][..seq * input].to_vec(),
            )
            .unwrap();
            let y = kernel(&one, &refs, &a).unwrap();
            assert_close(
                &y,
                &[seq, 1, hidden],
                &all.data()[b * seq * hidden..][..seq * hidden],
                1e-6,
            );
        }
    }
}

#[test]
fn later_steps_depend_on_earlier_inputs() {
    // Changing x_0 must change h_2 (the recurrence carries state);
    // changing x_2 must change h_2 but leave h_0 and h_1 alone.
    let mut rng = ChaCha8Rng::seed_from_u64(44);
    for (_, gates, kernel) in kernels() {
        let x = random(&[3, 1, 2], &mut rng);
        let p = params(gates, 2, 2, 1, true, &mut rng);
        let refs: Vec<&Tensor> = p.iter().collect();
        let a = attrs(2, 1, true, false);
        let base = kernel(&x, &refs, &a).unwrap();
        let mut first = x.clone();
        first.data_mut()[0] += 0.5;
        let y = kernel(&first, &refs, &a).unwrap();
        assert_ne!(y.data()[4..6], base.data()[4..6]);
        let mut last = x.clone();
        last.data_mut()[4] += 0.5;
        let y = kernel(&last, &refs, &a).unwrap();
        assert_eq!(y.data()[..4], base.data()[..4]);
        assert_ne!(y.data()[4..6], base.data()[4..6]);
    }
}

// ------------------------------------------------------------- errors

#[test]
fn recurrent_ops_reject_bad_operands() {
    let mut rng = ChaCha8Rng::seed_from_u64(45);
    for (_, gates, kernel) in kernels() {
        let x = random(&[3, 1, 2], &mut rng);
        let p = params(gates, 2, 4, 2, true, &mut rng);
        let refs: Vec<&Tensor> = p.iter().collect();
        assert!(kernel(&x, &refs, &attrs(4, 2, true, false)).is_ok());
        let is_operand_error =
            |r: Result<Tensor, InterpError>| matches!(r, Err(InterpError::Operands { .. }));
        // Too few parameters for two layers, or for biases.
        assert!(is_operand_error(kernel(
            &x,
            &refs[..4],
            &attrs(4, 2, true, false)
        )));
        assert!(is_operand_error(kernel(
            &x,
            &refs,
            &attrs(4, 2, false, false)
        )));
        // Wrong hidden size.
        assert!(is_operand_error(kernel(
            &x,
            &refs,
            &attrs(3, 2, true, false)
        )));
        // Input features that do not match weight_ih_l0.
        let x3 = random(&[3, 1, 3], &mut rng);
        let err = kernel(&x3, &refs, &attrs(4, 2, true, false)).unwrap_err();
        assert!(err.to_string().contains("weight_ih_l0"), "{err}");
        // Rank-2 input.
        let x2 = random(&[3, 2], &mut rng);
        assert!(is_operand_error(kernel(
            &x2,
            &refs,
            &attrs(4, 2, true, false)
        )));
        // Zero layers.
        assert!(is_operand_error(kernel(&x, &[], &attrs(4, 0, true, false))));
    }
}

// ------------------------------------------------------------- gru, reset first

/// One step of a one-unit `gru` from `h0 = 0.5` with only `W_hn = 2` and
/// `b_hn = 1` non-zero, so `r = z = 1/2`: with `linear_before_reset` the
/// reset gate scales `W_hn h + b_hn` (`n = tanh(0.5 * 2)`), without it `h`
/// before the product (`n = tanh(2 * 0.25 + 1)`).
#[test]
fn gru_reset_gate_before_or_after_the_product() {
    let x = tensor(&[1, 1, 1], &[1.0]);
    let h0 = tensor(&[1, 1, 1], &[0.5]);
    let w_ih = tensor(&[3, 1], &[0.0, 0.0, 0.0]);
    let w_hh = tensor(&[3, 1], &[0.0, 0.0, 2.0]);
    let b_ih = tensor(&[3], &[0.0, 0.0, 0.0]);
    let b_hh = tensor(&[3], &[0.0, 0.0, 1.0]);
    let params = [&h0, &w_ih, &w_hh, &b_ih, &b_hh];
    for (linear_before_reset, n) in [(true, 1.0f64.tanh()), (false, 1.5f64.tanh())] {
        let a = RecurrentAttrs {
            initial_state: true,
            linear_before_reset,
            ..attrs(1, 1, true, false)
        };
        let y = interp::gru(&x, &params, &a).expect("gru");
        let expected = 0.5 * n + 0.5 * 0.5;
        assert_close(&y, &[1, 1, 1], &[expected as f32], 1e-6);
    }
}
