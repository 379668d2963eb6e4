//! Elementwise kernels: activations, `add`, `mul`, fused `elementwise`
//! chains, classic dropout and a leftover `batch_norm` (as its per-channel
//! affine), all as one chain of steps over NumPy-broadcast operands.
//!
//! The output is split into an outer part and a contiguous inner part: the
//! longest suffix of dims over which every operand either matches the
//! output (read as a vector) or is constant (read once and splatted). Each
//! task is one outer index and one chunk of the inner part. A chain of
//! multiplies and adds by operands constant there (a per-channel affine),
//! then an activation, calls the native [`Affine`] run with the task's
//! constants composed into one scale and shift; other chains run as JIT
//! code four lanes at a time with a scalar tail.

use super::{Buf, Consts, Kernel, Operands};
use crate::backend::activation::native_activation;
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::{BinaryOp, ElementwiseStep, Op};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_runtime::kernels::affine::Affine;
use nnc_runtime::kernels::{entry, Base};

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
    let plan = Plan::new(&inputs, &ops.out.shape);
    if let Some(kernel) = affine(&plan, &steps, &ops, consts) {
        return Ok(kernel);
    }
    Ok(plan.kernel(steps, ops.out.base))
}

/// The native per-channel affine ([`Affine`]) for a chain of multiplies
/// and adds by operands constant along the inner part, then at most an
/// activation, or `None` for any other chain. The constants of a task's
/// run are composed into one scale and shift: `(x * a + b) * c + d` as
/// `x * (a * c) + (b * c + d)`, rounded differently by a few ulp.
/// DenseNet-121's batch norms before its ReLUs (62 chains, 2.5-2.8 ms of
/// its 48 at four lanes; the Model Zoo's as two affines each) and
/// EfficientNet-B0's squeeze-and-excite gates are such chains.
fn affine(
    plan: &Plan,
    steps: &[ElementwiseStep],
    ops: &Operands<'_>,
    consts: &mut Consts,
) -> Option<Kernel> {
    let (x, rest) = plan.accesses.split_first()?;
    if !x.contiguous || rest.iter().any(|a| a.contiguous) {
        return None;
    }
    let (activation, affine) = match steps.split_last() {
        Some((ElementwiseStep::Activation(act), affine)) => (Some(*act), affine),
        _ => (None, steps),
    };
    let affine: Vec<(BinaryOp, usize)> = affine
        .iter()
        .map(|step| match *step {
            ElementwiseStep::Binary(op @ (BinaryOp::Mul | BinaryOp::Add), j) => Some((op, j)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let spec = Affine::new(native_activation(activation).ok()?, ops.kernel);
    let spec = consts.keep(spec);
    let (plan, out) = (plan.clone(), ops.out.base);
    let mut kernel = Kernel::jit(
        plan.tasks(),
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let (offsets, out_off, lo, hi) = plan.task(e, t);
                // This task's constants, one load each, composed.
                let mut scale = e.b.ins().f32const(1.0);
                let mut shift = e.b.ins().f32const(0.0);
                for &(op, j) in &affine {
                    let p = e.addr(plan.accesses[j].base, offsets[j]);
                    let v = e.load(types::F32, p, 0);
                    if op == BinaryOp::Mul {
                        scale = e.b.ins().fmul(scale, v);
                        shift = e.b.ins().fmul(shift, v);
                    } else {
                        shift = e.b.ins().fadd(shift, v);
                    }
                }
                let at = e.add(offsets[0], lo);
                let x = e.addr(plan.accesses[0].base, at);
                let at = e.add(out_off, lo);
                let dst = e.addr(out, at);
                let n = e.b.ins().isub(hi, lo);
                let spec = e.ptr(spec);
                e.call(&entry::AFFINE, &[spec, x, dst, n, scale, shift])?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(ops.kernel.name().into());
    Some(kernel)
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

/// How an elementwise kernel walks its output: an outer part, one task
/// per index and chunk, and a contiguous inner part, with each operand's
/// reads.
#[derive(Clone, Debug)]
struct Plan {
    accesses: Vec<Access>,
    outer_shape: Vec<usize>,
    inner: usize,
    chunk: usize,
    chunks: usize,
}

impl Plan {
    /// The plan for `inputs` broadcast to `shape`: the inner part is the
    /// longest suffix of dims over which each operand is all-contiguous or
    /// all-broadcast (dims of size 1 fit either).
    fn new(inputs: &[Buf], shape: &[usize]) -> Plan {
        let rank = shape.len();
        let strides: Vec<Vec<usize>> = inputs
            .iter()
            .map(|b| broadcast_strides(&b.shape, shape))
            .collect();
        // Output strides, row-major.
        let mut out_strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            out_strides[d] = out_strides[d + 1] * shape[d + 1];
        }
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
        Plan {
            accesses,
            outer_shape: shape[..split].to_vec(),
            inner,
            chunk,
            chunks: inner.div_ceil(chunk).max(1),
        }
    }

    fn tasks(&self) -> usize {
        self.outer_shape.iter().product::<usize>() * self.chunks
    }

    /// Task `t`'s offsets of its outer index in each operand and in the
    /// output, and its run `lo..hi` of the inner part.
    fn task(&self, e: &mut Emit, t: Value) -> (Vec<Value>, Value, Value, Value) {
        let o = e.div_imm(t, self.chunks);
        let c = e.rem_imm(t, self.chunks);
        let digits = outer_digits(e, o, &self.outer_shape);
        let offsets = self
            .accesses
            .iter()
            .map(|a| dot(e, &digits, &a.outer_strides))
            .collect();
        let out_off = e.mul_imm(o, self.inner);
        let lo = e.mul_imm(c, self.chunk);
        let hi = e.add_imm(lo, self.chunk);
        let limit = e.i(self.inner);
        let hi = e.b.ins().umin(hi, limit);
        (offsets, out_off, lo, hi)
    }

    /// The JIT kernel `out = steps(inputs)`, four lanes at a time.
    fn kernel(self, steps: Vec<ElementwiseStep>, out_base: Base) -> Kernel {
        Kernel::jit(
            self.tasks(),
            Box::new(move |e: &mut Emit| {
                e.for_tasks(|e, t| {
                    let (offsets, out_off, lo, hi) = self.task(e, t);
                    // Operands constant along the inner part: one load each.
                    let mut scalars: Vec<Option<Value>> = Vec::new();
                    for (a, &off) in self.accesses.iter().zip(&offsets) {
                        scalars.push(if a.contiguous {
                            None
                        } else {
                            let p = e.addr(a.base, off);
                            Some(e.load(types::F32, p, 0))
                        });
                    }
                    let accesses = &self.accesses;
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
