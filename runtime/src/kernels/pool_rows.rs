//! Native pooling rows: output rows `r0..r1` of one `[H, W]` plane of a
//! `max_pool2d` or `avg_pool2d`, sixteen columns per AVX-512 vector or
//! eight per AVX2 one.
//!
//! The JIT's own pooling works four lanes at a time (Cranelift lowers
//! 128-bit vectors), and the pools of the Model Zoo's SqueezeNet and
//! Inception v2 ran at 4 GFLOP/s and 9 GB/s, 10-15% of those models' time.
//! Here each chunk of output columns reads the plane in place when its
//! windows lie inside it, and otherwise a small copy of the plane around
//! it padded with the pool's padding value (`-inf` for max, 0 for
//! average, which is what padding contributes); either way every window is
//! whole and every tap one load (a stride-2 tap is two loads and a
//! permute, other strides gather). The 3x3 stride-2 pool takes the three
//! rows' maximum (or sum) first and then the three stride-2 windows of
//! that: a third of the loads and permutes. Copying every band of input
//! rows into a padded buffer first, as this did before, took longer than
//! the windows on SqueezeNet's maps (AMD EPYC: its three pools went from
//! 0.92 to 0.38 ms). The vector code is written once over
//! [`Lanes`](super::row_lanes::Lanes), for AVX-512 and AVX2. The portable
//! version is the scalar definition, for other CPUs and as the tests'
//! reference.
//!
//! Max pooling keeps NaN as the interpreter does: `maxps` drops a NaN tap
//! (it returns its second operand, the accumulator, when either is NaN),
//! so the taps' unordered lanes are collected in a mask and set to NaN at
//! the end. Average pooling multiplies each sum by its position's entry of
//! the compile-time `1/divisor` table (see `kernels/pool.rs`), which
//! carries PyTorch's `count_include_pad` rule.

#![allow(unsafe_code)]

use super::gemm::MicroKernel;

/// Which reduction a window takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolKind {
    Max,
    /// The sum, times the position's inverse divisor.
    Avg,
}

impl PoolKind {
    /// What a tap in the padding contributes.
    fn pad_value(self) -> f32 {
        match self {
            PoolKind::Max => f32::NEG_INFINITY,
            PoolKind::Avg => 0.0,
        }
    }
}

/// The geometry of one pooling op (one per compiled op, owned by the
/// compiled model).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PoolRows {
    /// Input plane `[h, w]`, output row length `ow`.
    pub h: usize,
    pub w: usize,
    pub ow: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// The padding before each axis, `[top, left]`; the padding after
    /// only shows in the output size (and the average's divisors).
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub kind: PoolKind,
    /// `Avx512`, `Avx2Fma` or `Portable`.
    pub kernel_impl: MicroKernel,
}

impl PoolRows {
    /// Computes output rows `r0..r1` of one plane into `dst` (row stride
    /// `ow`, `dst` at row `r0`) from its input plane `src`. `inverse` is
    /// the average's `1/divisor` table of the whole output plane (row
    /// stride `ow`); max pooling ignores it.
    ///
    /// # Safety
    /// `src` must hold the `h x w` plane, `dst` `(r1 - r0) * ow` floats,
    /// `inverse` (for `Avg`) `r1 * ow` floats, `kernel` and `stride` must
    /// be nonzero, and `kernel_impl` must be available.
    pub unsafe fn run(
        &self,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        use {std::arch::x86_64::*, vector::Kernels};
        match self.kernel_impl {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => __m512::rows(self, src, inverse, dst, r0, r1),
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2Fma => __m256::rows(self, src, inverse, dst, r0, r1),
            #[cfg(not(target_arch = "x86_64"))]
            MicroKernel::Avx512 | MicroKernel::Avx2Fma => self.portable(src, inverse, dst, r0, r1),
            MicroKernel::Portable => self.portable(src, inverse, dst, r0, r1),
        }
    }

    /// The input index of tap `k` for output `o` along `axis`, if it lies
    /// inside the input.
    fn input_index(&self, o: usize, k: usize, axis: usize) -> Option<usize> {
        let len = [self.h, self.w][axis];
        (o * self.stride[axis] + k * self.dilation[axis])
            .checked_sub(self.padding[axis])
            .filter(|&i| i < len)
    }

