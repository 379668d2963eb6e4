//! Every activation in ymm registers, for the AVX2 kernels' epilogues: the
//! same approximations as the AVX-512 kernels' (see `avx512.rs`: `exp` by
//! range reduction and a degree-6 polynomial, Cephes' `log1p`, Eigen's
//! `erf`), written with AVX2 and FMA. Before these, the AVX2 GEMM stored
//! a tile and applied a transcendental activation one float at a time
//! with libm: EfficientNet-B0's expansion convs (SiLU) ran at 3 GFLOP/s.
//!
//! As in the AVX-512 versions, the clamps put `x` second in `max` and
//! `min` (which return their second operand when one is NaN), so a NaN
//! input gives NaN, as the interpreter does; `tests/tests/jit.rs`
//! (`activations_at_the_edges_match_the_interpreter`) checks both kinds
//! at infinities, NaN and the ends of `exp`'s range.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::Activation;
use crate::kernels::math::{ERFC_TAIL, EXPM1_TAYLOR, GELU_TAIL_END};
use crate::kernels::math::{TANH_CLAMP, TANH_P, TANH_Q};

/// The activation in the form the vector code applies it: the activation
/// and its parameters splatted once per kernel call.
#[derive(Clone, Copy)]
pub(crate) struct VecAct {
    pub(crate) act: Activation,
    lo: __m256,
    hi: __m256,
}

#[target_feature(enable = "avx2,fma")]
pub(crate) fn vec_act(act: Activation) -> VecAct {
    let zero = _mm256_setzero_ps();
    let (lo, hi) = match act {
        Activation::None
        | Activation::Relu
        | Activation::Sigmoid
        | Activation::Tanh
        | Activation::Softplus
        | Activation::Softsign
        | Activation::Hardswish
        | Activation::Silu
        | Activation::Mish
        | Activation::Gelu
        | Activation::GeluTanh => (zero, zero),
        Activation::Clip { min, max } => (_mm256_set1_ps(min), _mm256_set1_ps(max)),
        Activation::LeakyRelu { negative_slope } => (_mm256_set1_ps(negative_slope), zero),
        Activation::Elu { alpha, scale } => (_mm256_set1_ps(alpha), _mm256_set1_ps(scale)),
        Activation::Celu { alpha } => (_mm256_set1_ps(alpha), _mm256_set1_ps(1.0 / alpha)),
        Activation::Hardsigmoid { alpha, beta } => (_mm256_set1_ps(alpha), _mm256_set1_ps(beta)),
    };
    VecAct { act, lo, hi }
}

/// `act` applied to the eight lanes of `x`: the piecewise-linear
/// activations here, inlined into the kernels' epilogues (as one call per
/// vector, the function the whole match makes cost more than a short-K
/// tile's FMAs), the others in [`transcendental`].
///
/// # Safety
/// AVX2 and FMA must be available.
#[inline(always)]
pub(crate) unsafe fn apply_act(act: &VecAct, x: __m256) -> __m256 {
    // SAFETY: the caller's.
    unsafe {
        let zero = _mm256_setzero_ps();
        match act.act {
            Activation::None => x,
            // `maxps`/`minps` return their second operand when either is
            // NaN: `x` second keeps a NaN, as the interpreter does.
            Activation::Relu => _mm256_max_ps(zero, x),
            Activation::Clip { .. } => _mm256_min_ps(act.hi, _mm256_max_ps(act.lo, x)),
            Activation::LeakyRelu { .. } => {
                let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(x, zero);
                _mm256_blendv_ps(x, _mm256_mul_ps(x, act.lo), neg)
            }
            // Piecewise linear too (see the AVX-512 `apply_act`).
            Activation::Hardsigmoid { .. } => hardsigmoid(act, x),
            Activation::Hardswish => hardswish(x),
            Activation::Sigmoid
            | Activation::Tanh
            | Activation::Elu { .. }
            | Activation::Celu { .. }
            | Activation::Softplus
            | Activation::Softsign
            | Activation::Silu
            | Activation::Mish
            | Activation::Gelu
            | Activation::GeluTanh => transcendental(act, x),
        }
    }
}

