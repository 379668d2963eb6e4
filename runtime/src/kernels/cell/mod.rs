//! Native recurrent cell steps for batch 1: the input projections, the
//! recurrent product `W_hh h_{t-1}` and the gate maths of `rnn`, `lstm` and
//! `gru` in one call per step, so gate pre-activations never go to memory.
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
//! # Input projections
//! `P_t = W_ih x_t + b` for every step is the other large product. It does
//! not depend on the recurrence, so the steps compute it ahead in chunks of
//! `CHUNK` (8) steps: step 0 computes chunk 0, and each step of chunk `c` a
//! share of the panels (one vector of rows of `W_ih`, k-major) of chunk
//! `c + 1`. Each panel is used for the eight steps of its chunk while its
//! weights are in L1, and the AVX-512 kernel interleaves it with a block's
//! recurrent product, which waits on L2 and leaves FMA slots free: the
//! projections cost little more than the extra reads of `W_ih`.
//!
//! # Kernels
//! As for the GEMM ([`MicroKernel::detect`]): AVX-512F intrinsics with
//! 32-unit blocks (64 for `rnn`) and the projections interleaved; AVX2 +
//! FMA intrinsics with 16-unit blocks (32 for `rnn`) and the projections
//! before the blocks (16 registers leave no room to interleave); and plain
//! Rust over the same blocks as AVX2 on other CPUs. `tanh` is the rational
//! approximation of `jit/math.rs` (within 4 ulp) and `sigmoid(x) = (1 +
//! tanh(x / 2)) / 2`, as in the JIT's gate maths.

#![allow(unsafe_code)]

mod avx2;
mod avx512;
mod portable;

use super::gemm::{AlignedBuf, MicroKernel};
use crate::Phases;

/// Which recurrence a cell runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// The weights of one layer and direction, row-major, gate blocks in the
/// op's order.
#[derive(Clone, Copy, Debug)]
pub struct CellWeights<'a> {
    /// `W_ih [G * hidden, features]`.
    pub input: &'a [f32],
    /// `W_hh [G * hidden, hidden]`.
    pub recurrent: &'a [f32],
    /// The projection's bias, `G * hidden` values (both biases folded,
    /// except `b_hh` of the `gru` `n` gate), or none.
    pub bias: Option<&'a [f32]>,
    /// `gru` only: `b_hh` of the `n` gate, `hidden` values.
    pub recurrent_bias: Option<&'a [f32]>,
}

/// The steps a packed cell runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sequence {
    pub steps: usize,
    /// Step `i` is time `steps - 1 - i`.
    pub reverse: bool,
    /// `h_{-1}` is zero, so the first step skips the recurrent product.
    pub zero_start: bool,
}

impl Sequence {
    /// The time step of the `i`-th step.
    fn time(&self, i: usize) -> usize {
        if self.reverse {
            self.steps - 1 - i
        } else {
            i
        }
    }
}

/// Steps per chunk of input projections: the projections of chunk `c + 1`
/// are computed during the steps of chunk `c`.
const CHUNK: usize = 8;

/// One layer and direction, packed for one kernel (see the module docs):
/// `W_hh` by blocks of hidden units, `W_ih` by panels of rows. Immutable
/// once built.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PackedCell {
    kernel: MicroKernel,
    cell: Cell,
    hidden: usize,
    /// Input features.
    features: usize,
    sequence: Sequence,
    /// Units per block.
    width: usize,
    weights: AlignedBuf,
    /// `gru` only: `b_hh` of the `n` gate, padded to whole blocks; added to
    /// the product before the reset gate scales it.
    recurrent_bias: Vec<f32>,
    /// Rows per panel of `W_ih`: one vector.
    lanes: usize,
    /// `W_ih` in panels of `lanes` rows, k-major: element `(row, k)` is at
    /// `((row / lanes) * features + k) * lanes + row % lanes`.
    input_weights: AlignedBuf,
    /// The projection's bias, padded to whole panels.
    bias: Vec<f32>,
}

