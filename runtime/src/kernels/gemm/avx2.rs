//! AVX2+FMA micro-kernels: a 6x16 register tile (12 ymm accumulators, two
//! ymm of B per k step, A broadcast from the packed panel), every row count
//! 1..=6 and one- or two-vector widths monomorphised for the edges, masked
//! loads and stores for partial vectors, every activation applied in
//! registers (`avx2_act.rs`), and a narrow kernel vectorised along M for
//! N < 8 and thin column tails.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2_act::{apply_act_all, vec_act};
use super::epilogue::{store_scalar, Tile};
use super::Activation;

/// Rows of A per panel (and per register tile).
pub(crate) const MR: usize = 6;
/// Columns of B per packed panel (two ymm).
pub(crate) const NR: usize = 16;
/// How far ahead (in floats) the kernel prefetches packed A into L1.
const A_PREFETCH: usize = 768;

/// A lane mask with the first `n` (of 8) lanes set.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn lane_mask(n: usize) -> __m256i {
    let n = n.min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Computes one tile: `t.rows <= MR` rows, `t.cols <= NR` columns.
///
/// # Safety
/// AVX2 and FMA must be available; the tile's pointers must be valid for
/// its extent (A: `kc` steps of `MR` floats; B: `kc` rows of `t.cols`
/// floats at stride `b_stride`, readable up to the next multiple of 8
/// columns; C and the residual: `rows x cols`).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile(t: &Tile) {
    // A tail of up to 4 columns past the last whole ymm costs one FMA per
    // column and k step in the narrow kernel, against one per row (6) as a
    // masked vector.
    let tail = t.cols % 8;
    let wide = if tail <= 4 { t.cols - tail } else { t.cols };
    // SAFETY: the sub-tiles lie inside `t`, which the caller vouched for.
    unsafe {
        if wide > 0 {
            let w = t.columns(0, wide);
            // Every activation is applied in registers.
            if wide > 8 {
                by_rows::<2>(&w);
            } else {
                by_rows::<1>(&w);
            }
        }
        if wide < t.cols {
            narrow(&t.columns(wide, t.cols - wide));
        }
    }
}

/// `panels` whole tiles side by side, [`NR`] columns each: the first is
/// `t`, each next one `NR` columns of C (and of the residual) further
/// right, its B `b_step` floats further on. The row count is dispatched
/// once per call rather than once per tile (as `avx512::tiles`): with the
/// short K of MobileNet's pointwise convs a tile is only a few hundred
/// cycles of FMAs.
///
/// # Safety
/// As for [`tile`], for every one of the tiles; `t.cols == NR`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tiles(t: &Tile, panels: usize, b_step: usize) {
    // SAFETY: forwarded.
    unsafe {
        match t.rows {
            1 => tile_row::<1>(t, panels, b_step),
            2 => tile_row::<2>(t, panels, b_step),
            3 => tile_row::<3>(t, panels, b_step),
            4 => tile_row::<4>(t, panels, b_step),
            5 => tile_row::<5>(t, panels, b_step),
            6 => tile_row::<6>(t, panels, b_step),
            _ => {}
        }
    }
}

/// # Safety
/// As for [`tiles`], with `t.rows == ROWS`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_row<const ROWS: usize>(t: &Tile, panels: usize, b_step: usize) {
    let mut t = *t;
    for _ in 0..panels {
        // SAFETY: the caller vouched for every tile.
        unsafe { kernel::<ROWS, 2>(&t) };
        t.b = t.b.wrapping_add(b_step);
        t.c = t.c.wrapping_add(NR);
        if !t.epi.residual.is_null() {
            t.epi.residual = t.epi.residual.wrapping_add(NR);
        }
    }
}