/// `act` applied to every vector of `xs`: the piecewise-linear activations
/// inline, the others in one call for all of them, so that a tile's
/// vectors go through `exp` side by side (one call per vector cost more
/// than a short-K tile's FMAs: EfficientNet-B0's SiLU expansion convs ran
/// at 18-24 GFLOP/s on Zen 3).
///
/// # Safety
/// AVX2 and FMA must be available.
#[inline(always)]
pub(crate) unsafe fn apply_act_all(act: &VecAct, xs: &mut [__m256]) {
    match act.act {
        Activation::None => {}
        Activation::Relu
        | Activation::Clip { .. }
        | Activation::LeakyRelu { .. }
        | Activation::Hardsigmoid { .. }
        | Activation::Hardswish => {
            for x in xs {
                // SAFETY: the caller's.
                *x = unsafe { apply_act(act, *x) };
            }
        }
        _ => transcendental_all(act, xs),
    }
}

/// [`transcendental`] over every vector of `xs`, the activation matched
/// once.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
fn transcendental_all(act: &VecAct, xs: &mut [__m256]) {
    macro_rules! each {
        ($f:expr) => {
            for x in xs.iter_mut() {
                *x = $f(*x);
            }
        };
    }
    match act.act {
        Activation::Sigmoid => {
            let mut chunks = xs.chunks_exact_mut(4);
            for c in &mut chunks {
                let v = sigmoid4([c[0], c[1], c[2], c[3]]);
                c.copy_from_slice(&v);
            }
            for x in chunks.into_remainder() {
                *x = sigmoid(*x);
            }
        }
        Activation::Silu => {
            let mut chunks = xs.chunks_exact_mut(4);
            for c in &mut chunks {
                let v = sigmoid4([c[0], c[1], c[2], c[3]]);
                for (x, v) in c.iter_mut().zip(v) {
                    *x = _mm256_mul_ps(*x, v);
                }
            }
            for x in chunks.into_remainder() {
                *x = silu(*x);
            }
        }
        Activation::Tanh => each!(tanh),
        _ => each!(|x| transcendental(act, x)),
    }
}

/// `max(0, min(1, alpha * x + beta))`, alpha and beta in `act`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn hardsigmoid(act: &VecAct, x: __m256) -> __m256 {
    unit_clamp(_mm256_fmadd_ps(x, act.lo, act.hi))
}

/// `x * max(0, min(1, x / 6 + 1/2))`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn hardswish(x: __m256) -> __m256 {
    let g = _mm256_fmadd_ps(x, _mm256_set1_ps(1.0 / 6.0), _mm256_set1_ps(0.5));
    _mm256_mul_ps(x, unit_clamp(g))
}

/// `x sigmoid(x)`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn silu(x: __m256) -> __m256 {
    _mm256_mul_ps(x, sigmoid(x))
}

/// The activations [`apply_act`] does not inline.
#[target_feature(enable = "avx2,fma")]
fn transcendental(act: &VecAct, x: __m256) -> __m256 {
    let zero = _mm256_setzero_ps();
    match act.act {
        Activation::None
        | Activation::Relu
        | Activation::Clip { .. }
        | Activation::LeakyRelu { .. } => x,
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => tanh(x),
        Activation::Elu { .. } => {
            // x > 0 ? x : alpha * expm1(x), times the scale.
            let neg = _mm256_mul_ps(act.lo, exp_m1(x));
            let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero);
            _mm256_mul_ps(act.hi, _mm256_blendv_ps(neg, x, pos))
        }
        Activation::Celu { .. } => {
            let neg = _mm256_mul_ps(act.lo, exp_m1(_mm256_mul_ps(x, act.hi)));
            // Zero first: `max` and `min` return their second operand when
            // one is NaN, so NaN stays NaN, as in the interpreter.
            _mm256_add_ps(_mm256_max_ps(zero, x), _mm256_min_ps(zero, neg))
        }
        Activation::Softplus => softplus(x),
        Activation::Softsign => {
            let d = _mm256_add_ps(abs(x), _mm256_set1_ps(1.0));
            _mm256_div_ps(x, d)
        }
        Activation::Hardsigmoid { .. } => hardsigmoid(act, x),
        Activation::Hardswish => hardswish(x),
        Activation::Silu => _mm256_mul_ps(x, sigmoid(x)),
        Activation::Mish => _mm256_mul_ps(x, tanh(softplus(x))),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => {
            let x2 = _mm256_mul_ps(x, x);
            let p = _mm256_fmadd_ps(x2, _mm256_set1_ps(0.044_715), _mm256_set1_ps(1.0));
            let k = _mm256_set1_ps((2.0 / std::f32::consts::PI).sqrt());
            half_x_one_plus(x, tanh(_mm256_mul_ps(_mm256_mul_ps(x, p), k)))
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn abs(x: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), x)
}

/// `min(max(x, 0), 1)`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn unit_clamp(x: __m256) -> __m256 {
    _mm256_min_ps(_mm256_set1_ps(1.0), _mm256_max_ps(_mm256_setzero_ps(), x))
}

