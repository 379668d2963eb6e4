//! `group_norm`, `layer_norm`, `instance_norm` and `local_response_norm`.
//!
//! The first three share one kernel: each task normalises one row (a
//! sample's group, a sample's normalised dims, or one channel plane) with
//! its mean (a rough mean plus the mean difference from it, kept apart)
//! and biased variance, computed in passes four lanes at a time, then
//! applies the affine per channel or per element.
//! `local_response_norm` runs along the spatial positions, sixteen at a
//! time, down the channels, each window's sum of squares taken afresh.

use super::elementwise::span;
use super::gemm::constant;
use super::lanes::{self, Columns};
use super::{Consts, Kernel, Operands};
use crate::backend::jit::{Emit, F32X4};
use crate::backend::BackendError;
use crate::ir::{LocalResponseNormAttrs, Op};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_runtime::kernels::entry;
use nnc_runtime::kernels::Base;

/// The sum of the four lanes of `v`.
fn horizontal(e: &mut Emit, v: Value, add: bool) -> Value {
    let mut acc = e.b.ins().extractlane(v, 0);
    for lane in 1..4u8 {
        let x = e.b.ins().extractlane(v, lane);
        acc = if add {
            e.b.ins().fadd(acc, x)
        } else {
            e.b.ins().fmax(acc, x)
        };
    }
    acc
}

/// Folds `f(x)` over `len` contiguous floats at `ptr` with `+` (or `max`
/// when `!add`), starting from `init`.
fn reduce(
    e: &mut Emit,
    ptr: Value,
    len: usize,
    init: f32,
    add: bool,
    f: &dyn Fn(&mut Emit, Type, Value) -> Value,
) -> Result<Value, BackendError> {
    let body = len / 4 * 4;
    let var = e.b.declare_var(F32X4);
    let start = e.f(F32X4, init);
    e.b.def_var(var, start);
    e.for_n(0, body, 4, |e, i| {
        let p = e.addr_of(ptr, i);
        let x = e.load(F32X4, p, 0);
        let x = f(e, F32X4, x);
        let acc = e.b.use_var(var);
        let acc = if add {
            e.b.ins().fadd(acc, x)
        } else {
            e.b.ins().fmax(acc, x)
        };
        e.b.def_var(var, acc);
        Ok(())
    })?;
    let acc = e.b.use_var(var);
    let total = horizontal(e, acc, add);
    let svar = e.b.declare_var(types::F32);
    e.b.def_var(svar, total);
    e.for_n(body, len, 1, |e, i| {
        let p = e.addr_of(ptr, i);
        let x = e.load(types::F32, p, 0);
        let x = f(e, types::F32, x);
        let acc = e.b.use_var(svar);
        let acc = if add {
            e.b.ins().fadd(acc, x)
        } else {
            e.b.ins().fmax(acc, x)
        };
        e.b.def_var(svar, acc);
        Ok(())
    })?;
    Ok(e.b.use_var(svar))
}

/// The sum of `len` contiguous floats at `ptr`.
pub fn sum(e: &mut Emit, ptr: Value, len: usize) -> Result<Value, BackendError> {
    reduce(e, ptr, len, 0.0, true, &|_, _, x| x)
}

/// `v` as a value of type `ty` (a splat for vectors).
fn splat_to(e: &mut Emit, ty: Type, v: Value) -> Value {
    if ty == types::F32 {
        v
    } else {
        e.b.ins().splat(ty, v)
    }
}

/// `(x - rough) - offset`: `x` less the row's mean, kept as two parts.
fn centred(e: &mut Emit, ty: Type, x: Value, rough: Value, offset: Value) -> Value {
    let r = splat_to(e, ty, rough);
    let o = splat_to(e, ty, offset);
    let d = e.b.ins().fsub(x, r);
    e.b.ins().fsub(d, o)
}

/// How a norm's affine parameters are indexed.
#[derive(Clone, Copy)]
enum Affine {
    None,
    /// One weight per element of the row (`layer_norm`).
    PerElement {
        weight: Base,
        bias: Base,
    },
    /// One weight per channel; a row holds `blocks` channels, and row `r`
    /// starts at channel `(r % rows_per_sample) * blocks`.
    PerChannel {
        weight: Base,
        bias: Base,
        rows_per_sample: usize,
    },
}

