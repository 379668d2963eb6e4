//! Native pooling rows: output rows `r0..r1` of one `[H, W]` plane of a
//! `max_pool2d` or `avg_pool2d`, sixteen columns per AVX-512 vector.
//!
//! The JIT's own pooling works four lanes at a time (Cranelift lowers
//! 128-bit vectors), and the pools of the Model Zoo's SqueezeNet and
//! Inception v2 ran at 4 GFLOP/s and 9 GB/s, 10-15% of those models' time.
//! Here the input rows of a band of output rows are first copied into a
//! buffer padded with the pool's padding value (`-inf` for max, 0 for
//! average, which is what padding contributes), with room past the right
//! edge for the last chunk's loads; then every window is whole and every
//! tap one load (a stride-2 tap is two loads and a permute, other strides
//! gather). The portable version is the scalar definition, for CPUs
//! without AVX-512.
//!
//! Max pooling keeps NaN as the interpreter does: `maxps` drops a NaN tap,
//! so the taps' unordered lanes are collected in a mask and set to NaN at
//! the end. Average pooling multiplies each sum by its position's entry of
//! the compile-time `1/divisor` table (see `kernels/pool.rs`), which
//! carries PyTorch's `count_include_pad` rule.

#![allow(unsafe_code)]

use super::gemm::MicroKernel;

