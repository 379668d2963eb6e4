//! Matrix transposition for the batch-1 recurrent kernels, whose input,
//! projections and layer outputs change between one row per feature (the
//! GEMM's operand and result) and one row per step (what a step reads):
//! 8x8 blocks in AVX registers, scalar edges.

/// `to[c * rows + r] = from[r * cols + c]`: `to` becomes the transpose of
/// the row-major `[rows, cols]` matrix at `from`.
///
/// # Safety
/// `from` must be valid for `rows * cols` reads and `to` for as many
/// writes; they must not overlap.
pub unsafe fn transpose(from: *const f32, to: *mut f32, rows: usize, cols: usize) {
    let (mut r0, mut c0) = (rows, cols);
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx") {
        (r0, c0) = (rows - rows % 8, cols - cols % 8);
        // SAFETY: AVX is available; the blocks lie inside both matrices.
        unsafe { blocks(from, to, rows, cols, r0, c0) };
    }
    // SAFETY: as documented above; the edges are inside both matrices.
    unsafe {
        for r in 0..rows {
            // The columns that the blocks did not cover in this row.
            let start = if r < r0 { c0 } else { 0 };
            for c in start..cols {
                *to.add(c * rows + r) = *from.add(r * cols + c);
            }
        }
    }
}

/// The whole 8x8 blocks of the top-left `r0 x c0` part.
///
/// # Safety
/// As for [`transpose`], with `r0 <= rows`, `c0 <= cols` multiples of 8;
/// AVX must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn blocks(from: *const f32, to: *mut f32, rows: usize, cols: usize, r0: usize, c0: usize) {
    use std::arch::x86_64::*;
    for r in (0..r0).step_by(8) {
        for c in (0..c0).step_by(8) {
            // SAFETY: rows `r..r + 8`, columns `c..c + 8` of `from`, and the
            // transposed block of `to`, are inside the matrices.
            unsafe {
                let row = |i: usize| _mm256_loadu_ps(from.add((r + i) * cols + c));
                let (a, b, cc, d) = (row(0), row(1), row(2), row(3));
                let (e, f, g, h) = (row(4), row(5), row(6), row(7));
                let (t0, t1) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
                let (t2, t3) = (_mm256_unpacklo_ps(cc, d), _mm256_unpackhi_ps(cc, d));
                let (t4, t5) = (_mm256_unpacklo_ps(e, f), _mm256_unpackhi_ps(e, f));
                let (t6, t7) = (_mm256_unpacklo_ps(g, h), _mm256_unpackhi_ps(g, h));
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xee>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xee>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xee>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xee>(t5, t7);
                // Column `c + j` of the block is output row `c + j`.
                let out = |j: usize, v: __m256| _mm256_storeu_ps(to.add((c + j) * rows + r), v);
                out(0, _mm256_permute2f128_ps::<0x20>(s0, s4));
                out(1, _mm256_permute2f128_ps::<0x20>(s1, s5));
                out(2, _mm256_permute2f128_ps::<0x20>(s2, s6));
                out(3, _mm256_permute2f128_ps::<0x20>(s3, s7));
                out(4, _mm256_permute2f128_ps::<0x31>(s0, s4));
                out(5, _mm256_permute2f128_ps::<0x31>(s1, s5));
                out(6, _mm256_permute2f128_ps::<0x31>(s2, s6));
                out(7, _mm256_permute2f128_ps::<0x31>(s3, s7));
            }
        }
    }
}
