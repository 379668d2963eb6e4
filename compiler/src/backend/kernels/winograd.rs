//! The two transforms of a Winograd F(m x m, 3x3) convolution (see
//! [`crate::ir::winograd`]); the products between them are the `gemm`
//! kernel. Both work four tiles across at a time, one tile per lane, with
//! the transform matrices unrolled into adds and subtracts of their
//! constant entries.
//!
//! - `winograd_input`: one task per input channel plane. Four
//!   neighbouring tiles' patch rows are loaded as whole vectors and
//!   shuffled into one vector per patch column, `BT d BT^T` runs on the
//!   lanes, and each of the `a*a`
//!   results is one 4-lane store into its own row. The task first copies
//!   its plane, padded, into this thread's scratch memory, so no load
//!   needs a bounds check; tiles left over at a row's end run one lane at
//!   a time.
//! - `winograd_output`: one task per output plane. Four tiles' `a*a`
//!   elements are 4-lane loads; `AT M AT^T` plus the bias gives each tile
//!   row's `m` outputs per lane, interleaved (m = 2) or transposed (m = 4)
//!   into contiguous stores. Tiles that the output clips run one lane at a
//!   time and store only what exists. The residual and activation follow
//!   in one pass over the plane, which is still in L1.

use super::depthwise::{epilogue_pass, load_bias};
use super::elementwise::span;
use super::im2col::zero_fill;
use super::{Kernel, Operands};
use crate::backend::jit::{Emit, F32X4, LANES};
use crate::backend::native::nnc_scratch;
use crate::backend::BackendError;
use crate::ir::winograd::Transform;
use crate::ir::{WinogradInputAttrs, WinogradOutputAttrs};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

fn transform(m: usize) -> Result<Transform, BackendError> {
    Transform::of(m)
        .ok_or_else(|| BackendError::Codegen(format!("no Winograd transform for tiles of {m}")))
}

/// `sum(coeffs[i] * value(i))` with the constant coefficients unrolled:
/// zeros skipped (their value is never made), ±1 as an add or subtract,
/// and a +1 term first when there is one (so no negation is needed).
fn combine(
    e: &mut Emit,
    ty: Type,
    coeffs: &[f32],
    mut value: impl FnMut(&mut Emit, usize) -> Value,
) -> Value {
    let mut order: Vec<usize> = (0..coeffs.len()).filter(|&i| coeffs[i] != 0.0).collect();
    if let Some(plus) = order.iter().position(|&i| coeffs[i] == 1.0) {
        order.swap(0, plus);
    }
    let mut acc: Option<Value> = None;
    for i in order {
        let (c, v) = (coeffs[i], value(e, i));
        acc = Some(match acc {
            None if c == 1.0 => v,
            None if c == -1.0 => e.b.ins().fneg(v),
            None => {
                let k = e.f(ty, c);
                e.b.ins().fmul(v, k)
            }
            Some(a) if c == 1.0 => e.b.ins().fadd(a, v),
            Some(a) if c == -1.0 => e.b.ins().fsub(a, v),
            Some(a) => {
                let k = e.f(ty, c);
                e.b.ins().fma(v, k, a)
            }
        });
    }
    acc.unwrap_or_else(|| e.f(ty, 0.0))
}

/// Floats a four-tile group of patch rows reads from its first tile's
/// first column: three vectors for F(2x2), five for F(4x4) (see
/// [`patch_row`]).
fn group_reach(m: usize) -> usize {
    if m == 2 {
        3 * LANES
    } else {
        5 * LANES
    }
}

/// Patch row elements `0..side` at `ptr` of four tiles `m` apart (of one
/// for a scalar `ty`): element `s` of lane `t` is `ptr[m*t + s]`. For
/// F(4x4) the 20 floats the group spans are five vector loads whose 4x4
/// transposes are the six columns (two shuffle levels instead of 24
/// scalar loads and inserts); for F(2x2) three loads and four shuffles
/// (instead of four two-load gathers). `m` is 2 or 4, the transforms
/// [`Transform::of`] has.
fn patch_row(e: &mut Emit, ty: Type, ptr: Value, m: usize, side: usize) -> Vec<Value> {
    if ty == types::F32 {
        return (0..side).map(|s| e.load(ty, ptr, s)).collect();
    }
    if m == 4 {
        let v: Vec<Value> = (0..5).map(|k| e.load(F32X4, ptr, LANES * k)).collect();
        let low = e.transpose4([v[0], v[1], v[2], v[3]]);
        let high = e.transpose4([v[1], v[2], v[3], v[4]]);
        return low.into_iter().chain(high).take(side).collect();
    }
    {
        // m = 2. Columns 0..12: the even and odd lanes of the first eight are
        // elements 0 and 1; elements 2 and 3 are those shifted by a lane,
        // with the ninth and tenth columns coming in.
        let v: Vec<Value> = (0..3).map(|k| e.load(F32X4, ptr, LANES * k)).collect();
        let even = e.shuffle_lanes(v[0], v[1], [0, 2, 4, 6]);
        let odd = e.shuffle_lanes(v[0], v[1], [1, 3, 5, 7]);
        let two = e.shuffle_lanes(even, v[2], [1, 2, 3, 4]);
        let three = e.shuffle_lanes(odd, v[2], [1, 2, 3, 5]);
        vec![even, odd, two, three]
    }
}

