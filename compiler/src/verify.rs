//! The verifier: checks the invariants every stage must keep. A failure is
//! a compiler bug, so each error names the offending node and prints it.
//!
//! Invariants: the graph is acyclic; inputs and weights have no operands;
//! every other node's stored type equals what shape inference gives for its
//! operands; weight names are unique; the model has outputs.

use crate::ir::print::{node_line, Names};
use crate::ir::{Graph, Op};
use crate::shape::infer;
use std::collections::HashSet;

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid IR at `{node}`: {message}\n    {line}")]
pub struct VerifyError {
    /// The node's name (binding path).
    pub node: String,
    pub message: String,
    /// The node as the printer shows it.
    pub line: String,
}

/// Checks `graph`; returns every broken invariant.
pub fn verify(graph: &Graph) -> Vec<VerifyError> {
    let names = Names::new(graph);
    let mut errors = Vec::new();
    let order = graph.topo_order();
    if order.len() != graph.len() {
        let ordered: HashSet<_> = order.iter().copied().collect();
        for id in graph.node_ids() {
            if !ordered.contains(&id) {
                errors.push(VerifyError {
                    node: graph.node(id).name.clone(),
                    message: "node is on a cycle".into(),
                    line: node_line(graph, &names, id),
                });
            }
        }
    }
    let mut weights = HashSet::new();
    for &id in &order {
        let node = graph.node(id);
        let mut fail = |message: String| {
            errors.push(VerifyError {
                node: node.name.clone(),
                message,
                line: node_line(graph, &names, id),
            })
        };
        match &node.op {
            Op::Input(_) | Op::Weight(_) => {
                if !node.inputs().is_empty() {
                    fail(format!("`{}` must have no operands", node.op.name()));
                }
                if let Op::Weight(w) = &node.op {
                    if !weights.insert(w.name.clone()) {
                        fail(format!("weight name `{}` is used twice", w.name));
                    }
                }
            }
            op => {
                let types: Vec<_> = node.inputs().iter().map(|&i| &graph.node(i).ty).collect();
                match infer(op, &types) {
                    Ok(ty) if ty == node.ty => {}
                    Ok(ty) => fail(format!(
                        "stored type {} differs from inferred type {ty}",
                        node.ty
                    )),
                    Err(e) => fail(format!("shape inference fails: {}", e.message)),
                }
            }
        }
    }
    if graph.outputs().is_empty() {
        errors.push(VerifyError {
            node: graph.name.clone(),
            message: "the graph has no outputs".into(),
            line: String::new(),
        });
    }
    for &out in graph.outputs() {
        if !graph.contains(out) {
            errors.push(VerifyError {
                node: graph.name.clone(),
                message: "an output refers to a removed node".into(),
                line: String::new(),
            });
        }
    }
    errors
}