/// `x/2 * (1 + t)`, GELU's last step.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn half_x_one_plus(x: __m256, t: __m256) -> __m256 {
    let h = _mm256_mul_ps(x, _mm256_set1_ps(0.5));
    _mm256_fmadd_ps(h, t, h)
}

/// The rational `tanh` of `jit/math.rs` and the cell steps (within 4 ulp,
/// exactly ±1 beyond the clamp). `2 sigmoid(2x) - 1` was 1e-7 off near
/// zero in absolute terms, which `mish(-1e30) = x tanh(softplus(x))`
/// turned into 6e22. NaN stays NaN.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tanh(x: __m256) -> __m256 {
    // Beyond the clamp, exactly ±1 (the quotient gives 1 - 6e-8 there,
    // which `gelu_tanh(-1e30) = x (1 + tanh(...)) / 2` would scale up).
    let sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0));
    let saturated = _mm256_cmp_ps::<_CMP_GE_OQ>(abs(x), _mm256_set1_ps(TANH_CLAMP));
    let one = _mm256_or_ps(sign, _mm256_set1_ps(1.0));
    _mm256_blendv_ps(tanh_quotient(x), one, saturated)
}

/// `x P(x^2) / Q(x^2)` on `x` clamped to `±TANH_CLAMP`: the rational
/// `tanh` without the exact saturation (the recurrent cells' gates, where
/// `1 - 6e-8` is as good as 1). NaN stays NaN (`max` and `min` return
/// their second operand when one is NaN).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn tanh_quotient(x: __m256) -> __m256 {
    let x = _mm256_max_ps(_mm256_set1_ps(-TANH_CLAMP), x);
    let x = _mm256_min_ps(_mm256_set1_ps(TANH_CLAMP), x);
    let x2 = _mm256_mul_ps(x, x);
    let mut p = _mm256_set1_ps(TANH_P[0]);
    for &c in &TANH_P[1..] {
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(c));
    }
    let mut q = _mm256_set1_ps(TANH_Q[0]);
    for &c in &TANH_Q[1..] {
        q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(c));
    }
    _mm256_div_ps(_mm256_mul_ps(p, x), q)
}

/// `exp(x) - 1`, by its Taylor series where `|x| < 1/2` and the
/// subtraction would cancel digits.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp_m1(x: __m256) -> __m256 {
    let em1 = _mm256_sub_ps(exp(x), _mm256_set1_ps(1.0));
    // The Taylor series near 0, where the subtraction cancels digits (as
    // the JIT's `exp_m1`); a product keeps `-0`, as `expm1` does.
    let mut factor = _mm256_set1_ps(EXPM1_TAYLOR[0]);
    for &c in &EXPM1_TAYLOR[1..] {
        factor = _mm256_fmadd_ps(factor, x, _mm256_set1_ps(c));
    }
    let small = _mm256_mul_ps(x, factor);
    let near_zero = _mm256_cmp_ps::<_CMP_LT_OQ>(abs(x), _mm256_set1_ps(0.5));
    let em1 = _mm256_blendv_ps(em1, small, near_zero);
    // `exp` clamps at 88; `expm1` overflows to infinity past ln(MAX)
    // (`celu` with a negative alpha reaches it).
    let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(OVERFLOW));
    _mm256_blendv_ps(em1, _mm256_set1_ps(f32::INFINITY), over)
}

/// Where `exp` overflows: `ln(f32::MAX)`, rounded down.
const OVERFLOW: f32 = 88.72;

/// `ln(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn softplus(x: __m256) -> __m256 {
    let u = exp(_mm256_sub_ps(_mm256_setzero_ps(), abs(x)));
    _mm256_add_ps(_mm256_max_ps(_mm256_setzero_ps(), x), log1p_unit(u))
}

/// `ln(1 + u)` for `u` in `[0, 1]`, as the AVX-512 version (Cephes'
/// `logf` polynomial with Goldberg's correction).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn log1p_unit(u: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let w = _mm256_add_ps(one, u);
    let high = _mm256_cmp_ps::<_CMP_GT_OQ>(w, _mm256_set1_ps(std::f32::consts::SQRT_2));
    let m = _mm256_blendv_ps(w, _mm256_mul_ps(w, _mm256_set1_ps(0.5)), high);
    let e = _mm256_and_ps(high, one);
    let f = _mm256_sub_ps(m, one);
    let z = _mm256_mul_ps(f, f);
    let mut p = _mm256_set1_ps(7.037_683_6e-2);
    for c in [
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ] {
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c));
    }
    let mut y = _mm256_mul_ps(_mm256_mul_ps(p, f), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.121_944_4e-4), y);
    y = _mm256_fmadd_ps(z, _mm256_set1_ps(-0.5), y);
    let log_w = _mm256_fmadd_ps(e, _mm256_set1_ps(0.693_359_4), _mm256_add_ps(f, y));
    // log(w) * u / (w - 1), and u itself where w rounded to 1.
    let rounded = _mm256_sub_ps(w, one);
    let exact = _mm256_cmp_ps::<_CMP_EQ_OQ>(rounded, _mm256_setzero_ps());
    let corrected = _mm256_div_ps(_mm256_mul_ps(log_w, u), rounded);
    _mm256_blendv_ps(corrected, u, exact)
}