/// `winograd_input`.
pub fn input(a: &WinogradInputAttrs, ops: Operands<'_>) -> Result<Kernel, BackendError> {
    let t = transform(a.tile)?;
    let x = &ops.inputs[0];
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [th, tw] = a.tiles;
    let [py, px] = a.padding;
    let (m, side) = (t.m, t.a());
    let elements = side * side;
    // The padded plane: every tile's patch, and room for the last
    // four-tile group's loads. Input rows or columns past it are never
    // read (the tiles end first).
    let (hp, wp) = (
        m * th + 2,
        (m * tw + 2).max(m * tw.saturating_sub(LANES) + group_reach(m)),
    );
    let (copy_h, copy_w) = (h.min(hp.saturating_sub(py)), w.min(wp.saturating_sub(px)));
    let vector_tiles = tw / LANES * LANES;
    let (src, dst) = (x.base, ops.out.base);
    let row_stride = c * th * tw;
    Ok(Kernel::jit(
        n * c,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, task| {
                let plane = e.mul_imm(task, h * w);
                let src = e.addr(src, plane);
                // This plane, padded, in this thread's scratch memory: a
                // cheap copy (it stays in L1 or L2) that frees the
                // transform from bounds checks.
                let len = e.i(hp * wp);
                let padded =
                    e.call_native_ret(nnc_scratch as *const () as usize, &[len], types::I64);
                zero_fill(e, padded, 0, py * wp)?;
                zero_fill(e, padded, (py + copy_h) * wp, hp * wp)?;
                e.for_n(0, copy_h, 1, |e, y| {
                    let from = e.mul_imm(y, w);
                    let from = e.addr_of(src, from);
                    let to = e.mul_imm(y, wp);
                    let to = e.add_imm(to, py * wp);
                    let to = e.addr_of(padded, to);
                    zero_fill(e, to, 0, px)?;
                    zero_fill(e, to, px + copy_w, wp)?;
                    let to = e.b.ins().iadd_imm_s(to, (4 * px) as i64);
                    let (lo, hi) = (e.i(0), e.i(copy_w));
                    span(e, lo, hi, |e, ty, i| {
                        let p = e.addr_of(from, i);
                        let v = e.load(ty, p, 0);
                        let q = e.addr_of(to, i);
                        e.store(v, q, 0);
                        Ok(())
                    })
                })?;
                // Row (b*a*a + 0)*C + ch of the output, for task b*C + ch.
                let b = e.div_imm(task, c);
                let ch = e.rem_imm(task, c);
                let row = e.mul_imm(b, elements * c);
                let row = e.add(row, ch);
                let row = e.mul_imm(row, th * tw);
                let dst = e.addr(dst, row);
                let tile = |e: &mut Emit, ty: Type, ty_: Value, tx: Value| {
                    let y0 = e.mul_imm(ty_, m * wp);
                    let x0 = e.mul_imm(tx, m);
                    let at = e.add(y0, x0);
                    let corner = e.addr_of(padded, at);
                    // Rows: t[r][j] = sum_s BT[j][s] d[r][s].
                    let mut rows = Vec::with_capacity(side);
                    for r in 0..side {
                        let start = e.b.ins().iadd_imm_s(corner, (4 * r * wp) as i64);
                        let d = patch_row(e, ty, start, m, side);
                        let row: Vec<Value> = (0..side)
                            .map(|j| combine(e, ty, &t.bt[j * side..][..side], |_, s| d[s]))
                            .collect();
                        rows.push(row);
                    }
                    // Columns: v[i][j] = sum_r BT[i][r] t[r][j].
                    let out_at = e.mul_imm(ty_, tw);
                    let out_at = e.add(out_at, tx);
                    let out = e.addr_of(dst, out_at);
                    for j in 0..side {
                        let column: Vec<Value> = rows.iter().map(|row| row[j]).collect();
                        for i in 0..side {
                            let v = combine(e, ty, &t.bt[i * side..][..side], |_, r| column[r]);
                            e.store(v, out, (i * side + j) * row_stride);
                        }
                    }
                    Ok(())
                };
                e.for_n(0, th, 1, |e, ty_| {
                    e.for_n(0, vector_tiles, LANES, |e, tx| tile(e, F32X4, ty_, tx))?;
                    e.for_n(vector_tiles, tw, 1, |e, tx| tile(e, types::F32, ty_, tx))
                })
            })
        }),
    ))
}

