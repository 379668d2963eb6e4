//! AVX-512F micro-kernels: a 14x32 register tile (28 zmm accumulators, two
//! zmm of B per k step, A broadcast from the packed panel), with every row
//! count 1..=14 and one- or two-vector widths monomorphised for the edges,
//! masked loads and stores for partial vectors, every activation applied
//! in registers (a vector `exp` for sigmoid and tanh), and a "narrow" kernel that
//! vectorises along M instead (for N < 8 and for thin column tails, which
//! after a vector of columns share its pass over A).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::epilogue::{store_scalar, Tile};
use super::Activation;
use crate::kernels::math::{ERFC_TAIL, EXPM1_TAYLOR, GELU_TAIL_END};
use crate::kernels::math::{TANH_CLAMP, TANH_P, TANH_Q};

/// Rows of A per panel (and per register tile).
pub(crate) const MR: usize = 14;
/// Columns of B per packed panel (two zmm).
pub(crate) const NR: usize = 32;
/// A column tail (past the last whole zmm) up to this wide goes to the
/// narrow kernel.
pub(crate) const NARROW_MAX: usize = 8;

/// The activation in the form the vector code applies it: the activation
/// and its parameters splatted once per kernel call.
#[derive(Clone, Copy)]
pub(crate) struct VecAct {
    act: Activation,
    lo: __m512,
    hi: __m512,
}

#[target_feature(enable = "avx512f")]
pub(crate) fn vec_act(act: Activation) -> VecAct {
    let zero = _mm512_setzero_ps();
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
        Activation::Clip { min, max } => (_mm512_set1_ps(min), _mm512_set1_ps(max)),
        Activation::LeakyRelu { negative_slope } => (_mm512_set1_ps(negative_slope), zero),
        Activation::Elu { alpha, scale } => (_mm512_set1_ps(alpha), _mm512_set1_ps(scale)),
        Activation::Celu { alpha } => (_mm512_set1_ps(alpha), _mm512_set1_ps(1.0 / alpha)),
        Activation::Hardsigmoid { alpha, beta } => (_mm512_set1_ps(alpha), _mm512_set1_ps(beta)),
    };
    VecAct { act, lo, hi }
}

/// `act` applied to the sixteen lanes of `x`: the piecewise-linear
/// activations, sigmoid and SiLU inlined into the kernels' epilogues, the
/// others in [`transcendental`]. The whole match did not inline, and one
/// call per vector took 6% of MobileNetV2's time at one thread (AMD EPYC
/// Zen 5), as it had on AVX2 (see `avx2_act::apply_act`).
///
/// # Safety
/// AVX-512F must be available.
#[inline(always)]
pub(crate) unsafe fn apply_act(act: &VecAct, x: __m512) -> __m512 {
    // SAFETY: the caller's.
    unsafe {
        match act.act {
            Activation::None => x,
            // `maxps`/`minps` return their second operand when either is
            // NaN: `x` second keeps a NaN, as the interpreter does.
            Activation::Relu => _mm512_max_ps(_mm512_setzero_ps(), x),
            Activation::Clip { .. } => _mm512_min_ps(act.hi, _mm512_max_ps(act.lo, x)),
            Activation::LeakyRelu { .. } => {
                let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
                _mm512_mask_mul_ps(x, neg, x, act.lo)
            }
            // SiLU and sigmoid inline too: EfficientNet-B0's SiLU convs
            // were 4% slower with them out of line; and the piecewise-
            // linear hard ones, which as calls were 9% of MobileNetV3's
            // hardswish stem (AMD EPYC Zen 4).
            Activation::Sigmoid => sigmoid(x),
            Activation::Silu => _mm512_mul_ps(x, sigmoid(x)),
            Activation::Hardsigmoid { .. } => hardsigmoid(act, x),
            Activation::Hardswish => hardswish(x),
            _ => transcendental(act, x),
        }
    }
}

