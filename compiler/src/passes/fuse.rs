//! `fuse`: moves cheap elementwise work into the op that produces its
//! operand, so compiled code applies it in registers before the store
//! instead of making another pass over memory.
//!
//! Three rewrites, in topological order, then one over chains:
//! - **bias**: `add(P, c)` where `c` is a weight that varies only along P's
//!   output channels becomes P's bias (added to the bias P already has);
//! - **residual**: `add(P, r)` where `r` has the sum's exact type (no
//!   broadcasting) becomes P's epilogue residual;
//! - **activation**: `relu`, `relu6`, `clip`, `leaky_relu`, `sigmoid` or
//!   `tanh` of P becomes P's epilogue activation, after the residual.
//!
//! `P` is an op that carries an [`Epilogue`] (conv2d, conv_transpose2d,
//! linear, gemm, depthwise, separable, col2im), whose only user is the
//! candidate and which is not a graph output. Then every remaining run of
//! `add`, `mul`, `sub`, `div` and activations whose intermediate values
//! each have one user becomes one `elementwise` op (`sub` and `div`
//! continue a run only through their first operand).
//!
//! A candidate that is not fused gets a note on its node saying why (for
//! example `output of layer1.0.conv1 has 2 users`), which `dump-ir` prints.
//!
//! Precondition: a verified graph. The epilogue and the chain run the same
//! interpreter kernels as the ops they replace, so values are unchanged
//! except where a constant add is summed into a bias first (1e-6 relative).

use super::{add_weight, replace_weight, weight_tensor, Candidate, PassError, PassReport};
use crate::backend::activation::lookup_native;
use crate::ir::{
    Activation, BinaryOp, ElementwiseAttrs, ElementwiseStep, Graph, NodeId, Op, WeightRole,
};
use nnc_runtime::WeightSet;

/// The registry and CLI name.
pub const NAME: &str = "fuse";

/// Fuses every candidate; `fired` counts ops that were fused away.
pub fn fuse(graph: &mut Graph, weights: &mut WeightSet) -> Result<PassReport, PassError> {
    let mut report = PassReport::default();
    let mut refusals: Vec<(NodeId, String)> = Vec::new();
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let op = &graph.node(id).op;
        let outcome = match *op {
            Op::Binary(BinaryOp::Add) => fuse_add(graph, weights, id)?,
            Op::Activation(act) => fuse_activation(graph, id, act)?,
            _ => continue,
        };
        match outcome {
            Candidate::Accepted(()) => report.fired += 1,
            Candidate::Refused(reason) => refusals.push((id, reason)),
            Candidate::Irrelevant => {}
        }
    }
    report.fired += fuse_chains(graph)?;
    for (id, reason) in refusals {
        if let Some(node) = graph.get(id) {
            report.notes.push(format!("{}: {reason}", node.name));
            graph.node_mut(id).note(NAME, reason);
        }
    }
    Ok(report)
}

fn graph_err(source: crate::ir::GraphError) -> PassError {
    PassError::Graph { pass: NAME, source }
}

/// Whether `producer` can take `consumer` into its epilogue: it carries
/// one, `consumer` is its only user and it is not a graph output.
fn host(graph: &Graph, producer: NodeId, consumer: NodeId) -> Candidate<()> {
    let node = graph.node(producer);
    if node.op.epilogue().is_none() {
        return Candidate::Refused(format!(
            "producer {} ({}) has no epilogue to fuse into",
            node.name,
            node.op.name()
        ));
    }
    let users = graph.users(producer);
    if users != [consumer] {
        return Candidate::Refused(format!(
            "not fused into {}: its output has {} users",
            node.name,
            users.len()
        ));
    }
    if graph.outputs().contains(&producer) {
        return Candidate::Refused(format!(
            "not fused into {}: its output is a graph output",
            node.name
        ));
    }
    Candidate::Accepted(())
}

