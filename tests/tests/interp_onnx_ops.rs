//! The reference interpreter on the ops added for ONNX import: `sub`, `div`,
//! `matmul`, `pad` and `gru` by hand; the recurrent ops' `direction` and
//! initial states against the equations and against forward runs.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    BinaryOp, PadAttrs, PadMode, RecurrentAttrs, RecurrentOutput, RnnDirection,
};
use nnc_runtime::Tensor;
use nnc_tests::{assert_close, assert_near, random, tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn attrs(hidden: usize, direction: RnnDirection, initial_state: bool) -> RecurrentAttrs {
    RecurrentAttrs {
        linear_before_reset: true,
        hidden,
        layers: 1,
        bias: true,
        batch_first: false,
        direction,
        initial_state,
        lengths: Vec::new(),
        output: RecurrentOutput::Sequence,
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

#[test]
fn sub_and_div_broadcast() {
    let a = tensor(&[2, 1], &[1.0, 6.0]);
    let b = tensor(&[3], &[1.0, 2.0, 4.0]);
    let d = interp::binary(BinaryOp::Sub, &a, &b).unwrap();
    assert_near(&d, &[2, 3], &[0.0, -1.0, -3.0, 5.0, 4.0, 2.0]);
    let q = interp::binary(BinaryOp::Div, &a, &b).unwrap();
    assert_near(&q, &[2, 3], &[1.0, 0.5, 0.25, 6.0, 3.0, 1.5]);
    assert!(interp::binary(BinaryOp::Sub, &tensor(&[2], &[1.0, 2.0]), &b).is_err());
}

#[test]
fn matmul_by_hand_with_broadcast_batch() {
    // a: two 2x3 matrices; b: one 3x2 matrix shared by both.
    let a = tensor(
        &[2, 2, 3],
        &[1., 2., 3., 4., 5., 6., -1., 0., 1., 2., 0., -2.],
    );
    let b = tensor(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    let y = interp::matmul(&a, &b).unwrap();
    // Row r of a times b = [r0 + r2, r1 + r2].
    assert_near(&y, &[2, 2, 2], &[4., 5., 10., 11., 0., 1., 0., -2.]);
    // Size-1 batch dims broadcast on either side.
    let a = tensor(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
    let b = tensor(&[3, 1, 2, 1], &[1., 1., 2., 0., 0., 3.]);
    let y = interp::matmul(&a, &b).unwrap();
    // Batch [1, 2] with [3, 1] is [3, 2]: entry (i, j) is a_j . b_i.
    assert_near(&y, &[3, 2, 1, 1], &[3., 7., 2., 6., 6., 12.]);
    let bad = interp::matmul(&tensor(&[2, 3], &[0.; 6]), &tensor(&[2, 3], &[0.; 6]));
    assert!(matches!(bad, Err(InterpError::Operands { .. })));
}

#[test]
fn pad_modes_by_hand() {
    let x = tensor(&[1, 3], &[1., 2., 3.]);
    let pad = |mode, value| PadAttrs {
        pads: vec![0, 2, 0, 1],
        mode,
        value,
    };
    let c = interp::pad(&x, &pad(PadMode::Constant, 9.0)).unwrap();
    assert_near(&c, &[1, 6], &[9., 9., 1., 2., 3., 9.]);
    let r = interp::pad(&x, &pad(PadMode::Reflect, 0.0)).unwrap();
    assert_near(&r, &[1, 6], &[3., 2., 1., 2., 3., 2.]);
    let e = interp::pad(&x, &pad(PadMode::Edge, 0.0)).unwrap();
    assert_near(&e, &[1, 6], &[1., 1., 1., 2., 3., 3.]);
    // Two dims at once: rows then columns.
    let x = tensor(&[2, 2], &[1., 2., 3., 4.]);
    let a = PadAttrs {
        pads: vec![1, 0, 0, 1],
        mode: PadMode::Edge,
        value: 0.0,
    };
    let y = interp::pad(&x, &a).unwrap();
    assert_near(&y, &[3, 3], &[1., 2., 2., 1., 2., 2., 3., 4., 4.]);
    // Reflecting by the whole dim would repeat the edge.
    let too_far = PadAttrs {
        pads: vec![0, 3, 0, 0],
        mode: PadMode::Reflect,
        value: 0.0,
    };
    assert!(interp::pad(&tensor(&[1, 3], &[1., 2., 3.]), &too_far).is_err());
}

#[test]
fn gru_one_step_by_hand_with_initial_state() {
    // input 1, hidden 1, batch 1, seq 1; rows r, z, n.
    let (w_ih, w_hh) = ([0.5, -0.4, 0.3], [0.2, 0.7, -0.6]);
    let (b_ih, b_hh) = ([0.1, 0.0, -0.2], [0.05, 0.1, 0.3]);
    let (x, h0) = (0.8, -0.5);
    let r = sigmoid(w_ih[0] * x + b_ih[0] + w_hh[0] * h0 + b_hh[0]);
    let z = sigmoid(w_ih[1] * x + b_ih[1] + w_hh[1] * h0 + b_hh[1]);
    let n = (w_ih[2] * x + b_ih[2] + r * (w_hh[2] * h0 + b_hh[2])).tanh();
    let h1 = (1.0 - z) * n + z * h0;
    let t = |v: &[f64]| tensor(&[v.len()], &v.iter().map(|&p| p as f32).collect::<Vec<_>>());
    let y = interp::gru(
        &tensor(&[1, 1, 1], &[x as f32]),
        &[
            &tensor(&[1, 1, 1], &[h0 as f32]),
            &t(&w_ih).reshaped(vec![3, 1]).unwrap(),
            &t(&w_hh).reshaped(vec![3, 1]).unwrap(),
            &t(&b_ih),
            &t(&b_hh),
        ],
        &attrs(1, RnnDirection::Forward, true),
    )
    .unwrap();
    assert_close(&y, &[1, 1, 1], &[h1 as f32], 1e-6);
}

/// Weights for one direction of a one-layer op with `gates` gates.
fn weights(gates: usize, hidden: usize, input: usize, rng: &mut ChaCha8Rng) -> Vec<Tensor> {
    vec![
        random(&[gates * hidden, input], rng),
        random(&[gates * hidden, hidden], rng),
        random(&[gates * hidden], rng),
        random(&[gates * hidden], rng),
    ]
}

fn refs(w: &[Tensor]) -> Vec<&Tensor> {
    w.iter().collect()
}

/// `x` with its time steps (dim 0) in reverse order.
fn reversed(x: &Tensor) -> Tensor {
    let step: usize = x.shape()[1..].iter().product();
    let data: Vec<f32> = x.data().chunks(step).rev().flatten().copied().collect();
    tensor(x.shape(), &data)
}

type Kernel = fn(&Tensor, &[&Tensor], &RecurrentAttrs) -> Result<Tensor, InterpError>;

#[test]
fn reverse_and_bidirectional_are_forward_runs_on_the_reversed_sequence() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (seq, batch, input, hidden) = (5, 2, 3, 4);
    let kernels: [(Kernel, usize); 3] = [(interp::rnn, 1), (interp::lstm, 4), (interp::gru, 3)];
    for (kernel, gates) in kernels {
        let x = random(&[seq, batch, input], &mut rng);
        let fwd = weights(gates, hidden, input, &mut rng);
        let bwd = weights(gates, hidden, input, &mut rng);

        let forward = kernel(
            &x,
            &refs(&fwd),
            &attrs(hidden, RnnDirection::Forward, false),
        )
        .unwrap();
        let reverse = kernel(
            &x,
            &refs(&bwd),
            &attrs(hidden, RnnDirection::Reverse, false),
        )
        .unwrap();
        // Reverse = forward over the reversed sequence, read back in time order.
        let expected = reversed(
            &kernel(
                &reversed(&x),
                &refs(&bwd),
                &attrs(hidden, RnnDirection::Forward, false),
            )
            .unwrap(),
        );
        assert_close(&reverse, &[seq, batch, hidden], expected.data(), 1e-6);

        // Bidirectional = both, side by side along features.
        let both: Vec<&Tensor> = fwd.iter().chain(&bwd).collect();
        let bi = kernel(
            &x,
            &both,
            &attrs(hidden, RnnDirection::Bidirectional, false),
        )
        .unwrap();
        let mut expected = Vec::new();
        for (f, r) in forward
            .data()
            .chunks(hidden)
            .zip(reverse.data().chunks(hidden))
        {
            expected.extend_from_slice(f);
            expected.extend_from_slice(r);
        }
        assert_close(&bi, &[seq, batch, 2 * hidden], &expected, 1e-6);
    }
}

#[test]
fn initial_states_continue_a_split_sequence() {
    // Running steps 0..2, then steps 2..5 from the state after step 1, gives
    // the same outputs as running 0..5 at once (for rnn and gru the state
    // is the last output; lstm's cell state is not an output, so it is
    // checked through its equations in the hand-written suite instead).
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (batch, input, hidden) = (2, 3, 4);
    let kernels: [(Kernel, usize); 2] = [(interp::rnn, 1), (interp::gru, 3)];
    for (kernel, gates) in kernels {
        let x = random(&[5, batch, input], &mut rng);
        let w = weights(gates, hidden, input, &mut rng);
        let whole = kernel(
            &x,
            &w.iter().collect::<Vec<_>>(),
            &attrs(hidden, RnnDirection::Forward, false),
        )
        .unwrap();
        let step = batch * input;
        let head = tensor(&[2, batch, input], &x.data()[..2 * step]);
        let tail = tensor(&[3, batch, input], &x.data()[2 * step..]);
        let first = kernel(
            &head,
            &w.iter().collect::<Vec<_>>(),
            &attrs(hidden, RnnDirection::Forward, false),
        )
        .unwrap();
        let h = tensor(&[1, batch, hidden], &first.data()[batch * hidden..]);
        let mut operands = vec![&h];
        operands.extend(w.iter());
        let second = kernel(
            &tail,
            &operands,
            &attrs(hidden, RnnDirection::Forward, true),
        )
        .unwrap();
        assert_close(
            &second,
            &[3, batch, hidden],
            &whole.data()[2 * batch * hidden..],
            1e-6,
        );
    }
}

#[test]
fn mis_shaped_initial_states_are_operand_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = random(&[3, 2, 3], &mut rng);
    let w = weights(4, 4, 3, &mut rng);
    let h = random(&[1, 2, 5], &mut rng);
    let mut operands = vec![&h, &h];
    operands.extend(w.iter());
    let r = interp::lstm(&x, &operands, &attrs(4, RnnDirection::Forward, true));
    assert!(matches!(r, Err(InterpError::Operands { .. })), "{r:?}");
}

fn with(a: RecurrentAttrs, lengths: &[usize], output: RecurrentOutput) -> RecurrentAttrs {
    RecurrentAttrs {
        lengths: lengths.to_vec(),
        output,
        ..a
    }
}

/// Sample `b` of a `[seq, batch, features]` tensor, its first `steps` steps.
fn sample(x: &Tensor, b: usize, steps: usize) -> Tensor {
    let (batch, f) = (x.shape()[1], x.shape()[2]);
    let data: Vec<f32> = (0..steps)
        .flat_map(|t| x.data()[(t * batch + b) * f..][..f].to_vec())
        .collect();
    tensor(&[steps, 1, f], &data)
}

#[test]
fn shorter_sequences_run_alone_and_pad_with_zeros() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (seq, batch, input, hidden) = (5, 3, 2, 3);
    let lengths = [5, 2, 4];
    let kernels: [(Kernel, usize); 3] = [(interp::rnn, 1), (interp::lstm, 4), (interp::gru, 3)];
    for (kernel, gates) in kernels {
        for direction in [
            RnnDirection::Forward,
            RnnDirection::Reverse,
            RnnDirection::Bidirectional,
        ] {
            let x = random(&[seq, batch, input], &mut rng);
            let w: Vec<Tensor> = (0..direction.count())
                .flat_map(|_| weights(gates, hidden, input, &mut rng))
                .collect();
            let base = attrs(hidden, direction, false);
            let all = kernel(
                &x,
                &refs(&w),
                &with(base.clone(), &lengths, RecurrentOutput::Sequence),
            )
            .unwrap();
            let h_n = kernel(
                &x,
                &refs(&w),
                &with(base.clone(), &lengths, RecurrentOutput::HiddenState),
            )
            .unwrap();
            let features = hidden * direction.count();
            for (b, &len) in lengths.iter().enumerate() {
                let alone = kernel(&sample(&x, b, len), &refs(&w), &base).unwrap();
                for t in 0..seq {
                    let got = &all.data()[(t * batch + b) * features..][..features];
                    let want = if t < len {
                        alone.data()[t * features..][..features].to_vec()
                    } else {
                        vec![0.0; features]
                    };
                    assert_close(&tensor(&[features], got), &[features], &want, 1e-6);
                }
                // h_n: forward after step len-1, reverse after step 0.
                let last = kernel(
                    &sample(&x, b, len),
                    &refs(&w),
                    &with(base.clone(), &[], RecurrentOutput::HiddenState),
                )
                .unwrap();
                for d in 0..direction.count() {
                    let got = &h_n.data()[(d * batch + b) * hidden..][..hidden];
                    assert_close(
                        &tensor(&[hidden], got),
                        &[hidden],
                        &last.data()[d * hidden..][..hidden],
                        1e-6,
                    );
                }
            }
        }
    }
}

#[test]
fn final_states_chain_across_calls() {
    // h_n and c_n of a run are the initial states that continue it.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (batch, input, hidden) = (2, 3, 4);
    let x = random(&[4, batch, input], &mut rng);
    let w = weights(4, hidden, input, &mut rng);
    let two_layers = RecurrentAttrs {
        layers: 2,
        ..attrs(hidden, RnnDirection::Forward, false)
    };
    let mut w2 = w.clone();
    w2.extend(weights(4, hidden, hidden, &mut rng));
    let whole = interp::lstm(&x, &refs(&w2), &two_layers).unwrap();
    let step = batch * input;
    let (head, tail) = (
        tensor(&[1, batch, input], &x.data()[..step]),
        tensor(&[3, batch, input], &x.data()[step..]),
    );
    let h = interp::lstm(
        &head,
        &refs(&w2),
        &with(two_layers.clone(), &[], RecurrentOutput::HiddenState),
    )
    .unwrap();
    let c = interp::lstm(
        &head,
        &refs(&w2),
        &with(two_layers.clone(), &[], RecurrentOutput::CellState),
    )
    .unwrap();
    assert_eq!(h.shape(), &[2, batch, hidden]);
    let mut operands = vec![&h, &c];
    operands.extend(w2.iter());
    let rest = interp::lstm(
        &tail,
        &operands,
        &RecurrentAttrs {
            initial_state: true,
            ..two_layers.clone()
        },
    )
    .unwrap();
    assert_close(
        &rest,
        &[3, batch, hidden],
        &whole.data()[batch * hidden..],
        1e-6,
    );
    // gru and rnn have no cell state.
    let g = weights(3, hidden, input, &mut rng);
    let r = interp::gru(
        &x,
        &refs(&g),
        &with(
            attrs(hidden, RnnDirection::Forward, false),
            &[],
            RecurrentOutput::CellState,
        ),
    );
    assert!(matches!(r, Err(InterpError::Operands { .. })), "{r:?}");
    let bad = interp::gru(
        &x,
        &refs(&g),
        &with(
            attrs(hidden, RnnDirection::Forward, false),
            &[5, 1],
            RecurrentOutput::Sequence,
        ),
    );
    assert!(matches!(bad, Err(InterpError::Operands { .. })), "{bad:?}");
}

#[test]
fn negative_pads_crop() {
    let x = tensor(&[2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    let a = PadAttrs {
        pads: vec![-1, 1, 0, -2],
        mode: PadMode::Edge,
        value: 0.0,
    };
    // Row 0 cropped; one edge column before, two columns cropped after.
    let y = interp::pad(&x, &a).unwrap();
    assert_near(&y, &[1, 3], &[5., 5., 6.]);
    let all = PadAttrs {
        pads: vec![-1, 0, -1, 0],
        mode: PadMode::Constant,
        value: 0.0,
    };
    assert!(interp::pad(&x, &all).is_err());
}
