//! `rnn` (tanh) and `lstm` with PyTorch's parameter layout.
//!
//! Operands after `x`, per layer `l`: `weight_ih_l{l} [G*hidden, in_l]`,
//! `weight_hh_l{l} [G*hidden, hidden]`, then with `bias` `bias_ih_l{l}` and
//! `bias_hh_l{l}`, both `[G*hidden]` and both added. `G` is 1 for `rnn` and 4
//! for `lstm`, whose gate rows are ordered i, f, g, o. Initial hidden and cell
//! states are zero; the output is the last layer's hidden state at every
//! step.

use nnc_runtime::{format_shape, Tensor};

use super::check::shape_is;
use super::elementwise::sigmoid_scalar;
use super::error::{operands, InterpError};
use crate::ir::RecurrentAttrs;

/// `rnn`: `h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)` per layer.
pub fn rnn(x: &Tensor, params: &[&Tensor], a: &RecurrentAttrs) -> Result<Tensor, InterpError> {
    run_layers(Cell::Rnn, x, params, a)
}

/// `lstm`: with `z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh` split into
/// `i, f, g, o`: `c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)` and
/// `h_t = sigmoid(o) * tanh(c_t)`, per layer.
pub fn lstm(x: &Tensor, params: &[&Tensor], a: &RecurrentAttrs) -> Result<Tensor, InterpError> {
    run_layers(Cell::Lstm, x, params, a)
}

/// Which recurrence a layer runs.
#[derive(Clone, Copy)]
enum Cell {
    Rnn,
    Lstm,
}

impl Cell {
    fn op(self) -> &'static str {
        match self {
            Cell::Rnn => "rnn",
            Cell::Lstm => "lstm",
        }
    }

    /// Rows of pre-activations per hidden unit.
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Lstm => 4,
        }
    }
}

/// One layer's parameters, validated.
struct Layer<'t> {
    weight_ih: &'t [f32],
    weight_hh: &'t [f32],
    bias_ih: Option<&'t [f32]>,
    bias_hh: Option<&'t [f32]>,
}

/// Validates the operands and runs the layers one after the other, each over
/// the whole sequence, in time-major order.
fn run_layers(
    cell: Cell,
    x: &Tensor,
    params: &[&Tensor],
    a: &RecurrentAttrs,
) -> Result<Tensor, InterpError> {
    let op = cell.op();
    let [d0, d1, input_size] = match *x.shape() {
        [p, q, r] => [p, q, r],
        _ => {
            return Err(operands(
                op,
                format!(
                    "the input must have rank 3 but has shape {}",
                    format_shape(x.shape())
                ),
            ))
        }
    };
    let (seq, batch) = if a.batch_first { (d1, d0) } else { (d0, d1) };
    let hidden = a.hidden;
    if hidden == 0 || a.layers == 0 {
        return Err(operands(op, "hidden and layers must be at least 1"));
    }
    let per_layer = if a.bias { 4 } else { 2 };
    if params.len() != per_layer * a.layers {
        return Err(operands(
            op,
            format!(
                "{} layers{} take {} parameter operands but {} were given",
                a.layers,
                if a.bias { " with bias" } else { "" },
                per_layer * a.layers,
                params.len()
            ),
        ));
    }
    let rows = cell.gates() * hidden;
    let mut layers = Vec::with_capacity(a.layers);
    for (l, p) in params.chunks_exact(per_layer).enumerate() {
        let in_l = if l == 0 { input_size } else { hidden };
        shape_is(op, &format!("weight_ih_l{l}"), p[0], &[rows, in_l])?;
        shape_is(op, &format!("weight_hh_l{l}"), p[1], &[rows, hidden])?;
        if a.bias {
            shape_is(op, &format!("bias_ih_l{l}"), p[2], &[rows])?;
            shape_is(op, &format!("bias_hh_l{l}"), p[3], &[rows])?;
        }
        layers.push(Layer {
            weight_ih: p[0].data(),
            weight_hh: p[1].data(),
            bias_ih: a.bias.then(|| p[2].data()),
            bias_hh: a.bias.then(|| p[3].data()),
        });
    }

    // The sequence in time-major order `[seq, batch, features]`.
    let mut sequence = vec![0.0f32; seq * batch * input_size];
    for t in 0..seq {
        for b in 0..batch {
            let src = caller_row(a.batch_first, t, b, seq, batch);
            sequence[(t * batch + b) * input_size..][..input_size]
                .copy_from_slice(&x.data()[src * input_size..][..input_size]);
        }
    }
    let mut features = input_size;
    for layer in &layers {
        sequence = run_layer(cell, layer, &sequence, seq, batch, features, hidden);
        features = hidden;
    }

    let shape = if a.batch_first {
        vec![batch, seq, hidden]
    } else {
        vec![seq, batch, hidden]
    };
    let mut out = Tensor::zeros(shape)?;
    for t in 0..seq {
        for b in 0..batch {
            let dst = caller_row(a.batch_first, t, b, seq, batch);
            out.data_mut()[dst * hidden..][..hidden]
                .copy_from_slice(&sequence[(t * batch + b) * hidden..][..hidden]);
        }
    }
    Ok(out)
}

