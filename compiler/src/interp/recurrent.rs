//! `rnn` (tanh), `lstm` and `gru` with PyTorch's parameter layout.
//!
//! Operands after `x`: the initial states when `initial_state` (`h0`, and
//! `c0` for `lstm`, each `[layers*directions, batch, hidden]`), then per
//! layer `l` and direction (forward, then `_reverse`): `weight_ih_l{l}
//! [G*hidden, in_l]`, `weight_hh_l{l} [G*hidden, hidden]`, then with `bias`
//! `bias_ih_l{l}` and `bias_hh_l{l}`, both `[G*hidden]`. `G` is 1 for `rnn`,
//! 4 for `lstm` (gate rows i, f, g, o) and 3 for `gru` (r, z, n). Without
//! `initial_state` the states start at zero. The output is the last layer's
//! hidden state at every step, the directions concatenated along features.

use nnc_runtime::{format_shape, Tensor};

use super::check::shape_is;
use super::elementwise::sigmoid_scalar;
use super::error::{operands, InterpError};
use crate::ir::{RecurrentAttrs, RecurrentOutput};

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

/// `gru`: with `x`-parts `zi = W_ih x_t + b_ih` and `h`-parts
/// `zh = W_hh h_{t-1} + b_hh` split into `r, z, n`:
/// `r = sigmoid(zi_r + zh_r)`, `z = sigmoid(zi_z + zh_z)`,
/// `n = tanh(zi_n + r * zh_n)`, `h_t = (1 - z) * n + z * h_{t-1}`.
pub fn gru(x: &Tensor, params: &[&Tensor], a: &RecurrentAttrs) -> Result<Tensor, InterpError> {
    run_layers(
        Cell::Gru {
            linear_before_reset: a.linear_before_reset,
        },
        x,
        params,
        a,
    )
}

/// Which recurrence a layer runs.
#[derive(Clone, Copy)]
enum Cell {
    Rnn,
    Lstm,
    /// With `linear_before_reset`, the reset gate scales `W_hn h + b_hn`;
    /// without, `h` before the product.
    Gru {
        linear_before_reset: bool,
    },
}

impl Cell {
    fn op(self) -> &'static str {
        match self {
            Cell::Rnn => "rnn",
            Cell::Lstm => "lstm",
            Cell::Gru { .. } => "gru",
        }
    }

    /// Rows of pre-activations per hidden unit.
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
        }
    }
}

