//! Native depthwise rows for the separable kernel: output rows `r0..r1` of
//! one channel, `bias + sum of taps * input` with the depthwise
//! activation, sixteen columns per AVX-512 vector.
//!
//! The JIT's own depthwise code works four lanes at a time (Cranelift
//! lowers 128-bit vectors), and on MobileNetV2 that depthwise half was
//! compute-bound: running it twice doubled its time. Here each call copies
//! the input rows it reads into a zero-padded buffer, so every load is a
//! plain one (a stride-2 window is two loads and a permute, other strides
//! gather), and blocks of up to four rows by four 16-column chunks
//! accumulate side by side so that the taps' FMAs overlap. The portable
//! version is the scalar definition, for CPUs without AVX-512 and as the
//! tests' reference.

#![allow(unsafe_code)]

use super::gemm::{Activation, MicroKernel};

/// The geometry of one depthwise conv (one per compiled op, owned by the
/// compiled model).
#[derive(Clone, Debug)]
pub struct DepthwiseRows {
    /// Input plane `[h, w]`, output row length `ow`.
    pub h: usize,
    pub w: usize,
    pub ow: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub activation: Activation,
    /// `Avx512` or `Portable`.
    pub kernel_impl: MicroKernel,
}

impl DepthwiseRows {
    /// Computes output rows `r0..r1` of one channel into `dst` (row stride
    /// `ow`, `dst` at row `r0`) from its input plane `src`, with `taps`
    /// (`kh*kw`, row-major) and `bias`.
    ///
    /// # Safety
    /// `src` must hold the `h x w` plane, `taps` `kh*kw` floats, `dst`
    /// `(r1 - r0) * ow` floats, and `kernel_impl` must be available.
    pub unsafe fn run(
        &self,
        src: *const f32,
        taps: *const f32,
        bias: f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        match self.kernel_impl {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => avx512::rows(self, src, taps, bias, dst, r0, r1),
            _ => self.portable(src, taps, bias, dst, r0, r1),
        }
    }

    /// The input row of tap row `ky` for output row `oy`, if it exists.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride[0] + ky * self.dilation[0])
            .checked_sub(self.padding[0])
            .filter(|&iy| iy < self.h)
    }

    unsafe fn portable(
        &self,
        src: *const f32,
        taps: *const f32,
        bias: f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let [kh, kw] = self.kernel;
        for oy in r0..r1 {
            for ox in 0..self.ow {
                let mut acc = bias;
                for ky in 0..kh {
                    let Some(iy) = self.input_row(oy, ky) else {
                        continue;
                    };
                    for kx in 0..kw {
                        let ix = (ox * self.stride[1] + kx * self.dilation[1])
                            .checked_sub(self.padding[1])
                            .filter(|&ix| ix < self.w);
                        if let Some(ix) = ix {
                            acc += *taps.add(ky * kw + kx) * *src.add(iy * self.w + ix);
                        }
                    }
                }
                *dst.add((oy - r0) * self.ow + ox) = self.activation.apply(acc);
            }
        }
    }
}

