//! The nnc frontend: the `.nn` language (lexer, parser, AST with byte spans,
//! a printer that round-trips) and rustc-style diagnostics.
//!
//! Architecture invariant: this crate knows syntax only. It never sees the IR,
//! petgraph or Cranelift; it depends on `nnc-runtime` at most (for dtypes and
//! tensors in imported models). The compiler lowers the AST this crate
//! produces; the ONNX importer (`onnx`) produces the same AST, so there is
//! one lowering path.

pub mod ast;
pub mod diagnostic;
pub mod lexer;
pub mod onnx;
pub mod parser;
pub mod printer;
pub mod span;

pub use diagnostic::{Diagnostic, Label, Severity};
pub use parser::parse;
pub use printer::print_file;
pub use span::{SourceFile, Span};
