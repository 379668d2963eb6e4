//! `fold-constants`: evaluates what does not depend on the model inputs.
//!
//! - Every op whose operands are all weights is evaluated once with the
//!   reference interpreter and replaced by a new weight `<op name>.folded`
//!   holding its value; ops downstream of it are then considered in turn.
//! - A `mul` by a constant that is the data operand of exactly one `linear`
//!   or `conv2d` (the scale classic dropout leaves before a classifier, for
//!   example) is folded into that op's weight along its input-channel axis,
//!   `W'[o, i] = W[o, i] * s[i]` for a linear. For a conv the weight is
//!   `[out, C/groups, kh, kw]`, so column `c` of output channel `o` (in
//!   group `g`) is scaled by `s[g * C/groups + c]`; zero padding stays zero.
//!   The scale may be a scalar or vary along that axis only. Each refusal
//!   is a note.
//!
//! Precondition: a verified graph whose weight nodes all have tensors in the
//! weight set; `simplify` has turned classic dropout into a scale. A weight
//! tensor that another op also reads is copied rather than changed. The
//! evaluated values are the interpreter's exactly; folded scales preserve
//! values within 1e-6 relative. Replaced weights are left dead for `dce`.

use super::{
    add_weight, replace_weight, scale_weight, weight_tensor, Candidate, PassError, PassReport,
};
use crate::interp;
use crate::ir::{BinaryOp, Graph, Node, NodeId, Op, WeightRole};
use nnc_runtime::WeightSet;
use std::collections::HashMap;

/// The registry and CLI name.
pub const NAME: &str = "fold-constants";

/// Runs both rewrites over the graph once, in topological order; `fired`
/// counts evaluated ops plus folded scales.
pub fn fold_constants(graph: &mut Graph, weights: &mut WeightSet) -> Result<PassReport, PassError> {
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    let mut report = PassReport::default();
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let node = graph.node(id);
        if matches!(node.op, Op::Input(_) | Op::Weight(_)) {
            continue;
        }
        if !node.inputs().is_empty() && node.inputs().iter().all(|&i| is_weight(graph, i)) {
            let value = evaluate(graph, weights, id)?;
            let base = if node.name.is_empty() {
                "constant".to_string()
            } else {
                format!("{}.folded", node.name)
            };
            let (shape, data) = (value.shape().to_vec(), value.into_data());
            let constant = add_weight(
                NAME,
                graph,
                weights,
                &base,
                WeightRole::NormWeight,
                shape,
                data,
            )?;
            graph.replace_all_uses(id, constant).map_err(graph_err)?;
            graph.remove(id).map_err(graph_err)?;
            report.fired += 1;
        } else if matches!(node.op, Op::Binary(BinaryOp::Mul)) {
            match fold_scale_into_user(graph, weights, id)? {
                Candidate::Accepted(()) => report.fired += 1,
                Candidate::Refused(reason) => report.notes.push(format!(
                    "{}: scale not folded: {reason}",
                    graph.node(id).name
                )),
                Candidate::Irrelevant => {}
            }
        }
    }
    Ok(report)
}

fn is_weight(graph: &Graph, id: NodeId) -> bool {
    matches!(graph.node(id).op, Op::Weight(_))
}

/// The value of node `id`, whose operands are all weights, computed by the
/// interpreter on a graph of just that node and copies of its operands.
fn evaluate(
    graph: &Graph,
    weights: &WeightSet,
    id: NodeId,
) -> Result<nnc_runtime::Tensor, PassError> {
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    let node = graph.node(id);
    let mut single = Graph::new("constant");
    let mut copies: HashMap<NodeId, NodeId> = HashMap::new();
    let mut operands = Vec::with_capacity(node.inputs().len());
    for &operand in node.inputs() {
        let copy = match copies.get(&operand) {
            Some(&copy) => copy,
            None => {
                let w = graph.node(operand);
                let copy = single
                    .add(Node::new(
                        w.op.clone(),
                        Vec::new(),
                        w.ty.clone(),
                        w.name.clone(),
                    ))
                    .map_err(graph_err)?;
                copies.insert(operand, copy);
                copy
            }
        };
        operands.push(copy);
    }
    let op = single
        .add(Node::new(
            node.op.clone(),
            operands,
            node.ty.clone(),
            node.name.clone(),
        ))
        .map_err(graph_err)?;
    single.set_outputs(vec![op]);
    let mut values = interp::run(&single, weights, &[])
        .map_err(|source| PassError::Interp { pass: NAME, source })?;
    values.pop().ok_or_else(|| PassError::Interp {
        pass: NAME,
        source: interp::InterpError::MissingValue {
            node: node.name.clone(),
        },
    })
}

