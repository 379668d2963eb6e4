//! Native bilinear resizing: output rows of one `[h, w]` plane, each the
//! blend of two input rows by its row weights, then of two columns of that
//! blend by each output column's weights, from tables the compiler
//! computes (source indices and weights per output row and column, as
//! `interp::interpolate` defines them).
//!
//! The JIT's version gathers its sixteen pixels per four outputs one load
//! at a time (Cranelift's vectors are 128-bit): a UNet's two bilinear 2x
//! upsamplings took 6.2 ms of its 114 (AMD EPYC Zen 4). Here the two rows
//! are blended once per input column, a vector at a time, into this
//! thread's scratch, and each vector of sixteen outputs gathers its two
//! columns from there (in L1). AVX-512 only; other CPUs keep the JIT code.

#![allow(unsafe_code)]

use super::gemm::MicroKernel;
use super::KernelError;
use std::cell::RefCell;

/// One `interpolate` op's tables (owned by the compiled model).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(try_from = "BilinearRows")]
pub struct Bilinear {
    rows: BilinearRows,
}

/// The tables, as a bundle saves them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct BilinearRows {
    input: [usize; 2],
    output: [usize; 2],
    /// Per output row: the two input rows and their weights.
    row_taps: Vec<[(u32, f32); 2]>,
    /// Per output column, split by side: input columns (as `i32`, for the
    /// gathers) and weights, each padded with copies of the last to whole
    /// vectors of 16.
    left: Vec<i32>,
    right: Vec<i32>,
    left_weight: Vec<f32>,
    right_weight: Vec<f32>,
}

impl serde::Serialize for Bilinear {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.rows.serialize(s)
    }
}

impl TryFrom<BilinearRows> for Bilinear {
    type Error = String;

    /// Refuses tables whose indices point outside the input, or whose
    /// lengths disagree with the sizes.
    fn try_from(r: BilinearRows) -> Result<Bilinear, String> {
        let [h, w] = r.input;
        let [oh, ow] = r.output;
        let padded = ow.div_ceil(16) * 16;
        let lengths = r.row_taps.len() == oh
            && [
                r.left.len(),
                r.right.len(),
                r.left_weight.len(),
                r.right_weight.len(),
            ] == [padded; 4];
        let rows_inside = r.row_taps.iter().flatten().all(|&(i, _)| (i as usize) < h);
        let columns_inside = r
            .left
            .iter()
            .chain(&r.right)
            .all(|&i| usize::try_from(i).is_ok_and(|i| i < w));
        if lengths && rows_inside && columns_inside {
            Ok(Bilinear { rows: r })
        } else {
            Err("bilinear tables that do not fit their sizes".into())
        }
    }
}

