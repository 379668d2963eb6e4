//! Depthwise convolution a block of channels at a time: one call computes
//! a block of eight channels with AVX2 or sixteen with AVX-512 (fewer for
//! the last block) of one sample. The block's input planes are transposed
//! into a zero-padded buffer with the block's channels of each pixel side
//! by side (one vector), so that every tap of every output pixel is one
//! FMA of a vector of the channels' taps by a vector load, whatever the
//! stride, dilation or map width; the outputs are transposed back into the
//! planes (eight channels at a time, both halves of a zmm pixel).
//!
//! The per-channel rows (`depthwise_rows.rs`) vectorise along a row, which
//! on the small maps of MobileNet and EfficientNet's last stages (7x7,
//! 14x14, 5x5 kernels) leaves most lanes and most of the time to the edges
//! and the per-channel set-up: EfficientNet-B0's sixteen depthwise convs
//! took about 7 ms at one thread on Zen 3 against ONNX Runtime's 2.5,
//! whose NCHWc layout computes them as this kernel does.

#![allow(unsafe_code)]

use super::gemm::{Activation, MicroKernel};
#[cfg(target_arch = "x86_64")]
use super::row_lanes::Lanes;

/// Channels per 8x8 transpose, and per block with AVX2 (one ymm).
const LANES: usize = 8;

/// A depthwise convolution (one input channel per output channel) packed
/// for blocks of [`DepthwiseBlocked::lanes`] channels.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct DepthwiseBlocked {
    /// Input plane `[h, w]` and output plane `[oh, ow]`.
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// `[top, left]`; the padding after only shows in the output size.
    padding: [usize; 2],
    dilation: [usize; 2],
    channels: usize,
    activation: Activation,
    /// Channels per block: 8 (AVX2) or 16 (AVX-512).
    lanes: usize,
    /// The padded buffer's rows and columns: every input the output
    /// reads, from the padding before the plane on.
    rows: usize,
    cols: usize,
    /// Each tap's offset (in pixels of the padded buffer) from an output
    /// pixel's first input pixel.
    offsets: Vec<usize>,
    /// Block `b`'s tap `t` for its channels at `(b * taps + t) * lanes`,
    /// zero past the last channel.
    taps: Vec<f32>,
    /// The bias of every channel, zero-padded to whole blocks.
    bias: Vec<f32>,
}

impl DepthwiseBlocked {
    /// Whether the CPU runs this kernel for a model compiled for `kernel`
    /// (AVX2 or AVX-512; the compiler decides where it pays on each).
    pub fn available(kernel: MicroKernel) -> bool {
        matches!(kernel, MicroKernel::Avx2Fma | MicroKernel::Avx512)
            && MicroKernel::Avx2Fma.is_available()
            && kernel.is_available()
    }

    /// Packs `weights` (`[channels, kh * kw]`) and `bias` for a conv of an
    /// `[h, w]` plane into an `[oh, ow]` one, in blocks of 16 channels for
    /// `kernel` AVX-512, else 8; `None` if a slice is short.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        [h, w]: [usize; 2],
        [oh, ow]: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        channels: usize,
        weights: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
        micro_kernel: MicroKernel,
    ) -> Option<DepthwiseBlocked> {
        let lanes = if micro_kernel == MicroKernel::Avx512 && micro_kernel.is_available() {
            2 * LANES
        } else {
            LANES
        };
        let taps = kernel[0] * kernel[1];
        let weights = weights.get(..channels * taps)?;
        let blocks = channels.div_ceil(lanes);
        let mut packed = vec![0.0; blocks * taps * lanes];
        for (c, row) in weights.chunks_exact(taps.max(1)).enumerate() {
            let (b, lane) = (c / lanes, c % lanes);
            for (t, &v) in row.iter().enumerate() {
                packed[(b * taps + t) * lanes + lane] = v;
            }
        }
        let mut padded_bias = vec![0.0; blocks * lanes];
        if let Some(bias) = bias {
            padded_bias[..channels].copy_from_slice(bias.get(..channels)?);
        }
        let reach =
            |i: usize, out: usize| (out.max(1) - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1;
        let cols = reach(1, ow).max(padding[1] + w);
        let offsets = (0..taps)
            .map(|t| (t / kernel[1]) * dilation[0] * cols + (t % kernel[1]) * dilation[1])
            .collect();
        Some(DepthwiseBlocked {
            h,
            w,
            oh,
            ow,
            kernel,
            stride,
            padding,
            dilation,
            channels,
            activation,
            lanes,
            rows: reach(0, oh).max(padding[0] + h),
            cols,
            offsets,
            taps: packed,
            bias: padded_bias,
        })
    }

    /// Blocks of channels.
    pub fn blocks(&self) -> usize {
        self.channels.div_ceil(self.lanes)
    }

    /// Channels per block.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// Bytes of packed taps and bias.
    pub fn bytes(&self) -> usize {
        4 * (self.taps.len() + self.bias.len())
    }

    /// Block `block` of one sample: `src` is the block's first input plane
    /// (the others follow, `h * w` floats apart), `dst` its first output
    /// plane (`oh * ow` apart).
    ///
    /// # Safety
    /// AVX2 and FMA must be available ([`DepthwiseBlocked::available`]);
    /// `block < self.blocks()`; `src` holds the block's planes and `dst`
    /// room for its output planes (only the block's channels are read or
    /// written).
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn run(&self, src: *const f32, dst: *mut f32, block: usize) {
        // SAFETY: per the caller; `lanes` is 16 only where AVX-512 is
        // available.
        unsafe {
            if self.lanes == 2 * LANES {
                avx512::run(self, src, dst, block)
            } else {
                avx2::run(self, src, dst, block)
            }
        }
    }
}