/// One layer's parameters in one direction, validated, with its initial
/// states.
struct Layer<'t> {
    weight_ih: &'t [f32],
    weight_hh: &'t [f32],
    bias_ih: Option<&'t [f32]>,
    bias_hh: Option<&'t [f32]>,
    reverse: bool,
    h0: Option<&'t [f32]>,
    c0: Option<&'t [f32]>,
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
    let dirs = a.direction.count();
    let states = a.state_operands(cell.gates());
    let per_direction = if a.bias { 4 } else { 2 };
    if params.len() != states + per_direction * a.layers * dirs {
        return Err(operands(
            op,
            format!(
                "{} layers{} take {} parameter operands but {} were given",
                a.layers,
                if a.bias { " with bias" } else { "" },
                states + per_direction * a.layers * dirs,
                params.len()
            ),
        ));
    }
    let lengths: Vec<usize> = if a.lengths.is_empty() {
        vec![seq; batch]
    } else {
        a.lengths.clone()
    };
    if lengths.len() != batch || lengths.iter().any(|&l| l == 0 || l > seq) {
        return Err(operands(
            op,
            format!(
                "lengths {:?} do not fit {batch} sequences of {seq} steps",
                a.lengths
            ),
        ));
    }
    if a.output == RecurrentOutput::CellState && !matches!(cell, Cell::Lstm) {
        return Err(operands(op, "only `lstm` has a cell state"));
    }
    let state_shape = [a.layers * dirs, batch, hidden];
    for (i, s) in params[..states].iter().enumerate() {
        shape_is(op, ["h0", "c0"][i.min(1)], s, &state_shape)?;
    }
    let state = |i: usize, unit: usize| {
        params
            .get(i)
            .filter(|_| i < states)
            .map(|t| &t.data()[unit * batch * hidden..][..batch * hidden])
    };
    let rows = cell.gates() * hidden;
    let mut layers = Vec::with_capacity(a.layers * dirs);
    for (unit, p) in params[states..].chunks_exact(per_direction).enumerate() {
        let (l, suffix) = (unit / dirs, a.direction.suffixes()[unit % dirs]);
        let in_l = if l == 0 { input_size } else { hidden * dirs };
        shape_is(op, &format!("weight_ih_l{l}{suffix}"), p[0], &[rows, in_l])?;
        shape_is(
            op,
            &format!("weight_hh_l{l}{suffix}"),
            p[1],
            &[rows, hidden],
        )?;
        if a.bias {
            shape_is(op, &format!("bias_ih_l{l}{suffix}"), p[2], &[rows])?;
            shape_is(op, &format!("bias_hh_l{l}{suffix}"), p[3], &[rows])?;
        }
        layers.push(Layer {
            weight_ih: p[0].data(),
            weight_hh: p[1].data(),
            bias_ih: a.bias.then(|| p[2].data()),
            bias_hh: a.bias.then(|| p[3].data()),
            reverse: !suffix.is_empty(),
            h0: state(0, unit),
            c0: state(1, unit),
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
    // Final hidden and cell states of every layer and direction, in
    // PyTorch's `h_n` order.
    let mut finals_h = Vec::with_capacity(layers.len() * batch * hidden);
    let mut finals_c = Vec::with_capacity(layers.len() * batch * hidden);
    for layer in layers.chunks(dirs) {
        let mut outputs = Vec::with_capacity(dirs);
        for d in layer {
            let run = run_layer(cell, d, &sequence, &lengths, seq, features, hidden);
            outputs.push(run.output);
            finals_h.extend(run.h);
            finals_c.extend(run.c);
        }
        // Concatenate the directions' hidden states along features.
        features = hidden * dirs;
        sequence = vec![0.0f32; seq * batch * features];
        for (row, dst) in sequence.chunks_exact_mut(features).enumerate() {
            for (d, out) in outputs.iter().enumerate() {
                dst[d * hidden..][..hidden].copy_from_slice(&out[row * hidden..][..hidden]);
            }
        }
    }

    match a.output {
        RecurrentOutput::Sequence => {}
        RecurrentOutput::HiddenState => return Ok(Tensor::new(state_shape.to_vec(), finals_h)?),
        RecurrentOutput::CellState => return Ok(Tensor::new(state_shape.to_vec(), finals_c)?),
    }
    let shape = if a.batch_first {
        vec![batch, seq, features]
    } else {
        vec![seq, batch, features]
    };
    let mut out = Tensor::zeros(shape)?;
    for t in 0..seq {
        for b in 0..batch {
            let dst = caller_row(a.batch_first, t, b, seq, batch);
            out.data_mut()[dst * features..][..features]
                .copy_from_slice(&sequence[(t * batch + b) * features..][..features]);
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

/// What one layer computes in one direction.
struct LayerRun {
    /// Hidden states `[seq, batch, hidden]` in time order (zero after a
    /// sequence's last step).
    output: Vec<f32>,
    /// Final hidden and cell states, `[batch, hidden]` each.
    h: Vec<f32>,
    c: Vec<f32>,
}

/// Runs one layer in one direction over a time-major `[seq, batch,
/// features]` sequence. Sample `b` runs its first `lengths[b]` steps
/// (forward from step 0, or in reverse from step `lengths[b] - 1`).
fn run_layer(
    cell: Cell,
    layer: &Layer<'_>,
    input: &[f32],
    lengths: &[usize],
    seq: usize,
    features: usize,
    hidden: usize,
) -> LayerRun {
    let batch = lengths.len();
    let rows = cell.gates() * hidden;
    let mut output = vec![0.0f32; seq * batch * hidden];
    let mut h = layer
        .h0
        .map_or_else(|| vec![0.0f32; batch * hidden], <[f32]>::to_vec);
    let mut c = layer
        .c0
        .map_or_else(|| vec![0.0f32; batch * hidden], <[f32]>::to_vec);
    // The input part and the recurrent part of the pre-activations are kept
    // apart because the GRU's candidate gates only the recurrent part.
    let mut zi = vec![0.0f32; rows];
    let mut zh = vec![0.0f32; rows];
    for step in 0..seq {
        let t = if layer.reverse { seq - 1 - step } else { step };
        for b in 0..batch {
            if t >= lengths[b] {
                continue;
            }
            let x_t = &input[(t * batch + b) * features..][..features];
            let h_prev = &h[b * hidden..][..hidden];
            for r in 0..rows {
                let w_ih = &layer.weight_ih[r * features..][..features];
                let w_hh = &layer.weight_hh[r * hidden..][..hidden];
                zi[r] = dot(w_ih, x_t) + layer.bias_ih.map_or(0.0, |bias| bias[r]);
                zh[r] = dot(w_hh, h_prev) + layer.bias_hh.map_or(0.0, |bias| bias[r]);
            }
            let h_b = &mut h[b * hidden..][..hidden];
            let c_b = &mut c[b * hidden..][..hidden];
            match cell {
                Cell::Rnn => {
                    for j in 0..hidden {
                        h_b[j] = (zi[j] + zh[j]).tanh();
                    }
                }
                Cell::Lstm => {
                    let z = |r: usize| zi[r] + zh[r];
                    for j in 0..hidden {
                        let i_gate = sigmoid_scalar(z(j));
                        let f_gate = sigmoid_scalar(z(hidden + j));
                        let g_gate = z(2 * hidden + j).tanh();
                        let o_gate = sigmoid_scalar(z(3 * hidden + j));
                        c_b[j] = f_gate * c_b[j] + i_gate * g_gate;
                        h_b[j] = o_gate * c_b[j].tanh();
                    }
                }
                Cell::Gru {
                    linear_before_reset: true,
                } => {
                    for j in 0..hidden {
                        let r_gate = sigmoid_scalar(zi[j] + zh[j]);
                        let z_gate = sigmoid_scalar(zi[hidden + j] + zh[hidden + j]);
                        let n_gate = (zi[2 * hidden + j] + r_gate * zh[2 * hidden + j]).tanh();
                        h_b[j] = (1.0 - z_gate) * n_gate + z_gate * h_b[j];
                    }
                }
                Cell::Gru {
                    linear_before_reset: false,
                } => {
                    // `n = tanh(zi_n + W_hn (r * h) + b_hn)`: the product
                    // of the `n` rows waits for the whole reset gate.
                    let reset: Vec<f32> = (0..hidden)
                        .map(|j| sigmoid_scalar(zi[j] + zh[j]) * h_b[j])
                        .collect();
                    let fresh: Vec<f32> = (0..hidden)
                        .map(|j| {
                            let row = 2 * hidden + j;
                            let w_hn = &layer.weight_hh[row * hidden..][..hidden];
                            let recurrent =
                                dot(w_hn, &reset) + layer.bias_hh.map_or(0.0, |bias| bias[row]);
                            (zi[row] + recurrent).tanh()
                        })
                        .collect();
                    for j in 0..hidden {
                        let z_gate = sigmoid_scalar(zi[hidden + j] + zh[hidden + j]);
                        h_b[j] = (1.0 - z_gate) * fresh[j] + z_gate * h_b[j];
                    }
                }
            }
            output[(t * batch + b) * hidden..][..hidden].copy_from_slice(h_b);
        }
    }
    LayerRun { output, h, c }
}

/// The dot product of two equally long slices.
fn dot(p: &[f32], q: &[f32]) -> f32 {
    p.iter().zip(q).map(|(&a, &b)| a * b).sum()
}
