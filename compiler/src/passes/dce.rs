//! `dce`: removes every node the graph outputs do not depend on, and the
//! tensors of the weight nodes it removes from the weight set.
//!
//! Precondition: none beyond a verified graph. Model inputs are kept even
//! when unused, because callers pass one tensor per declared input.
//! Preserves the outputs exactly: only nodes no output reads are removed.

use super::{PassError, PassReport};
use crate::ir::{Graph, Op};
use nnc_runtime::WeightSet;
use std::collections::HashSet;

/// The registry and CLI name.
pub const NAME: &str = "dce";

/// Removes dead nodes and unused weights; `fired` counts removed nodes.
pub fn dce(graph: &mut Graph, weights: &mut WeightSet) -> Result<PassReport, PassError> {
    let mut live = HashSet::new();
    let mut stack: Vec<_> = graph.outputs().to_vec();
    stack.extend_from_slice(graph.inputs());
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend_from_slice(graph.node(id).inputs());
        }
    }
    // Users come after their operands in topological order, so removing in
    // reverse order never removes a node that a dead node still reads.
    let mut report = PassReport::default();
    let mut removed_weights = 0;
    for id in graph.topo_order().into_iter().rev() {
        if live.contains(&id) {
            continue;
        }
        let node = graph
            .remove(id)
            .map_err(|source| PassError::Graph { pass: NAME, source })?;
        if let Op::Weight(w) = &node.op {
            weights.remove(&w.name);
            removed_weights += 1;
        }
        report.fired += 1;
    }
    if report.fired > 0 {
        report.notes.push(format!(
            "removed {} node{}, {removed_weights} of them weights",
            report.fired,
            if report.fired == 1 { "" } else { "s" }
        ));
    }
    Ok(report)
}
