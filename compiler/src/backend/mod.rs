//! The backend: from a graph to machine code over one planned arena.
//!
//! [`compile`] runs the pass pipeline, plans every value's place in the
//! arena ([`memory`]), builds one kernel per op ([`kernels`]) as a
//! Cranelift function ([`jit`]) that may call the runtime's native kernels
//! (`nnc_runtime::kernels`: the GEMM, the recurrent cells, the depthwise,
//! direct and Winograd convolutions), and returns an
//! `nnc_runtime::Executable` with a report of what it did.

pub mod activation;
pub mod bundle;
pub mod compile;
pub mod jit;
pub mod kernels;
pub mod memory;
pub mod roofline;

pub use compile::{compile, Compiled, LayerReport, Options, Report};

use crate::passes::PassError;

/// Why a graph could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Pass(#[from] PassError),
    /// A convolution reached the backend without `lower-conv`.
    #[error("node `{node}` ({op}) was not lowered; run the whole pass pipeline first")]
    NotLowered { node: String, op: &'static str },
    /// A graph the backend cannot run yet.
    #[error("node `{node}`: {what} is not supported by the compiled backend")]
    Unsupported { node: String, what: String },
    /// An epilogue activation the native micro-kernels lack (`fuse` asks
    /// before fusing, so this is a compiler bug).
    #[error("the native kernels have no `{0}` activation")]
    NoNativeActivation(&'static str),
    /// The arena, the weights or the packed constants would take more
    /// memory than allowed.
    #[error(transparent)]
    Memory(#[from] nnc_runtime::LimitError),
    /// A bundle's `--prefix` that cannot start a C symbol.
    #[error("`{0}` cannot prefix a C symbol: use ASCII letters, digits and `_`, not starting with a digit")]
    BadPrefix(String),
    /// A native kernel's descriptor could not be built: a compiler bug.
    #[error("building a native kernel: {0}")]
    Kernel(#[from] nnc_runtime::kernels::KernelError),
    /// Cranelift rejected a kernel: a compiler bug.
    #[error("code generation failed: {0}")]
    Codegen(String),
}
