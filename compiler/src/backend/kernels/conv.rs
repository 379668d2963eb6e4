//! Convolutions that are not a plain GEMM or a lone depthwise conv:
//!
//! - `separable_conv2d`: one task per block of output rows. With an
//!   expansion, the task first computes the expanded input rows it reads
//!   (all channels) with the native GEMM into this thread's scratch. It
//!   computes the depthwise output of its rows for every channel into a
//!   scratch tile (the whole depthwise output never exists), applies the
//!   depthwise activation, and multiplies the tile by the pointwise weight
//!   with the native GEMM, whose epilogue adds the bias and the residual as
//!   it stores the output rows.
//! - `conv2d` (few input channels, see `lower-conv`): the native direct
//!   convolution, one task per block of output rows.
//! - `col2im`: one task per output plane: the bias, then every column row
//!   of the plane's channel scatter-added at its tap's offset, then the
//!   epilogue.

use super::depthwise::{epilogue_pass, fill, load_bias, load_taps, store_finished, Depthwise};
use super::elementwise::span;
use super::gemm::constant;
use super::im2col::valid;
use super::{row_block, Consts, Kernel, Operands};
use crate::backend::activation::native_activation;
use crate::backend::jit::{Emit, F32X4};
use crate::backend::BackendError;
use crate::ir::{Activation, Col2ImAttrs, Conv2dAttrs, Epilogue, SeparableConv2dAttrs};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_runtime::kernels::depthwise_rows::DepthwiseRows;
use nnc_runtime::kernels::direct_conv::DirectConv;
use nnc_runtime::kernels::entry;
use nnc_runtime::kernels::has_vector_rows;
use nnc_runtime::kernels::tasks::PanelGemm;
use nnc_runtime::kernels::Base;

/// Columns of output per separable task (rows are whole). Longer runs of
/// each input channel's rows read faster: MobileNetV2 at one thread took
/// 7.57-7.65 ms with 512 and 7.42-7.51 with 1024; 2048 was no faster, and
/// its tile on a 56x56 layer outgrows a 1 MiB L2.
const SEPARABLE_COLUMNS: usize = 1024;

/// A fused expansion's rows per task are at most this many bytes, so that
/// the depthwise rows read them from L2 (a core has 1 MiB). 384 KiB to 1
/// MiB measured the same on MobileNetV2's features.2.
const EXPANSION_TILE_BYTES: usize = 512 << 10;

/// Maps of at most this many outputs split the depthwise channels between
/// threads instead of the rows (see [`k_parts`]).
const SEPARABLE_SPLIT_CHANNELS: usize = 256;

/// How many parts a separable op's depthwise channels, and so its
/// pointwise product's K, are split into: one per thread for small maps
/// on several threads, else 1. Each task computes the depthwise rows of
/// its channels and their share of the product for every output channel;
/// a second step adds the parts with the bias, residual and activation.
///
/// Splitting rows instead left each task's pointwise GEMM a few columns
/// wide (a 7x7 map on 2 threads: 14 columns of the micro-kernel's 32).
/// Splitting the output channels made every task read every depthwise
/// channel, half of them written by the other core's expansion: moving a
/// layer's data between the cores was measured at about 28 us per layer
/// on MobileNetV2 (every step on one thread, alternating: 10.3-11.0 ms;
/// always the same: 8.5-8.6). A task of this split reads only the
/// expanded channels its own core wrote, and the cores exchange only the
/// much smaller partial outputs.
pub(super) fn k_parts(a: &SeparableConv2dAttrs, out: &[usize], threads: usize) -> usize {
    let map = out.get(2..4).map_or(0, |s| s.iter().product::<usize>());
    if threads > 1
        && map <= SEPARABLE_SPLIT_CHANNELS
        && a.expand.is_none()
        && a.depthwise.groups >= 2 * threads
    {
        threads
    } else {
        1
    }
}

/// Floats of arena scratch a separable op needs: its partial outputs when
/// split by [`k_parts`].
pub(super) fn scratch_len(a: &SeparableConv2dAttrs, out: &[usize], threads: usize) -> usize {
    match k_parts(a, out, threads) {
        1 => 0,
        parts => parts * out.iter().product::<usize>(),
    }
}

