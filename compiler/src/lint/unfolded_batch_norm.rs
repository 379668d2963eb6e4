//! `unfolded_batch_norm`: a `batch_norm` that `fold-bn` cannot fold into
//! the convolution or linear layer before it, so it costs a kernel (a
//! per-channel scale and shift over the whole map) at inference.
//!
//! `fold-bn` folds a batch norm whose operand is the output of a `conv2d`,
//! `conv_transpose2d` or `linear` (features on dim 1) that nothing else
//! reads and that is not a model output. The lint warns where one of those
//! would be folded but for an activation in between (`conv -> relu ->
//! batch_norm`) or a second reader of the producer. `identity` and inverted
//! `dropout` are looked through, as `simplify` removes them before
//! `fold-bn` runs. A batch norm after any other op (a concat, a residual
//! add) has nothing to fold into and is not reported.

use super::{also_at, kind, names, warning, Kind};
use crate::ir::{DropoutMode, Graph, NodeId};
use nnc_frontend::Diagnostic;

/// The registry name.
pub const NAME: &str = "unfolded_batch_norm";

/// One warning per batch norm that a reordering or a rewired reader would
/// let `fold-bn` fold.
pub fn unfolded_batch_norm(graph: &Graph) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        match kind(&node.op) {
            Kind::BatchNorm => {}
            Kind::Input
            | Kind::Fixed
            | Kind::Conv(_)
            | Kind::ConvTranspose(_)
            | Kind::Linear
            | Kind::MaxPool(_)
            | Kind::AvgPool(_)
            | Kind::GlobalPool
            | Kind::Norm
            | Kind::Activation
            | Kind::Arithmetic
            | Kind::Dropout(_)
            | Kind::Identity
            | Kind::Pad(_)
            | Kind::Flatten
            | Kind::Other => continue,
        }
        let Some(&operand) = node.inputs().first() else {
            continue;
        };
        let mut activations = Vec::new();
        let mut at = skip_removed(graph, operand);
        while let Kind::Activation = kind(&graph.node(at).op) {
            activations.push(at);
            match graph.node(at).inputs().first() {
                Some(&x) => at = skip_removed(graph, x),
                None => break,
            }
        }
        if !foldable_producer(graph, at) {
            continue;
        }
        let producer = graph.node(at);
        if let Some(&activation) = activations.first() {
            let act = graph.node(activation);
            let d = warning(
                node,
                format!(
                    "batch norm `{}` after the activation `{}` cannot fold into `{}`",
                    node.name, act.name, producer.name
                ),
                "a separate kernel at inference".into(),
            );
            let d = also_at(d, act, "the activation in between".into());
            let d = also_at(
                d,
                producer,
                format!("`{}` would fold into these weights", node.name),
            );
            found.push(
                d.with_note(format!(
                    "fold-bn folds a batch_norm into the {} that produces its operand (W' = W * gamma / sqrt(var + eps)); across an activation it cannot, so `{}` scales and shifts the whole map once more",
                    producer.op.name(),
                    node.name
                ))
                .with_help(format!(
                    "train with the batch norm before the activation (`{}` -> batch_norm -> `{}`, the usual order), which folds; the order changes what the model computes, so weights trained this way need this order",
                    producer.name, act.name
                )),
            );
            continue;
        }
        // The producer and the identities or dropouts between it and the
        // batch norm: what another reader of any of them sees is not
        // normalised.
        let mut before = vec![at];
        let mut step = operand;
        while step != at {
            before.push(step);
            match graph.node(step).inputs().first() {
                Some(&x) => step = x,
                None => break,
            }
        }
        let others: Vec<NodeId> = before
            .iter()
            .flat_map(|&b| graph.users(b))
            .filter(|u| *u != id && !before.contains(u))
            .collect();
        let is_output = before.iter().any(|b| graph.outputs().contains(b));
        if others.is_empty() && !is_output {
            continue;
        }
        let readers: Vec<&str> = others
            .iter()
            .map(|&u| graph.node(u).name.as_str())
            .collect();
        let why = match (readers.is_empty(), is_output) {
            (false, false) => format!(
                "which {} also read{}",
                names(readers.iter().copied()),
                if readers.len() == 1 { "s" } else { "" }
            ),
            (false, true) => format!(
                "which {} also read{} and which is a model output",
                names(readers.iter().copied()),
                if readers.len() == 1 { "s" } else { "" }
            ),
            (true, _) => "which is also a model output".to_string(),
        };
        let mut d = warning(
            node,
            format!(
                "batch norm `{}` cannot fold into `{}`, {why}",
                node.name, producer.name
            ),
            "a separate kernel at inference".into(),
        );
        let read_by = if readers.is_empty() {
            "also a model output, before normalisation".to_string()
        } else {
            format!(
                "read before normalisation by {}",
                names(readers.iter().copied())
            )
        };
        d = also_at(d, producer, read_by);
        for &u in &others {
            d = also_at(
                d,
                graph.node(u),
                format!("reads `{}`, not `{}`", producer.name, node.name),
            );
        }
        let help = if readers.is_empty() {
            format!("if the normalised value is meant, output `{}` instead of `{}`; then `{}` folds into `{}`", node.name, producer.name, node.name, producer.name)
        } else {
            format!(
                "if {} should read the normalised value, make {} read `{}`; then `{}` folds into `{}`",
                names(readers.iter().copied()),
                if readers.len() == 1 { "it" } else { "them" },
                node.name,
                node.name,
                producer.name
            )
        };
        found.push(
            d.with_note(format!(
                "folding would change {}, so fold-bn leaves `{}` as a per-channel scale and shift over the whole map",
                if readers.is_empty() {
                    format!("the model output `{}`", producer.name)
                } else {
                    format!("what {} read{}", names(readers.iter().copied()), if readers.len() == 1 { "s" } else { "" })
                },
                node.name
            ))
            .with_help(help),
        );
    }
    found
}

