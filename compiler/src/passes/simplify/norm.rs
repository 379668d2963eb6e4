//! Recognises a normalisation that an exporter wrote out as reductions and
//! arithmetic, for `simplify`: PyTorch's exports before opset 17 write
//! `nn.LayerNorm` (and hand-written instance or layer norms) as
//!
//! ```text
//! m = mean(x, dims=D, keepdim=true)      d = x - m
//! v = mean(d ^ 2, dims=D, keepdim=true)  y = d / sqrt(v + eps)
//! ```
//!
//! When `D` is the last `k` dims of `x`, that is `layer_norm(x, dims=k,
//! eps=eps, affine=false)` (over `[2, 3]` of `[N, C, H, W]`, an instance
//! norm). `d ^ 2` may be written `pow(d, exponent=2)` or `d * d`, and the
//! division a multiplication by `reciprocal(sqrt(...))`.

use crate::ir::{
    BinaryOp, Graph, LayerNormAttrs, NodeId, Op, ReduceAttrs, Reduction, UnaryFunction,
};
use crate::passes::{weight_tensor, PassError};
use nnc_runtime::WeightSet;

/// A normalisation found at a root: the op that replaces it, its operand,
/// and the nodes that become dead.
pub struct Found {
    pub attrs: LayerNormAttrs,
    pub x: NodeId,
    /// Users before their operands.
    pub dead: Vec<NodeId>,
}

impl Found {
    /// How many ops the one `layer_norm` replaces, less one.
    pub fn ops(&self) -> usize {
        self.dead.len()
    }
}