/// # Safety
/// As for [`tile`].
#[target_feature(enable = "avx2,fma")]
unsafe fn by_rows<const NV: usize>(t: &Tile) {
    // SAFETY: forwarded from `tile`.
    unsafe {
        match t.rows {
            1 => kernel::<1, NV>(t),
            2 => kernel::<2, NV>(t),
            3 => kernel::<3, NV>(t),
            4 => kernel::<4, NV>(t),
            5 => kernel::<5, NV>(t),
            6 => kernel::<6, NV>(t),
            _ => {}
        }
    }
}

/// # Safety
/// As for [`tile`], with `t.rows == ROWS` and `t.cols <= 8 * NV`.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const ROWS: usize, const NV: usize>(t: &Tile) {
    // SAFETY: forwarded from `tile`.
    let acc = unsafe { accumulate::<ROWS, NV>(t.a, t.b, t.kc, t.b_stride) };
    let act = vec_act(if t.last {
        t.epi.activation
    } else {
        Activation::None
    });
    // Whole vectors load and store plainly: AMD's masked stores are
    // microcoded (one per ~12 cycles on Zen 3), which on a 1x1 conv with
    // a short K cost as much as the tile's FMAs.
    let last_lanes = t.cols - 8 * (NV - 1);
    let last_mask = lane_mask(last_lanes);
    let whole = |v: usize| v + 1 < NV || last_lanes == 8;
    let mut acc = acc;
    // SAFETY (both loops): row `r < rows` and the lanes `< cols` are
    // inside the tile; a partial vector's masked-off lanes are neither read
    // nor written.
    for (r, row) in acc.iter_mut().enumerate() {
        unsafe {
            let c = t.c.add(r * t.ldc);
            let load = |p: *const f32, v: usize| {
                if whole(v) {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, last_mask)
                }
            };
            let bias = if t.first && !t.epi.bias.is_null() {
                Some(_mm256_set1_ps(*t.epi.bias.add(r)))
            } else {
                None
            };
            for (v, x) in row.iter_mut().enumerate() {
                if t.first {
                    if let Some(bias) = bias {
                        *x = _mm256_add_ps(*x, bias);
                    }
                    if !t.epi.residual.is_null() {
                        let res = t.epi.residual.add(r * t.epi.ldr + 8 * v);
                        *x = _mm256_add_ps(*x, load(res, v));
                    }
                } else {
                    *x = _mm256_add_ps(*x, load(c.add(8 * v), v));
                }
            }
        }
    }
    // SAFETY: AVX2 and FMA are available (this function's features).
    unsafe { apply_act_all(&act, acc.as_flattened_mut()) };
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: as above.
        unsafe {
            let c = t.c.add(r * t.ldc);
            for (v, &x) in row.iter().enumerate() {
                if whole(v) {
                    _mm256_storeu_ps(c.add(8 * v), x);
                } else {
                    _mm256_maskstore_ps(c.add(8 * v), last_mask, x);
                }
            }
        }
    }
}

/// The k loop of [`kernel`]: `ROWS x NV` ymm of sums over `kc` steps.
///
/// A function of its own, never inlined, so that nothing but the loop is
/// live in it: inlined into `kernel`, LLVM kept one more value live across
/// the 6x16 loop than the 16 ymm registers hold (12 sums, 2 of B, one
/// broadcast) and stored all 12 sums to the stack on every step, which
/// held the kernel to 30% of the FMA peak on Zen 3.
///
/// # Safety
/// AVX2 and FMA must be available; `kc` steps of A (MR floats each) and B
/// (`b_stride` apart, `8 * NV` readable floats each) must be valid.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn accumulate<const ROWS: usize, const NV: usize>(
    mut a: *const f32,
    mut b: *const f32,
    kc: usize,
    b_stride: usize,
) -> [[__m256; NV]; ROWS] {
    let mut acc = [[_mm256_setzero_ps(); NV]; ROWS];
    // SAFETY: per the caller.
    unsafe {
        for _ in 0..kc {
            // As in the AVX-512 kernel (see its `A_PREFETCH`).
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(A_PREFETCH).cast::<i8>());
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(b.add(8 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let ar = _mm256_broadcast_ss(&*a.add(r));
                for v in 0..NV {
                    row[v] = _mm256_fmadd_ps(ar, bv[v], row[v]);
                }
            }
            // Wrapping: after the last step these may point past the end.
            a = a.wrapping_add(MR);
            b = b.wrapping_add(b_stride);
        }
    }
    acc
}

