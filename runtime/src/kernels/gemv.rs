//! Matrix-vector products that read a `linear`'s weight where the model
//! file put it: `out[r, i] = act(W[i, :] · x[r, :] + bias[i] + residual[r, i])`
//! for a row-major `W [m, k]` (PyTorch's layout, ONNX `Gemm` with
//! `transB = 1`).
//!
//! A `linear` applied to one row is a dot product per output feature, bound
//! by reading `W` once. The compiler takes this kernel for weights of 16
//! MiB or more (`gemv_in_place` in its `kernels/gemm.rs`): packing them
//! into GEMM panels held a second copy of the largest weights while the
//! model loaded (VGG-19's first `linear` alone is 392 MiB), though the
//! packed panels, one sequential stream, are read 5-15% faster. Each task
//! reads its share of `W`'s rows in place, four at a time, each row's
//! stream prefetched ahead, against `x` from cache.

#![allow(unsafe_code)]

use super::gemm::{Activation, MicroKernel};
use super::KernelError;

/// One `linear`'s matrix-vector products. Task `t` computes output
/// features `t * block ..` for every row of `x`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Gemv {
    m: usize,
    k: usize,
    rows: usize,
    block: usize,
    bias: Option<Vec<f32>>,
    activation: Activation,
    kernel: MicroKernel,
}

impl Gemv {
    /// The products of `rows` rows of `x [rows, k]` with `W [m, k]`, split
    /// in one block of output features per thread (in multiples of eight
    /// rows, taken four at a time), so that each core reads only its share
    /// of `W`.
    pub fn new(
        kernel: MicroKernel,
        (m, k, rows): (usize, usize, usize),
        bias: Option<&[f32]>,
        activation: Activation,
        threads: usize,
    ) -> Result<Gemv, KernelError> {
        if let Some(b) = bias.filter(|b| b.len() < m) {
            return Err(KernelError::TooShort {
                what: "a linear bias",
                len: b.len(),
                need: format!("{m}"),
            });
        }
        let block = m.div_ceil(threads.max(1)).next_multiple_of(8).max(8);
        Ok(Gemv {
            m,
            k,
            rows,
            block,
            bias: bias.map(|b| b[..m].to_vec()),
            activation,
            kernel: kernel.usable(),
        })
    }

    /// How many tasks the products split into.
    pub fn tasks(&self) -> usize {
        self.m.div_ceil(self.block).max(1)
    }

    /// Task `t`: output features `t * block ..` of every row.
    ///
    /// # Safety
    /// `w` holds `m * k` floats, `x` `rows * k`, `out` `rows * m`, and
    /// `residual` is null or holds `rows * m` floats (it may be `out`).
    pub unsafe fn run(
        &self,
        w: *const f32,
        x: *const f32,
        out: *mut f32,
        residual: *const f32,
        t: usize,
    ) {
        let (m, k) = (self.m, self.k);
        let i0 = (t * self.block).min(m);
        let i1 = (i0 + self.block).min(m);
        for r in 0..self.rows {
            let (x, out) = (x.add(r * k), out.add(r * m));
            let residual = (!residual.is_null()).then(|| residual.add(r * m));
            let mut i = i0;
            while i < i1 {
                let here = (i1 - i).min(8);
                let mut sums = [0.0f32; 8];
                dots(self.kernel, w.add(i * k), k, x, &mut sums[..here]);
                for (j, &s) in sums[..here].iter().enumerate() {
                    let bias = self.bias.as_ref().map_or(0.0, |b| b[i + j]);
                    let add = residual.map_or(0.0, |p| *p.add(i + j));
                    *out.add(i + j) = self.activation.apply(s + bias + add);
                }
                i += here;
            }
        }
    }
}

/// How far ahead of its loads (in floats) each weight row is prefetched:
/// 256 measured a little better than 128 and 512 (AMD EPYC Zen 5).
const PREFETCH: usize = 256;

/// Where, relative to the first of a group of `R` rows, the row that is
/// loading column `i` prefetches: `PREFETCH` floats ahead in the same row,
/// or past its end in the row `R` further on, which the next group reads
/// at the same place (with small `k`, prefetches that stopped at each
/// row's end left every group's start waiting on memory). Past the last
/// row it points outside `W`, which a prefetch may.
fn prefetch_offset<const R: usize>(i: usize, k: usize) -> usize {
    if i + PREFETCH < k {
        i + PREFETCH
    } else {
        R * k + i + PREFETCH - k
    }
}

