//! The machine's roofline, measured: one core's peak FMA throughput and the
//! memory bandwidth a streaming read reaches. `nnc profile` compares each
//! layer with them; the GEMM benchmark reports % of the same peak.

#![allow(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

/// The best of `runs` timings of `f`, in seconds: a peak is what the
/// machine *can* do, so the fastest run (least disturbed) is the estimate.
fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `iters` rounds of 12 independent 16-lane FMAs (enough chains to
    /// cover the FMA latency on two ports).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: usize) -> f32 {
        let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(x, *a, y);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for a in acc {
            sum = _mm512_add_ps(sum, a);
        }
        _mm512_reduce_add_ps(sum)
    }

    /// `iters` rounds of 12 independent 8-lane FMAs.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: usize) -> f32 {
        let (x, y) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(x, *a, y);
            }
        }
        let mut out = [0f32; 8];
        let mut sum = _mm256_setzero_ps();
        for a in acc {
            sum = _mm256_add_ps(sum, a);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), sum);
        out.iter().sum()
    }
}

/// One core's peak single-precision FMA throughput in GFLOP/s with 512-bit
/// and with 256-bit vectors (0 for a width the CPU lacks), each the best of
/// `runs` timed loops.
pub fn fma_peaks(runs: usize) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        let iters = 2_000_000;
        let zmm = if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked above).
            let secs = best_of(runs, || {
                black_box(unsafe { x86::avx512(black_box(iters)) });
            });
            (iters * 12 * 16 * 2) as f64 / secs / 1e9
        } else {
            0.0
        };
        let ymm = if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA are present (checked above).
            let secs = best_of(runs, || {
                black_box(unsafe { x86::avx2(black_box(iters)) });
            });
            (iters * 12 * 8 * 2) as f64 / secs / 1e9
        } else {
            0.0
        };
        (zmm, ymm)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = runs;
        (0.0, 0.0)
    }
}

/// One core's peak single-precision FMA throughput in GFLOP/s, with the
/// better of the vector widths the CPU has (0 when it has no FMA).
pub fn fma_peak_gflops() -> f64 {
    let (zmm, ymm) = fma_peaks(5);
    zmm.max(ymm)
}

/// Streaming read bandwidth from memory in GB/s: the best of a few sums
/// over a buffer much larger than the caches.
pub fn memory_bandwidth_gbs() -> f64 {
    const FLOATS: usize = 64 << 20; // 256 MiB
    let data = vec![1.0f32; FLOATS];
    let secs = best_of(3, || {
        // Eight partial sums so the adds do not serialise the loads.
        let mut sums = [0f32; 8];
        for chunk in data.chunks_exact(8) {
            for (s, &v) in sums.iter_mut().zip(chunk) {
                *s += v;
            }
        }
        black_box(sums);
    });
    (4 * FLOATS) as f64 / secs / 1e9
}
