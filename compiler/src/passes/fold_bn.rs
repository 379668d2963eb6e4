//! `fold-bn`: folds a `batch_norm` into the `conv2d`, `linear` or
//! `conv_transpose2d` that produces its operand.
//!
//! With `s = gamma / sqrt(var + eps)` per channel, the producer's weight
//! becomes `W' = W * s` along its output-channel axis and its bias
//! `b' = beta + (b - mean) * s` (a new bias `<producer>.bias` with `b = 0`
//! when it had none); the batch norm's users then read the producer. The
//! output-channel axis is axis 0 of a `conv2d` or `linear` weight; a
//! `conv_transpose2d` weight is `[C_in, out/groups, kh, kw]`, so input
//! channel `c` in group `g = c / (C_in/groups)` and column `j` of axis 1 feed
//! output channel `g * out/groups + j`.
//!
//! A `mul` of such a producer by a per-channel constant (a weight that is 1
//! along every dim but the channel dim 1) folds the same way, with `s` the
//! constant and no shift: exporters write a batch norm's scale that way
//! (Caffe2's Inception v2 and DenseNet-121 follow each folded batch norm
//! with a `Mul` and an `Add` by constants; `fuse` makes the add a bias).
//!
//! Precondition: a verified graph whose weight nodes all have tensors in the
//! weight set. A batch norm is folded only when its operand is the
//! producer's output directly (never across another op), that output has no
//! other user and is not a graph output, its parameters are weights, and
//! (for `linear`) the features are dim 1. Each refusal is a note. A weight
//! tensor that another op also reads is copied under a fresh name rather
//! than changed in place. Preserves values within float rounding (1e-5
//! relative). The batch norm node is removed; its weights are left dead
//! for `dce`.

use super::{
    add_weight, bn_scale_shift, replace_weight, rescale_weight, weight_tensor, Candidate,
    PassError, PassReport,
};
use crate::ir::{BinaryOp, Graph, NodeId, Op, WeightAttrs, WeightRole};
use nnc_runtime::{Tensor, WeightSet};

/// The registry and CLI name.
pub const NAME: &str = "fold-bn";

/// Folds every foldable batch norm and per-channel scale; `fired` counts
/// folded ops.
pub fn fold_bn(graph: &mut Graph, weights: &mut WeightSet) -> Result<PassReport, PassError> {
    let mut report = PassReport::default();
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let candidate = match graph.node(id).op {
            Op::BatchNorm(ref a) => {
                let eps = a.eps;
                batch_norm_affine(graph, weights, id, eps)?
            }
            Op::Binary(BinaryOp::Mul) => channel_scale(graph, weights, id)?,
            _ => continue,
        };
        match candidate {
            Candidate::Accepted((producer, scale, shift)) => {
                fold(graph, weights, id, producer, &scale, &shift)?;
                report.fired += 1;
            }
            Candidate::Refused(reason) => report
                .notes
                .push(format!("{}: not folded: {reason}", graph.node(id).name)),
            // Not after a conv or linear at all: nothing to explain.
            Candidate::Irrelevant => {}
        }
    }
    Ok(report)
}

/// A producer to fold into, with the per-channel scale and shift.
type Fold = (NodeId, Vec<f64>, Vec<f64>);

/// The producer of batch norm `bn` and the norm's affine form, or why it
/// cannot fold.
fn batch_norm_affine(
    graph: &Graph,
    weights: &WeightSet,
    bn: NodeId,
    eps: f32,
) -> Result<Candidate<Fold>, PassError> {
    let producer = graph.node(bn).inputs()[0];
    if let Candidate::Refused(reason) = foldable(graph, weights, bn, producer)? {
        return Ok(Candidate::Refused(reason));
    }
    if !is_foldable_kind(&graph.node(producer).op) {
        return Ok(Candidate::Irrelevant);
    }
    let mut params = Vec::with_capacity(4);
    for &operand in &graph.node(bn).inputs()[1..] {
        match weight_tensor(NAME, graph, weights, operand)? {
            Some(t) => params.push(t.data()),
            None => {
                return Ok(Candidate::Refused(format!(
                    "a parameter of {} is computed, not a weight",
                    graph.node(bn).name
                )))
            }
        }
    }
    let (scale, shift) = bn_scale_shift(params[0], params[1], params[2], params[3], eps);
    Ok(Candidate::Accepted((producer, scale, shift)))
}

/// `mul(P, c)` (either order) with a constant `c` that varies only along
/// P's channel dim 1: the producer and the scale, or why not.
fn channel_scale(
    graph: &Graph,
    weights: &WeightSet,
    mul: NodeId,
) -> Result<Candidate<Fold>, PassError> {
    let operands = graph.node(mul).inputs().to_vec();
    for (p, c) in [(operands[0], operands[1]), (operands[1], operands[0])] {
        if !is_foldable_kind(&graph.node(p).op) || graph.node(mul).ty != graph.node(p).ty {
            continue;
        }
        let Some(constant) = weight_tensor(NAME, graph, weights, c)? else {
            continue;
        };
        let out = &graph.node(p).ty.shape;
        let channels = out.get(1).copied().unwrap_or(0);
        let shape = constant.shape();
        // Aligned at the right, `c` is 1 everywhere but dim 1.
        let per_channel = out.len().checked_sub(shape.len()).is_some_and(|lead| {
            shape
                .iter()
                .enumerate()
                .all(|(i, &d)| d == 1 || (lead + i == 1 && d == channels))
        });
        if !per_channel {
            continue;
        }
        if let Candidate::Refused(reason) = foldable(graph, weights, mul, p)? {
            return Ok(Candidate::Refused(reason));
        }
        let values = constant.data();
        let scale: Vec<f64> = (0..channels)
            .map(|ch| f64::from(values[if values.len() == 1 { 0 } else { ch }]))
            .collect();
        return Ok(Candidate::Accepted((p, scale, vec![0.0; channels])));
    }
    Ok(Candidate::Irrelevant)
}

