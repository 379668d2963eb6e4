//! Native depthwise rows for the separable kernel: output rows `r0..r1` of
//! one channel, `bias + sum of taps * input` with the depthwise
//! activation, sixteen columns per AVX-512 vector.
//!
//! The JIT's own depthwise code works four lanes at a time (Cranelift
//! lowers 128-bit vectors), and on MobileNetV2 that depthwise half was
//! compute-bound: running it twice doubled its time. Here 3x3 kernels at
//! stride 1 or 2 (MobileNetV2's) read each window from the input rows in
//! place, with load masks for the columns outside the row, in blocks of up
//! to eight rows by one 16-column chunk (see `direct`; at stride 2 one
//! pair of loads serves the three windows of a row). Other kernels copy
//! the input rows each call reads into a zero-padded buffer, so every load
//! is a plain one (a stride-2 window is two loads and a permute, other
//! strides gather), and blocks of up to four rows by four 16-column chunks
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
    /// The padding before each axis, `[top, left]`; the padding after
    /// (which may differ) only shows in the output size.
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub activation: Activation,
    /// `Avx512` or `Portable`.
    pub kernel_impl: MicroKernel,
    /// The [`Columns`] of the first and the last 16-column chunk of output,
    /// which most often reach past the row (3x3 kernels; computed once here
    /// rather than for every channel).
    edges: [Columns; 2],
}

/// Per tap column `kx` of a 3x3 kernel, for one 16-column chunk of output:
/// the offset of lane 0's input column from the row's start, and which of
/// the 32 source lanes from there lie inside the row (low and high 16), a
/// run of set bits each.
type Columns = [(isize, u16, u16); 3];