/// Called by compiled code: [`DepthwiseBlocked::run`].
///
/// # Safety
/// As [`DepthwiseBlocked::run`]; `spec` points to a live
/// `DepthwiseBlocked`.
#[cfg(target_arch = "x86_64")]
#[no_mangle]
pub unsafe extern "C" fn nnc_depthwise_blocked(
    spec: *const DepthwiseBlocked,
    src: *const f32,
    dst: *mut f32,
    block: usize,
) {
    // SAFETY: per the caller.
    unsafe { (*spec).run(src, dst, block) }
}

/// Output pixels computed side by side: eight sums hide the FMA latency
/// (two units, four cycles each).
const PIXELS: usize = 8;

/// Every output pixel of block `block` into `output` (interleaved), the
/// activation applied, for vectors `V` of the block's channels (AVX2 or
/// AVX-512, inlined into each). Pixels go in runs of [`PIXELS`] in
/// row-major order, across rows: a 7x7 map would leave a run per row one
/// pixel short of eight, and one pixel at a time is a chain of dependent
/// FMAs (a 5x5 conv on 7x7 maps took twice as long that way).
///
/// # Safety
/// `V`'s instruction set must be available and `V::N == s.lanes`; `input`
/// is the block's padded buffer.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn convolve<V: Lanes>(s: &DepthwiseBlocked, block: usize, input: &[V], output: &mut [V]) {
    let taps = s.taps[block * s.offsets.len() * V::N..].as_ptr();
    let first = |q: usize| (q / s.ow) * s.stride[0] * s.cols + (q % s.ow) * s.stride[1];
    let pixels = s.oh * s.ow;
    let mut q = 0;
    // SAFETY: the bias holds whole blocks; every pixel a tap reads lies in
    // the padded buffer (its size covers the output's reach).
    unsafe {
        let bias = V::load(s.bias.as_ptr().add(block * V::N));
        let act = V::act(s.activation);
        while q + PIXELS <= pixels {
            let at: [usize; PIXELS] = std::array::from_fn(|i| first(q + i));
            run_of(s, taps, bias, &act, input, &mut output[q..q + PIXELS], at);
            q += PIXELS;
        }
        while q < pixels {
            run_of(
                s,
                taps,
                bias,
                &act,
                input,
                &mut output[q..q + 1],
                [first(q)],
            );
            q += 1;
        }
    }
}

