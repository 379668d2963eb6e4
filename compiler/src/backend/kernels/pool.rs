//! Pooling: one task per `[H, W]` plane. With AVX-512 or AVX2 each plane
//! is one call of the native pooling rows (sixteen or eight lanes; see
//! `pool_rows.rs`).
//! Otherwise the JIT's four-lane code, window taps unrolled: Interior
//! outputs run four at a time without bounds checks; elsewhere a tap
//! outside the input reads a clamped address and is replaced by the
//! padding value (`-inf` for max, 0 for average) without a branch. Average
//! pooling multiplies by a compile-time table of `1/divisor` per output
//! position, which encodes PyTorch's `count_include_pad` rule. Only the
//! padding before each axis (top, left) places the windows; the padding
//! after shows in the output shape and in the divisors.

use super::im2col::{interior, vector_end};
use super::{Consts, Kernel, Operands};
use crate::backend::jit::{Emit, F32X4};
use crate::backend::BackendError;
use crate::ir::{AvgPool2dAttrs, MaxPool2dAttrs, Padding, ReduceAttrs, Reduction};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_runtime::kernels::entry;
use nnc_runtime::kernels::gemm::MicroKernel;
use nnc_runtime::kernels::has_vector_rows;
use nnc_runtime::kernels::pool_rows::{PoolKind, PoolRows};
use nnc_runtime::kernels::Base;

/// Geometry of one pooling window.
#[derive(Clone, Copy)]
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    /// The padding before each axis, `[top, left]`.
    padding: [usize; 2],
    dilation: [usize; 2],
}