impl DepthwiseRows {
    /// The rows of a depthwise conv over `[h, w]` planes with output rows
    /// `ow` long.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        [h, w]: [usize; 2],
        ow: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        activation: Activation,
        kernel_impl: MicroKernel,
    ) -> DepthwiseRows {
        let mut rows = DepthwiseRows {
            h,
            w,
            ow,
            kernel,
            stride,
            padding,
            dilation,
            activation,
            kernel_impl,
            edges: [[(0, 0, 0); 3]; 2],
        };
        rows.edges = [rows.columns(0), rows.columns(ow.div_ceil(16).max(1) - 1)];
        rows
    }

    /// The [`Columns`] of output chunk `chunk`.
    fn columns(&self, chunk: usize) -> Columns {
        std::array::from_fn(|kx| {
            let offset = (16 * chunk * self.stride[1] + kx) as isize - self.padding[1] as isize;
            let inside = |first: isize| {
                let from = (-offset - first).clamp(0, 16);
                let to = (self.w as isize - offset - first).clamp(from, 16);
                (((1u32 << to) - 1) & !((1u32 << from) - 1)) as u16
            };
            (offset, inside(0), inside(16))
        })
    }

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

    /// # Safety
    /// As [`DepthwiseRows::run`] (less the instruction set).
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
    use crate::backend::gemm::avx512::{apply_act, lane_mask, span, vec_act, window, VecAct};
    use crate::backend::gemm::Activation;
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    thread_local! {
        /// The input rows of one call, zero-padded (see [`rows`]).
        static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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
    ///
    /// # Safety
    /// AVX-512F must be available; `b` was built by [`rows`] over its padded
    /// copy, and rows `row .. row + R` lie in `b`'s output rows.
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
    ///
    /// # Safety
    /// As for [`block`], for output rows `0..rows`.
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
    ///
    /// # Safety
    /// As [`DepthwiseRows::run`], with AVX-512F available.
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
        if s.kernel == [3, 3] && s.dilation == [1, 1] && matches!(s.stride, [1, 1] | [2, 2]) {
            return direct(s, src, taps, bias, dst, r0, r1);
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

    /// One call of the direct path.
    struct Direct<'a> {
        s: &'a DepthwiseRows,
        src: *const f32,
        /// The nine taps.
        taps: *const f32,
        bias: f32,
        act: Activation,
        /// Output row `r0`.
        out: *mut f32,
        r0: usize,
    }

    /// 3x3 kernels at stride 1 or 2 (all of MobileNetV2's): reads each
    /// window from the input row in place, with a load mask that zeroes
    /// the columns outside the row (masked-off lanes are never read, so a
    /// window hanging over the row's ends is safe). Blocks of up to eight
    /// output rows by one 16-column chunk accumulate side by side, and each
    /// input row is loaded once per block for every output row that uses
    /// it. Against the padded copy this was 3.5x faster on 7x7 and 14x14
    /// maps, where the copy cost more than the taps and its stores stalled
    /// the loads that read them back right after.
    ///
    /// # Safety
    /// As [`DepthwiseRows::run`], with AVX-512F available.
    #[target_feature(enable = "avx512f")]
    unsafe fn direct(
        s: &DepthwiseRows,
        src: *const f32,
        taps: *const f32,
        bias: f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let chunks = s.ow.div_ceil(16);
        let d = Direct {
            s,
            src,
            taps,
            bias,
            act: s.activation,
            out: dst,
            r0,
        };
        let mut row = r0;
        while row < r1 {
            let rows = (r1 - row).min(8);
            for chunk in 0..chunks {
                match (s.stride[0], rows) {
                    (1, 8) => direct_block::<8, 1>(&d, row, chunk),
                    (1, 7) => direct_block::<7, 1>(&d, row, chunk),
                    (1, 6) => direct_block::<6, 1>(&d, row, chunk),
                    (1, 5) => direct_block::<5, 1>(&d, row, chunk),
                    (1, 4) => direct_block::<4, 1>(&d, row, chunk),
                    (1, 3) => direct_block::<3, 1>(&d, row, chunk),
                    (1, 2) => direct_block::<2, 1>(&d, row, chunk),
                    (1, _) => direct_block::<1, 1>(&d, row, chunk),
                    (_, 8) => direct_block::<8, 2>(&d, row, chunk),
                    (_, 7) => direct_block::<7, 2>(&d, row, chunk),
                    (_, 6) => direct_block::<6, 2>(&d, row, chunk),
                    (_, 5) => direct_block::<5, 2>(&d, row, chunk),
                    (_, 4) => direct_block::<4, 2>(&d, row, chunk),
                    (_, 3) => direct_block::<3, 2>(&d, row, chunk),
                    (_, 2) => direct_block::<2, 2>(&d, row, chunk),
                    (_, _) => direct_block::<1, 2>(&d, row, chunk),
                }
            }
            row += rows;
        }
    }

    /// Output rows `oy0 .. oy0 + R`, 16-column chunk `chunk` of the direct
    /// path at stride `S` (1 or 2): input row `i` of the block (from
    /// `oy0 * S - padding`) adds tap row `ky` into output row
    /// `(i - ky) / S` when that divides.
    ///
    /// # Safety
    /// AVX-512F must be available; `d` was built by [`direct`] from its
    /// caller's valid pointers, and the block's output rows and chunk lie
    /// inside them.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn direct_block<const R: usize, const S: usize>(
        d: &Direct<'_>,
        oy0: usize,
        chunk: usize,
    ) {
        let s = d.s;
        let offset = (16 * chunk * S) as isize - s.padding[1] as isize;
        let columns = if chunk == 0 {
            s.edges[0]
        } else if 16 * (chunk + 1) >= s.ow {
            s.edges[1]
        } else if offset >= 0 && offset + 16 * S as isize + 2 <= s.w as isize {
            // Every column the chunk reads lies inside the row.
            std::array::from_fn(|kx| (offset + kx as isize, 0xffff, 0xffff))
        } else {
            s.columns(chunk)
        };
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        // At stride 2, whether column 32 from the first window's start lies
        // inside the row (the last lane of the third window).
        let last: __mmask16 = {
            let column = columns[0].0 + 32;
            (0..s.w as isize).contains(&column).into()
        };
        let taps: [__m512; 9] = std::array::from_fn(|t| _mm512_set1_ps(*d.taps.add(t)));
        let mut acc = [_mm512_set1_ps(d.bias); R];
        for i in 0..(R - 1) * S + 3 {
            let iy = (oy0 * S + i) as isize - s.padding[0] as isize;
            if !(0..s.h as isize).contains(&iy) {
                continue;
            }
            let row = d.src.wrapping_offset(iy * s.w as isize);
            let x: [__m512; 3] = if S == 1 {
                std::array::from_fn(|kx| {
                    let (offset, low, _) = columns[kx];
                    _mm512_maskz_loadu_ps(low, row.wrapping_offset(offset))
                })
            } else {
                // The three windows are the even lanes, the odd lanes and
                // the even lanes one further of the same 33 columns: two
                // loads, two permutes, and an align with the 33rd.
                let (offset, low, high) = columns[0];
                let at = row.wrapping_offset(offset);
                let (lo, hi) = (
                    _mm512_maskz_loadu_ps(low, at),
                    _mm512_maskz_loadu_ps(high, at.wrapping_add(16)),
                );
                let even_lanes = _mm512_permutex2var_ps(lo, even, hi);
                let odd_lanes = _mm512_permutex2var_ps(lo, odd, hi);
                let next = _mm512_maskz_loadu_ps(last, at.wrapping_add(32));
                let shifted = _mm512_alignr_epi32::<1>(
                    _mm512_castps_si512(next),
                    _mm512_castps_si512(even_lanes),
                );
                [even_lanes, odd_lanes, _mm512_castsi512_ps(shifted)]
            };
            for ky in 0..3 {
                if i < ky || (i - ky) % S != 0 || (i - ky) / S >= R {
                    continue;
                }
                let acc = &mut acc[(i - ky) / S];
                for (kx, &x) in x.iter().enumerate() {
                    *acc = _mm512_fmadd_ps(taps[ky * 3 + kx], x, *acc);
                }
            }
        }
        let ox0 = 16 * chunk;
        let mask = lane_mask(s.ow - ox0);
        let act = vec_act(d.act);
        for (r, &acc) in acc.iter().enumerate() {
            let out = d.out.add((oy0 + r - d.r0) * s.ow + ox0);
            _mm512_mask_storeu_ps(out, mask, apply_act(&act, acc));
        }
    }
}