/// `sums[j] = W[j, :] · x` for the `sums.len()` rows of `w` (row stride
/// `k`): four at a time when they are a multiple of four, else one by one.
///
/// # Safety
/// `w` holds `sums.len()` rows of `k` floats, `x` `k` floats, and `kernel`
/// is available.
unsafe fn dots(kernel: MicroKernel, w: *const f32, k: usize, x: *const f32, sums: &mut [f32]) {
    let fours = sums.len().is_multiple_of(4);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        MicroKernel::Avx512 if fours => dots_avx512::<4>(w, k, x, sums),
        #[cfg(target_arch = "x86_64")]
        MicroKernel::Avx512 => dots_avx512::<1>(w, k, x, sums),
        #[cfg(target_arch = "x86_64")]
        MicroKernel::Avx2Fma if fours => dots_avx2::<4>(w, k, x, sums),
        #[cfg(target_arch = "x86_64")]
        MicroKernel::Avx2Fma => dots_avx2::<1>(w, k, x, sums),
        _ => dots_portable(w, k, x, sums),
    }
}

/// The scalar definition, eight partial sums per row.
///
/// # Safety
/// As [`dots`].
unsafe fn dots_portable(w: *const f32, k: usize, x: *const f32, sums: &mut [f32]) {
    let x = std::slice::from_raw_parts(x, k);
    for (j, sum) in sums.iter_mut().enumerate() {
        let row = std::slice::from_raw_parts(w.add(j * k), k);
        let mut part = [0.0f32; 8];
        let (whole, tail) = (row.chunks_exact(8), row.len() / 8 * 8);
        for (c, chunk) in whole.enumerate() {
            for (l, p) in part.iter_mut().enumerate() {
                *p += chunk[l] * x[8 * c + l];
            }
        }
        let mut s: f32 = part.iter().sum();
        for kk in tail..k {
            s += row[kk] * x[kk];
        }
        *sum = s;
    }
}

/// `R` rows at a time (or, with `R = 1`, each of `sums.len()` rows in
/// turn), two accumulators per row; the tail of `k` is masked vectors.
///
/// # Safety
/// As [`dots`], with AVX-512F available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dots_avx512<const R: usize>(w: *const f32, k: usize, x: *const f32, sums: &mut [f32]) {
    use super::gemm::avx512::lane_mask;
    use std::arch::x86_64::*;
    for first in (0..sums.len()).step_by(R) {
        let w = w.add(first * k);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let mut i = 0;
        while i + 32 <= k {
            let x0 = _mm512_loadu_ps(x.add(i));
            let x1 = _mm512_loadu_ps(x.add(i + 16));
            let ahead = prefetch_offset::<R>(i, k);
            for (r, a) in acc.iter_mut().enumerate() {
                let row = w.add(r * k + i);
                let pf = w.wrapping_add(r * k + ahead);
                _mm_prefetch::<_MM_HINT_T0>(pf.cast());
                _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(16).cast());
                a[0] = _mm512_fmadd_ps(_mm512_loadu_ps(row), x0, a[0]);
                a[1] = _mm512_fmadd_ps(_mm512_loadu_ps(row.add(16)), x1, a[1]);
            }
            i += 32;
        }
        while i < k {
            let mask = lane_mask(k - i);
            let xv = _mm512_maskz_loadu_ps(mask, x.add(i));
            for (r, a) in acc.iter_mut().enumerate() {
                a[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, w.add(r * k + i)), xv, a[0]);
            }
            i += 16;
        }
        for (r, a) in acc.iter().enumerate() {
            sums[first + r] = _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1]));
        }
    }
}

/// As [`dots_avx512`] with eight lanes; the tail of `k` is scalar.
///
/// # Safety
/// As [`dots`], with AVX2 and FMA available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<const R: usize>(w: *const f32, k: usize, x: *const f32, sums: &mut [f32]) {
    use std::arch::x86_64::*;
    for first in (0..sums.len()).step_by(R) {
        let w = w.add(first * k);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let mut i = 0;
        while i + 16 <= k {
            let x0 = _mm256_loadu_ps(x.add(i));
            let x1 = _mm256_loadu_ps(x.add(i + 8));
            let ahead = prefetch_offset::<R>(i, k);
            for (r, a) in acc.iter_mut().enumerate() {
                let row = w.add(r * k + i);
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(r * k + ahead).cast());
                a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(row), x0, a[0]);
                a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(8)), x1, a[1]);
            }
            i += 16;
        }
        for (r, a) in acc.iter().enumerate() {
            let v = _mm256_add_ps(a[0], a[1]);
            let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
            let mut s = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
            for kk in i..k {
                s += *w.add(r * k + kk) * *x.add(kk);
            }
            sums[first + r] = s;
        }
    }
}

/// Task `t` of a [`Gemv`]. Called by compiled code.
///
/// # Safety
/// `spec` points to a live [`Gemv`], `t < spec.tasks()`, and the other
/// arguments satisfy [`Gemv::run`].
#[no_mangle]
pub unsafe extern "C" fn nnc_gemv(
    spec: *const Gemv,
    w: *const f32,
    x: *const f32,
    out: *mut f32,
    residual: *const f32,
    t: usize,
) {
    // SAFETY: as documented above; the compiled model owns the spec.
    unsafe { (*spec).run(w, x, out, residual, t) }
}