/// The pooling kernel: `combine(acc, tap)` over each window (max or sum),
/// then for average pooling the scale by `1/divisor`.
///
/// Interior windows (every tap inside the input, rows and columns known at
/// compile time) run four output columns at a time with no bounds checks,
/// stride-2 columns gathered with a shuffle; there every divisor is the
/// window area. All other outputs run one at a time with the branchless
/// taps.
fn pool(
    ops: &Operands<'_>,
    win: Window,
    pad_value: f32,
    is_max: bool,
    inverse_divisors: Option<Base>,
    consts: &mut Consts,
) -> Kernel {
    // A 2x2 window without padding (VGG's and UNet's pools) has too few
    // taps to pay for the AVX2 rows' padded copy of the input: the JIT's
    // code was 0.105 ms against 0.144 on a 112x112x32 max pool (Zen 3).
    let few_taps =
        ops.kernel == MicroKernel::Avx2Fma && win.kernel == [2, 2] && win.padding == [0, 0];
    if has_vector_rows(ops.kernel) && !few_taps {
        return native(ops, win, is_max, inverse_divisors, consts);
    }
    let x = &ops.inputs[0];
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (oh, ow) = (ops.out.shape[2], ops.out.shape[3]);
    let (src, dst) = (x.base, ops.out.base);
    let [kh, kw] = win.kernel;
    // The interior: output rows and columns whose every tap is real.
    let axis = |i: usize, count, len, taps| {
        interior(
            count,
            len,
            win.stride[i],
            win.dilation[i],
            win.padding[i],
            taps,
        )
    };
    let [y0, y1] = axis(0, oh, h, kh);
    let [x0, x1] = axis(1, ow, w, kw);
    let (sw, dw, pw) = (win.stride[1], win.dilation[1], win.padding[1]);
    let vector_end = if y0 < y1 {
        vector_end(x0, x1, sw, (kw - 1) * dw, w, pw)
    } else {
        x0
    };
    let combine = move |e: &mut Emit, acc: Value, v: Value| {
        if is_max {
            e.max_keeping_nan(acc, v)
        } else {
            e.b.ins().fadd(acc, v)
        }
    };
    Kernel::jit(
        n * c,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let plane = e.mul_imm(t, h * w);
                let src = e.addr(src, plane);
                let out = e.mul_imm(t, oh * ow);
                let dst = e.addr(dst, out);
                let table = inverse_divisors.map(|b| e.base(b));
                // One output with every tap checked.
                let scalar = |e: &mut Emit, oy: Value, ox: Value| -> Result<(), BackendError> {
                    let mut acc = e.f(types::F32, pad_value);
                    for ky in 0..kh {
                        let iy = tap(e, oy, ky, win, 0);
                        let (hh, ww) = (e.i(h), e.i(w));
                        let y_in = e.b.ins().icmp(IntCC::UnsignedLessThan, iy, hh);
                        for kx in 0..kw {
                            let ix = tap(e, ox, kx, win, 1);
                            let x_in = e.b.ins().icmp(IntCC::UnsignedLessThan, ix, ww);
                            let inside = e.b.ins().band(y_in, x_in);
                            let row = e.mul_imm(iy, w);
                            let idx = e.add(row, ix);
                            let zero = e.i(0);
                            let idx = e.b.ins().select(inside, idx, zero);
                            let p = e.addr_of(src, idx);
                            let v = e.load(types::F32, p, 0);
                            let pad = e.f(types::F32, pad_value);
                            let v = e.b.ins().select(inside, v, pad);
                            acc = combine(e, acc, v);
                        }
                    }
                    let row = e.mul_imm(oy, ow);
                    let o = e.add(row, ox);
                    if let Some(table) = table {
                        let p = e.addr_of(table, o);
                        let inv = e.load(types::F32, p, 0);
                        acc = e.b.ins().fmul(acc, inv);
                    }
                    let q = e.addr_of(dst, o);
                    e.store(acc, q, 0);
                    Ok(())
                };
                let border = |e: &mut Emit, oy: Value| e.for_n(0, ow, 1, |e, ox| scalar(e, oy, ox));
                e.for_n(0, y0.min(oh), 1, border)?;
                e.for_n(y0, y1.max(y0), 1, |e, oy| {
                    e.for_n(0, x0, 1, |e, ox| scalar(e, oy, ox))?;
                    let mut rows = Vec::with_capacity(kh);
                    for ky in 0..kh {
                        let iy = tap(e, oy, ky, win, 0);
                        let start = e.mul_imm(iy, w);
                        rows.push(e.addr_of(src, start));
                    }
                    let out_row = e.mul_imm(oy, ow);
                    let out_row = e.addr_of(dst, out_row);
                    e.for_n(x0, vector_end, 4, |e, ox| {
                        let mut acc = e.f(F32X4, pad_value);
                        let base = e.mul_imm(ox, sw);
                        for &in_row in &rows {
                            for kx in 0..kw {
                                let ix = e.b.ins().iadd_imm_s(base, (kx * dw) as i64 - pw as i64);
                                let p = e.addr_of(in_row, ix);
                                let v = e.load_strided4(p, sw);
                                acc = combine(e, acc, v);
                            }
                        }
                        if !is_max {
                            let inv = e.f(F32X4, 1.0 / (kh * kw) as f32);
                            acc = e.b.ins().fmul(acc, inv);
                        }
                        let q = e.addr_of(out_row, ox);
                        e.store(acc, q, 0);
                        Ok(())
                    })?;
                    e.for_n(vector_end, ow, 1, |e, ox| scalar(e, oy, ox))
                })?;
                e.for_n(y1.max(y0), oh, 1, border)
            })
        }),
    )
}

