//! The reference interpreter: every op as plain `f32` loops, the oracle that
//! later compiler stages are tested against.
//!
//! [`run`] executes a graph in topological order and frees each value after
//! its last user has run; [`run_all`] keeps every value for tests that
//! compare intermediate results. The kernels are public, one per op family,
//! and work on [`Tensor`]s without a graph: each computes its output shape
//! from its operands and returns [`InterpError::Operands`] when the operands
//! do not fit together.

mod check;
mod conv;
mod elementwise;
mod error;
mod indexing;
mod interpolate;
mod linear;
mod lowered;
mod matmul;
mod norm;
mod pad;
mod pool;
mod recurrent;
mod reduce;
mod shape_ops;
mod softmax;
mod winograd;

use std::borrow::Cow;
use std::collections::HashMap;

use nnc_runtime::{Tensor, WeightSet};

use crate::ir::{Graph, Node, NodeId, Op};

pub use conv::{conv2d, conv_transpose2d};
pub use elementwise::{
    activation, activation_scalar, add, binary, binary_scalar, broadcast_shape, dropout, identity,
    prelu, unary, unary_scalar,
};
pub use error::InterpError;
pub use indexing::{expand, index_select, indexing, repeat, slice};
pub use interpolate::interpolate;
pub use linear::linear;
pub use lowered::{activate, col2im, elementwise, epilogue, gemm, im2col, separable_conv2d};
pub use matmul::matmul;
pub use norm::{batch_norm, group_norm, instance_norm, layer_norm, local_response_norm};
pub use pad::pad;
pub use pool::{avg_pool2d, global_avg_pool, max_pool2d};
pub use recurrent::{gru, lstm, rnn};
pub use reduce::reduce;
pub use shape_ops::{concat, flatten, permute, reshape, select};
pub use softmax::{log_softmax, softmax};
pub use winograd::{winograd_input, winograd_output};

/// Runs `graph` on `inputs` (one per graph input, in declaration order) and
/// returns the graph outputs in order.
pub fn run(
    graph: &Graph,
    weights: &WeightSet,
    inputs: &[Tensor],
) -> Result<Vec<Tensor>, InterpError> {
    let values = evaluate(graph, weights, inputs, false)?;
    graph
        .outputs()
        .iter()
        .map(|id| {
            values
                .get(id)
                .map(|v| v.clone().into_owned())
                .ok_or_else(|| InterpError::MissingValue {
                    node: graph
                        .get(*id)
                        .map_or_else(|| format!("{id:?}"), |n| n.name.clone()),
                })
        })
        .collect()
}

/// Runs `graph` like [`run`] but returns the value of every node, inputs and
/// weights included.
pub fn run_all(
    graph: &Graph,
    weights: &WeightSet,
    inputs: &[Tensor],
) -> Result<HashMap<NodeId, Tensor>, InterpError> {
    let values = evaluate(graph, weights, inputs, true)?;
    Ok(values
        .into_iter()
        .map(|(id, v)| (id, v.into_owned()))
        .collect())
}

/// Evaluates every node in topological order. Inputs and weights are
/// borrowed, not copied. Unless `keep_all`, a value is dropped as soon as
/// its last user has run (graph outputs count as users that never run).
fn evaluate<'a>(
    graph: &Graph,
    weights: &'a WeightSet,
    inputs: &'a [Tensor],
    keep_all: bool,
) -> Result<HashMap<NodeId, Cow<'a, Tensor>>, InterpError> {
    if inputs.len() != graph.inputs().len() {
        return Err(InterpError::InputCount {
            expected: graph.inputs().len(),
            found: inputs.len(),
        });
    }
    let input_slot: HashMap<NodeId, &'a Tensor> =
        graph.inputs().iter().copied().zip(inputs.iter()).collect();
    let order = graph.topo_order();
    let mut remaining_uses: HashMap<NodeId, usize> = HashMap::new();
    for &id in &order {
        for &operand in graph.node(id).inputs() {
            *remaining_uses.entry(operand).or_default() += 1;
        }
    }
    for &id in graph.outputs() {
        *remaining_uses.entry(id).or_default() += 1;
    }

    let mut values: HashMap<NodeId, Cow<'a, Tensor>> = HashMap::new();
    for id in order {
        let node = graph.node(id);
        let operands = node
            .inputs()
            .iter()
            .map(|operand| values.get(operand).map(|v| v.as_ref()))
            .collect::<Option<Vec<&Tensor>>>()
            .ok_or_else(|| InterpError::MissingValue {
                node: node.name.clone(),
            })?;
        let value = eval_node(node, &operands, input_slot.get(&id).copied(), weights)?;
        if value.shape() != node.ty.shape.as_slice() {
            return Err(InterpError::OutputShape {
                node: node.name.clone(),
                op: node.op.name(),
                expected: node.ty.shape.clone(),
                found: value.shape().to_vec(),
            });
        }
        values.insert(id, value);
        if keep_all {
            continue;
        }
        // Drop the operands this node was the last user of, and its own
        // value if nothing uses it.
        for operand in node.inputs() {
            if let Some(uses) = remaining_uses.get_mut(operand) {
                *uses = uses.saturating_sub(1);
                if *uses == 0 {
                    values.remove(operand);
                }
            }
        }
        if remaining_uses.get(&id).is_none_or(|&uses| uses == 0) {
            values.remove(&id);
        }
    }
    Ok(values)
}

