//! The portable micro-kernel: plain Rust over a 4x8 tile of accumulators,
//! which LLVM vectorises for whatever the target baseline offers. Used on
//! CPUs without AVX2+FMA and on non-x86 targets; it is the fallback, not a
//! fast path, so one kernel (reading only the tile's valid rows) covers
//! every edge and the small-N case.

use super::epilogue::{store_scalar, Tile};

/// Rows of A per panel.
pub(crate) const MR: usize = 4;
/// Columns of B per packed panel.
pub(crate) const NR: usize = 8;

/// Computes one tile: `t.rows <= MR`, `t.cols <= NR` (B may be unpacked:
/// only the tile's `cols` columns are read).
///
/// # Safety
/// The tile's pointers must be valid for its extent.
pub(crate) unsafe fn tile(t: &Tile) {
    let mut acc = [[0.0f32; NR]; MR];
    let rows = t.rows.min(MR);
    let cols = t.cols.min(NR);
    for kk in 0..t.kc {
        let mut b = [0.0f32; NR];
        // SAFETY: step `kk < kc` of A holds MR floats and row `kk` of B
        // holds `cols` valid floats.
        unsafe {
            for (j, x) in b.iter_mut().enumerate().take(cols) {
                *x = *t.b.add(kk * t.b_stride + j);
            }
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                let a = *t.a.add(kk * MR + r);
                for (x, &bj) in row.iter_mut().zip(b.iter()) {
                    *x += a * bj;
                }
            }
        }
    }
    // SAFETY: the tile's pointers are valid per the caller.
    unsafe { store_scalar(t, acc.as_flattened(), NR) };
}
