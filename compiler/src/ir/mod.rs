//! The intermediate representation: a graph of typed ops.

pub mod dot;
pub mod elementwise;
pub mod graph;
pub mod op;
pub mod padding;
pub mod print;
pub mod winograd;

pub use elementwise::*;
pub use graph::{Graph, GraphError, Node, NodeId, SourceLoc, TensorType};
pub use op::*;
pub use padding::Padding;
