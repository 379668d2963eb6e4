//! Native direct convolution for convs with few input channels (a
//! network's stem: ResNet's 7x7 and MobileNetV2's 3x3 convs of the
//! 3-channel image, both at stride 2).
//!
//! With 3 input channels im2col writes a column matrix as large as the
//! image times the taps, and the GEMM on it has K = 27 or 147 and is bound
//! by its stores. Here each task copies the input rows its output rows read
//! into a zero-padded buffer, split by column phase at stride 2 (even
//! columns, then odd), so that every tap's window of 16 output columns is
//! one contiguous load. A tile of 16 output channels by 16 columns of one
//! output row then accumulates every tap: the window is loaded once and
//! each of the tap's 16 weights broadcast against it into its channel's
//! accumulator. The weights are laid out per block of 16 output channels,
//! tap-major, so a tap's 16 weights are one cache line.
//!
//! The AVX-512 version (`flat.rs`) lays the rows out so that its vectors
//! span output rows, and blocks 8 channels (4 where a group has that
//! few), or, where a group's channels are a multiple of 16, holds 16
//! channels per vector (`flat/by_channel.rs`); the AVX2 version takes
//! the tile in three passes of 6, 6 and 4 channels by 16 columns (12 ymm
//! accumulators at most); the portable
//! version is the same loops in plain Rust, for other CPUs and as the
//! tests' reference.

#![allow(unsafe_code)]

use super::gemm::{Activation, MicroKernel};
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
mod flat;

/// Output channels per block (but see [`DirectConv::cb`]) and columns per
/// chunk.
const BLOCK: usize = 16;

/// One direct convolution (owned by the compiled model).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DirectConv {
    c_in: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kernel: [usize; 2],
    /// The same on both axes, 1 or 2.
    stride: usize,
    /// The padding before each axis, `[top, left]`; the padding after
    /// (which may differ) is implied by `oh` and `ow`.
    padding: [usize; 2],
    /// Per group (the conv's output channels over its groups).
    out_channels: usize,
    /// Groups, each `c_in` input and `out_channels` output channels.
    groups: usize,
    /// Output channels per block: 16, or for the AVX-512 kernel 8, or 4
    /// where a group has that few, or 16 where a group's are a multiple
    /// of 16 (see `flat.rs`).
    cb: usize,
    /// `[group][block][c][ky][kx][cb]`, zero past `out_channels`.
    weights: Vec<f32>,
    /// Per tap column `kx`, where its window starts in a padded row from
    /// that of tap column 0 (see [`Rows::column`]): computed once here, as
    /// the division by the stride cost more than the tap's eight FMAs.
    columns: Vec<usize>,
    /// Per group and output channel, zero past `out_channels` in each
    /// group's blocks (all zero without a bias).
    bias: Vec<f32>,
    activation: Activation,
    kernel_impl: MicroKernel,
}

