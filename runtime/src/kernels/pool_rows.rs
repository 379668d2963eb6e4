//! Native pooling rows: output rows `r0..r1` of one `[H, W]` plane of a
//! `max_pool2d` or `avg_pool2d`, sixteen columns per AVX-512 vector or
//! eight per AVX2 one.
//!
//! The JIT's own pooling works four lanes at a time (Cranelift lowers
//! 128-bit vectors), and the pools of the Model Zoo's SqueezeNet and
//! Inception v2 ran at 4 GFLOP/s and 9 GB/s, 10-15% of those models' time.
//! Here the input rows of a band of output rows are first copied into a
//! buffer padded with the pool's padding value (`-inf` for max, 0 for
//! average, which is what padding contributes), with room past the right
//! edge for the last chunk's loads; then every window is whole and every
//! tap one load (a stride-2 tap is two loads and a permute, other strides
//! gather). The vector code is written once over
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
    use crate::kernels::row_lanes::{copy_padded, padded_buffer, Lanes};
    use std::arch::x86_64::{__m256, __m512};

    /// Most floats of padded input one band copies: 256 KiB, so that the
    /// band stays in L2 between its copy and its taps.
    const BAND_FLOATS: usize = 64 * 1024;

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

    /// Splits `r0..r1` into bands whose padded rows fit [`BAND_FLOATS`]
    /// and computes each: its input rows copied into a buffer padded with
    /// the pool's padding value, then every window read from there.
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
        let n = V::N;
        let [kh, kw] = s.kernel;
        let (sh, dh) = (s.stride[0], s.dilation[0]);
        let (sw, dw, pw) = (s.stride[1], s.dilation[1], s.padding[1]);
        let last_chunk = s.ow.saturating_sub(1) / n * n;
        let width = (pw + s.w).max(last_chunk * sw + (kw - 1) * dw + V::span(sw));
        let band = (BAND_FLOATS / (width * sh).max(1)).max(1);
        let mut first = r0;
        while first < r1 {
            let last = (first + band).min(r1);
            let height = (last - first - 1) * sh + (kh - 1) * dh + 1;
            let base = padded_buffer(width * height);
            let top = (first * sh) as i64 - s.padding[0] as i64;
            let pad = s.kind.pad_value();
            copy_padded::<V>(src, [s.h, s.w], top, pw, pad, base, height, width);
            let out = dst.add((first - r0) * s.ow);
            for oy in first..last {
                let top = base.add((oy - first) * sh * width);
                let out_row = out.add((oy - first) * s.ow);
                let inverse_row = inverse.wrapping_add(oy * s.ow);
                for ox in (0..s.ow).step_by(n) {
                    let live = s.ow - ox;
                    let at = top.add(ox * sw);
                    let v = match s.kind {
                        PoolKind::Max => max_window::<V>(at, width, s, kh, kw),
                        PoolKind::Avg => sum_window::<V>(at, width, s, kh, kw)
                            .mul(V::load_live(inverse_row.add(ox), live)),
                    };
                    v.store_live(out_row.add(ox), live);
                }
            }
            first = last;
        }
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
        let mut acc = V::zero();
        for ky in 0..kh {
            let row = at.add(ky * s.dilation[0] * width);
            for kx in 0..kw {
                acc = acc.add(V::window(row.add(kx * s.dilation[1]), s.stride[1]));
            }
        }
        acc
    }
}