/// Computes one node's value. `input` is the caller's tensor when the node
/// is a graph input.
fn eval_node<'a>(
    node: &Node,
    x: &[&Tensor],
    input: Option<&'a Tensor>,
    weights: &'a WeightSet,
) -> Result<Cow<'a, Tensor>, InterpError> {
    let in_node = |e: InterpError| InterpError::Node {
        node: node.name.clone(),
        op: node.op.name(),
        source: Box::new(e),
    };
    let owned = |r: Result<Tensor, InterpError>| r.map(Cow::Owned).map_err(in_node);
    match &node.op {
        Op::Input(a) => {
            let t = input.ok_or_else(|| InterpError::MissingValue {
                node: node.name.clone(),
            })?;
            if t.shape() != node.ty.shape.as_slice() {
                return Err(InterpError::InputShape {
                    name: a.name.clone(),
                    expected: node.ty.shape.clone(),
                    found: t.shape().to_vec(),
                });
            }
            Ok(Cow::Borrowed(t))
        }
        Op::Weight(a) => {
            let t = weights
                .get(&a.name)
                .ok_or_else(|| InterpError::MissingWeight {
                    name: a.name.clone(),
                    expected: node.ty.shape.clone(),
                })?;
            if t.shape() != node.ty.shape.as_slice() {
                return Err(InterpError::WeightShape {
                    name: a.name.clone(),
                    expected: node.ty.shape.clone(),
                    found: t.shape().to_vec(),
                });
            }
            Ok(Cow::Borrowed(t))
        }
        Op::Conv2d(a) | Op::DepthwiseConv2d(a) => {
            let (x, residual) = split_residual(node, x, 2 + usize::from(a.bias))?;
            let out = conv2d(x[0], x[1], x.get(2).copied(), a);
            owned(out.and_then(|out| epilogue(out, residual, &a.epilogue)))
        }
        Op::ConvTranspose2d(a) => {
            let (x, residual) = split_residual(node, x, 2 + usize::from(a.bias))?;
            let out = conv_transpose2d(x[0], x[1], x.get(2).copied(), a);
            owned(out.and_then(|out| epilogue(out, residual, &a.epilogue)))
        }
        Op::BatchNorm(a) => {
            arity(node, x, 5)?;
            owned(batch_norm(x[0], x[1], x[2], x[3], x[4], a))
        }
        Op::GroupNorm(a) => {
            arity(node, x, 1 + 2 * usize::from(a.affine))?;
            owned(group_norm(x[0], x.get(1).copied(), x.get(2).copied(), a))
        }
        Op::LayerNorm(a) => {
            arity(node, x, 1 + 2 * usize::from(a.affine))?;
            owned(layer_norm(x[0], x.get(1).copied(), x.get(2).copied(), a))
        }
        Op::InstanceNorm(a) => {
            arity(node, x, 1 + 2 * usize::from(a.affine))?;
            owned(instance_norm(x[0], x.get(1).copied(), x.get(2).copied(), a))
        }
        Op::Activation(a) => one_operand(node, x, |t| activation(t, *a)),
        Op::Unary(f) => one_operand(node, x, |t| unary(t, *f)),
        Op::Prelu(_) => {
            arity(node, x, 2)?;
            owned(prelu(x[0], x[1]))
        }
        Op::MaxPool2d(a) => {
            arity(node, x, 1)?;
            owned(max_pool2d(x[0], a))
        }
        Op::AvgPool2d(a) => {
            arity(node, x, 1)?;
            owned(avg_pool2d(x[0], a))
        }
        Op::GlobalAvgPool => {
            arity(node, x, 1)?;
            owned(global_avg_pool(x[0]))
        }
        Op::Linear(a) => {
            let (x, residual) = split_residual(node, x, 2 + usize::from(a.bias))?;
            let out = linear(x[0], x[1], x.get(2).copied(), a);
            owned(out.and_then(|out| epilogue(out, residual, &a.epilogue)))
        }
        Op::Flatten(a) => {
            arity(node, x, 1)?;
            owned(flatten(x[0], a))
        }
        Op::Reshape(a) => {
            arity(node, x, 1)?;
            owned(reshape(x[0], a))
        }
        Op::Permute(a) => {
            arity(node, x, 1)?;
            owned(permute(x[0], a))
        }
        Op::Select(a) => {
            arity(node, x, 1)?;
            owned(select(x[0], a))
        }
        Op::Binary(op) => {
            arity(node, x, 2)?;
            owned(binary(*op, x[0], x[1]))
        }
        Op::Concat(a) => owned(concat(x, a)),
        Op::Softmax(a) => {
            arity(node, x, 1)?;
            owned(softmax(x[0], a))
        }
        Op::LogSoftmax(a) => {
            arity(node, x, 1)?;
            owned(log_softmax(x[0], a))
        }
        Op::Reduce(a) => {
            arity(node, x, 1)?;
            owned(reduce(x[0], a))
        }
        Op::LocalResponseNorm(a) => {
            arity(node, x, 1)?;
            owned(local_response_norm(x[0], a))
        }
        Op::Dropout(a) => {
            arity(node, x, 1)?;
            owned(dropout(x[0], a))
        }
        Op::Identity => one_operand(node, x, identity),
        Op::Rnn(a) => {
            arity(node, x, recurrent_operands(a, 1))?;
            owned(rnn(x[0], &x[1..], a))
        }
        Op::Lstm(a) => {
            arity(node, x, recurrent_operands(a, 4))?;
            owned(lstm(x[0], &x[1..], a))
        }
        Op::Elementwise(a) => owned(elementwise(x, a)),
        Op::Im2Col(a) => {
            arity(node, x, 1)?;
            owned(im2col(x[0], a))
        }
        Op::Gemm(a) => {
            let (x, residual) = split_residual(node, x, 2 + usize::from(a.bias))?;
            let out = gemm(x[0], x[1], x.get(2).copied(), a);
            owned(out.and_then(|out| epilogue(out, residual, &a.epilogue)))
        }
        Op::Col2Im(a) => {
            let (x, residual) = split_residual(node, x, 1 + usize::from(a.bias))?;
            let out = col2im(x[0], x.get(1).copied(), a);
            owned(out.and_then(|out| epilogue(out, residual, &a.epilogue)))
        }
        Op::WinogradInput(a) => {
            arity(node, x, 1)?;
            owned(winograd_input(x[0], a))
        }
        Op::WinogradOutput(a) => {
            let (x, residual) = split_residual(node, x, 1 + usize::from(a.bias))?;
            let out = winograd_output(x[0], x.get(1).copied(), a);
            owned(out.and_then(|out| epilogue(out, residual, &a.epilogue)))
        }
        Op::SeparableConv2d(a) => {
            let (x, residual) = split_residual(node, x, a.own_operands())?;
            let out = separable_conv2d(x[0], &x[1..], a);
            owned(out.and_then(|out| epilogue(out, residual, &a.epilogue)))
        }
        Op::MatMul => {
            arity(node, x, 2)?;
            owned(matmul(x[0], x[1]))
        }
        Op::Pad(a) => {
            arity(node, x, 1)?;
            owned(pad(x[0], a))
        }
        Op::Constant(_) => one_operand(node, x, identity),
        Op::Indexing(a) => {
            arity(node, x, 1)?;
            owned(indexing(x[0], a))
        }
        Op::Gru(a) => {
            arity(node, x, recurrent_operands(a, 3))?;
            owned(gru(x[0], &x[1..], a))
        }
        Op::Interpolate(a) => {
            arity(node, x, 1)?;
            owned(interpolate(x[0], a))
        }
    }
}

