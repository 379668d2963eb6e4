//! The AVX-512 direct convolution's tile for groups of 16 output channels
//! or a multiple: one vector holds the 16 channels of a block at one flat
//! position, and each tap broadcasts the input at 16 positions against the
//! tap's 16 weights (one load).
//!
//! Per tap that is one weight load and 16 FMAs whose broadcast is their
//! memory operand, against the 8-channel tile's 3 window loads and 8
//! weight broadcasts for 24 FMAs, and no tail: a task's vectors are taken
//! one at a time, where the 8-by-3 tiles ran a 7-vector task (a 14x14
//! map's 7 rows) as two tiles of 3 and one of 1, at a third of the loads'
//! reuse. The sums come out a vector per position; 64 shuffles per tile
//! turn them into a vector per channel, stored as the 8-channel tile
//! stores its rows. Lone grouped convs of RegNetX's (16 channels per
//! group), nnc profile, five alternating runs: 56x56 -> 28x28 at stride 2
//! 0.232 -> 0.197 ms, 28x28 -> 14x14 0.174 -> 0.143, the stride-1 ones
//! level (their 8-channel tiles already ran the FMAs at full rate) (AMD
//! EPYC Zen 4). With two FMA pipes (a Xeon) the 17 loads per 16 FMAs are
//! near its two load ports' limit; not measured there.

use super::{Task, Vector, ROW_PAIRS};
use crate::kernels::gemm::avx512::{apply_act, vec_act, VecAct};
use std::arch::x86_64::*;

/// Channels per block (the conv's `cb`) and positions per tile.
const LANES: usize = super::super::BLOCK;

impl Task<'_> {
    /// Every tile: each block of 16 channels by each vector of positions.
    ///
    /// # Safety
    /// As [`super::run`], with `s.cb == 16`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tiles_by_channel(&self) {
        let act = vec_act(self.s.activation);
        for block in 0..self.s.out_channels.div_ceil(LANES) {
            let live = (self.s.out_channels - block * LANES).min(LANES);
            for vector in self.vectors {
                // SAFETY: forwarded; the vector is one of the task's.
                unsafe {
                    // A row of 14 (a 14x14 map's, one vector per row):
                    // its 14 positions only, not the two padding columns
                    // after it, an eighth of the FMAs (RegNetX's 14x14
                    // grouped convs); rows of 7 in pairs (`ROW_PAIRS`).
                    let mut sums = match (vector.whole, vector.count, self.s.ow) {
                        (true, 14, 14) => self.sums_by_channel::<14, 14, 1>(block, vector.start),
                        (true, 14, ROW_PAIRS) => {
                            self.sums_by_channel::<14, ROW_PAIRS, 1>(block, vector.start)
                        }
                        (true, 7, ROW_PAIRS) => {
                            self.sums_by_channel::<7, ROW_PAIRS, 1>(block, vector.start)
                        }
                        _ => self.sums_by_channel::<LANES, LANES, 1>(block, vector.start),
                    };
                    self.store_sums(block, live, vector, &act, &mut sums);
                }
            }
        }
    }

    /// Stores the sums of a tile (a vector of channels per position, see
    /// [`Task::sums_by_channel`]) at the vector's outputs: the activation,
    /// the transpose into a vector of positions per channel, and the
    /// block's first `live` channels.
    ///
    /// # Safety
    /// As [`super::run`], with `s.cb == 16` and `vector` one of the task's.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn store_sums(
        &self,
        block: usize,
        live: usize,
        vector: &Vector,
        act: &VecAct,
        sums: &mut [__m512; LANES],
    ) {
        for x in sums.iter_mut() {
            *x = apply_act(act, *x);
        }
        transpose(sums);
        for (r, &x) in sums.iter().enumerate().take(live) {
            // SAFETY: forwarded.
            unsafe { self.store(block * LANES + r, vector, x) };
        }
    }

    /// Bias plus every tap of block `block`'s 16 channels at `P`
    /// positions from flat position `start`, in rows of `W`, `S` floats
    /// apart in a row (position `p` at `start + (p / W) * span + (p % W)
    /// * S`), one vector (of channels) per position, and zero for
    /// positions `P..16`. A function of its own so that the sums stay in
    /// registers (see `Task::sums`).
    ///
    /// # Safety
    /// As [`super::run`], with `s.cb == 16`, `start` a task vector's and
    /// `P <= 16`.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    pub(super) unsafe fn sums_by_channel<const P: usize, const W: usize, const S: usize>(
        &self,
        block: usize,
        start: usize,
    ) -> [__m512; LANES] {
        let s = self.s;
        let taps = self.taps.len();
        let first = self.first + block;
        let mut out = [_mm512_setzero_ps(); LANES];
        // SAFETY: every window lies inside `planes`: the padded planes
        // and `SLACK` (see `super::SLACK`), or on the in-place path the
        // input, whose runs read only inside it (see `in_place.rs`); the
        // weights hold `taps * 16` floats per block and the bias 16.
        unsafe {
            let planes = self.planes.as_ptr().add(start);
            let weights = s.weights.as_ptr().add(first * taps * LANES);
            let bias = _mm512_loadu_ps(s.bias.as_ptr().add(first * LANES));
            let mut acc = [bias; P];
            for (t, &offset) in self.taps.iter().enumerate() {
                let w = _mm512_loadu_ps(weights.add(t * LANES));
                let x = planes.add(offset);
                for (p, a) in acc.iter_mut().enumerate() {
                    let at = (p / W) * self.span + (p % W) * S;
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(at)), w, *a);
                }
            }
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = a;
            }
        }
        out
    }
}

