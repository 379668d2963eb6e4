//! The AVX-512 direct convolution over a flat grid of output positions.
//!
//! Tiles of 16 output columns of one row waste lanes wherever a row is not
//! a multiple of 16 wide (a 7x7 map used 7 of 16), and blocks of 16 output
//! channels waste FMAs where a group has fewer (ResNeXt's first grouped
//! convs, 4 channels per group, used 4 of 16). Here the input rows a task
//! reads are copied, zero-padded, into one plane per input channel and
//! stride phase (row phase, then column phase), every row of a plane
//! `span = ow + (kw - 1) / stride` floats long. Output position `(y, x)` of
//! the task is then flat position `q = y * span + x`, and the window of tap
//! `(ky, kx)` for 16 positions from `q` is 16 consecutive floats of plane
//! `(ky % stride, kx % stride)` from `q + (ky / stride) * span + kx /
//! stride`, across row ends. Positions with `x >= ow` are computed and
//! dropped: a task's output rows are contiguous in each channel, so a
//! vector's live lanes, compressed, are consecutive outputs. Where that
//! saves no vectors (rows a multiple of 16 wide or nearly: a 112-wide
//! stem row is 7 vectors by rows and 7.2 flat), the vectors start at each
//! row instead, as 16-column chunks of it.
//!
//! A tile is `CB` output channels by `NV` vectors of positions, 8 by 3 or,
//! where a group has at most 4 channels, 4 by 6: 24 zmm accumulators, and
//! per tap `NV` window loads and `CB` weight broadcasts for 24 FMAs (16
//! channels by one vector took 17 loads for 16 FMAs, and was 6-12% slower
//! on stems and grouped convs, AMD EPYC Zen 5). Where a group's channels
//! are a multiple of 16, a vector holds 16 channels at one position
//! instead (`by_channel.rs`), and at stride 2 on wide rows that tile
//! reads the input in place, without the planes (`in_place.rs`).

#![allow(unsafe_code)]

use super::{existing_rows, DirectConv};
use crate::kernels::gemm::avx512::{apply_act, lane_mask, vec_act};
use std::arch::x86_64::*;
use std::cell::RefCell;

mod by_channel;
mod in_place;

/// The row length the 16-channel tile takes two rows of at once: a pair
/// of 7-column rows is 14 positions, of which the flat layout (rows 9
/// apart) made vectors of 16 with the padding columns between them: a 7x7
/// map's 49 outputs as 64 positions, 56 as pairs. The pair's two rows are
/// one run in the output.
const ROW_PAIRS: usize = 7;

/// Floats after the last plane: a vector starts at most at the last
/// position of its row, and its windows a tap's offset further, which
/// ends inside the last plane; the vector's 16 floats may reach 15 past.
const SLACK: usize = 16;

/// One call's scratch: the padded planes; per tap, where its windows
/// start from the flat position; and the vectors of output positions.
/// The taps and vectors are kept for the next call of the same geometry
/// (`key`): computing them per call cost RegNetX's 7x7 grouped convs 7%
/// (0.056 -> 0.052 ms each, AMD EPYC Zen 5).
#[derive(Default)]
struct Scratch {
    planes: Vec<f32>,
    /// The layout (see [`Layout::key`]) whose padding `planes` holds as
    /// zeros, if any.
    zeroed: Option<[usize; 7]>,
    key: Option<[usize; 7]>,
    taps: Vec<usize>,
    vectors: Vec<Vector>,
    /// The in-place path's positions next to the padding.
    border: Vec<in_place::BorderRun>,
    /// The in-place geometry and rows `vectors` and `border` were made
    /// for, if they are the in-place path's.
    rows_key: Option<[usize; 10]>,
}

/// 16 flat positions from `start`: the lanes that are outputs, and the
/// outputs (from the task's first) before the first of them.
#[derive(Clone, Copy)]
struct Vector {
    start: usize,
    live: __mmask16,
    before: usize,
    /// How many lanes are live, and whether they are a run from lane 0
    /// (a row's chunk, stored without compressing), counted once here: the
    /// crate's baseline target has no `popcnt`, and a count per stored row
    /// made a stem's stores 10-25% slower (AMD EPYC Zen 4).
    count: usize,
    whole: bool,
}