/// Checks the operand count of an op that may carry a fused residual
/// (`own` operands, then the residual when its epilogue has one) and splits
/// the residual off.
fn split_residual<'x, 't>(
    node: &Node,
    x: &'x [&'t Tensor],
    own: usize,
) -> Result<(&'x [&'t Tensor], Option<&'t Tensor>), InterpError> {
    let residual = node.op.epilogue().is_some_and(|e| e.residual);
    arity(node, x, own + usize::from(residual))?;
    Ok(if residual {
        (&x[..own], x.get(own).copied())
    } else {
        (x, None)
    })
}

/// Operands of a recurrent node: `x`, its initial states, and per layer and
/// direction two weights (four with bias).
fn recurrent_operands(a: &crate::ir::RecurrentAttrs, gates: usize) -> usize {
    let per_direction = if a.bias { 4 } else { 2 };
    1 + a.state_operands(gates) + a.layers * a.direction.count() * per_direction
}

/// Checks that a node has exactly `expected` operands.
fn arity(node: &Node, x: &[&Tensor], expected: usize) -> Result<(), InterpError> {
    if x.len() == expected {
        Ok(())
    } else {
        Err(InterpError::OperandCount {
            node: node.name.clone(),
            op: node.op.name(),
            expected,
            found: x.len(),
        })
    }
}

/// Applies an infallible one-operand kernel.
fn one_operand<'a>(
    node: &Node,
    x: &[&Tensor],
    kernel: impl Fn(&Tensor) -> Tensor,
) -> Result<Cow<'a, Tensor>, InterpError> {
    arity(node, x, 1)?;
    Ok(Cow::Owned(kernel(x[0])))
}
