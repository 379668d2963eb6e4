//! `softmax` and `log_softmax` along one dim, in three passes over each
//! line: its maximum, the sum of `exp(x - max)`, then the result,
//! `exp(x - max) / sum` (the exponentials stored by the second pass) or
//! `x - (max + log(sum))`.
//!
//! Along the last dim a line is a contiguous row, folded four vectors at
//! a time ([`RowAccumulators`]). Along another dim the lines of sixteen
//! neighbouring columns run side by side ([`Columns`]), one task per
//! block, each pass walking the dim with a stride.

use super::lanes::{self, Columns, RowAccumulators};
use super::{Kernel, Operands};
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::SoftmaxAttrs;
use cranelift_codegen::ir::{InstBuilder, Type, Value};

/// A splat of the scalar `v` to `ty`, or `v` itself for `f32`.
fn splat(e: &mut Emit, ty: Type, v: Value) -> Value {
    if ty == e.b.func.dfg.value_type(v) {
        v
    } else {
        e.b.ins().splat(ty, v)
    }
}

fn max(e: &mut Emit, acc: Value, v: Value) -> Value {
    e.max_keeping_nan(acc, v)
}

fn add(e: &mut Emit, acc: Value, v: Value) -> Value {
    e.b.ins().fadd(acc, v)
}

/// The kernel of `softmax` (`log: false`) or `log_softmax` along `a.dim`.
pub fn build(a: &SoftmaxAttrs, log: bool, ops: Operands<'_>) -> Kernel {
    let shape = &ops.inputs[0].shape;
    let outer: usize = shape[..a.dim].iter().product();
    let len = shape[a.dim];
    let inner: usize = shape[a.dim + 1..].iter().product();
    let (src, dst) = (ops.inputs[0].base, ops.out.base);
    if inner == 1 {
        return Kernel::jit(
            outer,
            Box::new(move |e: &mut Emit| {
                e.for_tasks(|e, t| {
                    let start = e.mul_imm(t, len);
                    let from = e.addr(src, start);
                    let to = e.addr(dst, start);
                    let load = |e: &mut Emit, ty: Type, i: Value, offset: usize| {
                        let p = e.addr_of(from, i);
                        e.load(ty, p, offset)
                    };
                    let peak = RowAccumulators::new(e, len, f32::NEG_INFINITY);
                    peak.fold(e, &max, &mut |e, ty, i, offset| Ok(load(e, ty, i, offset)))?;
                    let m = peak.finish(e, &max);
                    let total = RowAccumulators::new(e, len, 0.0);
                    total.fold(e, &add, &mut |e, ty, i, offset| {
                        let x = load(e, ty, i, offset);
                        let m = splat(e, ty, m);
                        let d = e.b.ins().fsub(x, m);
                        let y = e.exp(ty, d);
                        if !log {
                            let q = e.addr_of(to, i);
                            e.store(y, q, offset);
                        }
                        Ok(y)
                    })?;
                    let sum = total.finish(e, &add);
                    let scale = result_scale(e, log, m, sum);
                    e.vectorized(len, |e, ty, i| {
                        let s = splat(e, ty, scale);
                        let q = e.addr_of(to, i);
                        let y = if log {
                            let x = load(e, ty, i, 0);
                            e.b.ins().fsub(x, s)
                        } else {
                            let y = e.load(ty, q, 0);
                            e.b.ins().fmul(y, s)
                        };
                        e.store(y, q, 0);
                        Ok(())
                    })
                })
            }),
        );
    }
    let blocks = lanes::blocks(inner);
    Kernel::jit(
        outer * blocks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let o = e.div_imm(t, blocks);
                let b = e.rem_imm(t, blocks);
                let line = e.mul_imm(o, len * inner);
                lanes::for_block(e, b, inner, |e, first, columns| {
                    let start = e.add(line, first);
                    let from = e.addr(src, start);
                    let to = e.addr(dst, start);
                    block(e, log, len, inner, columns, from, to)
                })
            })
        }),
    )
}

/// After the first two passes: what the third applies, `max + log(sum)`
/// (subtracted) for `log_softmax`, `1 / sum` (multiplied) for `softmax`.
fn result_scale(e: &mut Emit, log: bool, m: Value, sum: Value) -> Value {
    let ty = e.b.func.dfg.value_type(sum);
    if log {
        let l = e.log(ty, sum);
        e.b.ins().fadd(m, l)
    } else {
        let one = e.f(ty, 1.0);
        e.b.ins().fdiv(one, sum)
    }
}

/// The three passes over `len` lines of one block of columns, line `i` of
/// column `j` at `from + i*inner + j`.
fn block(
    e: &mut Emit,
    log: bool,
    len: usize,
    inner: usize,
    columns: Columns,
    from: Value,
    to: Value,
) -> Result<(), BackendError> {
    let parts = columns.lanes();
    let peaks = columns.accumulators(e, f32::NEG_INFINITY);
    e.for_n(0, len, 1, |e, i| {
        let row = e.mul_imm(i, inner);
        let p = e.addr_of(from, row);
        for (&(ty, offset), &var) in parts.iter().zip(&peaks) {
            let x = e.load(ty, p, offset);
            let acc = e.b.use_var(var);
            let acc = max(e, acc, x);
            e.b.def_var(var, acc);
        }
        Ok(())
    })?;
    let maxima: Vec<Value> = peaks.iter().map(|&v| e.b.use_var(v)).collect();
    let totals = columns.accumulators(e, 0.0);
    e.for_n(0, len, 1, |e, i| {
        let row = e.mul_imm(i, inner);
        let p = e.addr_of(from, row);
        let q = e.addr_of(to, row);
        for ((&(ty, offset), &var), &m) in parts.iter().zip(&totals).zip(&maxima) {
            let x = e.load(ty, p, offset);
            let d = e.b.ins().fsub(x, m);
            let y = e.exp(ty, d);
            if !log {
                e.store(y, q, offset);
            }
            let acc = e.b.use_var(var);
            let acc = add(e, acc, y);
            e.b.def_var(var, acc);
        }
        Ok(())
    })?;
    let scales: Vec<Value> = totals
        .iter()
        .zip(&maxima)
        .map(|(&var, &m)| {
            let sum = e.b.use_var(var);
            result_scale(e, log, m, sum)
        })
        .collect();
    e.for_n(0, len, 1, |e, i| {
        let row = e.mul_imm(i, inner);
        let p = e.addr_of(from, row);
        let q = e.addr_of(to, row);
        for (&(ty, offset), &s) in parts.iter().zip(&scales) {
            let y = if log {
                let x = e.load(ty, p, offset);
                e.b.ins().fsub(x, s)
            } else {
                let y = e.load(ty, q, offset);
                e.b.ins().fmul(y, s)
            };
            e.store(y, q, offset);
        }
        Ok(())
    })
}