/// Which reduction a window takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug)]
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
    /// `Avx512` or `Portable`.
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
        match self.kernel_impl {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => avx512::rows(self, src, inverse, dst, r0, r1),
            _ => self.portable(src, inverse, dst, r0, r1),
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

    /// The scalar definition, for CPUs without AVX-512.
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

/// Called by JIT code: [`PoolRows::run`] on the spec at `spec`.
///
/// # Safety
/// As [`PoolRows::run`]; `spec` points to a live `PoolRows`.
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
mod avx512 {
    use super::{PoolKind, PoolRows};
    use crate::backend::gemm::avx512::{lane_mask, span, window};
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    thread_local! {
        /// The padded input rows of one band (see [`rows`]).
        static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// Most floats of padded input one band copies: 256 KiB, so that the
    /// band stays in L2 between its copy and its taps.
    const BAND_FLOATS: usize = 64 * 1024;

    /// Splits `r0..r1` into bands whose padded rows fit [`BAND_FLOATS`]
    /// and computes each.
    ///
    /// # Safety
    /// As [`PoolRows::run`], with AVX-512F available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(
        s: &PoolRows,
        src: *const f32,
        inverse: *const f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let [kh, kw] = s.kernel;
        let (sh, dh) = (s.stride[0], s.dilation[0]);
        let (sw, dw, pw) = (s.stride[1], s.dilation[1], s.padding[1]);
        let last_chunk = s.ow.saturating_sub(1) / 16 * 16;
        let width = (pw + s.w).max(last_chunk * sw + (kw - 1) * dw + span(sw));
        let band = (BAND_FLOATS / (width * sh).max(1)).max(1);
        PADDED.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            let mut first = r0;
            while first < r1 {
                let last = (first + band).min(r1);
                let height = (last - first - 1) * sh + (kh - 1) * dh + 1;
                if buffer.len() < width * height {
                    buffer.resize(width * height, 0.0);
                }
                let base = buffer.as_mut_ptr();
                copy_padded(s, src, base, width, height, first);
                let out = dst.add((first - r0) * s.ow);
                for oy in first..last {
                    let top = base.add((oy - first) * sh * width);
                    let out_row = out.add((oy - first) * s.ow);
                    let inverse_row = inverse.wrapping_add(oy * s.ow);
                    for ox in (0..s.ow).step_by(16) {
                        let mask = lane_mask(s.ow - ox);
                        let at = top.add(ox * sw);
                        let v = match s.kind {
                            PoolKind::Max => max_window(at, width, s, kh, kw),
                            PoolKind::Avg => {
                                let sum = sum_window(at, width, s, kh, kw);
                                _mm512_mul_ps(sum, _mm512_maskz_loadu_ps(mask, inverse_row.add(ox)))
                            }
                        };
                        _mm512_mask_storeu_ps(out_row.add(ox), mask, v);
                    }
                }
                first = last;
            }
        });
    }

    /// Copies the input rows that output rows from `first` read into
    /// `height` rows of `width` floats at `base`: each real row at column
    /// `pw` with the padding value around it, rows above or below the
    /// input all padding. Vector loops rather than memset/memcpy calls,
    /// which cost more than the copy on small maps.
    ///
    /// # Safety
    /// AVX-512F; `src` holds the `h x w` plane and `base` `width * height`
    /// floats.
    #[target_feature(enable = "avx512f")]
    unsafe fn copy_padded(
        s: &PoolRows,
        src: *const f32,
        base: *mut f32,
        width: usize,
        height: usize,
        first: usize,
    ) {
        let pw = s.padding[1];
        let pad = s.kind.pad_value();
        let top = (first * s.stride[0]) as i64 - s.padding[0] as i64;
        for j in 0..height {
            let row = base.add(j * width);
            let iy = top + j as i64;
            if !(0..s.h as i64).contains(&iy) {
                fill(row, 0, width, pad);
                continue;
            }
            let from = src.add(iy as usize * s.w);
            fill(row, 0, pw, pad);
            let mut at = 0;
            while at + 16 <= s.w {
                _mm512_storeu_ps(row.add(pw + at), _mm512_loadu_ps(from.add(at)));
                at += 16;
            }
            if at < s.w {
                let mask = lane_mask(s.w - at);
                let v = _mm512_maskz_loadu_ps(mask, from.add(at));
                _mm512_mask_storeu_ps(row.add(pw + at), mask, v);
            }
            fill(row, pw + s.w, width, pad);
        }
    }

    /// Stores the padding value over `row[from..to]`.
    ///
    /// # Safety
    /// AVX-512F; `row[from..to]` writable.
    #[target_feature(enable = "avx512f")]
    unsafe fn fill(row: *mut f32, from: usize, to: usize, pad: f32) {
        let pad = _mm512_set1_ps(pad);
        for at in (from..to).step_by(16) {
            _mm512_mask_storeu_ps(row.add(at), lane_mask(to - at), pad);
        }
    }

    /// The maximum of one 16-column chunk's windows whose top-left taps
    /// start at `at`, a NaN tap making its lane NaN.
    ///
    /// # Safety
    /// AVX-512F; every tap's [`window`] from `at` lies in the padded band.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn max_window(
        at: *const f32,
        width: usize,
        s: &PoolRows,
        kh: usize,
        kw: usize,
    ) -> __m512 {
        let mut acc = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut nan: __mmask16 = 0;
        for ky in 0..kh {
            let row = at.add(ky * s.dilation[0] * width);
            for kx in 0..kw {
                let v = window(row.add(kx * s.dilation[1]), s.stride[1]);
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                // `v > acc ? v : acc`: `acc` when `v` is NaN (masked above).
                acc = _mm512_max_ps(v, acc);
            }
        }
        _mm512_mask_mov_ps(acc, nan, _mm512_set1_ps(f32::NAN))
    }

    /// The sum of one 16-column chunk's windows from `at`.
    ///
    /// # Safety
    /// As [`max_window`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn sum_window(
        at: *const f32,
        width: usize,
        s: &PoolRows,
        kh: usize,
        kw: usize,
    ) -> __m512 {
        let mut acc = _mm512_setzero_ps();
        for ky in 0..kh {
            let row = at.add(ky * s.dilation[0] * width);
            for kx in 0..kw {
                acc = _mm512_add_ps(acc, window(row.add(kx * s.dilation[1]), s.stride[1]));
            }
        }
        acc
    }
}