/// The activations [`apply_act`] does not inline.
#[target_feature(enable = "avx512f")]
fn transcendental(act: &VecAct, x: __m512) -> __m512 {
    match act.act {
        Activation::None
        | Activation::Relu
        | Activation::Clip { .. }
        | Activation::LeakyRelu { .. } => x,
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => tanh(x),
        Activation::Elu { .. } => {
            // x > 0 ? x : alpha * expm1(x), times the scale.
            let neg = _mm512_mul_ps(act.lo, exp_m1(x));
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps());
            _mm512_mul_ps(act.hi, _mm512_mask_blend_ps(pos, neg, x))
        }
        Activation::Celu { .. } => {
            let neg = _mm512_mul_ps(act.lo, exp_m1(_mm512_mul_ps(x, act.hi)));
            // Zero first: `max` and `min` return their second operand when
            // one is NaN, so NaN stays NaN, as in the interpreter.
            _mm512_add_ps(
                _mm512_max_ps(_mm512_setzero_ps(), x),
                _mm512_min_ps(_mm512_setzero_ps(), neg),
            )
        }
        Activation::Softplus => softplus(x),
        Activation::Softsign => {
            let d = _mm512_add_ps(_mm512_abs_ps(x), _mm512_set1_ps(1.0));
            _mm512_div_ps(x, d)
        }
        Activation::Hardsigmoid { .. } => hardsigmoid(act, x),
        Activation::Hardswish => hardswish(x),
        Activation::Silu => _mm512_mul_ps(x, sigmoid(x)),
        Activation::Mish => _mm512_mul_ps(x, tanh(softplus(x))),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => {
            let x2 = _mm512_mul_ps(x, x);
            let p = _mm512_fmadd_ps(x2, _mm512_set1_ps(0.044_715), _mm512_set1_ps(1.0));
            let k = _mm512_set1_ps((2.0 / std::f32::consts::PI).sqrt());
            half_x_one_plus(x, tanh(_mm512_mul_ps(_mm512_mul_ps(x, p), k)))
        }
    }
}

/// `max(0, min(1, alpha * x + beta))`, alpha and beta in `act`.
#[target_feature(enable = "avx512f")]
#[inline]
fn hardsigmoid(act: &VecAct, x: __m512) -> __m512 {
    unit_clamp(_mm512_fmadd_ps(x, act.lo, act.hi))
}

/// `x * max(0, min(1, x / 6 + 1/2))`.
#[target_feature(enable = "avx512f")]
#[inline]
fn hardswish(x: __m512) -> __m512 {
    let g = _mm512_fmadd_ps(x, _mm512_set1_ps(1.0 / 6.0), _mm512_set1_ps(0.5));
    _mm512_mul_ps(x, unit_clamp(g))
}

/// `min(max(x, 0), 1)`.
#[target_feature(enable = "avx512f")]
#[inline]
fn unit_clamp(x: __m512) -> __m512 {
    // `x` second in `max` and `min`, which return their second operand
    // when one is NaN: a NaN stays NaN, as in the interpreter.
    _mm512_min_ps(_mm512_set1_ps(1.0), _mm512_max_ps(_mm512_setzero_ps(), x))
}

/// `x/2 * (1 + t)`, GELU's last step.
#[target_feature(enable = "avx512f")]
#[inline]
fn half_x_one_plus(x: __m512, t: __m512) -> __m512 {
    let h = _mm512_mul_ps(x, _mm512_set1_ps(0.5));
    _mm512_fmadd_ps(h, t, h)
}

/// The rational `tanh` of `jit/math.rs` and the cell steps (within 4 ulp),
/// exactly ±1 beyond the clamp. `2 sigmoid(2x) - 1` was 1e-7 off near zero
/// in absolute terms, which `mish(-1e30) = x tanh(softplus(x))` turned into
/// 6e22 (found on AVX2, whose kernels share these approximations). NaN
/// stays NaN.
#[target_feature(enable = "avx512f")]
#[inline]
fn tanh(x: __m512) -> __m512 {
    let saturated = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(x), _mm512_set1_ps(TANH_CLAMP));
    let one = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN)),
        _mm512_castps_si512(_mm512_set1_ps(1.0)),
    ));
    let c = _mm512_min_ps(
        _mm512_set1_ps(TANH_CLAMP),
        _mm512_max_ps(_mm512_set1_ps(-TANH_CLAMP), x),
    );
    let x2 = _mm512_mul_ps(c, c);
    let mut p = _mm512_set1_ps(TANH_P[0]);
    for &k in &TANH_P[1..] {
        p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(k));
    }
    let mut q = _mm512_set1_ps(TANH_Q[0]);
    for &k in &TANH_Q[1..] {
        q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(k));
    }
    _mm512_mask_blend_ps(saturated, _mm512_div_ps(_mm512_mul_ps(p, c), q), one)
}