/// The 16x16 transpose in place: lane `j` of `v[i]` becomes lane `i` of
/// `v[j]`. Loops over arrays rather than `array::from_fn`: a closure does
/// not inherit `target_feature`, and the shuffles became calls.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn transpose(v: &mut [__m512; 16]) {
    // Rows 2k and 2k+1 interleaved by 32 bits: per 128-bit lane q, t[2k]
    // holds both rows' lanes 4q and 4q+1, t[2k+1] their lanes 4q+2, 4q+3.
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]);
    }
    // Then by 64 bits: per 128-bit lane q, u[4k + m] holds lane 4q + m of
    // rows 4k..4k+4.
    let mut u = [_mm512_setzero_ps(); 16];
    for k in 0..4 {
        for m in 0..4 {
            let a = _mm512_castps_pd(t[4 * k + m / 2]);
            let b = _mm512_castps_pd(t[4 * k + 2 + m / 2]);
            u[4 * k + m] = _mm512_castpd_ps(if m % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            });
        }
    }
    // Result 4q + m is 128-bit lane q of u[m], u[4 + m], u[8 + m] and
    // u[12 + m], gathered by two rounds of 128-bit lane selection: even
    // lanes (0b10_00_10_00) or odd ones (0b11_01_11_01) of two vectors.
    for h in 0..2 {
        for g in 0..2 {
            for m in 0..4 {
                let (a, b) = (u[8 * g + m], u[8 * g + 4 + m]);
                t[8 * h + 4 * g + m] = even_or_odd_lanes(h, a, b);
            }
        }
    }
    // t[8h + 4g + m] holds lanes q = h and q = 2 + h of rows 8g..8g+8
    // (u's lane m); the second round keeps q = h (even) or 2 + h (odd).
    for q in 0..4 {
        for m in 0..4 {
            let h = q % 2;
            v[4 * q + m] = even_or_odd_lanes(q / 2, t[8 * h + m], t[8 * h + 4 + m]);
        }
    }
}

/// 128-bit lanes 0 and 2 of `a` then of `b` (`odd == 0`), or lanes 1 and 3.
#[target_feature(enable = "avx512f")]
#[inline]
fn even_or_odd_lanes(odd: usize, a: __m512, b: __m512) -> __m512 {
    if odd == 0 {
        _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b)
    } else {
        _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b)
    }
}
