//! `group_norm`, `layer_norm`, `instance_norm` and `softmax`.
//!
//! The norms share one kernel: each task normalises one row (a sample's
//! group, a sample's normalised dims, or one channel plane) with its mean
//! and biased variance, computed in two passes four lanes at a time, then
//! applies the affine per channel or per element. `softmax` subtracts the
//! row maximum before `exp`, as the interpreter does.

use super::elementwise::span;
use super::gemm::constant;
use super::{Consts, Kernel, Operands};
use crate::backend::jit::{Base, Emit, F32X4};
use crate::backend::BackendError;
use crate::ir::{Op, SoftmaxAttrs};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

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
                let mean = e.b.ins().fmul(total, inv_len);
                let sq = reduce(e, from, len, 0.0, true, &|e, ty, x| {
                    let m = if ty == types::F32 {
                        mean
                    } else {
                        e.b.ins().splat(ty, mean)
                    };
                    let d = e.b.ins().fsub(x, m);
                    e.b.ins().fmul(d, d)
                })?;
                let var = e.b.ins().fmul(sq, inv_len);
                let eps = e.f(types::F32, eps);
                let var = e.b.ins().fadd(var, eps);
                let std = e.b.ins().sqrt(var);
                let one = e.f(types::F32, 1.0);
                let inv_std = e.b.ins().fdiv(one, std);
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
                        let m = splat(e, mean);
                        let s = splat(e, inv_std);
                        let d = e.b.ins().fsub(x, m);
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

/// `softmax` along `dim`: one task per (outer, inner) position, whose row
/// of `len` elements has stride `inner`.
pub fn softmax(a: &SoftmaxAttrs, ops: Operands<'_>) -> Kernel {
    let shape = &ops.inputs[0].shape;
    let outer: usize = shape[..a.dim].iter().product();
    let len = shape[a.dim];
    let inner: usize = shape[a.dim + 1..].iter().product();
    let (src, dst) = (ops.inputs[0].base, ops.out.base);
    Kernel::jit(
        outer * inner,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let o = e.div_imm(t, inner.max(1));
                let j = e.rem_imm(t, inner.max(1));
                let start = e.mul_imm(o, len * inner);
                let start = e.add(start, j);
                let from = e.addr(src, start);
                let to = e.addr(dst, start);
                let max = e.b.declare_var(types::F32);
                let init = e.f(types::F32, f32::NEG_INFINITY);
                e.b.def_var(max, init);
                e.for_n(0, len, 1, |e, i| {
                    let k = e.mul_imm(i, inner);
                    let p = e.addr_of(from, k);
                    let v = e.load(types::F32, p, 0);
                    let m = e.b.use_var(max);
                    let m = e.b.ins().fmax(m, v);
                    e.b.def_var(max, m);
                    Ok(())
                })?;
                let m = e.b.use_var(max);
                let total = e.b.declare_var(types::F32);
                let zero = e.f(types::F32, 0.0);
                e.b.def_var(total, zero);
                e.for_n(0, len, 1, |e, i| {
                    let k = e.mul_imm(i, inner);
                    let p = e.addr_of(from, k);
                    let v = e.load(types::F32, p, 0);
                    let d = e.b.ins().fsub(v, m);
                    let x = e.exp(types::F32, d);
                    let q = e.addr_of(to, k);
                    e.store(x, q, 0);
                    let s = e.b.use_var(total);
                    let s = e.b.ins().fadd(s, x);
                    e.b.def_var(total, s);
                    Ok(())
                })?;
                let s = e.b.use_var(total);
                let one = e.f(types::F32, 1.0);
                let inv = e.b.ins().fdiv(one, s);
                e.for_n(0, len, 1, |e, i| {
                    let k = e.mul_imm(i, inner);
                    let q = e.addr_of(to, k);
                    let v = e.load(types::F32, q, 0);
                    let v = e.b.ins().fmul(v, inv);
                    e.store(v, q, 0);
                    Ok(())
                })
            })
        }),
    )
}