/// `exp(x) - 1`, by its Taylor series where `|x| < 1/2` and the
/// subtraction would cancel digits.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp_m1(x: __m512) -> __m512 {
    let em1 = _mm512_sub_ps(exp(x), _mm512_set1_ps(1.0));
    // The Taylor series near 0, where the subtraction cancels digits (as
    // the JIT's `exp_m1`); a product keeps `-0`, as `expm1` does.
    let mut factor = _mm512_set1_ps(EXPM1_TAYLOR[0]);
    for &c in &EXPM1_TAYLOR[1..] {
        factor = _mm512_fmadd_ps(factor, x, _mm512_set1_ps(c));
    }
    let small = _mm512_mul_ps(x, factor);
    let near_zero = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(x), _mm512_set1_ps(0.5));
    let em1 = _mm512_mask_blend_ps(near_zero, em1, small);
    // `exp` clamps at 88; `expm1` overflows to infinity past ln(MAX)
    // (`celu` with a negative alpha reaches it).
    let over = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(OVERFLOW));
    _mm512_mask_blend_ps(over, em1, _mm512_set1_ps(f32::INFINITY))
}

/// Where `exp` overflows: `ln(f32::MAX)`, rounded down.
const OVERFLOW: f32 = 88.72;

/// `ln(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`.
#[target_feature(enable = "avx512f")]
#[inline]
fn softplus(x: __m512) -> __m512 {
    let u = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
    _mm512_add_ps(_mm512_max_ps(_mm512_setzero_ps(), x), log1p_unit(u))
}

/// `ln(1 + u)` for `u` in `[0, 1]`: Cephes' `logf` polynomial on `w = 1 +
/// u` (halved above `sqrt 2`), corrected by `u / (w - 1)` for the rounding
/// of `w` (Goldberg's `log1p`), so small `u` keep their precision.
#[target_feature(enable = "avx512f")]
#[inline]
fn log1p_unit(u: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let w = _mm512_add_ps(one, u);
    let high = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(w, _mm512_set1_ps(std::f32::consts::SQRT_2));
    let m = _mm512_mask_mul_ps(w, high, w, _mm512_set1_ps(0.5));
    let e = _mm512_maskz_mov_ps(high, one);
    let f = _mm512_sub_ps(m, one);
    let z = _mm512_mul_ps(f, f);
    let mut p = _mm512_set1_ps(7.037_683_6e-2);
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
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    let mut y = _mm512_mul_ps(_mm512_mul_ps(p, f), z);
    y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.121_944_4e-4), y);
    y = _mm512_fmadd_ps(z, _mm512_set1_ps(-0.5), y);
    let log_w = _mm512_fmadd_ps(e, _mm512_set1_ps(0.693_359_4), _mm512_add_ps(f, y));
    // log(w) * u / (w - 1), and u itself where w rounded to 1.
    let rounded = _mm512_sub_ps(w, one);
    let exact = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(rounded, _mm512_setzero_ps());
    let corrected = _mm512_div_ps(_mm512_mul_ps(log_w, u), rounded);
    _mm512_mask_blend_ps(exact, corrected, u)
}

/// `x (1 + erf(x / sqrt 2)) / 2` through `erfc`, as `jit/math.rs`'s (see
/// [`ERFC_TAIL`]). NaN stays NaN.
#[target_feature(enable = "avx512f")]
#[inline]
fn gelu(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let half = _mm512_set1_ps(0.5);
    let xa = _mm512_min_ps(_mm512_set1_ps(GELU_TAIL_END), _mm512_abs_ps(x));
    let a = _mm512_mul_ps(xa, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let t = _mm512_div_ps(one, _mm512_fmadd_ps(a, half, one));
    let mut p = _mm512_set1_ps(ERFC_TAIL[0]);
    for &k in &ERFC_TAIL[1..] {
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(k));
    }
    // -a^2 + p, the square exact inside the fused multiply-add.
    let e = exp(_mm512_mul_ps(_mm512_fnmadd_ps(a, a, p), half));
    // `m = (t/2 e) e`, with `x` multiplied in before the last factor so
    // that no partial product underflows before the result does.
    let k = _mm512_mul_ps(_mm512_mul_ps(t, half), e);
    let neg = _mm512_mul_ps(_mm512_mul_ps(x, k), e);
    let pos = _mm512_fnmadd_ps(_mm512_mul_ps(xa, k), e, x);
    _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps()),
        neg,
        pos,
    )
}

