//! `simplify`: local rewrites that remove inference-time no-ops.
//!
//! - `dropout` in inverted mode and `identity` are removed; their users read
//!   the operand directly.
//! - `dropout` in classic mode becomes `mul` by a new one-element weight
//!   `<dropout>.scale` holding the keep probability `1-p`.
//! - A `batch_norm` whose operand is not produced by `conv2d`, `linear` or
//!   `conv_transpose2d` (which `fold-bn` handles instead) becomes the
//!   per-channel affine `x * <bn>.scale + <bn>.shift`, with
//!   `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`,
//!   shaped `[C, 1, ...]` to broadcast over the dims after the channels.
//! - An indexing op that keeps every element in its row-major place (a
//!   slice of whole dims, repeats of 1, ...) is removed when it keeps the
//!   shape too, and becomes a `reshape` (a view, no copy) otherwise.
//! - An activation written out as several elementwise ops (`x *
//!   sigmoid(x)` is `silu`; `x * relu6(x + 3) / 6` is `hardswish`; the erf
//!   and tanh forms of GELU; see `spelled_out.rs` for how they are found)
//!   becomes that one activation, with a note on the node.
//! - A layer or instance norm written out as reductions and arithmetic
//!   (`(x - mean) / sqrt(var + eps)` over the last dims; see `norm.rs`)
//!   becomes a `layer_norm`, a group norm written as reshape to `[N, G,
//!   -1]`, unit `instance_norm` and reshape back a `group_norm`, and a
//!   scale and shift by constants after either (of the normalised shape,
//!   or per channel) its weight and bias.
//! - A `pad` of the spatial dims read only by a `conv2d`, `max_pool2d` or
//!   `avg_pool2d` becomes part of that op's padding when the values stay
//!   the same (see `simplify/pad.rs`), with a note on the op; a `pad` that
//!   stays says why in the report.
//!
//! Precondition: a verified graph whose weight nodes all have tensors in the
//! weight set. Preserves values exactly for dropout, identity and the pad
//! folds, within float rounding for the batch-norm affine (the interpreter
//! computes it in `f64`), and within 1e-5 for a recognised activation (its
//! one op rounds once where the spelled-out ops rounded at every step). The
//! old batch-norm weights are left dead for `dce`.

mod norm;
mod pad;
mod spelled_out;

use super::{add_weight, bn_scale_shift, weight_tensor, PassError, PassReport};
use crate::ir::{
    BinaryOp, DropoutMode, Graph, GroupNormAttrs, Node, NodeId, Op, ReshapeAttrs, WeightRole,
};
use nnc_runtime::WeightSet;
use pad::{fold_pad, Outcome, Window};
use spelled_out::recognise;

/// The registry and CLI name.
pub const NAME: &str = "simplify";

