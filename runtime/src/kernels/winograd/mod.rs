//! Native Winograd transforms, the two ends of a Winograd F(m x m, 3x3)
//! convolution (see [`transform`]); the products between them are the
//! `gemm` kernel.
//!
//! Both work on a vector of tiles at a time, one tile per lane, taken in
//! the order the products lay them out (row-major over the whole plane,
//! not one tile row at a time, so ResNet's 14- and 7-tile rows still fill
//! 16 lanes):
//!
//! - [`WinogradInput`]: one task per input channel plane. The task copies
//!   its plane, padded, into this thread's scratch memory; then the lanes
//!   take their tiles' `a x a` patches from it (with AVX-512 a row of
//!   tiles side by side as whole vectors split by permutes, else by
//!   gathers), `BT d BT^T` runs on the lanes, and each of the `a*a`
//!   results is one store into its own row (or, for a GEMM whose B comes
//!   from memory, its panel: [`WinogradInput::in_panels`]).
//! - [`WinogradOutput`]: one task per output plane. The `a*a` elements of
//!   a vector of tiles are contiguous loads; `AT M AT^T` plus the bias
//!   gives each tile's `m*m` outputs, stored one row of a tile-major
//!   scratch per output position. Then for each output row the tiles' `m`
//!   values are interleaved in registers into consecutive outputs, the
//!   residual added and relu or clip applied before a store masked at the
//!   output's edge (other activations in a pass over the row).
//!
//! The transforms are written once, generic over the [`Lanes`] they run
//! on: AVX-512 (16 lanes), AVX2 (8) and plain `f32` (one lane, for other
//! CPUs and as the tests' cross-check). The transform matrices are
//! constants of each monomorphised copy, so after unrolling a zero entry
//! costs nothing and ±1 is an add or subtract. These replaced Cranelift
//! kernels whose unrolled 4-lane code took 2-4 ms each to compile (37 of
//! ResNet-18's 53 ms of code generation).

#![allow(unsafe_code)]

pub mod transform;

pub use transform::{FilterTransform, Transform, F2X3, F4X3};

use super::gemm::{Activation, MicroKernel};
use super::KernelError;
use std::cell::RefCell;

thread_local! {
    /// One call's padded input plane or tile-major outputs.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Tiles are handled this many at a time, whatever the lanes (the most
/// any [`Lanes`] has), so buffers are sized the same for every
/// implementation.
const GROUP: usize = 16;

/// The input transform of one `winograd_input` op (owned by the compiled
/// model).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WinogradInput {
    m: usize,
    channels: usize,
    h: usize,
    w: usize,
    /// `[top, left]`: where tile `(0, 0)`'s patch starts before the plane
    /// (the tiles cover any padding after it).
    padding: [usize; 2],
    tiles: [usize; 2],
    /// Padded plane height and width: every tile's patch lies inside.
    hp: usize,
    wp: usize,
    /// Where each tile's patch starts in the padded plane, then copies of
    /// the last up to a whole [`GROUP`].
    starts: Vec<i32>,
    /// 0: the output is `[N, a*a*channels, th, tw]`, row-major. Else the
    /// width of the GEMM's panels of B: each element's `[channels, th *
    /// tw]` matrix is laid out in panels of this many tiles, `[panel][c]
    /// [tile]`, the tiles rounded up to whole panels (zero past them), so
    /// that the GEMM reads them without packing (see
    /// [`WinogradInput::in_panels`]).
    #[serde(default)]
    panel: usize,
    kernel_impl: MicroKernel,
}

/// The output transform of one `winograd_output` op (owned by the
/// compiled model).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WinogradOutput {
    m: usize,
    channels: usize,
    tiles: [usize; 2],
    output_size: [usize; 2],
    /// One per output channel (zero without a bias).
    bias: Vec<f32>,
    activation: Option<Activation>,
    kernel_impl: MicroKernel,
}

fn transform(m: usize) -> Result<Transform, KernelError> {
    Transform::of(m)
        .ok_or_else(|| KernelError::Unsupported(format!("no Winograd transform for tiles of {m}")))
}

impl WinogradInput {
    /// The transform of `[channels, h, w]` planes into `tiles` tiles of
    /// `m x m` outputs, the patches starting `padding` before the plane.
    pub fn new(
        m: usize,
        [channels, h, w]: [usize; 3],
        tiles: [usize; 2],
        padding: [usize; 2],
        kernel_impl: MicroKernel,
    ) -> Result<WinogradInput, KernelError> {
        transform(m)?;
        let [th, tw] = tiles;
        let (hp, wp) = (m * th + 2, m * tw + 2);
        if i32::try_from(hp * wp).is_err() {
            return Err(KernelError::Unsupported(format!(
                "a Winograd input plane of {hp}x{wp} is too large to index"
            )));
        }
        let count = th * tw;
        let mut starts: Vec<i32> = (0..count)
            .map(|k| ((k / tw.max(1)) * m * wp + (k % tw.max(1)) * m) as i32)
            .collect();
        let last = starts.last().copied().unwrap_or(0);
        starts.resize(count.div_ceil(GROUP) * GROUP, last);
        Ok(WinogradInput {
            m,
            channels,
            h,
            w,
            padding,
            tiles,
            hp,
            wp,
            starts,
            panel: 0,
            kernel_impl: kernel_impl.usable(),
        })
    }

