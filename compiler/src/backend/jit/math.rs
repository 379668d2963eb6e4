//! Lane-wise arithmetic for kernels, on `f32` or `f32x4` alike: `select`,
//! `exp` (Cephes' `expf` in Cranelift IR), `sigmoid`, `tanh`, `clamp` and
//! the activations of fused epilogues.

use super::Emit;
use crate::ir::{Activation, BinaryOp, UnaryFunction, SELU_ALPHA, SELU_SCALE};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
use nnc_runtime::kernels::math::{
    ERFC_TAIL, EXPM1_TAYLOR, GELU_TAIL_END, TANH_CLAMP, TANH_P, TANH_Q,
};

/// The largest `x` whose `exp` is finite in f32 (`ln(f32::MAX)` = 88.7228391,
/// rounded down).
const EXP_MAX: f32 = 88.722_83;

impl Emit<'_> {
    /// `c ? a : b` lane-wise, where `c` is the result of an `fcmp` on
    /// values of type `ty`.
    pub fn select(&mut self, ty: Type, c: Value, a: Value, b: Value) -> Value {
        if ty == types::F32 {
            self.b.ins().select(c, a, b)
        } else {
            let mask = self.b.ins().bitcast(ty, MemFlagsData::new(), c);
            self.b.ins().bitselect(mask, a, b)
        }
    }

    /// `exp(x)` to about 1 ulp for `x` in [-87, ln(f32::MAX)] (Cephes'
    /// `expf`): `x = n*ln2 + r` with `|r| <= ln2/2`, a degree-6 polynomial
    /// for `e^r`, and `2^n` built in the exponent bits of two factors
    /// (`n` reaches 128 near the top, one past the largest exponent).
    /// Below -87 it is 0, as the AVX2 and AVX-512 versions are (the true
    /// value is at most 1.6e-38 there, about what nnc's threads flush):
    /// clamped to `exp(-87)` instead, `silu(-90)` was `-1.5e-36` for the
    /// interpreter's `-7e-38`, 20 times it.
    pub fn exp(&mut self, ty: Type, x: Value) -> Value {
        let int_ty = if ty == types::F32 {
            types::I32
        } else {
            types::I32X4
        };
        let input = x;
        let x = self.clamp(ty, x, -87.0, EXP_MAX);
        let log2e = self.f(ty, std::f32::consts::LOG2_E);
        let t = self.b.ins().fmul(x, log2e);
        let n = self.b.ins().nearest(t);
        let c1 = self.f(ty, 0.693_359_4);
        let c2 = self.f(ty, -2.121_944_4e-4);
        let a = self.b.ins().fmul(n, c1);
        let r = self.b.ins().fsub(x, a);
        let a = self.b.ins().fmul(n, c2);
        let r = self.b.ins().fsub(r, a);
        let coeffs = [
            1.987_569_1e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ];
        let mut p = self.f(ty, coeffs[0]);
        for &c in &coeffs[1..] {
            let c = self.f(ty, c);
            p = self.b.ins().fmul(p, r);
            p = self.b.ins().fadd(p, c);
        }
        let r2 = self.b.ins().fmul(r, r);
        p = self.b.ins().fmul(p, r2);
        p = self.b.ins().fadd(p, r);
        let one = self.f(ty, 1.0);
        p = self.b.ins().fadd(p, one);
        let n = self.b.ins().fcvt_to_sint_sat(int_ty, n);
        let bias = if ty == types::F32 {
            self.b.ins().iconst(types::I32, 127)
        } else {
            let s = self.b.ins().iconst(types::I32, 127);
            self.b.ins().splat(int_ty, s)
        };
        // 2^n = 2^(n/2) 2^(n - n/2), each factor a normal float for n in
        // [-126, 128].
        let half = self.b.ins().sshr_imm_s(n, 1);
        let rest = self.b.ins().isub(n, half);
        let mut e = p;
        for k in [half, rest] {
            let k = self.b.ins().iadd(k, bias);
            let k = self.b.ins().ishl_imm_s(k, 23);
            let scale = self.b.ins().bitcast(ty, MemFlagsData::new(), k);
            e = self.b.ins().fmul(e, scale);
        }
        let lo = self.f(ty, -87.0);
        let below = self.b.ins().fcmp(FloatCC::LessThan, input, lo);
        let zero = self.f(ty, 0.0);
        self.select(ty, below, zero, e)
    }

    /// `tanh(x)` as a rational function (Eigen's float approximation, a few
    /// ulp from the true value): `x * P(x^2) / Q(x^2)` on `x` clamped to
    /// `[-7.9, 7.9]`, beyond which `tanh` rounds to `±1`. Half the work of
    /// going through `exp`, which matters in recurrent gate maths.
    pub fn tanh(&mut self, ty: Type, x: Value) -> Value {
        let input = x;
        let x = self.clamp(ty, x, -TANH_CLAMP, TANH_CLAMP);
        let x2 = self.b.ins().fmul(x, x);
        let horner = |e: &mut Self, coeffs: &[f32]| {
            let mut acc = e.f(ty, coeffs[0]);
            for &c in &coeffs[1..] {
                let c = e.f(ty, c);
                acc = e.b.ins().fma(acc, x2, c);
            }
            acc
        };
        let p = horner(self, &TANH_P);
        let p = self.b.ins().fmul(p, x);
        let q = horner(self, &TANH_Q);
        let t = self.b.ins().fdiv(p, q);
        // Beyond the clamp, exactly ±1: the quotient gives 1 - 6e-8 there,
        // which `gelu_tanh(-1e30) = x (1 + tanh(...)) / 2` would scale up.
        self.saturate(ty, input, TANH_CLAMP, t)
    }

    /// `r`, but `±1` with the sign of `x` where `|x| >= limit` (NaN keeps
    /// `r`): where f32's `tanh` or `erf` rounds to `±1`.
    fn saturate(&mut self, ty: Type, x: Value, limit: f32, r: Value) -> Value {
        let magnitude = self.b.ins().fabs(x);
        let limit = self.f(ty, limit);
        let saturated = self
            .b
            .ins()
            .fcmp(FloatCC::GreaterThanOrEqual, magnitude, limit);
        // `copysign(1, x)` by bits: Cranelift has no vector `fcopysign`.
        let sign_bit = self.f(ty, -0.0);
        let sign = self.b.ins().band(x, sign_bit);
        let one = self.f(ty, 1.0);
        let unit = self.b.ins().bor(sign, one);
        self.select(ty, saturated, unit, r)
    }

    /// `1 / (1 + exp(-x)) = (1 + tanh(x/2)) / 2`, within 2.4e-7 absolute
    /// but 0 from about -16 on: the recurrent cells' gates, which only
    /// ever multiply bounded states, where it is half the work of
    /// [`Emit::sigmoid`]'s `exp` and division.
    pub fn gate_sigmoid(&mut self, ty: Type, x: Value) -> Value {
        let half = self.f(ty, 0.5);
        let t = self.b.ins().fmul(x, half);
        let t = self.tanh(ty, t);
        self.b.ins().fma(t, half, half)
    }

    /// `1 / (1 + exp(-x))`, as `r = 1 / (1 + e)` with `e = exp(-|x|)` for
    /// `x >= 0` and `e r` below: a few ulp relative on both sides. The
    /// negative tail is where `silu` and a `log` or `reciprocal` after it
    /// need it (`(1 + tanh(x/2)) / 2`, used before, was exactly 0 from
    /// about -16 on, so `log(silu(-57))` was `-inf` for NaN; found by
    /// `graph_diff`).
    pub fn sigmoid(&mut self, ty: Type, x: Value) -> Value {
        let magnitude = self.b.ins().fabs(x);
        let minus = self.b.ins().fneg(magnitude);
        let e = self.exp(ty, minus);
        let one = self.f(ty, 1.0);
        let d = self.b.ins().fadd(one, e);
        let r = self.b.ins().fdiv(one, d);
        let er = self.b.ins().fmul(e, r);
        let zero = self.f(ty, 0.0);
        let positive = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero);
        // Below -87 `exp` is exactly 0, so `e r` is too: `silu(-inf)` is
        // `-inf * 0 = NaN`, as in the interpreter.
        self.select(ty, positive, r, er)
    }

    /// `x < lo ? lo : x`: the interpreter's lower clamp (a NaN stays NaN,
    /// -0 stays -0). Written as this compare-and-select so that Cranelift
    /// lowers the vector form to one `maxps`; its `fmax` (which orders
    /// -0 < +0) takes about eight instructions.
    pub fn at_least(&mut self, ty: Type, x: Value, lo: f32) -> Value {
        let lo = self.f(ty, lo);
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        self.select(ty, below, lo, x)
    }

    /// `hi < x ? hi : x`: the upper clamp, one `minps` (see
    /// [`Emit::at_least`]).
    pub fn at_most(&mut self, ty: Type, x: Value, hi: f32) -> Value {
        let hi = self.f(ty, hi);
        let above = self.b.ins().fcmp(FloatCC::LessThan, hi, x);
        self.select(ty, above, hi, x)
    }

    /// The running maximum of max pooling: `v` when `v > acc` or `v` is
    /// NaN, else `acc` (so a NaN, once in, stays). For vectors a `maxps`
    /// and a blend, where Cranelift's `fmax` takes about eight instructions.
    pub fn max_keeping_nan(&mut self, acc: Value, v: Value) -> Value {
        let ty = self.b.func.dfg.value_type(acc);
        // acc > v ? acc : v, which is v when either is NaN (one maxps)...
        let below = self.b.ins().fcmp(FloatCC::LessThan, v, acc);
        let max = self.select(ty, below, acc, v);
        // ...except that a NaN already in acc wins.
        let nan = self.b.ins().fcmp(FloatCC::Unordered, acc, acc);
        self.select(ty, nan, acc, max)
    }

    /// The running minimum, as [`Emit::max_keeping_nan`] keeps the
    /// maximum: `v` when `v < acc` or `v` is NaN, and a NaN in `acc` stays.
    pub fn min_keeping_nan(&mut self, acc: Value, v: Value) -> Value {
        let ty = self.b.func.dfg.value_type(acc);
        let above = self.b.ins().fcmp(FloatCC::LessThan, acc, v);
        let min = self.select(ty, above, acc, v);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, acc, acc);
        self.select(ty, nan, acc, min)
    }

    /// `min(max(x, lo), hi)` as the interpreter computes it.
    pub fn clamp(&mut self, ty: Type, x: Value, lo: f32, hi: f32) -> Value {
        let x = self.at_least(ty, x, lo);
        self.at_most(ty, x, hi)
    }

    /// An activation, lane-wise.
    pub fn activation(&mut self, ty: Type, act: Activation, x: Value) -> Value {
        match act {
            Activation::Relu => self.at_least(ty, x, 0.0),
            Activation::Relu6 => self.clamp(ty, x, 0.0, 6.0),
            Activation::Clip { min, max } => self.clamp(ty, x, min, max),
            Activation::LeakyRelu { negative_slope } => {
                let slope = self.f(ty, negative_slope);
                let scaled = self.b.ins().fmul(x, slope);
                let zero = self.f(ty, 0.0);
                let ge = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero);
                self.select(ty, ge, x, scaled)
            }
            Activation::Sigmoid => self.sigmoid(ty, x),
            Activation::Tanh => self.tanh(ty, x),
            Activation::Elu { alpha } => self.elu(ty, x, alpha),
            Activation::Selu => {
                let y = self.elu(ty, x, SELU_ALPHA);
                let scale = self.f(ty, SELU_SCALE);
                self.b.ins().fmul(y, scale)
            }
            Activation::Celu { alpha } => {
                // max(0, x) + min(0, alpha * (exp(x / alpha) - 1)).
                let inv = self.f(ty, 1.0 / alpha);
                let scaled = self.b.ins().fmul(x, inv);
                let e = self.exp_m1(ty, scaled);
                let a = self.f(ty, alpha);
                let neg = self.b.ins().fmul(e, a);
                let neg = self.at_most(ty, neg, 0.0);
                let pos = self.at_least(ty, x, 0.0);
                self.b.ins().fadd(pos, neg)
            }
            Activation::Softplus => self.softplus(ty, x),
            Activation::Softsign => {
                let a = self.b.ins().fabs(x);
                let one = self.f(ty, 1.0);
                let d = self.b.ins().fadd(a, one);
                self.b.ins().fdiv(x, d)
            }
            Activation::Hardsigmoid { alpha, beta } => {
                let a = self.f(ty, alpha);
                let b = self.f(ty, beta);
                let y = self.b.ins().fma(x, a, b);
                self.clamp(ty, y, 0.0, 1.0)
            }
            Activation::Hardswish => {
                let sixth = self.f(ty, 1.0 / 6.0);
                let half = self.f(ty, 0.5);
                let g = self.b.ins().fma(x, sixth, half);
                let g = self.clamp(ty, g, 0.0, 1.0);
                self.b.ins().fmul(x, g)
            }
            Activation::Silu => {
                let s = self.sigmoid(ty, x);
                self.b.ins().fmul(x, s)
            }
            Activation::Mish => {
                let sp = self.softplus(ty, x);
                let t = self.tanh(ty, sp);
                self.b.ins().fmul(x, t)
            }
            Activation::Gelu { tanh: false } => self.gelu(ty, x),
            Activation::Gelu { tanh: true } => {
                let x2 = self.b.ins().fmul(x, x);
                let c = self.f(ty, 0.044_715);
                let one = self.f(ty, 1.0);
                let p = self.b.ins().fma(x2, c, one);
                let inner = self.b.ins().fmul(x, p);
                let k = self.f(ty, (2.0 / std::f32::consts::PI).sqrt());
                let inner = self.b.ins().fmul(inner, k);
                let t = self.tanh(ty, inner);
                self.half_x_one_plus(ty, x, t)
            }
        }
    }

    /// `x (1 + erf(x / sqrt 2)) / 2` through `erfc` (see [`ERFC_TAIL`]).
    fn gelu(&mut self, ty: Type, x: Value) -> Value {
        let magnitude = self.b.ins().fabs(x);
        let xa = self.at_most(ty, magnitude, GELU_TAIL_END);
        let c = self.f(ty, std::f32::consts::FRAC_1_SQRT_2);
        let a = self.b.ins().fmul(xa, c);
        let one = self.f(ty, 1.0);
        let half = self.f(ty, 0.5);
        let d = self.b.ins().fma(a, half, one);
        let t = self.b.ins().fdiv(one, d);
        let mut p = self.f(ty, ERFC_TAIL[0]);
        for &k in &ERFC_TAIL[1..] {
            let k = self.f(ty, k);
            p = self.b.ins().fma(p, t, k);
        }
        // -a^2 + p, the square exact inside the fused multiply-add.
        let minus_a = self.b.ins().fneg(a);
        let exponent = self.b.ins().fma(minus_a, a, p);
        let exponent = self.b.ins().fmul(exponent, half);
        let e = self.exp(ty, exponent);
        // `m = (t/2 e) e`, with `x` multiplied in before the last factor so
        // that no partial product underflows before the result does.
        let k = self.b.ins().fmul(t, half);
        let k = self.b.ins().fmul(k, e);
        let neg = self.b.ins().fmul(x, k);
        let neg = self.b.ins().fmul(neg, e);
        let minus_xa = self.b.ins().fneg(xa);
        let minus_xa_k = self.b.ins().fmul(minus_xa, k);
        let pos = self.b.ins().fma(minus_xa_k, e, x);
        let zero = self.f(ty, 0.0);
        let positive = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
        self.select(ty, positive, pos, neg)
    }

    /// `x/2 * (1 + t)`, GELU's last step.
    fn half_x_one_plus(&mut self, ty: Type, x: Value, t: Value) -> Value {
        let half = self.f(ty, 0.5);
        let h = self.b.ins().fmul(x, half);
        self.b.ins().fma(h, t, h)
    }

    /// `x` if `x > 0`, else `alpha * (exp(x) - 1)`.
    fn elu(&mut self, ty: Type, x: Value, alpha: f32) -> Value {
        let e = self.exp_m1(ty, x);
        let a = self.f(ty, alpha);
        let neg = self.b.ins().fmul(e, a);
        let zero = self.f(ty, 0.0);
        let pos = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
        self.select(ty, pos, x, neg)
    }

    /// `exp(x) - 1`, with the Taylor series `x (1 + x/2 + ... + x^6/7!)`
    /// for `|x| < 1/2` (within 2e-7 relative), where the subtraction
    /// would cancel digits: `exp(x) - 1` was 5e-5 off at `x = 0.002`, which
    /// `x - celu(x)` then magnified. Written as a product so that `-0`
    /// gives `-0`, as `expm1` does.
    fn exp_m1(&mut self, ty: Type, x: Value) -> Value {
        // Unclamped: `celu` with a negative alpha takes `exp` of large
        // positive values, where `expm1` is infinite (the clamped `exp`
        // stopped at 1.7e38).
        let e = self.exp_unclamped(ty, x);
        let one = self.f(ty, 1.0);
        let em1 = self.b.ins().fsub(e, one);
        let mut factor = self.f(ty, EXPM1_TAYLOR[0]);
        for &c in &EXPM1_TAYLOR[1..] {
            let c = self.f(ty, c);
            factor = self.b.ins().fma(factor, x, c);
        }
        let small = self.b.ins().fmul(x, factor);
        let a = self.b.ins().fabs(x);
        let limit = self.f(ty, 0.5);
        let near_zero = self.b.ins().fcmp(FloatCC::LessThan, a, limit);
        self.select(ty, near_zero, small, em1)
    }

    /// `ln(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`, which never
    /// overflows.
    fn softplus(&mut self, ty: Type, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let n = self.b.ins().fneg(a);
        let e = self.exp(ty, n);
        let one = self.f(ty, 1.0);
        let w = self.b.ins().fadd(e, one);
        let l = self.log(ty, w);
        // log1p(e) = log(w) * e / (w - 1), and e where w rounded to 1
        // (Goldberg), so a tiny e keeps its precision.
        let rounded = self.b.ins().fsub(w, one);
        let scaled = self.b.ins().fmul(l, e);
        let corrected = self.b.ins().fdiv(scaled, rounded);
        let zero = self.f(ty, 0.0);
        let exact = self.b.ins().fcmp(FloatCC::Equal, rounded, zero);
        let l = self.select(ty, exact, e, corrected);
        let pos = self.at_least(ty, x, 0.0);
        self.b.ins().fadd(pos, l)
    }

    /// `ln(x)` to a few ulp for positive normal `x` (Cephes' `logf`): `x =
    /// m 2^e` with `m` in `[sqrt(1/2), sqrt 2)`, a degree-8 polynomial in
    /// `m - 1`; `ln 0 = -inf`, and a negative or NaN `x` gives NaN.
    pub fn log(&mut self, ty: Type, x: Value) -> Value {
        let int_ty = if ty == types::F32 {
            types::I32
        } else {
            types::I32X4
        };
        let splat_i = |e: &mut Self, v: i64| {
            let c = e.b.ins().iconst(types::I32, v);
            if ty == types::F32 {
                c
            } else {
                e.b.ins().splat(int_ty, c)
            }
        };
        let bits = self.b.ins().bitcast(int_ty, MemFlagsData::new(), x);
        // The biased exponent, and the mantissa with exponent -1: [0.5, 1).
        let exponent = self.b.ins().ushr_imm_u(bits, 23);
        let ff = splat_i(self, 0xff);
        let exponent = self.b.ins().band(exponent, ff);
        let bias = splat_i(self, 126);
        let exponent = self.b.ins().isub(exponent, bias);
        let mask = splat_i(self, 0x807f_ffff);
        let m = self.b.ins().band(bits, mask);
        let half_bits = splat_i(self, 0x3f00_0000);
        let m = self.b.ins().bor(m, half_bits);
        let m = self.b.ins().bitcast(ty, MemFlagsData::new(), m);
        let e = self.b.ins().fcvt_from_sint(ty, exponent);
        // m < sqrt(1/2): use 2m - 1 and e - 1, else m - 1.
        let sqrt_half = self.f(ty, std::f32::consts::FRAC_1_SQRT_2);
        let low = self.b.ins().fcmp(FloatCC::LessThan, m, sqrt_half);
        let one = self.f(ty, 1.0);
        let e_minus = self.b.ins().fsub(e, one);
        let e = self.select(ty, low, e_minus, e);
        let m2 = self.b.ins().fadd(m, m);
        let m = self.select(ty, low, m2, m);
        let f = self.b.ins().fsub(m, one);
        let z = self.b.ins().fmul(f, f);
        let coeffs = [
            7.037_683_6e-2,
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_4e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ];
        let mut p = self.f(ty, coeffs[0]);
        for &c in &coeffs[1..] {
            let c = self.f(ty, c);
            p = self.b.ins().fma(p, f, c);
        }
        let p = self.b.ins().fmul(p, f);
        let mut y = self.b.ins().fmul(p, z);
        let c1 = self.f(ty, -2.121_944_4e-4);
        y = self.b.ins().fma(e, c1, y);
        let mhalf = self.f(ty, -0.5);
        y = self.b.ins().fma(z, mhalf, y);
        let mut r = self.b.ins().fadd(f, y);
        let c2 = self.f(ty, 0.693_359_4);
        r = self.b.ins().fma(e, c2, r);
        // Zero, negative and NaN inputs, and infinity.
        let zero = self.f(ty, 0.0);
        let is_zero = self.b.ins().fcmp(FloatCC::Equal, x, zero);
        let ninf = self.f(ty, f32::NEG_INFINITY);
        let r = self.select(ty, is_zero, ninf, r);
        let bad = self.b.ins().fcmp(FloatCC::UnorderedOrLessThan, x, zero);
        let nan = self.f(ty, f32::NAN);
        let r = self.select(ty, bad, nan, r);
        let inf = self.f(ty, f32::INFINITY);
        let is_inf = self.b.ins().fcmp(FloatCC::Equal, x, inf);
        self.select(ty, is_inf, inf, r)
    }

    /// `erf(x)` as a rational function (Eigen's float approximation, a
    /// few ulp): `x P(x^2) / Q(x^2)` on `x` clamped to `[-4, 4]`, and
    /// exactly `±1` from 3.92 on, where f32's `erf` rounds to it (the
    /// quotient gave `1 - 6e-8`, which a `log` and a `reciprocal` after it
    /// turned into `-6e6` for the interpreter's `inf`; found by
    /// `graph_diff`).
    pub fn erf(&mut self, ty: Type, x: Value) -> Value {
        let input = x;
        let x = self.clamp(ty, x, -4.0, 4.0);
        let x2 = self.b.ins().fmul(x, x);
        let horner = |e: &mut Self, coeffs: &[f32]| {
            let mut acc = e.f(ty, coeffs[0]);
            for &c in &coeffs[1..] {
                let c = e.f(ty, c);
                acc = e.b.ins().fma(acc, x2, c);
            }
            acc
        };
        let p = horner(
            self,
            &[
                -2.726_142_3e-10,
                2.770_681_4e-8,
                -2.101_024e-6,
                -5.692_506_4e-5,
                -7.349_906_3e-4,
                -2.954_600_2e-3,
                -1.609_603_3e-2,
            ],
        );
        let p = self.b.ins().fmul(p, x);
        let q = horner(
            self,
            &[
                -1.456_607_2e-5,
                -2.133_740_6e-4,
                -1.682_827e-3,
                -7.373_329_3e-3,
                -1.426_473_9e-2,
            ],
        );
        let r = self.b.ins().fdiv(p, q);
        self.saturate(ty, input, 3.92, r)
    }

    /// A binary operation, lane-wise.
    pub fn binary(&mut self, ty: Type, op: BinaryOp, a: Value, b: Value) -> Value {
        match op {
            BinaryOp::Add => self.b.ins().fadd(a, b),
            BinaryOp::Sub => self.b.ins().fsub(a, b),
            BinaryOp::Mul => self.b.ins().fmul(a, b),
            BinaryOp::Div => self.b.ins().fdiv(a, b),
            // Cranelift's fmax and fmin propagate NaN, as torch.maximum does.
            BinaryOp::Maximum => self.b.ins().fmax(a, b),
            BinaryOp::Minimum => self.b.ins().fmin(a, b),
            BinaryOp::Pow => self.pow_tensor(ty, a, b),
        }
    }

    /// `a ^ b` as C's `pow`, lane by lane: `exp(b ln |a|)`, negated for a
    /// negative `a` and an odd integer `b`, NaN for a negative `a` and a
    /// non-integer `b`; `a ^ 0 = 1` (NaN included), `0 ^ b` is 0 for a
    /// positive `b` and infinity for a negative one.
    fn pow_tensor(&mut self, ty: Type, a: Value, b: Value) -> Value {
        let magnitude = self.b.ins().fabs(a);
        let l = self.log(ty, magnitude);
        let t = self.b.ins().fmul(b, l);
        let r = self.exp_unclamped(ty, t);
        let zero = self.f(ty, 0.0);
        // Integer and odd exponents.
        let whole = self.b.ins().floor(b);
        let integer = self.b.ins().fcmp(FloatCC::Equal, whole, b);
        let half = self.f(ty, 0.5);
        let halved = self.b.ins().fmul(b, half);
        let halved_whole = self.b.ins().floor(halved);
        let even = self.b.ins().fcmp(FloatCC::Equal, halved_whole, halved);
        let negative = self.b.ins().fcmp(FloatCC::LessThan, a, zero);
        let minus_r = self.b.ins().fneg(r);
        let odd_result = self.select(ty, even, r, minus_r);
        let nan = self.f(ty, f32::NAN);
        let negative_result = self.select(ty, integer, odd_result, nan);
        let r = self.select(ty, negative, negative_result, r);
        // Zero bases, then zero exponents (which win over everything).
        let is_zero = self.b.ins().fcmp(FloatCC::Equal, a, zero);
        let positive = self.b.ins().fcmp(FloatCC::GreaterThan, b, zero);
        let inf = self.f(ty, f32::INFINITY);
        let at_zero = self.select(ty, positive, zero, inf);
        let r = self.select(ty, is_zero, at_zero, r);
        let one = self.f(ty, 1.0);
        let b_zero = self.b.ins().fcmp(FloatCC::Equal, b, zero);
        self.select(ty, b_zero, one, r)
    }

    /// `a` where `a >= 0`, else `a * slope`.
    pub fn prelu(&mut self, ty: Type, a: Value, slope: Value) -> Value {
        let scaled = self.b.ins().fmul(a, slope);
        let zero = self.f(ty, 0.0);
        let ge = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, a, zero);
        self.select(ty, ge, a, scaled)
    }

    /// A unary function, lane-wise.
    pub fn unary(&mut self, ty: Type, f: UnaryFunction, x: Value) -> Value {
        match f {
            UnaryFunction::Exp => self.exp_unclamped(ty, x),
            UnaryFunction::Log => self.log(ty, x),
            UnaryFunction::Sqrt => self.b.ins().sqrt(x),
            UnaryFunction::Reciprocal => {
                let one = self.f(ty, 1.0);
                self.b.ins().fdiv(one, x)
            }
            UnaryFunction::Neg => self.b.ins().fneg(x),
            UnaryFunction::Abs => self.b.ins().fabs(x),
            UnaryFunction::Erf => self.erf(ty, x),
            UnaryFunction::Pow { exponent } => self.pow(ty, x, exponent),
        }
    }

    /// `exp(x)` with the IEEE results outside the polynomial's range: 0
    /// below -104 (where even subnormals underflow), infinity above 88.7.
    fn exp_unclamped(&mut self, ty: Type, x: Value) -> Value {
        let e = self.exp(ty, x);
        let lo = self.f(ty, -87.3);
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        // Between -104 and -87.3 the result is subnormal; flushing it to 0
        // is within the tolerance of any use nnc has.
        let zero = self.f(ty, 0.0);
        let e = self.select(ty, below, zero, e);
        let hi = self.f(ty, EXP_MAX);
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, x, hi);
        let inf = self.f(ty, f32::INFINITY);
        self.select(ty, above, inf, e)
    }

    /// `x ^ c` for a constant `c`: repeated multiplication for an integer
    /// `|c| <= 64` (exact for negative `x`), `sqrt` for 1/2, else
    /// `exp(c ln x)`, which is NaN for a negative `x` as `powf` is.
    fn pow(&mut self, ty: Type, x: Value, c: f32) -> Value {
        let ninf = self.f(ty, f32::NEG_INFINITY);
        let at_ninf = self.b.ins().fcmp(FloatCC::Equal, x, ninf);
        if c == 0.5 {
            // `powf(-0, 0.5)` is +0 and `powf(-inf, 0.5)` +inf, where `sqrt`
            // gives -0 and NaN; adding +0 turns only -0 into +0.
            let r = self.b.ins().sqrt(x);
            let zero = self.f(ty, 0.0);
            let r = self.b.ins().fadd(r, zero);
            let inf = self.f(ty, f32::INFINITY);
            return self.select(ty, at_ninf, inf, r);
        }
        if c.fract() == 0.0 && c.abs() <= 64.0 {
            let mut n = c.abs() as u32;
            let mut result: Option<Value> = None;
            let mut base = x;
            while n > 0 {
                if n & 1 == 1 {
                    result = Some(match result {
                        Some(r) => self.b.ins().fmul(r, base),
                        None => base,
                    });
                }
                n >>= 1;
                if n > 0 {
                    base = self.b.ins().fmul(base, base);
                }
            }
            let r = match result {
                Some(r) => r,
                None => self.f(ty, 1.0),
            };
            return if c < 0.0 {
                let one = self.f(ty, 1.0);
                self.b.ins().fdiv(one, r)
            } else {
                r
            };
        }
        let l = self.log(ty, x);
        let k = self.f(ty, c);
        let t = self.b.ins().fmul(l, k);
        let r = self.exp_unclamped(ty, t);
        // 0^c: 0 for c > 0, infinity for c < 0 (ln 0 = -inf gives NaN
        // through the clamped exp otherwise).
        let zero = self.f(ty, 0.0);
        let is_zero = self.b.ins().fcmp(FloatCC::Equal, x, zero);
        let at_zero = self.f(ty, if c > 0.0 { 0.0 } else { f32::INFINITY });
        let r = self.select(ty, is_zero, at_zero, r);
        // (-inf)^c, which `ln` makes NaN: +inf for c > 0 and +0 below, as
        // `powf` has it for every `c` that is not an odd integer (the
        // integers took the branch above).
        let limit = self.f(ty, if c > 0.0 { f32::INFINITY } else { 0.0 });
        self.select(ty, at_ninf, limit, r)
    }
}
