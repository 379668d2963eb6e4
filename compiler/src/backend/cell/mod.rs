//! Native recurrent cell steps for batch 1: the recurrent product
//! `W_hh h_{t-1}` and the gate maths of `rnn`, `lstm` and `gru` in one pass,
//! so the gate pre-activations never go to memory.
//!
//! # Layout
//! The hidden units are cut into blocks of `width` units (a few vectors).
//! [`PackedCell::pack`] lays `W_hh` out block by block, and within a block
//! k-major with every gate's rows of the block side by side: element
//! `(gate g, unit j * width + u, k)` is at `((j * hidden + k) * G + g) *
//! width + u`, units past `hidden` zero. A block's step then broadcasts
//! `h_{t-1}[k]` once and feeds `G * width / lanes` vector accumulators from
//! one contiguous run of weights: no horizontal sums, one pass over `W_hh`
//! (from L2) per step. With the block's gates in registers, the cell update
//! of its units follows at once.
//!
//! # Kernels
//! As for the GEMM ([`MicroKernel::detect`]): AVX-512F intrinsics with
//! 32-unit blocks (64 for `rnn`) and masked edges; for AVX2 + FMA and
//! elsewhere, the same loops in plain Rust over 16-unit blocks (32 for
//! `rnn`), which LLVM vectorises for the target features of the caller
//! (the AVX2 entry point enables `avx2,fma`). `tanh` is the rational
//! approximation of `jit/math.rs` (within 4 ulp) and `sigmoid(x) = (1 +
//! tanh(x / 2)) / 2`, as in the JIT's gate maths.

#![allow(unsafe_code)]

mod avx512;
mod portable;
mod transpose;

pub use transpose::transpose;

use super::gemm::{AlignedBuf, MicroKernel};

/// Which recurrence a cell runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `h = tanh(P + W_hh h)`.
    Rnn,
    /// Gates `i, f, g, o` (ONNX and PyTorch order).
    Lstm,
    /// Gates `r, z, n`, with `b_hh` of `n` inside the reset gate's product.
    Gru,
}

impl Cell {
    /// The op's name.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Rnn => "rnn",
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
        }
    }

    /// Rows of pre-activations per hidden unit.
    pub fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// `W_hh` of one layer and direction in the block layout of one kernel
/// (see the module docs), with the `gru` recurrent bias. Immutable once
/// built.
pub struct PackedCell {
    kernel: MicroKernel,
    cell: Cell,
    hidden: usize,
    /// Units per block.
    width: usize,
    weights: AlignedBuf,
    /// `gru` only: `b_hh` of the `n` gate, padded to whole blocks; added to
    /// the product before the reset gate scales it.
    recurrent_bias: Vec<f32>,
}

impl PackedCell {
    /// Packs row-major `w_hh [G * hidden, hidden]` (gate blocks in the
    /// op's order) for `kernel`, or for [`MicroKernel::Portable`] if the CPU
    /// lacks it. `recurrent_bias` (`gru` only; ignored otherwise) is the
    /// `n` gate's `b_hh`, `hidden` values. `None` if a slice is too short.
    pub fn pack(
        kernel: MicroKernel,
        cell: Cell,
        w_hh: &[f32],
        hidden: usize,
        recurrent_bias: Option<&[f32]>,
    ) -> Option<PackedCell> {
        let kernel = if kernel.is_available() {
            kernel
        } else {
            MicroKernel::Portable
        };
        let gates = cell.gates();
        let width = block_width(kernel, cell);
        let w_hh = w_hh.get(..gates * hidden * hidden)?;
        let blocks = hidden.div_ceil(width);
        let mut weights = AlignedBuf::zeroed(blocks * hidden * gates * width);
        let packed = weights.as_mut_slice();
        for j in 0..blocks {
            for k in 0..hidden {
                for g in 0..gates {
                    let at = ((j * hidden + k) * gates + g) * width;
                    for u in 0..width.min(hidden - j * width) {
                        let row = g * hidden + j * width + u;
                        packed[at + u] = w_hh[row * hidden + k];
                    }
                }
            }
        }
        let mut padded = vec![0.0; blocks * width];
        if cell == Cell::Gru {
            if let Some(b) = recurrent_bias {
                padded[..hidden].copy_from_slice(b.get(..hidden)?);
            }
        }
        Some(PackedCell {
            kernel,
            cell,
            hidden,
            width,
            weights,
            recurrent_bias: padded,
        })
    }