/// `1 / (1 + exp(-x))`, with exp to about 2 ulp (see [`exp`]).
#[target_feature(enable = "avx512f")]
#[inline]
fn sigmoid(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
    let s = _mm512_div_ps(one, _mm512_add_ps(one, e));
    // Exactly 0 where `exp(-x)` overflows, as `1 / (1 + inf)`: so that
    // `silu(-inf)` is `-inf * 0 = NaN`, as in the interpreter.
    let kept = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(-OVERFLOW));
    _mm512_maskz_mov_ps(kept, s)
}

/// `exp(x)`: `x = n ln2 + r` with `|r| <= ln2 / 2` (ln2 split in two for
/// an exact reduction), a degree-6 Taylor polynomial for `exp(r)` (error
/// below 2e-7 relative on that interval), scaled by `2^n` with `scalef`.
/// Inputs are clamped to where the result is finite and non-zero; below
/// the clamp the result is 0, and NaN stays NaN.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp(x: __m512) -> __m512 {
    let x_in = x;
    // `x` second in `max` and `min`: a NaN stays NaN.
    let x = _mm512_min_ps(
        _mm512_set1_ps(88.0),
        _mm512_max_ps(_mm512_set1_ps(-87.0), x),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    // ln2 = 0.693359375 - 2.12194440e-4; the first part has few enough
    // bits that `n * 0.693359375` is exact.
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    // 0 below the clamp (the true value is at most subnormal there), so
    // that `exp(-inf)` is 0 and products with it (`x * sigmoid(x)`,
    // `x * tanh(softplus(x))`) vanish as in the interpreter.
    let kept = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x_in, _mm512_set1_ps(-87.0));
    _mm512_maskz_mov_ps(kept, _mm512_scalef_ps(p, n))
}

/// Input columns `at[l * stride]` for the 16 lanes `l`, every one in a
/// padded row (the depthwise and pooling rows' taps).
///
/// # Safety
/// AVX-512F must be available, and `at[0 .. 16 * stride]` readable.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn window(at: *const f32, stride: usize) -> __m512 {
    match stride {
        1 => _mm512_loadu_ps(at),
        2 => {
            // The 32-column span as two vectors, then its even lanes.
            let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            _mm512_permutex2var_ps(_mm512_loadu_ps(at), even, _mm512_loadu_ps(at.add(16)))
        }
        _ => {
            let index = _mm512_mullo_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                _mm512_set1_epi32(stride as i32),
            );
            _mm512_i32gather_ps::<4>(index, at)
        }
    }
}

/// Columns one chunk's [`window`] reads from its first.
pub(crate) fn span(stride: usize) -> usize {
    match stride {
        1 => 16,
        2 => 32,
        s => 15 * s + 1,
    }
}

pub(crate) fn lane_mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Computes one tile: `t.rows <= MR` rows, `t.cols <= NR` columns.
///
/// # Safety
/// AVX-512F must be available; the tile's pointers must be valid for its
/// extent (A: `kc` steps of `MR` floats; B: `kc` rows of `t.cols` floats at
/// stride `b_stride`, readable up to the next multiple of 16 columns; C and
/// the residual: `rows x cols`).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tile(t: &Tile) {
    let cols = t.cols;
    // A thin tail (at most 8 columns past the last whole vector) costs one
    // zmm FMA per column and k step as vectors along M, against one per
    // row (14) as a masked vector here: after one vector of a whole-height
    // tile in the same pass (`with_tail`), else in the narrow kernel.
    let tail = cols % 16;
    let wide = if tail <= NARROW_MAX {
        cols - tail
    } else {
        cols
    };
    // SAFETY: the sub-tiles lie inside `t`, which the caller vouched for.
    unsafe {
        if wide == 16 && t.rows == MR && tail > 0 {
            return with_tail(t, tail);
        }
        if wide > 0 {
            let w = t.columns(0, wide);
            // Every activation, sigmoid and tanh included, is applied in
            // registers.
            if wide > 16 {
                tiles::<2>(&w, 1, 0);
            } else {
                tiles::<1>(&w, 1, 0);
            }
        }
        if wide < cols {
            narrow(&t.columns(wide, cols - wide));
        }
    }
}

