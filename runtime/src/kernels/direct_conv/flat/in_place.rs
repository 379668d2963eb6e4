//! The 16-channel tile at stride 2 reading the input where it is: no
//! copy into padded, phase-split planes.
//!
//! The tile broadcasts each input from memory (`by_channel.rs`), so its
//! positions need not be consecutive floats: at stride 2 they are every
//! other float of an input row. The copy was there for the padding; here
//! a run of positions whose every tap reads inside the input (all of a
//! row but the positions next to the padding: at padding 1 the first
//! column, and the first row) is computed in place, and the positions
//! next to the padding in runs of their own that skip the taps falling in
//! it: along the rows whose top or bottom taps are padding, down the
//! columns whose left or right ones are ([`BorderRun`]).
//! The copy read each input float from wherever the previous layer left
//! it (1.6 MB for RegNetX's first grouped conv, from L3) and wrote it
//! again before the FMAs read it; in place, the reads overlap the FMAs.

use super::{Task, Vector};
use crate::kernels::direct_conv::DirectConv;
use crate::kernels::gemm::avx512::{apply_act, lane_mask, vec_act, VecAct};
use std::arch::x86_64::*;

/// Channels per block (the conv's `cb`).
const LANES: usize = crate::kernels::direct_conv::BLOCK;

