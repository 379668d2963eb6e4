//! Elementwise kernels: activations, `add`, `mul`, fused `elementwise`
//! chains, classic dropout and a leftover `batch_norm` (as its per-channel
//! affine), all as one chain of steps over NumPy-broadcast operands.
//!
//! The output is split into an outer part and a contiguous inner part: the
//! longest suffix of dims over which every operand either matches the
//! output (read as a vector) or is constant (read once and splatted). The
//! inner part runs four lanes at a time with a scalar tail; each task is
//! one outer index and one chunk of the inner part.

use super::{Buf, Consts, Kernel, Operands};
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::{BinaryOp, ElementwiseStep, Op};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_runtime::kernels::Base;

/// Inner elements per task, so that big tensors split across threads.
const CHUNK: usize = 16 * 1024;

/// Builds the kernel of an elementwise op.
pub fn build(op: &Op, ops: Operands<'_>, consts: &mut Consts) -> Result<Kernel, BackendError> {
    let mut inputs = ops.inputs.clone();
    let steps: Vec<ElementwiseStep> = match op {
        Op::Binary(b) => vec![ElementwiseStep::Binary(*b, 1)],
        Op::Activation(act) => vec![ElementwiseStep::Activation(*act)],
        Op::Unary(f) => vec![ElementwiseStep::Unary(*f)],
        Op::Prelu(_) => {
            // The slope `[C]` broadcasts along dim 1: `[C, 1, ...]`. One
            // slope is a rank-0 operand, which broadcasts to any `x`, a
            // scalar included (as `[1]` it would outrank a scalar `x`).
            let rank = inputs[0].shape.len();
            if let Some(slope) = inputs.get_mut(1) {
                let mut shape = slope.shape.clone();
                if shape.iter().product::<usize>() == 1 {
                    shape.clear();
                } else if shape.len() == 1 {
                    shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
                }
                slope.shape = shape;
            }
            vec![ElementwiseStep::Prelu(1)]
        }
        Op::Elementwise(a) => a.steps.clone(),
        Op::Dropout(a) => {
            inputs.truncate(1);
            inputs.push(Buf {
                base: consts.add(vec![1.0 - a.p]),
                shape: vec![1],
            });
            vec![ElementwiseStep::Binary(BinaryOp::Mul, 1)]
        }
        Op::BatchNorm(a) => {
            let value = |i: usize| ops.values.get(i).copied().flatten().unwrap_or(&[]);
            let (gamma, beta, mean, var) = (value(1), value(2), value(3), value(4));
            let c = gamma.len();
            if [beta.len(), mean.len(), var.len()] != [c, c, c] {
                return Err(BackendError::Codegen(
                    "batch_norm parameters must be constants".into(),
                ));
            }
            let (scale, shift): (Vec<f32>, Vec<f32>) = (0..c)
                .map(|i| {
                    let s = f64::from(gamma[i]) / (f64::from(var[i]) + f64::from(a.eps)).sqrt();
                    (
                        s as f32,
                        (f64::from(beta[i]) - f64::from(mean[i]) * s) as f32,
                    )
                })
                .unzip();
            // [C, 1, ...]: broadcast along axis 1 of the input.
            let mut shape = vec![c];
            shape.extend(std::iter::repeat_n(
                1,
                inputs[0].shape.len().saturating_sub(2),
            ));
            inputs.truncate(1);
            inputs.push(Buf {
                base: consts.add(scale),
                shape: shape.clone(),
            });
            inputs.push(Buf {
                base: consts.add(shift),
                shape,
            });
            vec![
                ElementwiseStep::Binary(BinaryOp::Mul, 1),
                ElementwiseStep::Binary(BinaryOp::Add, 2),
            ]
        }
        other => {
            return Err(BackendError::Codegen(format!(
                "`{}` is not elementwise",
                other.name()
            )))
        }
    };
    Ok(chain(inputs, steps, ops.out))
}

/// How one operand is read along the inner part.
#[derive(Clone, Debug)]
struct Access {
    base: Base,
    /// Stride (in elements) of each outer dim.
    outer_strides: Vec<usize>,
    /// True when the operand matches the output along the inner part; false
    /// when it is constant there.
    contiguous: bool,
}

/// Row-major strides of `shape` aligned to the right of a rank-`rank`
/// output, with 0 on broadcast dims. An operand may have more dims than the
/// output when the extra leading ones are 1 (a `prelu` slope `[1]` on a
/// scalar, found by the `graph_diff` fuzz target); they are dropped.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let shape = &shape[shape.len().saturating_sub(out.len())..];
    let lead = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut step = 1;
    for i in (0..shape.len()).rev() {
        strides[lead + i] = if shape[i] == 1 { 0 } else { step };
        step *= shape[i];
    }
    strides
}

