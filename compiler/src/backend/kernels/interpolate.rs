//! `interpolate`: one task per output row. The source rows and columns of
//! every output row and column, and for bilinear sampling their weights,
//! are computed at compile time into constant tables (from the op's
//! coordinate transform, rounded and weighted as `interp::interpolate`
//! documents), so the kernel only loads table entries and gathers.
//!
//! Along a row, four outputs are gathered into one vector: nearest
//! sampling loads the four source pixels, bilinear the sixteen (two rows,
//! two columns each) and blends them with the column weights as vectors.
//! Two column maps skip the tables: the identity (only H changes) copies
//! the row, and each column twice (`o / 2`, nearest 2x upsampling) loads
//! four pixels and interleaves them with themselves.

use super::{Consts, Kernel, Operands};
use crate::backend::jit::{Emit, F32X4, LANES};
use crate::backend::BackendError;
use crate::ir::{InterpolateAttrs, InterpolateMode, NearestRounding};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_runtime::kernels::bilinear::Bilinear;
use nnc_runtime::kernels::{entry, Base};

/// The kernel of `interpolate` on node `node`.
pub fn build(
    node: &str,
    a: &InterpolateAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let x = &ops.inputs[0];
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    // The tables hold input indices as `u32`.
    if u32::try_from(h.max(w)).is_err() {
        return Err(BackendError::Unsupported {
            node: node.to_string(),
            what: format!("resizing an input dim of {} (2^32 or more)", h.max(w)),
        });
    }
    let geometry = Geometry {
        planes: n * c,
        input: [h, w],
        output: a.size,
        src: x.base,
        dst: ops.out.base,
    };
    Ok(match a.mode {
        InterpolateMode::Nearest(rounding) => {
            let index = |axis: usize, o: usize, len: usize| {
                nearest(rounding, a.source_coordinate(axis, o, len), len)
            };
            let rows: Vec<u32> = (0..a.size[0]).map(|o| index(0, o, h)).collect();
            let columns: Vec<u32> = (0..a.size[1]).map(|o| index(1, o, w)).collect();
            nearest_kernel(geometry, &rows, columns, consts)
        }
        InterpolateMode::Bilinear => {
            let taps = |axis: usize, len: usize| -> Vec<[(u32, f32); 2]> {
                (0..a.size[axis])
                    .map(|o| linear(a.source_coordinate(axis, o, len), len))
                    .collect()
            };
            let (rows, columns) = (taps(0, h), taps(1, w));
            match Bilinear::new([h, w], &rows, &columns, ops.kernel)? {
                Some(spec) => native_bilinear(geometry, spec, consts),
                None => bilinear_kernel(geometry, &rows, &columns, consts),
            }
        }
    })
}

/// Where the planes are and their sizes.
#[derive(Clone, Copy)]
struct Geometry {
    planes: usize,
    input: [usize; 2],
    output: [usize; 2],
    src: Base,
    dst: Base,
}

impl Geometry {
    /// For task `t` (output row `oy` of plane `t / oh`): the index of
    /// `oy`, the start of the input plane and the start of the output row.
    fn task(&self, e: &mut Emit, t: Value) -> (Value, Value, Value) {
        let ([h, w], [oh, ow]) = (self.input, self.output);
        let plane = e.div_imm(t, oh);
        let oy = e.rem_imm(t, oh);
        let start = e.mul_imm(plane, h * w);
        let input = e.addr(self.src, start);
        let at = e.mul_imm(t, ow);
        let out = e.addr(self.dst, at);
        (oy, input, out)
    }
}

/// The index nearest sampling reads at coordinate `x` of an axis of `len`:
/// halves compared in `f32` as ONNX Runtime does, then clamped.
fn nearest(rounding: NearestRounding, x: f32, len: usize) -> u32 {
    let rounded = match rounding {
        NearestRounding::RoundPreferFloor => {
            if x - x.trunc() == 0.5 {
                x.floor()
            } else {
                x.round()
            }
        }
        NearestRounding::RoundPreferCeil => x.round(),
        NearestRounding::Floor => x.floor(),
        NearestRounding::Ceil => x.ceil(),
    };
    // `as` saturates: negative coordinates read index 0.
    (rounded.max(0.0) as u32).min((len as u32).saturating_sub(1))
}

/// The two indices bilinear sampling reads at coordinate `x` of an axis
/// of `len`, with their weights.
fn linear(x: f32, len: usize) -> [(u32, f32); 2] {
    let last = (len as u32).saturating_sub(1);
    let x = x.max(0.0).min(last as f32);
    let low = (x as u32).min(last);
    let high = (low + 1).min(last);
    if low == high {
        [(low, 0.5), (high, 0.5)]
    } else {
        [
            (low, (high as f32 - x).abs()),
            (high, (x - low as f32).abs()),
        ]
    }
}