    /// The same transform writing each element's matrix in the panels of
    /// `width` columns the GEMM reads as B (`gemm::gemm_b_panels`; `width`
    /// its [`MicroKernel::panel_width`], a multiple of the transform's
    /// lanes): `[N, a*a, panels, channels, width]`, the tiles rounded up
    /// to whole panels with zeros, with streaming stores past the caches.
    ///
    /// For a B from memory (`tasks::from_memory`), which the GEMM would
    /// otherwise pack per call: that packing had cost a UNet as much as
    /// the transform itself (9% of its time in perf), and it ran 0.923
    /// times as long in panels, VGG-19 0.990 (AMD EPYC Zen 4). A B in cache is better
    /// in rows: each plane's stores in panels are scattered, a channel's
    /// rows of each panel `channels * width` floats apart, and without
    /// streaming every store waited for its line (a UNet's largest
    /// transform 6.4 ms in rows, 20.7 in panels); streamed, the GEMM read
    /// from memory what it had read from cache, and ResNet-18 and
    /// DenseNet-121 ran 1.005-1.014 times as long.
    pub fn in_panels(mut self, width: usize) -> WinogradInput {
        self.panel = width;
        self
    }

    /// Floats per element's matrix: `channels` rows of the tiles, rounded
    /// up to whole panels when laid out in them.
    fn element_len(&self) -> usize {
        let count = self.tiles[0] * self.tiles[1];
        match self.panel {
            0 => self.channels * count,
            width => self.channels * count.next_multiple_of(width),
        }
    }

    /// Whether the transform writes past the caches: in panels, which are
    /// chosen where B goes to memory anyway (see [`WinogradInput::in_panels`]).
    fn streams(&self) -> bool {
        self.panel > 0
    }

    /// Where tile `k` of channel `c` is in an element's matrix.
    fn tile_at(&self, c: usize, k: usize) -> usize {
        match self.panel {
            0 => c * self.tiles[0] * self.tiles[1] + k,
            width => (k / width * self.channels + c) * width + k % width,
        }
    }

    /// Transforms planes `begin..end` (plane `b * channels + c`) of `x`
    /// (`[N, channels, h, w]`) into `out` (`[N, a*a*channels, th, tw]`).
    ///
    /// # Safety
    /// `x` and `out` must hold every plane up to `end`.
    pub unsafe fn run(&self, x: *const f32, out: *mut f32, begin: usize, end: usize) {
        if self.channels == 0 {
            // No planes (the kernel still runs its one task).
            return;
        }
        SCRATCH.with(|scratch| {
            let mut padded = scratch.borrow_mut();
            padded.clear();
            padded.resize(PATCH_FRONT + self.hp * self.wp + PATCH_READ, 0.0);
            for plane in begin..end {
                // SAFETY: forwarded from the caller.
                unsafe {
                    let src =
                        std::slice::from_raw_parts(x.add(plane * self.h * self.w), self.h * self.w);
                    self.pad(src, &mut padded[PATCH_FRONT..]);
                    let (b, c) = (plane / self.channels, plane % self.channels);
                    let a = self.m + 2;
                    let dst = out.add(b * a * a * self.element_len());
                    self.transform(&padded, dst, c);
                }
            }
        });
        #[cfg(target_arch = "x86_64")]
        if self.streams() {
            // The streaming stores are weakly ordered: complete them before
            // the GEMM, on any thread, reads them.
            // SAFETY: SSE is part of x86-64.
            unsafe { std::arch::x86_64::_mm_sfence() };
        }
    }

    /// Copies `src` into the middle of `padded`, whose borders stay zero
    /// (rows and columns of the plane past the last tile are not copied).
    fn pad(&self, src: &[f32], padded: &mut [f32]) {
        let [py, px] = self.padding;
        let rows = self.h.min(self.hp.saturating_sub(py));
        let cols = self.w.min(self.wp.saturating_sub(px));
        for (y, row) in src.chunks_exact(self.w.max(1)).take(rows).enumerate() {
            padded[(py + y) * self.wp + px..][..cols].copy_from_slice(&row[..cols]);
        }
    }

    /// Transforms the padded plane in `padded`, the scratch: `PATCH_FRONT`
    /// floats, the plane, `PATCH_READ` floats.
    ///
    /// # Safety
    /// `out` must hold the `a*a` element matrices of this plane's batch
    /// item, [`WinogradInput::element_len`] floats apart; `c` is the
    /// plane's channel.
    unsafe fn transform(&self, padded: &[f32], out: *mut f32, c: usize) {
        // The plane, with the scratch's provenance: the runs read around it.
        let p = padded.as_ptr().wrapping_add(PATCH_FRONT);
        // SAFETY: forwarded; every start plus the patch lies in the plane,
        // and the runs' reads in the scratch around it.
        unsafe {
            match (self.kernel_impl, self.m) {
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx512, 2) => avx512::input::<F2>(self, p, out, c),
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx512, _) => avx512::input::<F4>(self, p, out, c),
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx2Fma, 2) => avx2::input::<F2>(self, p, out, c),
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx2Fma, _) => avx2::input::<F4>(self, p, out, c),
                (_, 2) => input::<f32, F2>(self, p, out, c),
                _ => input::<f32, F4>(self, p, out, c),
            }
        }
    }
}