/// Builds a norm kernel.
pub fn build(op: &Op, ops: Operands<'_>, consts: &mut Consts) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let shape = &x.shape;
    let n = shape[0];
    let c = shape.get(1).copied().unwrap_or(1);
    let spatial: usize = shape.get(2..).map_or(1, |s| s.iter().product());
    let params = |consts: &mut Consts| -> Result<(Base, Base), BackendError> {
        Ok((
            consts.add(constant(&ops, 1, "norm weight")?.to_vec()),
            consts.add(constant(&ops, 2, "norm bias")?.to_vec()),
        ))
    };
    // (rows, blocks per row, elements per block, eps, affine)
    let (rows, blocks, inner, eps, affine) = match op {
        Op::GroupNorm(a) => {
            let g = a.groups.max(1);
            let affine = if a.affine {
                let (weight, bias) = params(consts)?;
                Affine::PerChannel {
                    weight,
                    bias,
                    rows_per_sample: g,
                }
            } else {
                Affine::None
            };
            (n * g, c / g, spatial, a.eps, affine)
        }
        Op::InstanceNorm(a) => {
            let affine = if a.affine {
                let (weight, bias) = params(consts)?;
                Affine::PerChannel {
                    weight,
                    bias,
                    rows_per_sample: c,
                }
            } else {
                Affine::None
            };
            (n * c, 1, spatial, a.eps, affine)
        }
        Op::LayerNorm(a) => {
            let len: usize = shape[shape.len() - a.normalized_dims..].iter().product();
            let affine = if a.affine {
                let (weight, bias) = params(consts)?;
                Affine::PerElement { weight, bias }
            } else {
                Affine::None
            };
            (x.len() / len.max(1), 1, len, a.eps, affine)
        }
        other => {
            return Err(BackendError::Codegen(format!(
                "`{}` is not a norm",
                other.name()
            )))
        }
    };
    let len = blocks * inner;
    let (src, dst) = (x.base, ops.out.base);
    Ok(Kernel::jit(
        rows,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, r| {
                let start = e.mul_imm(r, len);
                let from = e.addr(src, start);
                let to = e.addr(dst, start);
                let total = sum(e, from, len)?;
                let inv_len = e.f(types::F32, 1.0 / len.max(1) as f32);
                let rough = e.b.ins().fmul(total, inv_len);
                // The mean is kept as `rough + offset`, with `offset` the mean
                // difference from the rough mean: on a row of a large constant
                // plus small variations, `x - rough` is exact and the
                // variations keep their digits, which `x - mean` in f32 would
                // round away.
                let offset = reduce(e, from, len, 0.0, true, &|e, ty, x| {
                    let m = splat_to(e, ty, rough);
                    e.b.ins().fsub(x, m)
                })?;
                let offset = e.b.ins().fmul(offset, inv_len);
                let sq = reduce(e, from, len, 0.0, true, &|e, ty, x| {
                    let d = centred(e, ty, x, rough, offset);
                    e.b.ins().fmul(d, d)
                })?;
                let var = e.b.ins().fmul(sq, inv_len);
                let eps = e.f(types::F32, eps);
                let var = e.b.ins().fadd(var, eps);
                let std = e.b.ins().sqrt(var);
                let one = e.f(types::F32, 1.0);
                let inv_std = e.b.ins().fdiv(one, std);
                let inv_std_var = e.b.declare_var(types::F32);
                e.b.def_var(inv_std_var, inv_std);
                // Values beyond about 1.8e19 from the mean overflow their
                // squares (the interpreter sums in f64): then, and only
                // then, sum the squares of the centred values over the
                // largest one and scale back after the square root.
                let inf = e.f(types::F32, f32::INFINITY);
                let overflowed = e.b.ins().fcmp(FloatCC::Equal, sq, inf);
                e.if_then(overflowed, |e| {
                    let big = reduce(e, from, len, 0.0, false, &|e, ty, x| {
                        let d = centred(e, ty, x, rough, offset);
                        e.b.ins().fabs(d)
                    })?;
                    let one = e.f(types::F32, 1.0);
                    let scale = e.b.ins().fdiv(one, big);
                    let sq = reduce(e, from, len, 0.0, true, &|e, ty, x| {
                        let d = centred(e, ty, x, rough, offset);
                        let s = splat_to(e, ty, scale);
                        let d = e.b.ins().fmul(d, s);
                        e.b.ins().fmul(d, d)
                    })?;
                    let var = e.b.ins().fmul(sq, inv_len);
                    let eps = e.b.ins().fmul(eps, scale);
                    let eps = e.b.ins().fmul(eps, scale);
                    let var = e.b.ins().fadd(var, eps);
                    let std = e.b.ins().sqrt(var);
                    let std = e.b.ins().fmul(std, big);
                    let inv_std = e.b.ins().fdiv(one, std);
                    e.b.def_var(inv_std_var, inv_std);
                    Ok(())
                })?;
                let inv_std = e.b.use_var(inv_std_var);
                for blk in 0..blocks {
                    // Per-channel affine parameters, loaded once per block.
                    let channel = match affine {
                        Affine::PerChannel {
                            weight,
                            bias,
                            rows_per_sample,
                        } => {
                            let s = e.rem_imm(r, rows_per_sample);
                            let s = e.mul_imm(s, blocks);
                            let ch = e.add_imm(s, blk);
                            let pw = e.addr(weight, ch);
                            let pb = e.addr(bias, ch);
                            Some((e.load(types::F32, pw, 0), e.load(types::F32, pb, 0)))
                        }
                        Affine::None | Affine::PerElement { .. } => None,
                    };
                    let (lo, hi) = (e.i(blk * inner), e.i((blk + 1) * inner));
                    span(e, lo, hi, |e, ty, j| {
                        let splat = |e: &mut Emit, v: Value| {
                            if ty == types::F32 {
                                v
                            } else {
                                e.b.ins().splat(ty, v)
                            }
                        };
                        let p = e.addr_of(from, j);
                        let x = e.load(ty, p, 0);
                        let s = splat(e, inv_std);
                        let d = centred(e, ty, x, rough, offset);
                        let mut y = e.b.ins().fmul(d, s);
                        if let Some((w, b)) = channel {
                            let (w, b) = (splat(e, w), splat(e, b));
                            y = e.b.ins().fmul(y, w);
                            y = e.b.ins().fadd(y, b);
                        } else if let Affine::PerElement { weight, bias } = affine {
                            let pw = e.addr(weight, j);
                            let pb = e.addr(bias, j);
                            let (w, b) = (e.load(ty, pw, 0), e.load(ty, pb, 0));
                            y = e.b.ins().fmul(y, w);
                            y = e.b.ins().fadd(y, b);
                        }
                        let q = e.addr_of(to, j);
                        e.store(y, q, 0);
                        Ok(())
                    })?;
                }
                Ok(())
            })
        }),
    ))
}