/// The layer norm that `root` (the division, or multiplication by the
/// reciprocal) computes, if it is one.
pub fn recognise(
    pass: &'static str,
    graph: &Graph,
    weights: &WeightSet,
    root: NodeId,
) -> Result<Option<Found>, PassError> {
    let node = graph.node(root);
    let (d, denominator) = match (&node.op, node.inputs()) {
        (Op::Binary(BinaryOp::Div), &[d, s]) => (d, s),
        (Op::Binary(BinaryOp::Mul), &[d, r]) => match op_of(graph, r) {
            Some((Op::Unary(UnaryFunction::Reciprocal), &[s])) => (d, s),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    // d = x - mean(x, D)
    let Some((Op::Binary(BinaryOp::Sub), &[x, m])) = op_of(graph, d) else {
        return Ok(None);
    };
    let Some((Op::Reduce(mean), &[mx])) = op_of(graph, m) else {
        return Ok(None);
    };
    if mx != x || !is_mean(mean) {
        return Ok(None);
    }
    // sqrt(mean(d^2, D) + eps), the reciprocal's operand or the divisor.
    let Some((Op::Unary(UnaryFunction::Sqrt), &[a])) = op_of(graph, denominator) else {
        return Ok(None);
    };
    let Some((Op::Binary(BinaryOp::Add), &[v, e])) = op_of(graph, a) else {
        return Ok(None);
    };
    let Some(eps) = weight_tensor(pass, graph, weights, e)?.and_then(|t| match t.data() {
        [eps] if *eps >= 0.0 => Some(*eps),
        _ => None,
    }) else {
        return Ok(None);
    };
    let Some((Op::Reduce(variance), &[sq])) = op_of(graph, v) else {
        return Ok(None);
    };
    if !is_mean(variance) || variance.dims != mean.dims {
        return Ok(None);
    }
    let squares = match op_of(graph, sq) {
        Some((Op::Unary(UnaryFunction::Pow { exponent }), &[base])) => {
            *exponent == 2.0 && base == d
        }
        Some((Op::Binary(BinaryOp::Mul), &[p, q])) => p == d && q == d,
        _ => false,
    };
    if !squares {
        return Ok(None);
    }
    // The result has x's type (an `eps` of higher rank, for one, would
    // broadcast it to more dims), and the normalised dims are the last ones.
    if node.ty != graph.node(x).ty {
        return Ok(None);
    }
    let rank = graph.node(x).ty.rank();
    let k = mean.dims.len();
    if k == 0 || mean.dims != (rank - k..rank).collect::<Vec<_>>() {
        return Ok(None);
    }
    // Every intermediate value is read only inside the pattern.
    let mut dead = Vec::new();
    if denominator != node.inputs()[1] {
        dead.push(node.inputs()[1]);
    }
    dead.extend([denominator, a, v, sq]);
    let d_users = graph.users(d);
    let inside = |u: &NodeId| *u == root || *u == sq;
    let single = dead
        .iter()
        .all(|&id| graph.users(id).len() == 1 && !graph.outputs().contains(&id));
    if !single || !d_users.iter().all(inside) || graph.outputs().contains(&d) {
        return Ok(None);
    }
    if graph.users(m).len() != 1 || graph.outputs().contains(&m) {
        return Ok(None);
    }
    dead.extend([d, m]);
    Ok(Some(Found {
        attrs: LayerNormAttrs {
            normalized_dims: k,
            eps,
            affine: false,
        },
        x,
        dead,
    }))
}

/// A mean with its dims kept, as both reductions of the pattern are.
fn is_mean(a: &ReduceAttrs) -> bool {
    a.function == Reduction::Mean && a.keepdim
}

/// The op of node `id` and its operands.
fn op_of(graph: &Graph, id: NodeId) -> Option<(&Op, &[NodeId])> {
    graph.get(id).map(|n| (&n.op, n.inputs()))
}

/// A group norm that an exporter wrote as PyTorch does before opset 18:
/// `reshape(x, [N, G, -1])`, an `instance_norm` whose weight is all ones
/// and bias all zeros (or none), and a `reshape` back to `x`'s shape.
pub struct GroupFound {
    pub groups: usize,
    pub eps: f32,
    pub x: NodeId,
    /// Users before their operands.
    pub dead: Vec<NodeId>,
}

/// The group norm that the reshape `root` ends, if it is one.
pub fn recognise_group(
    pass: &'static str,
    graph: &Graph,
    weights: &WeightSet,
    root: NodeId,
) -> Result<Option<GroupFound>, PassError> {
    let Some((Op::Reshape(_), &[norm])) = op_of(graph, root) else {
        return Ok(None);
    };
    let Some((Op::InstanceNorm(a), operands)) = op_of(graph, norm) else {
        return Ok(None);
    };
    let Some(&inner) = operands.first() else {
        return Ok(None);
    };
    // The affine parameters, if any, change nothing.
    if a.affine {
        let [_, scale, shift] = operands else {
            return Ok(None);
        };
        let is_all = |id: NodeId, v: f32| -> Result<bool, PassError> {
            Ok(weight_tensor(pass, graph, weights, id)?
                .is_some_and(|t| t.data().iter().all(|&x| x == v)))
        };
        if !is_all(*scale, 1.0)? || !is_all(*shift, 0.0)? {
            return Ok(None);
        }
    }
    let Some((Op::Reshape(_), &[x])) = op_of(graph, inner) else {
        return Ok(None);
    };
    let (shape, grouped) = (&graph.node(x).ty.shape, &graph.node(inner).ty.shape);
    let [n, groups, _] = grouped[..] else {
        return Ok(None);
    };
    let channels = shape.get(1).copied().unwrap_or(0);
    let fits = graph.node(root).ty.shape == *shape
        && shape.len() >= 3
        && shape[0] == n
        && groups >= 1
        && channels % groups == 0;
    let single = [norm, inner]
        .iter()
        .all(|&id| graph.users(id).len() == 1 && !graph.outputs().contains(&id));
    if !fits || !single {
        return Ok(None);
    }
    Ok(Some(GroupFound {
        groups,
        eps: a.eps,
        x,
        dead: vec![norm, inner],
    }))
}