/// The row of step `t`, sample `b` in the caller's layout: `[batch, seq, _]`
/// with `batch_first`, else `[seq, batch, _]`.
fn caller_row(batch_first: bool, t: usize, b: usize, seq: usize, batch: usize) -> usize {
    if batch_first {
        b * seq + t
    } else {
        t * batch + b
    }
}

/// Runs one layer over a time-major `[seq, batch, features]` sequence and
/// returns its hidden states `[seq, batch, hidden]`.
fn run_layer(
    cell: Cell,
    layer: &Layer<'_>,
    input: &[f32],
    seq: usize,
    batch: usize,
    features: usize,
    hidden: usize,
) -> Vec<f32> {
    let rows = cell.gates() * hidden;
    let mut output = vec![0.0f32; seq * batch * hidden];
    let mut h = vec![0.0f32; batch * hidden];
    let mut c = vec![0.0f32; batch * hidden];
    let mut z = vec![0.0f32; rows];
    for t in 0..seq {
        for b in 0..batch {
            let x_t = &input[(t * batch + b) * features..][..features];
            let h_prev = &h[b * hidden..][..hidden];
            for (r, z_r) in z.iter_mut().enumerate() {
                let w_ih = &layer.weight_ih[r * features..][..features];
                let w_hh = &layer.weight_hh[r * hidden..][..hidden];
                *z_r = dot(w_ih, x_t)
                    + layer.bias_ih.map_or(0.0, |bias| bias[r])
                    + dot(w_hh, h_prev)
                    + layer.bias_hh.map_or(0.0, |bias| bias[r]);
            }
            let h_b = &mut h[b * hidden..][..hidden];
            let c_b = &mut c[b * hidden..][..hidden];
            match cell {
                Cell::Rnn => {
                    for (h_j, &z_j) in h_b.iter_mut().zip(&z) {
                        *h_j = z_j.tanh();
                    }
                }
                Cell::Lstm => {
                    for j in 0..hidden {
                        let i_gate = sigmoid_scalar(z[j]);
                        let f_gate = sigmoid_scalar(z[hidden + j]);
                        let g_gate = z[2 * hidden + j].tanh();
                        let o_gate = sigmoid_scalar(z[3 * hidden + j]);
                        c_b[j] = f_gate * c_b[j] + i_gate * g_gate;
                        h_b[j] = o_gate * c_b[j].tanh();
                    }
                }
            }
            output[(t * batch + b) * hidden..][..hidden].copy_from_slice(h_b);
        }
    }
    output
}

/// The dot product of two equally long slices.
fn dot(p: &[f32], q: &[f32]) -> f32 {
    p.iter().zip(q).map(|(&a, &b)| a * b).sum()
}