impl Vector {
    fn new(start: usize, live: __mmask16, before: usize) -> Vector {
        Vector {
            start,
            live,
            before,
            count: live.count_ones() as usize,
            whole: live & live.wrapping_add(1) == 0,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The layout of one call's planes.
#[derive(Clone, Copy)]
struct Layout {
    /// Floats per row of a plane.
    span: usize,
    /// Floats per plane.
    plane: usize,
    /// Flat positions of the task's output rows, the last row's dropped
    /// columns excluded.
    positions: usize,
}

impl Layout {
    fn new(s: &DirectConv, r0: usize, r1: usize) -> Layout {
        let st = s.stride;
        let span = s.ow + (s.kernel[1] - 1) / st;
        let rows_per_phase = (r1 - r0) + (s.kernel[0] - 1) / st;
        Layout {
            span,
            plane: rows_per_phase * span,
            positions: (r1 - r0 - 1) * span + s.ow,
        }
    }

    /// Everything that decides which floats of the planes a call writes,
    /// but for which input rows exist.
    fn key(&self, s: &DirectConv) -> [usize; 7] {
        let [kh, _] = s.kernel;
        [
            s.c_in,
            s.stride,
            kh,
            self.span,
            self.plane,
            s.w,
            s.padding[1],
        ]
    }

    /// Where plane `(c, fy, fx)` starts.
    fn plane(&self, st: usize, c: usize, fy: usize, fx: usize) -> usize {
        ((c * st + fy) * st + fx) * self.plane
    }
}

/// Copies the input rows of output rows `r0..r1` into `planes` (see the
/// module docs), zero elsewhere.
///
/// Compiled for AVX-512 so that the rows' copies are vector moves: as calls
/// to `memmove` (a row is 7 to 112 floats) they and the rest of the copy
/// were 12% of the samples of a lone 14x14 grouped conv of RegNetX's in
/// perf (AMD EPYC Zen 4). Plain loops over channels and rows, the stride's
/// cases apart: through `input_rows`' iterator, with a division by the
/// stride per row, the copy was 40% of a lone 14x14 -> 7x7 grouped conv
/// of RegNetX's, as long as its FMAs (AMD EPYC Zen 4).
#[target_feature(enable = "avx512f")]
fn fill(s: &DirectConv, x: &[f32], r0: usize, r1: usize, l: Layout, scratch: &mut Scratch) {
    let st = s.stride;
    let (rows, iy) = existing_rows(s, r0, r1);
    let planes = &mut scratch.planes;
    if scratch.zeroed == Some(l.key(s)) {
        // The last call wrote the same columns of each row: only rows that
        // were input rows then and are padding now need zeroing (a
        // `memset` of all the planes per call was 3-4% of RegNetX's
        // grouped convs, AMD EPYC Zen 4).
        let all = (r1 - r0 - 1) * st + s.kernel[0];
        for c in 0..s.c_in {
            for j in (0..rows.start).chain(rows.end..all) {
                for fx in 0..st {
                    let at = l.plane(st, c, j % st, fx) + (j / st) * l.span;
                    planes[at..at + l.span].fill(0.0);
                }
            }
        }
    } else {
        planes.clear();
        planes.resize(s.c_in * st * st * l.plane + SLACK, 0.0);
        scratch.zeroed = Some(l.key(s));
    }
    if rows.is_empty() {
        return;
    }
    let (w, len) = (s.w, rows.len() * s.w);
    for c in 0..s.c_in {
        let channel = &x[(c * s.h + iy) * w..][..len];
        for (j, src) in rows.clone().zip(channel.chunks_exact(w)) {
            if st == 1 {
                let at = l.plane(1, c, 0, 0) + j * l.span;
                if let Some(dst) = planes[at..at + l.span].get_mut(s.padding[1]..) {
                    let n = w.min(dst.len());
                    copy_row(&src[..n], &mut dst[..n]);
                }
            } else {
                let at = l.plane(2, c, j & 1, 0) + (j >> 1) * l.span;
                // Column phase 1's plane follows phase 0's.
                let (even, odd) = planes[at..].split_at_mut(l.plane);
                split_phases_avx512(src, s.padding[1], (&mut even[..l.span], &mut odd[..l.span]));
            }
        }
    }
}

/// [`super::split_phases`] sixteen column pairs at a time: two vectors of
/// the row deinterleaved by two permutes. The scalar pairs were 12% of the
/// samples of a lone stride-2 grouped conv of RegNetX's (112x112) in perf
/// (AMD EPYC Zen 4).
#[target_feature(enable = "avx512f")]
#[inline]
fn split_phases_avx512(src: &[f32], padding: usize, (even, odd): (&mut [f32], &mut [f32])) {
    // With odd padding the first column is odd; the rest start on an even
    // padded column, pair `p` at `start + p` of both phases.
    let head = (padding % 2).min(src.len());
    if let (Some(&v), Some(slot)) = (src[..head].first(), odd.get_mut(padding / 2)) {
        *slot = v;
    }
    let rest = &src[head..];
    let start = padding.div_ceil(2);
    let (even, odd) = match (even.get_mut(start..), odd.get_mut(start..)) {
        (Some(even), Some(odd)) => (even, odd),
        _ => return,
    };
    let pairs = (rest.len() / 2).min(even.len()).min(odd.len());
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for p in (0..pairs).step_by(16) {
        let n = (pairs - p).min(16);
        // SAFETY: the loads read floats `2p .. 2p + 2n` of `rest` (masked
        // to them: `2n <= rest.len() - 2p`), the stores pairs `p .. p + n`
        // of both phases (`p + n <= pairs`, within both).
        unsafe {
            let from = rest.as_ptr().add(2 * p);
            let lo = _mm512_maskz_loadu_ps(lane_mask(2 * n), from);
            let hi = _mm512_maskz_loadu_ps(lane_mask((2 * n).saturating_sub(16)), from.add(16));
            let m = lane_mask(n);
            _mm512_mask_storeu_ps(
                even.as_mut_ptr().add(p),
                m,
                _mm512_permutex2var_ps(lo, evens, hi),
            );
            _mm512_mask_storeu_ps(
                odd.as_mut_ptr().add(p),
                m,
                _mm512_permutex2var_ps(lo, odds, hi),
            );
        }
    }
    // An odd last column goes to the even phase, after the pairs.
    if rest.len() % 2 == 1 && pairs == rest.len() / 2 {
        if let (Some(&v), Some(slot)) = (rest.last(), even.get_mut(pairs)) {
            *slot = v;
        }
    }
}

/// `dst.copy_from_slice(src)` (equal lengths) sixteen floats at a time.
#[target_feature(enable = "avx512f")]
#[inline]
fn copy_row(src: &[f32], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    for i in (0..n).step_by(16) {
        let m = lane_mask(n - i);
        // SAFETY: the masked lanes are `i .. min(i + 16, n)`, inside both
        // slices; masked-off lanes are neither read nor written.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, src.as_ptr().add(i));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), m, v);
        }
    }
}

/// Per tap `(c, ky, kx)`, in the weights' order, where its window for flat
/// position 0 starts. Computed here, once per geometry (see [`Scratch`]):
/// a division by the stride per tap in the FMA loop cost more than the
/// tap's FMAs.
fn taps(s: &DirectConv, l: Layout, out: &mut Vec<usize>) {
    let st = s.stride;
    let [kh, kw] = s.kernel;
    // Each tap column's phase and steps, divided once per column.
    let columns: Vec<(usize, usize)> = (0..kw).map(|kx| (kx % st, kx / st)).collect();
    out.clear();
    for c in 0..s.c_in {
        for ky in 0..kh {
            let row = l.plane(st, c, ky % st, 0) + (ky / st) * l.span;
            out.extend(columns.iter().map(|&(fx, dx)| row + fx * l.plane + dx));
        }
    }
}

/// The vectors of output positions: flat from position 0 where that takes
/// fewer vectors than 16-column chunks of each row, else the chunks. For
/// the 16-channel tile on rows of 7, pairs of rows instead (see
/// [`ROW_PAIRS`]).
fn vectors(s: &DirectConv, l: Layout, rows: usize, out: &mut Vec<Vector>) {
    out.clear();
    if s.cb == super::BLOCK && s.ow == ROW_PAIRS {
        for row in (0..rows).step_by(2) {
            let live = (rows - row).min(2) * s.ow;
            out.push(Vector::new(row * l.span, lane_mask(live), row * s.ow));
        }
        return;
    }
    let chunks = s.ow.div_ceil(16);
    if l.positions.div_ceil(16) < rows * chunks {
        let (mut row, mut x) = (0, 0);
        for start in (0..l.positions).step_by(16) {
            let before = row * s.ow + x.min(s.ow);
            let mut live = 0;
            for lane in 0..16 {
                if start + lane < l.positions && x < s.ow {
                    live |= 1 << lane;
                }
                x += 1;
                if x == l.span {
                    (row, x) = (row + 1, 0);
                }
            }
            out.push(Vector::new(start, live, before));
        }
    } else {
        for row in 0..rows {
            for chunk in 0..chunks {
                let x = 16 * chunk;
                out.push(Vector::new(
                    row * l.span + x,
                    lane_mask(s.ow - x),
                    row * s.ow + x,
                ));
            }
        }
    }
}

/// Computes output rows `r0..r1` of one group (weights and biases from
/// block `first`) into `out`, its output planes.
///
/// # Safety
/// As [`DirectConv::run`]; AVX-512F must be available.
pub(super) unsafe fn run(
    s: &DirectConv,
    x: &[f32],
    out: *mut f32,
    r0: usize,
    r1: usize,
    first: usize,
) {
    let in_place = in_place::applies(s);
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        let [kh, kw] = s.kernel;
        // The planes' row length, and the taps and vectors for this call,
        // kept for the next call of the same key (everything they read).
        let span = if in_place {
            // The taps' offsets depend on the input's size; the last
            // entry tells this path's keys from the planes'.
            let key = [s.c_in, kh, kw, s.h, s.w, s.stride, usize::MAX];
            if scratch.key != Some(key) {
                in_place::taps(s, &mut scratch.taps);
                scratch.key = Some(key);
            }
            // Its vectors depend on the rows too, and where the padding is.
            let [pt, pl] = s.padding;
            let rows_key = [kh, kw, s.h, s.w, s.stride, pt, pl, s.ow, r0, r1];
            if scratch.rows_key != Some(rows_key) {
                in_place::vectors(s, r0, r1, &mut scratch.vectors, &mut scratch.border);
                scratch.rows_key = Some(rows_key);
            }
            0
        } else {
            let l = Layout::new(s, r0, r1);
            // SAFETY: AVX-512F, as the caller vouched.
            unsafe { fill(s, x, r0, r1, l, scratch) };
            let key = [s.c_in, kh, kw, s.stride, s.ow, r1 - r0, s.cb];
            if scratch.key != Some(key) {
                taps(s, l, &mut scratch.taps);
                vectors(s, l, r1 - r0, &mut scratch.vectors);
                scratch.key = Some(key);
                scratch.rows_key = None;
            }
            l.span
        };
        let t = Task {
            s,
            planes: if in_place { x } else { &scratch.planes },
            taps: &scratch.taps,
            vectors: &scratch.vectors,
            span,
            // Each output plane from the task's first row.
            out: out.wrapping_add(r0 * s.ow),
            first,
        };
        // SAFETY: forwarded from the caller.
        unsafe {
            match s.cb {
                _ if in_place => t.tiles_in_place(&scratch.border),
                4 => t.tiles::<4, 6>(),
                16 => t.tiles_by_channel(),
                _ => t.tiles::<8, 3>(),
            }
        }
    });
}

