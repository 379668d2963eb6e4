//! The intermediate representation: a graph of typed ops.

pub mod dot;
pub mod elementwise;
pub mod graph;
pub mod indexing;
pub mod interpolate;
pub mod op;
pub mod padding;
pub mod print;
pub mod reduce;

pub use elementwise::*;
pub use graph::{Graph, GraphError, Node, NodeId, SourceLoc, TensorType};
pub use indexing::*;
pub use interpolate::{CoordinateTransform, InterpolateAttrs, InterpolateMode, NearestRounding};
pub use op::*;
pub use padding::Padding;
pub use reduce::*;