/// `local_response_norm`: one task per sample and block of sixteen
/// spatial positions, down the channels (see [`window_sums`]).
pub fn local_response_norm(a: &LocalResponseNormAttrs, ops: Operands<'_>) -> Kernel {
    let x = &ops.inputs[0];
    let (n, c) = (x.shape[0], x.shape[1]);
    let plane: usize = x.shape[2..].iter().product();
    let blocks = lanes::blocks(plane);
    let (src, dst) = (x.base, ops.out.base);
    let a = a.clone();
    Kernel::jit(
        n * blocks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let sample = e.div_imm(t, blocks);
                let b = e.rem_imm(t, blocks);
                let start = e.mul_imm(sample, c * plane);
                lanes::for_block(e, b, plane, |e, first, columns| {
                    let start = e.add(start, first);
                    let from = e.addr(src, start);
                    let to = e.addr(dst, start);
                    window_sums(e, &a, c, plane, columns, from, to)
                })
            })
        }),
    )
}

/// The channel loop of `local_response_norm` over one block of columns,
/// channel `i` of column `j` at `from + i*plane + j`. Each channel's window
/// sum is taken afresh (`size` loads, from cache): a running sum, adding
/// the channel that enters and subtracting the one that leaves, carried a
/// NaN or an infinity in one channel into every later one, and lost digits
/// to cancellation. Channels whose window reaches past either end are
/// emitted one by one with the taps that exist; the others in one loop.
fn window_sums(
    e: &mut Emit,
    a: &LocalResponseNormAttrs,
    c: usize,
    plane: usize,
    columns: Columns,
    from: Value,
    to: Value,
) -> Result<(), BackendError> {
    let parts = columns.lanes();
    let after = a.size - 1 - a.before;
    // The sum of squares is +0 or more (or NaN), so `k + alpha/size * sum`
    // is negative (or -0) only with a negative `k` or `alpha`.
    let signed = a.k.is_sign_negative() || a.alpha.is_sign_negative();
    // Normalises channel `ch` from the squares of channels `ch + k -
    // before` for the taps `k` in `taps`.
    let channel =
        |e: &mut Emit, ch: Value, taps: std::ops::Range<usize>| -> Result<(), BackendError> {
            let row = e.mul_imm(ch, plane);
            let p = e.addr_of(from, row);
            let q = e.addr_of(to, row);
            for &(ty, offset) in &parts {
                let mut sum = e.f(ty, 0.0);
                for k in taps.clone() {
                    let shift = (k as i64 - a.before as i64) * plane as i64;
                    let at = e.b.ins().iadd_imm_s(p, 4 * shift);
                    let v = e.load(ty, at, offset);
                    sum = e.b.ins().fma(v, v, sum);
                }
                let v = e.load(ty, p, offset);
                let scale = e.f(ty, a.alpha / a.size as f32);
                let k = e.f(ty, a.k);
                let d = e.b.ins().fma(sum, scale, k);
                let y = divide_by_power(e, ty, v, d, a.beta, signed);
                e.store(y, q, offset);
                exact_where_overflowed(e, ty, sum, (p, q, offset), (ch, plane, c), a)?;
            }
            Ok(())
        };
    // Channels whose whole window exists.
    let inner = a.before.min(c)..c.saturating_sub(after).max(a.before.min(c));
    let edges = (0..inner.start).chain(inner.end..c);
    for ch in edges {
        // Taps `k` with `0 <= ch + k - before < c`.
        let first = a.before.saturating_sub(ch);
        let last = (c - 1 + a.before - ch).min(a.size - 1);
        let at = e.i(ch);
        channel(e, at, first..last + 1)?;
    }
    e.for_n(inner.start, inner.end, 1, |e, ch| channel(e, ch, 0..a.size))
}