/// Called by JIT code: [`DepthwiseRows::run`] on the spec at `spec`.
///
/// # Safety
/// As [`DepthwiseRows::run`]; `spec` points to a live `DepthwiseRows`.
pub unsafe extern "C" fn nnc_depthwise_rows(
    spec: *const DepthwiseRows,
    src: *const f32,
    taps: *const f32,
    bias: f32,
    dst: *mut f32,
    r0: usize,
    r1: usize,
) {
    (*spec).run(src, taps, bias, dst, r0, r1);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::DepthwiseRows;
    use crate::backend::gemm::avx512::{apply_act, lane_mask, vec_act, VecAct};
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    thread_local! {
        /// The input rows of one call, zero-padded (see [`rows`]).
        static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// Input columns `at[l * stride]` for the 16 lanes `l`, every one in
    /// the padded row.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn window(at: *const f32, stride: usize) -> __m512 {
        match stride {
            1 => _mm512_loadu_ps(at),
            2 => {
                // The 32-column span as two vectors, then its even lanes.
                let even =
                    _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
                _mm512_permutex2var_ps(_mm512_loadu_ps(at), even, _mm512_loadu_ps(at.add(16)))
            }
            _ => {
                let index = _mm512_mullo_epi32(
                    _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                    _mm512_set1_epi32(stride as i32),
                );
                _mm512_i32gather_ps::<4>(index, at)
            }
        }
    }

    /// Columns one chunk's [`window`] reads from its first.
    fn span(stride: usize) -> usize {
        match stride {
            1 => 16,
            2 => 32,
            s => 15 * s + 1,
        }
    }

    /// The padded buffer of one call and the output it fills.
    struct Rows<'a> {
        s: &'a DepthwiseRows,
        /// The padded input rows, `width` floats apart.
        base: *const f32,
        width: usize,
        taps: *const f32,
        bias: __m512,
        act: VecAct,
        /// Output row `r0` (the buffer's first output row).
        out: *mut f32,
    }

    /// `M` neighbouring 16-column chunks from `ox0` of `R` consecutive
    /// output rows from `row` (counted from `r0`): `R * M` independent
    /// accumulators, so that consecutive taps' FMAs overlap instead of
    /// waiting on each other. One chain of nine dependent FMAs per chunk
    /// was the bottleneck, worst on maps one chunk wide (14x14, 7x7),
    /// which therefore take several rows at once.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const R: usize, const M: usize>(b: &Rows<'_>, row: usize, ox0: usize) {
        let s = b.s;
        let [kh, kw] = s.kernel;
        let (sh, dh, sw, dw) = (s.stride[0], s.dilation[0], s.stride[1], s.dilation[1]);
        let mut acc = [[b.bias; M]; R];
        for ky in 0..kh {
            for kx in 0..kw {
                let tap = _mm512_set1_ps(*b.taps.add(ky * kw + kx));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let input = b.base.add(((row + r) * sh + ky * dh) * b.width + kx * dw);
                    for (c, acc) in acc.iter_mut().enumerate() {
                        let at = input.add((ox0 + 16 * c) * sw);
                        *acc = _mm512_fmadd_ps(tap, window(at, sw), *acc);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let out = b.out.add((row + r) * s.ow);
            for (c, &acc) in acc.iter().enumerate() {
                let at = ox0 + 16 * c;
                let n = (s.ow - at).min(16);
                _mm512_mask_storeu_ps(out.add(at), lane_mask(n), apply_act(&b.act, acc));
            }
        }
    }

    /// Output rows `0..rows` (from `r0`) in blocks of `R` rows by `M`
    /// chunks; the last chunks of a row as one narrower block, the last
    /// rows one at a time.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn sweep<const R: usize, const M: usize>(b: &Rows<'_>, rows: usize) {
        let chunks = b.s.ow.div_ceil(16);
        let mut row = 0;
        while row < rows {
            let r = if row + R <= rows { R } else { 1 };
            let mut c = 0;
            while c < chunks {
                let m = (chunks - c).min(M);
                match (r == R, m) {
                    (true, m) if m == M => block::<R, M>(b, row, 16 * c),
                    (true, 1) => block::<R, 1>(b, row, 16 * c),
                    (true, 2) => block::<R, 2>(b, row, 16 * c),
                    (true, _) => block::<R, 3>(b, row, 16 * c),
                    (false, 1) => block::<1, 1>(b, row, 16 * c),
                    (false, 2) => block::<1, 2>(b, row, 16 * c),
                    (false, 3) => block::<1, 3>(b, row, 16 * c),
                    (false, _) => block::<1, 4>(b, row, 16 * c),
                }
                c += m;
            }
            row += r;
        }
    }

    /// Copies the input rows output rows `r0..r1` read into a zero-padded
    /// buffer (padding rows and columns as zeros, room past the right edge
    /// for the last chunk's loads), so the loops need no bounds or masks,
    /// then computes them block by block.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(
        s: &DepthwiseRows,
        src: *const f32,
        taps: *const f32,
        bias: f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        if r0 >= r1 {
            return;
        }
        let [kh, kw] = s.kernel;
        let (sh, dh) = (s.stride[0], s.dilation[0]);
        let (sw, dw, pw) = (s.stride[1], s.dilation[1], s.padding[1]);
        let last_chunk = (s.ow - 1) / 16 * 16;
        let width = (pw + s.w).max(last_chunk * sw + (kw - 1) * dw + span(sw));
        let height = (r1 - r0 - 1) * sh + (kh - 1) * dh + 1;
        PADDED.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < width * height {
                buffer.resize(width * height, 0.0);
            }
            let top = (r0 * sh) as i64 - s.padding[0] as i64;
            let zero = _mm512_setzero_ps();
            let base = buffer.as_mut_ptr();
            for j in 0..height {
                // The row (if it exists) at column pw with zeros around it,
                // or a row of zeros; vector loops rather than
                // memset/memcpy calls, which cost more than the copy on
                // 7x7 and 14x14 maps. Each column is written once.
                let row = base.add(j * width);
                let iy = top + j as i64;
                if (0..s.h as i64).contains(&iy) {
                    let from = src.add(iy as usize * s.w);
                    for at in (0..pw).step_by(16) {
                        _mm512_mask_storeu_ps(row.add(at), lane_mask(pw - at), zero);
                    }
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
                    for at in (pw + s.w..width).step_by(16) {
                        _mm512_mask_storeu_ps(row.add(at), lane_mask(width - at), zero);
                    }
                } else {
                    for at in (0..width).step_by(16) {
                        _mm512_mask_storeu_ps(row.add(at), lane_mask(width - at), zero);
                    }
                }
            }
            let b = Rows {
                s,
                base,
                width,
                taps,
                bias: _mm512_set1_ps(bias),
                act: vec_act(s.activation),
                out: dst,
            };
            // About four to six accumulators, whatever the map's width.
            match s.ow.div_ceil(16) {
                1 => sweep::<4, 1>(&b, r1 - r0),
                2 => sweep::<2, 2>(&b, r1 - r0),
                3 => sweep::<2, 3>(&b, r1 - r0),
                _ => sweep::<1, 4>(&b, r1 - r0),
            }
        });
    }
}