/// `separable_conv2d`.
pub fn separable(
    a: &SeparableConv2dAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let dw = &a.depthwise;
    let x = &ops.inputs[0];
    let out = &ops.out;
    let geo = Depthwise::new(dw, &x.shape, &out.shape);
    let isa = ops.kernel;
    // The depthwise conv's input channels: `x`'s, or the expansion's.
    let (batch, c_x, c_in) = (x.shape[0], x.shape[1], dw.groups.max(1));
    let (c_mid, c_out) = (dw.out_channels, a.out_channels);
    let multiplier = c_mid / c_in;
    let (oh, ow) = (out.shape[2], out.shape[3]);
    let first_dw = a.depthwise_operand();
    let dw_weights = ops.inputs[first_dw].base;
    let dw_bias = dw.bias.then(|| ops.inputs[first_dw + 1].base);
    let pw_index = first_dw + 1 + usize::from(dw.bias);
    let threads = ops.threads.max(1);
    // Input rows that output rows `r` (`r` of them) read.
    let input_rows =
        |r: usize| (r.max(1) - 1) * dw.stride[0] + (dw.kernel[0] - 1) * dw.dilation[0] + 1;
    let parts = k_parts(a, &out.shape, threads);
    // Whole rows up to SEPARABLE_COLUMNS columns per task, but fewer rows
    // when that leaves some thread without a task; on one thread,
    // splitting only makes the pointwise GEMM narrower.
    let mut rows_per_task = (SEPARABLE_COLUMNS / ow.max(1)).clamp(1, oh.max(1));
    if a.expand.is_some() {
        // The expanded rows a task reads stay in L2.
        while rows_per_task > 1
            && 4 * c_in * input_rows(rows_per_task) * geo.w > EXPANSION_TILE_BYTES
        {
            rows_per_task -= 1;
        }
    }
    if parts > 1 {
        rows_per_task = oh.max(1);
    } else if threads > 1 {
        // At least one task per thread, and no more than the cap on the
        // tile needs: each task's pointwise GEMM is then as wide as it can
        // be. Two per thread (for a pool that balanced dynamically) cut
        // the 28x28 maps into 7-row tasks of 196 columns; 14-row ones
        // took features.5 and 6 from 0.136-0.138 to 0.109-0.115 ms at 2
        // threads.
        if batch * oh.div_ceil(rows_per_task) < threads {
            rows_per_task = rows_per_task.min(oh.div_ceil(threads.div_ceil(batch)).max(1));
        }
        // Whole rounds of tasks, so that no thread waits for the last one
        // (a 56x56 map in blocks of 9 rows was 7 tasks on 2 threads), and
        // of the block heights up to that, the one that leaves the busiest
        // thread the fewest rows (the largest of those): features.2's 56
        // rows in blocks of 5 were 11 blocks and a 1-row one, 30 rows for
        // one thread and 26 for the other; blocks of 4 are 28 each.
        let tasks = (batch * oh.div_ceil(rows_per_task)).next_multiple_of(threads);
        let most = oh.div_ceil(tasks.div_ceil(batch)).max(1);
        let busiest = |r: usize| (batch * oh.div_ceil(r)).div_ceil(threads) * r;
        rows_per_task = (1..=most)
            .min_by_key(|&r| (busiest(r), std::cmp::Reverse(r)))
            .unwrap_or(1);
    }
    let blocks = oh.div_ceil(rows_per_task);
    let tile_cols = rows_per_task * ow;
    // The expansion: each task's input rows of every channel, into
    // `expanded_cols` columns of scratch per channel after the tile.
    let expanded_cols = input_rows(rows_per_task).min(geo.h) * geo.w;
    let expansion = match &a.expand {
        Some(e) => Some(consts.keep(PanelGemm::new(
            ops.kernel,
            constant(&ops, 1, "expansion weight")?,
            c_in,
            c_x,
            geo.h * geo.w,
            expanded_cols,
            if e.bias {
                Some(constant(&ops, 2, "expansion bias")?.to_vec())
            } else {
                None
            },
            native_activation(e.activation)?,
        )?)),
        None => None,
    };
    let expanded_len = if expansion.is_some() {
        c_in * expanded_cols
    } else {
        0
    };
    // The expanded rows a task needs start from the top padding; the
    // bottom padding only clips them to the input.
    let (h, w, sy, py) = (geo.h, geo.w, dw.stride[0], dw.padding.begin[0]);
    let reach = (dw.kernel[0] - 1) * dw.dilation[0] + 1;
    // The whole pointwise product with its epilogue, unless split.
    let spec = if parts == 1 {
        Some(consts.keep(PanelGemm::new(
            ops.kernel,
            constant(&ops, pw_index, "pointwise weight")?,
            c_out,
            c_mid,
            tile_cols,
            oh * ow,
            if a.bias {
                Some(constant(&ops, pw_index + 1, "pointwise bias")?.to_vec())
            } else {
                None
            },
            native_activation(a.epilogue.activation)?,
        )?))
    } else {
        None
    };
    let residual = a
        .epilogue
        .residual
        .then(|| ops.inputs.last().map(|b| b.base))
        .flatten();
    let (src, dst) = (x.base, out.base);
    let dw_activation = dw.epilogue.activation;
    let taps = dw.kernel[0] * dw.kernel[1];
    // With AVX-512 or AVX2 the depthwise rows are native code, 16 or 8
    // columns a vector (see depthwise_rows.rs); otherwise the JIT's 4-lane
    // rows.
    let native_rows = if has_vector_rows(ops.kernel) {
        Some(consts.keep(DepthwiseRows::new(
            [geo.h, geo.w],
            ow,
            dw.kernel,
            dw.stride,
            dw.padding.begin,
            dw.dilation,
            native_activation(dw_activation)?,
            ops.kernel,
        )))
    } else {
        None
    };
    // Part `q` of a split: input channels ic0..ic1 (whole groups of the
    // channel multiplier), pointwise weight columns cm0..cm1.
    let part_channels = |q: usize| {
        let (ic0, ic1) = (q * c_in / parts, (q + 1) * c_in / parts);
        (ic0 * multiplier, ic1 * multiplier)
    };
    let map = oh * ow;
    let split = if parts > 1 {
        let weight = constant(&ops, pw_index, "pointwise weight")?;
        let partials = ops.scratch.ok_or_else(|| {
            BackendError::Codegen("a split separable op has no scratch space".into())
        })?;
        let specs = (0..parts)
            .map(|q| {
                let (cm0, cm1) = part_channels(q);
                let columns: Vec<f32> = weight
                    .chunks_exact(c_mid.max(1))
                    .take(c_out)
                    .flat_map(|row| &row[cm0..cm1])
                    .copied()
                    .collect();
                Ok(consts.keep(PanelGemm::new(
                    ops.kernel,
                    &columns,
                    c_out,
                    cm1 - cm0,
                    tile_cols,
                    map,
                    None,
                    nnc_runtime::kernels::gemm::Activation::None,
                )?))
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        Some((specs, partials))
    } else {
        None
    };
    let pw_bias = a.bias.then(|| ops.inputs[pw_index + 1].base);
    let (pw_activation, sum_partials) = (a.epilogue.activation, split.as_ref().map(|(_, p)| *p));
    let mut kernel = Kernel::jit(
        batch * blocks * parts,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let part = e.rem_imm(t, parts);
                let t = e.div_imm(t, parts);
                let (n, r0, r1) = row_block(e, t, blocks, rows_per_task, oh);
                let len = e.i(c_mid * tile_cols + expanded_len);
                let tile = e.call_ret(&entry::SCRATCH, &[len])?;
                // With an expansion, input rows lo..hi (those output rows
                // r0..r1 read, clipped to the input) of every expanded
                // channel into the scratch after the tile; channel `ic`'s
                // row `iy` at `expanded + ic * expanded_cols + (iy - lo) *
                // w`.
                let expanded = expansion.map(|spec| -> Result<Value, BackendError> {
                    let expanded = e.b.ins().iadd_imm_s(tile, (4 * c_mid * tile_cols) as i64);
                    let first = e.mul_imm(r0, sy);
                    let padding = e.i(py);
                    let lo = e.b.ins().umax(first, padding);
                    let lo = e.sub_imm(lo, py);
                    let last = e.mul_imm(r1, sy);
                    let last = e.add_imm(last, reach);
                    let last = e.sub_imm(last, sy);
                    let last = e.b.ins().umax(last, padding);
                    let last = e.sub_imm(last, py);
                    let limit = e.i(h);
                    let hi = e.b.ins().umin(last, limit);
                    let rows = e.b.ins().isub(hi, lo);
                    let cols = e.mul_imm(rows, w);
                    let item = e.mul_imm(n, c_x * h * w);
                    let first_row = e.mul_imm(lo, w);
                    let start = e.add(item, first_row);
                    let b = e.addr(src, start);
                    let (spec, none) = (e.ptr(spec), e.i(0));
                    let (m0, m1) = (e.i(0), e.i(c_in));
                    e.call(&entry::GEMM_PANEL, &[spec, b, expanded, none, cols, m0, m1])?;
                    // Where row 0 of channel 0 would be.
                    let back = e.mul_imm(lo, w);
                    let zero = e.i(0);
                    let back = e.b.ins().isub(zero, back);
                    Ok(e.addr_of(expanded, back))
                });
                let expanded = expanded.transpose()?;
                // The depthwise rows r0..r1 of every channel (of this
                // part's) into the tile.
                let (cm0, cm1) = if parts > 1 {
                    let ic0 = e.mul_imm(part, c_in);
                    let ic0 = e.div_imm(ic0, parts);
                    let ic1 = e.add_imm(part, 1);
                    let ic1 = e.mul_imm(ic1, c_in);
                    let ic1 = e.div_imm(ic1, parts);
                    (e.mul_imm(ic0, multiplier), e.mul_imm(ic1, multiplier))
                } else {
                    (e.i(0), e.i(c_mid))
                };
                e.for_range(cm0, cm1, 1, |e, cm| {
                    let ic = e.div_imm(cm, multiplier.max(1));
                    let src = match expanded {
                        Some(origin) => {
                            let plane = e.mul_imm(ic, expanded_cols);
                            e.addr_of(origin, plane)
                        }
                        None => {
                            let plane = e.mul_imm(n, c_in);
                            let plane = e.add(plane, ic);
                            let plane = e.mul_imm(plane, h * w);
                            e.addr(src, plane)
                        }
                    };
                    let b = load_bias(e, dw_bias, cm);
                    let local = e.b.ins().isub(cm, cm0);
                    let channel_row = e.mul_imm(local, tile_cols);
                    if let Some(spec) = native_rows {
                        let dst = e.addr_of(tile, channel_row);
                        let first_tap = e.mul_imm(cm, taps);
                        let tap_values = e.addr(dw_weights, first_tap);
                        let spec = e.ptr(spec);
                        e.call(
                            &entry::DEPTHWISE_ROWS,
                            &[spec, src, tap_values, b, dst, r0, r1],
                        )?;
                        return Ok(());
                    }
                    let tap_values = load_taps(e, dw_weights, cm, taps);
                    let out_row = |e: &mut Emit, oy: Value| {
                        let local = e.b.ins().isub(oy, r0);
                        let off = e.mul_imm(local, ow);
                        let off = e.add(channel_row, off);
                        e.addr_of(tile, off)
                    };
                    geo.rows(
                        e,
                        src,
                        &tap_values,
                        b,
                        (r0, r1),
                        oh,
                        &out_row,
                        &|_, _| None,
                        dw_activation,
                    )
                })?;
                if let Some((specs, partials)) = &split {
                    // This part's product into its partial output.
                    for (q, &spec) in specs.iter().enumerate() {
                        let this = e.b.ins().icmp_imm_u(IntCC::Equal, part, q as i64);
                        e.if_then(this, |e| {
                            let at = partial_start(e, n, q, parts, c_out * map);
                            let c = e.addr(*partials, at);
                            let (spec, none, cols) = (e.ptr(spec), e.i(0), e.i(map));
                            let (m0, m1) = (e.i(0), e.i(c_out));
                            e.call(&entry::GEMM_PANEL, &[spec, tile, c, none, cols, m0, m1])?;
                            Ok(())
                        })?;
                    }
                    return Ok(());
                }
                // out[n, :, r0..r1, :] = pointwise(tile) + bias + residual.
                let start = e.mul_imm(n, c_out * oh * ow);
                let first = e.mul_imm(r0, ow);
                let start = e.add(start, first);
                let c = e.addr(dst, start);
                let r = match residual {
                    Some(r) => e.addr(r, start),
                    None => e.i(0),
                };
                let rows = e.b.ins().isub(r1, r0);
                let cols = e.mul_imm(rows, ow);
                let spec = spec.ok_or_else(|| {
                    BackendError::Codegen("a split separable conv has no whole product".into())
                })?;
                let spec = e.ptr(spec);
                let (m0, m1) = (e.i(0), e.i(c_out));
                e.call(&entry::GEMM_PANEL, &[spec, tile, c, r, cols, m0, m1])?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(isa.name().into());
    if let Some(partials) = sum_partials {
        kernel.then = Some(Box::new(sum_parts(
            partials,
            [batch, parts, c_out, map],
            pw_bias,
            residual,
            pw_activation,
            dst,
        )));
    }
    Ok(kernel)
}

/// The second step of a split separable op: `out[n, o] = act(sum over
/// parts of partials[n, part, o] + bias[o] + residual[n, o])`, one task
/// per item and share of the output channels.
fn sum_parts(
    partials: Base,
    [batch, parts, c_out, map]: [usize; 4],
    bias: Option<Base>,
    residual: Option<Base>,
    activation: Option<Activation>,
    dst: Base,
) -> Kernel {
    let per_task = c_out.div_ceil(parts);
    Kernel::jit(
        batch * parts,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                // Item n, output channels o0..o1: blocks of channels as
                // `row_block` cuts rows.
                let (n, o0, o1) = row_block(e, t, parts, per_task, c_out);
                // Where each part's partial output of item n starts.
                let starts: Vec<Value> = (0..parts)
                    .map(|q| {
                        let at = partial_start(e, n, q, parts, c_out * map);
                        e.addr(partials, at)
                    })
                    .collect();
                e.for_range(o0, o1, 1, |e, o| {
                    let b = load_bias(e, bias, o);
                    let vb = e.b.ins().splat(F32X4, b);
                    let plane = e.mul_imm(n, c_out);
                    let plane = e.add(plane, o);
                    let plane = e.mul_imm(plane, map);
                    let out = e.addr(dst, plane);
                    let res = residual.map(|r| e.addr(r, plane));
                    // Each part's row of channel o.
                    let row = e.mul_imm(o, map);
                    let rows: Vec<Value> = starts.iter().map(|&p| e.addr_of(p, row)).collect();
                    let (lo, hi) = (e.i(0), e.i(map));
                    span(e, lo, hi, |e, ty, i| {
                        let mut v = if ty == F32X4 { vb } else { b };
                        for &row in &rows {
                            let p = e.addr_of(row, i);
                            let x = e.load(ty, p, 0);
                            v = e.b.ins().fadd(v, x);
                        }
                        store_finished(e, ty, v, res, activation, out, i);
                        Ok(())
                    })
                })
            })
        }),
    )
}

