//! From a `.nn` file to a verified graph: read, parse, lower, verify. An
//! `.onnx` file is imported first, printed as `.nn` text and then compiled
//! like any other, so diagnostics point at lines of that text.

use crate::ir::Graph;
use crate::lower::lower;
use crate::verify::verify;
use nnc_frontend::onnx::{self, ImportError};
use nnc_frontend::{parse, print_file, Diagnostic, SourceFile, Span};
use nnc_runtime::{MemoryLimit, WeightSet};
use std::path::Path;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The source has errors; render them with the source file.
    #[error("{} error{} in `{}`", .diagnostics.len(), if .diagnostics.len() == 1 { "" } else { "s" }, .source_file.name())]
    Diagnostics {
        source_file: SourceFile,
        diagnostics: Vec<Diagnostic>,
    },
    /// An ONNX model could not be imported.
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// A loaded model: its source (for rendering later diagnostics) and graph.
#[derive(Clone, Debug)]
pub struct Model {
    pub source: SourceFile,
    pub graph: Graph,
}

/// Parses, lowers and verifies a source text.
pub fn compile_source(source: &SourceFile) -> Result<Graph, Vec<Diagnostic>> {
    if u32::try_from(source.text().len()).is_err() {
        return Err(vec![Diagnostic::error("source file larger than 4 GiB")]);
    }
    let file = parse(source.text()).map_err(|d| vec![d])?;
    let graph = lower(&file, source)?;
    let problems = verify(&graph);
    if problems.is_empty() {
        Ok(graph)
    } else {
        // Lowering produced an invalid graph: a compiler bug, reported as such.
        Err(problems
            .into_iter()
            .map(|p| {
                Diagnostic::error(format!("internal compiler error: {p}"))
                    .with_primary(Span::DUMMY, "")
                    .with_note("this is a bug in nnc; please report it with the model")
            })
            .collect())
    }
}

/// [`compile_source`], then every value and the weights together checked
/// against `limit` ([`crate::limits::check_graph`]).
pub fn compile_source_within(
    source: &SourceFile,
    limit: MemoryLimit,
) -> Result<Graph, Vec<Diagnostic>> {
    let graph = compile_source(source)?;
    let problems = crate::limits::check_graph(&graph, limit);
    if problems.is_empty() {
        Ok(graph)
    } else {
        Err(problems)
    }
}

/// Reads and compiles a `.nn` file within the machine's available memory.
pub fn load(path: &Path) -> Result<Model, LoadError> {
    load_within(path, MemoryLimit::default())
}

/// Reads and compiles a `.nn` file whose values and weights fit in `limit`.
pub fn load_within(path: &Path, limit: MemoryLimit) -> Result<Model, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let source = SourceFile::new(path.display().to_string(), text);
    match compile_source_within(&source, limit) {
        Ok(graph) => Ok(Model { source, graph }),
        Err(diagnostics) => Err(LoadError::Diagnostics {
            source_file: source,
            diagnostics,
        }),
    }
}

/// A model read from either format, with the weights an ONNX model carries.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub model: Model,
    /// The imported weights of an `.onnx` model; `None` for `.nn` files.
    pub weights: Option<WeightSet>,
}

/// True if the path names an ONNX model (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Reads and compiles a `.nn` file, or imports and compiles an `.onnx` file,
/// within the machine's available memory.
pub fn load_any(path: &Path) -> Result<Loaded, LoadError> {
    load_any_with(path, &onnx::Options::default())
}

/// [`load_any`] with the importer's options; `options.max_memory` limits
/// a `.nn` model too.
pub fn load_any_with(path: &Path, options: &onnx::Options) -> Result<Loaded, LoadError> {
    if is_onnx(path) {
        import(path, options)
    } else {
        Ok(Loaded {
            model: load_within(path, options.max_memory)?,
            weights: None,
        })
    }
}

/// Imports an `.onnx` file with options, prints it as `.nn` text and
/// compiles that text.
pub fn import(path: &Path, options: &onnx::Options) -> Result<Loaded, LoadError> {
    let imported = onnx::import_file_with(path, options)?;
    let text = print_file(&imported.file);
    let source = SourceFile::new(format!("{} (imported)", path.display()), text);
    match compile_source_within(&source, options.max_memory) {
        Ok(graph) => Ok(Loaded {
            model: Model { source, graph },
            weights: Some(imported.weights),
        }),
        Err(diagnostics) => Err(LoadError::Diagnostics {
            source_file: source,
            diagnostics,
        }),
    }
}