/// `act(P)` into P's epilogue.
fn fuse_activation(
    graph: &mut Graph,
    id: NodeId,
    act: Activation,
) -> Result<Candidate<()>, PassError> {
    let producer = graph.node(id).inputs()[0];
    if let Candidate::Refused(reason) = host(graph, producer, id) {
        return Ok(Candidate::Refused(reason));
    }
    let name = graph.node(producer).name.clone();
    if lookup_native(act).is_none() {
        return Ok(Candidate::Refused(format!(
            "not fused into {name}: the native kernels have no {}",
            act.name()
        )));
    }
    let Some(epilogue) = graph.node_mut(producer).op.epilogue_mut() else {
        return Ok(Candidate::Irrelevant);
    };
    if let Some(existing) = epilogue.activation {
        return Ok(Candidate::Refused(format!(
            "not fused into {name}: it already ends in {}",
            existing.describe()
        )));
    }
    epilogue.activation = Some(act);
    graph.replace_all_uses(id, producer).map_err(graph_err)?;
    graph.remove(id).map_err(graph_err)?;
    Ok(Candidate::Accepted(()))
}

/// `add(P, c)` into P's bias, or `add(P, r)` into P's residual. Either
/// operand may be the producer; the first that can take the add does.
fn fuse_add(
    graph: &mut Graph,
    weights: &mut WeightSet,
    id: NodeId,
) -> Result<Candidate<()>, PassError> {
    let operands = graph.node(id).inputs().to_vec();
    let mut refusal = None;
    for (p, other) in [(operands[0], operands[1]), (operands[1], operands[0])] {
        let reason = match host(graph, p, id) {
            Candidate::Accepted(()) => match try_bias(graph, weights, id, p, other)? {
                Candidate::Accepted(()) => return Ok(Candidate::Accepted(())),
                Candidate::Refused(reason) => Some(reason),
                Candidate::Irrelevant => match try_residual(graph, id, p, other)? {
                    Candidate::Accepted(()) => return Ok(Candidate::Accepted(())),
                    Candidate::Refused(reason) => Some(reason),
                    Candidate::Irrelevant => None,
                },
            },
            // An add of two non-producers is a chain candidate, not a
            // missed fusion; a producer that refuses is worth a note.
            Candidate::Refused(reason) if graph.node(p).op.epilogue().is_some() => Some(reason),
            Candidate::Refused(_) | Candidate::Irrelevant => None,
        };
        refusal = refusal.or(reason);
    }
    Ok(refusal.map_or(Candidate::Irrelevant, Candidate::Refused))
}

/// The output-channel axis of a producer's value: the last for `linear`,
/// 1 for the convolution-like ops.
fn channel_axis(op: &Op, rank: usize) -> usize {
    if matches!(op, Op::Linear(_)) {
        rank.saturating_sub(1)
    } else {
        1
    }
}