/// Whether a conv takes this path: the 16-channel tile at stride 2 with
/// at least 16 input channels per group (RegNet's and ResNeXt's grouped
/// convs), on rows of any width. Lone grouped convs of RegNetX's against
/// the planes, once the border positions ran in runs (nnc profile, AMD
/// EPYC Zen 4): 112x112 -> 56x56 0.307 -> 0.273 ms, 56x56 -> 28x28 0.170
/// -> 0.139, 28x28 -> 14x14 0.119 -> 0.088, 14x14 -> 7x7 0.089 -> 0.062
/// (one at a time, with one accumulator, the border's positions had made
/// the narrow ones slower in place: 0.155 ms for the 7x7). Not the stems: on
/// ResNet-18's (3 channels, 7x7) the planes' unit-stride windows were
/// faster (the model 1.016 times slower in place, six alternating runs,
/// AMD EPYC Zen 4).
pub(super) fn applies(s: &DirectConv) -> bool {
    s.cb == LANES && s.stride == 2 && s.c_in >= LANES
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

/// Positions next to the padding that read the same taps of their
/// windows (rows `ky0..ky1`, columns `kx0..kx1`), up to 16 of them along a
/// row (on rows whose top or bottom taps fall in the padding) or down a
/// column (the columns next to the padding of the other rows).
#[derive(Clone, Copy, Debug)]
pub(super) struct BorderRun {
    window: [usize; 4],
    /// The input offset of the first position's first tap inside.
    start: usize,
    /// Input floats from one position's taps to the next's.
    step: usize,
    /// The output offset (from the task's first row) of the first
    /// position, and from one position to the next.
    at: usize,
    out_step: usize,
    count: usize,
}

/// The runs of inside positions of output rows `r0..r1`, 16 at most each
/// (`start`: the input offset of the run's first top-left tap), then in
/// `border` the runs of positions next to the padding.
pub(super) fn vectors(
    s: &DirectConv,
    r0: usize,
    r1: usize,
    out: &mut Vec<Vector>,
    border: &mut Vec<BorderRun>,
) {
    let (st, [pt, pl]) = (s.stride, s.padding);
    let [kh, kw] = s.kernel;
    let (lo, hi) = inside_columns(s);
    let window = |y: usize, x: usize| {
        let (ky0, ky1) = inside_taps(y * st, pt, kh, s.h);
        let (kx0, kx1) = inside_taps(x * st, pl, kw, s.w);
        [ky0, ky1, kx0, kx1]
    };
    // Extends the last run with position `(y, x)` if it is the next one
    // along (`out_step` on from the run's last) with the same window, or
    // starts a new run.
    let push = |border: &mut Vec<BorderRun>, (y, x): (usize, usize), out_step: usize| {
        let [ky0, ky1, kx0, kx1] = window(y, x);
        let at = (y - r0) * s.ow + x;
        if let Some(run) = border.last_mut() {
            if run.window == [ky0, ky1, kx0, kx1]
                && run.out_step == out_step
                && run.at + run.count * out_step == at
                && run.count < LANES
                && run.count * out_step <= i32::MAX as usize
            {
                run.count += 1;
                return;
            }
        }
        let inside = ky0 < ky1 && kx0 < kx1;
        border.push(BorderRun {
            window: [ky0, ky1, kx0, kx1],
            start: if inside {
                (y * st + ky0 - pt) * s.w + x * st + kx0 - pl
            } else {
                0
            },
            step: if out_step == 1 { st } else { st * s.w },
            at,
            out_step,
            count: 1,
        });
    };
    out.clear();
    border.clear();
    for y in r0..r1 {
        if !row_inside(s, y) {
            for x in 0..s.ow {
                push(border, (y, x), 1);
            }
            continue;
        }
        for x in (lo..hi).step_by(LANES) {
            let n = (hi - x).min(LANES);
            let start = (y * st - pt) * s.w + x * st - pl;
            out.push(Vector::new(start, lane_mask(n), (y - r0) * s.ow + x));
        }
    }
    for x in (0..lo).chain(hi..s.ow) {
        for y in (r0..r1).filter(|&y| row_inside(s, y)) {
            push(border, (y, x), s.ow);
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

/// `$task.sums_border::<P>` for a border run of `P = $n` positions.
macro_rules! border_by_length {
    ($task:expr, $n:expr, $block:expr, $run:expr) => {
        match $n {
            1 => $task.sums_border::<1>($block, $run),
            2 => $task.sums_border::<2>($block, $run),
            3 => $task.sums_border::<3>($block, $run),
            4 => $task.sums_border::<4>($block, $run),
            5 => $task.sums_border::<5>($block, $run),
            6 => $task.sums_border::<6>($block, $run),
            7 => $task.sums_border::<7>($block, $run),
            8 => $task.sums_border::<8>($block, $run),
            9 => $task.sums_border::<9>($block, $run),
            10 => $task.sums_border::<10>($block, $run),
            11 => $task.sums_border::<11>($block, $run),
            12 => $task.sums_border::<12>($block, $run),
            13 => $task.sums_border::<13>($block, $run),
            14 => $task.sums_border::<14>($block, $run),
            15 => $task.sums_border::<15>($block, $run),
            _ => $task.sums_border::<16>($block, $run),
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
    pub(super) unsafe fn tiles_in_place(&self, border: &[BorderRun]) {
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
            for run in border {
                // SAFETY: forwarded; the run's positions are the task's.
                unsafe {
                    let mut sums = border_by_length!(self, run.count, block, run);
                    self.store_border(block, live, run, &act, &mut sums);
                }
            }
        }
    }

    /// Bias plus the taps inside the input of block `block`'s 16 channels
    /// at the `P` positions of `run`, one vector (of channels) per
    /// position, zero past `P`: `sums_by_channel` with the tap window
    /// from the run rather than the whole kernel.
    ///
    /// # Safety
    /// As [`Task::tiles_in_place`], with `run` one of the task's and `P ==
    /// run.count`.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn sums_border<const P: usize>(&self, block: usize, run: &BorderRun) -> [__m512; LANES] {
        let s = self.s;
        let [kh, kw] = s.kernel;
        let [ky0, ky1, kx0, kx1] = run.window;
        let taps = self.taps.len();
        let plane = s.h * s.w;
        let mut out = [_mm512_setzero_ps(); LANES];
        // SAFETY: tap `(c, ky, kx)` of the window (inside the input, see
        // `inside_taps`) of position `p` is input `(c, iy + ky - ky0, ix +
        // kx - kx0)`, where `(iy, ix)`, at `run.start + p * run.step`, is
        // the position's first tap inside; the weights hold `taps * 16`
        // floats per block and the bias 16.
        unsafe {
            let weights = s.weights.as_ptr().add((self.first + block) * taps * LANES);
            let bias = _mm512_loadu_ps(s.bias.as_ptr().add((self.first + block) * LANES));
            let mut acc = [bias; P];
            let input = self.planes.as_ptr().add(run.start);
            for c in 0..s.c_in {
                for ky in ky0..ky1 {
                    let row = input.add(c * plane + (ky - ky0) * s.w);
                    let w = weights.add((c * kh + ky) * kw * LANES);
                    for kx in kx0..kx1 {
                        let w = _mm512_loadu_ps(w.add(kx * LANES));
                        let x = row.add(kx - kx0);
                        for (p, a) in acc.iter_mut().enumerate() {
                            *a = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(p * run.step)), w, *a);
                        }
                    }
                }
            }
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = a;
            }
        }
        out
    }

    /// Stores the sums of a border run: along a row as the runs inside
    /// are stored, down a column scattered a row apart.
    ///
    /// # Safety
    /// As [`Task::tiles_in_place`], with `run` one of the task's.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_border(
        &self,
        block: usize,
        live: usize,
        run: &BorderRun,
        act: &VecAct,
        sums: &mut [__m512; LANES],
    ) {
        let vector = Vector::new(0, lane_mask(run.count), run.at);
        if run.out_step == 1 {
            // SAFETY: forwarded; the run's outputs are consecutive.
            unsafe { self.store_sums(block, live, &vector, act, sums) };
            return;
        }
        for x in sums.iter_mut() {
            *x = apply_act(act, *x);
        }
        super::by_channel::transpose(sums);
        let step = i32::try_from(run.out_step).unwrap_or(i32::MAX);
        let index = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(step),
        );
        let mask = lane_mask(run.count);
        for (r, &x) in sums.iter().enumerate().take(live) {
            // SAFETY: lane `p < count` goes to output `at + p * out_step`
            // of channel `r`, a position of the task (`vectors` keeps
            // `(count - 1) * out_step` within an `i32`).
            unsafe {
                let dst = self
                    .out
                    .add((block * LANES + r) * self.s.oh * self.s.ow + run.at);
                _mm512_mask_i32scatter_ps::<4>(dst.cast(), mask, index, x);
            }
        }
    }
}

/// The taps `k0..k1` of a window of `kernel` taps from padded position
/// `from` that fall inside an axis of `size` inputs after `padding`
/// (empty where none does).
fn inside_taps(from: usize, padding: usize, kernel: usize, size: usize) -> (usize, usize) {
    let k0 = padding.saturating_sub(from).min(kernel);
    let k1 = (size + padding).saturating_sub(from).clamp(k0, kernel);
    (k0, k1)
}
