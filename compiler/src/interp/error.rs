//! Errors of the reference interpreter.
//!
//! Kernels report inconsistent operands as [`InterpError::Operands`];
//! [`crate::interp::run`] wraps them in [`InterpError::Node`] so that the
//! message names the node that failed.

use nnc_runtime::{format_shape, TensorError};

/// Why the interpreter could not evaluate a graph or a kernel.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpError {
    /// The caller passed the wrong number of model inputs.
    #[error("the graph has {expected} inputs but {found} were given")]
    InputCount { expected: usize, found: usize },
    /// A model input has a shape other than the one the graph declares.
    #[error(
        "input `{name}` has shape {} but the graph expects {}",
        format_shape(.found),
        format_shape(.expected)
    )]
    InputShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The weight set has no tensor for a weight node.
    #[error("weight `{name}` of shape {} is missing from the weight set", format_shape(.expected))]
    MissingWeight { name: String, expected: Vec<usize> },
    /// A weight tensor has a shape other than the one the graph declares.
    #[error(
        "weight `{name}` has shape {} but the graph expects {}",
        format_shape(.found),
        format_shape(.expected)
    )]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A kernel was given operands whose shapes or attributes do not fit together.
    #[error("invalid operands for {op}: {message}")]
    Operands { op: &'static str, message: String },
    /// A node has a different number of operands than its op takes.
    #[error("{op} takes {expected} operands but node `{node}` has {found}")]
    OperandCount {
        node: String,
        op: &'static str,
        expected: usize,
        found: usize,
    },
    /// A node produced a value whose shape differs from its type, which means
    /// shape inference and the interpreter disagree.
    #[error(
        "node `{node}` ({op}) produced shape {} but its type is {}",
        format_shape(.found),
        format_shape(.expected)
    )]
    OutputShape {
        node: String,
        op: &'static str,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A node uses a value that was never computed, which happens only when
    /// the graph has a cycle (the topological order leaves cycles out).
    #[error("node `{node}` uses a value that was never computed; the graph may have a cycle")]
    MissingValue { node: String },
    /// A kernel failed while evaluating a node of the graph.
    #[error("while running node `{node}` ({op}): {source}")]
    Node {
        node: String,
        op: &'static str,
        #[source]
        source: Box<InterpError>,
    },
    /// A tensor could not be built (its element count overflows).
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// Shorthand for an [`InterpError::Operands`] error.
pub(crate) fn operands(op: &'static str, message: impl Into<String>) -> InterpError {
    InterpError::Operands {
        op,
        message: message.into(),
    }
}
