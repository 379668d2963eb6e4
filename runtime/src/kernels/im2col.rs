//! Native `im2col`: the column matrix of a convolution, row `(c, ky, kx)`
//! of which holds, for every output position, the input under tap `(ky,
//! kx)` of channel `c` (zero where the tap reads padding). One task writes
//! the `kw` rows of one input plane and kernel row.
//!
//! The JIT built this as one unrolled body per op (every tap's ranges
//! constants): ResNet-18's three stride-2 3x3 ones took a third of its
//! code generation, about 1 ms each, and a deep chain of small convs 0.5 ms
//! per layer; its loads were four lanes wide. Here each output row is
//! whole vectors of [`Lanes`] (a stride-2 row two loads and a permute per
//! vector), written once for AVX-512 and AVX2; the portable version is the
//! scalar definition, for other CPUs and as the tests' reference.

#![allow(unsafe_code)]

use super::gemm::MicroKernel;

/// The geometry of one `im2col` (one per compiled op, owned by the
/// compiled model).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Im2Col {
    /// Input planes (batch times channels), each `h x w`.
    planes: usize,
    h: usize,
    w: usize,
    /// Output rows, and positions per row.
    oh: usize,
    ow: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// The padding before each axis, `[top, left]`; the padding after only
    /// shows in the output size.
    padding: [usize; 2],
    /// `Avx512`, `Avx2Fma` or `Portable`.
    kernel_impl: MicroKernel,
    /// For each kernel row and column, the output rows (columns) whose tap
    /// reads inside the input: divisions by the stride, made once here
    /// rather than per task (a 4x4 map's task is only a dozen rows).
    valid: [Vec<(usize, usize)>; 2],
    /// Maps of at most 16 positions (4x4 ones): per tap, each position's
    /// input index in the plane and the mask of those inside it, so that
    /// the tap's row is one gather. Rows of four floats cost more in loops
    /// than in the JIT's unrolled code: vgg_cifar's 4x4 im2cols took 0.056
    /// ms each with the rows, 0.040 with the gathers and 0.028 unrolled
    /// (AMD EPYC Zen 4).
    small: Option<Vec<([i32; 16], u16)>>,
}

/// The output positions `o` in `0..count` whose input `o * stride +
/// offset - pad` lies in `0..len`, as `lo..hi`: the outputs of one axis
/// whose tap at `offset` reads inside the input (`stride` nonzero). The
/// compiler's window kernels use it too.
pub fn valid(count: usize, len: usize, stride: usize, offset: usize, pad: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = if offset >= len + pad {
        0
    } else {
        ((len + pad - offset - 1) / stride + 1).min(count)
    };
    (lo.min(hi), hi)
}

impl Im2Col {
    /// The im2col of `planes` input planes of `[h, w]` into `[oh, ow]`
    /// positions, with `[kernel, stride, dilation, padding before]` per
    /// axis (nonzero strides), run by `kernel_impl`'s vectors where this CPU
    /// has them (else one float at a time).
    pub fn new(
        planes: usize,
        [h, w]: [usize; 2],
        [oh, ow]: [usize; 2],
        [kernel, stride, dilation, padding]: [[usize; 2]; 4],
        kernel_impl: MicroKernel,
    ) -> Im2Col {
        let kernel_impl = kernel_impl.usable();
        let valid = |axis: usize| -> Vec<(usize, usize)> {
            let (count, len) = [(oh, h), (ow, w)][axis];
            (0..kernel[axis])
                .map(|k| {
                    let offset = k * dilation[axis];
                    valid(count, len, stride[axis].max(1), offset, padding[axis])
                })
                .collect()
        };
        let valid = [valid(0), valid(1)];
        // A position reads inside the plane where both of its axes do (the
        // ranges above); its input is then its window's first tap moved by
        // the tap's offset.
        let small = (oh * ow <= 16 && h * w <= i32::MAX as usize).then(|| {
            let taps = (0..kernel[0]).flat_map(|ky| (0..kernel[1]).map(move |kx| (ky, kx)));
            taps.map(|(ky, kx)| {
                let ((y0, y1), (x0, x1)) = (valid[0][ky], valid[1][kx]);
                let (mut indices, mut mask) = ([0i32; 16], 0u16);
                for (p, at) in indices.iter_mut().enumerate().take(oh * ow) {
                    let (oy, ox) = (p / ow, p % ow);
                    if (y0..y1).contains(&oy) && (x0..x1).contains(&ox) {
                        let iy = oy * stride[0] + ky * dilation[0] - padding[0];
                        let ix = ox * stride[1] + kx * dilation[1] - padding[1];
                        *at = (iy * w + ix) as i32;
                        mask |= 1 << p;
                    }
                }
                (indices, mask)
            })
            .collect()
        });
        Im2Col {
            planes,
            h,
            w,
            oh,
            ow,
            kernel,
            stride,
            dilation,
            padding,
            kernel_impl,
            valid,
            small,
        }
    }

