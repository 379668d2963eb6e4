//! The cell step with AVX-512F: `G x V` zmm accumulators per block of
//! `16 * V` units, the gate maths on the accumulators, masked loads and
//! stores for the last block; the input projections of one 16-row panel
//! for a chunk of later steps in `CHUNK` more accumulators, interleaved
//! with a block's product.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::{Cell, Step, CHUNK};
use crate::kernels::math::{TANH_CLAMP, TANH_P, TANH_Q};

/// The step.
///
/// # Safety
/// As for [`super::PackedCell::step`], with `h_{t-1}` in `previous` when
/// `recur`; the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn step(s: &Step) {
    debug_assert_eq!(s.cell.width, if s.cell.cell == Cell::Rnn { 64 } else { 32 });
    // SAFETY: forwarded.
    unsafe {
        match s.cell.cell {
            Cell::Rnn => blocks::<1, 4>(s),
            Cell::Lstm => blocks::<4, 2>(s),
            Cell::Gru => blocks::<3, 2>(s),
        }
    }
}

/// The rational `tanh` of `jit/math.rs`; NaN stays NaN (`max` and `min`
/// return their second operand when one is NaN).
#[target_feature(enable = "avx512f")]
#[inline]
fn tanh(x: __m512) -> __m512 {
    let x = _mm512_max_ps(_mm512_set1_ps(-TANH_CLAMP), x);
    let x = _mm512_min_ps(_mm512_set1_ps(TANH_CLAMP), x);
    let x2 = _mm512_mul_ps(x, x);
    let mut p = _mm512_set1_ps(TANH_P[0]);
    for &c in &TANH_P[1..] {
        p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(c));
    }
    let mut q = _mm512_set1_ps(TANH_Q[0]);
    for &c in &TANH_Q[1..] {
        q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(c));
    }
    _mm512_div_ps(_mm512_mul_ps(p, x), q)
}

/// `(1 + tanh(x / 2)) / 2`.
#[target_feature(enable = "avx512f")]
#[inline]
fn sigmoid(x: __m512) -> __m512 {
    let half = _mm512_set1_ps(0.5);
    _mm512_fmadd_ps(tanh(_mm512_mul_ps(x, half)), half, half)
}

/// The first `n` of 16 lanes.
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// One panel of input projections for the steps of a chunk: where its
/// weights and each step's input start, and where each step's result goes.
struct Panel {
    /// Packed `W_ih` of the panel, `features` runs of 16 floats.
    weights: *const f32,
    /// Each step's input (a valid one repeated past the last step).
    x: [*const f32; CHUNK],
    /// Each step's projections at the panel's first row, or null past the
    /// last step.
    out: [*mut f32; CHUNK],
    /// Rows of the panel that exist.
    mask: __mmask16,
    bias: __m512,
}

impl Panel {
    /// Panel `panel` of `chunk`.
    ///
    /// # Safety
    /// As for the step; the chunk has at least one step.
    #[target_feature(enable = "avx512f")]
    unsafe fn new(s: &Step, panel: usize, chunk: usize) -> Panel {
        let cell = s.cell;
        let (rows, features) = (cell.cell.gates() * cell.hidden, cell.features);
        let row = panel * 16;
        let times = cell.chunk_times(chunk);
        let valid = times[0].unwrap_or(0);
        Panel {
            weights: cell
                .input_weights
                .as_ptr()
                .wrapping_add(panel * features * 16),
            x: times.map(|t| s.x.wrapping_add(t.unwrap_or(valid) * features)),
            out: times
                .map(|t| t.map_or(std::ptr::null_mut(), |t| s.p.wrapping_add(t * rows + row))),
            mask: lanes(rows - row),
            // SAFETY: the bias is padded to whole panels.
            bias: unsafe { _mm512_loadu_ps(cell.bias.as_ptr().add(row)) },
        }
    }

    /// Step `k` of the panel's products into `acc`.
    ///
    /// # Safety
    /// `k < features`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn add(&self, acc: &mut [__m512; CHUNK], k: usize) {
        // SAFETY: the panel holds `features` runs of 16 floats and each
        // input `features` floats.
        unsafe {
            let w = _mm512_load_ps(self.weights.add(k * 16));
            for (a, x) in acc.iter_mut().zip(self.x) {
                *a = _mm512_fmadd_ps(w, _mm512_set1_ps(*x.add(k)), *a);
            }
        }
    }

    /// Stores the finished projections.
    ///
    /// # Safety
    /// As for the step.
    #[target_feature(enable = "avx512f")]
    unsafe fn store(&self, acc: &[__m512; CHUNK]) {
        for (&a, out) in acc.iter().zip(self.out) {
            if !out.is_null() {
                // SAFETY: the mask keeps the store to the panel's rows.
                unsafe { _mm512_mask_storeu_ps(out, self.mask, a) };
            }
        }
    }

    /// The whole panel, not interleaved with anything.
    ///
    /// # Safety
    /// As for the step.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, features: usize) {
        let mut acc = [self.bias; CHUNK];
        // SAFETY: forwarded.
        unsafe {
            for k in 0..features {
                self.add(&mut acc, k);
            }
            self.store(&acc);
        }
    }
}

