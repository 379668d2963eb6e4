//! Every `extern "C"` function compiled code calls, declared once with its
//! parameter list as data: the native kernels' entry points, and the
//! runtime function an ahead-of-time bundle's `nnc_model_open` calls.
//!
//! The code generator builds each call's signature from these declarations
//! and checks the call site's arguments against them, so a wrong argument
//! list is a compile error of the model rather than undefined behaviour at
//! run time; and it names each function by [`EntryPoint::symbol`], which
//! the JIT resolves to [`EntryPoint::address`] and an object file leaves to
//! the linker. The [`entry_points!`] declaration also checks, when the
//! runtime itself is built, that each Rust function has exactly the
//! declared types.

use super::affine::{nnc_affine, Affine};
use super::bilinear::{nnc_bilinear, Bilinear};
use super::cell::PackedCell;
use super::depthwise_blocked::{nnc_depthwise_blocked, DepthwiseBlocked};
use super::depthwise_rows::{nnc_depthwise_rows, DepthwiseRows};
use super::direct_conv::{nnc_direct_conv, DirectConv};
use super::gemv::{nnc_gemv, Gemv};
use super::im2col::{nnc_im2col, Im2Col};
use super::pool_rows::{nnc_pool_rows, PoolRows};
use super::tasks::{
    nnc_cell_part, nnc_cell_step, nnc_gemm_panel, nnc_gemm_task, nnc_linear_rows, nnc_lrn_exact,
    nnc_scratch, GemmTask, LinearRows, PanelGemm,
};
use super::winograd::{nnc_winograd_input, nnc_winograd_output, WinogradInput, WinogradOutput};
use crate::bundle::nnc_bundle_open;
use crate::capi::Model;
use crate::KernelFn;

/// How a parameter or result passes through the C ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// A pointer (any pointee).
    Ptr,
    /// A `usize` (`size_t`).
    Usize,
    /// An `f32` (`float`).
    F32,
    /// An `i32` (`int`).
    I32,
}

/// The [`Abi`] class of a Rust parameter type.
pub trait AbiType {
    const ABI: Abi;
}

impl<T> AbiType for *const T {
    const ABI: Abi = Abi::Ptr;
}

impl<T> AbiType for *mut T {
    const ABI: Abi = Abi::Ptr;
}

impl AbiType for usize {
    const ABI: Abi = Abi::Usize;
}

impl AbiType for f32 {
    const ABI: Abi = Abi::F32;
}

impl AbiType for i32 {
    const ABI: Abi = Abi::I32;
}

/// One function compiled code may call.
#[derive(Clone, Copy, Debug)]
pub struct EntryPoint {
    /// The function's name, as a linker sees it.
    pub symbol: &'static str,
    pub params: &'static [Abi],
    pub result: Option<Abi>,
    /// The function's address in this process.
    address: fn() -> usize,
}

impl EntryPoint {
    /// The function's address in this process, for a JIT.
    pub fn address(&self) -> usize {
        (self.address)()
    }

    /// The position of this function in [`ENTRY_POINTS`].
    pub fn index(&self) -> usize {
        ENTRY_POINTS
            .iter()
            .position(|e| e.symbol == self.symbol)
            .unwrap_or(usize::MAX)
    }
}