thread_local! {
    /// The padded, phase-split input rows of one call (see [`DirectConv::run`]).
    static ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl DirectConv {
    /// The conv of `[groups * c_in, h, w]` inputs by `weight [out, c_in, kh,
    /// kw]` (row-major; output channels `g * out/groups ..` read input
    /// channels `g * c_in ..`) and `bias [out]`, into `[out, oh, ow]`
    /// outputs, output `(0, 0)`'s window starting `padding` (`[top, left]`)
    /// before the input.
    ///
    /// # Panics
    /// If `weight` or `bias` is shorter than that.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        [c_in, h, w]: [usize; 3],
        [oh, ow]: [usize; 2],
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
        groups: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
        kernel_impl: MicroKernel,
    ) -> DirectConv {
        let groups = groups.max(1);
        let kernel_impl = kernel_impl.usable();
        let taps = c_in * kernel[0] * kernel[1];
        let out_channels = weight.len() / (groups * taps).max(1);
        let cb = match (kernel_impl, out_channels) {
            (MicroKernel::Avx512, ..=4) => 4,
            (MicroKernel::Avx512, n) if n % BLOCK == 0 => BLOCK,
            (MicroKernel::Avx512, _) => 8,
            _ => BLOCK,
        };
        let blocks = out_channels.div_ceil(cb);
        let mut weights = vec![0.0; groups * blocks * taps * cb];
        let mut padded_bias = vec![0.0; groups * blocks * cb];
        for g in 0..groups {
            let own = &weight[g * out_channels * taps..][..out_channels * taps];
            for (o, row) in own.chunks_exact(taps.max(1)).enumerate() {
                for (t, &v) in row.iter().enumerate() {
                    weights[((g * blocks + o / cb) * taps + t) * cb + o % cb] = v;
                }
            }
            if let Some(bias) = bias {
                padded_bias[g * blocks * cb..][..out_channels]
                    .copy_from_slice(&bias[g * out_channels..][..out_channels]);
            }
        }
        let mut conv = DirectConv {
            c_in,
            h,
            w,
            oh,
            ow,
            kernel,
            stride,
            padding,
            out_channels,
            groups,
            cb,
            weights,
            columns: Vec::new(),
            bias: padded_bias,
            activation,
            kernel_impl,
        };
        let len = conv.phase_len();
        conv.columns = (0..kernel[1])
            .map(|kx| (kx % conv.stride) * len + kx / conv.stride)
            .collect();
        conv
    }

    /// The implementation and its tile, as `nnc compile` shows it.
    pub fn tile_name(&self) -> &'static str {
        match self.kernel_impl {
            MicroKernel::Avx512 => "avx512 16x16",
            MicroKernel::Avx2Fma => "avx2+fma 6x16",
            MicroKernel::Portable => "portable 16x16",
        }
    }

    /// Bytes of weights and bias it holds.
    pub fn bytes(&self) -> usize {
        4 * (self.weights.len() + self.bias.len())
    }

    /// 16-column chunks of an output row.
    fn chunks(&self) -> usize {
        self.ow.div_ceil(BLOCK)
    }

    /// Floats in one phase of a padded row: every window of every chunk
    /// lies inside it.
    fn phase_len(&self) -> usize {
        self.chunks() * BLOCK + (self.kernel[1] - 1) / self.stride
    }

    /// Computes output rows `r0..r1` (all of the group's channels) of one
    /// batch item and group `group` into `out` (the group's `[out/groups,
    /// oh, ow]` planes) from its input `x` (the group's `[c_in, h, w]`).
    ///
    /// # Safety
    /// `x` must hold `c_in * h * w` floats and `out` `out_channels * oh *
    /// ow`; `r1 <= oh`, `group < groups`.
    pub unsafe fn run(&self, x: *const f32, out: *mut f32, r0: usize, r1: usize, group: usize) {
        debug_assert!(r1 <= self.oh, "output rows ..{r1} of {}", self.oh);
        if r0 >= r1 || group >= self.groups {
            return;
        }
        let first = group * self.out_channels.div_ceil(self.cb);
        // SAFETY: forwarded from the caller.
        let input = unsafe { std::slice::from_raw_parts(x, self.c_in * self.h * self.w) };
        #[cfg(target_arch = "x86_64")]
        if self.kernel_impl == MicroKernel::Avx512 {
            // SAFETY: forwarded from the caller.
            unsafe { flat::run(self, input, out, r0, r1, first) };
            return;
        }
        debug_assert_eq!(
            self.cb, BLOCK,
            "only the AVX-512 kernel blocks fewer channels"
        );
        ROWS.with(|rows| {
            let mut rows = rows.borrow_mut();
            let buffer = Rows::fill(self, input, r0, r1, &mut rows);
            // SAFETY: the buffer holds every row and window the output rows
            // read; `out` is the caller's.
            unsafe {
                match self.kernel_impl {
                    #[cfg(target_arch = "x86_64")]
                    MicroKernel::Avx2Fma => avx2::rows(self, &buffer, out, r0, r1, first),
                    _ => self.portable(&buffer, out, r0, r1, first),
                }
            }
        });
    }

    /// Stores one 16-column chunk of output channel `o`, row `oy`: the
    /// first `n` lanes of `values` after the activation.
    ///
    /// # Safety
    /// `out` must be the output of a call of [`DirectConv::run`].
    unsafe fn store(&self, out: *mut f32, o: usize, oy: usize, chunk: usize, values: &[f32]) {
        let n = (self.ow - chunk * BLOCK).min(BLOCK);
        // SAFETY: the row `oy` of channel `o` has `ow` columns from the
        // chunk's first.
        let dst = unsafe { out.add((o * self.oh + oy) * self.ow + chunk * BLOCK) };
        for (l, &v) in values.iter().enumerate().take(n) {
            // SAFETY: as above, `l < n`.
            unsafe { *dst.add(l) = self.activation.apply(v) };
        }
    }

    /// `first` is the group's first block of weights and biases.
    ///
    /// # Safety
    /// As [`DirectConv::run`]: `b` reads the group's input, `out` is the
    /// whole output and `r1 <= oh`.
    unsafe fn portable(&self, b: &Rows<'_>, out: *mut f32, r0: usize, r1: usize, first: usize) {
        let [kh, kw] = self.kernel;
        let taps = self.c_in * kh * kw;
        for oy in r0..r1 {
            for block in 0..self.out_channels.div_ceil(BLOCK) {
                let weights = &self.weights[(first + block) * taps * BLOCK..][..taps * BLOCK];
                for chunk in 0..self.chunks() {
                    let mut acc = [[0.0f32; BLOCK]; BLOCK];
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = [self.bias[(first + block) * BLOCK + r]; BLOCK];
                    }
                    for c in 0..self.c_in {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let window = b.window(c, oy - r0, ky, kx, chunk);
                                let w = &weights[((c * kh + ky) * kw + kx) * BLOCK..][..BLOCK];
                                for (acc, &w) in acc.iter_mut().zip(w) {
                                    for (a, &x) in acc.iter_mut().zip(window) {
                                        *a += w * x;
                                    }
                                }
                            }
                        }
                    }
                    let live = (self.out_channels - block * BLOCK).min(BLOCK);
                    for (r, acc) in acc.iter().enumerate().take(live) {
                        // SAFETY: forwarded from `run`.
                        unsafe { self.store(out, block * BLOCK + r, oy, chunk, acc) };
                    }
                }
            }
        }
    }
}

