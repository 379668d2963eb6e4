//! `gemm`, `linear` and `matmul`. The first two are a JIT loop over the op's GEMM tasks, each a call
//! into the native GEMM (`nnc_runtime::kernels::tasks`) with the weights laid out at
//! compile time and the epilogue applied as each block is stored.

use super::elementwise::span;
use super::{Consts, Kernel, Operands};
use crate::backend::activation::native_activation;
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::{self, GemmAttrs, LinearAttrs};
use cranelift_codegen::ir::{types, InstBuilder};
use nnc_runtime::kernels::entry;
use nnc_runtime::kernels::gemv::Gemv;
use nnc_runtime::kernels::tasks::{pack, pack_winograd, Epilogue, GemmTask, LinearRows};
use nnc_runtime::kernels::Base;

/// The constant values of operand `i`, or an error naming it.
pub(super) fn constant<'a>(
    ops: &Operands<'a>,
    i: usize,
    what: &str,
) -> Result<&'a [f32], BackendError> {
    ops.values
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| BackendError::Codegen(format!("the {what} must be a constant weight")))
}

/// The native epilogue of an op's epilogue, with its bias operand at
/// `bias_index` (when `bias`) and the residual last.
pub(super) fn epilogue(
    ops: &Operands<'_>,
    bias: bool,
    bias_index: usize,
    e: &ir::Epilogue,
) -> Result<Epilogue, BackendError> {
    Ok(Epilogue {
        bias: if bias {
            Some(constant(ops, bias_index, "bias")?.to_vec())
        } else {
            None
        },
        residual: if e.residual {
            ops.inputs.last().map(|b| b.base)
        } else {
            None
        },
        activation: native_activation(e.activation)?,
    })
}

/// The kernel that runs every task of `task`.
pub(super) fn kernel(task: GemmTask, consts: &mut Consts) -> Result<Kernel, BackendError> {
    let tasks = task.tasks();
    // The kernel the weights were packed for (the portable one if the CPU
    // lacks the requested one).
    let name = task.packed.first().map_or("", |a| a.kernel().name());
    let address = consts.keep(task);
    Ok(Kernel {
        tasks,
        optimize: true,
        then: None,
        before: None,
        micro_kernel: Some(name.into()),
        body: Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let task = e.ptr(address);
                let arena = e.arena;
                e.call(&entry::GEMM_TASK, &[task, arena, t])?;
                Ok(())
            })
        }),
    })
}

/// `gemm`: per batch and group, `[M/groups, K] x [K, S]`.
pub fn gemm(a: &GemmAttrs, ops: Operands<'_>, consts: &mut Consts) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let (batch, k_total) = (x.shape[0], x.shape[1]);
    let spatial: usize = x.shape[2..].iter().product();
    let groups = a.groups.max(1);
    let (m, k) = (a.out_channels / groups, k_total / groups);
    let weight = constant(&ops, 1, "gemm weight")?;
    let packed = match a.winograd {
        Some(tile) => pack_winograd(ops.kernel, weight, tile, groups, m, k)?,
        None => pack(ops.kernel, weight, groups, m, k)?,
    };
    // A Winograd GEMM's B from memory comes from its input transform in
    // the micro-kernel's panels (see `winograd::in_panels`).
    let b_panels = a.winograd.is_some() && super::winograd::in_panels(&x.shape);
    let b_columns = if b_panels {
        spatial.next_multiple_of(ops.kernel.panel_width())
    } else {
        spatial
    };
    let task = GemmTask {
        packed,
        m,
        k,
        n: spatial,
        groups,
        products: batch * groups,
        b: x.base,
        b_stride: k * b_columns,
        ldb: spatial,
        c: ops.out.base,
        c_stride: m * spatial,
        ldc: spatial,
        epilogue: epilogue(&ops, a.bias, 2, &a.epilogue)?,
        m_block: m,
        n_block: spatial,
        b_panels,
    };
    let task = if ops.out_channel_parts > 1 && batch * groups == 1 {
        task.with_row_parts(ops.out_channel_parts)
    } else {
        task.with_blocks(ops.threads)
    };
    kernel(task, consts)
}