/// The index in the partial outputs (`[batch][parts][per_part]`) where item
/// `n`'s part `q` starts.
fn partial_start(e: &mut Emit, n: Value, q: usize, parts: usize, per_part: usize) -> Value {
    let at = e.mul_imm(n, parts);
    let at = e.add_imm(at, q);
    e.mul_imm(at, per_part)
}

/// Most output rows per direct-convolution task.
const DIRECT_ROWS: usize = 8;

/// `conv2d` with few input channels: the native direct convolution.
pub fn direct(
    a: &Conv2dAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let out = &ops.out;
    let (batch, c_in, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (c_out, oh, ow) = (out.shape[1], out.shape[2], out.shape[3]);
    let groups = a.groups.max(1);
    let (group_in, group_out) = (c_in / groups, c_out / groups);
    let bias = if a.bias {
        Some(constant(&ops, 2, "conv bias")?)
    } else {
        None
    };
    let conv = DirectConv::new(
        [group_in, h, w],
        [oh, ow],
        a.kernel,
        a.stride[0],
        a.padding.begin,
        groups,
        constant(&ops, 1, "conv weight")?,
        bias,
        native_activation(a.epilogue.activation)?,
        ops.kernel,
    );
    let tile = conv.tile_name();
    let spec = consts.keep(conv);
    // Rows split evenly (a 14-row map as 7 + 7, not 8 + 6): the kernel
    // keeps each call's tap offsets for the next call of the same row
    // count, and alternating counts recomputed them every call (3% of
    // RegNetX's 14x14 grouped convs, AMD EPYC Zen 4).
    let blocks = oh.div_ceil(DIRECT_ROWS);
    let rows = oh.div_ceil(blocks.max(1));
    let (src, dst) = (x.base, out.base);
    let mut kernel = Kernel::jit(
        batch * groups * blocks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                // Task t = ((n, group), row block): one group's planes.
                let (ng, r0, r1) = row_block(e, t, blocks, rows, oh);
                let group = e.rem_imm(ng, groups);
                let input = e.mul_imm(ng, group_in * h * w);
                let input = e.addr(src, input);
                let output = e.mul_imm(ng, group_out * oh * ow);
                let output = e.addr(dst, output);
                let spec = e.ptr(spec);
                e.call(&entry::DIRECT_CONV, &[spec, input, output, r0, r1, group])?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(tile.into());
    Ok(kernel)
}

/// `col2im`.
pub fn col2im(
    a: &Col2ImAttrs,
    ops: Operands<'_>,
    _consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let cols = &ops.inputs[0];
    let (batch, h, w) = (cols.shape[0], cols.shape[2], cols.shape[3]);
    let c_out = a.out_channels;
    let [oh, ow] = a.output_size;
    let [kh, kw] = a.kernel;
    let (src, dst) = (cols.base, ops.out.base);
    let bias = a.bias.then(|| ops.inputs[1].base);
    let epilogue: Epilogue = a.epilogue.clone();
    let residual = epilogue
        .residual
        .then(|| ops.inputs.last().map(|b| b.base))
        .flatten();
    let a = a.clone();
    Ok(Kernel::jit(
        batch * c_out,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let oc = e.rem_imm(t, c_out);
                let out_plane = e.mul_imm(t, oh * ow);
                let dst = e.addr(dst, out_plane);
                let b = load_bias(e, bias, oc);
                fill(e, dst, oh * ow, b)?;
                // Column rows (t*kh*kw + ky*kw + kx) of this plane.
                let rows = e.mul_imm(t, kh * kw * h * w);
                let src = e.addr(src, rows);
                for ky in 0..kh {
                    let (y0, y1) = valid(h, oh, a.stride[0], ky * a.dilation[0], a.padding[0]);
                    for kx in 0..kw {
                        let (x0, x1) = valid(w, ow, a.stride[1], kx * a.dilation[1], a.padding[1]);
                        if y0 >= y1 || x0 >= x1 {
                            continue;
                        }
                        let row = e.add_imm(src, 4 * (ky * kw + kx) * h * w);
                        let shift = (kx * a.dilation[1]) as i64 - a.padding[1] as i64;
                        let sx = a.stride[1];
                        e.for_n(y0, y1, 1, |e, iy| {
                            let oy = e.mul_imm(iy, a.stride[0]);
                            let oy = e.add_imm(oy, ky * a.dilation[0]);
                            let oy = e.sub_imm(oy, a.padding[0]);
                            let from = e.mul_imm(iy, w);
                            let from = e.addr_of(row, from);
                            let to = e.mul_imm(oy, ow);
                            let to = e.addr_of(dst, to);
                            let (lo, hi) = (e.i(x0), e.i(x1));
                            let add = |e: &mut Emit, ty, ix: Value| {
                                let p = e.addr_of(from, ix);
                                let v = e.load(ty, p, 0);
                                let ox = e.mul_imm(ix, sx);
                                let ox = e.b.ins().iadd_imm_s(ox, shift);
                                let q = e.addr_of(to, ox);
                                let acc = e.load(ty, q, 0);
                                let s = e.b.ins().fadd(acc, v);
                                e.store(s, q, 0);
                                Ok(())
                            };
                            if sx == 1 {
                                span(e, lo, hi, add)
                            } else {
                                e.for_range(lo, hi, 1, |e, ix| add(e, types::F32, ix))
                            }
                        })?;
                    }
                }
                let res = residual.map(|r| e.addr(r, out_plane));
                epilogue_pass(e, dst, res, epilogue.activation, oh * ow)
            })
        }),
    ))
}