impl WinogradOutput {
    /// The transform of tiles of `m x m` outputs, `tiles` per plane, into
    /// `channels` planes of `output_size`, adding `bias` and then the
    /// residual, if any, before the activation.
    pub fn new(
        m: usize,
        channels: usize,
        tiles: [usize; 2],
        output_size: [usize; 2],
        bias: Option<&[f32]>,
        activation: Option<Activation>,
        kernel_impl: MicroKernel,
    ) -> Result<WinogradOutput, KernelError> {
        transform(m)?;
        if output_size[0] > m * tiles[0] || output_size[1] > m * tiles[1] {
            return Err(KernelError::Unsupported(format!(
                "{}x{} tiles of {m} do not cover {}x{}",
                tiles[0], tiles[1], output_size[0], output_size[1]
            )));
        }
        let bias = match bias {
            Some(b) if b.len() >= channels => b[..channels].to_vec(),
            Some(b) => {
                return Err(KernelError::Unsupported(format!(
                    "a Winograd output bias has {} values for {channels} channels",
                    b.len()
                )))
            }
            None => vec![0.0; channels],
        };
        Ok(WinogradOutput {
            m,
            channels,
            tiles,
            output_size,
            bias,
            activation,
            kernel_impl: kernel_impl.usable(),
        })
    }

    /// Transforms planes `begin..end` (plane `b * channels + o`) of `x`
    /// (`[N, a*a*channels, th, tw]`) into `out` (`[N, channels, oh, ow]`),
    /// adding `residual` (laid out like `out`) unless it is null.
    ///
    /// # Safety
    /// `x`, `out` and `residual` must hold every plane up to `end`; the
    /// residual is `out` or does not overlap it.
    pub unsafe fn run(
        &self,
        x: *const f32,
        out: *mut f32,
        residual: *const f32,
        begin: usize,
        end: usize,
    ) {
        let [th, tw] = self.tiles;
        let [oh, ow] = self.output_size;
        let (m, a, count) = (self.m, self.m + 2, th * tw);
        let stride = count.div_ceil(GROUP) * GROUP;
        SCRATCH.with(|scratch| {
            let mut tiles = scratch.borrow_mut();
            tiles.clear();
            tiles.resize(m * m * stride, 0.0);
            for plane in begin..end {
                let (b, o) = (plane / self.channels.max(1), plane % self.channels.max(1));
                let Some(&bias) = self.bias.get(o) else {
                    // No planes (the kernel still runs its one task).
                    return;
                };
                // SAFETY: forwarded from the caller.
                unsafe {
                    let src = x.add((b * a * a * self.channels + o) * count);
                    let dst = out.add(plane * oh * ow);
                    let res = if residual.is_null() {
                        residual
                    } else {
                        residual.add(plane * oh * ow)
                    };
                    let plane = Plane {
                        src,
                        bias,
                        tiles: tiles.as_mut_ptr(),
                        stride,
                        dst,
                        res,
                    };
                    self.plane(&plane);
                }
            }
        });
    }

    /// # Safety
    /// As [`output`].
    unsafe fn plane(&self, p: &Plane) {
        // SAFETY: forwarded.
        unsafe {
            match (self.kernel_impl, self.m) {
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx512, 2) => avx512::output::<F2>(self, p),
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx512, _) => avx512::output::<F4>(self, p),
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx2Fma, 2) => avx2::output::<F2>(self, p),
                #[cfg(target_arch = "x86_64")]
                (MicroKernel::Avx2Fma, _) => avx2::output::<F4>(self, p),
                (_, 2) => output::<f32, F2>(self, p),
                _ => output::<f32, F4>(self, p),
            }
        }
    }
}

/// One output plane's buffers.
struct Plane {
    /// The plane's `a*a` rows of tiles, `channels * th * tw` floats apart.
    src: *const f32,
    bias: f32,
    /// `m*m` rows of `stride` floats of scratch (`th * tw` rounded up to
    /// a whole [`GROUP`]).
    tiles: *mut f32,
    stride: usize,
    /// The output plane, and the residual's (or null).
    dst: *mut f32,
    res: *const f32,
}

/// One of the transforms: its 1-D products written out, so that each
/// monomorphised copy is straight-line code (a table-driven loop over the
/// matrix entries was left rolled by the compiler, testing every entry at
/// run time). `runtime/tests/winograd.rs` checks them against the matrices of
/// [`transform`].
trait Tile {
    const M: usize;
    /// `M + 2`.
    const A: usize;

    /// `BT d` for a column `d` of `A` values.
    ///
    /// # Safety
    /// `V`'s instruction set must be available.
    unsafe fn bt<V: Lanes>(d: &[V; MAX_A]) -> [V; MAX_A];

    /// `AT x` for a column `x` of `A` values: `M` values.
    ///
    /// # Safety
    /// `V`'s instruction set must be available.
    unsafe fn at<V: Lanes>(x: &[V; MAX_A]) -> [V; MAX_M];
}

/// F(2x2, 3x3), [`F2X3`].
struct F2;
/// F(4x4, 3x3), [`F4X3`].
struct F4;

// SAFETY (every method): the contract is [`Tile`]'s, `V`'s instruction
// set available; the bodies only combine `V`s the caller passed in.
impl Tile for F2 {
    const M: usize = 2;
    const A: usize = 4;

    #[inline(always)]
    unsafe fn bt<V: Lanes>(d: &[V; MAX_A]) -> [V; MAX_A] {
        // SAFETY: the caller's.
        unsafe {
            let z = V::zero();
            [
                d[0].sub(d[2]),
                d[1].add(d[2]),
                d[2].sub(d[1]),
                d[1].sub(d[3]),
                z,
                z,
            ]
        }
    }

    #[inline(always)]
    unsafe fn at<V: Lanes>(x: &[V; MAX_A]) -> [V; MAX_M] {
        // SAFETY: the caller's.
        unsafe {
            let z = V::zero();
            [x[0].add(x[1]).add(x[2]), x[1].sub(x[2]).sub(x[3]), z, z]
        }
    }
}