/// Where a lane's f32 sum of squares overflowed (channels beyond about
/// 1.8e19; `y` was then divided into 0 or NaN), recomputes its column in
/// f64 as the interpreter does (`nnc_lrn_exact`), lane by lane. A branch
/// that is not taken on ordinary values. `(p, q, offset)` are the
/// channel's input and output rows and the lanes' first column.
fn exact_where_overflowed(
    e: &mut Emit,
    ty: Type,
    sum: Value,
    (p, q, offset): (Value, Value, usize),
    (ch, plane, c): (Value, usize, usize),
    a: &LocalResponseNormAttrs,
) -> Result<(), BackendError> {
    let inf = e.f(ty, f32::INFINITY);
    let overflowed = e.b.ins().fcmp(FloatCC::Equal, sum, inf);
    let any = if ty.is_vector() {
        e.b.ins().vany_true(overflowed)
    } else {
        overflowed
    };
    let then = e.b.create_block();
    let done = e.b.create_block();
    e.b.ins().brif(any, then, &[], done, &[]);
    e.b.set_cold_block(then);
    e.b.switch_to_block(then);
    let rest = [
        ch,
        e.i(plane),
        e.i(c),
        e.i(a.size),
        e.i(a.before),
        e.f(types::F32, a.alpha),
        e.f(types::F32, a.beta),
        e.f(types::F32, a.k),
    ];
    for lane in 0..ty.lane_count() as usize {
        let at = e.b.ins().iadd_imm_s(p, 4 * (offset + lane) as i64);
        let mut args = vec![at];
        args.extend(rest);
        let y = e.call_ret(&entry::LRN_EXACT, &args)?;
        e.store(y, q, offset + lane);
    }
    e.b.ins().jump(done, &[]);
    e.b.switch_to_block(done);
    Ok(())
}