/// Every block of `16 * V` units with `G` gates, and this step's share of
/// later input projections.
///
/// # Safety
/// AVX-512F must be available, and `s` must satisfy the contract of the
/// cell step it comes from: its pointers cover `hidden` floats of state
/// (`G * hidden` for `p_t`) and every time step of `x` and `p`.
#[target_feature(enable = "avx512f")]
unsafe fn blocks<const G: usize, const V: usize>(s: &Step) {
    let cell = s.cell;
    let (hidden, features) = (cell.hidden, cell.features);
    let width = 16 * V;
    // SAFETY: block `j` of the packed weights holds `hidden` runs of `G *
    // width` floats; the caller vouches for the step's pointers over
    // `hidden` floats (`G * hidden` for `p_t`, all steps for `x` and `p`),
    // and the masks keep every access to the block's `units` (the panel's
    // rows); the padded biases hold whole blocks and panels.
    unsafe {
        if s.first {
            for panel in 0..cell.panels() {
                Panel::new(s, panel, 0).run(features);
            }
        }
        let mut ahead = s.ahead.panels.clone();
        for j in s.block_order() {
            let first = j * width;
            let units = width.min(hidden - first);
            let mut acc = [[_mm512_setzero_ps(); V]; G];
            let block = cell.weights.as_ptr().add(j * hidden * G * width);
            let mut product = |kk: usize| {
                let k = if s.backward { hidden - 1 - kk } else { kk };
                let w = block.add(k * G * width);
                let x = _mm512_set1_ps(*s.previous.add(k));
                for (g, acc) in acc.iter_mut().enumerate() {
                    for (v, a) in acc.iter_mut().enumerate() {
                        let wv = _mm512_load_ps(w.add((g * V + v) * 16));
                        *a = _mm512_fmadd_ps(wv, x, *a);
                    }
                }
            };
            let steps = if s.recur { hidden } else { 0 };
            // A panel of later projections rides along: this loop waits on
            // `W_hh` from L2 and leaves FMA slots free.
            match ahead.next() {
                Some(panel) => {
                    let panel = Panel::new(s, panel, s.ahead.chunk);
                    let mut projections = [panel.bias; CHUNK];
                    let both = steps.min(features);
                    for k in 0..both {
                        product(k);
                        panel.add(&mut projections, k);
                    }
                    for k in both..steps {
                        product(k);
                    }
                    for k in both..features {
                        panel.add(&mut projections, k);
                    }
                    panel.store(&projections);
                }
                None => {
                    for k in 0..steps {
                        product(k);
                    }
                }
            }
            // `v` picks one vector of every gate's accumulators.
            #[allow(clippy::needless_range_loop)]
            for v in 0..V {
                let at = first + 16 * v;
                let m = lanes(units.saturating_sub(16 * v));
                if m == 0 {
                    break;
                }
                let gate = |g: usize| {
                    let p = _mm512_maskz_loadu_ps(m, s.p_t.add(g * hidden + at));
                    _mm512_add_ps(p, acc[g][v])
                };
                let h_new = match cell.cell {
                    Cell::Rnn => tanh(gate(0)),
                    Cell::Lstm => {
                        let i = sigmoid(gate(0));
                        let f = sigmoid(gate(1));
                        let g = tanh(gate(2));
                        let o = sigmoid(gate(3));
                        let c_at = s.c.add(at);
                        let c = _mm512_maskz_loadu_ps(m, c_at);
                        let c = _mm512_add_ps(_mm512_mul_ps(f, c), _mm512_mul_ps(i, g));
                        _mm512_mask_storeu_ps(c_at, m, c);
                        _mm512_mul_ps(o, tanh(c))
                    }
                    Cell::Gru => {
                        let r = sigmoid(gate(0));
                        let z = sigmoid(gate(1));
                        let bias = _mm512_loadu_ps(cell.recurrent_bias.as_ptr().add(at));
                        let p = _mm512_maskz_loadu_ps(m, s.p_t.add(2 * hidden + at));
                        let product = _mm512_add_ps(acc[2][v], bias);
                        let n = tanh(_mm512_fmadd_ps(r, product, p));
                        let old = if s.recur {
                            _mm512_maskz_loadu_ps(m, s.previous.add(at))
                        } else {
                            _mm512_setzero_ps()
                        };
                        // `(1 - z) * n + z * h_{t-1}`, as the reference
                        // rounds it.
                        let keep = _mm512_sub_ps(_mm512_set1_ps(1.0), z);
                        _mm512_add_ps(_mm512_mul_ps(keep, n), _mm512_mul_ps(z, old))
                    }
                };
                _mm512_mask_storeu_ps(s.h.add(at), m, h_new);
                if !s.out.is_null() {
                    _mm512_mask_storeu_ps(s.out.add(at), m, h_new);
                }
            }
        }
        for panel in ahead {
            Panel::new(s, panel, s.ahead.chunk).run(features);
        }
    }
}