/// The input rows of one call: `[c][j][phase][len]`, where row `j` is input
/// row `r0 * stride - padding + j` and position `p` of phase `f` is padded
/// column `p * stride + f` (input column `p * stride + f - padding`), zero
/// outside the input.
struct Rows<'a> {
    data: &'a [f32],
    columns: &'a [usize],
    rows: usize,
    len: usize,
    stride: usize,
}

impl<'a> Rows<'a> {
    fn fill(s: &'a DirectConv, x: &[f32], r0: usize, r1: usize, buffer: &'a mut Vec<f32>) -> Self {
        let (st, len) = (s.stride, s.phase_len());
        let rows = (r1 - r0 - 1) * st + s.kernel[0];
        let row_len = st * len;
        buffer.clear();
        buffer.resize(s.c_in * rows * row_len, 0.0);
        for (c, j, src) in input_rows(s, x, r0, r1) {
            let dst = &mut buffer[(c * rows + j) * row_len..][..row_len];
            if st == 1 {
                let n = s.w.min(len.saturating_sub(s.padding[1]));
                dst[s.padding[1]..][..n].copy_from_slice(&src[..n]);
            } else {
                split_phases(src, s.padding[1], dst.split_at_mut(len));
            }
        }
        Rows {
            data: buffer,
            columns: &s.columns,
            rows,
            len,
            stride: st,
        }
    }

    /// Where the window of tap `(c, ky, kx)` for output row `local` (from
    /// `r0`) and chunk `chunk` starts: 16 consecutive floats.
    fn start(&self, c: usize, local: usize, ky: usize, kx: usize, chunk: usize) -> usize {
        let j = local * self.stride + ky;
        (c * self.rows + j) * self.stride * self.len + chunk * BLOCK + self.column(kx)
    }

    /// Where tap column `kx`'s window starts from that of tap column 0: in
    /// its phase, `kx / stride` further.
    fn column(&self, kx: usize) -> usize {
        self.columns[kx]
    }

    fn window(&self, c: usize, local: usize, ky: usize, kx: usize, chunk: usize) -> &[f32] {
        &self.data[self.start(c, local, ky, kx, chunk)..][..BLOCK]
    }
}

