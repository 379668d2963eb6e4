//! `im2col`, as one call of the native kernel per task, and the window
//! arithmetic the other window kernels share: which outputs of an axis
//! read inside the input. Only the padding before each axis (top, left)
//! is read: it places output 0's window, and the output shape already
//! accounts for the padding after.

use super::{Consts, Kernel, Operands};
use crate::backend::jit::Emit;
use crate::ir::Im2ColAttrs;
use nnc_runtime::kernels::entry;
use nnc_runtime::kernels::im2col::Im2Col;

pub(super) use nnc_runtime::kernels::im2col::valid;

/// The outputs `lo..hi` in `0..count` every one of whose `taps` taps (at
/// `k * dilation`, `k` in `0..taps`) reads a real input: the interior of a
/// window op along one axis, where no tap needs a bounds check.
pub(super) fn interior(
    count: usize,
    len: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    taps: usize,
) -> [usize; 2] {
    (0..taps).fold([0, count], |[lo, hi], k| {
        let (a, b) = valid(count, len, stride, k * dilation, pad);
        [lo.max(a), hi.min(b)]
    })
}

/// The end of the output columns from `start` (before `end`) that run four
/// at a time with [`Emit::load_strided4`]: whole chunks whose every lane
/// read, up to `offset` past the chunk's first input column (plus the odd
/// lanes a stride-2 gather loads), stays inside the `len` real columns of
/// the row. `start` itself when `stride` is neither 1 nor 2.
pub(super) fn vector_end(
    start: usize,
    end: usize,
    stride: usize,
    offset: usize,
    len: usize,
    pad: usize,
) -> usize {
    let mut at = start;
    if stride <= 2 {
        while at + 4 <= end && (at + 3) * stride + offset + stride - 1 < len + pad {
            at += 4;
        }
    }
    at
}

/// Builds the `im2col` kernel: one native call per input plane and
/// kernel row (see `nnc_runtime::kernels::im2col`).
pub fn build(a: &Im2ColAttrs, ops: Operands<'_>, consts: &mut Consts) -> Kernel {
    let x = &ops.inputs[0];
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let spec = Im2Col::new(
        n * c,
        [h, w],
        [ops.out.shape[2], ops.out.shape[3]],
        [a.kernel, a.stride, a.dilation, a.padding.begin],
        ops.kernel,
    );
    let tasks = spec.tasks();
    let spec = consts.keep(spec);
    let (src, dst) = (x.base, ops.out.base);
    Kernel::copy(
        tasks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, task| {
                let (spec, src, dst) = (e.ptr(spec), e.base(src), e.base(dst));
                e.call(&entry::IM2COL, &[spec, src, dst, task])?;
                Ok(())
            })
        }),
    )
}
