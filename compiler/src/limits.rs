//! Memory limits on a typed graph: every value, and the weights together,
//! must fit in the [`MemoryLimit`] before anything is allocated for them.
//!
//! Runs after shape inference and verification (the driver calls it on
//! every loaded model). The arena is checked later, by the backend, once
//! the memory plan knows its size.

use crate::ir::{Graph, NodeId, Op};
use nnc_frontend::Diagnostic;
use nnc_runtime::limits::tensor_bytes;
use nnc_runtime::{format_bytes, MemoryLimit};

/// Checks every value of `graph` and the sum of its weights against
/// `limit`. A value over the limit is reported where it is defined, but
/// only where the blow-up starts: a value whose operands are over the limit
/// too follows from them and is counted in a note instead.
pub fn check_graph(graph: &Graph, limit: MemoryLimit) -> Vec<Diagnostic> {
    let over = |id| {
        let ty = &graph.node(id).ty;
        let bytes = tensor_bytes(&ty.shape, ty.dtype.size_in_bytes());
        (bytes > u128::from(limit.bytes())).then_some(bytes)
    };
    let mut diagnostics = Vec::new();
    let mut followers = 0usize;
    let mut weights: Vec<(u128, NodeId)> = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        if let Op::Weight(_) = node.op {
            weights.push((
                tensor_bytes(&node.ty.shape, node.ty.dtype.size_in_bytes()),
                id,
            ));
        }
        let Some(bytes) = over(id) else {
            continue;
        };
        if node.inputs().iter().any(|&i| over(i).is_some()) {
            followers += 1;
            continue;
        }
        let kind = match node.op {
            Op::Weight(_) => "weight",
            Op::Input(_) => "input",
            _ => "value",
        };
        let size = format_bytes(u64::try_from(bytes).unwrap_or(u64::MAX));
        let mut d = Diagnostic::error(format!(
            "{kind} `{}` of type {} needs {size}, more than the memory limit of {}",
            node.name,
            node.ty,
            format_bytes(limit.bytes())
        ));
        if let Some(loc) = node.loc {
            d = d.with_primary(loc.span, format!("this {kind} needs {size}"));
        }
        diagnostics.push(d.with_note(RAISE));
    }
    if followers > 0 {
        if let Some(last) = diagnostics.pop() {
            let (values, are) = if followers == 1 {
                ("value", "is")
            } else {
                ("values", "are")
            };
            let from = if diagnostics.is_empty() {
                "it"
            } else {
                "these"
            };
            diagnostics.push(last.with_note(format!(
                "{followers} later {values} computed from {from} {are} over the limit too"
            )));
        }
    }
    let total = weights
        .iter()
        .fold(0u128, |sum, &(bytes, _)| sum.saturating_add(bytes));
    if total > u128::from(limit.bytes()) {
        let mut d = Diagnostic::error(format!(
            "the weights of model `{}` need {} together, more than the memory limit of {}",
            graph.name,
            format_bytes(u64::try_from(total).unwrap_or(u64::MAX)),
            format_bytes(limit.bytes())
        ));
        // The largest weights are where a smaller model would start.
        weights.sort_by_key(|&(bytes, id)| (std::cmp::Reverse(bytes), id));
        let mut largest = Vec::new();
        for &(bytes, id) in weights.iter().take(3) {
            let node = graph.node(id);
            let size = format_bytes(u64::try_from(bytes).unwrap_or(u64::MAX));
            match node.loc {
                Some(loc) => {
                    d = d.with_secondary(loc.span, format!("`{}` needs {size}", node.name))
                }
                None => largest.push(format!("`{}` ({size})", node.name)),
            }
        }
        if !largest.is_empty() {
            d = d.with_note(format!("the largest weights: {}", largest.join(", ")));
        }
        diagnostics.push(d.with_note(RAISE));
    }
    diagnostics
}

/// The note every limit error ends with.
const RAISE: &str =
    "raise the limit with `--max-memory SIZE` (by default, the memory this machine has available)";