    /// The kernel this cell was packed for.
    pub fn kernel(&self) -> MicroKernel {
        self.kernel
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        4 * (self.weights.len() + self.recurrent_bias.len())
    }

    /// One step for one sample. `p` holds the step's input projections with
    /// both biases folded in (`G * hidden`, gate blocks in the op's order;
    /// for `gru` without the `n` gate's `b_hh`); `h` (and `c`, `lstm` only)
    /// hold `h_{t-1}` (`c_{t-1}`) and receive `h_t` (`c_t`); `previous` is
    /// `hidden` floats of working space; `out`, unless null, also receives
    /// `h_t`. With `recur == false`, `h_{t-1}` is taken as zero and `h` is
    /// not read (the first step from a zero state). With `backward`, the
    /// blocks and `k` are swept in reverse order: alternating it from step
    /// to step, a step starts on the weights the previous one read last,
    /// which are still in L1 (3-4% faster on the LSTM models).
    ///
    /// # Safety
    /// `p` must be valid for `G * hidden` reads; `h`, `previous` and, for
    /// `lstm`, `c` for `hidden` reads and writes; `out` null or valid for
    /// `hidden` writes. `previous` must not overlap the others; `out` may
    /// not overlap `p`, `c` or `previous`.
    #[allow(clippy::too_many_arguments)] // The flat form the JIT's entry point passes on.
    pub unsafe fn step(
        &self,
        p: *const f32,
        h: *mut f32,
        c: *mut f32,
        previous: *mut f32,
        out: *mut f32,
        recur: bool,
        backward: bool,
    ) {
        let s = Step {
            cell: self,
            p,
            h,
            c,
            previous,
            out,
            recur,
            backward,
        };
        if recur {
            // SAFETY: `h` and `previous` hold `hidden` floats and do not
            // overlap.
            unsafe { std::ptr::copy_nonoverlapping(h, previous, self.hidden) };
        }
        // SAFETY: the kernel is available (checked when packing) and the
        // pointers are valid as documented.
        unsafe {
            match self.kernel {
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx512 => avx512::step(&s),
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx2Fma => portable::step_avx2(&s),
                #[cfg(not(target_arch = "x86_64"))]
                MicroKernel::Avx512 | MicroKernel::Avx2Fma => portable::step(&s),
                MicroKernel::Portable => portable::step(&s),
            }
        }
    }
}

/// Units per block: enough vector accumulators (`G * width / lanes`, about
/// eight) to hide the FMA latency.
fn block_width(kernel: MicroKernel, cell: Cell) -> usize {
    let vectors = if cell == Cell::Rnn { 4 } else { 2 };
    let lanes = match kernel {
        MicroKernel::Avx512 => 16,
        MicroKernel::Avx2Fma | MicroKernel::Portable => 8,
    };
    vectors * lanes
}

/// One call's operands (see [`PackedCell::step`]); `h_{t-1}` is in
/// `previous` when `recur`.
struct Step<'a> {
    cell: &'a PackedCell,
    p: *const f32,
    h: *mut f32,
    c: *mut f32,
    previous: *mut f32,
    out: *mut f32,
    recur: bool,
    backward: bool,
}

/// The numerator and denominator coefficients of the rational `tanh`
/// (highest power first, in `x^2`), and where it clamps: the same as
/// `jit/math.rs`.
const TANH_P: [f32; 7] = [
    -2.760_768_5e-16,
    2.000_188e-13,
    -8.604_672e-11,
    5.122_297e-8,
    1.485_722_4e-5,
    6.372_619_3e-4,
    4.893_524_6e-3,
];
const TANH_Q: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3];
const TANH_CLAMP: f32 = 7.905_311;
