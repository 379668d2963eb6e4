//! Products whose B is the constant operand: `C = A · B` with B packed
//! ahead of time in the micro-kernel's panels, and A (the activations)
//! packed per call.
//!
//! A `linear` over several rows of `x [rows, in]` is `x · W^T`: with the
//! weight as B, C is the output as it is laid out, and the rows (a
//! language model's 35 steps, a CRNN's 200 columns) are A's panels of 14.
//! With the weight as A (`W · x^T`, as for one row), the rows were the
//! columns of B and C, both transposed on the way in and out, and 35
//! columns took a whole panel of 32 and a half one of 16.

use super::{
    gemm_with, pack, with_thread_buffer, APanels, AlignedBuf, BLayout, GemmEpilogue, MicroKernel,
};
use std::cell::RefCell;
use std::ops::Range;

/// `B [k, n]` packed in the micro-kernel's `nr`-wide panels over the whole
/// of K: panel `p` holds columns `p * nr ..` as `[k][nr]`, zero past `n`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SavedPackedB")]
pub struct PackedB {
    kernel: MicroKernel,
    n: usize,
    k: usize,
    data: AlignedBuf,
}

impl PackedB {
    /// `B = w^T` for a row-major `w [n, k]` (a linear's weight, output
    /// features by input features), packed for `kernel`, or for the
    /// portable kernel where this CPU lacks it (as [`super::PackedA::pack`]).
    ///
    /// # Panics
    /// If `w.len() < n * k`.
    pub fn pack_transposed(kernel: MicroKernel, w: &[f32], n: usize, k: usize) -> PackedB {
        let kernel = kernel.usable();
        let nr = kernel.geometry().nr;
        let mut data = AlignedBuf::zeroed(n.div_ceil(nr) * nr * k);
        let dst = data.as_mut_slice();
        for (j, row) in w[..n * k].chunks_exact(k.max(1)).enumerate() {
            let at = j / nr * nr * k + j % nr;
            for (kk, &v) in row.iter().enumerate() {
                dst[at + kk * nr] = v;
            }
        }
        PackedB { kernel, n, k, data }
    }

    /// Columns of B (of C).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Rows of B (columns of A).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns per panel: a block of columns that starts a panel starts at
    /// a multiple of this.
    pub fn panel_width(&self) -> usize {
        self.kernel.geometry().nr
    }

    /// Bytes of packed values.
    pub fn bytes(&self) -> usize {
        4 * self.data.len()
    }
}

/// A [`PackedB`] as a bundle's image holds it, checked when loaded.
#[derive(serde::Deserialize)]
struct SavedPackedB {
    kernel: MicroKernel,
    n: usize,
    k: usize,
    data: AlignedBuf,
}

impl TryFrom<SavedPackedB> for PackedB {
    type Error = String;

    /// Refuses panels packed for a micro-kernel this CPU lacks or too
    /// short for their shape.
    fn try_from(s: SavedPackedB) -> Result<PackedB, String> {
        if !s.kernel.is_available() {
            return Err(format!(
                "weights packed for the {} micro-kernel, which this CPU lacks",
                s.kernel.name()
            ));
        }
        let nr = s.kernel.geometry().nr;
        let need = s.n.div_ceil(nr).checked_mul(nr * s.k);
        if need.is_none_or(|need| s.data.len() < need) {
            return Err("packed weights shorter than their shape".into());
        }
        Ok(PackedB {
            kernel: s.kernel,
            n: s.n,
            k: s.k,
            data: s.data,
        })
    }
}

thread_local! {
    /// This thread's packed A (it only grows).
    static PACK_A: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
}

/// `C[0..m, n_range] = epilogue(A · B[:, n_range])` with A row-major `[m,
/// b.k()]` at row stride `lda`, packed here into this thread's scratch,
/// and C row-major at row stride `ldc`. `n_range` is clamped to `0..b.n()`;
/// empty ranges do nothing. The epilogue's bias is per row of C, as for
/// [`super::gemm`]; a bias per column is a residual of row stride 0.
///
/// # Safety
/// `a` must be valid for reads of `m` rows of `b.k()` floats, `lda` apart;
/// `c` for reads and writes of rows `0..m`, columns `n_range`; the
/// epilogue's bias for `m` rows and its residual for the same block as C
/// (at row stride `ldr`). A and the bias must not overlap C; the residual
/// may only coincide with C exactly. `n_range.start` must be a multiple
/// of [`PackedB::panel_width`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_packed_b(
    a: *const f32,
    lda: usize,
    m: usize,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    n_range: Range<usize>,
    epi: &GemmEpilogue,
) {
    let g = b.kernel.geometry();
    let n1 = n_range.end.min(b.n);
    let n0 = n_range.start.min(n1);
    debug_assert_eq!(n0 % g.nr, 0, "columns from {n0}, panels of {}", g.nr);
    if m == 0 || n0 == n1 {
        return;
    }
    let (k, mr) = (b.k, g.mr);
    let len = pack::packed_a_len(m, k, mr);
    with_thread_buffer(&PACK_A, |buf| {
        buf.reserve_floats(len);
        let dst = &mut buf.as_mut_slice()[..len];
        // Panel by panel, each `[k][mr]` written in order (the rows past
        // `m` in the last one are never read: its tiles have fewer rows).
        for (p, panel) in dst.chunks_exact_mut(k * mr).enumerate() {
            let rows = mr.min(m - p * mr);
            for r in 0..rows {
                // SAFETY: row `p * mr + r < m` of A, as the caller vouched.
                let row = unsafe { std::slice::from_raw_parts(a.add((p * mr + r) * lda), k) };
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * mr + r] = v;
                }
            }
        }
        let a = APanels {
            kernel: b.kernel,
            k,
            data: dst.as_ptr(),
        };
        let (b, layout) = (b.data.as_ptr(), BLayout::Panels);
        // SAFETY: A is packed above for `m` rows; B's panels hold every
        // column below `n1`, from a panel's start; C and the epilogue are
        // the caller's.
        unsafe { gemm_with((a, m), b, 0, layout, c, ldc, 0..m, n0..n1, epi) };
    });
}