/// `add(P, c)` with a per-channel constant `c` becomes P's bias.
fn try_bias(
    graph: &mut Graph,
    weights: &mut WeightSet,
    add: NodeId,
    p: NodeId,
    c: NodeId,
) -> Result<Candidate<()>, PassError> {
    let Some(constant) = weight_tensor(NAME, graph, weights, c)? else {
        return Ok(Candidate::Irrelevant);
    };
    // The hosts whose bias is operand 2; the others keep theirs elsewhere
    // (a residual add still works for them).
    let Some(has_bias) = bias_flag(&mut graph.node_mut(p).op).map(|b| *b) else {
        return Ok(Candidate::Irrelevant);
    };
    let node = graph.node(p);
    let (x, kernel) = (node.inputs()[0], node.inputs()[1]);
    if node.op.epilogue().is_some_and(|e| !e.is_empty()) {
        return Ok(Candidate::Refused(format!(
            "not fused into {}: a bias must come before its {}",
            node.name,
            node.op.epilogue().map(|e| e.describe()).unwrap_or_default()
        )));
    }
    let out = &node.ty.shape;
    let axis = channel_axis(&node.op, out.len());
    let channels = out.get(axis).copied().unwrap_or(0);
    let shape = constant.shape();
    // Aligned at the right, `c` must be 1 everywhere but the channel axis.
    let lead = out.len().checked_sub(shape.len());
    let per_channel = lead.is_some_and(|lead| {
        shape
            .iter()
            .enumerate()
            .all(|(i, &d)| d == 1 || (lead + i == axis && d == channels))
    });
    if !per_channel || graph.node(add).ty != node.ty {
        return Ok(Candidate::Irrelevant);
    }
    let values = constant.data();
    let per = |ch: usize| values[if values.len() == 1 { 0 } else { ch }];
    let name = node.name.clone();
    let bias = if has_bias {
        let old = node.inputs()[2];
        let b = weight_tensor(NAME, graph, weights, old)?.map_or(&[][..], |t| t.data());
        let sum: Vec<f32> = (0..channels).map(|ch| b[ch] + per(ch)).collect();
        replace_weight(NAME, graph, weights, p, old, sum)?
    } else {
        let fan_in = match graph.node(kernel).op {
            Op::Weight(ref w) => match w.role {
                WeightRole::Kernel { fan_in } => fan_in,
                WeightRole::Bias { .. }
                | WeightRole::NormWeight
                | WeightRole::NormBias
                | WeightRole::RunningMean
                | WeightRole::RunningVar
                | WeightRole::Constant
                | WeightRole::Slope => 1,
            },
            _ => 1,
        };
        let data: Vec<f32> = (0..channels).map(per).collect();
        add_weight(
            NAME,
            graph,
            weights,
            &format!("{name}.bias"),
            WeightRole::Bias { fan_in },
            vec![channels],
            data,
        )?
    };
    if let Some(flag) = bias_flag(&mut graph.node_mut(p).op) {
        *flag = true;
    }
    graph
        .set_inputs(p, vec![x, kernel, bias])
        .map_err(graph_err)?;
    graph.replace_all_uses(add, p).map_err(graph_err)?;
    graph.remove(add).map_err(graph_err)?;
    Ok(Candidate::Accepted(()))
}

/// The `bias` attribute of an op whose bias, when present, is operand 2
/// (the weight is operand 1): conv2d, depthwise, conv_transpose2d, linear
/// and gemm.
fn bias_flag(op: &mut Op) -> Option<&mut bool> {
    if let Op::Conv2d(a) | Op::DepthwiseConv2d(a) = op {
        Some(&mut a.bias)
    } else if let Op::ConvTranspose2d(a) = op {
        Some(&mut a.bias)
    } else if let Op::Linear(a) = op {
        Some(&mut a.bias)
    } else if let Op::Gemm(a) = op {
        Some(&mut a.bias)
    } else {
        None
    }
}

/// `add(P, r)` with `r` of the sum's exact type becomes P's residual.
fn try_residual(
    graph: &mut Graph,
    add: NodeId,
    p: NodeId,
    r: NodeId,
) -> Result<Candidate<()>, PassError> {
    let node = graph.node(p);
    let name = node.name.clone();
    if r == p {
        return Ok(Candidate::Refused(format!(
            "not fused into {name}: both operands are its output"
        )));
    }
    let sum_ty = &graph.node(add).ty;
    if node.ty != *sum_ty || graph.node(r).ty != *sum_ty {
        return Ok(Candidate::Refused(format!(
            "not fused into {name}: the add broadcasts {} and {} to {sum_ty}",
            node.ty,
            graph.node(r).ty
        )));
    }
    let Some(epilogue) = graph.node_mut(p).op.epilogue_mut() else {
        return Ok(Candidate::Irrelevant);
    };
    if epilogue.residual || epilogue.activation.is_some() {
        let had = epilogue.describe();
        return Ok(Candidate::Refused(format!(
            "not fused into {name}: it already ends in {had}"
        )));
    }
    epilogue.residual = true;
    let mut inputs = graph.node(p).inputs().to_vec();
    inputs.push(r);
    graph.set_inputs(p, inputs).map_err(graph_err)?;
    graph.replace_all_uses(add, p).map_err(graph_err)?;
    graph.remove(add).map_err(graph_err)?;
    Ok(Candidate::Accepted(()))
}

