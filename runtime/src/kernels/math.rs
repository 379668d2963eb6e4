//! Constants of the approximations that both the JIT-compiled code and the
//! native kernels evaluate, kept in one place so that the two agree to the
//! bit: the rational `tanh`, GELU's `erfc` tail and `expm1`'s series.

/// The numerator and denominator coefficients of the rational `tanh`
/// (highest power first, in `x^2`), and where it clamps: used by
/// the JIT's `tanh`, the recurrent cells and the GEMM epilogues.
pub const TANH_P: [f32; 7] = [
    -2.760_768_5e-16,
    2.000_188e-13,
    -8.604_672e-11,
    5.122_297e-8,
    1.485_722_4e-5,
    6.372_619_3e-4,
    4.893_524_6e-3,
];
pub const TANH_Q: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3];
pub const TANH_CLAMP: f32 = 7.905_311;

/// GELU's tail, `m(x) = erfc(|x| / sqrt 2) / 2`, from which `gelu(x)` is
/// `x m` for `x <= 0` and `x - |x| m` above: Numerical Recipes' `erfcc`,
/// `erfc(a) = t exp(-a^2 + ERFC_TAIL(t))` with `t = 1 / (1 + a/2)` (within
/// 1.2e-7 relative for every `a >= 0`), these coefficients being the
/// polynomial's, highest power first. `x (1 + erf(u)) / 2` cancelled in the
/// negative tail (a few percent off below `u = -2.5`, 0 below -4, which a
/// `reciprocal` after it made `-inf` for `-1.4e7`; found by `graph_diff`).
/// The vector versions take `exp` of half the exponent and multiply by it
/// twice, so that `x m` reaches the smallest normal float (below it the
/// runtime flushes to 0) instead of stopping where `exp` flushes.
pub const ERFC_TAIL: [f32; 10] = [
    0.170_872_77,
    -0.822_152_23,
    1.488_515_9,
    -1.135_204,
    0.278_868_07,
    -0.186_288_06,
    0.096_784_18,
    0.374_091_96,
    1.000_023_7,
    -1.265_512_2,
];

/// `|x|` beyond which GELU's `m(x)` is 0 in f32 (`erfc(14)` is 1e-87): the
/// tail is computed on `min(|x|, GELU_TAIL_END)` so that `t` stays finite.
pub const GELU_TAIL_END: f32 = 19.8;

/// `expm1(x) / x = 1 + x/2! + ... + x^6/7!`, highest power first.
pub const EXPM1_TAYLOR: [f32; 7] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
];