/// A table of indices as a constant.
fn indices(consts: &mut Consts, values: impl Iterator<Item = u32>) -> Base {
    consts.add_indices(values.collect())
}

/// Loads entry `i + lane` of an index table as an `i64`.
fn index_at(e: &mut Emit, table: Value, i: Value, lane: usize) -> Value {
    let p = e.addr_of(table, i);
    let v = e.load(types::I32, p, lane);
    e.b.ins().uextend(types::I64, v)
}

/// `values` as the lanes of one vector.
fn gather(e: &mut Emit, values: [Value; LANES]) -> Value {
    let mut v = e.b.ins().scalar_to_vector(F32X4, values[0]);
    for (lane, &s) in values.iter().enumerate().skip(1) {
        v = e.b.ins().insertlane(v, s, lane as u8);
    }
    v
}

/// How an output row's columns read the input row, when a table is not
/// needed.
#[derive(Clone, Copy, PartialEq)]
enum Columns {
    /// Column `o` reads column `o`.
    Identity,
    /// Column `o` reads column `o / 2`.
    Doubled,
    /// From the table.
    Table,
}

fn nearest_kernel(g: Geometry, rows: &[u32], columns: Vec<u32>, consts: &mut Consts) -> Kernel {
    let ow = g.output[1];
    let shape = if columns.iter().enumerate().all(|(o, &x)| x as usize == o) {
        Columns::Identity
    } else if columns
        .iter()
        .enumerate()
        .all(|(o, &x)| x as usize == o / 2)
    {
        Columns::Doubled
    } else {
        Columns::Table
    };
    let row_table = indices(consts, rows.iter().copied());
    let column_table = indices(consts, columns.into_iter());
    Kernel::copy(
        g.planes * g.output[0],
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let (oy, input, out) = g.task(e, t);
                let rows = e.base(row_table);
                let iy = index_at(e, rows, oy, 0);
                let start = e.mul_imm(iy, g.input[1]);
                let row = e.addr_of(input, start);
                let columns = e.base(column_table);
                // One output from the table.
                let scalar = |e: &mut Emit, o: Value| -> Result<(), BackendError> {
                    let ix = index_at(e, columns, o, 0);
                    let p = e.addr_of(row, ix);
                    let v = e.load(types::F32, p, 0);
                    let q = e.addr_of(out, o);
                    e.store(v, q, 0);
                    Ok(())
                };
                match shape {
                    Columns::Identity => e.vectorized(ow, |e, ty, o| {
                        let p = e.addr_of(row, o);
                        let v = e.load(ty, p, 0);
                        let q = e.addr_of(out, o);
                        e.store(v, q, 0);
                        Ok(())
                    }),
                    Columns::Doubled => {
                        // Four inputs make eight outputs.
                        let inputs = ow / 2 / LANES * LANES;
                        e.for_n(0, inputs, LANES, |e, i| {
                            let p = e.addr_of(row, i);
                            let v = e.load(F32X4, p, 0);
                            let (low, high) = e.interleave(v, v);
                            let o = e.mul_imm(i, 2);
                            let q = e.addr_of(out, o);
                            e.store(low, q, 0);
                            e.store(high, q, LANES);
                            Ok(())
                        })?;
                        e.for_n(2 * inputs, ow, 1, scalar)
                    }
                    Columns::Table => {
                        let body = ow / LANES * LANES;
                        e.for_n(0, body, LANES, |e, o| {
                            let v = pixels(e, row, columns, o, LANES);
                            let q = e.addr_of(out, o);
                            e.store(v, q, 0);
                            Ok(())
                        })?;
                        e.for_n(body, ow, 1, scalar)
                    }
                }
            })
        }),
    )
}

/// Output rows per task of the native bilinear kernel.
const NATIVE_ROWS: usize = 4;

