//! The native kernels compiled models call at run time: the GEMM behind
//! every matrix product ([`gemm`], driven through the descriptors of
//! [`tasks`]), the recurrent cell steps ([`cell`]), the depthwise, direct
//! and Winograd convolutions, and row-wise pooling.
//!
//! The compiler builds each kernel's descriptor once (packing its weights
//! as the kernel reads them) and emits calls to the `extern "C"` entry
//! points with the descriptor's address; nothing here knows the IR or the
//! code generator. Each kernel picks AVX-512, AVX2 + FMA or portable code
//! by the [`gemm::MicroKernel`] the CPU has, detected at run time.

pub mod affine;
pub mod bilinear;
pub mod cell;
pub mod constants;
pub mod depthwise_blocked;
pub mod depthwise_rows;
pub mod direct_conv;
pub mod entry;
pub mod gemm;
pub mod gemv;
pub mod im2col;
pub mod math;
pub mod pool_rows;
mod row_lanes;

pub use row_lanes::has_vector_rows;
pub mod tasks;
pub mod winograd;

/// Why a kernel descriptor could not be built from what the compiler gave
/// it: always a compiler bug (the compiler checks shapes before it asks).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A weight or bias shorter than the kernel's shape needs.
    #[error("{what} has {len} elements, fewer than {need}")]
    TooShort {
        what: &'static str,
        len: usize,
        need: String,
    },
    /// A shape or parameter the kernel does not implement.
    #[error("{0}")]
    Unsupported(String),
}

/// Where a buffer a kernel reads or writes lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// At this offset (in floats) of the arena passed to each call, so that
    /// one compiled model can run on several arenas at once.
    Arena(usize),
    /// At this absolute address: constant data the compiled model keeps
    /// alive for as long as its code can run.
    Const(usize),
}

impl Base {
    /// The same buffer `elems` floats further on.
    pub fn offset(self, elems: usize) -> Base {
        match self {
            Base::Arena(o) => Base::Arena(o + elems),
            Base::Const(p) => Base::Const(p + 4 * elems),
        }
    }

    /// The address of element `index` of the buffer, for a run on `arena`.
    pub fn address(self, arena: *mut f32, index: usize) -> *mut f32 {
        match self {
            Base::Arena(o) => arena.wrapping_add(o + index),
            Base::Const(p) => (p as *mut f32).wrapping_add(index),
        }
    }
}