/// One task per plane, each one call of the native pooling rows.
fn native(
    ops: &Operands<'_>,
    win: Window,
    is_max: bool,
    inverse_divisors: Option<Base>,
    consts: &mut Consts,
) -> Kernel {
    let x = &ops.inputs[0];
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (oh, ow) = (ops.out.shape[2], ops.out.shape[3]);
    let (src, dst) = (x.base, ops.out.base);
    let spec = consts.keep(PoolRows {
        h,
        w,
        ow,
        kernel: win.kernel,
        stride: win.stride,
        padding: win.padding,
        dilation: win.dilation,
        kind: if is_max { PoolKind::Max } else { PoolKind::Avg },
        kernel_impl: ops.kernel,
    });
    let mut kernel = Kernel::jit(
        n * c,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let plane = e.mul_imm(t, h * w);
                let src = e.addr(src, plane);
                let out = e.mul_imm(t, oh * ow);
                let dst = e.addr(dst, out);
                let inverse = match inverse_divisors {
                    Some(table) => e.base(table),
                    None => e.i(0),
                };
                let (spec, r0, r1) = (e.ptr(spec), e.i(0), e.i(oh));
                e.call(&entry::POOL_ROWS, &[spec, src, inverse, dst, r0, r1])?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(
        match ops.kernel {
            MicroKernel::Avx512 => "avx512 pool rows",
            MicroKernel::Avx2Fma => "avx2 pool rows",
            MicroKernel::Portable => "portable pool rows",
        }
        .into(),
    );
    kernel
}

/// `o*stride + k*dilation - pad` along `axis`, wrapping below zero (so an
/// unsigned compare with the length rejects it).
fn tap(e: &mut Emit, o: Value, k: usize, win: Window, axis: usize) -> Value {
    let v = e.mul_imm(o, win.stride[axis]);
    let v = e.add_imm(v, k * win.dilation[axis]);
    e.sub_imm(v, win.padding[axis])
}

/// `max_pool2d`.
pub fn max_pool(a: &MaxPool2dAttrs, ops: Operands<'_>, consts: &mut Consts) -> Kernel {
    let win = Window {
        kernel: a.kernel,
        stride: a.stride,
        padding: a.padding.begin,
        dilation: a.dilation,
    };
    pool(&ops, win, f32::NEG_INFINITY, true, None, consts)
}

/// `avg_pool2d`, with the divisors of `interp::avg_pool2d`.
pub fn avg_pool(a: &AvgPool2dAttrs, ops: Operands<'_>, consts: &mut Consts) -> Kernel {
    let x = &ops.inputs[0];
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (ops.out.shape[2], ops.out.shape[3]);
    // A window over the whole unpadded map (Inception's and the Model
    // Zoo's 7x7 pools before the classifier) is a global average pool:
    // the reductions' row kernel instead of a window per plane (Inception
    // v2's [1, 1024, 7, 7] pool took 0.059 ms, ORT's 0.003).
    if a.kernel == [h, w] && a.padding.is_zero() && [oh, ow] == [1, 1] {
        return super::reduce::build(
            &ReduceAttrs {
                function: Reduction::Mean,
                dims: vec![2, 3],
                keepdim: true,
            },
            ops,
        );
    }
    // Per axis: the real extent and the extent clipped to the padded input,
    // in padded coordinates (the input is p..p + len, then `after`).
    let Padding { begin, end: after } = a.padding;
    let extent = |o: usize, axis: usize, len: usize| {
        let (k, s, p) = (a.kernel[axis], a.stride[axis], begin[axis]);
        let start = o * s;
        let end = (start + k).min(p + len + after[axis]);
        let real = end
            .min(p + len)
            .saturating_sub(p)
            .saturating_sub(start.max(p) - p);
        (real, end - start)
    };
    let mut inverse = Vec::with_capacity(oh * ow);
    for oy in 0..oh {
        let (ry, py) = extent(oy, 0, h);
        for ox in 0..ow {
            let (rx, px) = extent(ox, 1, w);
            let d = if a.count_include_pad {
                py * px
            } else {
                ry * rx
            };
            inverse.push(if d == 0 { 0.0 } else { 1.0 / d as f32 });
        }
    }
    let table = consts.add(inverse);
    let win = Window {
        kernel: a.kernel,
        stride: a.stride,
        padding: a.padding.begin,
        dilation: [1, 1],
    };
    pool(&ops, win, 0.0, false, Some(table), consts)
}