    /// The scalar definition, for CPUs without AVX-512 or AVX2.
    ///
    /// # Safety
    /// As [`PoolRows::run`].
    unsafe fn portable(
        &self,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let [kh, kw] = self.kernel;
        for oy in r0..r1 {
            for ox in 0..self.ow {
                let mut acc = self.kind.pad_value();
                for ky in 0..kh {
                    let Some(iy) = self.input_index(oy, ky, 0) else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = self.input_index(ox, kx, 1) else {
                            continue;
                        };
                        let v = *src.add(iy * self.w + ix);
                        match self.kind {
                            // As the interpreter: a NaN tap wins, and
                            // then stays (nothing is greater than NaN).
                            PoolKind::Max => {
                                if v > acc || v.is_nan() {
                                    acc = v;
                                }
                            }
                            PoolKind::Avg => acc += v,
                        }
                    }
                }
                if self.kind == PoolKind::Avg {
                    acc *= *inverse.add(oy * self.ow + ox);
                }
                *dst.add((oy - r0) * self.ow + ox) = acc;
            }
        }
    }
}

/// Called by compiled code: [`PoolRows::run`] on the spec at `spec`.
///
/// # Safety
/// As [`PoolRows::run`]; `spec` points to a live `PoolRows`.
#[no_mangle]
pub unsafe extern "C" fn nnc_pool_rows(
    spec: *const PoolRows,
    src: *const f32,
    inverse: *const f32,
    dst: *mut f32,
    r0: usize,
    r1: usize,
) {
    // SAFETY: the caller passes the spec the compiled model owns and
    // buffers of the sizes `run` asks for.
    unsafe { (*spec).run(src, inverse, dst, r0, r1) }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use super::{PoolKind, PoolRows};
    use crate::kernels::row_lanes::{copy_window, padded_buffer, padded_width, Lanes};
    use std::arch::x86_64::{__m256, __m512};

    /// The pooling rows compiled for the instruction set of one [`Lanes`].
    pub(super) trait Kernels: Lanes {
        /// # Safety
        /// As [`PoolRows::run`], with the lanes' instruction set available.
        unsafe fn rows(
            s: &PoolRows,
            src: *const f32,
            inverse: *const f32,
            dst: *mut f32,
            r0: usize,
            r1: usize,
        );
    }

    /// [`Kernels`] for `$lanes`, compiled with `$features` so that the
    /// generic code below and the lanes' `#[inline(always)]` methods
    /// inline into it.
    macro_rules! kernels {
        ($lanes:ty, $features:literal) => {
            // SAFETY (every method): the contract is [`Kernels`]'s (the
            // instruction set checked by the caller), forwarded.
            impl Kernels for $lanes {
                #[target_feature(enable = $features)]
                unsafe fn rows(
                    s: &PoolRows,
                    src: *const f32,
                    inverse: *const f32,
                    dst: *mut f32,
                    r0: usize,
                    r1: usize,
                ) {
                    rows::<$lanes>(s, src, inverse, dst, r0, r1)
                }
            }
        };
    }

    kernels!(__m512, "avx512f");
    kernels!(__m256, "avx2,fma");

    /// Most floats of padded input one band of [`banded_rows`] copies:
    /// 256 KiB, so that the band stays in L2 between its copy and its taps.
    const BAND_FLOATS: usize = 64 * 1024;

    /// Computes output rows `r0..r1`: in place when few chunks of a row
    /// reach into the padding ([`few_patches`]), else from padded copies
    /// of bands of rows.
    ///
    /// # Safety
    /// As [`PoolRows::run`], with `V`'s instruction set available.
    #[inline(always)]
    unsafe fn rows<V: Lanes>(
        s: &PoolRows,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        // The commonest pools, 3x3 at stride 2 (ResNet's, SqueezeNet's,
        // GoogLeNet's) and at stride 1 (Inception's), have their own paths
        // with the taps unrolled: see `max_3x3_s2` and `max_3x3_s1`.
        let shape = match (s.kernel, s.stride, s.dilation) {
            ([3, 3], [1, 1], [1, 1]) => THREE_S1,
            ([3, 3], [2, 2], [1, 1]) => THREE_S2,
            ([2, 2], [2, 2], [1, 1]) => TWO_S2,
            _ => ANY,
        };
        let narrow = s.ow <= V::N;
        let two = s.ow <= 2 * V::N;
        // Rows of several vectors through the masked loads too where most
        // of their vectors would take padded copies: AVX-512 only (AVX2's
        // masked loads are slow on AMD). Where few would, the copies' edge
        // vectors are masked loads anyway (`edge_3x3_s2`) and the others
        // plain loads, which were faster (64 planes of 112x112 without
        // padding: 0.095 ms, 0.116 all masked; AMD EPYC Zen 4).
        let masked = narrow || (V::N == 16 && s.ow <= MASKED_CHUNKS * V::N);
        match (few_patches::<V>(s), shape) {
            (false, THREE_S1) if narrow && s.kind == PoolKind::Max => {
                rows_narrow_3x3_s1::<V, true, 1>(s, src, inverse, dst, r0, r1)
            }
            (false, THREE_S1) if narrow => {
                rows_narrow_3x3_s1::<V, false, 1>(s, src, inverse, dst, r0, r1)
            }
            (false, THREE_S1) if two && s.kind == PoolKind::Max => {
                rows_narrow_3x3_s1::<V, true, 2>(s, src, inverse, dst, r0, r1)
            }
            (false, THREE_S1) if two => {
                rows_narrow_3x3_s1::<V, false, 2>(s, src, inverse, dst, r0, r1)
            }
            (false, THREE_S1) => banded_rows::<V, THREE_S1>(s, src, inverse, dst, r0, r1),
            // In place or not: the general windows gather a stride-2 tap,
            // and GoogLeNet's 2x2 pool of 14x14 maps took 0.06 ms.
            (_, TWO_S2) if narrow && s.kind == PoolKind::Max => {
                rows_masked_s2::<V, true, 2>(s, src, inverse, dst, r0, r1)
            }
            (_, TWO_S2) if narrow => rows_masked_s2::<V, false, 2>(s, src, inverse, dst, r0, r1),
            (false, THREE_S2) if masked && s.kind == PoolKind::Max => {
                rows_masked_s2::<V, true, 3>(s, src, inverse, dst, r0, r1)
            }
            (false, THREE_S2) if masked => {
                rows_masked_s2::<V, false, 3>(s, src, inverse, dst, r0, r1)
            }
            (true, THREE_S1) => rows_in_place::<V, THREE_S1>(s, src, inverse, dst, r0, r1),
            (true, THREE_S2) => rows_in_place::<V, THREE_S2>(s, src, inverse, dst, r0, r1),
            (true, _) => rows_in_place::<V, ANY>(s, src, inverse, dst, r0, r1),
            (false, THREE_S2) => banded_rows::<V, THREE_S2>(s, src, inverse, dst, r0, r1),
            (false, _) => banded_rows::<V, ANY>(s, src, inverse, dst, r0, r1),
        }
    }

    /// Whether at most a quarter of a row's chunks reach into the padding
    /// before or after the row, and so need a patch of their own in
    /// [`rows_in_place`]. On small padded maps (Inception's 3x3 stride-1
    /// pools on 14x14 and 28x28) most chunks would, and the patches cost
    /// more than one padded copy of a band of rows (AMD EPYC: 0.6 against
    /// 0.3 ms).
    fn few_patches<V: Lanes>(s: &PoolRows) -> bool {
        let n = V::N;
        let (sw, dw, pl) = (s.stride[1], s.dilation[1], s.padding[1]);
        let chunks = s.ow.div_ceil(n);
        let patched = (0..s.ow)
            .step_by(n)
            .filter(|&ox| {
                let covered = ((s.ow - ox).min(n) - 1) * sw + (s.kernel[1] - 1) * dw + 1;
                ox * sw < pl || ox * sw - pl + covered > s.w
            })
            .count();
        4 * patched <= chunks
    }

    /// Computes output rows `r0..r1`, one chunk of `N` outputs at a time,
    /// reading the plane in place where the chunk's live windows lie in
    /// it; a chunk whose windows reach into the padding (before the row,
    /// or after it in ceil mode), or whose loads would run past the
    /// plane's end, reads a patch of the plane copied with the padding
    /// value around it.
    ///
    /// # Safety
    /// As [`PoolRows::run`], with `V`'s instruction set available.
    #[inline(always)]
    unsafe fn rows_in_place<V: Lanes, const SHAPE: u8>(
        s: &PoolRows,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let n = V::N;
        let [kh, kw] = s.kernel;
        let (sh, dh) = (s.stride[0], s.dilation[0]);
        let (sw, dw) = (s.stride[1], s.dilation[1]);
        // The rows and columns a chunk's windows read from its first tap.
        let height = (kh - 1) * dh + 1;
        let reach = (kw - 1) * dw + V::span(sw);
        let patch = padded_buffer(height * reach);
        let pad = s.kind.pad_value();
        let [pt, pl] = s.padding;
        for oy in r0..r1 {
            let top = (oy * sh) as i64 - pt as i64;
            let rows_inside = top >= 0 && top as usize + height <= s.h;
            let out_row = dst.add((oy - r0) * s.ow);
            let inverse_row = inverse.wrapping_add(oy * s.ow);
            for ox in (0..s.ow).step_by(n) {
                let live = s.ow - ox;
                let left = (ox * sw) as i64 - pl as i64;
                // Loads running past the row's end read the next row into
                // lanes that are not stored (a NaN there only sends
                // `max_3x3_s2` the slow way).
                let covered = (live.min(n) - 1) * sw + (kw - 1) * dw + 1;
                let in_place = rows_inside
                    && left >= 0
                    && left as usize + covered <= s.w
                    && (top as usize + height - 1) * s.w + left as usize + reach <= s.h * s.w;
                let edge = (!in_place && SHAPE == THREE_S2)
                    .then(|| edge_3x3_s2::<V>(s, src, top as isize, left as isize))
                    .flatten();
                let v = match edge {
                    Some(v) if s.kind == PoolKind::Max => v,
                    Some(v) => v.mul(V::load_live(inverse_row.wrapping_add(ox), live)),
                    None => {
                        let (at, width) = if in_place {
                            (src.add(top as usize * s.w + left as usize), s.w)
                        } else {
                            copy_window::<V>(src, [s.h, s.w], top, left, pad, patch, height, reach);
                            (patch.cast_const(), reach)
                        };
                        chunk::<V, SHAPE>(s, at, width, inverse_row.wrapping_add(ox), live)
                    }
                };
                store::<V>(v, out_row.add(ox), live, (r1 - oy) * s.ow - ox);
            }
        }
    }

    /// Computes output rows `r0..r1` of a 3x3 stride-1 pool on a map at
    /// most `CHUNKS` vectors wide (1 or 2: Inception's and GoogLeNet's
    /// pools on 7x7 to 28x28 maps), a vector per chunk of an output row:
    /// every window read in place, the taps outside the row masked off
    /// their loads and given the padding value (each chunk's three tap
    /// columns' masks are the same for every row), the rows outside the
    /// plane left out (they would add the padding value, which changes
    /// neither a max nor a sum). `MAX`: max pooling, else average. A
    /// padded copy of every band, as [`banded_rows`] makes, cost more than
    /// the taps (AMD EPYC Zen 5, Inception v2: 14x14 pools 0.059 -> 0.034
    /// ms, 7x7 0.058 -> 0.033-0.040, 28x28 0.062-0.065 -> 0.054-0.058;
    /// ORT's 0.011-0.018). Masks computed per chunk inside the row loop
    /// (no table) made the 28x28 pools slower than the padded copies.
    ///
    /// # Safety
    /// As [`PoolRows::run`], with `V`'s instruction set available, a 3x3
    /// window at stride 1 without dilation, and `ow <= CHUNKS * N`.
    #[inline(always)]
    unsafe fn rows_narrow_3x3_s1<V: Lanes, const MAX: bool, const CHUNKS: usize>(
        s: &PoolRows,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let [pt, pl] = s.padding;
        let fill = V::splat(s.kind.pad_value());
        let n = V::N;
        // Each chunk's tap columns, the same for every row. (Helper
        // functions and no closures: closures do not inherit the caller's
        // target features, and the intrinsics in them became calls, ten
        // times slower than the padded copies.)
        let first = [-(pl as isize), n as isize - pl as isize];
        let live = [s.ow.min(n), s.ow.saturating_sub(n)];
        let mut taps = [[(0, V::mask(0)); 3]; CHUNKS];
        for (c, taps) in taps.iter_mut().enumerate() {
            for (kx, tap) in taps.iter_mut().enumerate() {
                let at = first[c] + kx as isize;
                *tap = (at, masked_column::<V>(at, s.w, live[c]));
            }
        }
        for oy in r0..r1 {
            // Input rows `oy - pt ..= oy - pt + 2`, those inside the plane.
            let top = oy as isize - pt as isize;
            for (c, taps) in taps.iter().enumerate() {
                let mut nan = V::no_nan();
                let mut x = [fill; 3];
                for (r, x) in x.iter_mut().enumerate() {
                    let iy = top + r as isize;
                    if (0..s.h as isize).contains(&iy) {
                        let row = src.add(iy as usize * s.w);
                        *x = masked_row::<V, MAX>(row, taps, fill, &mut nan);
                    }
                }
                let ox = c * n;
                let v = if MAX {
                    V::max(x[2], V::max(x[1], x[0])).set_nan(nan)
                } else {
                    let inverse = V::load_live(inverse.wrapping_add(oy * s.ow + ox), live[c]);
                    x[0].add(x[1]).add(x[2]).mul(inverse)
                };
                let room = (r1 - oy) * s.ow - ox;
                store::<V>(v, dst.add((oy - r0) * s.ow + ox), live[c], room);
            }
        }
    }

    /// A 3x3 stride-2 chunk whose windows reach past the plane's edges
    /// (its top-left input at `(top, left)`, either possibly -1), read in
    /// place by masked loads, the lanes outside the plane given the
    /// padding value: the maximum, or for `Avg` the sum before the
    /// divisors. `None` if a tap is NaN (the caller takes the padded copy,
    /// whose path keeps it). Copying a patch for every such chunk cost the
    /// ResNets' 3x3 pool of 64 112x112 planes, whose first chunk of every
    /// row and whole first row reach into the padding, 0.06 of its 0.16 ms
    /// (AMD EPYC Zen 4).
    ///
    /// # Safety
    /// As [`PoolRows::run`], with `V`'s instruction set available; `top`
    /// and `left` above `-(N as isize)`.
    #[inline(always)]
    unsafe fn edge_3x3_s2<V: Lanes>(
        s: &PoolRows,
        src: *const f32,
        top: isize,
        left: isize,
    ) -> Option<V> {
        let fill = V::splat(s.kind.pad_value());
        let n = V::N as isize;
        let low = masked_column::<V>(left, s.w, V::N);
        let high = masked_column::<V>(left + n, s.w, V::N);
        let last = (0..s.w as isize).contains(&(left + 2 * n));
        let max = s.kind == PoolKind::Max;
        let mut nan = V::no_nan();
        let (mut lo, mut hi, mut next) = (fill, fill, fill);
        for iy in (top..top + 3).filter(|iy| (0..s.h as isize).contains(iy)) {
            let at = src.add(iy as usize * s.w).wrapping_offset(left);
            let row = masked_row_2n::<V>(at, (low, high, last), fill);
            (lo, hi, next) = combine_rows(max, (lo, hi, next), row, &mut nan);
        }
        if max && V::any_nan(nan) {
            return None;
        }
        let [even, odd, shifted] = V::split_stride2(lo, hi, next);
        Some(if max {
            V::max(shifted, V::max(odd, even))
        } else {
            even.add(odd).add(shifted)
        })
    }

    /// The `2N + 1` columns of an input row from `at` as the stride-2
    /// paths take them (columns `0..N`, `N..2N`, and `2N` where
    /// [`Lanes::split_stride2`] wants it), loading only the lanes
    /// `(low, high, last)` keep and giving the others `fill`.
    ///
    /// # Safety
    /// The kept columns are readable; `V`'s instruction set is available.
    #[inline(always)]
    unsafe fn masked_row_2n<V: Lanes>(
        at: *const f32,
        (low, high, last): (V::Mask, V::Mask, bool),
        fill: V,
    ) -> (V, V, V) {
        (
            V::load_masked_or(at, low, fill),
            V::load_masked_or(at.wrapping_add(V::N), high, fill),
            V::load_column_2n_or(at, last, fill),
        )
    }

    /// `acc` combined with one more row (`max`: the maximum, noting NaN
    /// lanes in `nan`; else the sum).
    ///
    /// # Safety
    /// `V`'s instruction set is available.
    #[inline(always)]
    unsafe fn combine_rows<V: Lanes>(
        max: bool,
        (lo, hi, next): (V, V, V),
        (l, h, x): (V, V, V),
        nan: &mut V::NanLanes,
    ) -> (V, V, V) {
        if max {
            *nan = V::note_nan(V::note_nan(V::note_nan(*nan, l), h), x);
            (V::max(l, lo), V::max(h, hi), V::max(x, next))
        } else {
            (lo.add(l), hi.add(h), next.add(x))
        }
    }

    /// Most vectors per output row [`rows_masked_s2`] takes (128 columns
    /// with AVX-512).
    const MASKED_CHUNKS: usize = 8;

    /// Computes output rows `r0..r1` of a `K`x`K` stride-2 pool (`K` 2 or
    /// 3) whose output rows are at most [`MASKED_CHUNKS`] vectors wide, as
    /// [`rows_narrow_3x3_s1`] does at stride 1: for each vector of an
    /// output row, each input row's `2N + 1` columns under it read in place
    /// by masked loads (lanes outside the row given the padding value; the
    /// masks of each vector the same for every row), the rows combined,
    /// then split into the stride-2 taps as [`max_3x3_s2`] does. `MAX`: max
    /// pooling, else average. With one vector: Inception v2's pools from
    /// 28x28 and 14x14 maps 0.049 -> 0.038 and 0.049-0.057 -> 0.036 ms,
    /// GoogLeNet's 2x2 from 14x14 (AMD EPYC Zen 5). With several (AVX-512
    /// only: AVX2's masked loads are slow on AMD), where most vectors of a
    /// row would reach into the padding: a 3x3 stride-2 pool of 64 planes
    /// of 56x56 with padding 1 took 0.044 ms through padded copies of
    /// bands of rows, 0.034 here (AMD EPYC Zen 4; ONNX Runtime 0.018).
    ///
    /// # Safety
    /// As [`PoolRows::run`], with `V`'s instruction set available, a
    /// `K`x`K` window at stride 2 without dilation, and `ow <=
    /// MASKED_CHUNKS * N`.
    #[inline(always)]
    unsafe fn rows_masked_s2<V: Lanes, const MAX: bool, const K: usize>(
        s: &PoolRows,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let [pt, pl] = s.padding;
        let fill = V::splat(s.kind.pad_value());
        let n = V::N as isize;
        let chunks = s.ow.div_ceil(V::N).min(MASKED_CHUNKS);
        // Per vector: lane 0 of its low half reads column `first`, the high
        // half the `N` columns after, then column `first + 2N`.
        let mut columns = [(0, V::mask(0), V::mask(0), false); MASKED_CHUNKS];
        for (c, column) in columns.iter_mut().enumerate().take(chunks) {
            let first = 2 * (c * V::N) as isize - pl as isize;
            *column = (
                first,
                masked_column::<V>(first, s.w, V::N),
                masked_column::<V>(first + n, s.w, V::N),
                (0..s.w as isize).contains(&(first + 2 * n)),
            );
        }
        'rows: for oy in r0..r1 {
            let top = (2 * oy) as isize - pt as isize;
            for (c, &(first, low, high, last)) in columns[..chunks].iter().enumerate() {
                let ox = c * V::N;
                let mut nan = V::no_nan();
                let (mut lo, mut hi, mut next) = (fill, fill, fill);
                for r in 0..K as isize {
                    let iy = top + r;
                    if !(0..s.h as isize).contains(&iy) {
                        continue;
                    }
                    let at = src.add(iy as usize * s.w).wrapping_offset(first);
                    // A 2x2 window never reaches column `2N`.
                    let row = masked_row_2n::<V>(at, (low, high, K == 3 && last), fill);
                    (lo, hi, next) = combine_rows(MAX, (lo, hi, next), row, &mut nan);
                }
                if MAX && V::any_nan(nan) {
                    // The NaN lanes are the input's, not the output's: this
                    // row the slow way (as `max_3x3_s2` does).
                    let row = dst.add((oy - r0) * s.ow);
                    match K {
                        3 => banded_rows::<V, THREE_S2>(s, src, inverse, row, oy, oy + 1),
                        _ => banded_rows::<V, ANY>(s, src, inverse, row, oy, oy + 1),
                    }
                    continue 'rows;
                }
                let live = s.ow - ox;
                let [even, odd, shifted] = V::split_stride2(lo, hi, next);
                let v = match (MAX, K) {
                    (true, 3) => V::max(shifted, V::max(odd, even)),
                    (true, _) => V::max(odd, even),
                    (false, k) => {
                        let inverse = V::load_live(inverse.wrapping_add(oy * s.ow + ox), live);
                        let sum = even.add(odd);
                        if k == 3 { sum.add(shifted) } else { sum }.mul(inverse)
                    }
                };
                let room = (r1 - oy) * s.ow - ox;
                store::<V>(v, dst.add((oy - r0) * s.ow + ox), live, room);
            }
        }
    }

    /// The masked paths' load mask for a vector whose lane `j` reads
    /// column `first + j` of a row `w` long: its first `live` lanes that
    /// lie inside the row.
    ///
    /// # Safety
    /// `V`'s instruction set must be available (`V::mask` may use it).
    #[inline(always)]
    unsafe fn masked_column<V: Lanes>(first: isize, w: usize, live: usize) -> V::Mask {
        let lo = (-first).clamp(0, V::N as isize) as u32;
        let hi = (w as isize - first).clamp(0, live as isize) as u32;
        let bits = if lo < hi {
            ((1u32 << hi) - 1) & !((1u32 << lo) - 1)
        } else {
            0
        };
        V::mask(bits as u16)
    }

    /// One input row's three taps of [`rows_narrow_3x3_s1`],
    /// combined (max or sum), the taps outside the row `fill`.
    ///
    /// # Safety
    /// `row` is a row of the plane; `taps` are each tap column's first
    /// column and [`masked_column`].
    #[inline(always)]
    unsafe fn masked_row<V: Lanes, const MAX: bool>(
        row: *const f32,
        taps: &[(isize, V::Mask); 3],
        fill: V,
        nan: &mut V::NanLanes,
    ) -> V {
        let a = V::load_masked_or(row.wrapping_offset(taps[0].0), taps[0].1, fill);
        let b = V::load_masked_or(row.wrapping_offset(taps[1].0), taps[1].1, fill);
        let c = V::load_masked_or(row.wrapping_offset(taps[2].0), taps[2].1, fill);
        if MAX {
            *nan = V::note_nan(V::note_nan(V::note_nan(*nan, a), b), c);
            V::max(c, V::max(b, a))
        } else {
            a.add(b).add(c)
        }
    }

    /// Splits `r0..r1` into bands whose padded rows fit [`BAND_FLOATS`]
    /// and computes each: its input rows copied into a buffer padded with
    /// the pool's padding value, then every window read from there.
    ///
    /// # Safety
    /// As [`PoolRows::run`], with `V`'s instruction set available.
    #[inline(always)]
    unsafe fn banded_rows<V: Lanes, const SHAPE: u8>(
        s: &PoolRows,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let n = V::N;
        let [kh, kw] = s.kernel;
        let (sh, dh) = (s.stride[0], s.dilation[0]);
        let (sw, dw, pw) = (s.stride[1], s.dilation[1], s.padding[1]);
        let width = padded_width::<V>(s.ow, s.w, [kw, sw, dw, pw]);
        let band = (BAND_FLOATS / (width * sh).max(1)).max(1);
        let mut first = r0;
        while first < r1 {
            let last = (first + band).min(r1);
            let height = (last - first - 1) * sh + (kh - 1) * dh + 1;
            let base = padded_buffer(width * height);
            let top = (first * sh) as i64 - s.padding[0] as i64;
            let pad = s.kind.pad_value();
            copy_window::<V>(src, [s.h, s.w], top, -(pw as i64), pad, base, height, width);
            let out = dst.add((first - r0) * s.ow);
            for oy in first..last {
                let top = base.add((oy - first) * sh * width);
                let out_row = out.add((oy - first) * s.ow);
                let inverse_row = inverse.wrapping_add(oy * s.ow);
                for ox in (0..s.ow).step_by(n) {
                    let live = s.ow - ox;
                    let inverse = inverse_row.wrapping_add(ox);
                    let v = chunk::<V, SHAPE>(s, top.add(ox * sw), width, inverse, live);
                    store::<V>(v, out_row.add(ox), live, (r1 - oy) * s.ow - ox);
                }
            }
            first = last;
        }
    }

    /// Stores a chunk's `live` outputs at `at`, where `room` floats up to
    /// the end of the call's rows follow. A partial chunk is stored whole
    /// when there is room: what spills into the next rows is written over
    /// later, and masked stores cost several times a plain one on AMD (the
    /// last chunk of every row of a 13x13 map is partial).
    ///
    /// # Safety
    /// `at` holds `room` floats, at least `live`.
    #[inline(always)]
    unsafe fn store<V: Lanes>(v: V, at: *mut f32, live: usize, room: usize) {
        if room >= V::N {
            v.store(at);
        } else {
            v.store_live(at, live);
        }
    }

    /// One chunk of outputs whose windows start at `at` (rows `width`
    /// apart); `inverse` is the chunk's entries of the average's table.
    /// `SHAPE`: [`THREE_S1`], [`THREE_S2`] or [`ANY`].
    ///
    /// # Safety
    /// Every tap's window from `at` is readable; for `Avg`, `inverse`
    /// holds `live` floats.
    #[inline(always)]
    unsafe fn chunk<V: Lanes, const SHAPE: u8>(
        s: &PoolRows,
        at: *const f32,
        width: usize,
        inverse: *const f32,
        live: usize,
    ) -> V {
        let [kh, kw] = s.kernel;
        let v = match (s.kind, SHAPE) {
            (PoolKind::Max, THREE_S1) => return max_3x3_s1::<V>(at, width),
            (PoolKind::Max, THREE_S2) => return max_3x3_s2::<V>(at, width, s),
            (PoolKind::Max, _) => return max_window::<V>(at, width, s, kh, kw),
            (PoolKind::Avg, THREE_S1) => sum_3x3_s1::<V>(at, width),
            (PoolKind::Avg, THREE_S2) => sum_3x3_s2::<V>(at, width),
            (PoolKind::Avg, _) => sum_window::<V>(at, width, s, kh, kw),
        };
        v.mul(V::load_live(inverse, live))
    }

    /// Pool shapes with paths of their own (a const parameter).
    const ANY: u8 = 0;
    /// 3x3 at stride 1, no dilation.
    const THREE_S1: u8 = 1;
    /// 3x3 at stride 2, no dilation.
    const THREE_S2: u8 = 2;
    /// 2x2 at stride 2, no dilation: [`ANY`] but for the narrow path.
    const TWO_S2: u8 = 3;

    /// [`max_window`] for a 3x3 window at stride 1, unrolled: each row's
    /// three taps, then the rows (chains of two, not nine).
    ///
    /// # Safety
    /// As [`max_window`].
    #[inline(always)]
    unsafe fn max_3x3_s1<V: Lanes>(at: *const f32, width: usize) -> V {
        let mut nan = V::no_nan();
        let mut rows = [V::zero(); 3];
        for (r, m) in rows.iter_mut().enumerate() {
            let row = at.add(r * width);
            let [a, b, c] = [V::load(row), V::load(row.add(1)), V::load(row.add(2))];
            nan = V::note_nan(V::note_nan(V::note_nan(nan, a), b), c);
            *m = V::max(c, V::max(b, a));
        }
        V::max(rows[2], V::max(rows[1], rows[0])).set_nan(nan)
    }

    /// [`sum_window`] for a 3x3 window at stride 1, as [`max_3x3_s1`].
    ///
    /// # Safety
    /// As [`max_window`].
    #[inline(always)]
    unsafe fn sum_3x3_s1<V: Lanes>(at: *const f32, width: usize) -> V {
        let mut rows = [V::zero(); 3];
        for (r, sum) in rows.iter_mut().enumerate() {
            let row = at.add(r * width);
            *sum = V::load(row)
                .add(V::load(row.add(1)))
                .add(V::load(row.add(2)));
        }
        rows[0].add(rows[1]).add(rows[2])
    }

    /// The maximum of one chunk's windows whose top-left taps start at
    /// `at`, a NaN tap making its lane NaN.
    ///
    /// # Safety
    /// `V`'s instruction set must be available; every tap's window from
    /// `at` lies in the padded band.
    #[inline(always)]
    unsafe fn max_window<V: Lanes>(
        at: *const f32,
        width: usize,
        s: &PoolRows,
        kh: usize,
        kw: usize,
    ) -> V {
        let mut acc = V::splat(f32::NEG_INFINITY);
        let mut nan = V::no_nan();
        for ky in 0..kh {
            let row = at.add(ky * s.dilation[0] * width);
            for kx in 0..kw {
                let v = V::window(row.add(kx * s.dilation[1]), s.stride[1]);
                nan = V::note_nan(nan, v);
                // `v > acc ? v : acc`: `acc` when `v` is NaN (noted above).
                acc = V::max(v, acc);
            }
        }
        acc.set_nan(nan)
    }

    /// [`max_window`] for a 3x3 window at stride 2: the three rows'
    /// maximum first, column by column (unit-stride loads), then the
    /// three windows of its `2N + 1` columns at stride 2 (two permutes and
    /// a shift) instead of nine stride-2 windows of two loads and a
    /// permute each. `maxps` drops NaN, so a chunk with a NaN among its
    /// taps (rare) goes through [`max_window`].
    ///
    /// # Safety
    /// As [`max_window`]: the chunk's `3 x (2N + 1)` columns from `at`
    /// (rows `width` apart) are readable.
    #[inline(always)]
    unsafe fn max_3x3_s2<V: Lanes>(at: *const f32, width: usize, s: &PoolRows) -> V {
        let row = |r: usize| at.add(r * width);
        let (mut lo, mut hi, mut next) = (
            V::load(row(0)),
            V::load(row(0).add(V::N)),
            V::load_column_2n(row(0)),
        );
        let mut nan = V::note_nan(V::note_nan(V::note_nan(V::no_nan(), lo), hi), next);
        for r in 1..3 {
            let (l, h, n) = (
                V::load(row(r)),
                V::load(row(r).add(V::N)),
                V::load_column_2n(row(r)),
            );
            nan = V::note_nan(V::note_nan(V::note_nan(nan, l), h), n);
            (lo, hi, next) = (V::max(l, lo), V::max(h, hi), V::max(n, next));
        }
        if V::any_nan(nan) {
            return max_window::<V>(at, width, s, 3, 3);
        }
        let [even, odd, shifted] = V::split_stride2(lo, hi, next);
        V::max(shifted, V::max(odd, even))
    }

    /// [`sum_window`] for a 3x3 window at stride 2, as [`max_3x3_s2`]
    /// takes its maximum.
    ///
    /// # Safety
    /// As [`max_3x3_s2`].
    #[inline(always)]
    unsafe fn sum_3x3_s2<V: Lanes>(at: *const f32, width: usize) -> V {
        let row = |r: usize| at.add(r * width);
        let (mut lo, mut hi, mut next) = (V::zero(), V::zero(), V::zero());
        for r in 0..3 {
            lo = lo.add(V::load(row(r)));
            hi = hi.add(V::load(row(r).add(V::N)));
            next = next.add(V::load_column_2n(row(r)));
        }
        let [even, odd, shifted] = V::split_stride2(lo, hi, next);
        even.add(odd).add(shifted)
    }

    /// The sum of one chunk's windows from `at`.
    ///
    /// # Safety
    /// As [`max_window`].
    #[inline(always)]
    unsafe fn sum_window<V: Lanes>(
        at: *const f32,
        width: usize,
        s: &PoolRows,
        kh: usize,
        kw: usize,
    ) -> V {
        // Each row's taps summed on their own, then the rows: a chain of
        // `kw + kh` additions rather than `kw * kh` (their latency, not
        // the loads, bounded the average pools).
        let mut acc = V::zero();
        for ky in 0..kh {
            let row = at.add(ky * s.dilation[0] * width);
            let mut sum = V::window(row, s.stride[1]);
            for kx in 1..kw {
                sum = sum.add(V::window(row.add(kx * s.dilation[1]), s.stride[1]));
            }
            acc = acc.add(sum);
        }
        acc
    }
}