    /// Tasks: one per input plane and kernel row.
    pub fn tasks(&self) -> usize {
        self.planes * self.kernel[0]
    }

    /// Writes task `task`'s rows: input plane `task / kh` of `src`, kernel
    /// row `task % kh`.
    ///
    /// # Safety
    /// `src` must hold `planes * h * w` floats and `dst` `planes * kh * kw
    /// * oh * ow`, not overlapping; `task < self.tasks()`; the strides must
    /// be nonzero, and a spec read back from a bundle must run on a CPU
    /// with its `kernel_impl`.
    pub unsafe fn run(&self, src: *const f32, dst: *mut f32, task: usize) {
        // SAFETY: forwarded; `new` kept `kernel_impl` only if this CPU has
        // its instruction set.
        unsafe {
            match self.kernel_impl {
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx512 => match &self.small {
                    Some(taps) => vector::gathered(self, taps, src, dst, task),
                    None => {
                        use vector::Rows;
                        std::arch::x86_64::__m512::task(self, src, dst, task)
                    }
                },
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx2Fma => {
                    use vector::Rows;
                    std::arch::x86_64::__m256::task(self, src, dst, task)
                }
                _ => self.task(src, dst, task, Scalar),
            }
        }
    }

    /// [`Im2Col::run`] with `rows` zeroing and copying the rows' runs. Every
    /// call is inlined into its caller, so that the runs of a small map
    /// (4 columns of a 4x4 one) cost no calls.
    ///
    /// # Safety
    /// As for [`Im2Col::run`], with `rows`' instruction set available.
    #[inline(always)]
    unsafe fn task(&self, src: *const f32, dst: *mut f32, task: usize, rows: impl RowOps) {
        let [kh, kw] = self.kernel;
        let (plane, ky) = (task / kh, task % kh);
        let (y0, y1) = self.valid[0][ky];
        let positions = self.oh * self.ow;
        // SAFETY: the plane and its rows lie inside `src` and `dst` (the
        // contract), so do the offsets below.
        unsafe {
            let input = src.add(plane * self.h * self.w);
            let input_end = src.add(self.planes * self.h * self.w);
            for kx in 0..kw {
                let row = dst.add(((plane * kh + ky) * kw + kx) * positions);
                rows.zero(row, y0 * self.ow);
                rows.zero(row.add(y1 * self.ow), (self.oh - y1) * self.ow);
                let (x0, x1) = self.valid[1][kx];
                for oy in y0..y1 {
                    let out = row.add(oy * self.ow);
                    rows.zero(out, x0);
                    rows.zero(out.add(x1), self.ow - x1);
                    if x0 >= x1 {
                        continue;
                    }
                    let iy = oy * self.stride[0] + ky * self.dilation[0] - self.padding[0];
                    let ix = x0 * self.stride[1] + kx * self.dilation[1] - self.padding[1];
                    let from = input.add(iy * self.w + ix);
                    let readable = input_end.offset_from(from) as usize;
                    rows.copy(from, readable, self.stride[1], out.add(x0), x1 - x0);
                }
            }
        }
    }
}

/// How [`Im2Col::task`] zeroes and copies the runs of a row.
trait RowOps: Copy {
    /// Zeroes `count` floats at `to`.
    ///
    /// # Safety
    /// `to` valid for `count` writes.
    unsafe fn zero(self, to: *mut f32, count: usize);
    /// `to[i] = from[i * stride]` for `i < count`, where `from` has
    /// `readable` floats up to the end of the input.
    ///
    /// # Safety
    /// `from` valid for `readable` reads, `(count - 1) * stride <
    /// readable`, `to` valid for `count` writes.
    unsafe fn copy(
        self,
        from: *const f32,
        readable: usize,
        stride: usize,
        to: *mut f32,
        count: usize,
    );
}

/// One float at a time: the definition, for CPUs without AVX-512 or AVX2.
#[derive(Clone, Copy)]
struct Scalar;

// SAFETY (every method): the contract is [`RowOps`]'s, forwarded.
impl RowOps for Scalar {
    #[inline(always)]
    unsafe fn zero(self, to: *mut f32, count: usize) {
        for i in 0..count {
            // SAFETY: forwarded.
            unsafe { *to.add(i) = 0.0 };
        }
    }

    #[inline(always)]
    unsafe fn copy(self, from: *const f32, _: usize, stride: usize, to: *mut f32, count: usize) {
        // SAFETY: forwarded.
        unsafe { copy_scalar(from, stride, to, 0, count) }
    }
}

/// `to[i] = from[i * stride]` for `i` in `start..count`.
///
/// # Safety
/// `from` valid for reads at `i * stride`, `to` for writes at `i`.
#[inline(always)]
unsafe fn copy_scalar(from: *const f32, stride: usize, to: *mut f32, start: usize, count: usize) {
    for i in start..count {
        // SAFETY: forwarded.
        unsafe { *to.add(i) = *from.add(i * stride) };
    }
}