/// The input rows output rows `r0..r1` read that exist (not padding), as
/// `(channel, j, row)`, `j` counted from the first row read (`r0 * stride
/// - padding` above the input).
fn input_rows<'x>(
    s: &DirectConv,
    x: &'x [f32],
    r0: usize,
    r1: usize,
) -> impl Iterator<Item = (usize, usize, &'x [f32])> {
    let (rows, iy) = existing_rows(s, r0, r1);
    let (h, w) = (s.h, s.w);
    (0..s.c_in).flat_map(move |c| {
        rows.clone()
            .map(move |j| (c, j, &x[(c * h + iy + j - rows.start) * w..][..w]))
    })
}

/// The rows `j` (counted from the first row output rows `r0..r1` read,
/// `r0 * stride - padding` above the input) that are input rows, not
/// padding, and the input row of the first of them (0 if none are).
fn existing_rows(s: &DirectConv, r0: usize, r1: usize) -> (std::ops::Range<usize>, usize) {
    let rows = (r1 - r0 - 1) * s.stride + s.kernel[0];
    let (first, top) = (r0 * s.stride, s.padding[0]);
    let j0 = top.saturating_sub(first).min(rows);
    let j1 = (s.h + top).saturating_sub(first).clamp(j0, rows);
    (j0..j1, (first + j0).saturating_sub(top))
}

/// Stride 2: writes input row `src`, shifted right by `padding`, as its
/// even padded columns into `even` and its odd ones into `odd` (padded
/// column `q` at `q / 2` of its phase), dropping what falls past them.
/// Whole pairs of columns go at once, which the compiler turns into
/// vector shuffles (a branch per column made the copy about a third of
/// MobileNetV2's stem).
fn split_phases(src: &[f32], padding: usize, (even, odd): (&mut [f32], &mut [f32])) {
    // With odd padding the first column is odd; the rest start on an even
    // padded column.
    let (head, rest) = src.split_at((padding % 2).min(src.len()));
    if let (Some(&v), Some(slot)) = (head.first(), odd.get_mut(padding / 2)) {
        *slot = v;
    }
    let start = padding.div_ceil(2);
    let pairs = rest.chunks_exact(2);
    let tail = pairs.remainder();
    let mut written = 0;
    if let (Some(even), Some(odd)) = (even.get_mut(start..), odd.get_mut(start..)) {
        for ((pair, e), o) in pairs.zip(even.iter_mut()).zip(odd.iter_mut()) {
            *e = pair[0];
            *o = pair[1];
            written += 1;
        }
    }
    if let (Some(&v), Some(slot)) = (tail.first(), even.get_mut(start + written)) {
        if written == rest.len() / 2 {
            *slot = v;
        }
    }
}

