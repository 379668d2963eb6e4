//! `depthwise_conv2d`, and the depthwise machinery the separable kernel
//! shares: one task per output plane. Interior rows (every tap row exists)
//! accumulate all taps in registers four columns at a time (stride 2
//! gathered with a byte shuffle) and apply the epilogue before the one
//! store; border rows start at the bias, add each tap over its valid
//! columns, then run the epilogue while the row is in cache.

use super::elementwise::span;
use super::gemm::constant;
use super::im2col::{interior, valid, vector_end};
use super::{Consts, Kernel, Operands};
use crate::backend::activation::native_activation;
use crate::backend::jit::Emit;
use crate::backend::jit::F32X4;
use crate::backend::BackendError;
use crate::ir::{Activation, Conv2dAttrs};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_runtime::kernels::depthwise_blocked::DepthwiseBlocked;
use nnc_runtime::kernels::depthwise_rows::DepthwiseRows;
#[cfg(target_arch = "x86_64")]
use nnc_runtime::kernels::entry;
use nnc_runtime::kernels::gemm::MicroKernel;
use nnc_runtime::kernels::has_vector_rows;
use nnc_runtime::kernels::Base;

/// Output maps of at most this many pixels take the channel-blocked
/// kernel (AVX2). On EfficientNet-B0 at one thread (AMD Zen 3) it took the
/// 7x7 and 14x14 layers from 0.46 to 0.18 ms and 0.50 to 0.37, and a 56x56
/// to 28x28 one from 0.55 to 0.35; the 56x56 and 112x112 outputs were
/// 10-30% slower than the per-channel rows (their interleaved copies
/// outgrow L1 and L2).
const BLOCKED_MAX_PIXELS: usize = 28 * 28;

/// Whether the channel-blocked kernel beats the per-channel rows for an
/// `[oh, ow]` output: on maps up to [`BLOCKED_MAX_PIXELS`], and with
/// AVX-512 (16 channels per zmm) only for kernels other than 3x3, whose
/// 16-lane rows read the windows in place. AMD EPYC Zen 5, one thread,
/// per layer, rows -> blocked: 5x5 on 7x7 maps 0.106 -> 0.075 ms and on
/// 14x14 0.174 -> 0.139 (EfficientNet-B0), 0.064 -> 0.046 (MobileNetV3-
/// Small); 3x3 on 14x14 0.036 -> 0.068 and on 7x7 0.045 -> 0.050.
fn blocked_beats_rows(a: &Conv2dAttrs, kernel: MicroKernel, [oh, ow]: [usize; 2]) -> bool {
    let small = oh * ow <= BLOCKED_MAX_PIXELS;
    match kernel {
        MicroKernel::Avx512 => small && a.kernel != [3, 3],
        _ => small,
    }
}

/// Fills `len` floats at `ptr` with `value`.
pub(super) fn fill(e: &mut Emit, ptr: Value, len: usize, value: Value) -> Result<(), BackendError> {
    let (lo, hi) = (e.i(0), e.i(len));
    span(e, lo, hi, |e, ty, i| {
        let v = if ty == types::F32 {
            value
        } else {
            e.b.ins().splat(ty, value)
        };
        let p = e.addr_of(ptr, i);
        e.store(v, p, 0);
        Ok(())
    })
}

/// `dst[i] = act(dst[i] + residual[i])` over `len` floats.
pub(super) fn epilogue_pass(
    e: &mut Emit,
    dst: Value,
    residual: Option<Value>,
    activation: Option<Activation>,
    len: usize,
) -> Result<(), BackendError> {
    if residual.is_none() && activation.is_none() {
        return Ok(());
    }
    let (lo, hi) = (e.i(0), e.i(len));
    span(e, lo, hi, |e, ty, i| {
        let p = e.addr_of(dst, i);
        let v = e.load(ty, p, 0);
        store_finished(e, ty, v, residual, activation, dst, i);
        Ok(())
    })
}

/// Stores `act(v + residual[at])` (each part if present) at `out[at]`, `ty`
/// lanes wide: the last stage of a depthwise output element or of a split
/// separable op's sum.
pub(super) fn store_finished(
    e: &mut Emit,
    ty: Type,
    v: Value,
    residual: Option<Value>,
    activation: Option<Activation>,
    out: Value,
    at: Value,
) {
    let mut v = v;
    if let Some(r) = residual {
        let q = e.addr_of(r, at);
        let r = e.load(ty, q, 0);
        v = e.b.ins().fadd(v, r);
    }
    if let Some(act) = activation {
        v = e.activation(ty, act, v);
    }
    let q = e.addr_of(out, at);
    e.store(v, q, 0);
}