thread_local! {
    /// One output row's blend of its two input rows.
    static BLEND: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Bilinear {
    /// The resizing of `[h, w]` planes to `[oh, ow]` with these taps per
    /// output row and column, or `None` where the native kernel does not
    /// run (no AVX-512, or an input too wide to index as `i32`).
    pub fn new(
        [h, w]: [usize; 2],
        rows: &[[(u32, f32); 2]],
        columns: &[[(u32, f32); 2]],
        kernel: MicroKernel,
    ) -> Result<Option<Bilinear>, KernelError> {
        if kernel != MicroKernel::Avx512 || !kernel.is_available() || i32::try_from(w).is_err() {
            return Ok(None);
        }
        let ow = columns.len();
        let padded = ow.div_ceil(16) * 16;
        let side = |k: usize| -> (Vec<i32>, Vec<f32>) {
            let mut index: Vec<i32> = columns.iter().map(|t| t[k].0 as i32).collect();
            let mut weight: Vec<f32> = columns.iter().map(|t| t[k].1).collect();
            index.resize(padded, index.last().copied().unwrap_or(0));
            weight.resize(padded, 0.0);
            (index, weight)
        };
        let ((left, left_weight), (right, right_weight)) = (side(0), side(1));
        Bilinear::try_from(BilinearRows {
            input: [h, w],
            output: [rows.len(), ow],
            row_taps: rows.to_vec(),
            left,
            right,
            left_weight,
            right_weight,
        })
        .map(Some)
        .map_err(KernelError::Unsupported)
    }

    /// Output rows `r0..r1` of one plane: `x` is the input plane, `out`
    /// the output plane.
    ///
    /// # Safety
    /// `x` must hold `h * w` floats and `out` `oh * ow`; `r1 <= oh`.
    pub unsafe fn run(&self, x: *const f32, out: *mut f32, r0: usize, r1: usize) {
        let r = &self.rows;
        let r1 = r1.min(r.output[0]);
        BLEND.with(|blend| {
            let mut blend = blend.borrow_mut();
            // Room for a whole vector past the last column.
            blend.resize(r.input[1] + 16, 0.0);
            for oy in r0..r1 {
                // SAFETY: forwarded; `new` chose this kernel only with
                // AVX-512, and `try_from` checked the tables.
                unsafe { row(r, x, out.add(oy * r.output[1]), oy, &mut blend) };
            }
        });
    }
}

/// Output row `oy`.
///
/// # Safety
/// As [`Bilinear::run`], AVX-512F available; `blend` holds `w + 16`
/// floats.
#[target_feature(enable = "avx512f")]
unsafe fn row(r: &BilinearRows, x: *const f32, out: *mut f32, oy: usize, blend: &mut [f32]) {
    use super::gemm::avx512::lane_mask;
    use std::arch::x86_64::*;
    let [_, w] = r.input;
    let ow = r.output[1];
    let [(top, wt), (bottom, wb)] = r.row_taps[oy];
    // SAFETY: the rows are inside the plane (checked in `try_from`); the
    // loads and stores are masked to `w` columns and `ow` outputs; the
    // gathers read columns below `w` of `blend`, and the padded tables
    // hold whole vectors.
    unsafe {
        let (top, bottom) = (x.add(top as usize * w), x.add(bottom as usize * w));
        let (wt, wb) = (_mm512_set1_ps(wt), _mm512_set1_ps(wb));
        for c in (0..w).step_by(16) {
            let m = lane_mask(w - c);
            let t = _mm512_maskz_loadu_ps(m, top.add(c));
            let b = _mm512_maskz_loadu_ps(m, bottom.add(c));
            let v = _mm512_add_ps(_mm512_mul_ps(t, wt), _mm512_mul_ps(b, wb));
            _mm512_storeu_ps(blend.as_mut_ptr().add(c), v);
        }
        let blend = blend.as_ptr();
        for o in (0..ow).step_by(16) {
            let l = _mm512_loadu_si512(r.left.as_ptr().add(o).cast());
            let rt = _mm512_loadu_si512(r.right.as_ptr().add(o).cast());
            let wl = _mm512_loadu_ps(r.left_weight.as_ptr().add(o));
            let wr = _mm512_loadu_ps(r.right_weight.as_ptr().add(o));
            let a = _mm512_i32gather_ps::<4>(l, blend);
            let b = _mm512_i32gather_ps::<4>(rt, blend);
            let v = _mm512_add_ps(_mm512_mul_ps(a, wl), _mm512_mul_ps(b, wr));
            _mm512_mask_storeu_ps(out.add(o), lane_mask(ow - o), v);
        }
    }
}

/// Called by compiled code: [`Bilinear::run`] on the spec at `spec`.
///
/// # Safety
/// As [`Bilinear::run`]; `spec` points to a live `Bilinear`.
#[no_mangle]
pub unsafe extern "C" fn nnc_bilinear(
    spec: *const Bilinear,
    x: *const f32,
    out: *mut f32,
    r0: usize,
    r1: usize,
) {
    // SAFETY: as documented above.
    unsafe { (*spec).run(x, out, r0, r1) }
}