/// `x (1 + erf(x / sqrt 2)) / 2` through `erfc`, as `jit/math.rs`'s (see
/// [`ERFC_TAIL`]). NaN stays NaN.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn gelu(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let half = _mm256_set1_ps(0.5);
    let xa = _mm256_min_ps(_mm256_set1_ps(GELU_TAIL_END), abs(x));
    let a = _mm256_mul_ps(xa, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let t = _mm256_div_ps(one, _mm256_fmadd_ps(a, half, one));
    let mut p = _mm256_set1_ps(ERFC_TAIL[0]);
    for &k in &ERFC_TAIL[1..] {
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(k));
    }
    // -a^2 + p, the square exact inside the fused multiply-add.
    let e = exp(_mm256_mul_ps(_mm256_fnmadd_ps(a, a, p), half));
    // `m = (t/2 e) e`, with `x` multiplied in before the last factor so
    // that no partial product underflows before the result does.
    let k = _mm256_mul_ps(_mm256_mul_ps(t, half), e);
    let neg = _mm256_mul_ps(_mm256_mul_ps(x, k), e);
    let pos = _mm256_fnmadd_ps(_mm256_mul_ps(xa, k), e, x);
    _mm256_blendv_ps(
        neg,
        pos,
        _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_setzero_ps()),
    )
}

/// `1 / (1 + exp(-x))`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sigmoid(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    let s = recip(_mm256_add_ps(one, e));
    // Exactly 0 where `exp(-x)` overflows, as `1 / (1 + inf)`: so that
    // `silu(-inf)` is `-inf * 0 = NaN`, as in the interpreter.
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-OVERFLOW));
    _mm256_andnot_ps(under, s)
}

/// [`sigmoid`] of four vectors, each step for all four before the next:
/// one vector's `exp` is a chain of some twenty dependent instructions,
/// which on its own kept Zen 3's FP scheduler full and its units idle.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sigmoid4(x: [__m256; 4]) -> [__m256; 4] {
    let mut t = [_mm256_setzero_ps(); 4];
    let mut n = [_mm256_setzero_ps(); 4];
    let mut p = [_mm256_setzero_ps(); 4];
    for i in 0..4 {
        // exp(-x), as `exp`.
        let m = _mm256_sub_ps(_mm256_setzero_ps(), x[i]);
        t[i] = _mm256_min_ps(
            _mm256_set1_ps(88.0),
            _mm256_max_ps(_mm256_set1_ps(-87.0), m),
        );
    }
    for i in 0..4 {
        n[i] = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            t[i],
            _mm256_set1_ps(std::f32::consts::LOG2_E),
        ));
    }
    for i in 0..4 {
        t[i] = _mm256_fnmadd_ps(n[i], _mm256_set1_ps(0.693_359_4), t[i]);
    }
    for i in 0..4 {
        t[i] = _mm256_fnmadd_ps(n[i], _mm256_set1_ps(-2.121_944_4e-4), t[i]);
    }
    for p in &mut p {
        *p = _mm256_set1_ps(1.0 / 720.0);
    }
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        for i in 0..4 {
            p[i] = _mm256_fmadd_ps(p[i], t[i], _mm256_set1_ps(c));
        }
    }
    let mut out = [_mm256_setzero_ps(); 4];
    for i in 0..4 {
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n[i]),
            _mm256_set1_epi32(127),
        ));
        let e = _mm256_mul_ps(p[i], _mm256_castsi256_ps(bits));
        // exp(-x) is 0 where -x is below the clamp, and the sigmoid 0
        // where exp(-x) overflows (as `sigmoid`).
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(x[i], _mm256_set1_ps(87.0));
        let e = _mm256_andnot_ps(big, e);
        let s = recip(_mm256_add_ps(_mm256_set1_ps(1.0), e));
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x[i], _mm256_set1_ps(-OVERFLOW));
        out[i] = _mm256_andnot_ps(under, s);
    }
    out
}

