//! Recognises an activation that an exporter wrote out as several
//! elementwise ops (`x * sigmoid(x)`, `x * relu6(x + 3) / 6`, GELU with
//! `erf` or `tanh`, ...), for `simplify`.
//!
//! Rather than one matcher per spelling (exporters write each function
//! several ways: `x / sqrt 2` or `x * 0.7071`, the `0.5` first or last),
//! the candidate is evaluated: a cone of elementwise ops rooted at a node,
//! whose intermediate values have no other user, computing a function of
//! one tensor `x` and scalar constants, is run on probe values and compared
//! with every activation. A function that agrees with one at every probe
//! (within `1e-5` relative to the value or to the probe where that is
//! below 1, far below the gap between any two activations: exact and tanh
//! GELU differ by up to 5e-4; zeros of the same sign) is that activation.

use crate::interp::{activation_scalar, binary_scalar, unary_scalar};
use crate::ir::{Activation, Graph, NodeId, Op};
use crate::passes::{weight_tensor, PassError};
use nnc_runtime::WeightSet;
use std::collections::HashMap;

/// Where the probes lie: the activations' curved parts are within a few
/// units of 0, and the tails check the asymptotes.
fn probes() -> Vec<f32> {
    let mut p: Vec<f32> = (-64..=64).map(|i| i as f32 / 8.0).collect();
    p.extend([
        -30.0, -20.0, -12.5, 12.5, 20.0, 30.0, 0.1, -0.1, 1e-3, -1e-3,
    ]);
    p
}

/// One operand of a cone node: the free input, a scalar constant, or
/// another node of the cone.
#[derive(Clone, Copy)]
enum Leaf {
    X,
    Scalar(f32),
    Inner(NodeId),
}

/// A spelled-out activation found at a root: the activation, the free
/// input `x`, and how many ops it replaces.
pub struct Found {
    pub activation: Activation,
    pub x: NodeId,
    pub ops: usize,
}

/// The activation the elementwise cone rooted at `root` computes, if it is
/// one (and more than one op).
pub fn recognise(
    pass: &'static str,
    graph: &Graph,
    weights: &WeightSet,
    root: NodeId,
) -> Result<Option<Found>, PassError> {
    if !is_elementwise(&graph.node(root).op) {
        return Ok(None);
    }
    let ty = graph.node(root).ty.clone();
    // The cone, in the order found (each node before its operands).
    let mut cone = vec![root];
    let mut operands: HashMap<NodeId, Vec<Leaf>> = HashMap::new();
    let mut x: Option<NodeId> = None;
    let mut i = 0;
    while i < cone.len() {
        let id = cone[i];
        i += 1;
        let mut leaves = Vec::new();
        for &o in graph.node(id).inputs() {
            if let Some(t) = weight_tensor(pass, graph, weights, o)? {
                match t.data() {
                    [v] => leaves.push(Leaf::Scalar(*v)),
                    _ => return Ok(None),
                }
                continue;
            }
            let node = graph.node(o);
            let inner = is_elementwise(&node.op)
                && graph.users(o) == [id]
                && !graph.outputs().contains(&o)
                && node.ty == ty;
            if inner {
                cone.push(o);
                leaves.push(Leaf::Inner(o));
            } else if node.ty != ty || x.is_some_and(|x| x != o) {
                // A second free input, or one of another shape.
                return Ok(None);
            } else {
                x = Some(o);
                leaves.push(Leaf::X);
            }
        }
        operands.insert(id, leaves);
    }
    let Some(x) = x else {
        return Ok(None);
    };
    if cone.len() < 2 {
        return Ok(None);
    }
    let probes = probes();
    let values: Vec<f32> = probes
        .iter()
        .map(|&p| evaluate(graph, &cone, &operands, p))
        .collect();
    let matched = candidates().into_iter().find(|act| {
        probes.iter().zip(&values).all(|(&p, &v)| {
            let want = activation_scalar(*act, p);
            // A zero of the other sign is not the same function: a later
            // reciprocal or division turns it into the other infinity
            // (`elu(elu(x, alpha=0))` is `-0` where `relu` is `+0`).
            let zeros_agree =
                v != 0.0 || want != 0.0 || v.is_sign_negative() == want.is_sign_negative();
            // Within 1e-5 of the value, or of `|p|` where that is smaller
            // than 1: a look-alike that differs by a constant near 0
            // (`clip(x, min=1e-5, max=6)` against `relu6`, 1e-5 apart for
            // every negative `x`) is another function, which an absolute
            // 1e-5 let through.
            let scale = want.abs().max(p.abs().min(1.0));
            zeros_agree && (v - want).abs() <= 1e-5 * scale
        })
    });
    Ok(matched.map(|activation| Found {
        activation,
        x,
        ops: cone.len(),
    }))
}

/// Every activation a spelled-out form is compared with: each at its
/// defaults, and GELU's tanh form.
fn candidates() -> Vec<Activation> {
    let mut all = Activation::ALL.to_vec();
    all.push(Activation::Gelu { tanh: true });
    all
}

/// The ops a cone may hold: elementwise functions of their operands.
fn is_elementwise(op: &Op) -> bool {
    matches!(op, Op::Activation(_) | Op::Unary(_) | Op::Binary(_))
}

/// The cone's value at `x = p`, evaluated from its leaves up.
fn evaluate(graph: &Graph, cone: &[NodeId], operands: &HashMap<NodeId, Vec<Leaf>>, p: f32) -> f32 {
    let mut value: HashMap<NodeId, f32> = HashMap::new();
    // Operands come after their users in `cone`, so walk it backwards.
    for &id in cone.iter().rev() {
        let args: Vec<f32> = operands
            .get(&id)
            .map(|leaves| {
                leaves
                    .iter()
                    .map(|leaf| match *leaf {
                        Leaf::X => p,
                        Leaf::Scalar(v) => v,
                        Leaf::Inner(o) => value.get(&o).copied().unwrap_or(f32::NAN),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let v = match (&graph.node(id).op, args.as_slice()) {
            (Op::Activation(a), [a0]) => activation_scalar(*a, *a0),
            (Op::Unary(f), [a0]) => unary_scalar(*f, *a0),
            (Op::Binary(b), [a0, a1]) => binary_scalar(*b, *a0, *a1),
            _ => f32::NAN,
        };
        value.insert(id, v);
    }
    cone.first()
        .and_then(|root| value.get(root))
        .copied()
        .unwrap_or(f32::NAN)
}