impl PackedCell {
    /// Packs the weights of a cell with `hidden` units over `features`
    /// inputs for `kernel`, or for [`MicroKernel::Portable`] if the CPU
    /// lacks it. `None` if a slice is too short.
    pub fn pack(
        kernel: MicroKernel,
        cell: Cell,
        hidden: usize,
        features: usize,
        sequence: Sequence,
        w: CellWeights<'_>,
    ) -> Option<PackedCell> {
        let kernel = kernel.usable();
        let gates = cell.gates();
        let rows = gates * hidden;
        let width = block_width(kernel, cell);
        let w_hh = w.recurrent.get(..rows * hidden)?;
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
        let mut recurrent_bias = vec![0.0; blocks * width];
        if cell == Cell::Gru {
            if let Some(b) = w.recurrent_bias {
                recurrent_bias[..hidden].copy_from_slice(b.get(..hidden)?);
            }
        }
        let lanes = lanes(kernel);
        let panels = rows.div_ceil(lanes);
        let w_ih = w.input.get(..rows * features)?;
        let mut input_weights = AlignedBuf::zeroed(panels * features * lanes);
        let packed = input_weights.as_mut_slice();
        for (row, weights) in w_ih.chunks_exact(features.max(1)).enumerate() {
            let panel = row / lanes;
            for (k, &v) in weights.iter().enumerate() {
                packed[(panel * features + k) * lanes + row % lanes] = v;
            }
        }
        let mut bias = vec![0.0; panels * lanes];
        if let Some(b) = w.bias {
            bias[..rows].copy_from_slice(b.get(..rows)?);
        }
        Some(PackedCell {
            kernel,
            cell,
            hidden,
            features,
            sequence,
            width,
            weights,
            recurrent_bias,
            lanes,
            input_weights,
            bias,
        })
    }

    /// The kernel this cell was packed for.
    pub fn kernel(&self) -> MicroKernel {
        self.kernel
    }

