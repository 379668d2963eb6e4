//! The 16-channel tile at stride 2 reading the input where it is: no
//! copy into padded, phase-split planes.
//!
//! The tile broadcasts each input from memory (`by_channel.rs`), so its
//! positions need not be consecutive floats: at stride 2 they are every
//! other float of an input row. The copy was there for the padding; here
//! a run of positions whose every tap reads inside the input (all of a
//! row but the positions next to the padding: at padding 1 the first
//! column, and the first row) is computed in place, and the positions
//! next to the padding one at a time, skipping the taps that fall in it.
//! The copy read each input float from wherever the previous layer left
//! it (1.6 MB for RegNetX's first grouped conv, from L3) and wrote it
//! again before the FMAs read it; in place, the reads overlap the FMAs.

use super::{Task, Vector};
use crate::kernels::direct_conv::DirectConv;
use crate::kernels::gemm::avx512::{apply_act, lane_mask, vec_act, VecAct};
use std::arch::x86_64::*;

/// Channels per block (the conv's `cb`).
const LANES: usize = crate::kernels::direct_conv::BLOCK;

/// The narrowest output rows this path takes. On narrower ones the
/// positions next to the padding, one at a time, are too large a share: a
/// lone 14x14 -> 7x7 grouped conv of RegNetX's went from 0.089 to 0.155
/// ms (a seventh of its positions), 28x28 -> 14x14 stayed level, 56x56
/// -> 28x28 0.180 -> 0.165 (AMD EPYC Zen 4); and a small input is in
/// cache for the copy anyway.
const MIN_WIDTH: usize = 28;

/// Whether a conv takes this path: the 16-channel tile at stride 2 on
/// rows of at least [`MIN_WIDTH`], with at least 16 input channels per
/// group (RegNet's and ResNeXt's grouped convs). Not the stems: on
/// ResNet-18's (3 channels, 7x7) the planes' unit-stride windows were
/// faster (the model 1.016 times slower in place, six alternating runs,
/// AMD EPYC Zen 4).
pub(super) fn applies(s: &DirectConv) -> bool {
    s.cb == LANES && s.stride == 2 && s.ow >= MIN_WIDTH && s.c_in >= LANES
}

/// The output columns of a row whose every tap reads inside the input
/// columns, as `lo..hi`.
fn inside_columns(s: &DirectConv) -> (usize, usize) {
    let (st, pad, kw) = (s.stride, s.padding[1], s.kernel[1]);
    let lo = pad.div_ceil(st);
    // Column `x` reads up to `x * st + kw - 1 - pad`, which must be `< w`.
    let hi = (s.w + pad).checked_sub(kw).map_or(0, |last| last / st + 1);
    (lo.min(s.ow), hi.min(s.ow).max(lo.min(s.ow)))
}

/// Whether every tap of output row `y` reads inside the input rows.
fn row_inside(s: &DirectConv, y: usize) -> bool {
    let (st, pad, kh) = (s.stride, s.padding[0], s.kernel[0]);
    y * st >= pad && y * st + kh - pad <= s.h
}

/// Per tap `(c, ky, kx)`, in the weights' order, its offset from the
/// input of its window's top-left tap.
pub(super) fn taps(s: &DirectConv, out: &mut Vec<usize>) {
    let [kh, kw] = s.kernel;
    out.clear();
    for c in 0..s.c_in {
        for ky in 0..kh {
            out.extend((0..kw).map(|kx| (c * s.h + ky) * s.w + kx));
        }
    }
}

/// The runs of inside positions of output rows `r0..r1`, 16 at most each
/// (`start`: the input offset of the run's first top-left tap), then in
/// `border` the positions next to the padding.
pub(super) fn vectors(
    s: &DirectConv,
    r0: usize,
    r1: usize,
    out: &mut Vec<Vector>,
    border: &mut Vec<(usize, usize)>,
) {
    let (st, [pt, pl]) = (s.stride, s.padding);
    let (lo, hi) = inside_columns(s);
    out.clear();
    border.clear();
    for y in r0..r1 {
        if !row_inside(s, y) {
            border.extend((0..s.ow).map(|x| (y, x)));
            continue;
        }
        border.extend((0..lo).chain(hi..s.ow).map(|x| (y, x)));
        for x in (lo..hi).step_by(LANES) {
            let n = (hi - x).min(LANES);
            let start = (y * st - pt) * s.w + x * st - pl;
            out.push(Vector::new(start, lane_mask(n), (y - r0) * s.ow + x));
        }
    }
}

