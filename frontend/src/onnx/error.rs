//! Why an ONNX model could not be imported.

use std::fmt;
use std::path::PathBuf;

/// One node (or graph input) that nnc cannot import, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsupported {
    /// The node's name, or its first output's when it has none.
    pub node: String,
    /// The ONNX op type (`Conv`), or `input` for a graph input.
    pub op_type: String,
    /// The opset of the node's domain.
    pub opset: i64,
    /// What nnc cannot honour, lowercase, no trailing period.
    pub why: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node `{}` ({}, opset {}): {}",
            self.node, self.op_type, self.opset, self.why
        )
    }
}

/// Lines of a list of unsupported nodes, one per node, indented.
fn list(nodes: &[Unsupported]) -> String {
    let lines: Vec<String> = nodes.iter().map(|n| format!("  {n}")).collect();
    lines.join("\n")
}

/// Errors of the ONNX importer.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The model (or an external data file) could not be read.
    #[error("cannot read `{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ONNX protobuf.
    #[error("`{}` is not an ONNX model: {reason}", .path.display())]
    Decode { path: PathBuf, reason: String },
    /// The model is valid protobuf but not a graph nnc can read (no graph,
    /// an opset outside the supported range, a malformed tensor).
    #[error("cannot import `{}`: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
    /// Nodes nnc cannot import; every one is listed, not only the first.
    #[error(
        "cannot import `{}`: {} unsupported node{}\n{}",
        .path.display(),
        .nodes.len(),
        if .nodes.len() == 1 { "" } else { "s" },
        list(.nodes)
    )]
    Unsupported {
        path: PathBuf,
        nodes: Vec<Unsupported>,
    },
}
