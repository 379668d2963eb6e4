//! Lane-wise arithmetic for kernels, on `f32` or `f32x4` alike: `select`,
//! `exp` (Cephes' `expf` in Cranelift IR), `sigmoid`, `tanh`, `clamp` and
//! the activations of fused epilogues.

use super::Emit;
use crate::ir::{Activation, BinaryOp};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};

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

    /// `exp(x)` to about 1 ulp for `x` in [-87, 88] (Cephes' `expf`): `x =
    /// n*ln2 + r` with `|r| <= ln2/2`, a degree-6 polynomial for `e^r`, and
    /// `2^n` built in the exponent bits.
    pub fn exp(&mut self, ty: Type, x: Value) -> Value {
        let int_ty = if ty == types::F32 {
            types::I32
        } else {
            types::I32X4
        };
        let x = self.clamp(ty, x, -87.0, 88.0);
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
        let e = self.b.ins().iadd(n, bias);
        let e = self.b.ins().ishl_imm_s(e, 23);
        let scale = self.b.ins().bitcast(ty, MemFlagsData::new(), e);
        self.b.ins().fmul(p, scale)
    }

    /// `tanh(x)` as a rational function (Eigen's float approximation, a few
    /// ulp from the true value): `x * P(x^2) / Q(x^2)` on `x` clamped to
    /// `[-7.9, 7.9]`, beyond which `tanh` rounds to `±1`. Half the work of
    /// going through `exp`, which matters in recurrent gate maths.
    pub fn tanh(&mut self, ty: Type, x: Value) -> Value {
        let x = self.clamp(ty, x, -7.905_311, 7.905_311);
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
                -2.760_768_5e-16,
                2.000_188e-13,
                -8.604_672e-11,
                5.122_297e-8,
                1.485_722_4e-5,
                6.372_619_3e-4,
                4.893_524_6e-3,
            ],
        );
        let p = self.b.ins().fmul(p, x);
        let q = horner(
            self,
            &[1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3],
        );
        self.b.ins().fdiv(p, q)
    }

    /// `1 / (1 + exp(-x)) = (1 + tanh(x/2)) / 2`.
    pub fn sigmoid(&mut self, ty: Type, x: Value) -> Value {
        let half = self.f(ty, 0.5);
        let t = self.b.ins().fmul(x, half);
        let t = self.tanh(ty, t);
        self.b.ins().fma(t, half, half)
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
        }
    }

    /// A binary operation, lane-wise.
    pub fn binary(&mut self, _ty: Type, op: BinaryOp, a: Value, b: Value) -> Value {
        match op {
            BinaryOp::Add => self.b.ins().fadd(a, b),
            BinaryOp::Sub => self.b.ins().fsub(a, b),
            BinaryOp::Mul => self.b.ins().fmul(a, b),
            BinaryOp::Div => self.b.ins().fdiv(a, b),
        }
    }
}
