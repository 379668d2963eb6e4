//! Errors of the runtime crate.

use std::path::PathBuf;

/// A tensor whose buffer does not match its shape.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    /// The buffer length differs from the product of the shape.
    #[error("a tensor of shape {} needs {expected} elements but has {found}", crate::format_shape(.shape))]
    LengthMismatch {
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    /// The element count of the shape does not fit in memory addresses.
    #[error("the element count of shape {} overflows", crate::format_shape(.shape))]
    Overflow { shape: Vec<usize> },
    /// A uniform range `[low, high)` that is empty or not finite.
    #[error("cannot draw values from [{low}, {high}): the bounds must be finite and `low` must be less than `high`")]
    InvalidRange { low: f32, high: f32 },
}

/// Reading or writing a file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", .path.display())]
pub struct IoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A weights file that cannot be loaded, or weights that do not fit a model.
///
/// Loading stops at the first error; [`crate::check_weights`] collects every
/// missing, unexpected and mis-shaped tensor at once.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file is missing or unreadable, or cannot be written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The bytes are not a safetensors file (bad header, inconsistent offsets,
    /// trailing bytes).
    #[error("`{}` is not a safetensors file: {reason}", .path.display())]
    NotSafetensors { path: PathBuf, reason: String },
    /// The file is a safetensors file whose end is missing, typically an
    /// interrupted download or copy.
    #[error(
        "the weights file `{}` is truncated: it needs at least {expected} bytes but has {found}",
        .path.display()
    )]
    Truncated {
        path: PathBuf,
        /// Bytes the header promises (a lower bound when the header itself is cut).
        expected: usize,
        /// Bytes actually present.
        found: usize,
    },
    /// A tensor has an element type nnc cannot convert to `f32`.
    #[error(
        "tensor `{name}` in `{}` has dtype {dtype}, which nnc cannot load; \
         save it as f32 (f64, f16 and bf16 are converted on load)",
        .path.display()
    )]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        /// The safetensors dtype name, lowercased (`i64`, `u8`, ...).
        dtype: String,
    },
    /// A tensor whose shape and data disagree.
    #[error("tensor `{name}` in `{}` is invalid: {source}", .path.display())]
    InvalidTensor {
        path: PathBuf,
        name: String,
        #[source]
        source: TensorError,
    },
    /// The model needs a tensor the weights file does not have.
    #[error(
        "tensor `{name}` of shape {} is missing from the weights file",
        crate::format_shape(.expected)
    )]
    MissingTensor { name: String, expected: Vec<usize> },
    /// The weights file has a tensor the model does not use.
    #[error(
        "the weights file has a tensor `{name}` of shape {} that the model does not use",
        crate::format_shape(.shape)
    )]
    UnexpectedTensor { name: String, shape: Vec<usize> },
    /// A tensor exists on both sides with different shapes.
    #[error(
        "tensor `{name}` has shape {} in the weights file but the model expects {}",
        crate::format_shape(.found),
        crate::format_shape(.expected)
    )]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor, or all of them, would take more memory than allowed.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
    /// The safetensors encoder rejected the weights while saving.
    #[error("cannot encode the weights as safetensors: {reason}")]
    Encode { reason: String },
}

/// A `.npy` file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file is missing or unreadable, or cannot be written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The bytes are not a `.npy` file (bad magic string or header).
    #[error("`{}` is not a .npy file: {reason}", .path.display())]
    NotNpy { path: PathBuf, reason: String },
    /// The array has an element type other than float32 or float64.
    #[error(
        "`{}` holds an array of dtype `{dtype}` but nnc reads only float32 (`<f4`) and float64 (`<f8`) arrays",
        .path.display()
    )]
    UnsupportedDtype {
        path: PathBuf,
        /// The numpy dtype descriptor, such as `<i8`.
        dtype: String,
    },
    /// The array is stored column-major.
    #[error(
        "`{}` is stored in fortran order; save it in C order, e.g. `np.save(path, np.ascontiguousarray(a))`",
        .path.display()
    )]
    FortranOrder { path: PathBuf },
    /// The data section is shorter than the header's shape requires.
    #[error(
        "`{}` is truncated: its shape needs {expected} data bytes but the file has {found}",
        .path.display()
    )]
    Truncated {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    /// The shape in the header cannot be a tensor on this machine.
    #[error("`{}` has an unusable shape: {source}", .path.display())]
    InvalidShape {
        path: PathBuf,
        #[source]
        source: TensorError,
    },
}