/// A `linear`'s bias values, if it has a bias.
fn linear_bias<'a>(a: &LinearAttrs, ops: &Operands<'a>) -> Result<Option<&'a [f32]>, BackendError> {
    a.bias.then(|| constant(ops, 2, "bias")).transpose()
}

/// Whether a `linear` over `x` runs as one product over all its rows
/// ([`LinearRows`]) rather than a matrix-vector product per row: with
/// more than one row, unless a residual (laid out like the output, not
/// like the transposed product) is fused in.
pub fn linear_over_rows(a: &LinearAttrs, x: &[usize]) -> bool {
    let k = x.last().copied().unwrap_or(1).max(1);
    x.iter().product::<usize>() / k > 1 && !a.epilogue.residual
}

/// `linear`: each row of `x [..., in]` times `weight^T`.
pub fn linear(
    a: &LinearAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let k = x.shape.last().copied().unwrap_or(1);
    let rows = x.len() / k.max(1);
    let m = a.out_features;
    if linear_over_rows(a, &x.shape) {
        let spec = LinearRows::new(
            ops.kernel,
            constant(&ops, 1, "linear weight")?,
            linear_bias(a, &ops)?,
            native_activation(a.epilogue.activation)?,
            (m, k, rows),
            ops.threads,
        )?;
        let tasks = spec.tasks();
        let spec = consts.keep(spec);
        let (src, dst) = (x.base, ops.out.base);
        let mut kernel = Kernel::jit(
            tasks,
            Box::new(move |e: &mut Emit| {
                e.for_tasks(|e, t| {
                    let (spec, x, out) = (e.ptr(spec), e.base(src), e.base(dst));
                    e.call(&entry::LINEAR_ROWS, &[spec, x, out, t])?;
                    Ok(())
                })
            }),
        );
        kernel.micro_kernel = Some(ops.kernel.name().into());
        return Ok(kernel);
    }
    if gemv_in_place(m, k) {
        return gemv(a, ops, consts, (m, k, rows));
    }
    let task = GemmTask {
        packed: pack(ops.kernel, constant(&ops, 1, "linear weight")?, 1, m, k)?,
        m,
        k,
        n: 1,
        groups: 1,
        products: rows,
        b: x.base,
        b_stride: k,
        ldb: 1,
        c: ops.out.base,
        c_stride: m,
        ldc: 1,
        epilogue: epilogue(&ops, a.bias, 2, &a.epilogue)?,
        m_block: m,
        n_block: 1,
        b_panels: false,
    }
    .with_blocks(ops.threads);
    kernel(task, consts)
}

/// Whether a `linear` of `m` outputs over `k` inputs, applied to single
/// rows, reads its weight in place ([`Gemv`]) rather than as packed GEMM
/// panels: from 16 MiB of weights. Packed panels are one sequential
/// stream for the narrow GEMM kernel and were 5-15% faster (AMD EPYC Zen
/// 5: 1000x512 from memory 22 against 19 GFLOP/s, 4096x9216 20-22 against
/// 18-20), but the packed copy holds a second copy of the weight while the
/// model loads; a classifier's 1000x1280 (5 MiB) costs little, VGG-19's
/// 4096x25088 (392 MiB) doubled its peak memory.
pub fn gemv_in_place(m: usize, k: usize) -> bool {
    4 * m * k >= 16 << 20
}