    /// A short description of the kernel for `nnc compile` and `nnc
    /// profile`, e.g. `"avx512 cell"`.
    pub fn name(&self) -> &'static str {
        match self.kernel {
            MicroKernel::Avx512 => "avx512 cell",
            MicroKernel::Avx2Fma => "avx2+fma cell",
            MicroKernel::Portable => "portable cell",
        }
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        4 * (self.weights.len()
            + self.recurrent_bias.len()
            + self.input_weights.len()
            + self.bias.len())
    }

    /// Step `i` (of `sequence.steps`, in order) for one sample, at time
    /// `t` ([`Sequence::reverse`]). `x` is the layer's input, time `t` at
    /// `x + t * features`; `p` is the input projections' working space,
    /// `G * hidden` floats per time step (time `t` at `p + t * G * hidden`),
    /// which the steps fill ahead of use: step 0 computes the first chunk
    /// of steps, and each step a share of the next chunk (with AVX-512
    /// interleaved with its own product, which is bound by streaming
    /// `W_hh` from L2 and leaves the FMA units idle). `h` (and `c`, `lstm` only) hold
    /// `h_{t-1}` (`c_{t-1}`) and receive `h_t` (`c_t`); `previous` is
    /// `hidden` floats of working space; `out`, unless null, also receives
    /// `h_t`. Odd steps sweep the blocks and `k` backwards, so a step
    /// starts on the weights the previous one read last, which are still
    /// in L1 (3-4% faster on the LSTM models).
    ///
    /// # Safety
    /// Steps run in order, `i < steps`, on the same `p`; `x` must be valid
    /// for `steps * features` reads and `p` for `steps * G * hidden` reads
    /// and writes; `h`, `previous` and, for `lstm`, `c` for `hidden` reads
    /// and writes; `out` null or valid for `hidden` writes. No two buffers
    /// overlap (a later layer reads a copy of the previous layer's output).
    #[allow(clippy::too_many_arguments)] // The flat form the JIT's entry point passes on.
    pub unsafe fn step(
        &self,
        i: usize,
        x: *const f32,
        p: *mut f32,
        h: *mut f32,
        c: *mut f32,
        previous: *mut f32,
        out: *mut f32,
    ) {
        let recur = i > 0 || !self.sequence.zero_start;
        let t = self.sequence.time(i);
        let s = Step {
            cell: self,
            x,
            p,
            p_t: p.wrapping_add(t * self.cell.gates() * self.hidden),
            h,
            c,
            previous,
            out,
            recur,
            backward: i % 2 == 1,
            first: i == 0,
            ahead: self.ahead(i),
            blocks: 0..self.blocks(),
        };
        if recur {
            // SAFETY: `h` and `previous` hold `hidden` floats and do not
            // overlap.
            unsafe { std::ptr::copy_nonoverlapping(h, previous, self.hidden) };
        }
        // SAFETY: the pointers are valid as documented.
        unsafe { self.dispatch(&s) }
    }

    /// Runs part `part` of `parts` of every step of the sequence, as task
    /// `part` of a kernel with `parts` tasks: each part computes an equal
    /// share of the blocks of hidden units (so each core streams its share
    /// of `W_hh`, which on the language models does not fit one core's L2)
    /// and of the input projections. `phases` synchronises the parts: the
    /// projections of the first chunk are phase 0, step `i` is phase `i +
    /// 1` (see [`Phases`]). `h_{t-1}` and `h_t` alternate between `h[0]`
    /// and `h[1]`: step `i` reads `h[i % 2]` and writes its units of `h[(i
    /// + 1) % 2]`, which no part reads in that phase. `out` receives `h_t`
    /// of time `t` at `out + t * out_stride`.
    ///
    /// # Safety
    /// As for [`PackedCell::step`], for every step, with `h[0]` (zero, or
    /// `h_{-1}` unless the sequence starts from zero) and `h[1]` in place
    /// of `h` and `previous`, `c` zero (or `c_{-1}`), `out` valid for
    /// every step's `hidden` floats, and `phases` shared by exactly the
    /// `parts` tasks of one run.
    #[allow(clippy::too_many_arguments)] // The flat form the JIT's entry point passes on.
    pub unsafe fn run_part(
        &self,
        phases: &Phases<'_>,
        part: usize,
        x: *const f32,
        p: *mut f32,
        h: [*mut f32; 2],
        c: *mut f32,
        out: *mut f32,
        out_stride: usize,
    ) {
        let parts = phases.parts();
        let share = |range: std::ops::Range<usize>, q: usize| {
            let n = range.len();
            range.start + q * n / parts..range.start + (q + 1) * n / parts
        };
        let blocks = self.blocks();
        phases.run(part, self.sequence.steps + 1, |q, phase| {
            let s = match phase.checked_sub(1) {
                // The first chunk's projections, shared out as the later
                // chunks' are.
                None => Step {
                    cell: self,
                    x,
                    p,
                    p_t: p,
                    h: h[0],
                    c,
                    previous: h[0],
                    out: std::ptr::null_mut(),
                    recur: false,
                    backward: false,
                    first: false,
                    ahead: Projections {
                        chunk: 0,
                        panels: share(0..self.panels(), q),
                    },
                    blocks: 0..0,
                },
                Some(i) => {
                    let t = self.sequence.time(i);
                    let ahead = self.ahead(i);
                    Step {
                        cell: self,
                        x,
                        p,
                        p_t: p.wrapping_add(t * self.cell.gates() * self.hidden),
                        h: h[(i + 1) % 2],
                        c,
                        previous: h[i % 2],
                        out: out.wrapping_add(t * out_stride),
                        recur: i > 0 || !self.sequence.zero_start,
                        backward: i % 2 == 1,
                        first: false,
                        ahead: Projections {
                            chunk: ahead.chunk,
                            panels: share(ahead.panels, q),
                        },
                        blocks: share(0..blocks, q),
                    }
                }
            };
            // SAFETY: the caller vouches for the pointers; the phases keep
            // every part of a step after the whole step before it, so each
            // part reads a complete `h_{t-1}` and projections, and the
            // parts of one phase write disjoint units and panels.
            unsafe { self.dispatch(&s) }
        });
    }

    /// Runs `s` on the kernel the cell was packed for.
    ///
    /// # Safety
    /// As for [`PackedCell::step`]; the kernel is available (checked when
    /// packing).
    unsafe fn dispatch(&self, s: &Step) {
        // SAFETY: per the caller.
        unsafe {
            match self.kernel {
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx512 => avx512::step(s),
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx2Fma => avx2::step(s),
                #[cfg(not(target_arch = "x86_64"))]
                MicroKernel::Avx512 | MicroKernel::Avx2Fma => portable::step(s),
                MicroKernel::Portable => portable::step(s),
            }
        }
    }

    /// Blocks of hidden units.
    fn blocks(&self) -> usize {
        self.hidden.div_ceil(self.width)
    }

    /// Panels of `W_ih`.
    fn panels(&self) -> usize {
        (self.cell.gates() * self.hidden).div_ceil(self.lanes)
    }

    /// The projections step `i` computes for later steps: panels of chunk
    /// `i / CHUNK + 1`, an equal share per step of chunk `i / CHUNK`.
    fn ahead(&self, i: usize) -> Projections {
        let chunk = i / CHUNK + 1;
        if chunk * CHUNK >= self.sequence.steps {
            return Projections {
                chunk,
                panels: 0..0,
            };
        }
        let (panels, share) = (self.panels(), self.panels().div_ceil(CHUNK));
        let start = (i % CHUNK * share).min(panels);
        Projections {
            chunk,
            panels: start..(start + share).min(panels),
        }
    }

    /// The time of each step of `chunk`, or `None` past the last step.
    fn chunk_times(&self, chunk: usize) -> [Option<usize>; CHUNK] {
        std::array::from_fn(|s| {
            let i = chunk * CHUNK + s;
            (i < self.sequence.steps).then(|| self.sequence.time(i))
        })
    }
}