/// `id`, or the operand of the `identity` and inverted `dropout` ops it
/// passes through (`simplify` removes them before `fold-bn`).
fn skip_removed(graph: &Graph, mut id: NodeId) -> NodeId {
    loop {
        let node = graph.node(id);
        let through = match kind(&node.op) {
            Kind::Identity => true,
            Kind::Dropout(a) => a.mode == DropoutMode::Inverted,
            Kind::Input
            | Kind::Fixed
            | Kind::Conv(_)
            | Kind::ConvTranspose(_)
            | Kind::Linear
            | Kind::MaxPool(_)
            | Kind::AvgPool(_)
            | Kind::GlobalPool
            | Kind::BatchNorm
            | Kind::Norm
            | Kind::Activation
            | Kind::Arithmetic
            | Kind::Pad(_)
            | Kind::Flatten
            | Kind::Other => false,
        };
        match node.inputs().first() {
            Some(&x) if through => id = x,
            Some(_) | None => return id,
        }
    }
}

/// A `conv2d`, `conv_transpose2d`, or a `linear` with features on dim 1:
/// the ops `fold-bn` folds into.
fn foldable_producer(graph: &Graph, id: NodeId) -> bool {
    let node = graph.node(id);
    match kind(&node.op) {
        Kind::Conv(_) | Kind::ConvTranspose(_) => true,
        Kind::Linear => node.ty.rank() == 2,
        Kind::Input
        | Kind::Fixed
        | Kind::MaxPool(_)
        | Kind::AvgPool(_)
        | Kind::GlobalPool
        | Kind::BatchNorm
        | Kind::Norm
        | Kind::Activation
        | Kind::Arithmetic
        | Kind::Dropout(_)
        | Kind::Identity
        | Kind::Pad(_)
        | Kind::Flatten
        | Kind::Other => false,
    }
}
