//! Native per-channel affine runs: `out = act(x * scale + shift)` over a
//! run of one channel, where the scale and shift are constant (a batch
//! norm left before a ReLU, as DenseNet's pre-activations are; a
//! squeeze-and-excite gate, `x * gate`).
//!
//! The JIT runs elementwise chains four lanes at a time (Cranelift lowers
//! 128-bit vectors); this is a fused multiply-add and the activation per
//! AVX-512 or AVX2 vector, the run's tail through a masked load and store.
//! The portable version is the same loop in plain Rust.

#![allow(unsafe_code)]

use super::gemm::{Activation, MicroKernel};

/// One affine op's activation and instruction set (owned by the compiled
/// model).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Affine {
    activation: Activation,
    kernel_impl: MicroKernel,
}

impl Affine {
    /// `act(x * scale + shift)` with `kernel_impl`'s vectors, or the
    /// portable loop where this CPU lacks them.
    pub fn new(activation: Activation, kernel_impl: MicroKernel) -> Affine {
        Affine {
            activation,
            kernel_impl: kernel_impl.usable(),
        }
    }

    /// `out[i] = act(x[i] * scale + shift)` for `i < n`.
    ///
    /// # Safety
    /// `x` must be valid for reads and `out` for writes of `n` floats; they
    /// are the same run or do not overlap.
    pub unsafe fn run(&self, x: *const f32, out: *mut f32, n: usize, scale: f32, shift: f32) {
        // SAFETY: forwarded; the vector code runs only where the CPU has
        // its instruction set (checked in `new`).
        unsafe {
            match self.kernel_impl {
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx512 => vector::avx512(self, x, out, n, [scale, shift]),
                #[cfg(target_arch = "x86_64")]
                MicroKernel::Avx2Fma => vector::avx2(self, x, out, n, [scale, shift]),
                _ => {
                    for i in 0..n {
                        // Rounded once, as the vector code's fused
                        // multiply-add.
                        let v = (*x.add(i)).mul_add(scale, shift);
                        *out.add(i) = self.activation.apply(v);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use super::Affine;
    use crate::kernels::row_lanes::Lanes;
    use std::arch::x86_64::{__m256, __m512};

    /// The run on `V`'s vectors.
    ///
    /// # Safety
    /// As [`Affine::run`], with `V`'s instruction set available.
    #[inline(always)]
    unsafe fn run<V: Lanes>(
        s: &Affine,
        x: *const f32,
        out: *mut f32,
        n: usize,
        [scale, shift]: [f32; 2],
    ) {
        // SAFETY: the caller's; every access is inside the first `n`
        // floats (whole vectors, then the tail masked).
        unsafe {
            let act = V::act(s.activation);
            let (scale, shift) = (V::splat(scale), V::splat(shift));
            let whole = n / V::N * V::N;
            for i in (0..whole).step_by(V::N) {
                let v = V::mul_add(V::load(x.add(i)), scale, shift);
                V::apply(&act, v).store(out.add(i));
            }
            if whole < n {
                let live = n - whole;
                let v = V::mul_add(V::load_live(x.add(whole), live), scale, shift);
                V::apply(&act, v).store_live(out.add(whole), live);
            }
        }
    }

    /// # Safety
    /// As [`Affine::run`]; AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(s: &Affine, x: *const f32, out: *mut f32, n: usize, p: [f32; 2]) {
        // SAFETY: forwarded.
        unsafe { run::<__m512>(s, x, out, n, p) }
    }

    /// # Safety
    /// As [`Affine::run`]; AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(s: &Affine, x: *const f32, out: *mut f32, n: usize, p: [f32; 2]) {
        // SAFETY: forwarded.
        unsafe { run::<__m256>(s, x, out, n, p) }
    }
}

/// Called by compiled code: [`Affine::run`] on the spec at `spec`.
///
/// # Safety
/// As [`Affine::run`]; `spec` points to a live `Affine`.
#[no_mangle]
pub unsafe extern "C" fn nnc_affine(
    spec: *const Affine,
    x: *const f32,
    out: *mut f32,
    n: usize,
    scale: f32,
    shift: f32,
) {
    // SAFETY: as documented above.
    unsafe { (*spec).run(x, out, n, scale, shift) }
}