/// Called by compiled code: [`DirectConv::run`] on the spec at `spec`.
///
/// # Safety
/// As [`DirectConv::run`]; `spec` points to a live `DirectConv`.
#[no_mangle]
pub unsafe extern "C" fn nnc_direct_conv(
    spec: *const DirectConv,
    x: *const f32,
    out: *mut f32,
    r0: usize,
    r1: usize,
    group: usize,
) {
    // SAFETY: as documented above.
    unsafe { (*spec).run(x, out, r0, r1, group) }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{DirectConv, Rows, BLOCK};
    use crate::kernels::gemm::avx2::lane_mask;
    use crate::kernels::gemm::avx2_act::{apply_act, vec_act, VecAct};
    use std::arch::x86_64::*;

    /// Each 16x16 tile as three passes over its 16 columns (two ymm): output
    /// channels 0-5, 6-11 and 12-15 of the block, 12 accumulators at most
    /// (the 16 ymm registers hold them, the two windows and a broadcast
    /// weight), passes past the live channels skipped and one ymm of
    /// columns where the chunk has at most 8 live.
    ///
    /// # Safety
    /// As [`DirectConv::run`], with AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows(
        s: &DirectConv,
        b: &Rows<'_>,
        out: *mut f32,
        r0: usize,
        r1: usize,
        first: usize,
    ) {
        let taps = s.c_in * s.kernel[0] * s.kernel[1];
        let act = vec_act(s.activation);
        for oy in r0..r1 {
            for block in 0..s.out_channels.div_ceil(BLOCK) {
                let live = (s.out_channels - block * BLOCK).min(BLOCK);
                for chunk in 0..s.chunks() {
                    let cols = (s.ow - chunk * BLOCK).min(BLOCK);
                    for (ch, n) in [(0, 6), (6, 6), (12, 4)] {
                        if ch >= live {
                            break;
                        }
                        let pass = Pass {
                            weights: s.weights.as_ptr().add((first + block) * taps * BLOCK + ch),
                            bias: s.bias.as_ptr().add((first + block) * BLOCK + ch),
                            local: oy - r0,
                            chunk,
                        };
                        let at = Store {
                            channel: block * BLOCK + ch,
                            channels: (live - ch).min(n),
                            oy,
                            chunk,
                            cols,
                        };
                        match (n, cols > 8) {
                            (6, true) => at.write(s, out, &act, pass.sums::<6, 2>(s, b)),
                            (6, false) => at.write(s, out, &act, pass.sums::<6, 1>(s, b)),
                            (_, true) => at.write(s, out, &act, pass.sums::<4, 2>(s, b)),
                            (_, false) => at.write(s, out, &act, pass.sums::<4, 1>(s, b)),
                        }
                    }
                }
            }
        }
    }

    /// One pass's inputs: the weights and bias from its first channel, the
    /// output row (from `r0`) and the chunk.
    struct Pass {
        weights: *const f32,
        bias: *const f32,
        local: usize,
        chunk: usize,
    }

    impl Pass {
        /// `CH` channels by `8 * NV` columns summed over every tap. At most
        /// 12 sums, two windows and a broadcast weight: 15 of the 16 ymm
        /// registers, and the release build's loop keeps them all there
        /// (no stack traffic in its disassembly; compare the AVX2 GEMM's
        /// `accumulate`, whose inlined loop spilled).
        ///
        /// # Safety
        /// AVX2 and FMA must be available; the pass lies inside the conv
        /// (`CH` channels from its first in the weights and bias, the
        /// chunk's windows in `b`, which has room for 16 columns).
        #[target_feature(enable = "avx2,fma")]
        unsafe fn sums<const CH: usize, const NV: usize>(
            &self,
            s: &DirectConv,
            b: &Rows<'_>,
        ) -> [[__m256; NV]; CH] {
            let [kh, kw] = s.kernel;
            let data = b.data.as_ptr();
            let mut acc: [[__m256; NV]; CH] =
                std::array::from_fn(|r| [_mm256_set1_ps(*self.bias.add(r)); NV]);
            for c in 0..s.c_in {
                for ky in 0..kh {
                    let row = data.add(b.start(c, self.local, ky, 0, self.chunk));
                    let w = self.weights.add((c * kh + ky) * kw * BLOCK);
                    for kx in 0..kw {
                        let at = row.add(b.column(kx));
                        let window: [__m256; NV] =
                            std::array::from_fn(|v| _mm256_loadu_ps(at.add(8 * v)));
                        let w = w.add(kx * BLOCK);
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let weight = _mm256_set1_ps(*w.add(r));
                            for (a, &x) in acc.iter_mut().zip(&window) {
                                *a = _mm256_fmadd_ps(weight, x, *a);
                            }
                        }
                    }
                }
            }
            acc
        }
    }

    /// Where a pass's sums go: `channels` output channels from `channel`,
    /// row `oy`, the first `cols` (at most 16) columns of chunk `chunk`.
    struct Store {
        channel: usize,
        channels: usize,
        oy: usize,
        chunk: usize,
        cols: usize,
    }

    impl Store {
        /// Stores the sums with the activation: whole vectors plainly, a
        /// partial one masked (AMD's masked stores are slow).
        ///
        /// # Safety
        /// AVX2 and FMA must be available; `out` is the output of the call
        /// of [`DirectConv::run`] and the store lies inside it.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn write<const CH: usize, const NV: usize>(
            &self,
            s: &DirectConv,
            out: *mut f32,
            act: &VecAct,
            acc: [[__m256; NV]; CH],
        ) {
            for (r, row) in acc.iter().enumerate().take(self.channels) {
                let o = self.channel + r;
                let dst = out.add((o * s.oh + self.oy) * s.ow + self.chunk * BLOCK);
                for (v, &x) in row.iter().enumerate() {
                    let (at, x) = (dst.add(8 * v), apply_act(act, x));
                    match self.cols - 8 * v {
                        8.. => _mm256_storeu_ps(at, x),
                        lanes => _mm256_maskstore_ps(at, lane_mask(lanes), x),
                    }
                }
            }
        }
    }
}
