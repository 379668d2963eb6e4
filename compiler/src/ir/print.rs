//! The IR printer: the one textual form of a graph. `Display`, `nnc
//! dump-ir`, verifier messages and snapshots all use it.
//!
//! Values are renumbered `%0, %1, ...` in topological order so the text does
//! not depend on node ids; inputs print as `%name` and weights as `@path`.

use super::graph::{Graph, NodeId};
use super::op::Op;
use std::collections::HashMap;
use std::fmt::{self, Write};

/// Value names in printed form, one per node.
pub struct Names {
    names: HashMap<NodeId, String>,
}

impl Names {
    /// Numbers the graph's values in topological order.
    pub fn new(graph: &Graph) -> Names {
        let mut names = HashMap::new();
        let mut next = 0usize;
        for id in graph.topo_order() {
            let node = graph.node(id);
            let name = match &node.op {
                Op::Input(a) => format!("%{}", a.name),
                Op::Weight(a) => format!("@{}", a.name),
                _ => {
                    next += 1;
                    format!("%{}", next - 1)
                }
            };
            names.insert(id, name);
        }
        Names { names }
    }

    /// The printed name of a value.
    pub fn get(&self, id: NodeId) -> &str {
        self.names.get(&id).map_or("%?", String::as_str)
    }
}

/// Prints one node's line (without indentation or newline).
pub fn node_line(graph: &Graph, names: &Names, id: NodeId) -> String {
    let node = graph.node(id);
    let mut line = String::new();
    match &node.op {
        Op::Input(_) => {
            let _ = write!(line, "input {} : {}", names.get(id), node.ty);
        }
        Op::Weight(_) => {
            let _ = write!(line, "weight {} : {}", names.get(id), node.ty);
        }
        op => {
            let operands: Vec<&str> = node.inputs().iter().map(|&i| names.get(i)).collect();
            let _ = write!(
                line,
                "{} = {}({})",
                names.get(id),
                op.name(),
                operands.join(", ")
            );
            let attrs = op.attributes();
            if !attrs.is_empty() {
                let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(line, " {{{}}}", attrs.join(", "));
            }
            let _ = write!(line, " : {}", node.ty);
            if !node.name.is_empty() {
                let _ = write!(line, "  # {}", node.name);
                if let Some(loc) = node.loc {
                    let _ = write!(line, " @ {}:{}", loc.line, loc.col);
                }
            }
        }
    }
    if let (Op::Input(a), Some(loc)) = (&node.op, node.loc) {
        let _ = write!(line, "  # {} @ {}:{}", a.name, loc.line, loc.col);
    }
    for note in &node.notes {
        let _ = write!(line, "\n        # {note}");
    }
    line
}

/// Prints a whole graph: inputs, weights, ops in topological order, outputs.
pub fn print_graph(graph: &Graph) -> String {
    let names = Names::new(graph);
    let order = graph.topo_order();
    let mut out = format!("graph {} {{\n", graph.name);
    let sections: [&dyn Fn(&Op) -> bool; 3] = [
        &|op| matches!(op, Op::Input(_)),
        &|op| matches!(op, Op::Weight(_)),
        &|op| !matches!(op, Op::Input(_) | Op::Weight(_)),
    ];
    for (i, belongs) in sections.iter().enumerate() {
        let ids: Vec<NodeId> = order
            .iter()
            .copied()
            .filter(|&id| belongs(&graph.node(id).op))
            .collect();
        if ids.is_empty() {
            continue;
        }
        if i > 0 {
            out.push('\n');
        }
        for id in ids {
            let _ = writeln!(out, "    {}", node_line(graph, &names, id));
        }
    }
    let outputs: Vec<&str> = graph.outputs().iter().map(|&o| names.get(o)).collect();
    let _ = writeln!(out, "\n    output {}", outputs.join(", "));
    out.push_str("}\n");
    out
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_graph(self))
    }
}