/// The depthwise geometry shared by both kernels.
#[derive(Clone, Copy)]
pub(super) struct Depthwise {
    pub(super) h: usize,
    pub(super) w: usize,
    ow: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// The padding before each axis, `[top, left]`: it places output 0's
    /// window; the padding after is in the output shape.
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Depthwise {
    pub(super) fn new(a: &Conv2dAttrs, in_shape: &[usize], out_shape: &[usize]) -> Depthwise {
        Depthwise {
            h: in_shape[2],
            w: in_shape[3],
            ow: out_shape[3],
            kernel: a.kernel,
            stride: a.stride,
            padding: a.padding.begin,
            dilation: a.dilation,
        }
    }

    /// Output rows `lo..hi` whose every tap row exists, and output columns
    /// `lo..hi` whose every tap column exists: the interior, where no tap
    /// needs a bounds check.
    fn interior(self, oh: usize) -> ([usize; 2], [usize; 2]) {
        let axis = |i: usize, count, len| {
            interior(
                count,
                len,
                self.stride[i],
                self.dilation[i],
                self.padding[i],
                self.kernel[i],
            )
        };
        (axis(0, oh, self.h), axis(1, self.ow, self.w))
    }

    /// Emits output row `oy` (an interior row: every tap row exists) of one
    /// channel with the epilogue applied, accumulating in registers: four
    /// columns at a time over the interior columns (strided input columns
    /// gathered with a shuffle at stride 2), one at a time elsewhere with
    /// each edge column's valid taps known at compile time.
    #[allow(clippy::too_many_arguments)]
    fn fast_row(
        self,
        e: &mut Emit,
        src: Value,
        taps: &[Value],
        bias: Value,
        oy: Value,
        row: Value,
        residual: Option<Value>,
        activation: Option<Activation>,
        columns: [usize; 2],
    ) -> Result<(), BackendError> {
        let [kh, kw] = self.kernel;
        let (sw, dw, pw) = (self.stride[1], self.dilation[1], self.padding[1]);
        // The input row of each tap row.
        let mut rows = Vec::with_capacity(kh);
        for ky in 0..kh {
            let iy = e.mul_imm(oy, self.stride[0]);
            let iy = e.add_imm(iy, ky * self.dilation[0]);
            let iy = e.sub_imm(iy, self.padding[0]);
            let start = e.mul_imm(iy, self.w);
            rows.push(e.addr_of(src, start));
        }
        let finish = |e: &mut Emit, ty: Type, acc: Value, ox: Value| {
            store_finished(e, ty, acc, residual, activation, row, ox);
        };
        // Edge columns: constant positions, constant valid taps.
        let [x0, x1] = columns;
        for ox in (0..x0).chain(x1..self.ow) {
            let mut acc = bias;
            for (ky, &in_row) in rows.iter().enumerate() {
                for kx in 0..kw {
                    let ix = (ox * sw + kx * dw) as i64 - pw as i64;
                    if ix < 0 || ix >= self.w as i64 {
                        continue;
                    }
                    let x = e.load(types::F32, in_row, ix as usize);
                    acc = e.b.ins().fma(taps[ky * kw + kx], x, acc);
                }
            }
            let o = e.i(ox);
            finish(e, types::F32, acc, o);
        }
        // Interior columns, four at a time while every lane read (with the
        // odd lanes a stride-2 gather loads) lies inside the row.
        let vector_end = vector_end(x0, x1, sw, (kw - 1) * dw, self.w, pw);
        let splat_taps: Vec<Value> = if vector_end > x0 {
            taps.iter().map(|&t| e.b.ins().splat(F32X4, t)).collect()
        } else {
            Vec::new()
        };
        let bias4 = if vector_end > x0 {
            Some(e.b.ins().splat(F32X4, bias))
        } else {
            None
        };
        if let Some(bias4) = bias4 {
            e.for_n(x0, vector_end, 4, |e, ox| {
                let mut acc = bias4;
                let base = e.mul_imm(ox, sw);
                for (ky, &in_row) in rows.iter().enumerate() {
                    for kx in 0..kw {
                        let ix = e.b.ins().iadd_imm_s(base, (kx * dw) as i64 - pw as i64);
                        let p = e.addr_of(in_row, ix);
                        let x = e.load_strided4(p, sw);
                        acc = e.b.ins().fma(splat_taps[ky * kw + kx], x, acc);
                    }
                }
                finish(e, F32X4, acc, ox);
                Ok(())
            })?;
        }
        e.for_n(vector_end, x1, 1, |e, ox| {
            let mut acc = bias;
            let base = e.mul_imm(ox, sw);
            for (ky, &in_row) in rows.iter().enumerate() {
                for kx in 0..kw {
                    let ix = e.b.ins().iadd_imm_s(base, (kx * dw) as i64 - pw as i64);
                    let p = e.addr_of(in_row, ix);
                    let x = e.load(types::F32, p, 0);
                    acc = e.b.ins().fma(taps[ky * kw + kx], x, acc);
                }
            }
            finish(e, types::F32, acc, ox);
            Ok(())
        })
    }

    /// Emits rows `0..oh` of one channel into `out` (row stride `ow`) with
    /// the epilogue: interior rows by [`Depthwise::fast_row`], the border
    /// rows tap by tap.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rows(
        self,
        e: &mut Emit,
        src: Value,
        taps: &[Value],
        bias: Value,
        range: (Value, Value),
        oh: usize,
        out_row: &dyn Fn(&mut Emit, Value) -> Value,
        residual_row: &dyn Fn(&mut Emit, Value) -> Option<Value>,
        activation: Option<Activation>,
    ) -> Result<(), BackendError> {
        let (rows, columns) = self.interior(oh);
        let edges = columns[0] + (self.ow - columns[1].min(self.ow));
        let fast = rows[0] < rows[1] && columns[0] < columns[1] && edges <= 8;
        let (lo, hi) = range;
        let general = |e: &mut Emit, oy: Value| -> Result<(), BackendError> {
            let row = out_row(e, oy);
            self.row(e, src, taps, bias, oy, row)?;
            let res = residual_row(e, oy);
            epilogue_pass(e, row, res, activation, self.ow)
        };
        if !fast {
            return e.for_range(lo, hi, 1, general);
        }
        // lo..hi split into border rows, interior rows, border rows.
        let (y0, y1) = (e.i(rows[0]), e.i(rows[1]));
        let a = e.b.ins().umax(lo, y0);
        let a = e.b.ins().umin(a, hi);
        let b = e.b.ins().umax(a, y1);
        let b = e.b.ins().umin(b, hi);
        e.for_range(lo, a, 1, general)?;
        e.for_range(a, b, 1, |e, oy| {
            let row = out_row(e, oy);
            let res = residual_row(e, oy);
            self.fast_row(e, src, taps, bias, oy, row, res, activation, columns)
        })?;
        e.for_range(b, hi, 1, general)
    }

