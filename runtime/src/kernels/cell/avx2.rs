//! The cell step with AVX2 and FMA: `G x V` ymm accumulators per block of
//! `8 * V` units, the gate maths on the accumulators, masked loads and
//! stores for the last block. The input projections (two 8-row panels by
//! half a chunk's steps at a time) run before the blocks: with 16 ymm
//! registers there is no room to interleave them.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::{Cell, Step, CHUNK};
use crate::kernels::gemm::avx2_act::tanh_quotient;

/// The step.
///
/// # Safety
/// As for [`super::PackedCell::step`], with `h_{t-1}` in `previous` when
/// `recur`; the CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn step(s: &Step) {
    debug_assert_eq!(s.cell.width, if s.cell.cell == Cell::Rnn { 32 } else { 16 });
    debug_assert_eq!(s.cell.lanes, 8);
    // SAFETY: forwarded.
    unsafe {
        if s.first {
            project_panels(s, 0..s.cell.panels(), 0);
        }
        project_panels(s, s.ahead.panels.clone(), s.ahead.chunk);
        match s.cell.cell {
            Cell::Rnn => blocks::<1, 4>(s),
            Cell::Lstm => blocks::<4, 2>(s),
            Cell::Gru => blocks::<3, 2>(s),
        }
    }
}

/// The rational `tanh` of `jit/math.rs` (see `avx2_act::tanh_quotient`).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tanh(x: __m256) -> __m256 {
    tanh_quotient(x)
}

/// `(1 + tanh(x / 2)) / 2`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sigmoid(x: __m256) -> __m256 {
    let half = _mm256_set1_ps(0.5);
    _mm256_fmadd_ps(tanh(_mm256_mul_ps(x, half)), half, half)
}

/// The first `n` of 8 lanes, as a mask for `maskload` and `maskstore`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn lanes(n: usize) -> __m256i {
    let n = _mm256_set1_epi32(n.min(8) as i32);
    _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Stores the first `n` lanes of `x` at `p`: a plain store when all eight
/// are (a masked store costs several times a plain one on AMD, and every
/// store of the projections and the states went through one).
///
/// # Safety
/// AVX2 must be available; `p` holds `n.min(8)` floats.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_first(p: *mut f32, n: usize, x: __m256) {
    // SAFETY: the caller's; masked lanes are not written.
    unsafe {
        if n >= 8 {
            _mm256_storeu_ps(p, x);
        } else {
            _mm256_maskstore_ps(p, lanes(n), x);
        }
    }
}

/// Panels `panels` of the input projections of the steps of `chunk`, two
/// at a time where it can. Three (12 sums, 3 vectors of weights and a
/// broadcast: every ymm register) kept a sum on the stack: CRNN took 23
/// ms at one thread against 16.8 with two (AMD Zen 3).
///
/// # Safety
/// As for the step; the chunk has at least one step.
#[target_feature(enable = "avx2,fma")]
unsafe fn project_panels(s: &Step, panels: std::ops::Range<usize>, chunk: usize) {
    let mut panel = panels.start;
    // SAFETY: forwarded.
    unsafe {
        while panel + 2 <= panels.end {
            project::<2>(s, panel, chunk);
            panel += 2;
        }
        while panel < panels.end {
            project::<1>(s, panel, chunk);
            panel += 1;
        }
    }
}

/// Panels `panel..panel + P` of the input projections of the steps of
/// `chunk`, in two halves of `CHUNK / 2` steps: `P x 4` accumulators, so
/// that each `k` loads `P` vectors of weights and broadcasts 4 inputs for
/// `4 P` FMAs. One panel by all eight steps (8 accumulators, 9 loads for
/// 8 FMAs) ran the projections at about 40% of the FMA peak (AMD Zen 3):
/// they are two thirds of CRNN's GRU FLOPs, and two panels took CRNN from
/// 26.4-26.9 to 16.8 ms at one thread.
///
/// # Safety
/// As for the step; the chunk has at least one step; the panels exist.
#[target_feature(enable = "avx2,fma")]
unsafe fn project<const P: usize>(s: &Step, panel: usize, chunk: usize) {
    const HALF: usize = CHUNK / 2;
    let cell = s.cell;
    let (rows, features) = (cell.cell.gates() * cell.hidden, cell.features);
    let times = cell.chunk_times(chunk);
    let valid = times[0].unwrap_or(0);
    let x = times.map(|t| s.x.wrapping_add(t.unwrap_or(valid) * features));
    // SAFETY: each packed panel holds `features` runs of 8 floats and the
    // bias whole panels; each input holds `features` floats; the masks keep
    // the stores to the panels' rows of each step's projections.
    unsafe {
        let weights = cell.input_weights.as_ptr().add(panel * features * 8);
        for half in 0..2 {
            if times[half * HALF].is_none() {
                break;
            }
            let x: [*const f32; HALF] = std::array::from_fn(|i| x[half * HALF + i]);
            let bias = cell.bias.as_ptr().add(panel * 8);
            let acc = accumulate::<P>(weights, x, features, bias);
            for (q, acc) in acc.iter().enumerate() {
                let row = (panel + q) * 8;
                for (&a, t) in acc.iter().zip(&times[half * HALF..]) {
                    if let Some(t) = *t {
                        store_first(s.p.add(t * rows + row), rows - row, a);
                    }
                }
            }
        }
    }
}

