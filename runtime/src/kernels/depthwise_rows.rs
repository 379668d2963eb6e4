//! Native depthwise rows for the separable kernel: output rows `r0..r1` of
//! one channel, `bias + sum of taps * input` with the depthwise
//! activation, sixteen columns per AVX-512 vector or eight per AVX2 one.
//!
//! The JIT's own depthwise code works four lanes at a time (Cranelift
//! lowers 128-bit vectors), and on MobileNetV2 that depthwise half was
//! compute-bound: running it twice doubled its time. Here 3x3 kernels at
//! stride 1 or 2 (MobileNetV2's) read each window from the input rows in
//! place, with load masks for the columns outside the row, in blocks of up
//! to eight rows by one chunk of columns (see `direct`; at stride 2 one
//! pair of loads serves the three windows of a row). Other kernels copy
//! the input rows each call reads into a zero-padded buffer, so every load
//! is a plain one (a stride-2 window is two loads and a permute, other
//! strides gather), and blocks of up to four rows by four chunks
//! accumulate side by side so that the taps' FMAs overlap.
//!
//! The vector code is written once over [`Lanes`](super::row_lanes::Lanes)
//! and compiled for AVX-512 (16 lanes) and AVX2 + FMA (8 lanes), every
//! activation applied in registers. The portable version is the scalar
//! definition, for other CPUs and as the tests' reference.

#![allow(unsafe_code)]

use super::gemm::{Activation, MicroKernel};

/// The geometry of one depthwise conv (one per compiled op, owned by the
/// compiled model).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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
    /// `Avx512`, `Avx2Fma` or `Portable`.
    pub kernel_impl: MicroKernel,
    /// The [`Columns`] of the first and the last chunk of output,
    /// which most often reach past the row (3x3 kernels; computed once here
    /// rather than for every channel).
    edges: [Columns; 2],
}