/// The producers whose weights can absorb a per-channel affine.
fn is_foldable_kind(op: &Op) -> bool {
    matches!(op, Op::Conv2d(_) | Op::ConvTranspose2d(_) | Op::Linear(_))
}

/// Whether `consumer` can fold into `producer`, or why not.
fn foldable(
    graph: &Graph,
    weights: &WeightSet,
    consumer: NodeId,
    producer: NodeId,
) -> Result<Candidate<()>, PassError> {
    let node = graph.node(producer);
    let kind = node.op.name();
    if !is_foldable_kind(&node.op) {
        return Ok(Candidate::Irrelevant);
    }
    if matches!(node.op, Op::Linear(_)) && node.ty.rank() != 2 {
        return Ok(Candidate::Refused(format!(
            "producer {} is a linear whose features are not the channel dim 1 of {}",
            node.name, node.ty
        )));
    }
    if let Some(e) = node.op.epilogue().filter(|e| !e.is_empty()) {
        return Ok(Candidate::Refused(format!(
            "producer {} ends in a fused {}",
            node.name,
            e.describe()
        )));
    }
    let users = graph.users(producer).len();
    if users != 1 {
        return Ok(Candidate::Refused(format!(
            "producer {} has {users} users",
            node.name
        )));
    }
    if graph.outputs().contains(&producer) {
        return Ok(Candidate::Refused(format!(
            "producer {} is a graph output",
            node.name
        )));
    }
    for &operand in &node.inputs()[1..] {
        if weight_tensor(NAME, graph, weights, operand)?.is_none() {
            return Ok(Candidate::Refused(format!(
                "a parameter of {} or of its producer {kind} {} is computed, not a weight",
                graph.node(consumer).name,
                node.name
            )));
        }
    }
    Ok(Candidate::Accepted(()))
}

/// Rewrites `producer`'s weight and bias for `y * scale + shift` per
/// output channel, points `consumer`'s users at it and removes `consumer`.
fn fold(
    graph: &mut Graph,
    weights: &mut WeightSet,
    consumer: NodeId,
    producer: NodeId,
    scale: &[f64],
    shift: &[f64],
) -> Result<(), PassError> {
    let graph_err = |source| PassError::Graph { pass: NAME, source };

    let inputs = graph.node(producer).inputs().to_vec();
    let (kernel, bias) = (inputs[1], inputs.get(2).copied());
    let kernel_tensor =
        weight_tensor(NAME, graph, weights, kernel)?.ok_or_else(|| PassError::MissingWeight {
            pass: NAME,
            name: graph.node(kernel).name.clone(),
        })?;
    let producer_op = graph.node(producer).op.clone();
    let shape = kernel_tensor.shape().to_vec();
    let new_bias: Vec<f32> = match bias {
        Some(b) => {
            let b = weight_tensor(NAME, graph, weights, b)?.map_or(&[][..], Tensor::data);
            (0..scale.len())
                .map(|c| (shift[c] + f64::from(b[c]) * scale[c]) as f32)
                .collect()
        }
        None => shift.iter().map(|&s| s as f32).collect(),
    };

    let kernel = rescale_weight(NAME, graph, weights, producer, kernel, |row, col| {
        scale[output_channel(&producer_op, &shape, row, col)]
    })?;
    let bias = match bias {
        Some(b) => replace_weight(NAME, graph, weights, producer, b, new_bias)?,
        None => {
            let fan_in = if let Op::Weight(WeightAttrs {
                role: WeightRole::Kernel { fan_in },
                ..
            }) = graph.node(kernel).op
            {
                fan_in
            } else {
                1
            };
            let base = format!("{}.bias", graph.node(producer).name);
            let len = new_bias.len();
            add_weight(
                NAME,
                graph,
                weights,
                &base,
                WeightRole::Bias { fan_in },
                vec![len],
                new_bias,
            )?
        }
    };
    let op = &mut graph.node_mut(producer).op;
    if let Op::Conv2d(a) = op {
        a.bias = true;
    } else if let Op::ConvTranspose2d(a) = op {
        a.bias = true;
    } else if let Op::Linear(a) = op {
        a.bias = true;
    }
    let x = inputs[0];
    graph
        .set_inputs(producer, vec![x, kernel, bias])
        .map_err(graph_err)?;
    graph
        .replace_all_uses(consumer, producer)
        .map_err(graph_err)?;
    graph.remove(consumer).map_err(graph_err)?;
    Ok(())
}

/// The output channel that weight element `[row, col, ...]` of the
/// producer contributes to.
fn output_channel(op: &Op, shape: &[usize], row: usize, col: usize) -> usize {
    if let Op::ConvTranspose2d(a) = op {
        let in_per_group = (shape[0] / a.groups.max(1)).max(1);
        (row / in_per_group) * shape[1] + col
    } else {
        // conv2d and linear weights are [out, ...].
        row
    }
}