    /// Emits one output row `oy` of one channel: `row[..ow] = bias +
    /// sum over taps of taps[ky][kx] * src[iy, ix]`.
    fn row(
        self,
        e: &mut Emit,
        src: Value,
        taps: &[Value],
        bias: Value,
        oy: Value,
        row: Value,
    ) -> Result<(), BackendError> {
        fill(e, row, self.ow, bias)?;
        let [kh, kw] = self.kernel;
        for ky in 0..kh {
            let iy = e.mul_imm(oy, self.stride[0]);
            let iy = e.add_imm(iy, ky * self.dilation[0]);
            let iy = e.sub_imm(iy, self.padding[0]);
            let h = e.i(self.h);
            let inside = e.b.ins().icmp(IntCC::UnsignedLessThan, iy, h);
            e.if_then(inside, |e| {
                let in_row = e.mul_imm(iy, self.w);
                let in_row = e.addr_of(src, in_row);
                for kx in 0..kw {
                    let (x0, x1) = valid(
                        self.ow,
                        self.w,
                        self.stride[1],
                        kx * self.dilation[1],
                        self.padding[1],
                    );
                    if x0 >= x1 {
                        continue;
                    }
                    let tap = taps[ky * kw + kx];
                    // Input column of output column 0 (may be negative; only
                    // columns in x0..x1 are read).
                    let shift = (kx * self.dilation[1]) as i64 - self.padding[1] as i64;
                    let (lo, hi) = (e.i(x0), e.i(x1));
                    let stride = self.stride[1];
                    let axpy = |e: &mut Emit, ty, ox: Value| {
                        let ix = e.mul_imm(ox, stride);
                        let ix = e.b.ins().iadd_imm_s(ix, shift);
                        let p = e.addr_of(in_row, ix);
                        let x = e.load(ty, p, 0);
                        let t = if ty == types::F32 {
                            tap
                        } else {
                            e.b.ins().splat(ty, tap)
                        };
                        let q = e.addr_of(row, ox);
                        let acc = e.load(ty, q, 0);
                        let v = e.b.ins().fma(t, x, acc);
                        e.store(v, q, 0);
                        Ok(())
                    };
                    if stride == 1 {
                        span(e, lo, hi, axpy)?;
                    } else {
                        // Strided columns are gathered one at a time.
                        e.for_range(lo, hi, 1, |e, ox| axpy(e, types::F32, ox))?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// The taps of output channel `oc`: `kh*kw` scalars.
pub(super) fn load_taps(e: &mut Emit, weights: Base, oc: Value, count: usize) -> Vec<Value> {
    let start = e.mul_imm(oc, count);
    let base = e.addr(weights, start);
    (0..count).map(|i| e.load(types::F32, base, i)).collect()
}

/// The bias of channel `c`, or 0.
pub(super) fn load_bias(e: &mut Emit, bias: Option<Base>, c: Value) -> Value {
    match bias {
        Some(b) => {
            let p = e.addr(b, c);
            e.load(types::F32, p, 0)
        }
        None => e.f(types::F32, 0.0),
    }
}

/// A standalone depthwise conv eight channels at a time (AVX2, one input
/// channel per output channel; see `depthwise_blocked.rs`): task `(n, b)`
/// computes channel block `b` of sample `n` in one call.
#[cfg(target_arch = "x86_64")]
fn depthwise_blocked(
    a: &Conv2dAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let out = &ops.out;
    let channels = x.shape[1];
    let ([h, w], [oh, ow]) = ([x.shape[2], x.shape[3]], [out.shape[2], out.shape[3]]);
    let weights = constant(&ops, 1, "depthwise weight")?;
    let bias = if a.bias {
        Some(constant(&ops, 2, "depthwise bias")?)
    } else {
        None
    };
    let spec = DepthwiseBlocked::new(
        [h, w],
        [oh, ow],
        a.kernel,
        a.stride,
        a.padding.begin,
        a.dilation,
        channels,
        weights,
        bias,
        native_activation(a.epilogue.activation)?,
        ops.kernel,
    )
    .ok_or_else(|| BackendError::Codegen("depthwise weights shorter than the conv".into()))?;
    let (blocks, lanes) = (spec.blocks(), spec.lanes());
    let spec = consts.keep(spec);
    let (src, dst) = (x.base, out.base);
    let mut kernel = Kernel::jit(
        out.shape[0] * blocks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let b = e.rem_imm(t, blocks);
                let n = e.div_imm(t, blocks);
                // Channel `b * lanes` of sample `n`.
                let c0 = e.mul_imm(b, lanes);
                let plane = e.mul_imm(n, channels);
                let plane = e.add(plane, c0);
                let in_plane = e.mul_imm(plane, h * w);
                let out_plane = e.mul_imm(plane, oh * ow);
                let src = e.addr(src, in_plane);
                let dst = e.addr(dst, out_plane);
                let spec = e.ptr(spec);
                e.call(&entry::DEPTHWISE_BLOCKED, &[spec, src, dst, b])?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(match lanes {
        16 => "avx512 depthwise, 16 channels".into(),
        _ => "avx2 depthwise, 8 channels".into(),
    });
    Ok(kernel)
}

/// A standalone depthwise conv on the native rows: task `(n, oc)` computes
/// every row of output channel `oc` of sample `n` in one call.
fn depthwise_native(
    a: &Conv2dAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let out = &ops.out;
    let (c_in, c_out) = (x.shape[1], out.shape[1]);
    let multiplier = c_out / c_in.max(1);
    let ([h, w], [oh, ow]) = ([x.shape[2], x.shape[3]], [out.shape[2], out.shape[3]]);
    let (src, dst, weights) = (x.base, out.base, ops.inputs[1].base);
    let bias = a.bias.then(|| ops.inputs[2].base);
    let taps = a.kernel[0] * a.kernel[1];
    let spec = consts.keep(DepthwiseRows::new(
        [h, w],
        ow,
        a.kernel,
        a.stride,
        a.padding.begin,
        a.dilation,
        native_activation(a.epilogue.activation)?,
        ops.kernel,
    ));
    let mut kernel = Kernel::jit(
        out.shape[0] * c_out,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let oc = e.rem_imm(t, c_out);
                let n = e.div_imm(t, c_out);
                let ic = e.div_imm(oc, multiplier.max(1));
                let plane = e.mul_imm(n, c_in);
                let plane = e.add(plane, ic);
                let plane = e.mul_imm(plane, h * w);
                let src = e.addr(src, plane);
                let out_plane = e.mul_imm(t, oh * ow);
                let dst = e.addr(dst, out_plane);
                let first_tap = e.mul_imm(oc, taps);
                let tap_values = e.addr(weights, first_tap);
                let b = load_bias(e, bias, oc);
                let (spec, r0, r1) = (e.ptr(spec), e.i(0), e.i(oh));
                e.call(
                    &entry::DEPTHWISE_ROWS,
                    &[spec, src, tap_values, b, dst, r0, r1],
                )?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(
        match ops.kernel {
            MicroKernel::Avx512 => "avx512 depthwise rows",
            MicroKernel::Avx2Fma => "avx2 depthwise rows",
            MicroKernel::Portable => "portable depthwise rows",
        }
        .into(),
    );
    Ok(kernel)
}

/// `depthwise_conv2d`. With AVX-512 or AVX2 and no residual, each
/// channel's rows are the native depthwise rows the separable kernel uses
/// (sixteen or eight lanes; see `depthwise_rows.rs`); otherwise the JIT's
/// four-lane rows.
pub fn depthwise(
    a: &Conv2dAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    #[cfg(target_arch = "x86_64")]
    if DepthwiseBlocked::available(ops.kernel)
        && !a.epilogue.residual
        && ops.out.shape[1] == ops.inputs[0].shape[1]
        && blocked_beats_rows(a, ops.kernel, [ops.out.shape[2], ops.out.shape[3]])
    {
        return depthwise_blocked(a, ops, consts);
    }
    if has_vector_rows(ops.kernel) && !a.epilogue.residual {
        return depthwise_native(a, ops, consts);
    }
    let x = &ops.inputs[0];
    let out = &ops.out;
    let geo = Depthwise::new(a, &x.shape, &out.shape);
    let (c_in, c_out) = (x.shape[1], out.shape[1]);
    let multiplier = c_out / c_in.max(1);
    let (oh, ow) = (out.shape[2], out.shape[3]);
    let (src, dst, weights) = (x.base, out.base, ops.inputs[1].base);
    let bias = a.bias.then(|| ops.inputs[2].base);
    let residual = a
        .epilogue
        .residual
        .then(|| ops.inputs.last().map(|b| b.base))
        .flatten();
    let activation = a.epilogue.activation;
    let taps = a.kernel[0] * a.kernel[1];
    Ok(Kernel::jit(
        out.shape[0] * c_out,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                // Task t = (n, oc); input channel oc / multiplier.
                let oc = e.rem_imm(t, c_out);
                let n = e.div_imm(t, c_out);
                let ic = e.div_imm(oc, multiplier.max(1));
                let plane = e.mul_imm(n, c_in);
                let plane = e.add(plane, ic);
                let plane = e.mul_imm(plane, geo.h * geo.w);
                let src = e.addr(src, plane);
                let out_plane = e.mul_imm(t, oh * ow);
                let dst = e.addr(dst, out_plane);
                let res = residual.map(|r| e.addr(r, out_plane));
                let tap_values = load_taps(e, weights, oc, taps);
                let b = load_bias(e, bias, oc);
                let range = (e.i(0), e.i(oh));
                let out_row = |e: &mut Emit, oy: Value| {
                    let off = e.mul_imm(oy, ow);
                    e.addr_of(dst, off)
                };
                let residual_row = |e: &mut Emit, oy: Value| {
                    res.map(|r| {
                        let off = e.mul_imm(oy, ow);
                        e.addr_of(r, off)
                    })
                };
                geo.rows(
                    e,
                    src,
                    &tap_values,
                    b,
                    range,
                    oh,
                    &out_row,
                    &residual_row,
                    activation,
                )
            })
        }),
    ))
}
