//! The graph as Graphviz DOT (`nnc dump-ir --format=dot`), for looking at
//! a model's structure: `nnc dump-ir --format=dot m.nn | dot -Tsvg > m.svg`.
//!
//! One box per op, labelled like the text printer (value, op, attributes,
//! type, binding name) plus the passes' notes; inputs and outputs are
//! ellipses. Weights are left out, since they would outnumber the ops; an
//! op lists its weights by name instead. A fused residual is a dashed edge.

use super::graph::{Graph, NodeId};
use super::op::Op;
use super::print::Names;
use std::fmt::Write;

/// Prints `graph` as a DOT `digraph`.
pub fn to_dot(graph: &Graph) -> String {
    let names = Names::new(graph);
    let id = |n: NodeId| format!("n{}", n.index());
    let mut out = format!("digraph \"{}\" {{\n", escape(&graph.name));
    out.push_str("    node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    for n in graph.topo_order() {
        let node = graph.node(n);
        match &node.op {
            Op::Weight(_) => continue,
            Op::Input(_) => {
                let label = format!("{} : {}", names.get(n), node.ty);
                let _ = writeln!(
                    out,
                    "    {} [shape=ellipse, label={}];",
                    id(n),
                    quote(&label)
                );
                continue;
            }
            op => {
                let mut lines = vec![format!("{} = {}", names.get(n), op.name())];
                let weights: Vec<&str> = node
                    .inputs()
                    .iter()
                    .filter(|&&i| matches!(graph.node(i).op, Op::Weight(_)))
                    .map(|&i| names.get(i))
                    .collect();
                if !weights.is_empty() {
                    lines.push(weights.join(", "));
                }
                let attrs: Vec<String> = op
                    .attributes()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if !attrs.is_empty() {
                    lines.push(attrs.join(", "));
                }
                lines.push(node.ty.to_string());
                if !node.name.is_empty() {
                    lines.push(format!("# {}", node.name));
                }
                lines.extend(node.notes.iter().map(|note| format!("# {note}")));
                let _ = writeln!(out, "    {} [label={}];", id(n), quote(&lines.join("\n")));
            }
        }
        let residual = node.op.epilogue().is_some_and(|e| e.residual);
        let last = node.inputs().len().saturating_sub(1);
        for (slot, &operand) in node.inputs().iter().enumerate() {
            if matches!(graph.node(operand).op, Op::Weight(_)) {
                continue;
            }
            let style = if residual && slot == last {
                " [style=dashed, label=\"residual\"]"
            } else {
                ""
            };
            let _ = writeln!(out, "    {} -> {}{style};", id(operand), id(n));
        }
    }
    for (i, &o) in graph.outputs().iter().enumerate() {
        let _ = writeln!(
            out,
            "    out{i} [shape=ellipse, label={}];\n    {} -> out{i};",
            quote(&format!("output {}", names.get(o))),
            id(o)
        );
    }
    out.push_str("}\n");
    out
}

/// Backslashes and quotes escaped for a DOT string.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A DOT label literal whose lines are left-justified: each line, the last
/// included, ends in `\l`.
fn quote(text: &str) -> String {
    format!("\"{}\\l\"", escape(text).replace('\n', "\\l"))
}