/// A `linear` over single rows (or with a residual laid out like the
/// output): a matrix-vector product per row, reading the weight in place.
fn gemv(
    a: &LinearAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
    (m, k, rows): (usize, usize, usize),
) -> Result<Kernel, BackendError> {
    let weight = &ops.inputs[1];
    if weight.len() < m * k || !matches!(weight.base, Base::Const(_)) {
        return Err(BackendError::Codegen(format!(
            "the linear weight must be a constant of {m} x {k} floats"
        )));
    }
    let spec = Gemv::new(
        ops.kernel,
        (m, k, rows),
        linear_bias(a, &ops)?,
        native_activation(a.epilogue.activation)?,
        ops.threads,
    )?;
    let tasks = spec.tasks();
    let spec = consts.keep(spec);
    let (w, src, dst) = (weight.base, ops.inputs[0].base, ops.out.base);
    let residual = a
        .epilogue
        .residual
        .then(|| ops.inputs.last().map(|b| b.base))
        .flatten();
    let mut kernel = Kernel::jit(
        tasks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let (spec, w, x, out) = (e.ptr(spec), e.base(w), e.base(src), e.base(dst));
                let residual = match residual {
                    Some(r) => e.base(r),
                    None => e.i(0),
                };
                e.call(&entry::GEMV, &[spec, w, x, out, residual, t])?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(ops.kernel.name().into());
    Ok(kernel)
}

/// `matmul` of two computed operands `[..., M, K] x [..., K, N]` with
/// broadcast batch dims: task `(batch, i)` accumulates row `i` of the
/// output as `sum_k a[i, k] * b[k, :]`, four columns at a time.
pub fn matmul(ops: Operands<'_>) -> Kernel {
    let (a, b, out) = (&ops.inputs[0], &ops.inputs[1], &ops.out);
    let rank = out.shape.len();
    let (m, n) = (out.shape[rank - 2], out.shape[rank - 1]);
    let k = a.shape[a.shape.len() - 1];
    let batch_shape = out.shape[..rank - 2].to_vec();
    let batches: usize = batch_shape.iter().product();
    // Element strides of each operand's matrices along the output's batch
    // dims (0 where the operand broadcasts).
    let strides = |shape: &[usize]| -> Vec<usize> {
        let matrix: usize = shape[shape.len() - 2..].iter().product();
        let dims = &shape[..shape.len() - 2];
        let lead = batch_shape.len() - dims.len();
        let mut strides = vec![0usize; batch_shape.len()];
        let mut step = matrix;
        for i in (0..dims.len()).rev() {
            strides[lead + i] = if dims[i] == 1 { 0 } else { step };
            step *= dims[i];
        }
        strides
    };
    let (sa, sb) = (strides(&a.shape), strides(&b.shape));
    let (pa, pb, pc) = (a.base, b.base, out.base);
    Kernel::jit(
        batches * m,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let i = e.rem_imm(t, m.max(1));
                let mut rest = e.div_imm(t, m.max(1));
                let (mut oa, mut ob) = (e.i(0), e.i(0));
                for d in (0..batch_shape.len()).rev() {
                    let digit = e.rem_imm(rest, batch_shape[d].max(1));
                    rest = e.div_imm(rest, batch_shape[d].max(1));
                    let ta = e.mul_imm(digit, sa[d]);
                    oa = e.add(oa, ta);
                    let tb = e.mul_imm(digit, sb[d]);
                    ob = e.add(ob, tb);
                }
                let row = e.mul_imm(i, k);
                let a_row = e.add(oa, row);
                let a_row = e.addr(pa, a_row);
                let b_mat = e.addr(pb, ob);
                let c_row = e.mul_imm(t, n);
                let c_row = e.addr(pc, c_row);
                let (lo, hi) = (e.i(0), e.i(n));
                span(e, lo, hi, |e, ty, j| {
                    let z = e.f(ty, 0.0);
                    let q = e.addr_of(c_row, j);
                    e.store(z, q, 0);
                    Ok(())
                })?;
                e.for_n(0, k, 1, |e, kk| {
                    let p = e.addr_of(a_row, kk);
                    let aik = e.load(types::F32, p, 0);
                    let b_off = e.mul_imm(kk, n);
                    let b_row = e.addr_of(b_mat, b_off);
                    span(e, lo, hi, |e, ty, j| {
                        let s = if ty == types::F32 {
                            aik
                        } else {
                            e.b.ins().splat(ty, aik)
                        };
                        let p = e.addr_of(b_row, j);
                        let v = e.load(ty, p, 0);
                        let q = e.addr_of(c_row, j);
                        let acc = e.load(ty, q, 0);
                        let r = e.b.ins().fma(s, v, acc);
                        e.store(r, q, 0);
                        Ok(())
                    })
                })
            })
        }),
    )
}