/// A whole-height tile of one vector and a thin tail, `16 + tail` columns
/// (`tail <= NARROW_MAX`), in one pass over A: the tail's columns are
/// vectors along M, as in the narrow kernel, fed from the same A step as
/// the vector's rows. As a pass of its own the narrow kernel streamed A
/// again and read one line of B per k step for a column or two: on 7x7
/// maps (49 = 32 + 17 columns) the 49th column cost 10% of the GEMM
/// (GEMM bench, `400x49x400` 88.8% of the FMA peak against 95.4% for 48
/// columns; 94.0% with this kernel, AMD EPYC Zen 4).
///
/// # Safety
/// As for [`tile`], with `t.rows == MR` and `t.cols == 16 + tail`.
#[target_feature(enable = "avx512f")]
unsafe fn with_tail(t: &Tile, tail: usize) {
    // SAFETY: forwarded.
    unsafe {
        match tail {
            1 => kernel_tail::<1>(t),
            2 => kernel_tail::<2>(t),
            3 => kernel_tail::<3>(t),
            4 => kernel_tail::<4>(t),
            5 => kernel_tail::<5>(t),
            6 => kernel_tail::<6>(t),
            7 => kernel_tail::<7>(t),
            _ => kernel_tail::<8>(t),
        }
    }
}

/// [`with_tail`] for a tail of `TAIL` columns: 14 accumulators for the
/// vector's rows, `TAIL` for the tail's columns.
///
/// # Safety
/// As for [`with_tail`], with `tail == TAIL`.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_tail<const TAIL: usize>(t: &Tile) {
    let rows = lane_mask(MR);
    let mut acc = [_mm512_setzero_ps(); MR];
    let mut columns = [_mm512_setzero_ps(); TAIL];
    // SAFETY: `kc` steps of A (MR floats each) and of B (`b_stride` apart,
    // `16 + TAIL` readable floats each) are valid per the caller;
    // prefetches never fault.
    unsafe {
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.kc {
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(A_PREFETCH).cast::<i8>());
            let bv = _mm512_loadu_ps(b);
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(r)), bv, *acc);
            }
            let av = _mm512_maskz_loadu_ps(rows, a);
            for (j, column) in columns.iter_mut().enumerate() {
                *column = _mm512_fmadd_ps(av, _mm512_set1_ps(*b.add(16 + j)), *column);
            }
            a = a.wrapping_add(MR);
            b = b.wrapping_add(t.b_stride);
        }
        // Copied into a one-vector tile for the epilogue here: kept as one
        // in the loop, the accumulators left their registers (400x49x400
        // 94 -> 51-64% of the peak, AMD EPYC Zen 4). A loop, not `map`: a
        // closure does not inherit the target feature, and was called per
        // vector.
        let mut vectors = [[_mm512_setzero_ps(); 1]; MR];
        for (v, &x) in vectors.iter_mut().zip(&acc) {
            v[0] = x;
        }
        store::<MR, 1>(&t.columns(0, 16), &vectors);
        store_columns(&t.columns(16, TAIL), &columns);
    }
}

