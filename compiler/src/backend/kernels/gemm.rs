//! `gemm` and `linear`: a JIT loop over the op's GEMM tasks, each a call
//! into the native GEMM (`backend::native`) with the weights laid out at
//! compile time and the epilogue applied as each block is stored.

use super::{Consts, Kernel, Operands};
use crate::backend::jit::Emit;
use crate::backend::native::{nnc_gemm_task, Epilogue, GemmTask};
use crate::backend::BackendError;
use crate::ir::{self, GemmAttrs, LinearAttrs};

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
        activation: e.activation,
    })
}

/// The kernel that runs every task of `task`.
pub(super) fn kernel(task: GemmTask, consts: &mut Consts) -> Kernel {
    let tasks = task.tasks();
    let address = consts.gemm(task);
    Kernel {
        tasks,
        micro_kernel: Some("native (portable)".into()),
        body: Box::new(move |e: &mut Emit| {
            let f = nnc_gemm_task as *const () as usize;
            e.for_tasks(|e, t| {
                let task = e.i(address);
                let arena = e.arena;
                e.call_native(f, &[task, arena, t]);
                Ok(())
            })
        }),
    }
}

/// `gemm`: per batch and group, `[M/groups, K] x [K, S]`.
pub fn gemm(a: &GemmAttrs, ops: Operands<'_>, consts: &mut Consts) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let (batch, k_total) = (x.shape[0], x.shape[1]);
    let spatial: usize = x.shape[2..].iter().product();
    let groups = a.groups.max(1);
    let (m, k) = (a.out_channels / groups, k_total / groups);
    let task = GemmTask {
        a: constant(&ops, 1, "gemm weight")?.to_vec(),
        m,
        k,
        n: spatial,
        groups,
        products: batch * groups,
        b: x.base,
        b_stride: k * spatial,
        ldb: spatial,
        c: ops.out.base,
        c_stride: m * spatial,
        ldc: spatial,
        epilogue: epilogue(&ops, a.bias, 2, &a.epilogue)?,
        m_block: m,
        n_block: spatial,
    }
    .with_blocks(ops.threads);
    Ok(kernel(task, consts))
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
    let task = GemmTask {
        a: constant(&ops, 1, "linear weight")?.to_vec(),
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
    }
    .with_blocks(ops.threads);
    Ok(kernel(task, consts))
}