/// Declares each entry point as a constant and lists them all in
/// [`ENTRY_POINTS`]. The address function assigns the Rust function to a
/// pointer of the declared type, so a declaration that disagrees with the
/// function does not compile.
macro_rules! entry_points {
    ($($(#[$doc:meta])* $name:ident = $f:ident($($p:ty),*) $(-> $r:ty)?;)*) => {
        $(
            $(#[$doc])*
            pub const $name: EntryPoint = EntryPoint {
                symbol: stringify!($f),
                params: &[$(<$p as AbiType>::ABI),*],
                result: entry_points!(@result $($r)?),
                address: {
                    fn address() -> usize {
                        // SAFETY: nothing is called: this only names the
                        // function's pointer type (its contract is the
                        // function's own `# Safety`).
                        let f: unsafe extern "C" fn($($p),*) $(-> $r)? = $f;
                        f as usize
                    }
                    address
                },
            };
        )*

        /// Every entry point, in a fixed order.
        pub const ENTRY_POINTS: &[EntryPoint] = &[$($name),*];
    };
    (@result) => { None };
    (@result $r:ty) => { Some(<$r as AbiType>::ABI) };
}

entry_points! {
    /// `(task, arena, t)`: task `t` of a [`GemmTask`].
    GEMM_TASK = nnc_gemm_task(*const GemmTask, *mut f32, usize);
    /// `(spec, b, c, residual, n, m0, m1)`: rows of a [`PanelGemm`].
    GEMM_PANEL = nnc_gemm_panel(*const PanelGemm, *const f32, *mut f32, *const f32, usize, usize, usize);
    /// `(spec, x, out, t)`: block `t` of a [`LinearRows`].
    LINEAR_ROWS = nnc_linear_rows(*const LinearRows, *const f32, *mut f32, usize);
    /// `(spec, w, x, out, residual, t)`: block `t` of a [`Gemv`], reading
    /// the weight `w` in place.
    GEMV = nnc_gemv(*const Gemv, *const f32, *const f32, *mut f32, *const f32, usize);
    /// `(cell, i, x, p, h, c, previous, out)`: one step of a recurrent layer.
    CELL_STEP = nnc_cell_step(
        *const PackedCell, usize, *const f32, *mut f32, *mut f32, *mut f32, *mut f32, *mut f32
    );
    /// `(cell, sync, part, parts, x, p, h0, h1, c, out, out_stride)`: one
    /// thread's part of a recurrent layer's steps.
    CELL_PART = nnc_cell_part(
        *const PackedCell, *mut f32, usize, usize, *const f32, *mut f32, *mut f32, *mut f32,
        *mut f32, *mut f32, usize
    );
    /// `(len) -> *mut f32`: this thread's scratch memory.
    SCRATCH = nnc_scratch(usize) -> *mut f32;
    /// `(x, ch, plane, channels, size, before, alpha, beta, k) -> y`: one
    /// `local_response_norm` output in f64.
    LRN_EXACT = nnc_lrn_exact(
        *const f32, usize, usize, usize, usize, usize, f32, f32, f32
    ) -> f32;
    /// `(spec, src, dst, block)`: eight channels of a depthwise conv.
    DEPTHWISE_BLOCKED = nnc_depthwise_blocked(*const DepthwiseBlocked, *const f32, *mut f32, usize);
    /// `(spec, x, out, n, scale, shift)`: a per-channel affine run.
    AFFINE = nnc_affine(*const Affine, *const f32, *mut f32, usize, f32, f32);
    /// `(spec, x, out, r0, r1)`: bilinear output rows of one plane.
    BILINEAR = nnc_bilinear(*const Bilinear, *const f32, *mut f32, usize, usize);
    /// `(spec, src, taps, bias, dst, r0, r1)`: depthwise rows of one plane.
    DEPTHWISE_ROWS = nnc_depthwise_rows(
        *const DepthwiseRows, *const f32, *const f32, f32, *mut f32, usize, usize
    );
    /// `(spec, x, out, r0, r1, group)`: rows of a direct convolution.
    DIRECT_CONV = nnc_direct_conv(*const DirectConv, *const f32, *mut f32, usize, usize, usize);
    /// `(spec, src, inverse, dst, r0, r1)`: pooled rows of one plane.
    POOL_ROWS = nnc_pool_rows(*const PoolRows, *const f32, *const f32, *mut f32, usize, usize);
    /// `(spec, src, dst, task)`: the column rows of one input plane and
    /// kernel row of an [`Im2Col`].
    IM2COL = nnc_im2col(*const Im2Col, *const f32, *mut f32, usize);
    /// `(spec, x, out, begin, end)`: Winograd input transforms.
    WINOGRAD_INPUT = nnc_winograd_input(*const WinogradInput, *const f32, *mut f32, usize, usize);
    /// `(spec, x, out, residual, begin, end)`: Winograd output transforms.
    WINOGRAD_OUTPUT = nnc_winograd_output(
        *const WinogradOutput, *const f32, *mut f32, *const f32, usize, usize
    );
    /// `(image, image_len, kernels, n_kernels, table, slots, threads) ->
    /// model`: a bundle's `nnc_model_open` (not called by kernels).
    BUNDLE_OPEN = nnc_bundle_open(
        *const u8, usize, *const KernelFn, usize, *mut usize, usize, i32
    ) -> *mut Model;
}