/// The narrow kernel for `cols < 8`: one ymm holds a column of the tile
/// (`rows <= 6` lanes). Reads B one element at a time, so `b` may be
/// unpacked (any stride).
///
/// # Safety
/// As for [`tile`], except that B need only be readable for `cols` columns.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn narrow(t: &Tile) {
    // SAFETY: forwarded.
    unsafe {
        match t.cols {
            1 => narrow_n::<1, 4>(t),
            2 => narrow_n::<2, 2>(t),
            3 => narrow_n::<3, 2>(t),
            4 => narrow_n::<4, 1>(t),
            5 => narrow_n::<5, 1>(t),
            6 => narrow_n::<6, 1>(t),
            7 => narrow_n::<7, 1>(t),
            8 => narrow_n::<8, 1>(t),
            _ => {}
        }
    }
}

/// How far ahead (in floats) the narrow kernel prefetches A: 64 steps of K.
/// Its few FMAs per weight left it waiting on memory when the weights
/// stream (vgg_cifar's 512-channel layers on 2x2 maps, classifiers): with
/// the caches flushed, 512x4x4608 went from 12 to 31-34 GFLOP/s (AMD
/// Zen 3), and 768 floats ahead (the tile kernel's) gave 25 (best 35 in
/// both).
const NARROW_PREFETCH: usize = 384;

/// # Safety
/// As for [`narrow`], with `t.cols == NC`.
#[target_feature(enable = "avx2,fma")]
unsafe fn narrow_n<const NC: usize, const U: usize>(t: &Tile) {
    let m = lane_mask(t.rows);
    let mut acc = [[_mm256_setzero_ps(); NC]; U];
    let bs = t.b_stride;
    let mut kk = 0;
    // SAFETY: A steps hold MR >= rows floats (masked load reads `rows`),
    // B element `(kk, j)` for `kk < kc`, `j < cols` is valid.
    unsafe {
        while kk + U <= t.kc {
            for (u, accu) in acc.iter_mut().enumerate() {
                // A streams from memory when the weights outgrow the
                // caches (vgg_cifar's 512-channel layers on 2x2 maps).
                _mm_prefetch::<_MM_HINT_T0>(
                    t.a.wrapping_add((kk + u) * MR + NARROW_PREFETCH).cast(),
                );
                let av = _mm256_maskload_ps(t.a.add((kk + u) * MR), m);
                let b = t.b.add((kk + u) * bs);
                for (j, x) in accu.iter_mut().enumerate() {
                    *x = _mm256_fmadd_ps(av, _mm256_set1_ps(*b.add(j)), *x);
                }
            }
            kk += U;
        }
        while kk < t.kc {
            let av = _mm256_maskload_ps(t.a.add(kk * MR), m);
            let b = t.b.add(kk * bs);
            for (j, x) in acc[0].iter_mut().enumerate() {
                *x = _mm256_fmadd_ps(av, _mm256_set1_ps(*b.add(j)), *x);
            }
            kk += 1;
        }
    }
    // Sized by the tile's columns: zeroing the largest tile's (8 x 8) was a
    // `memset` call per tile, 2.5% of MobileNetV2's time (AMD EPYC Zen 4).
    let mut out = [[0.0f32; NC]; 8];
    for j in 0..NC {
        let mut s = acc[0][j];
        for accu in acc.iter().skip(1) {
            s = _mm256_add_ps(s, accu[j]);
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
        for (r, &x) in lanes.iter().enumerate().take(t.rows) {
            out[r][j] = x;
        }
    }
    // SAFETY: the tile's pointers are valid per the caller.
    unsafe { store_scalar(t, out.as_flattened(), NC) };
}