/// `1 / d` from the 12-bit estimate and one Newton step (about 1e-7
/// relative): a quarter of `divps`'s cost on Zen 3, where a tile's
/// sigmoids waited on the divider. NaN stays NaN.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn recip(d: __m256) -> __m256 {
    let r = _mm256_rcp_ps(d);
    // r (2 - d r)
    _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0)))
}

/// `exp(x)` as the AVX-512 version, with `2^n` built in the exponent bits
/// (AVX2 has no `scalef`): `n` lies in `[-126, 127]` after the clamp, so
/// `2^n` is a normal float.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp(x: __m256) -> __m256 {
    let x_in = x;
    let x = _mm256_min_ps(
        _mm256_set1_ps(88.0),
        _mm256_max_ps(_mm256_set1_ps(-87.0), x),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln2 = 0.693359375 - 2.12194440e-4; the first part has few enough
    // bits that `n * 0.693359375` is exact.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    let e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    // 0 below the clamp (the true value is at most subnormal there), so
    // that `exp(-inf)` is 0 and products with it (`x * sigmoid(x)`,
    // `x * tanh(softplus(x))`) vanish as in the interpreter.
    _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x_in, _mm256_set1_ps(-87.0)), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each activation in ymm against the scalar definition
    /// (`Activation::apply`, libm's functions) over a range with the
    /// clamps' edges, zero, tiny values and NaN.
    #[test]
    fn every_activation_matches_the_scalar_definition() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let mut xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.01).collect();
        xs.extend([
            -100.0, -88.5, -87.0, -20.0, -1e-4, -1e-9, 0.0, -0.0, 1e-9, 1e-4, 20.0, 88.0, 90.0,
            100.0,
        ]);
        xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        while !xs.len().is_multiple_of(8) {
            xs.push(0.5);
        }
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::Clip {
                min: -1.0,
                max: 6.0,
            },
            Activation::LeakyRelu {
                negative_slope: 0.1,
            },
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Elu {
                alpha: 1.3,
                scale: 1.05,
            },
            Activation::Celu { alpha: 0.7 },
            // Overflows to -inf for x below -44 (the fuzzer's find).
            Activation::Celu { alpha: -0.5 },
            Activation::Softplus,
            Activation::Softsign,
            Activation::Hardsigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Activation::Hardswish,
            Activation::Silu,
            Activation::Mish,
            Activation::Gelu,
            Activation::GeluTanh,
        ];
        for act in acts {
            // One vector at a time (`apply_act`), and all of them in one
            // call (`apply_act_all`, four at a time for some).
            let mut all: Vec<__m256> = xs
                .chunks_exact(8)
                // SAFETY: AVX2 was checked above; each chunk holds 8 floats.
                .map(|chunk| unsafe { _mm256_loadu_ps(chunk.as_ptr()) })
                .collect();
            // SAFETY: AVX2 and FMA were checked above.
            unsafe { apply_act_all(&vec_act(act), &mut all) };
            for (chunk, whole) in xs.chunks_exact(8).zip(&all) {
                let (mut out, mut out_all) = ([0.0f32; 8], [0.0f32; 8]);
                // SAFETY: AVX2 and FMA were checked above; `chunk` and
                // `out` hold eight floats.
                unsafe {
                    let v = apply_act(&vec_act(act), _mm256_loadu_ps(chunk.as_ptr()));
                    _mm256_storeu_ps(out.as_mut_ptr(), v);
                    _mm256_storeu_ps(out_all.as_mut_ptr(), *whole);
                }
                let pairs = chunk.iter().zip(&out).chain(chunk.iter().zip(&out_all));
                for (&x, &got) in pairs {
                    let want = act.apply(x);
                    if want.is_nan() {
                        assert!(got.is_nan(), "{act:?}({x}) = {got}, want NaN");
                        continue;
                    }
                    if want.is_infinite() {
                        assert_eq!(got, want, "{act:?}({x})");
                        continue;
                    }
                    if matches!(act, Activation::Elu { .. }) && want == 0.0 {
                        // elu(-0) is -0: a reciprocal after it gives -inf.
                        assert_eq!(
                            got.is_sign_negative(),
                            want.is_sign_negative(),
                            "{act:?}({x}) = {got}, want {want}"
                        );
                    }
                    let tolerance = 1e-5 * want.abs().max(1.0);
                    assert!(
                        (got - want).abs() <= tolerance,
                        "{act:?}({x}) = {got}, want {want}"
                    );
                }
            }
        }
    }
}