/// The chain step an op contributes, if it is an elementwise op a chain can
/// hold. Binary steps get operand index 0 here; the caller fills it in.
fn step_of(op: &Op) -> Option<ElementwiseStep> {
    match *op {
        Op::Binary(b) => Some(ElementwiseStep::Binary(b, 0)),
        Op::Activation(act) => Some(ElementwiseStep::Activation(act)),
        Op::Unary(f) => Some(ElementwiseStep::Unary(f)),
        // A prelu's slope broadcasts along the channel dim, not NumPy's
        // way, so it stays a kernel of its own.
        _ => None,
    }
}

/// `step` reading operand `index` (an activation reads none).
fn with_operand(step: ElementwiseStep, index: usize) -> ElementwiseStep {
    match step {
        ElementwiseStep::Binary(op, _) => ElementwiseStep::Binary(op, index),
        ElementwiseStep::Prelu(_) => ElementwiseStep::Prelu(index),
        unary @ (ElementwiseStep::Activation(_) | ElementwiseStep::Unary(_)) => unary,
    }
}

/// Merges runs of elementwise ops into `elementwise` ops; returns how many
/// ops were merged away.
fn fuse_chains(graph: &mut Graph) -> Result<usize, PassError> {
    let mut merged = 0;
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let Some(step) = step_of(&graph.node(id).op) else {
            continue;
        };
        // The operand whose value this op continues: an elementwise op (or
        // chain) that only this op reads.
        let operands = graph.node(id).inputs().to_vec();
        // `acc - x` and `acc / x` continue only their first operand.
        let ordered = match step {
            ElementwiseStep::Binary(op, _) => !op.is_commutative(),
            ElementwiseStep::Prelu(_) => true,
            ElementwiseStep::Activation(_) | ElementwiseStep::Unary(_) => false,
        };
        let Some(slot) = operands.iter().enumerate().position(|(slot, &o)| {
            let op = &graph.node(o).op;
            (step_of(op).is_some() || matches!(op, Op::Elementwise(_)))
                && graph.users(o) == [id]
                && !graph.outputs().contains(&o)
                && operands.iter().filter(|&&x| x == o).count() == 1
                && (slot == 0 || !ordered)
        }) else {
            continue;
        };
        let chain = operands[slot];
        start_chain(graph, chain)?;
        let Op::Elementwise(attrs) = &graph.node(chain).op else {
            continue;
        };
        let mut attrs = attrs.clone();
        let mut inputs = graph.node(chain).inputs().to_vec();
        let step = match step {
            ElementwiseStep::Binary(..) | ElementwiseStep::Prelu(_) => {
                let other = operands[1 - slot];
                // Operand 0 is the accumulator's start, so an operand equal
                // to it still needs a slot of its own.
                let index = match inputs.iter().skip(1).position(|&i| i == other) {
                    Some(i) => i + 1,
                    None => {
                        inputs.push(other);
                        inputs.len() - 1
                    }
                };
                with_operand(step, index)
            }
            unary @ (ElementwiseStep::Activation(_) | ElementwiseStep::Unary(_)) => unary,
        };
        attrs.steps.push(step);
        let ty = graph.node(id).ty.clone();
        let node = graph.node_mut(chain);
        node.op = Op::Elementwise(attrs);
        node.ty = ty;
        graph.set_inputs(chain, inputs).map_err(graph_err)?;
        graph.replace_all_uses(id, chain).map_err(graph_err)?;
        graph.remove(id).map_err(graph_err)?;
        merged += 1;
    }
    Ok(merged)
}

/// Turns a single elementwise op into a one-step `elementwise` op in place
/// (an `elementwise` op is left as it is).
fn start_chain(graph: &mut Graph, id: NodeId) -> Result<(), PassError> {
    let node = graph.node(id);
    let Some(step) = step_of(&node.op) else {
        return Ok(());
    };
    let step = with_operand(step, 1);
    graph.node_mut(id).op = Op::Elementwise(ElementwiseAttrs { steps: vec![step] });
    Ok(())
}