/// `$task.sums_by_channel::<P, P, 2>` for a run of `P = $n` positions
/// (1 to 16): one function per length, the positions' accumulators in
/// registers.
macro_rules! by_length {
    ($task:expr, $n:expr, $block:expr, $start:expr) => {
        match $n {
            1 => $task.sums_by_channel::<1, 1, 2>($block, $start),
            2 => $task.sums_by_channel::<2, 2, 2>($block, $start),
            3 => $task.sums_by_channel::<3, 3, 2>($block, $start),
            4 => $task.sums_by_channel::<4, 4, 2>($block, $start),
            5 => $task.sums_by_channel::<5, 5, 2>($block, $start),
            6 => $task.sums_by_channel::<6, 6, 2>($block, $start),
            7 => $task.sums_by_channel::<7, 7, 2>($block, $start),
            8 => $task.sums_by_channel::<8, 8, 2>($block, $start),
            9 => $task.sums_by_channel::<9, 9, 2>($block, $start),
            10 => $task.sums_by_channel::<10, 10, 2>($block, $start),
            11 => $task.sums_by_channel::<11, 11, 2>($block, $start),
            12 => $task.sums_by_channel::<12, 12, 2>($block, $start),
            13 => $task.sums_by_channel::<13, 13, 2>($block, $start),
            14 => $task.sums_by_channel::<14, 14, 2>($block, $start),
            15 => $task.sums_by_channel::<15, 15, 2>($block, $start),
            _ => $task.sums_by_channel::<16, 16, 2>($block, $start),
        }
    };
}

impl Task<'_> {
    /// Every tile of the in-place path: the runs, then the border
    /// positions.
    ///
    /// # Safety
    /// As [`super::run`], with [`applies`], `planes` the group's input,
    /// `taps` from [`taps`] and `vectors` and `border` from [`vectors`]
    /// for this task's rows from `r0`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tiles_in_place(&self, border: &[(usize, usize)], r0: usize) {
        let act = vec_act(self.s.activation);
        for block in 0..self.s.out_channels.div_ceil(LANES) {
            let live = (self.s.out_channels - block * LANES).min(LANES);
            for vector in self.vectors {
                // SAFETY: forwarded; every tap of the run's `count`
                // positions reads inside the input.
                unsafe {
                    let mut sums = by_length!(self, vector.count, block, vector.start);
                    self.store_sums(block, live, vector, &act, &mut sums);
                }
            }
            for &(y, x) in border {
                // SAFETY: forwarded; `(y, x)` is an output of the task.
                unsafe { self.border_position(block, live, &act, (y, x), r0) };
            }
        }
    }

    /// Output `(y, x)` of block `block`'s channels, its taps in the
    /// padding skipped.
    ///
    /// # Safety
    /// As [`Task::tiles_in_place`], with `r0 <= y` a row of the task.
    #[target_feature(enable = "avx512f")]
    unsafe fn border_position(
        &self,
        block: usize,
        live: usize,
        act: &VecAct,
        (y, x): (usize, usize),
        r0: usize,
    ) {
        let s = self.s;
        let [kh, kw] = s.kernel;
        let taps = self.taps.len();
        let first = self.first + block;
        let mut lanes = [0.0f32; LANES];
        // SAFETY: the taps read only inside the input (`planes`, checked
        // per tap); the weights hold `taps * 16` floats per block and the
        // bias 16; the output position is the task's.
        unsafe {
            let weights = s.weights.as_ptr().add(first * taps * LANES);
            let mut acc = _mm512_loadu_ps(s.bias.as_ptr().add(first * LANES));
            for c in 0..s.c_in {
                for ky in 0..kh {
                    let Some(iy) = (y * s.stride + ky).checked_sub(s.padding[0]) else {
                        continue;
                    };
                    if iy >= s.h {
                        continue;
                    }
                    for kx in 0..kw {
                        let Some(ix) = (x * s.stride + kx).checked_sub(s.padding[1]) else {
                            continue;
                        };
                        if ix >= s.w {
                            continue;
                        }
                        let t = (c * kh + ky) * kw + kx;
                        let v = self.planes[(c * s.h + iy) * s.w + ix];
                        let w = _mm512_loadu_ps(weights.add(t * LANES));
                        acc = _mm512_fmadd_ps(_mm512_set1_ps(v), w, acc);
                    }
                }
            }
            _mm512_storeu_ps(lanes.as_mut_ptr(), apply_act(act, acc));
            let at = (y - r0) * s.ow + x;
            for (r, &v) in lanes.iter().enumerate().take(live) {
                *self.out.add((block * LANES + r) * s.oh * s.ow + at) = v;
            }
        }
    }
}