/// The epilogue of columns computed as vectors along M (the narrow
/// kernel's, a tail's): column `j` of the tile in `columns[j]`, lane `r`
/// its row `r`, transposed through memory.
///
/// # Safety
/// As for [`narrow`], with `t.cols == columns.len() <= NARROW_MAX`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_columns(t: &Tile, columns: &[__m512]) {
    let n = columns.len();
    let mut out = [0.0f32; MR * NARROW_MAX];
    for (j, &c) in columns.iter().enumerate() {
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` holds 16 floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), c) };
        for (r, &x) in lanes.iter().enumerate().take(t.rows) {
            out[r * n + j] = x;
        }
    }
    // SAFETY: the tile's pointers are valid per the caller.
    unsafe { store_scalar(t, &out, n) };
}

/// `panels` tiles side by side, `16 * NV` columns each (the last may be
/// narrower): the first is `t`, each next one `16 * NV` columns of C (and
/// of the residual) further right, its B `b_step` floats further on. The
/// row count is dispatched once per call rather than once per tile: with K
/// of 16 to 24 (MobileNetV2's first expansions) a tile is only a few
/// hundred cycles of FMAs, and the GEMM went 3-7% faster.
///
/// # Safety
/// As for [`tile`], for every one of the tiles.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tiles<const NV: usize>(t: &Tile, panels: usize, b_step: usize) {
    // SAFETY: forwarded.
    unsafe {
        match t.rows {
            1 => tile_row::<1, NV>(t, panels, b_step),
            2 => tile_row::<2, NV>(t, panels, b_step),
            3 => tile_row::<3, NV>(t, panels, b_step),
            4 => tile_row::<4, NV>(t, panels, b_step),
            5 => tile_row::<5, NV>(t, panels, b_step),
            6 => tile_row::<6, NV>(t, panels, b_step),
            7 => tile_row::<7, NV>(t, panels, b_step),
            8 => tile_row::<8, NV>(t, panels, b_step),
            9 => tile_row::<9, NV>(t, panels, b_step),
            10 => tile_row::<10, NV>(t, panels, b_step),
            11 => tile_row::<11, NV>(t, panels, b_step),
            12 => tile_row::<12, NV>(t, panels, b_step),
            13 => tile_row::<13, NV>(t, panels, b_step),
            14 => tile_row::<14, NV>(t, panels, b_step),
            _ => {}
        }
    }
}

/// # Safety
/// As for [`tiles`], with `t.rows == ROWS`.
#[target_feature(enable = "avx512f")]
unsafe fn tile_row<const ROWS: usize, const NV: usize>(t: &Tile, panels: usize, b_step: usize) {
    let mut t = *t;
    for _ in 0..panels {
        // SAFETY: the caller vouched for every tile.
        unsafe { kernel::<ROWS, NV>(&t) };
        t.b = t.b.wrapping_add(b_step);
        t.c = t.c.wrapping_add(16 * NV);
        if !t.epi.residual.is_null() {
            t.epi.residual = t.epi.residual.wrapping_add(16 * NV);
        }
    }
}

/// How far ahead (in floats) the kernel prefetches packed A into L1. The
/// weights are read from memory once per run, and on the 7x7 layers
/// (few columns, so few FMAs per weight) the hardware prefetcher did not
/// keep up: with the caches flushed before each call, 1280x49x320 took
/// 441 us against 383 warm; prefetching 512 to 1024 floats ahead, 400-403
/// (2048 was slower warm). A panel is 14 floats per step, so this is
/// about 55 steps ahead, into the next panel near the end of one.
const A_PREFETCH: usize = 768;

/// The register-blocked kernel: `ROWS x (16 * NV)` accumulators.
///
/// The first k step sets the accumulators to its products (`a * b`, as an
/// FMA onto zero rounds): zeroed instead, the larger tiles' accumulators,
/// which the epilogue indexes in memory, were zeroed there by a `memset`
/// call per tile, 2.5% of MobileNetV2's time (K of 16 to 24, AMD EPYC
/// Zen 4).
///
/// # Safety
/// As for [`tile`], with `t.rows == ROWS` and `t.cols <= 16 * NV`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn kernel<const ROWS: usize, const NV: usize>(t: &Tile) {
    if t.kc == 0 {
        // SAFETY: forwarded.
        unsafe { store_tile(t, &[[_mm512_setzero_ps(); NV]; ROWS]) };
        return;
    }
    // The tile's old C (or residual) is needed after the loop; prefetch it
    // this many steps before the end, late enough that streaming B through
    // L1 does not evict it again.
    const PREFETCH_AHEAD: usize = 24;
    let main = t.kc.saturating_sub(PREFETCH_AHEAD).max(1);
    // SAFETY: `kc >= 1` steps of A (MR floats each) and B (`b_stride`
    // apart, `16 * NV` readable floats each) are valid per the caller;
    // prefetches never fault.
    let acc = unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; ROWS];
        step::<ROWS, NV, true>(&mut acc, t.a, t.b);
        let (mut a, mut b) = (t.a.wrapping_add(MR), t.b.wrapping_add(t.b_stride));
        for _ in 1..main {
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(A_PREFETCH).cast::<i8>());
            step::<ROWS, NV, false>(&mut acc, a, b);
            // Wrapping: after the last step these may point past the end.
            a = a.wrapping_add(MR);
            b = b.wrapping_add(t.b_stride);
        }
        let (src, ld) = if t.first {
            (t.epi.residual.cast_mut(), t.epi.ldr)
        } else {
            (t.c, t.ldc)
        };
        if !src.is_null() {
            for r in 0..ROWS {
                let row = src.wrapping_add(r * ld).cast::<i8>();
                _mm_prefetch::<_MM_HINT_T0>(row);
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64 * NV - 4));
            }
        }
        for _ in main..t.kc {
            step::<ROWS, NV, false>(&mut acc, a, b);
            a = a.wrapping_add(MR);
            b = b.wrapping_add(t.b_stride);
        }
        acc
    };
    // SAFETY: forwarded.
    unsafe { store(t, &acc) };
}

/// The epilogue of one tile: [`store_clamped`] where it applies (one K
/// block, an activation that is a clamp), else [`store_tile`].
///
/// # Safety
/// As for [`kernel`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store<const ROWS: usize, const NV: usize>(t: &Tile, acc: &[[__m512; NV]; ROWS]) {
    // SAFETY: forwarded.
    unsafe {
        if let (true, true, Some((lo, hi))) = (t.first, t.last, clamp(t.epi.activation)) {
            match (!t.epi.bias.is_null(), !t.epi.residual.is_null()) {
                (false, false) => store_clamped::<ROWS, NV, false, false>(t, acc, lo, hi),
                (true, false) => store_clamped::<ROWS, NV, true, false>(t, acc, lo, hi),
                (false, true) => store_clamped::<ROWS, NV, false, true>(t, acc, lo, hi),
                (true, true) => store_clamped::<ROWS, NV, true, true>(t, acc, lo, hi),
            }
            return;
        }
        store_tile(t, acc);
    }
}

/// The bounds of an activation that is `min(hi, max(lo, x))`, as
/// [`apply_act`] computes it (`x` second, so a NaN stays NaN): none, ReLU
/// and clip.
fn clamp(act: Activation) -> Option<(f32, f32)> {
    match act {
        Activation::None => Some((f32::NEG_INFINITY, f32::INFINITY)),
        Activation::Relu => Some((0.0, f32::INFINITY)),
        Activation::Clip { min, max } => Some((min, max)),
        _ => None,
    }
}

/// [`store_tile`] for one K block with a clamp activation (see
/// [`clamp`]): `min(hi, max(lo, acc + bias + residual))`, the bias and
/// residual where `BIAS` and `RES`, with no per-vector branches, inlined
/// into the kernel so that the accumulators go from their registers to C.
/// As a call, `store_tile` took the accumulators through the stack and
/// branched on the epilogue per vector: 13% of the time of a K = 32
/// product (28x448x32, perf), whose tiles are 32 k steps (AMD EPYC Zen 4).
///
/// # Safety
/// As for [`kernel`], with `t.first` and `t.last`, a bias exactly when
/// `BIAS` and a residual exactly when `RES`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_clamped<const ROWS: usize, const NV: usize, const BIAS: bool, const RES: bool>(
    t: &Tile,
    acc: &[[__m512; NV]; ROWS],
    lo: f32,
    hi: f32,
) {
    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let last_mask = lane_mask(t.cols - 16 * (NV - 1));
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row `r < rows` and the masked lanes `< cols` are inside
        // the tile (of C and of the residual); the bias has a value per
        // row when `BIAS`. Masked-off lanes are neither read nor written.
        unsafe {
            let c = t.c.add(r * t.ldc);
            let res = t.epi.residual.wrapping_add(r * t.epi.ldr);
            let bias = if BIAS {
                _mm512_set1_ps(*t.epi.bias.add(r))
            } else {
                _mm512_setzero_ps()
            };
            for (v, &x) in row.iter().enumerate() {
                let m = if v + 1 == NV { last_mask } else { 0xffff };
                let x = if BIAS { _mm512_add_ps(x, bias) } else { x };
                let x = if RES {
                    _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, res.add(16 * v)))
                } else {
                    x
                };
                let x = _mm512_min_ps(hi, _mm512_max_ps(lo, x));
                if v + 1 == NV {
                    _mm512_mask_storeu_ps(c.add(16 * v), m, x);
                } else {
                    _mm512_storeu_ps(c.add(16 * v), x);
                }
            }
        }
    }
}

/// The epilogue of one tile: `acc` plus the bias and residual on the first
/// K block, or plus the old C on the others; the activation on the last.
///
/// # Safety
/// As for [`kernel`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_tile<const ROWS: usize, const NV: usize>(t: &Tile, acc: &[[__m512; NV]; ROWS]) {
    let act = vec_act(if t.last {
        t.epi.activation
    } else {
        Activation::None
    });
    let last_mask = lane_mask(t.cols - 16 * (NV - 1));
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row `r < rows` and the masked lanes `< cols` are inside
        // the tile; masked-off lanes are neither read nor written.
        unsafe {
            let c = t.c.add(r * t.ldc);
            let bias = if t.first && !t.epi.bias.is_null() {
                Some(_mm512_set1_ps(*t.epi.bias.add(r)))
            } else {
                None
            };
            for (v, &x) in row.iter().enumerate() {
                let m = if v + 1 == NV { last_mask } else { 0xffff };
                let mut x = x;
                if t.first {
                    if let Some(bias) = bias {
                        x = _mm512_add_ps(x, bias);
                    }
                    if !t.epi.residual.is_null() {
                        let res = t.epi.residual.add(r * t.epi.ldr + 16 * v);
                        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, res));
                    }
                } else {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, c.add(16 * v)));
                }
                x = apply_act(&act, x);
                _mm512_mask_storeu_ps(c.add(16 * v), m, x);
            }
        }
    }
}

/// One k step of the register tile: `acc[r] += a[r] * b[0 .. 16 * NV]`,
/// or with `FIRST`, `acc[r] = a[r] * b[0 .. 16 * NV]`.
///
/// # Safety
/// AVX-512F must be available; `a` must be readable for `ROWS` floats
/// and `b` for `16 * NV`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn step<const ROWS: usize, const NV: usize, const FIRST: bool>(
    acc: &mut [[__m512; NV]; ROWS],
    a: *const f32,
    b: *const f32,
) {
    // SAFETY: the caller passes one valid step of A and B.
    unsafe {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(b.add(16 * v));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let ar = _mm512_set1_ps(*a.add(r));
            for v in 0..NV {
                row[v] = if FIRST {
                    _mm512_mul_ps(ar, bv[v])
                } else {
                    _mm512_fmadd_ps(ar, bv[v], row[v])
                };
            }
        }
    }
}

/// The narrow kernel: vectorised along M (one zmm holds a column of the
/// tile, `rows <= 14` lanes), one accumulator per column and unrolled K
/// step, for `cols < NARROW_MAX`. Reads B one element at a time, so `b`
/// may be unpacked (any stride).
///
/// # Safety
/// As for [`tile`], except that B need only be readable for `cols` columns.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn narrow(t: &Tile) {
    // SAFETY: forwarded.
    unsafe {
        match t.cols {
            1 => narrow_n::<1, 4>(t),
            2 => narrow_n::<2, 2>(t),
            3 => narrow_n::<3, 2>(t),
            4 => narrow_n::<4, 1>(t),
            5 => narrow_n::<5, 1>(t),
            6 => narrow_n::<6, 1>(t),
            7 => narrow_n::<7, 1>(t),
            8 => narrow_n::<8, 1>(t),
            _ => {}
        }
    }
}

/// # Safety
/// As for [`narrow`], with `t.cols == NC`.
#[target_feature(enable = "avx512f")]
unsafe fn narrow_n<const NC: usize, const U: usize>(t: &Tile) {
    let m = lane_mask(t.rows);
    let mut acc = [[_mm512_setzero_ps(); NC]; U];
    let bs = t.b_stride;
    let mut kk = 0;
    // SAFETY: A steps hold MR >= rows floats (masked load reads `rows`),
    // B element `(kk, j)` for `kk < kc`, `j < cols` is valid.
    unsafe {
        while kk + U <= t.kc {
            for (u, accu) in acc.iter_mut().enumerate() {
                // As in the AVX2 narrow kernel (see its
                // `NARROW_PREFETCH`; not yet measured with AVX-512).
                _mm_prefetch::<_MM_HINT_T0>(t.a.wrapping_add((kk + u) * MR + 384).cast());
                let av = _mm512_maskz_loadu_ps(m, t.a.add((kk + u) * MR));
                let b = t.b.add((kk + u) * bs);
                for (j, x) in accu.iter_mut().enumerate() {
                    *x = _mm512_fmadd_ps(av, _mm512_set1_ps(*b.add(j)), *x);
                }
            }
            kk += U;
        }
        while kk < t.kc {
            let av = _mm512_maskz_loadu_ps(m, t.a.add(kk * MR));
            let b = t.b.add(kk * bs);
            for (j, x) in acc[0].iter_mut().enumerate() {
                *x = _mm512_fmadd_ps(av, _mm512_set1_ps(*b.add(j)), *x);
            }
            kk += 1;
        }
    }
    let mut sums = acc[0];
    for accu in acc.iter().skip(1) {
        for (s, &x) in sums.iter_mut().zip(accu) {
            *s = _mm512_add_ps(*s, x);
        }
    }
    // SAFETY: the tile's pointers are valid per the caller.
    unsafe { store_columns(t, &sums) };
}