/// `winograd_output`.
pub fn output(a: &WinogradOutputAttrs, ops: Operands<'_>) -> Result<Kernel, BackendError> {
    let t = transform(a.tile)?;
    let x = &ops.inputs[0];
    let (n, th, tw) = (x.shape[0], x.shape[2], x.shape[3]);
    let (m, side) = (t.m, t.a());
    let elements = side * side;
    let c_out = a.out_channels;
    let [oh, ow] = a.output_size;
    // Tiles whose m x m block lies wholly inside the output, and the
    // four-tile groups among them.
    let (full_rows, full_columns) = (oh / m, ow / m);
    let vector_tiles = full_columns / LANES * LANES;
    let (src, dst) = (x.base, ops.out.base);
    let bias = a.bias.then(|| ops.inputs[1].base);
    let residual = a
        .epilogue
        .residual
        .then(|| ops.inputs.last().map(|r| r.base))
        .flatten();
    let activation = a.epilogue.activation;
    let row_stride = c_out * th * tw;
    Ok(Kernel::jit(
        n * c_out,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, task| {
                let b = e.div_imm(task, c_out);
                let o = e.rem_imm(task, c_out);
                let row = e.mul_imm(b, elements * c_out);
                let row = e.add(row, o);
                let row = e.mul_imm(row, th * tw);
                let src = e.addr(src, row);
                let out_plane = e.mul_imm(task, oh * ow);
                let dst = e.addr(dst, out_plane);
                let shift = load_bias(e, bias, o);
                let vshift = e.b.ins().splat(F32X4, shift);
                // The tile at (ty, tx), of which `rows` x `cols` outputs
                // exist.
                let tile =
                    |e: &mut Emit, ty: Type, ty_: Value, tx: Value, rows: usize, cols: usize| {
                        let at = e.mul_imm(ty_, tw);
                        let at = e.add(at, tx);
                        let from = e.addr_of(src, at);
                        let mt: Vec<Value> = (0..elements)
                            .map(|i| e.load(ty, from, i * row_stride))
                            .collect();
                        let bias = if ty == types::F32 { shift } else { vshift };
                        let y0 = e.mul_imm(ty_, m * ow);
                        let x0 = e.mul_imm(tx, m);
                        let corner = e.add(y0, x0);
                        let corner = e.addr_of(dst, corner);
                        for p in 0..rows {
                            // s[j] = sum_i AT[p][i] M[i][j], then
                            // y[q] = sum_j AT[q][j] s[j].
                            let s: Vec<Value> = (0..side)
                                .map(|j| {
                                    combine(e, ty, &t.at[p * side..][..side], |_, i| {
                                        mt[i * side + j]
                                    })
                                })
                                .collect();
                            let y: Vec<Value> = (0..cols)
                                .map(|q| {
                                    let v = combine(e, ty, &t.at[q * side..][..side], |_, j| s[j]);
                                    e.b.ins().fadd(v, bias)
                                })
                                .collect();
                            if ty == types::F32 {
                                for (q, &v) in y.iter().enumerate() {
                                    e.store(v, corner, p * ow + q);
                                }
                            } else if m == 2 {
                                let (lo, hi) = e.interleave(y[0], y[1]);
                                e.store(lo, corner, p * ow);
                                e.store(hi, corner, p * ow + LANES);
                            } else {
                                // m = 4: lane t of y[q] is column 4t + q.
                                let rows = e.transpose4([y[0], y[1], y[2], y[3]]);
                                for (k, v) in rows.into_iter().enumerate() {
                                    e.store(v, corner, p * ow + LANES * k);
                                }
                            }
                        }
                        Ok(())
                    };
                let tile_row = |e: &mut Emit, ty_: Value, rows: usize| {
                    e.for_n(0, vector_tiles, LANES, |e, tx| {
                        tile(e, F32X4, ty_, tx, rows, m)
                    })?;
                    e.for_n(vector_tiles, full_columns, 1, |e, tx| {
                        tile(e, types::F32, ty_, tx, rows, m)
                    })?;
                    if full_columns < tw {
                        let tx = e.i(full_columns);
                        tile(e, types::F32, ty_, tx, rows, ow - m * full_columns)?;
                    }
                    Ok(())
                };
                e.for_n(0, full_rows, 1, |e, ty_| tile_row(e, ty_, m))?;
                if full_rows < th {
                    let ty_ = e.i(full_rows);
                    tile_row(e, ty_, oh - m * full_rows)?;
                }
                let res = residual.map(|r| e.addr(r, out_plane));
                epilogue_pass(e, dst, res, activation, oh * ow)
            })
        }),
    ))
}
