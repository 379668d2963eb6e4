//! The ONNX importer: an ONNX model becomes the same AST as a `.nn` file
//! (one lowering path), plus the weights its ops own.
//!
//! Weights are named as the `.nn` model expects (`<binding>.weight`, ...).
//! A binding is named after the module path that its weights' ONNX names
//! imply when they look like PyTorch's (`layer1.0.conv1.weight` makes the
//! binding `layer1.0.conv1`), else after the node. Weights are converted to
//! nnc's layouts at import (Gemm's `B` transposed, recurrent gates
//! reordered), so the `.safetensors` file holds exactly the tensors of the
//! printed model.
//!
//! | file | concern |
//! |---|---|
//! | `proto.rs` | the protobuf messages (generated, committed) |
//! | `model.rs` | decoding, the opset check, tensors and external data |
//! | `constant.rs` | constants and the ops folded on them at import |
//! | `emit.rs` | building the AST, naming bindings |
//! | `convert/` | one file per family of ONNX ops |
//! | `error.rs` | what can go wrong, every unsupported node listed |

mod constant;
mod convert;
mod emit;
mod error;
mod model;
pub mod proto;
#[cfg(test)]
mod tests;

pub use convert::{lookup, supported, OnnxOp, OPS};
pub use error::{ImportError, Unsupported};
pub use model::{MAX_OPSET, MIN_OPSET};

use crate::ast;
use model::DataDir;
use nnc_runtime::{MemoryLimit, WeightSet};
use prost::bytes::{Buf, Bytes};
use std::collections::BTreeMap;
use std::path::Path;

/// An imported model: the `.nn` AST and the weights it owns.
#[derive(Clone, Debug)]
pub struct Imported {
    pub file: ast::File,
    pub weights: WeightSet,
    /// The model's default-domain opset.
    pub opset: i64,
}

/// Choices the model leaves open.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Sizes of symbolic input dims (`batch` in `f32[batch, 3, 224, 224]`),
    /// by name; nnc compiles static shapes, so every symbol needs one.
    pub dims: BTreeMap<String, usize>,
    /// The most memory one initializer or folded constant, or all the
    /// weights together, may take; larger ones are refused before they
    /// are decoded. Default: the machine's available memory.
    pub max_memory: MemoryLimit,
}

/// Imports an ONNX file; external data is read relative to its directory.
pub fn import_file(path: &Path) -> Result<Imported, ImportError> {
    import_file_with(path, &Options::default())
}

/// [`import_file`] with options.
pub fn import_file_with(path: &Path, options: &Options) -> Result<Imported, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Mapped rather than read: the tensors' raw data is decoded as slices
    // of the map (`raw_data` is a `Bytes`), so the weights are not copied
    // into a buffer as large as the file and again into the message.
    // SAFETY: the map is read-only; it lives as long as the decoded message
    // (which holds slices of it) and is dropped once the weights are
    // converted to owned tensors. Another process truncating the file
    // meanwhile is outside what nnc can guard against (as for any program
    // that maps its inputs).
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let bytes = Bytes::from_owner(map);
    import_buf(bytes.clone(), path, dir, options, Some(bytes))
}

/// Imports an ONNX model from its bytes. `path` names it in errors and, for
/// the model name, when the graph has none; `data_dir` is where external
/// data lives (`None`: a model with external data is an error).
pub fn import_bytes(
    bytes: &[u8],
    path: &Path,
    data_dir: Option<&Path>,
) -> Result<Imported, ImportError> {
    import_bytes_with(bytes, path, data_dir, &Options::default())
}

/// [`import_bytes`] with options.
pub fn import_bytes_with(
    bytes: &[u8],
    path: &Path,
    data_dir: Option<&Path>,
    options: &Options,
) -> Result<Imported, ImportError> {
    import_buf(bytes, path, data_dir, options, None)
}

/// Imports a model from a buffer: decoding from a [`Bytes`] keeps the
/// tensors' raw data as slices of it; from a `&[u8]` it is copied.
/// `mapped` is the buffer again when it maps the model file, so that the
/// pages of each weight can be given back once it is decoded.
fn import_buf(
    bytes: impl Buf,
    path: &Path,
    data_dir: Option<&Path>,
    options: &Options,
    mapped: Option<Bytes>,
) -> Result<Imported, ImportError> {
    let (model, opset) = model::decode(bytes, path)?;
    let Some(graph) = model.graph.as_ref() else {
        return Err(ImportError::Invalid {
            path: path.to_path_buf(),
            reason: "the model has no graph".into(),
        });
    };
    let dir = DataDir {
        dir: data_dir.map(Path::to_path_buf),
        limit: options.max_memory,
        mapped,
    };
    let converted = convert::Converter::new(opset, dir, &options.dims).run(graph);
    if !converted.problems.is_empty() {
        return Err(ImportError::Unsupported {
            path: path.to_path_buf(),
            nodes: converted.problems,
        });
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let raw = if graph.name().is_empty() {
        stem
    } else {
        graph.name()
    };
    let name = emit::Names::default().fresh_ident(raw, "imported");
    Ok(Imported {
        file: emit::file(&name, converted.body),
        weights: converted.weights,
        opset,
    })
}