/// `P` output pixels whose first input pixels are at `at`.
///
/// # Safety
/// As [`convolve`]: `at[i] + offsets[t]` lies in `input`; `taps` holds the
/// block's tap vectors.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn run_of<V: Lanes, const P: usize>(
    s: &DepthwiseBlocked,
    taps: *const f32,
    bias: V,
    act: &V::Act,
    input: &[V],
    output: &mut [V],
    at: [usize; P],
) {
    let mut acc = [bias; P];
    let input = input.as_ptr();
    // SAFETY: per the caller.
    unsafe {
        for (t, &offset) in s.offsets.iter().enumerate() {
            let tap = V::load(taps.add(t * V::N));
            for (acc, &at) in acc.iter_mut().zip(&at) {
                *acc = V::mul_add(tap, *input.add(at + offset), *acc);
            }
        }
        V::apply_all(act, &mut acc);
    }
    output.copy_from_slice(&acc);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{DepthwiseBlocked, LANES};
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    thread_local! {
        /// The padded interleaved input and the interleaved output of one
        /// call; grows, never shrinks.
        static BUFFER: RefCell<Vec<__m256>> = const { RefCell::new(Vec::new()) };
    }

    /// # Safety
    /// As [`DepthwiseBlocked::run`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run(s: &DepthwiseBlocked, src: *const f32, dst: *mut f32, block: usize) {
        let live = (s.channels - block * LANES).min(LANES);
        let (padded, outputs) = (s.rows * s.cols, s.oh * s.ow);
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < padded + outputs {
                buffer.resize(padded + outputs, _mm256_setzero_ps());
            }
            let (input, output) = buffer.split_at_mut(padded);
            // SAFETY: the buffers hold `padded` and `outputs` pixels; the
            // caller vouches for `src` and `dst` over `live` planes.
            unsafe {
                input.fill(_mm256_setzero_ps());
                gather(s, src, live, input.as_mut_ptr().cast(), LANES);
                super::convolve(s, block, input, &mut output[..outputs]);
                scatter(output.as_ptr().cast(), LANES, outputs, dst, live);
            }
        });
    }

    /// The `live <= 8` input planes at `src` transposed into the zeroed
    /// padded buffer at `out` (pixels `stride` floats apart): channel `c`
    /// of pixel `(y, x)` at float `c` of pixel `(y + top) * cols + x +
    /// left`.
    ///
    /// # Safety
    /// `src` holds `live` planes of `h * w` floats; `out` the padded
    /// buffer's pixels, each `stride >= 8` floats from its first.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gather(
        s: &DepthwiseBlocked,
        src: *const f32,
        live: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let (h, w) = (s.h, s.w);
        let plane = h * w;
        for y in 0..h {
            let row = (y + s.padding[0]) * s.cols + s.padding[1];
            let mut x = 0;
            // SAFETY: columns `x..x + 8` of row `y` exist in each of the
            // `live` planes; pixels `row + x ..` lie in the buffer (the
            // plane fits in it after the padding).
            unsafe {
                while x + 8 <= w {
                    let mut v = [_mm256_setzero_ps(); 8];
                    for (c, v) in v.iter_mut().enumerate().take(live) {
                        *v = _mm256_loadu_ps(src.add(c * plane + y * w + x));
                    }
                    let v = transpose(v);
                    for (j, v) in v.iter().enumerate() {
                        _mm256_storeu_ps(out.add((row + x + j) * stride), *v);
                    }
                    x += 8;
                }
                for x in x..w {
                    for c in 0..live {
                        *out.add((row + x) * stride + c) = *src.add(c * plane + y * w + x);
                    }
                }
            }
        }
    }

    /// The `live <= 8` output planes at `dst` from the interleaved
    /// `output` (`pixels` of them, `stride` floats apart, the planes'
    /// values first).
    ///
    /// # Safety
    /// `output` holds `pixels * stride` floats, `dst` `live` planes of
    /// `pixels`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scatter(
        output: *const f32,
        stride: usize,
        pixels: usize,
        dst: *mut f32,
        live: usize,
    ) {
        let mut p = 0;
        // SAFETY: per the caller.
        unsafe {
            while p + 8 <= pixels {
                let v: [__m256; 8] =
                    std::array::from_fn(|j| _mm256_loadu_ps(output.add((p + j) * stride)));
                let v = transpose(v);
                for (c, v) in v.iter().enumerate().take(live) {
                    _mm256_storeu_ps(dst.add(c * pixels + p), *v);
                }
                p += 8;
            }
            for p in p..pixels {
                for c in 0..live {
                    *dst.add(c * pixels + p) = *output.add(p * stride + c);
                }
            }
        }
    }

    /// The transpose of an 8x8 block of floats: element `j` of `v[i]`
    /// becomes element `i` of `v[j]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn transpose(v: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(v[0], v[1]);
        let t1 = _mm256_unpackhi_ps(v[0], v[1]);
        let t2 = _mm256_unpacklo_ps(v[2], v[3]);
        let t3 = _mm256_unpackhi_ps(v[2], v[3]);
        let t4 = _mm256_unpacklo_ps(v[4], v[5]);
        let t5 = _mm256_unpackhi_ps(v[4], v[5]);
        let t6 = _mm256_unpacklo_ps(v[6], v[7]);
        let t7 = _mm256_unpackhi_ps(v[6], v[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{avx2, DepthwiseBlocked, LANES};
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    thread_local! {
        /// The padded interleaved input and the interleaved output of one
        /// call; grows, never shrinks.
        static BUFFER: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
    }

    /// Sixteen channels per pixel: the copies in and out are the AVX2
    /// kernel's 8x8 transposes, once per half of each zmm.
    ///
    /// # Safety
    /// As [`DepthwiseBlocked::run`], with AVX-512F (and so AVX2 and FMA)
    /// available.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn run(s: &DepthwiseBlocked, src: *const f32, dst: *mut f32, block: usize) {
        let live = (s.channels - block * s.lanes).min(s.lanes);
        let (padded, outputs) = (s.rows * s.cols, s.oh * s.ow);
        let (plane, out_plane) = (s.h * s.w, outputs);
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < padded + outputs {
                buffer.resize(padded + outputs, _mm512_setzero_ps());
            }
            let (input, output) = buffer.split_at_mut(padded);
            let halves = [(0, live.min(LANES)), (LANES, live.saturating_sub(LANES))];
            // SAFETY: the buffers hold `padded` and `outputs` pixels of 16
            // floats; the caller vouches for `src` and `dst` over `live`
            // planes, which the halves split.
            unsafe {
                input.fill(_mm512_setzero_ps());
                let into = input.as_mut_ptr().cast::<f32>();
                for (c0, n) in halves.into_iter().filter(|&(_, n)| n > 0) {
                    avx2::gather(s, src.add(c0 * plane), n, into.add(c0), 2 * LANES);
                }
                super::convolve(s, block, input, &mut output[..outputs]);
                let from = output.as_ptr().cast::<f32>();
                for (c0, n) in halves.into_iter().filter(|&(_, n)| n > 0) {
                    let to = dst.add(c0 * out_plane);
                    avx2::scatter(from.add(c0), 2 * LANES, outputs, to, n);
                }
            }
        });
    }
}