/// Bilinear sampling by the native rows ([`Bilinear`], AVX-512): tasks of
/// [`NATIVE_ROWS`] output rows of one plane.
fn native_bilinear(g: Geometry, spec: Bilinear, consts: &mut Consts) -> Kernel {
    let ([h, w], [oh, ow]) = (g.input, g.output);
    let blocks = oh.div_ceil(NATIVE_ROWS).max(1);
    let spec = consts.keep(spec);
    let mut kernel = Kernel::jit(
        g.planes * blocks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let (plane, r0, r1) = super::row_block(e, t, blocks, NATIVE_ROWS, oh);
                let start = e.mul_imm(plane, h * w);
                let input = e.addr(g.src, start);
                let start = e.mul_imm(plane, oh * ow);
                let out = e.addr(g.dst, start);
                let spec = e.ptr(spec);
                e.call(&entry::BILINEAR, &[spec, input, out, r0, r1])?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some("avx512 bilinear rows".into());
    kernel
}

fn bilinear_kernel(
    g: Geometry,
    rows: &[[(u32, f32); 2]],
    columns: &[[(u32, f32); 2]],
    consts: &mut Consts,
) -> Kernel {
    let ow = g.output[1];
    // Per side (low, high): the index table and the weight table.
    let side = |consts: &mut Consts, taps: &[[(u32, f32); 2]], k: usize| -> (Base, Base) {
        (
            indices(consts, taps.iter().map(|t| t[k].0)),
            consts.add(taps.iter().map(|t| t[k].1).collect()),
        )
    };
    let row_sides = [side(consts, rows, 0), side(consts, rows, 1)];
    let column_sides = [side(consts, columns, 0), side(consts, columns, 1)];
    Kernel::jit(
        g.planes * g.output[0],
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let (oy, input, out) = g.task(e, t);
                // The two source rows, each with its weight as a scalar and
                // splatted.
                let [top, bottom] = row_sides.map(|(index, weight)| {
                    let table = e.base(index);
                    let iy = index_at(e, table, oy, 0);
                    let start = e.mul_imm(iy, g.input[1]);
                    let row = e.addr_of(input, start);
                    let p = e.addr(weight, oy);
                    let w = e.load(types::F32, p, 0);
                    (row, w, e.b.ins().splat(F32X4, w))
                });
                let [left, right] =
                    column_sides.map(|(index, weight)| (e.base(index), e.base(weight)));
                // Outputs `o..o + lanes`, for 4 lanes or 1.
                let outputs = |e: &mut Emit, o: Value, lanes: usize| -> Result<(), BackendError> {
                    let ty = if lanes == 1 { types::F32 } else { F32X4 };
                    let column_weight = |e: &mut Emit, table: Value| {
                        let q = e.addr_of(table, o);
                        e.load(ty, q, 0)
                    };
                    let (wl, wr) = (column_weight(e, left.1), column_weight(e, right.1));
                    // One source row blended along the row.
                    let line = |e: &mut Emit, row: Value| {
                        let l = pixels(e, row, left.0, o, lanes);
                        let r = pixels(e, row, right.0, o, lanes);
                        let l = e.b.ins().fmul(l, wl);
                        let r = e.b.ins().fmul(r, wr);
                        e.b.ins().fadd(l, r)
                    };
                    let (a, b) = (line(e, top.0), line(e, bottom.0));
                    let (wa, wb) = if lanes == 1 {
                        (top.1, bottom.1)
                    } else {
                        (top.2, bottom.2)
                    };
                    let a = e.b.ins().fmul(a, wa);
                    let b = e.b.ins().fmul(b, wb);
                    let v = e.b.ins().fadd(a, b);
                    let q = e.addr_of(out, o);
                    e.store(v, q, 0);
                    Ok(())
                };
                let body = ow / LANES * LANES;
                e.for_n(0, body, LANES, |e, o| outputs(e, o, LANES))?;
                e.for_n(body, ow, 1, |e, o| outputs(e, o, 1))
            })
        }),
    )
}

/// The pixels of `row` at the columns `columns[o..o + lanes]` (an index
/// table), as a vector of 4 lanes or a scalar.
fn pixels(e: &mut Emit, row: Value, columns: Value, o: Value, lanes: usize) -> Value {
    let mut values = [o; LANES];
    for (lane, v) in values.iter_mut().enumerate().take(lanes) {
        let ix = index_at(e, columns, o, lane);
        let p = e.addr_of(row, ix);
        *v = e.load(types::F32, p, 0);
    }
    if lanes == 1 {
        values[0]
    } else {
        gather(e, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_and_weigh_like_the_docs() {
        assert_eq!(nearest(NearestRounding::RoundPreferFloor, 2.5, 8), 2);
        assert_eq!(nearest(NearestRounding::RoundPreferCeil, 2.5, 8), 3);
        assert_eq!(nearest(NearestRounding::Ceil, -0.25, 8), 0);
        assert_eq!(nearest(NearestRounding::Floor, 9.5, 8), 7);
        assert_eq!(linear(0.75, 3), [(0, 0.25), (1, 0.75)]);
        assert_eq!(linear(5.0, 3), [(2, 0.5), (2, 0.5)]);
    }
}
