//! The nnc compiler: the typed op graph (IR), AST-to-IR lowering with shape
//! inference, the verifier, the IR printer, model statistics, the reference
//! interpreter, and the `nnc` binary.
//!
//! Architecture invariant: this is the only crate that knows petgraph (and,
//! later, Cranelift). It depends on `nnc-frontend` for syntax and
//! diagnostics and on `nnc-runtime` for tensors and weights; neither of them
//! depends on it.

pub mod backend;
pub mod driver;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod shape;
pub mod stats;
pub mod verify;
pub mod weights;