/// Folds `mul(x, constant)` into the one linear or conv2d that reads it.
/// `Accepted` means folded.
fn fold_scale_into_user(
    graph: &mut Graph,
    weights: &mut WeightSet,
    mul: NodeId,
) -> Result<Candidate<()>, PassError> {
    let node = graph.node(mul);
    let (a, b) = (node.inputs()[0], node.inputs()[1]);
    let (x, scale) = match (is_weight(graph, a), is_weight(graph, b)) {
        (false, true) => (a, b),
        (true, false) => (b, a),
        _ => return Ok(Candidate::Irrelevant),
    };
    let users = graph.users(mul);
    if graph.outputs().contains(&mul) {
        return Ok(Candidate::Refused("it is a graph output".into()));
    }
    let [user] = users[..] else {
        return Ok(Candidate::Refused(format!(
            "its output has {} users",
            users.len()
        )));
    };
    if node.ty != graph.node(x).ty {
        return Ok(Candidate::Refused(format!(
            "it broadcasts {} to {}",
            graph.node(x).ty,
            node.ty
        )));
    }
    let u = graph.node(user);
    let axis = if matches!(u.op, Op::Linear(_)) {
        node.ty.rank().saturating_sub(1)
    } else if matches!(u.op, Op::Conv2d(_)) {
        1
    } else {
        return Ok(Candidate::Refused(format!(
            "its user {} is {}, not linear or conv2d",
            u.name,
            u.op.name()
        )));
    };
    if u.inputs()[0] != mul || u.inputs()[1..].contains(&mul) {
        return Ok(Candidate::Refused(format!(
            "it is not only the data operand of {}",
            u.name
        )));
    }
    let scale_shape = &graph.node(scale).ty.shape;
    let lead = node.ty.rank() - scale_shape.len().min(node.ty.rank());
    let varies_elsewhere = scale_shape
        .iter()
        .enumerate()
        .any(|(i, &d)| d != 1 && i + lead != axis);
    if varies_elsewhere {
        return Ok(Candidate::Refused(format!(
            "the scale {} varies along more than the input-channel axis of {}",
            graph.node(scale).ty,
            u.name
        )));
    }
    let kernel = u.inputs()[1];
    let (Some(s), Some(w)) = (
        weight_tensor(NAME, graph, weights, scale)?,
        weight_tensor(NAME, graph, weights, kernel)?,
    ) else {
        return Ok(Candidate::Refused(format!(
            "the weight of {} is computed, not a weight",
            u.name
        )));
    };
    let factor = |c: usize| {
        f64::from(if s.len() == 1 {
            s.data()[0]
        } else {
            s.data()[c]
        })
    };
    let folded = if let Op::Conv2d(a) = &u.op {
        // Weight [out, C/groups, kh, kw]: column `c` of output channel `o`
        // reads input channel `o / (out/groups) * C/groups + c`.
        let cols = w.shape()[1];
        let out_per_group = (a.out_channels / a.groups.max(1)).max(1);
        scale_weight(w, |o, c| factor(o / out_per_group * cols + c))
    } else {
        // Linear weight [out, in]: column `c` reads input feature `c`.
        scale_weight(w, |_, c| factor(c))
    };
    let mut inputs = u.inputs().to_vec();
    inputs[0] = x;
    inputs[1] = replace_weight(NAME, graph, weights, user, kernel, folded)?;
    let graph_err = |source| PassError::Graph { pass: NAME, source };
    graph.set_inputs(user, inputs).map_err(graph_err)?;
    graph.remove(mul).map_err(graph_err)?;
    Ok(Candidate::Accepted(()))
}