/// Some panels of the input projections of one chunk of steps.
#[derive(Clone, Debug)]
struct Projections {
    chunk: usize,
    panels: std::ops::Range<usize>,
}

/// Floats per vector of the kernel.
fn lanes(kernel: MicroKernel) -> usize {
    match kernel {
        MicroKernel::Avx512 => 16,
        MicroKernel::Avx2Fma | MicroKernel::Portable => 8,
    }
}

/// Units per block: enough vector accumulators (`G * width / lanes`, about
/// eight) to hide the FMA latency.
fn block_width(kernel: MicroKernel, cell: Cell) -> usize {
    let vectors = if cell == Cell::Rnn { 4 } else { 2 };
    vectors * lanes(kernel)
}

/// One call's operands (see [`PackedCell::step`]); `h_{t-1}` is in
/// `previous` when `recur`.
struct Step<'a> {
    cell: &'a PackedCell,
    x: *const f32,
    /// All input projections, and those of this step.
    p: *mut f32,
    p_t: *const f32,
    h: *mut f32,
    c: *mut f32,
    previous: *mut f32,
    out: *mut f32,
    recur: bool,
    backward: bool,
    /// Step 0 computes the first chunk's projections before its own gates.
    first: bool,
    ahead: Projections,
    /// The blocks of hidden units to compute (all, unless the step is
    /// split across threads).
    blocks: std::ops::Range<usize>,
}

impl Step<'_> {
    /// The blocks, in this step's sweep order.
    fn block_order(&self) -> impl Iterator<Item = usize> {
        let (blocks, backward) = (self.blocks.clone(), self.backward);
        (0..blocks.len()).map(move |i| {
            if backward {
                blocks.end - 1 - i
            } else {
                blocks.start + i
            }
        })
    }
}