// SAFETY (every method): the contract is [`Tile`]'s, `V`'s instruction
// set available; the bodies only combine `V`s the caller passed in.
impl Tile for F4 {
    const M: usize = 4;
    const A: usize = 6;

    #[inline(always)]
    unsafe fn bt<V: Lanes>(d: &[V; MAX_A]) -> [V; MAX_A] {
        // SAFETY: the caller's.
        unsafe {
            let [d0, d1, d2, d3, d4, d5] = *d;
            [
                d0.add(d4)
                    .mul_add_to(d1, -1.5)
                    .mul_add_to(d2, -2.0)
                    .mul_add_to(d3, 1.5),
                d1.add(d4).mul_add_to(d2, -2.5).mul_add_to(d3, 0.5),
                d4.sub(d1).mul_add_to(d2, 0.5).mul_add_to(d3, 2.5),
                d4.sub(d2).mul_add_to(d1, -2.0).mul_add_to(d3, 2.0),
                d4.sub(d2).mul_add_to(d1, 0.5).mul_add_to(d3, -0.5),
                d1.add(d5)
                    .mul_add_to(d2, -1.5)
                    .mul_add_to(d3, -2.0)
                    .mul_add_to(d4, 1.5),
            ]
        }
    }

    #[inline(always)]
    unsafe fn at<V: Lanes>(x: &[V; MAX_A]) -> [V; MAX_M] {
        // SAFETY: the caller's.
        unsafe {
            let [x0, x1, x2, x3, x4, x5] = *x;
            [
                x0.add(x1).add(x2).add(x3).add(x4),
                x2.sub(x1).mul_add_to(x3, 0.5).mul_add_to(x4, -2.0),
                x1.add(x2).mul_add_to(x3, 0.25).mul_add_to(x4, 4.0),
                x2.sub(x1)
                    .add(x5)
                    .mul_add_to(x3, 0.125)
                    .mul_add_to(x4, -8.0),
            ]
        }
    }
}

/// The most `M` of any [`Tile`].
const MAX_M: usize = 4;

/// The most `A` of any [`Tile`].
const MAX_A: usize = 6;

/// The most floats [`Lanes::patch_row`] reads from its start: 16 tiles'
/// patches of 6, 4 floats apart, read as five whole vectors. The input
/// transform's scratch plane has this many after it.
const PATCH_READ: usize = GROUP * MAX_M + GROUP;

/// Floats of scratch before the input transform's padded plane: a run of
/// tiles from lane `l` is read from `M * l` floats before its first.
const PATCH_FRONT: usize = GROUP * MAX_M;

/// The most tile rows a vector of tiles is loaded from as runs rather
/// than gathered (see [`Lanes::RUNS`]).
const MAX_RUNS: usize = 4;

/// A vector of `f32` lanes, one tile per lane.
///
/// # Safety
/// The methods need their instruction set: call them only from code that
/// has checked it (the `MicroKernel` dispatch). Methods that take pointers
/// need them valid for what their docs say: `N` values (`index`, `store`),
/// the first `live` (`load`, `store_live`), `base[index[l]]` for every
/// lane (`gather`).
trait Lanes: Copy {
    const N: usize;
    /// The most tile rows (at most [`MAX_RUNS`]) a vector of tiles is
    /// loaded from by [`Lanes::patch_row`] rather than gathered: where
    /// `patch_row` gathers too, one.
    const RUNS: usize;
    type Index: Copy;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// `N` tile starts from `p`.
    unsafe fn index(p: *const i32) -> Self::Index;
    /// Lane `l` is `base[index[l]]`.
    unsafe fn gather(base: *const f32, index: Self::Index) -> Self;
    /// `self` with lanes `from..to` from `other`.
    unsafe fn select(self, other: Self, from: usize, to: usize) -> Self;
    /// One row of the patches of `N` tiles side by side in a tile row:
    /// value `c < T::A` of tile `l` is `p[T::M * l + c]`. Reads up to
    /// [`PATCH_READ`] floats from `p`.
    unsafe fn patch_row<T: Tile>(p: *const f32) -> [Self; MAX_A];
    /// The first `live` lanes from `p`, zero past them.
    unsafe fn load(p: *const f32, live: usize) -> Self;
    /// A whole vector to `p`.
    unsafe fn store(self, p: *mut f32);
    /// A whole vector to `p`, aligned to the vector, bypassing the caches
    /// where the instruction set can (see [`WinogradInput::streams`]).
    unsafe fn stream(self, p: *mut f32);
    /// The first `live` lanes to `p`.
    unsafe fn store_live(self, p: *mut f32, live: usize);
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    /// `self + x * c`.
    unsafe fn mul_add_to(self, x: Self, c: f32) -> Self;
    /// `max(self, lo)`, NaN staying NaN.
    unsafe fn at_least(self, lo: f32) -> Self;
    /// `min(self, hi)`, NaN staying NaN.
    unsafe fn at_most(self, hi: f32) -> Self;
    /// The lanes of `self` and `b` interleaved, `self` first: `2N`
    /// values, the first `N` in the first vector.
    unsafe fn zip(self, b: Self) -> (Self, Self);
}

