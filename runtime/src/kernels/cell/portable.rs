//! The cell step in plain Rust over fixed-size blocks: the fallback for
//! CPUs without AVX2 and FMA and for other targets (correct, not fast). The
//! input projections of later steps are computed before the step's own
//! blocks.

use super::{Cell, Step, CHUNK};
use crate::kernels::math::{TANH_CLAMP, TANH_P, TANH_Q};

/// The step on any CPU; the block widths are those of
/// [`super::block_width`] for 8 lanes.
///
/// # Safety
/// As for [`super::PackedCell::step`], with `h_{t-1}` in `previous` when
/// `recur`.
pub(super) unsafe fn step(s: &Step) {
    debug_assert_eq!(s.cell.width, if s.cell.cell == Cell::Rnn { 32 } else { 16 });
    // SAFETY: forwarded.
    unsafe {
        match s.cell.cell {
            Cell::Rnn => blocks::<1, 32>(s),
            Cell::Lstm => blocks::<4, 16>(s),
            Cell::Gru => blocks::<3, 16>(s),
        }
    }
}

/// `a * b + c`, not fused (without hardware FMA `mul_add` is a library
/// call).
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    a * b + c
}

/// The rational `tanh` of `jit/math.rs`; NaN stays NaN.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let mut p = TANH_P[0];
    for &c in &TANH_P[1..] {
        p = madd(p, x2, c);
    }
    let mut q = TANH_Q[0];
    for &c in &TANH_Q[1..] {
        q = madd(q, x2, c);
    }
    p * x / q
}

/// `(1 + tanh(x / 2)) / 2`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    madd(tanh(x * 0.5), 0.5, 0.5)
}

/// Rows per panel of `W_ih` ([`super::lanes`] of the portable kernels).
const LANES: usize = 8;

/// Panel `panel` of the input projections of the steps of `chunk`, the
/// steps side by side (independent accumulators).
///
/// # Safety
/// As for the step.
#[inline(always)]
unsafe fn project(s: &Step, panel: usize, chunk: usize) {
    let cell = s.cell;
    let (rows, features) = (cell.cell.gates() * cell.hidden, cell.features);
    let row = panel * LANES;
    let count = LANES.min(rows - row);
    let times = cell.chunk_times(chunk);
    let valid = times[0].unwrap_or(0);
    // SAFETY: the packed panels hold `features` runs of `LANES` floats and
    // the bias whole panels; each step's input holds `features` floats and
    // its projections `rows`, of which the panel writes `count`.
    unsafe {
        let weights = std::slice::from_raw_parts(
            cell.input_weights.as_ptr().add(panel * features * LANES),
            features * LANES,
        );
        let x: [&[f32]; CHUNK] = times
            .map(|t| std::slice::from_raw_parts(s.x.add(t.unwrap_or(valid) * features), features));
        let mut bias = [0.0f32; LANES];
        bias.copy_from_slice(&cell.bias[row..row + LANES]);
        let mut acc = [bias; CHUNK];
        for (k, w) in weights.chunks_exact(LANES).enumerate() {
            for (acc, x) in acc.iter_mut().zip(&x) {
                let x = x[k];
                for (a, &w) in acc.iter_mut().zip(w) {
                    *a = madd(w, x, *a);
                }
            }
        }
        for (acc, t) in acc.iter().zip(times) {
            if let Some(t) = t {
                std::ptr::copy_nonoverlapping(acc.as_ptr(), s.p.add(t * rows + row), count);
            }
        }
    }
}

/// Every block of `U` units with `G` gates, after this step's share of
/// later input projections.
///
/// # Safety
/// `s` must satisfy the contract of the cell step it comes from: its
/// pointers cover `hidden` floats of state (`G * hidden` for `p_t`) and
/// every time step of `x` and `p`.
#[inline(always)]
unsafe fn blocks<const G: usize, const U: usize>(s: &Step) {
    let cell = s.cell;
    let hidden = cell.hidden;
    debug_assert_eq!(cell.lanes, LANES);
    // SAFETY: forwarded.
    unsafe {
        if s.first {
            for panel in 0..cell.panels() {
                project(s, panel, 0);
            }
        }
        for panel in s.ahead.panels.clone() {
            project(s, panel, s.ahead.chunk);
        }
    }
    // SAFETY: the packed weights hold `blocks * hidden * G * U` floats; the
    // caller vouches for the step's pointers over `hidden` (and `G *
    // hidden` for `p`) floats, and only the block's `units` are touched.
    unsafe {
        let weights = std::slice::from_raw_parts(cell.weights.as_ptr(), cell.weights.len());
        let previous = std::slice::from_raw_parts(s.previous.cast_const(), hidden);
        for j in s.block_order() {
            let (first, units) = (j * U, U.min(hidden - j * U));
            let mut acc = [[0.0f32; U]; G];
            if s.recur {
                let block = &weights[j * hidden * G * U..(j + 1) * hidden * G * U];
                for kk in 0..hidden {
                    let k = if s.backward { hidden - 1 - kk } else { kk };
                    let row = &block[k * G * U..(k + 1) * G * U];
                    let x = previous[k];
                    for (acc, w) in acc.iter_mut().zip(row.chunks_exact(U)) {
                        for (a, &w) in acc.iter_mut().zip(w) {
                            *a = madd(w, x, *a);
                        }
                    }
                }
            }
            // Whole blocks of inputs (zeros past `hidden`), so the gate
            // maths runs over `U` lanes.
            let load = |from: *const f32| {
                let mut v = [0.0f32; U];
                std::ptr::copy_nonoverlapping(from, v.as_mut_ptr(), units);
                v
            };
            let mut gates = [[0.0f32; U]; G];
            for (g, gate) in gates.iter_mut().enumerate() {
                *gate = load(s.p_t.add(g * hidden + first));
            }
            let mut h_new = [0.0f32; U];
            match cell.cell {
                Cell::Rnn => {
                    for u in 0..U {
                        h_new[u] = tanh(gates[0][u] + acc[0][u]);
                    }
                }
                Cell::Lstm => {
                    let mut c = load(s.c.add(first));
                    for u in 0..U {
                        let i = sigmoid(gates[0][u] + acc[0][u]);
                        let f = sigmoid(gates[1][u] + acc[1][u]);
                        let g = tanh(gates[2][u] + acc[2][u]);
                        let o = sigmoid(gates[3][u] + acc[3][u]);
                        c[u] = f * c[u] + i * g;
                        h_new[u] = o * tanh(c[u]);
                    }
                    std::ptr::copy_nonoverlapping(c.as_ptr(), s.c.add(first), units);
                }
                Cell::Gru => {
                    let bias = load(cell.recurrent_bias.as_ptr().add(first));
                    let old = if s.recur {
                        load(s.previous.add(first))
                    } else {
                        [0.0; U]
                    };
                    for u in 0..U {
                        let r = sigmoid(gates[0][u] + acc[0][u]);
                        let z = sigmoid(gates[1][u] + acc[1][u]);
                        let n = tanh(gates[2][u] + r * (acc[2][u] + bias[u]));
                        h_new[u] = (1.0 - z) * n + z * old[u];
                    }
                }
            }
            std::ptr::copy_nonoverlapping(h_new.as_ptr(), s.h.add(first), units);
            if !s.out.is_null() {
                std::ptr::copy_nonoverlapping(h_new.as_ptr(), s.out.add(first), units);
            }
        }
    }
}