/// `v / d^beta` with `powf`'s special cases, as in the interpreter: `d^0`
/// is 1 for every `d` (0 and NaN too), `0^beta` and `inf^beta` are 0 or
/// infinity by the sign of `beta`, a negative `d` gives NaN for a
/// non-integer `beta` and keeps its sign for an odd one. `beta` is known
/// when compiling, so each case costs only where it can arise; `signed`
/// says whether `d` can be negative at all (a negative `k` or `alpha`).
///
/// For PyTorch's and ONNX's default `beta = 0.75` the power is
/// `sqrt(d) * sqrt(sqrt(d))`, exact to a few ulp and cheaper than
/// `exp(beta * log(d))`. Otherwise `v` is multiplied twice by `h = |d|^(-beta/2)`:
/// halving the exponent keeps `exp`'s argument inside the range where it
/// is exact (it clamps to `[-87, 88]`), and a power that only the product
/// overflows or underflows does so in the product, as in the interpreter.
fn divide_by_power(e: &mut Emit, ty: Type, v: Value, d: Value, beta: f32, signed: bool) -> Value {
    if beta == 0.0 {
        return v;
    }
    let inf = e.f(ty, f32::INFINITY);
    if beta == 0.75 {
        let r = e.b.ins().sqrt(d);
        let r4 = e.b.ins().sqrt(r);
        let mut p = e.b.ins().fmul(r, r4);
        if signed {
            // `sqrt` gives `powf`'s NaN for a negative `d` and +0 for -0,
            // but NaN for -inf, whose power is +inf.
            let ninf = e.f(ty, f32::NEG_INFINITY);
            let at_ninf = e.b.ins().fcmp(FloatCC::Equal, d, ninf);
            p = e.select(ty, at_ninf, inf, p);
        }
        return e.b.ins().fdiv(v, p);
    }
    let magnitude = if signed { e.b.ins().fabs(d) } else { d };
    if beta.is_infinite() {
        // `|d|^beta` is 1 at `|d| = 1` and NaN at NaN; otherwise 0 or
        // infinity by which side of 1 `|d|` is on and the sign of `beta`.
        let (below, above) = if beta > 0.0 {
            (0.0, f32::INFINITY)
        } else {
            (f32::INFINITY, 0.0)
        };
        let one = e.f(ty, 1.0);
        let (below, above) = (e.f(ty, below), e.f(ty, above));
        let less = e.b.ins().fcmp(FloatCC::LessThan, magnitude, one);
        let p = e.select(ty, less, below, above);
        let unit = e.b.ins().fcmp(FloatCC::Equal, magnitude, one);
        let p = e.select(ty, unit, one, p);
        let nan = e.b.ins().fcmp(FloatCC::Unordered, d, d);
        let p = e.select(ty, nan, d, p);
        return e.b.ins().fdiv(v, p);
    }
    let integer = beta.fract() == 0.0;
    // Every f32 of 2^24 and above is even.
    let odd = integer && beta % 2.0 != 0.0;
    // An integer power is taken of `|d|`, its sign put back below; any
    // other of `d`, whose log is NaN where `d` is negative (-inf, whose
    // power is not NaN, is among the limits below).
    let base = if integer { magnitude } else { d };
    let l = e.log(ty, base);
    let half = e.f(ty, -beta / 2.0);
    let t = e.b.ins().fmul(l, half);
    let h = e.exp(ty, t);
    // `exp` clamps its argument, so the log's infinities at `|d| = 0` and
    // `|d| = inf` need their limits.
    let (at_zero, at_inf) = if beta > 0.0 {
        (f32::INFINITY, 0.0)
    } else {
        (0.0, f32::INFINITY)
    };
    let zero = e.f(ty, 0.0);
    let is_zero = e.b.ins().fcmp(FloatCC::Equal, magnitude, zero);
    let limit = e.f(ty, at_zero);
    let h = e.select(ty, is_zero, limit, h);
    let is_inf = e.b.ins().fcmp(FloatCC::Equal, magnitude, inf);
    let limit = e.f(ty, at_inf);
    let h = e.select(ty, is_inf, limit, h);
    let y = e.b.ins().fmul(v, h);
    let y = e.b.ins().fmul(y, h);
    if odd && signed {
        // `h` is not negative, so `d`'s sign bit flips the product's.
        let sign_bit = e.f(ty, -0.0);
        let sign = e.b.ins().band(d, sign_bit);
        return e.b.ins().bxor(y, sign);
    }
    y
}