struct Task<'a> {
    s: &'a DirectConv,
    planes: &'a [f32],
    taps: &'a [usize],
    vectors: &'a [Vector],
    /// Floats per row of a plane.
    span: usize,
    out: *mut f32,
    first: usize,
}

impl Task<'_> {
    /// Every tile of `CB` channels by `NV` vectors, the last of each block
    /// narrower if the vectors run out.
    ///
    /// # Safety
    /// As [`run`], with `CB == s.cb`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tiles<const CB: usize, const NV: usize>(&self) {
        for block in 0..self.s.out_channels.div_ceil(CB) {
            let mut rest = self.vectors;
            // SAFETY: forwarded; each tile's vectors are the task's.
            unsafe {
                while rest.len() >= NV {
                    self.tile::<CB, NV>(block, &rest[..NV]);
                    rest = &rest[NV..];
                }
                match rest.len() {
                    0 => {}
                    1 => self.tile::<CB, 1>(block, rest),
                    2 => self.tile::<CB, 2>(block, rest),
                    3 => self.tile::<CB, 3>(block, rest),
                    4 => self.tile::<CB, 4>(block, rest),
                    _ => self.tile::<CB, 5>(block, rest),
                }
            }
        }
    }

    /// The sums of a tile: bias plus every tap of `CB` channels of block
    /// `block` at the `NV` vectors starting at `starts`. A function of its
    /// own, so that the accumulators never leave their registers: inlined
    /// into the tile's stores, they were written to the stack after every
    /// FMA.
    ///
    /// # Safety
    /// As [`run`], with `CB == s.cb` and `starts` the task's vectors'.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn sums<const CB: usize, const NV: usize>(
        &self,
        block: usize,
        starts: [usize; NV],
    ) -> [[__m512; NV]; CB] {
        let s = self.s;
        let taps = self.taps.len();
        let planes = self.planes.as_ptr();
        let weights = s.weights[(self.first + block) * taps * CB..].as_ptr();
        let bias = &s.bias[(self.first + block) * CB..][..CB];
        let mut acc: [[__m512; NV]; CB] = std::array::from_fn(|r| [_mm512_set1_ps(bias[r]); NV]);
        // SAFETY: every window lies inside the planes and `SLACK` (see
        // `SLACK`); the weights hold `taps * CB` floats per block.
        unsafe {
            for (t, &offset) in self.taps.iter().enumerate() {
                let at = planes.add(offset);
                let window: [__m512; NV] =
                    std::array::from_fn(|v| _mm512_loadu_ps(at.add(starts[v])));
                let w = weights.add(t * CB);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let weight = _mm512_set1_ps(*w.add(r));
                    for (a, &x) in acc.iter_mut().zip(&window) {
                        *a = _mm512_fmadd_ps(weight, x, *a);
                    }
                }
            }
        }
        acc
    }

    /// One tile: `CB` channels of block `block` by the `NV` vectors
    /// `tile`.
    ///
    /// # Safety
    /// As [`run`], with `CB == s.cb` and `tile.len() == NV`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const CB: usize, const NV: usize>(&self, block: usize, tile: &[Vector]) {
        let s = self.s;
        let live = (s.out_channels - block * CB).min(CB);
        let starts: [usize; NV] = std::array::from_fn(|v| tile[v].start);
        // SAFETY: forwarded.
        let acc = unsafe { self.sums::<CB, NV>(block, starts) };
        let act = vec_act(s.activation);
        for (v, vector) in tile.iter().enumerate() {
            for (r, row) in acc.iter().enumerate().take(live) {
                // SAFETY: AVX-512F, as here; `vector` is one of the task's.
                unsafe { self.store(block * CB + r, vector, apply_act(&act, row[v])) };
            }
        }
    }

    /// Stores `x`, the values of output channel `o` at `vector`'s 16
    /// positions, at the vector's outputs: its live lanes, compressed
    /// together unless they are a run from lane 0 (a row's chunk).
    ///
    /// # Safety
    /// As [`run`], with `vector` one of the task's and `o` a channel of
    /// the group.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(&self, o: usize, vector: &Vector, x: __m512) {
        let x = if vector.whole {
            x
        } else {
            _mm512_maskz_compress_ps(vector.live, x)
        };
        // SAFETY: the `count` outputs from `before` are in the task's rows
        // of channel `o`.
        unsafe {
            let dst = self.out.add(o * self.s.oh * self.s.ow + vector.before);
            _mm512_mask_storeu_ps(dst, lane_mask(vector.count), x);
        }
    }
}