/// Per tap column `kx` of a 3x3 kernel, for one chunk of output (one
/// vector, [`DepthwiseRows::lanes`] columns): the offset of lane 0's input
/// column from the row's start, and which of the two vectors' worth of
/// source lanes from there lie inside the row (low and high vector), a run
/// of set bits each.
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
        let last = ow.div_ceil(rows.lanes()).max(1) - 1;
        rows.edges = [rows.columns(0), rows.columns(last)];
        rows
    }

    /// Columns per vector (and per chunk of output) of the vector code.
    fn lanes(&self) -> usize {
        match self.kernel_impl {
            MicroKernel::Avx2Fma => 8,
            MicroKernel::Avx512 | MicroKernel::Portable => 16,
        }
    }

    /// The [`Columns`] of output chunk `chunk`.
    fn columns(&self, chunk: usize) -> Columns {
        let n = self.lanes() as isize;
        std::array::from_fn(|kx| {
            let offset =
                n * (chunk * self.stride[1]) as isize + kx as isize - self.padding[1] as isize;
            let inside = |first: isize| {
                let from = (-offset - first).clamp(0, n);
                let to = (self.w as isize - offset - first).clamp(from, n);
                (((1u32 << to) - 1) & !((1u32 << from) - 1)) as u16
            };
            (offset, inside(0), inside(n))
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
        #[cfg(target_arch = "x86_64")]
        use {std::arch::x86_64::*, vector::Kernels};
        match self.kernel_impl {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => __m512::rows(self, src, taps, bias, dst, r0, r1),
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2Fma => __m256::rows(self, src, taps, bias, dst, r0, r1),
            #[cfg(not(target_arch = "x86_64"))]
            MicroKernel::Avx512 | MicroKernel::Avx2Fma => {
                self.portable(src, taps, bias, dst, r0, r1)
            }
            MicroKernel::Portable => self.portable(src, taps, bias, dst, r0, r1),
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

/// Called by compiled code: [`DepthwiseRows::run`] on the spec at `spec`.
///
/// # Safety
/// As [`DepthwiseRows::run`]; `spec` points to a live `DepthwiseRows`.
#[no_mangle]
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
mod vector {
    use super::{Columns, DepthwiseRows};
    use crate::kernels::gemm::Activation;
    use crate::kernels::row_lanes::{copy_window, padded_buffer, padded_width, Lanes};
    use std::arch::x86_64::{__m256, __m512};

    /// The depthwise rows compiled for the instruction set of one
    /// [`Lanes`]: the entry point and the direct path's blocks, which stay
    /// out of line (sixteen of them).
    pub(super) trait Kernels: Lanes {
        /// # Safety
        /// As [`DepthwiseRows::run`], with the lanes' instruction set
        /// available.
        unsafe fn rows(
            s: &DepthwiseRows,
            src: *const f32,
            taps: *const f32,
            bias: f32,
            dst: *mut f32,
            r0: usize,
            r1: usize,
        );

        /// # Safety
        /// As [`direct_block`].
        unsafe fn direct_block<const R: usize, const S: usize>(
            d: &Direct<'_>,
            oy0: usize,
            chunk: usize,
        );
    }

    /// [`Kernels`] for `$lanes`, compiled with `$features` so that the
    /// generic code below and the lanes' `#[inline(always)]` methods
    /// inline into them.
    macro_rules! kernels {
        ($lanes:ty, $features:literal) => {
            // SAFETY (every method): the contract is [`Kernels`]'s (the
            // instruction set checked by the caller), forwarded.
            impl Kernels for $lanes {
                #[target_feature(enable = $features)]
                unsafe fn rows(
                    s: &DepthwiseRows,
                    src: *const f32,
                    taps: *const f32,
                    bias: f32,
                    dst: *mut f32,
                    r0: usize,
                    r1: usize,
                ) {
                    rows::<$lanes>(s, src, taps, bias, dst, r0, r1)
                }

                #[target_feature(enable = $features)]
                #[inline(never)]
                unsafe fn direct_block<const R: usize, const S: usize>(
                    d: &Direct<'_>,
                    oy0: usize,
                    chunk: usize,
                ) {
                    direct_block::<$lanes, R, S>(d, oy0, chunk)
                }
            }
        };
    }

    kernels!(__m512, "avx512f");
    kernels!(__m256, "avx2,fma");

    /// The padded buffer of one call and the output it fills.
    struct Rows<'a, V: Lanes> {
        s: &'a DepthwiseRows,
        /// The padded input rows, `width` floats apart.
        base: *const f32,
        width: usize,
        taps: *const f32,
        bias: V,
        act: V::Act,
        /// Output row `r0` (the buffer's first output row).
        out: *mut f32,
    }

    /// `M` neighbouring chunks (of `V::N` columns) from `ox0` of `R`
    /// consecutive output rows from `row` (counted from `r0`): `R * M`
    /// independent accumulators, so that consecutive taps' FMAs overlap
    /// instead of waiting on each other. One chain of nine dependent FMAs
    /// per chunk was the bottleneck, worst on maps one chunk wide (14x14,
    /// 7x7), which therefore take several rows at once.
    ///
    /// # Safety
    /// `V`'s instruction set must be available; `b` was built by [`rows`]
    /// over its padded copy, and rows `row .. row + R` lie in `b`'s output
    /// rows.
    #[inline(always)]
    unsafe fn block<V: Lanes, const R: usize, const M: usize>(
        b: &Rows<'_, V>,
        row: usize,
        ox0: usize,
    ) {
        let s = b.s;
        let [kh, kw] = s.kernel;
        let (sh, dh, sw, dw) = (s.stride[0], s.dilation[0], s.stride[1], s.dilation[1]);
        let mut acc = [[b.bias; M]; R];
        for ky in 0..kh {
            for kx in 0..kw {
                let tap = V::splat(*b.taps.add(ky * kw + kx));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let input = b.base.add(((row + r) * sh + ky * dh) * b.width + kx * dw);
                    for (c, acc) in acc.iter_mut().enumerate() {
                        let at = input.add((ox0 + V::N * c) * sw);
                        *acc = V::mul_add(tap, V::window(at, sw), *acc);
                    }
                }
            }
        }
        // One activation call for the block: AVX2's transcendental ones
        // cost a call per vector otherwise (EfficientNet-B0's SiLU).
        V::apply_all(&b.act, acc.as_flattened_mut());
        for (r, acc) in acc.iter().enumerate() {
            let out = b.out.add((row + r) * s.ow);
            for (c, &acc) in acc.iter().enumerate() {
                let at = ox0 + V::N * c;
                acc.store_live(out.add(at), s.ow - at);
            }
        }
    }

    /// Output rows `0..rows` (from `r0`) in blocks of `R` rows by `M`
    /// chunks; the last chunks of a row as one narrower block, the last
    /// rows one at a time.
    ///
    /// # Safety
    /// As for [`block`], for output rows `0..rows`.
    #[inline(always)]
    unsafe fn sweep<V: Lanes, const R: usize, const M: usize>(b: &Rows<'_, V>, rows: usize) {
        let n = V::N;
        let chunks = b.s.ow.div_ceil(n);
        let mut row = 0;
        while row < rows {
            let r = if row + R <= rows { R } else { 1 };
            let mut c = 0;
            while c < chunks {
                let m = (chunks - c).min(M);
                match (r == R, m) {
                    (true, m) if m == M => block::<V, R, M>(b, row, n * c),
                    (true, 1) => block::<V, R, 1>(b, row, n * c),
                    (true, 2) => block::<V, R, 2>(b, row, n * c),
                    (true, _) => block::<V, R, 3>(b, row, n * c),
                    (false, 1) => block::<V, 1, 1>(b, row, n * c),
                    (false, 2) => block::<V, 1, 2>(b, row, n * c),
                    (false, 3) => block::<V, 1, 3>(b, row, n * c),
                    (false, _) => block::<V, 1, 4>(b, row, n * c),
                }
                c += m;
            }
            row += r;
        }
    }

    /// The direct path for 3x3 kernels at stride 1 or 2; otherwise copies
    /// the input rows output rows `r0..r1` read into a zero-padded buffer
    /// (padding rows and columns as zeros, room past the right edge for
    /// the last chunk's loads), so the loops need no bounds or masks, then
    /// computes them block by block.
    ///
    /// # Safety
    /// As [`DepthwiseRows::run`], with `V`'s instruction set available.
    #[inline(always)]
    unsafe fn rows<V: Kernels>(
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
            direct::<V>(s, src, taps, bias, dst, r0, r1);
        } else {
            padded::<V>(s, src, taps, bias, dst, r0, r1);
        }
    }

    /// The padded path of [`rows`].
    ///
    /// # Safety
    /// As [`rows`], with `r0 < r1`.
    #[inline(always)]
    unsafe fn padded<V: Lanes>(
        s: &DepthwiseRows,
        src: *const f32,
        taps: *const f32,
        bias: f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let n = V::N;
        let [kh, kw] = s.kernel;
        let (sh, dh) = (s.stride[0], s.dilation[0]);
        let (sw, dw, pw) = (s.stride[1], s.dilation[1], s.padding[1]);
        let width = padded_width::<V>(s.ow, s.w, [kw, sw, dw, pw]);
        let height = (r1 - r0 - 1) * sh + (kh - 1) * dh + 1;
        let base = padded_buffer(width * height);
        let top = (r0 * sh) as i64 - s.padding[0] as i64;
        copy_window::<V>(src, [s.h, s.w], top, -(pw as i64), 0.0, base, height, width);
        let b = Rows::<V> {
            s,
            base,
            width,
            taps,
            bias: V::splat(bias),
            act: V::act(s.activation),
            out: dst,
        };
        // About four to six accumulators, whatever the map's width.
        match s.ow.div_ceil(n) {
            1 => sweep::<V, 4, 1>(&b, r1 - r0),
            2 => sweep::<V, 2, 2>(&b, r1 - r0),
            3 => sweep::<V, 2, 3>(&b, r1 - r0),
            _ => sweep::<V, 1, 4>(&b, r1 - r0),
        }
    }

    /// One call of the direct path.
    pub(super) struct Direct<'a> {
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
    /// output rows by one chunk accumulate side by side, and each input
    /// row is loaded once per block for every output row that uses it.
    /// Against the padded copy this was 3.5x faster with AVX-512 on 7x7
    /// and 14x14 maps, where the copy cost more than the taps and its
    /// stores stalled the loads that read them back right after.
    ///
    /// # Safety
    /// As [`DepthwiseRows::run`], with `V`'s instruction set available.
    #[inline(always)]
    unsafe fn direct<V: Kernels>(
        s: &DepthwiseRows,
        src: *const f32,
        taps: *const f32,
        bias: f32,
        dst: *mut f32,
        r0: usize,
        r1: usize,
    ) {
        let chunks = s.ow.div_ceil(V::N);
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
                    (1, 8) => V::direct_block::<8, 1>(&d, row, chunk),
                    (1, 7) => V::direct_block::<7, 1>(&d, row, chunk),
                    (1, 6) => V::direct_block::<6, 1>(&d, row, chunk),
                    (1, 5) => V::direct_block::<5, 1>(&d, row, chunk),
                    (1, 4) => V::direct_block::<4, 1>(&d, row, chunk),
                    (1, 3) => V::direct_block::<3, 1>(&d, row, chunk),
                    (1, 2) => V::direct_block::<2, 1>(&d, row, chunk),
                    (1, _) => V::direct_block::<1, 1>(&d, row, chunk),
                    (_, 8) => V::direct_block::<8, 2>(&d, row, chunk),
                    (_, 7) => V::direct_block::<7, 2>(&d, row, chunk),
                    (_, 6) => V::direct_block::<6, 2>(&d, row, chunk),
                    (_, 5) => V::direct_block::<5, 2>(&d, row, chunk),
                    (_, 4) => V::direct_block::<4, 2>(&d, row, chunk),
                    (_, 3) => V::direct_block::<3, 2>(&d, row, chunk),
                    (_, 2) => V::direct_block::<2, 2>(&d, row, chunk),
                    (_, _) => V::direct_block::<1, 2>(&d, row, chunk),
                }
            }
            row += rows;
        }
    }

    /// Output rows `oy0 .. oy0 + R`, chunk `chunk` of the direct path at
    /// stride `S` (1 or 2): input row `i` of the block (from `oy0 * S -
    /// padding`) adds tap row `ky` into output row `(i - ky) / S` when that
    /// divides.
    ///
    /// # Safety
    /// `V`'s instruction set must be available; `d` was built by [`direct`]
    /// from its caller's valid pointers, and the block's output rows and
    /// chunk lie inside them.
    #[inline(always)]
    unsafe fn direct_block<V: Lanes, const R: usize, const S: usize>(
        d: &Direct<'_>,
        oy0: usize,
        chunk: usize,
    ) {
        let s = d.s;
        let n = V::N;
        let offset = (n * chunk * S) as isize - s.padding[1] as isize;
        let columns: Columns = if chunk == 0 {
            s.edges[0]
        } else if n * (chunk + 1) >= s.ow {
            s.edges[1]
        } else if offset >= 0 && offset + (n * S) as isize + 2 <= s.w as isize {
            // Every column the chunk reads lies inside the row.
            let all = ((1u32 << n) - 1) as u16;
            std::array::from_fn(|kx| (offset + kx as isize, all, all))
        } else {
            s.columns(chunk)
        };
        let mut low = [V::mask(0); 3];
        let mut high = [V::mask(0); 3];
        for kx in 0..3 {
            low[kx] = V::mask(columns[kx].1);
            high[kx] = V::mask(columns[kx].2);
        }
        // At stride 2, whether column 2N from the first window's start lies
        // inside the row (the last lane of the third window).
        let last = {
            let column = columns[0].0 + 2 * n as isize;
            V::last_mask((0..s.w as isize).contains(&column))
        };
        let mut taps = [V::zero(); 9];
        for (t, tap) in taps.iter_mut().enumerate() {
            *tap = V::splat(*d.taps.add(t));
        }
        let mut acc = [V::splat(d.bias); R];
        for i in 0..(R - 1) * S + 3 {
            let iy = (oy0 * S + i) as isize - s.padding[0] as isize;
            if !(0..s.h as isize).contains(&iy) {
                continue;
            }
            let row = d.src.wrapping_offset(iy * s.w as isize);
            let x: [V; 3] = if S == 1 {
                let mut x = [V::zero(); 3];
                for (kx, x) in x.iter_mut().enumerate() {
                    *x = V::load_masked(row.wrapping_offset(columns[kx].0), low[kx]);
                }
                x
            } else {
                let at = row.wrapping_offset(columns[0].0);
                V::stride2_windows(at, low[0], high[0], last)
            };
            for ky in 0..3 {
                if i < ky || (i - ky) % S != 0 || (i - ky) / S >= R {
                    continue;
                }
                let acc = &mut acc[(i - ky) / S];
                for (kx, &x) in x.iter().enumerate() {
                    *acc = V::mul_add(taps[ky * 3 + kx], x, *acc);
                }
            }
        }
        let ox0 = n * chunk;
        let act = V::act(d.act);
        V::apply_all(&act, &mut acc);
        for (r, &acc) in acc.iter().enumerate() {
            let out = d.out.add((oy0 + r - d.r0) * s.ow + ox0);
            acc.store_live(out, s.ow - ox0);
        }
    }
}
