//! `im2col`: one task per input channel plane and kernel row, which
//! writes the `kw` column rows of that channel and row. The taps are
//! unrolled, so each row's valid (unpadded) output range is a compile-time
//! constant: rows and columns that read padding are zero-filled, the rest
//! copied, four lanes at a time when the stride is 1. Only the padding
//! before each axis (top, left) is read: it places output 0's window, and
//! the output shape already accounts for the padding after.

use super::elementwise::span;
use super::{Kernel, Operands};
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::Im2ColAttrs;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

/// The output positions `o` in `0..count` whose input `o*stride + offset -
/// pad` lies in `0..len`, as `lo..hi`.
pub(super) fn valid(
    count: usize,
    len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> (usize, usize) {
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    let hi = if offset >= len + pad {
        0
    } else {
        ((len + pad - offset - 1) / stride + 1).min(count)
    };
    (lo.min(hi), hi)
}

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

/// Stores zeros at `ptr[lo..hi]`.
pub(super) fn zero_fill(
    e: &mut Emit,
    ptr: Value,
    lo: usize,
    hi: usize,
) -> Result<(), BackendError> {
    if lo >= hi {
        return Ok(());
    }
    let (lo, hi) = (e.i(lo), e.i(hi));
    span(e, lo, hi, |e, ty: Type, i| {
        let z = e.f(ty, 0.0);
        let p = e.addr_of(ptr, i);
        e.store(z, p, 0);
        Ok(())
    })
}

/// Builds the `im2col` kernel.
pub fn build(a: &Im2ColAttrs, ops: Operands<'_>) -> Kernel {
    let x = &ops.inputs[0];
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (oh, ow) = (ops.out.shape[2], ops.out.shape[3]);
    let [kh, kw] = a.kernel;
    let (src, dst) = (x.base, ops.out.base);
    let a = a.clone();
    Kernel::copy(
        n * c * kh,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, task| {
                // Task (plane, ky): a stem conv has 3 input channels, too
                // few tasks for the threads without the tap rows.
                let t = e.div_imm(task, kh);
                let task_ky = e.rem_imm(task, kh);
                let plane = e.mul_imm(t, h * w);
                let src = e.addr(src, plane);
                let rows = e.mul_imm(t, kh * kw * oh * ow);
                let dst = e.addr(dst, rows);
                for ky in 0..kh {
                    let this = e.b.ins().icmp_imm_u(IntCC::Equal, task_ky, ky as i64);
                    e.if_then(this, |e| {
                        let (y0, y1) =
                            valid(oh, h, a.stride[0], ky * a.dilation[0], a.padding.begin[0]);
                        for kx in 0..kw {
                            let (x0, x1) =
                                valid(ow, w, a.stride[1], kx * a.dilation[1], a.padding.begin[1]);
                            let row = e.add_imm(dst, 4 * (ky * kw + kx) * oh * ow);
                            zero_fill(e, row, 0, y0 * ow)?;
                            zero_fill(e, row, y1 * ow, oh * ow)?;
                            // Saturating: with no valid column (a padding
                            // before wider than the window reaches) it is
                            // never read.
                            let ix0 = (x0 * a.stride[1] + kx * a.dilation[1])
                                .saturating_sub(a.padding.begin[1]);
                            e.for_n(y0, y1, 1, |e, oy| {
                                let iy = e.mul_imm(oy, a.stride[0]);
                                let iy = e.add_imm(iy, ky * a.dilation[0]);
                                let iy = e.sub_imm(iy, a.padding.begin[0]);
                                let in_row = e.mul_imm(iy, w);
                                let in_row = e.add_imm(in_row, ix0);
                                let from = e.addr_of(src, in_row);
                                let out_row = e.mul_imm(oy, ow);
                                let to = e.addr_of(row, out_row);
                                zero_fill(e, to, 0, x0)?;
                                zero_fill(e, to, x1, ow)?;
                                let (lo, hi) = (e.i(x0), e.i(x1));
                                if a.stride[1] == 1 {
                                    let base = e.i(x0);
                                    span(e, lo, hi, |e, ty, i| {
                                        let j = e.b.ins().isub(i, base);
                                        let p = e.addr_of(from, j);
                                        let v = e.load(ty, p, 0);
                                        let q = e.addr_of(to, i);
                                        e.store(v, q, 0);
                                        Ok(())
                                    })
                                } else {
                                    // Stride 2: four columns per gathered load
                                    // while its 8 reads stay inside the row.
                                    let s = a.stride[1];
                                    let vend = vector_end(
                                        x0,
                                        x1,
                                        s,
                                        kx * a.dilation[1],
                                        w,
                                        a.padding.begin[1],
                                    );
                                    let vector_end = e.i(vend);
                                    e.for_range(lo, vector_end, 4, |e, ox| {
                                        let j = e.b.ins().isub(ox, lo);
                                        let j = e.mul_imm(j, s);
                                        let p = e.addr_of(from, j);
                                        let v = e.load_strided4(p, s);
                                        let q = e.addr_of(to, ox);
                                        e.store(v, q, 0);
                                        Ok(())
                                    })?;
                                    e.for_range(vector_end, hi, 1, |e, ox| {
                                        let j = e.b.ins().isub(ox, lo);
                                        let j = e.mul_imm(j, a.stride[1]);
                                        let p = e.addr_of(from, j);
                                        let v = e.load(types::F32, p, 0);
                                        let q = e.addr_of(to, ox);
                                        e.store(v, q, 0);
                                        Ok(())
                                    })
                                }
                            })?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })
        }),
    )
}