/// Called by compiled code: [`Im2Col::run`] on the spec at `spec`.
///
/// # Safety
/// As [`Im2Col::run`]; `spec` points to a live `Im2Col`.
#[no_mangle]
pub unsafe extern "C" fn nnc_im2col(
    spec: *const Im2Col,
    src: *const f32,
    dst: *mut f32,
    task: usize,
) {
    // SAFETY: the caller passes the spec the compiled model owns and
    // buffers of the sizes `run` asks for.
    unsafe { (*spec).run(src, dst, task) }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use super::{copy_scalar, Im2Col, RowOps};
    use crate::kernels::row_lanes::Lanes;
    use std::arch::x86_64::{__m256, __m512};
    use std::marker::PhantomData;

    /// The task compiled for the instruction set of one [`Lanes`].
    pub(super) trait Rows: Lanes {
        /// # Safety
        /// As [`Im2Col::run`], with the lanes' instruction set available.
        unsafe fn task(s: &Im2Col, src: *const f32, dst: *mut f32, task: usize);
    }

    /// [`Rows`] for `$lanes`, compiled with `$features` so that the
    /// generic code below and the lanes' `#[inline(always)]` methods inline
    /// into it.
    macro_rules! rows {
        ($lanes:ty, $features:literal) => {
            // SAFETY (every method): the contract is [`Rows`]'s (the
            // instruction set checked by the caller), forwarded.
            impl Rows for $lanes {
                #[target_feature(enable = $features)]
                unsafe fn task(s: &Im2Col, src: *const f32, dst: *mut f32, task: usize) {
                    s.task(src, dst, task, Vectors::<$lanes>(PhantomData))
                }
            }
        };
    }

    rows!(__m512, "avx512f");
    rows!(__m256, "avx2,fma");

    /// [`Im2Col::run`] for a map of at most 16 positions: each tap's row
    /// is one masked gather from `taps` (see `Im2Col::small`).
    ///
    /// # Safety
    /// As [`Im2Col::run`]; `taps` is the spec's table; AVX-512F available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gathered(
        s: &Im2Col,
        taps: &[([i32; 16], u16)],
        src: *const f32,
        dst: *mut f32,
        task: usize,
    ) {
        use crate::kernels::gemm::avx512::lane_mask;
        use std::arch::x86_64::*;
        let [kh, kw] = s.kernel;
        let (plane, ky) = (task / kh, task % kh);
        let positions = s.oh * s.ow;
        // SAFETY: the masked lanes' indices lie inside the plane (built in
        // `Im2Col::new`), which lies inside `src`; the store writes the
        // row's `positions` floats inside `dst` (the contract).
        unsafe {
            let input = src.add(plane * s.h * s.w);
            for (kx, (indices, mask)) in taps[ky * kw..][..kw].iter().enumerate() {
                let index = _mm512_loadu_si512(indices.as_ptr().cast());
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), *mask, index, input);
                let row = dst.add(((plane * kh + ky) * kw + kx) * positions);
                _mm512_mask_storeu_ps(row, lane_mask(positions), v);
            }
        }
    }

    /// Whole vectors of `V`.
    #[derive(Clone, Copy)]
    struct Vectors<V>(PhantomData<V>);

    // SAFETY (every method): the contract is [`RowOps`]'s, with `V`'s
    // instruction set available (the caller is compiled with it).
    impl<V: Lanes> RowOps for Vectors<V> {
        #[inline(always)]
        unsafe fn zero(self, to: *mut f32, count: usize) {
            let mut i = 0;
            // SAFETY: each store writes the `count - i` lanes left at most.
            unsafe {
                while i < count {
                    V::zero().store_live(to.add(i), count - i);
                    i += V::N;
                }
            }
        }

        /// Whole vectors while a window's reads stay inside the input (at
        /// stride 1 a partial vector is a masked load, which reads only its
        /// lanes), the rest one float at a time.
        #[inline(always)]
        unsafe fn copy(
            self,
            from: *const f32,
            readable: usize,
            stride: usize,
            to: *mut f32,
            count: usize,
        ) {
            let mut i = 0;
            // SAFETY: a window from `i * stride` reads `span(stride)`
            // floats, inside `readable`; a partial stride-1 vector reads and
            // writes only its `count - i` lanes; the rest is forwarded.
            unsafe {
                if stride == 1 {
                    while i < count {
                        V::load_live(from.add(i), count - i).store_live(to.add(i), count - i);
                        i += V::N;
                    }
                    return;
                }
                while i + V::N <= count && i * stride + V::span(stride) <= readable {
                    V::window(from.add(i * stride), stride).store(to.add(i));
                    i += V::N;
                }
                if i < count && i * stride + V::span(stride) <= readable {
                    V::window(from.add(i * stride), stride).store_live(to.add(i), count - i);
                    i = count;
                }
                copy_scalar(from, stride, to, i, count);
            }
        }
    }
}

#[cfg(test)]
mod tests;