/// The sums of [`project`]: `P` panels' bias plus their products with 4
/// steps' inputs over `features`.
///
/// A function of its own, never inlined, so that nothing but the loop is
/// live in it (as in the GEMM's `accumulate`).
///
/// # Safety
/// AVX2 and FMA must be available; `weights` holds `P` panels of
/// `features` runs of 8 floats, `bias` `8 P` floats, each `x` `features`.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn accumulate<const P: usize>(
    weights: *const f32,
    x: [*const f32; CHUNK / 2],
    features: usize,
    bias: *const f32,
) -> [[__m256; CHUNK / 2]; P] {
    // SAFETY: per the caller.
    unsafe {
        let mut acc: [[__m256; CHUNK / 2]; P] =
            std::array::from_fn(|q| [_mm256_loadu_ps(bias.add(q * 8)); CHUNK / 2]);
        for k in 0..features {
            let w: [__m256; P] =
                std::array::from_fn(|q| _mm256_loadu_ps(weights.add((q * features + k) * 8)));
            for (i, x) in x.iter().enumerate() {
                let xk = _mm256_set1_ps(*x.add(k));
                for q in 0..P {
                    acc[q][i] = _mm256_fmadd_ps(w[q], xk, acc[q][i]);
                }
            }
        }
        acc
    }
}

/// Every block of `8 * V` units with `G` gates.
///
/// # Safety
/// AVX2 and FMA must be available, and `s` must satisfy the contract of
/// the cell step it comes from: its pointers cover `hidden` floats of
/// state (`G * hidden` for `p_t`) and every time step of `x` and `p`.
#[target_feature(enable = "avx2,fma")]
unsafe fn blocks<const G: usize, const V: usize>(s: &Step) {
    let cell = s.cell;
    let hidden = cell.hidden;
    let width = 8 * V;
    // SAFETY: block `j` of the packed weights holds `hidden` runs of `G *
    // width` floats; the caller vouches for the step's pointers over
    // `hidden` floats (`G * hidden` for `p_t`), and the masks keep every
    // access to the block's `units`; the padded recurrent bias holds whole
    // blocks.
    unsafe {
        for j in s.block_order() {
            let first = j * width;
            let units = width.min(hidden - first);
            let mut acc = [[_mm256_setzero_ps(); V]; G];
            if s.recur {
                let block = cell.weights.as_ptr().add(j * hidden * G * width);
                for kk in 0..hidden {
                    let k = if s.backward { hidden - 1 - kk } else { kk };
                    let w = block.add(k * G * width);
                    let x = _mm256_set1_ps(*s.previous.add(k));
                    for (g, acc) in acc.iter_mut().enumerate() {
                        for (v, a) in acc.iter_mut().enumerate() {
                            let wv = _mm256_loadu_ps(w.add((g * V + v) * 8));
                            *a = _mm256_fmadd_ps(wv, x, *a);
                        }
                    }
                }
            }
            // `v` picks one vector of every gate's accumulators.
            #[allow(clippy::needless_range_loop)]
            for v in 0..V {
                let at = first + 8 * v;
                if units <= 8 * v {
                    break;
                }
                let m = lanes(units - 8 * v);
                let gate = |g: usize| {
                    let p = _mm256_maskload_ps(s.p_t.add(g * hidden + at), m);
                    _mm256_add_ps(p, acc[g][v])
                };
                let h_new = match cell.cell {
                    Cell::Rnn => tanh(gate(0)),
                    Cell::Lstm => {
                        let i = sigmoid(gate(0));
                        let f = sigmoid(gate(1));
                        let g = tanh(gate(2));
                        let o = sigmoid(gate(3));
                        let c_at = s.c.add(at);
                        let c = _mm256_maskload_ps(c_at, m);
                        let c = _mm256_add_ps(_mm256_mul_ps(f, c), _mm256_mul_ps(i, g));
                        store_first(c_at, units - 8 * v, c);
                        _mm256_mul_ps(o, tanh(c))
                    }
                    Cell::Gru => {
                        let r = sigmoid(gate(0));
                        let z = sigmoid(gate(1));
                        let bias = _mm256_loadu_ps(cell.recurrent_bias.as_ptr().add(at));
                        let p = _mm256_maskload_ps(s.p_t.add(2 * hidden + at), m);
                        let product = _mm256_add_ps(acc[2][v], bias);
                        let n = tanh(_mm256_fmadd_ps(r, product, p));
                        let old = if s.recur {
                            _mm256_maskload_ps(s.previous.add(at), m)
                        } else {
                            _mm256_setzero_ps()
                        };
                        // `(1 - z) * n + z * h_{t-1}`, as the reference
                        // rounds it.
                        let keep = _mm256_sub_ps(_mm256_set1_ps(1.0), z);
                        _mm256_add_ps(_mm256_mul_ps(keep, n), _mm256_mul_ps(z, old))
                    }
                };
                store_first(s.h.add(at), units - 8 * v, h_new);
                if !s.out.is_null() {
                    store_first(s.out.add(at), units - 8 * v, h_new);
                }
            }
        }
    }
}