/// The kernel `out = steps(inputs)`.
pub fn chain(inputs: Vec<Buf>, steps: Vec<ElementwiseStep>, out: Buf) -> Kernel {
    let shape = out.shape.clone();
    let rank = shape.len();
    let strides: Vec<Vec<usize>> = inputs
        .iter()
        .map(|b| broadcast_strides(&b.shape, &shape))
        .collect();
    // Output strides, row-major.
    let mut out_strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        out_strides[d] = out_strides[d + 1] * shape[d + 1];
    }
    // The longest suffix over which each operand is all-contiguous or
    // all-broadcast (dims of size 1 fit either).
    let mut split = rank;
    let mut kinds: Vec<Option<bool>> = vec![None; inputs.len()];
    while split > 0 {
        let d = split - 1;
        let mut ok = true;
        let mut next = kinds.clone();
        for (k, s) in next.iter_mut().zip(&strides) {
            if shape[d] == 1 {
                continue;
            }
            let here = s[d] == out_strides[d];
            let zero = s[d] == 0;
            match *k {
                None if here => *k = Some(true),
                None if zero => *k = Some(false),
                Some(true) if here => {}
                Some(false) if zero => {}
                _ => ok = false,
            }
        }
        if !ok {
            break;
        }
        kinds = next;
        split = d;
    }
    let inner: usize = shape[split..].iter().product();
    let outer_shape = shape[..split].to_vec();
    let outer: usize = outer_shape.iter().product();
    let accesses: Vec<Access> = inputs
        .iter()
        .zip(&strides)
        .zip(&kinds)
        .map(|((b, s), k)| Access {
            base: b.base,
            outer_strides: s[..split].to_vec(),
            contiguous: k.unwrap_or(true) && inner > 1,
        })
        .collect();
    let chunk = CHUNK.min(inner.max(1));
    let chunks = inner.div_ceil(chunk).max(1);
    let tasks = outer * chunks;
    let out_base = out.base;
    Kernel::jit(
        tasks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let o = e.div_imm(t, chunks);
                let c = e.rem_imm(t, chunks);
                // Offsets of outer index `o` in each operand and the output.
                let mut offsets = Vec::with_capacity(accesses.len());
                let digits = outer_digits(e, o, &outer_shape);
                for a in &accesses {
                    offsets.push(dot(e, &digits, &a.outer_strides));
                }
                let out_off = e.mul_imm(o, inner);
                let lo = e.mul_imm(c, chunk);
                let hi = e.add_imm(lo, chunk);
                let limit = e.i(inner);
                let hi = e.b.ins().umin(hi, limit);
                // Operands constant along the inner part: one load each.
                let mut scalars: Vec<Option<Value>> = Vec::new();
                for (a, &off) in accesses.iter().zip(&offsets) {
                    scalars.push(if a.contiguous {
                        None
                    } else {
                        let p = e.addr(a.base, off);
                        Some(e.load(types::F32, p, 0))
                    });
                }
                let run = |e: &mut Emit, ty: Type, i: Value| -> Result<(), BackendError> {
                    let mut values = Vec::with_capacity(accesses.len());
                    for ((a, &off), s) in accesses.iter().zip(&offsets).zip(&scalars) {
                        values.push(match s {
                            Some(v) if ty == types::F32 => *v,
                            Some(v) => e.b.ins().splat(ty, *v),
                            None => {
                                let idx = e.add(off, i);
                                let p = e.addr(a.base, idx);
                                e.load(ty, p, 0)
                            }
                        });
                    }
                    let mut acc = values[0];
                    for step in &steps {
                        acc = match *step {
                            ElementwiseStep::Binary(op, j) => e.binary(ty, op, acc, values[j]),
                            ElementwiseStep::Activation(act) => e.activation(ty, act, acc),
                            ElementwiseStep::Unary(f) => e.unary(ty, f, acc),
                            ElementwiseStep::Prelu(j) => e.prelu(ty, acc, values[j]),
                        };
                    }
                    let idx = e.add(out_off, i);
                    let p = e.addr(out_base, idx);
                    e.store(acc, p, 0);
                    Ok(())
                };
                span(e, lo, hi, run)
            })
        }),
    )
}

/// Runs `f` over `lo..hi` four lanes at a time, then one at a time.
pub fn span(
    e: &mut Emit,
    lo: Value,
    hi: Value,
    mut f: impl FnMut(&mut Emit, Type, Value) -> Result<(), BackendError>,
) -> Result<(), BackendError> {
    let len = e.b.ins().isub(hi, lo);
    let body = e.b.ins().band_imm_s(len, !3);
    let vec_end = e.add(lo, body);
    e.for_range(lo, vec_end, 4, |e, i| f(e, types::F32X4, i))?;
    e.for_range(vec_end, hi, 1, |e, i| f(e, types::F32, i))
}

/// The multi-index of flat index `o` in `shape` (row-major).
fn outer_digits(e: &mut Emit, o: Value, shape: &[usize]) -> Vec<Value> {
    let mut digits = vec![o; shape.len()];
    let mut rest = o;
    for d in (0..shape.len()).rev() {
        digits[d] = e.rem_imm(rest, shape[d].max(1));
        rest = e.div_imm(rest, shape[d].max(1));
    }
    digits
}

/// `sum(digits[d] * strides[d])`.
fn dot(e: &mut Emit, digits: &[Value], strides: &[usize]) -> Value {
    let mut acc = e.i(0);
    for (&d, &s) in digits.iter().zip(strides) {
        if s != 0 {
            let term = e.mul_imm(d, s);
            acc = e.add(acc, term);
        }
    }
    acc
}
