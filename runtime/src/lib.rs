//! The nnc runtime: everything a compiled model needs to run. Tensors,
//! dtypes, weights files (safetensors), `.npy` I/O and deterministic weight
//! initialisation; the `Executable` contract, its arena and thread pool;
//! and the native kernels the compiled code calls ([`kernels`]).
//!
//! Architecture invariant: this crate is the leaf of nnc. It depends on no
//! other nnc crate and knows nothing of the DSL, the IR, petgraph or
//! Cranelift. The frontend and compiler depend on it, never the reverse.

pub mod bundle;
pub mod capi;
mod convert;
pub mod denormals;
pub mod error;
pub mod executable;
pub mod init;
pub mod kernels;
pub mod limits;
pub mod npy;
pub mod pages;
pub mod phases;
mod pool;
pub mod tensor;
pub mod weights;

pub use denormals::FlushDenormals;
pub use error::{IoError, NpyError, TensorError, WeightError};
pub use executable::{Binding, Executable, KernelFn, RunError, Step};
pub use init::{fnv1a64, random_input, seeded_uniform, seeded_uniform_part, DEFAULT_SEED};
pub use limits::{format_bytes, try_zeroed, LimitError, MemoryLimit};
pub use npy::{read_npy, write_npy};
pub use phases::Phases;
pub use pool::Pool;
pub use tensor::{checked_numel, format_shape, DType, Tensor};
pub use weights::{
    check_weights, load_safetensors, load_safetensors_bytes, load_safetensors_bytes_within,
    load_safetensors_within, save_safetensors, to_safetensors_bytes, WeightSet,
};
