//! Shared pieces of the fuzz targets: the checks a `.nn` source must pass,
//! and the structure-aware random graph of `graph_diff` ([`random_graph`]).
//!
//! A fuzz target reports a bug by panicking, so this crate panics where the
//! library crates return errors: only on broken invariants (a verifier
//! failure, a diagnostic that does not render, compiled code that disagrees
//! with the interpreter), never on an input that is merely invalid.

pub mod random_graph;

use nnc_compiler::driver::compile_source;
use nnc_compiler::ir::Graph;
use nnc_compiler::{lint, stats};
use nnc_frontend::diagnostic::render_all;
use nnc_frontend::SourceFile;

/// Compiles `text` as `nnc check` would and renders whatever comes back.
/// Returns the graph if it compiled. Panics on a verifier failure or on
/// diagnostics that do not render.
pub fn check_source(name: &str, text: &str) -> Option<Graph> {
    let source = SourceFile::new(name, text);
    match compile_source(&source) {
        Ok(graph) => {
            let warnings = lint::check(&graph, &lint::Levels::default());
            let _ = render_all(&warnings, &source);
            let _ = stats::stats(&graph);
            let _ = graph.to_string();
            Some(graph)
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "failed without diagnostics");
            let rendered = render_all(&diagnostics, &source);
            assert!(
                !rendered.contains("internal compiler error"),
                "the verifier rejected the lowered graph:\n{rendered}\nfor:\n{text}"
            );
            None
        }
    }
}