/// Runs every rewrite once over the graph; `fired` counts rewritten nodes.
pub fn simplify(graph: &mut Graph, weights: &mut WeightSet) -> Result<PassReport, PassError> {
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    let mut report = PassReport::default();
    for id in graph.topo_order() {
        let node = graph.node(id);
        match &node.op {
            Op::Identity
            | Op::Dropout(crate::ir::DropoutAttrs {
                mode: DropoutMode::Inverted,
                ..
            }) => {
                let operand = node.inputs()[0];
                graph.replace_all_uses(id, operand).map_err(graph_err)?;
                graph.remove(id).map_err(graph_err)?;
                report.fired += 1;
            }
            Op::Dropout(a) => {
                let (p, operand, name) = (a.p, node.inputs()[0], node.name.clone());
                // A scalar for a rank-0 operand: `[1]` would broadcast it
                // to `[1]`, not the node's type.
                let shape = if node.ty.rank() == 0 { vec![] } else { vec![1] };
                let scale = add_weight(
                    NAME,
                    graph,
                    weights,
                    &format!("{name}.scale"),
                    WeightRole::NormWeight,
                    shape,
                    // The same f32 expression the interpreter multiplies by.
                    vec![1.0 - p],
                )?;
                graph.node_mut(id).op = Op::Binary(BinaryOp::Mul);
                graph
                    .set_inputs(id, vec![operand, scale])
                    .map_err(graph_err)?;
                report.fired += 1;
            }
            Op::Indexing(a) => {
                let operand = node.inputs()[0];
                let input = &graph.node(operand).ty.shape;
                if !a.keeps_order(input) {
                    continue;
                }
                if *input == node.ty.shape {
                    graph.replace_all_uses(id, operand).map_err(graph_err)?;
                    graph.remove(id).map_err(graph_err)?;
                } else {
                    let shape = node.ty.shape.clone();
                    graph.node_mut(id).op = Op::Reshape(ReshapeAttrs { shape });
                }
                report.fired += 1;
            }
            Op::BatchNorm(a) => {
                let producer = &graph.node(node.inputs()[0]).op;
                // fold-bn's job, unless the producer already ends in fused
                // work the batch norm must come after.
                if matches!(
                    producer,
                    Op::Conv2d(_) | Op::Linear(_) | Op::ConvTranspose2d(_)
                ) && producer.epilogue().is_some_and(|e| e.is_empty())
                {
                    continue;
                }
                let eps = a.eps;
                if bn_to_affine(graph, weights, id, eps)? {
                    report.fired += 1;
                } else {
                    report.notes.push(format!(
                        "{}: not made an affine: its parameters are computed",
                        graph.node(id).name
                    ));
                }
            }
            Op::Conv2d(a) => {
                let window = Window::Conv2d(a.clone());
                fold_into(graph, id, window, &mut report)?;
            }
            Op::MaxPool2d(a) => {
                let window = Window::MaxPool2d(a.clone());
                fold_into(graph, id, window, &mut report)?;
            }
            Op::AvgPool2d(a) => {
                let window = Window::AvgPool2d(a.clone());
                fold_into(graph, id, window, &mut report)?;
            }
            Op::Input(_)
            | Op::Weight(_)
            | Op::ConvTranspose2d(_)
            | Op::GroupNorm(_)
            | Op::LayerNorm(_)
            | Op::InstanceNorm(_)
            | Op::Activation(_)
            | Op::Unary(_)
            | Op::Prelu(_)
            | Op::GlobalAvgPool
            | Op::Linear(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Permute(_)
            | Op::Select(_)
            | Op::Binary(_)
            | Op::Concat(_)
            | Op::Softmax(_)
            | Op::LogSoftmax(_)
            | Op::Reduce(_)
            | Op::LocalResponseNorm(_)
            | Op::Rnn(_)
            | Op::Lstm(_)
            | Op::Elementwise(_)
            | Op::Im2Col(_)
            | Op::Gemm(_)
            | Op::Col2Im(_)
            | Op::DepthwiseConv2d(_)
            | Op::SeparableConv2d(_) => {}
            Op::MatMul | Op::Pad(_) | Op::Constant(_) | Op::Gru(_) | Op::Interpolate(_) => {}
            Op::WinogradInput(_) | Op::WinogradOutput(_) => {}
        }
    }
    report.fired += norms(graph, weights, &mut report.notes)?;
    report.fired += activations(graph, weights, &mut report.notes)?;
    Ok(report)
}

/// Replaces every spelled-out layer or instance norm by a `layer_norm`;
/// returns how many ops were removed.
fn norms(
    graph: &mut Graph,
    weights: &mut WeightSet,
    notes: &mut Vec<String>,
) -> Result<usize, PassError> {
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    let mut removed = 0;
    for root in graph.topo_order() {
        if !graph.contains(root) {
            continue;
        }
        let Some(found) = norm::recognise(NAME, graph, weights, root)? else {
            continue;
        };
        let note = format!(
            "{} ops spelling out a layer norm over the last {} dims became one",
            found.ops() + 1,
            found.attrs.normalized_dims
        );
        removed += found.ops();
        let node = graph.node_mut(root);
        node.op = Op::LayerNorm(found.attrs);
        node.note(NAME, &note);
        notes.push(format!("{}: {note}", node.name));
        graph.set_inputs(root, vec![found.x]).map_err(graph_err)?;
        // Users before operands, so each has lost its last user when removed.
        for id in found.dead {
            graph.remove(id).map_err(graph_err)?;
        }
        removed += absorb_affine(graph, weights, root)?;
    }
    for root in graph.topo_order() {
        if !graph.contains(root) {
            continue;
        }
        let Some(found) = norm::recognise_group(NAME, graph, weights, root)? else {
            continue;
        };
        let note = format!(
            "a reshape, instance_norm and reshape spelling out a group norm over {} groups became one",
            found.groups
        );
        let node = graph.node_mut(root);
        node.op = Op::GroupNorm(GroupNormAttrs {
            groups: found.groups,
            eps: found.eps,
            affine: false,
        });
        node.note(NAME, &note);
        notes.push(format!("{}: {note}", node.name));
        graph.set_inputs(root, vec![found.x]).map_err(graph_err)?;
        removed += found.dead.len();
        for id in found.dead {
            graph.remove(id).map_err(graph_err)?;
        }
        removed += absorb_affine(graph, weights, root)?;
    }
    Ok(removed)
}

/// Makes the `mul` by a constant that alone reads the (non-affine) norm
/// `ln`, and the `add` of one that may follow, the norm's own weight and
/// bias, as `nn.LayerNorm` and `nn.GroupNorm` have them: of the normalised
/// shape for a `layer_norm`, one value per channel (`[C, 1, ...]`) for a
/// `group_norm`. Returns how many ops were absorbed.
fn absorb_affine(
    graph: &mut Graph,
    weights: &mut WeightSet,
    ln: NodeId,
) -> Result<usize, PassError> {
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    let shape = graph.node(ln).ty.shape.clone();
    // The parameters' shape as the norm owns them, and the constant's
    // shape it accepts (aligned at the right, leading ones allowed).
    let (normalized, accepted) = match &graph.node(ln).op {
        Op::LayerNorm(a) if !a.affine => {
            let n = shape[shape.len() - a.normalized_dims..].to_vec();
            (n.clone(), n)
        }
        Op::GroupNorm(a) if !a.affine => {
            let c = shape.get(1).copied().unwrap_or(0);
            let mut per_channel = vec![c];
            per_channel.resize(shape.len().saturating_sub(1), 1);
            (vec![c], per_channel)
        }
        _ => return Ok(0),
    };
    // The constant operand of a binary `op` that is `id`'s only user, when
    // it has the accepted shape and the result `id`'s.
    let follower = |graph: &Graph, weights: &WeightSet, id: NodeId, op: BinaryOp| {
        let [user] = graph.users(id)[..] else {
            return Ok(None);
        };
        let node = graph.node(user);
        if node.op != Op::Binary(op) || node.ty.shape != shape || graph.outputs().contains(&id) {
            return Ok(None);
        }
        let &[a, b] = node.inputs() else {
            return Ok(None);
        };
        let other = if a == id { b } else { a };
        let Some(t) = weight_tensor(NAME, graph, weights, other)? else {
            return Ok(None);
        };
        let lead = t.shape().len().saturating_sub(accepted.len());
        let fits = t.shape()[lead..] == accepted[..] && t.shape()[..lead].iter().all(|&d| d == 1);
        Ok::<_, PassError>(fits.then(|| (user, t.data().to_vec())))
    };
    let Some((mul, gamma)) = follower(graph, weights, ln, BinaryOp::Mul)? else {
        return Ok(0);
    };
    let shift = follower(graph, weights, mul, BinaryOp::Add)?;
    let name = graph.node(ln).name.clone();
    let weight = add_weight(
        NAME,
        graph,
        weights,
        &format!("{name}.weight"),
        WeightRole::NormWeight,
        normalized.clone(),
        gamma,
    )?;
    let (last, beta) = match shift {
        Some((add, beta)) => (add, beta),
        None => (mul, vec![0.0; normalized.iter().product()]),
    };
    let bias = add_weight(
        NAME,
        graph,
        weights,
        &format!("{name}.bias"),
        WeightRole::NormBias,
        normalized,
        beta,
    )?;
    let x = graph.node(ln).inputs()[0];
    match &mut graph.node_mut(ln).op {
        Op::LayerNorm(a) => a.affine = true,
        Op::GroupNorm(a) => a.affine = true,
        _ => return Ok(0),
    }
    graph
        .set_inputs(ln, vec![x, weight, bias])
        .map_err(graph_err)?;
    graph.replace_all_uses(last, ln).map_err(graph_err)?;
    let absorbed = if last == mul { 1 } else { 2 };
    if last != mul {
        graph.remove(last).map_err(graph_err)?;
    }
    graph.remove(mul).map_err(graph_err)?;
    graph.node_mut(ln).note(
        NAME,
        "the scale and shift after it became its weight and bias",
    );
    Ok(absorbed)
}

/// Replaces every spelled-out activation by the activation; returns how many
/// ops were removed. Roots are tried outermost first, so the largest cone
/// is found before a part of it.
fn activations(
    graph: &mut Graph,
    weights: &WeightSet,
    notes: &mut Vec<String>,
) -> Result<usize, PassError> {
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    let mut removed = 0;
    for root in graph.topo_order().into_iter().rev() {
        if !graph.contains(root) {
            continue;
        }
        let Some(found) = recognise(NAME, graph, weights, root)? else {
            continue;
        };
        // The cone's other nodes had no user outside it; once the root
        // reads `x` directly they have none at all.
        let cone: Vec<NodeId> = graph.node(root).inputs().to_vec();
        let node = graph.node_mut(root);
        node.op = Op::Activation(found.activation);
        let note = format!(
            "{} ops spelling out {} became one",
            found.ops,
            found.activation.describe()
        );
        node.note(NAME, &note);
        notes.push(format!("{}: {note}", node.name));
        graph.set_inputs(root, vec![found.x]).map_err(graph_err)?;
        let mut dead = cone;
        while let Some(id) = dead.pop() {
            if id == found.x || !graph.contains(id) || !graph.users(id).is_empty() {
                continue;
            }
            if graph.outputs().contains(&id) || matches!(graph.node(id).op, Op::Weight(_)) {
                continue;
            }
            dead.extend(graph.node(id).inputs().iter().copied());
            graph.remove(id).map_err(graph_err)?;
        }
        removed += found.ops - 1;
    }
    Ok(removed)
}

/// Folds the `pad` window op `id` reads into its padding, if exact.
fn fold_into(
    graph: &mut Graph,
    id: NodeId,
    window: Window,
    report: &mut PassReport,
) -> Result<(), PassError> {
    match fold_pad(graph, id, window).map_err(|source| PassError::Graph { pass: NAME, source })? {
        Outcome::NoPad => {}
        Outcome::Folded => report.fired += 1,
        Outcome::Kept(why) => report.notes.push(why),
    }
    Ok(())
}

/// Rewrites batch norm `id` into `mul` (a new node) then `add` (the BN node
/// itself, so its name, location and users stay). Returns false, changing
/// nothing, when a parameter is not a weight.
fn bn_to_affine(
    graph: &mut Graph,
    weights: &mut WeightSet,
    id: NodeId,
    eps: f32,
) -> Result<bool, PassError> {
    let node = graph.node(id);
    let (x, name, loc, ty) = (
        node.inputs()[0],
        node.name.clone(),
        node.loc,
        node.ty.clone(),
    );
    let params = node.inputs()[1..].to_vec();
    let mut tensors = Vec::with_capacity(4);
    for &p in &params {
        match weight_tensor(NAME, graph, weights, p)? {
            Some(t) => tensors.push(t.data()),
            None => return Ok(false),
        }
    }
    let (scale, shift) = bn_scale_shift(tensors[0], tensors[1], tensors[2], tensors[3], eps);
    let scale: Vec<f32> = scale.into_iter().map(|v| v as f32).collect();
    let shift: Vec<f32> = shift.into_iter().map(|v| v as f32).collect();
    // [C] then one 1 per dim after the channels, so it broadcasts over them.
    let mut shape = vec![scale.len()];
    shape.resize(ty.rank().saturating_sub(1), 1);
    let scale = add_weight(
        NAME,
        graph,
        weights,
        &format!("{name}.scale"),
        WeightRole::NormWeight,
        shape.clone(),
        scale,
    )?;
    let shift = add_weight(
        NAME,
        graph,
        weights,
        &format!("{name}.shift"),
        WeightRole::NormBias,
        shape,
        shift,
    )?;
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    let mul = graph
        .add(Node::new(Op::Binary(BinaryOp::Mul), vec![x, scale], ty, name).at(loc))
        .map_err(graph_err)?;
    graph.node_mut(id).op = Op::Binary(BinaryOp::Add);
    graph.set_inputs(id, vec![mul, shift]).map_err(graph_err)?;
    Ok(true)
}