// SAFETY (every method): the contract is [`Lanes`]'s; one lane needs no
// instruction set, and the pointer methods access one float, as documented.
impl Lanes for f32 {
    const N: usize = 1;
    const RUNS: usize = 1;
    type Index = i32;
    #[inline(always)]
    unsafe fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> f32 {
        v
    }
    #[inline(always)]
    unsafe fn index(p: *const i32) -> i32 {
        // SAFETY: the caller's.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn gather(base: *const f32, index: i32) -> f32 {
        // SAFETY: the caller's.
        unsafe { *base.offset(index as isize) }
    }
    #[inline(always)]
    unsafe fn select(self, other: f32, from: usize, to: usize) -> f32 {
        if from == 0 && to > 0 {
            other
        } else {
            self
        }
    }
    #[inline(always)]
    unsafe fn patch_row<T: Tile>(p: *const f32) -> [f32; MAX_A] {
        let mut d = [0.0; MAX_A];
        for (c, d) in d.iter_mut().enumerate().take(T::A) {
            // SAFETY: the caller's.
            *d = unsafe { *p.add(c) };
        }
        d
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, live: usize) -> f32 {
        if live == 0 {
            0.0
        } else {
            // SAFETY: the caller's.
            unsafe { *p }
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's.
        unsafe { *p = self }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: the caller's.
        unsafe { *p = self }
    }
    #[inline(always)]
    unsafe fn store_live(self, p: *mut f32, live: usize) {
        if live > 0 {
            // SAFETY: the caller's.
            unsafe { *p = self }
        }
    }
    #[inline(always)]
    unsafe fn add(self, b: f32) -> f32 {
        self + b
    }
    #[inline(always)]
    unsafe fn sub(self, b: f32) -> f32 {
        self - b
    }
    #[inline(always)]
    unsafe fn mul_add_to(self, x: f32, c: f32) -> f32 {
        x * c + self
    }
    #[inline(always)]
    unsafe fn at_least(self, lo: f32) -> f32 {
        if self < lo {
            lo
        } else {
            self
        }
    }
    #[inline(always)]
    unsafe fn at_most(self, hi: f32) -> f32 {
        if self > hi {
            hi
        } else {
            self
        }
    }
    #[inline(always)]
    unsafe fn zip(self, b: f32) -> (f32, f32) {
        (self, b)
    }
}

/// `BT d BT^T` for every tile of a padded plane, channel `c`.
///
/// # Safety
/// `V`'s instruction set must be available; `padded` holds the padded
/// plane and `out` the `a*a` element matrices of its batch item.
#[inline(always)]
unsafe fn input<V: Lanes, T: Tile>(s: &WinogradInput, padded: *const f32, out: *mut f32, c: usize) {
    let (a, wp) = (T::A, s.wp);
    let count = s.tiles[0] * s.tiles[1];
    let tw = s.tiles[1].max(1);
    let element = s.element_len();
    // Every store is a multiple of 16 floats from `out`: aligned with it.
    let stream = s.streams() && (out as usize).is_multiple_of(64);
    let mut k0 = 0;
    while k0 < count {
        let live = (count - k0).min(V::N);
        // The tile rows the vector's tiles lie in, as runs of lanes: in
        // each, the tiles' patch rows are `m` floats apart, loaded as whole
        // vectors and deinterleaved, where gathering every value (36
        // gathers per 16 tiles of F(4x4)) made the transform
        // gather-bound, at 10-12 GB/s (AMD EPYC Zen 4). Vectors over more
        // tile rows than `V::RUNS` gather.
        let mut runs = [(0, 0); MAX_RUNS];
        let (mut n, mut k) = (0, k0);
        while k < k0 + live && n < V::RUNS.min(MAX_RUNS) {
            let end = ((k / tw + 1) * tw).min(k0 + live);
            runs[n] = (k - k0, end - k0);
            (n, k) = (n + 1, end);
        }
        // SAFETY: the caller's; `starts` is padded to whole groups, and
        // every start plus `(a - 1) * (wp + 1)` lies in the padded plane,
        // which has `PATCH_FRONT` floats before it and `PATCH_READ`
        // after: a run's loads start `m` floats before its first tile's
        // patch per lane before it (up to `PATCH_FRONT`).
        unsafe {
            // Rows first: t[r] = BT d[r], then each column of t.
            let mut t = [[V::zero(); MAX_A]; MAX_A];
            if k == k0 + live {
                for (r, t) in t.iter_mut().enumerate().take(a) {
                    let mut d = [V::zero(); MAX_A];
                    for &(l0, l1) in &runs[..n] {
                        let at = s.starts[k0 + l0] as usize + r * wp;
                        let run = V::patch_row::<T>(padded.add(at).sub(T::M * l0));
                        if n == 1 {
                            d = run;
                        } else {
                            for (d, &v) in d.iter_mut().zip(&run).take(a) {
                                *d = d.select(v, l0, l1);
                            }
                        }
                    }
                    *t = T::bt(&d);
                }
            } else {
                let index = V::index(s.starts.as_ptr().add(k0));
                for (r, t) in t.iter_mut().enumerate().take(a) {
                    let mut d = [V::zero(); MAX_A];
                    for (c, d) in d.iter_mut().enumerate().take(a) {
                        *d = V::gather(padded.add(r * wp + c), index);
                    }
                    *t = T::bt(&d);
                }
            }
            for j in 0..a {
                let mut column = [V::zero(); MAX_A];
                for (c, t) in column.iter_mut().zip(&t).take(a) {
                    *c = t[j];
                }
                let at = out.add(s.tile_at(c, k0));
                for (i, v) in T::bt(&column).iter().enumerate().take(a) {
                    let to = at.add((i * a + j) * element);
                    if s.panel == 0 {
                        v.store_live(to, live);
                    } else if stream {
                        // The lanes past the tiles are inside the last
                        // panel; any finite value does there.
                        v.stream(to);
                    } else {
                        v.store(to);
                    }
                }
            }
        }
        k0 += V::N;
    }
    // The last panel's columns past the vectors written above.
    if s.panel > 0 {
        for k0 in (k0..count.next_multiple_of(s.panel)).step_by(V::N) {
            // SAFETY: tile `k0` lies in the channel's last panel, inside
            // each element's matrix.
            unsafe {
                let at = out.add(s.tile_at(c, k0));
                for e in 0..a * a {
                    V::zero().store(at.add(e * element));
                }
            }
        }
    }
}

/// `AT M AT^T + bias` for every tile of a plane into the tile-major
/// scratch (row `p*m + q` holds output `(p, q)` of every tile), then those
/// rows interleaved into the output rows, clipped, with the residual and
/// the activation.
///
/// # Safety
/// `V`'s instruction set must be available; the plane's pointers are as
/// [`Plane`] documents.
#[inline(always)]
unsafe fn output<V: Lanes, T: Tile>(s: &WinogradOutput, p: &Plane) {
    let (a, m) = (T::A, T::M);
    let count = s.tiles[0] * s.tiles[1];
    let row_stride = s.channels * count;
    let mut k0 = 0;
    while k0 < count {
        let live = (count - k0).min(V::N);
        // SAFETY: the caller's.
        unsafe {
            let shift = V::splat(p.bias);
            // Columns first: s[.][j] = AT M[.][j], then each row of s.
            let mut rows = [[V::zero(); MAX_A]; MAX_M];
            for j in 0..a {
                let mut column = [V::zero(); MAX_A];
                for (i, c) in column.iter_mut().enumerate().take(a) {
                    *c = V::load(p.src.add((i * a + j) * row_stride + k0), live);
                }
                for (row, v) in rows.iter_mut().zip(T::at(&column)).take(m) {
                    row[j] = v;
                }
            }
            for (i, row) in rows.iter().enumerate().take(m) {
                for (q, y) in T::at(row).iter().enumerate().take(m) {
                    y.add(shift).store(p.tiles.add((i * m + q) * p.stride + k0));
                }
            }
        }
        k0 += V::N;
    }
    // SAFETY: the caller's.
    unsafe { interleave::<V, T>(s, p) }
}

/// The scratch rows into the output rows: output `(m*ty + i, m*tx + q)`
/// is tile `(ty, tx)`'s `(i, q)`. `N` tiles' `m` values are interleaved
/// in registers into `m*N` consecutive outputs, stored up to the output's
/// edge.
///
/// # Safety
/// As [`output`].
#[inline(always)]
unsafe fn interleave<V: Lanes, T: Tile>(s: &WinogradOutput, p: &Plane) {
    let m = T::M;
    let [th, tw] = s.tiles;
    let [oh, ow] = s.output_size;
    for ty in 0..th {
        for i in 0..m.min(oh.saturating_sub(ty * m)) {
            let oy = ty * m + i;
            // SAFETY: row `oy < oh` of the plane, and the scratch rows of
            // output row `i` of tile row `ty`; loads stop at the row's
            // last tile and stores at the output row's end.
            unsafe {
                let row = p.dst.add(oy * ow);
                let from = p.tiles.add(i * m * p.stride + ty * tw);
                let mut tx = 0;
                while tx < tw {
                    let tiles = (tw - tx).min(V::N);
                    let mut y = [V::zero(); MAX_M];
                    for (q, y) in y.iter_mut().enumerate().take(m) {
                        *y = V::load(from.add(q * p.stride + tx), tiles);
                    }
                    let out = if m == 2 {
                        let (o0, o1) = y[0].zip(y[1]);
                        [o0, o1, o0, o1]
                    } else {
                        let ((a0, a1), (b0, b1)) = (y[0].zip(y[2]), y[1].zip(y[3]));
                        let ((o0, o1), (o2, o3)) = (a0.zip(b0), a1.zip(b1));
                        [o0, o1, o2, o3]
                    };
                    let valid = ow - tx * m;
                    for (k, &o) in out.iter().enumerate().take(m) {
                        let at = oy * ow + tx * m + k * V::N;
                        let live = valid.saturating_sub(k * V::N).min(V::N);
                        let mut o = o;
                        if !p.res.is_null() {
                            o = o.add(V::load(p.res.add(at), live));
                        }
                        o = match s.activation {
                            Some(Activation::Relu) => o.at_least(0.0),
                            Some(Activation::Clip { min, max }) => o.at_least(min).at_most(max),
                            _ => o,
                        };
                        o.store_live(p.dst.add(at), live);
                    }
                    tx += V::N;
                }
                match s.activation {
                    None | Some(Activation::Relu | Activation::Clip { .. }) => {}
                    Some(other) => {
                        for o in std::slice::from_raw_parts_mut(row, ow) {
                            *o = other.apply(*o);
                        }
                    }
                }
            }
        }
    }
}

/// The transforms compiled for one instruction set: `input` and `output`
/// on `$lanes` with `$features` enabled, so that the generic code and the
/// lanes' `#[inline(always)]` methods inline into them.
#[cfg(target_arch = "x86_64")]
macro_rules! entry_points {
    ($lanes:ty, $features:literal) => {
        /// # Safety
        /// The instruction set must be available; as [`super::input`].
        #[target_feature(enable = $features)]
        pub(super) unsafe fn input<T: Tile>(
            s: &WinogradInput,
            padded: *const f32,
            out: *mut f32,
            c: usize,
        ) {
            // SAFETY: forwarded.
            unsafe { super::input::<$lanes, T>(s, padded, out, c) }
        }

        /// # Safety
        /// The instruction set must be available; as [`super::output`].
        #[target_feature(enable = $features)]
        pub(super) unsafe fn output<T: Tile>(s: &WinogradOutput, p: &Plane) {
            // SAFETY: forwarded.
            unsafe { super::output::<$lanes, T>(s, p) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Lanes, Plane, Tile, WinogradInput, WinogradOutput, MAX_A};
    use std::arch::x86_64::*;

    #[inline(always)]
    fn mask(live: usize) -> __mmask16 {
        crate::kernels::gemm::avx512::lane_mask(live)
    }

    // SAFETY (every method): the contract is [`Lanes`]'s: AVX-512F is
    // available, and the pointer methods access only the lanes their docs
    // name (masked loads and stores past `live`).
    impl Lanes for __m512 {
        const N: usize = 16;
        // Four runs (tile rows of 4 tiles) of five loads and ten
        // shuffles each still beat six gathers: ResNet-18's layer3 input
        // transforms (F(4x4) on 14x14) 0.100 -> 0.050 ms (AMD EPYC Zen 4).
        const RUNS: usize = super::MAX_RUNS;
        type Index = __m512i;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn index(p: *const i32) -> __m512i {
            // SAFETY: the caller's.
            unsafe { _mm512_loadu_si512(p.cast()) }
        }
        #[inline(always)]
        unsafe fn gather(base: *const f32, index: __m512i) -> __m512 {
            // SAFETY: the caller's.
            unsafe { _mm512_i32gather_ps::<4>(index, base) }
        }
        #[inline(always)]
        unsafe fn select(self, other: __m512, from: usize, to: usize) -> __m512 {
            _mm512_mask_blend_ps(mask(to) & !mask(from), self, other)
        }
        #[inline(always)]
        unsafe fn patch_row<T: Tile>(p: *const f32) -> [__m512; MAX_A] {
            // SAFETY: the caller's: the loads read `PATCH_READ` floats at
            // most (`16 * M + 16`).
            unsafe {
                // (A macro: a closure would not inherit the target feature.)
                macro_rules! load {
                    ($i:expr) => {
                        _mm512_loadu_ps(p.add(16 * $i))
                    };
                }
                // Value `c` of tile `l` is float `M * l + c`: the first
                // `M` values are every `M`th float (their phases); the
                // others the phase `M` before, one tile on, the last
                // tile's from the vector after the phases'.
                let mut d = [_mm512_setzero_ps(); MAX_A];
                let next = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
                if T::M == 2 {
                    let (v0, v1, v2) = (load!(0), load!(1), load!(2));
                    let even = _mm512_setr_epi32(
                        0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
                    );
                    let one = _mm512_set1_epi32(1);
                    d[0] = _mm512_permutex2var_ps(v0, even, v1);
                    d[1] = _mm512_permutex2var_ps(v0, _mm512_add_epi32(even, one), v1);
                    d[2] = _mm512_permutex2var_ps(d[0], next, v2);
                    d[3] = _mm512_permutex2var_ps(
                        d[1],
                        _mm512_add_epi32(next, _mm512_maskz_mov_epi32(0x8000, one)),
                        v2,
                    );
                } else {
                    let (v0, v1, v2, v3, v4) = (load!(0), load!(1), load!(2), load!(3), load!(4));
                    // Floats `c, c + 4, .. c + 28` of a pair of vectors,
                    // in both halves: the first pair's in lanes 0-7, the
                    // second's in 8-15.
                    let fourth =
                        _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
                    for (c, d) in d.iter_mut().enumerate().take(4) {
                        let index = _mm512_add_epi32(fourth, _mm512_set1_epi32(c as i32));
                        let first = _mm512_permutex2var_ps(v0, index, v1);
                        let second = _mm512_permutex2var_ps(v2, index, v3);
                        *d = _mm512_mask_blend_ps(0xff00, first, second);
                    }
                    let one = _mm512_maskz_mov_epi32(0x8000, _mm512_set1_epi32(1));
                    d[4] = _mm512_permutex2var_ps(d[0], next, v4);
                    d[5] = _mm512_permutex2var_ps(d[1], _mm512_add_epi32(next, one), v4);
                }
                d
            }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, live: usize) -> __m512 {
            // SAFETY: the caller's; masked lanes are not read.
            unsafe { _mm512_maskz_loadu_ps(mask(live), p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller's.
            unsafe { _mm512_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn stream(self, p: *mut f32) {
            // SAFETY: the caller's: 64-byte aligned.
            unsafe { _mm512_stream_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn store_live(self, p: *mut f32, live: usize) {
            // SAFETY: the caller's; masked lanes are not written.
            unsafe { _mm512_mask_storeu_ps(p, mask(live), self) }
        }
        #[inline(always)]
        unsafe fn add(self, b: __m512) -> __m512 {
            _mm512_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn sub(self, b: __m512) -> __m512 {
            _mm512_sub_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul_add_to(self, x: __m512, c: f32) -> __m512 {
            _mm512_fmadd_ps(x, _mm512_set1_ps(c), self)
        }
        #[inline(always)]
        unsafe fn at_least(self, lo: f32) -> __m512 {
            // maxps returns its second operand when either is NaN.
            _mm512_max_ps(_mm512_set1_ps(lo), self)
        }
        #[inline(always)]
        unsafe fn at_most(self, hi: f32) -> __m512 {
            _mm512_min_ps(_mm512_set1_ps(hi), self)
        }
        #[inline(always)]
        unsafe fn zip(self, b: __m512) -> (__m512, __m512) {
            let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            (
                _mm512_permutex2var_ps(self, lo, b),
                _mm512_permutex2var_ps(self, hi, b),
            )
        }
    }

    entry_points!(__m512, "avx512f");
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lanes, Plane, Tile, WinogradInput, WinogradOutput, MAX_A};
    use std::arch::x86_64::*;

    /// All ones in the first `live` lanes.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    unsafe fn mask(live: usize) -> __m256i {
        // SAFETY: the caller's.
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(live.min(8) as i32), lanes)
        }
    }

    // SAFETY (every method): the contract is [`Lanes`]'s: AVX2 and FMA are
    // available, and the pointer methods access only the lanes their docs
    // name (masked loads and stores past `live`).
    impl Lanes for __m256 {
        const N: usize = 8;
        // `patch_row` gathers: two runs would gather twice.
        const RUNS: usize = 1;
        type Index = __m256i;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn index(p: *const i32) -> __m256i {
            // SAFETY: the caller's.
            unsafe { _mm256_loadu_si256(p.cast()) }
        }
        #[inline(always)]
        unsafe fn gather(base: *const f32, index: __m256i) -> __m256 {
            // SAFETY: the caller's.
            unsafe { _mm256_i32gather_ps::<4>(base, index) }
        }
        #[inline(always)]
        unsafe fn select(self, other: __m256, from: usize, to: usize) -> __m256 {
            // SAFETY: AVX2, as the caller vouched.
            unsafe {
                let lanes = _mm256_andnot_si256(mask(from), mask(to));
                _mm256_blendv_ps(self, other, _mm256_castsi256_ps(lanes))
            }
        }
        #[inline(always)]
        unsafe fn patch_row<T: Tile>(p: *const f32) -> [__m256; MAX_A] {
            // SAFETY: the caller's: floats `M * l + c` for `l < 8`, `c <
            // A`.
            unsafe {
                let m = T::M as i32;
                let index = _mm256_mullo_epi32(
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                    _mm256_set1_epi32(m),
                );
                let mut d = [_mm256_setzero_ps(); MAX_A];
                for (c, d) in d.iter_mut().enumerate().take(T::A) {
                    *d = _mm256_i32gather_ps::<4>(p.add(c), index);
                }
                d
            }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, live: usize) -> __m256 {
            // SAFETY: the caller's; masked lanes are not read.
            unsafe {
                if live >= 8 {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, mask(live))
                }
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller's.
            unsafe { _mm256_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn stream(self, p: *mut f32) {
            // SAFETY: the caller's: 32-byte aligned.
            unsafe { _mm256_stream_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn store_live(self, p: *mut f32, live: usize) {
            // A masked store costs several times a plain one on AMD: every
            // store of the transforms went through one, and they ran at
            // half the memory bandwidth.
            // SAFETY: the caller's; masked lanes are not written.
            unsafe {
                if live >= 8 {
                    _mm256_storeu_ps(p, self)
                } else {
                    _mm256_maskstore_ps(p, mask(live), self)
                }
            }
        }
        #[inline(always)]
        unsafe fn add(self, b: __m256) -> __m256 {
            _mm256_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn sub(self, b: __m256) -> __m256 {
            _mm256_sub_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul_add_to(self, x: __m256, c: f32) -> __m256 {
            _mm256_fmadd_ps(x, _mm256_set1_ps(c), self)
        }
        #[inline(always)]
        unsafe fn at_least(self, lo: f32) -> __m256 {
            // maxps returns its second operand when either is NaN.
            _mm256_max_ps(_mm256_set1_ps(lo), self)
        }
        #[inline(always)]
        unsafe fn at_most(self, hi: f32) -> __m256 {
            _mm256_min_ps(_mm256_set1_ps(hi), self)
        }
        #[inline(always)]
        unsafe fn zip(self, b: __m256) -> (__m256, __m256) {
            // Within each 128-bit half, then the halves in order.
            let (lo, hi) = (_mm256_unpacklo_ps(self, b), _mm256_unpackhi_ps(self, b));
            (
                _mm256_permute2f128_ps::<0x20>(lo, hi),
                _mm256_permute2f128_ps::<0x31>(lo, hi),
            )
        }
    }

    entry_points!(__m256, "avx2,fma");
}

/// Called by compiled code: [`WinogradInput::run`] on the spec at `spec`.
///
/// # Safety
/// As [`WinogradInput::run`]; `spec` points to a live `WinogradInput`.
#[no_mangle]
pub unsafe extern "C" fn nnc_winograd_input(
    spec: *const WinogradInput,
    x: *const f32,
    out: *mut f32,
    begin: usize,
    end: usize,
) {
    // SAFETY: as documented above.
    unsafe { (*spec).run(x, out, begin, end) }
}

/// Called by compiled code: [`WinogradOutput::run`] on the spec at `spec`.
///
/// # Safety
/// As [`WinogradOutput::run`]; `spec` points to a live `WinogradOutput`.
#[no_mangle]
pub unsafe extern "C" fn nnc_winograd_output(
    spec: *const WinogradOutput,
    x: *const f32,
    out: *mut f32,
    residual: *const f32,
    begin: usize,
    end: usize,
) {
    // SAFETY: as documented above.
    unsafe { (*spec).run(x, out, residual, begin, end) }
}
