//! Register accumulators for kernels that fold along one dim: a row of
//! contiguous elements folded to one value ([`RowAccumulators`]), or a
//! block of contiguous columns each folded down a strided dim
//! ([`Columns`]: a reduction over a leading dim, softmax over a middle
//! dim, the channel window of `local_response_norm`).
//!
//! Both keep four vectors in flight: a single vector accumulator makes
//! every addition wait for the previous one (four cycles of latency on
//! current x86), and a block of sixteen columns reads whole cache lines.

use crate::backend::jit::{Emit, F32X4, LANES};
use crate::backend::BackendError;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use cranelift_frontend::Variable;

/// Vectors folded side by side.
const VECTORS: usize = 4;

/// Columns per block: [`VECTORS`] vectors.
pub const BLOCK: usize = VECTORS * LANES;

/// How two partial results combine (`fadd`, a maximum), on `f32` and
/// `f32x4` alike.
pub type Combine<'a> = &'a dyn Fn(&mut Emit, Value, Value) -> Value;

/// The value one row position contributes: `item(emit, ty, index, offset)`
/// for the `ty` lanes starting at element `index + offset` of the row
/// (`index` a run-time value, `offset` a constant).
pub type Item<'a> = &'a mut dyn FnMut(&mut Emit, Type, Value, usize) -> Result<Value, BackendError>;

/// Folds rows of `len` contiguous elements into one value: up to four
/// vector accumulators over the body of each row, a scalar one over its
/// last `len % 4` elements. Several rows may be folded into the same
/// accumulators (a reduction whose reduced elements are not contiguous).
pub struct RowAccumulators {
    len: usize,
    vectors: Vec<Variable>,
    scalar: Variable,
}

impl RowAccumulators {
    /// Accumulators for rows of `len`, each starting at `init`.
    pub fn new(e: &mut Emit, len: usize, init: f32) -> RowAccumulators {
        let vectors = (0..(len / LANES).min(VECTORS))
            .map(|_| {
                let v = e.b.declare_var(F32X4);
                let start = e.f(F32X4, init);
                e.b.def_var(v, start);
                v
            })
            .collect();
        let scalar = e.b.declare_var(types::F32);
        let start = e.f(types::F32, init);
        e.b.def_var(scalar, start);
        RowAccumulators {
            len,
            vectors,
            scalar,
        }
    }

    /// Folds one row into the accumulators: sixteen elements per loop
    /// iteration, then the remaining vectors and scalars unrolled.
    pub fn fold(
        &self,
        e: &mut Emit,
        combine: Combine<'_>,
        item: Item<'_>,
    ) -> Result<(), BackendError> {
        let mut into = |e: &mut Emit, var: Variable, ty: Type, i: Value, offset: usize| {
            let x = item(e, ty, i, offset)?;
            let acc = e.b.use_var(var);
            let acc = combine(e, acc, x);
            e.b.def_var(var, acc);
            Ok::<(), BackendError>(())
        };
        let wide = if self.vectors.len() == VECTORS {
            self.len / BLOCK * BLOCK
        } else {
            0
        };
        if wide > 0 {
            e.for_n(0, wide, BLOCK, |e, i| {
                for (k, &var) in self.vectors.iter().enumerate() {
                    into(e, var, F32X4, i, k * LANES)?;
                }
                Ok(())
            })?;
        }
        let tail = e.i(wide);
        let vector_end = self.len / LANES * LANES;
        for (k, offset) in (0..vector_end - wide).step_by(LANES).enumerate() {
            into(e, self.vectors[k], F32X4, tail, offset)?;
        }
        for offset in vector_end - wide..self.len - wide {
            into(e, self.scalar, types::F32, tail, offset)?;
        }
        Ok(())
    }

    /// Combines the accumulators into one scalar.
    pub fn finish(&self, e: &mut Emit, combine: Combine<'_>) -> Value {
        let mut acc = e.b.use_var(self.scalar);
        let vectors: Vec<Value> = self.vectors.iter().map(|&v| e.b.use_var(v)).collect();
        if let Some(mut v) = vectors.first().copied() {
            for &w in &vectors[1..] {
                v = combine(e, v, w);
            }
            for lane in 0..LANES as u8 {
                let x = e.b.ins().extractlane(v, lane);
                acc = combine(e, acc, x);
            }
        }
        acc
    }
}

/// The lanes of one block of columns: `vectors` vectors at element
/// offsets 0, 4, ..., then `scalars` single columns after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    pub vectors: usize,
    pub scalars: usize,
}

impl Columns {
    /// `width` columns.
    pub fn of(width: usize) -> Columns {
        Columns {
            vectors: width / LANES,
            scalars: width % LANES,
        }
    }

    /// Each lane group's type and element offset in the block.
    pub fn lanes(self) -> Vec<(Type, usize)> {
        let vectors = (0..self.vectors).map(|k| (F32X4, k * LANES));
        let scalars = (0..self.scalars).map(|k| (types::F32, self.vectors * LANES + k));
        vectors.chain(scalars).collect()
    }

    /// One variable per lane group, each starting at `init`.
    pub fn accumulators(self, e: &mut Emit, init: f32) -> Vec<Variable> {
        self.lanes()
            .into_iter()
            .map(|(ty, _)| {
                let v = e.b.declare_var(ty);
                let start = e.f(ty, init);
                e.b.def_var(v, start);
                v
            })
            .collect()
    }
}

/// Blocks of [`BLOCK`] columns across `width` columns, the last one
/// possibly narrower.
pub fn blocks(width: usize) -> usize {
    width.div_ceil(BLOCK).max(1)
}

/// Emits `body(emit, first_column, columns)` for block `b` (a run-time
/// value below [`blocks`]`(width)`): full blocks and the narrower last one
/// are separate code, so that every lane group is known when compiling.
pub fn for_block(
    e: &mut Emit,
    b: Value,
    width: usize,
    mut body: impl FnMut(&mut Emit, Value, Columns) -> Result<(), BackendError>,
) -> Result<(), BackendError> {
    let n = blocks(width);
    let last = Columns::of(width - (n - 1) * BLOCK);
    let first = e.mul_imm(b, BLOCK);
    if n == 1 || last == Columns::of(BLOCK) {
        return body(e, first, last);
    }
    let is_last = e.b.ins().icmp_imm_u(IntCC::Equal, b, (n - 1) as i64);
    e.if_then(is_last, |e| body(e, first, last))?;
    let is_full = e.b.ins().icmp_imm_u(IntCC::NotEqual, b, (n - 1) as i64);
    e.if_then(is_full, |e| body(e, first, Columns::of(BLOCK)))
}

/// `for` loops over `groups` (`(size, stride)` each, outermost first),
/// calling `body` with `offset` plus the strided position of each
/// combination; with no groups, once with `offset`.
pub fn nest(
    e: &mut Emit,
    groups: &[(usize, usize)],
    offset: Value,
    body: &mut dyn FnMut(&mut Emit, Value) -> Result<(), BackendError>,
) -> Result<(), BackendError> {
    match groups.split_first() {
        None => body(e, offset),
        Some((&(size, stride), rest)) => e.for_n(0, size, 1, |e, i| {
            let step = e.mul_imm(i, stride);
            let at = e.add(offset, step);
            nest(e, rest, at, body)
        }),
    }
}
