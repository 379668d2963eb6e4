//! The one kernel of the indexing ops (`slice`, `index_select`, `repeat`,
//! `expand`). Each output dim adds a term to the input offset of an
//! element: `o * step` for a slice, a whole dim (`step` the input stride)
//! or a broadcast (`step` 0); `(o % n) * stride` for a repeat; a constant
//! table for an `index_select`. Neighbouring affine dims that walk the
//! input as one merge into one dim, so a slice of channels copies whole
//! channel blocks, and dims of size 1 drop out.
//!
//! Each task writes one chunk of one output row (the last dim after
//! merging): a contiguous copy, vectorised, when the row walks the input
//! with step 1, and vector loads with their lanes reversed for step -1;
//! one splatted value when it broadcasts; copies of the input row when it
//! repeats, or of each run of consecutive indices of a short table;
//! element by element otherwise.

use super::elementwise::span;
use super::{ConstPtr, Consts, Kernel, Operands};
use crate::backend::jit::{Emit, LANES};
use crate::backend::BackendError;
use crate::ir::Indexing;
use cranelift_codegen::ir::{types, InstBuilder, Value};

/// Output elements per task, so that long rows split across threads.
const CHUNK: usize = 16 * 1024;

/// Tables of at most this many runs of consecutive indices are copied run
/// by run with the runs in the code; longer ones are read from memory.
const MAX_RUNS: usize = 16;

/// What one output dim adds to the input offset (in elements) of the
/// element at index `o` along it.
#[derive(Clone, Debug, PartialEq)]
enum Term {
    /// `o * step`; the dim's start is in the kernel's base offset.
    Affine(i64),
    /// `(o % n) * stride`.
    Modulo { n: usize, stride: usize },
    /// `table[o]`.
    Table(Vec<i64>),
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The base offset and the term of each output dim of `a` reading an
/// operand of shape `input` and writing `out`.
fn terms(a: &Indexing, input: &[usize], out: &[usize]) -> (i64, Vec<Term>) {
    let stride = strides(input);
    let whole = |d: usize| Term::Affine(stride[d] as i64);
    // Output dims before the operand's first (repeat and expand add them)
    // read nothing of their own.
    let lead = out.len() - input.len();
    let mut base = 0i64;
    let mut terms: Vec<Term> = vec![Term::Affine(0); lead];
    match a {
        Indexing::Slice(s) => {
            terms.extend((0..input.len()).map(whole));
            for d in &s.dims {
                base += d.start as i64 * stride[d.dim] as i64;
                terms[d.dim] = Term::Affine(d.step * stride[d.dim] as i64);
            }
        }
        Indexing::IndexSelect(s) => {
            terms.extend((0..input.len()).map(whole));
            let offsets = s.index.iter().map(|&i| (i * stride[s.dim]) as i64);
            terms[s.dim] = Term::Table(offsets.collect());
        }
        Indexing::Repeat(r) => {
            terms.extend(
                (0..input.len()).map(|d| match (input[d], r.repeats[lead + d]) {
                    (1, _) => Term::Affine(0),
                    (_, 1) => whole(d),
                    (n, _) => Term::Modulo {
                        n,
                        stride: stride[d],
                    },
                }),
            );
        }
        Indexing::Expand(_) => {
            terms.extend((0..input.len()).map(|d| {
                if input[d] == 1 {
                    Term::Affine(0)
                } else {
                    whole(d)
                }
            }));
        }
    }
    (base, terms)
}

/// Drops dims of size 1 (their index is always 0: a table's first entry
/// goes into `base`) and merges each affine dim into the affine dim before
/// it when together they walk the input as one dim. Returns `(size, term)`
/// per remaining dim, at least one.
fn merge(base: &mut i64, out: &[usize], terms: Vec<Term>) -> Vec<(usize, Term)> {
    let mut dims: Vec<(usize, Term)> = Vec::with_capacity(out.len());
    for (&size, term) in out.iter().zip(terms) {
        if size == 1 {
            if let Term::Table(t) = &term {
                *base += t.first().copied().unwrap_or(0);
            }
            continue;
        }
        if let (Some((outer, Term::Affine(outer_step))), Term::Affine(step)) =
            (dims.last_mut(), &term)
        {
            if *outer_step == step * size as i64 {
                *outer *= size;
                *outer_step = *step;
                continue;
            }
        }
        dims.push((size, term));
    }
    if dims.is_empty() {
        dims.push((1, Term::Affine(0)));
    }
    dims
}

/// The kernel of an indexing op.
pub fn build(a: &Indexing, ops: Operands<'_>, consts: &mut Consts) -> Result<Kernel, BackendError> {
    let input = ops
        .inputs
        .first()
        .ok_or_else(|| BackendError::Codegen(format!("`{}` has no operand", a.name())))?;
    let out = ops.out.shape.clone();
    if out.len() < input.shape.len() {
        return Err(BackendError::Codegen(format!(
            "`{}` output {:?} has fewer dims than its operand {:?}",
            a.name(),
            out,
            input.shape
        )));
    }
    let (mut base, terms) = terms(a, &input.shape, &out);
    let mut dims = merge(&mut base, &out, terms);
    let (row, last) = dims.pop().unwrap_or((1, Term::Affine(0)));
    // Tables of outer dims are read at run time: keep them alive.
    let outer: Vec<(usize, Outer)> = dims
        .into_iter()
        .map(|(size, term)| {
            let outer = match term {
                Term::Affine(step) => Outer::Affine(step),
                Term::Modulo { n, stride } => Outer::Modulo { n, stride },
                Term::Table(t) => Outer::Table(consts.add_offsets(t)),
            };
            (size, outer)
        })
        .collect();
    let rows: usize = outer.iter().map(|(size, _)| size).product();
    let last = Row::of(last, row, consts);
    let chunk = match last {
        Row::Affine(_) => CHUNK.min(row),
        Row::Modulo { .. } | Row::Runs(_) | Row::Table(_) => row,
    };
    let chunks = row.div_ceil(chunk);
    let (src, dst) = (input.base, ops.out.base);
    Ok(Kernel::copy(
        rows * chunks,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, t| {
                let r = e.div_imm(t, chunks);
                let c = e.rem_imm(t, chunks);
                let offset = row_offset(e, r, base, &outer);
                let from = e.addr(src, offset);
                let at = e.mul_imm(r, row);
                let to = e.addr(dst, at);
                let lo = e.mul_imm(c, chunk);
                let hi = e.add_imm(lo, chunk);
                let end = e.i(row);
                let hi = e.b.ins().umin(hi, end);
                last.emit(e, from, to, lo, hi, row)
            })
        }),
    ))
}

/// The term of an outer dim, as the kernel reads it.
#[derive(Clone, Copy, Debug)]
enum Outer {
    Affine(i64),
    Modulo {
        n: usize,
        stride: usize,
    },
    /// The address of the table of offsets.
    Table(ConstPtr),
}

/// The input offset of the first element of output row `r`.
fn row_offset(e: &mut Emit, r: Value, base: i64, outer: &[(usize, Outer)]) -> Value {
    let mut offset = e.b.ins().iconst(types::I64, base);
    let mut rest = r;
    for (i, &(size, term)) in outer.iter().enumerate().rev() {
        // The first dim's index is what is left of the row number.
        let digit = if i == 0 { rest } else { e.rem_imm(rest, size) };
        if i > 0 {
            rest = e.div_imm(rest, size);
        }
        let add = match term {
            Outer::Affine(0) => continue,
            Outer::Affine(step) => e.b.ins().imul_imm_s(digit, step),
            Outer::Modulo { n, stride } => {
                let k = e.rem_imm(digit, n);
                e.mul_imm(k, stride)
            }
            Outer::Table(table) => e.load_i64(table, digit),
        };
        offset = e.add(offset, add);
    }
    offset
}

/// How one output row reads the input, from the row's first input element.
enum Row {
    /// Element `j` at `j * step`.
    Affine(i64),
    /// Element `j` at `(j % n) * stride`.
    Modulo { n: usize, stride: usize },
    /// Runs `(first element, input offset, length)` of consecutive input
    /// elements.
    Runs(Vec<(usize, i64, usize)>),
    /// Element `j` at the offset in entry `j` of the table at this address.
    Table(ConstPtr),
}

impl Row {
    fn of(term: Term, row: usize, consts: &mut Consts) -> Row {
        match term {
            Term::Affine(step) => Row::Affine(step),
            Term::Modulo { n, stride } => Row::Modulo { n, stride },
            Term::Table(t) => {
                let mut runs: Vec<(usize, i64, usize)> = Vec::new();
                for (j, &offset) in t.iter().enumerate().take(row) {
                    match runs.last_mut() {
                        Some((_, first, len)) if *first + *len as i64 == offset => *len += 1,
                        _ => runs.push((j, offset, 1)),
                    }
                }
                if runs.len() <= MAX_RUNS {
                    Row::Runs(runs)
                } else {
                    Row::Table(consts.add_offsets(t))
                }
            }
        }
    }

    /// Writes elements `lo..hi` of the row at `to`, reading from `from`.
    /// Only an affine row is split into chunks; the others are written
    /// whole, `row` elements.
    fn emit(
        &self,
        e: &mut Emit,
        from: Value,
        to: Value,
        lo: Value,
        hi: Value,
        row: usize,
    ) -> Result<(), BackendError> {
        match *self {
            Row::Affine(1) => copy(e, from, to, lo, hi),
            Row::Affine(0) => {
                let v = e.load(types::F32, from, 0);
                span(e, lo, hi, |e, ty, j| {
                    let v = if ty == types::F32 {
                        v
                    } else {
                        e.b.ins().splat(ty, v)
                    };
                    let q = e.addr_of(to, j);
                    e.store(v, q, 0);
                    Ok(())
                })
            }
            // A reversed row (`torch.flip`): four elements ending at
            // `-j` are one load, with the lanes then reversed.
            Row::Affine(-1) => span(e, lo, hi, |e, ty, j| {
                let back = e.b.ins().ineg(j);
                let v = if ty == types::F32 {
                    let p = e.addr_of(from, back);
                    e.load(ty, p, 0)
                } else {
                    let first = e.sub_imm(back, LANES - 1);
                    let p = e.addr_of(from, first);
                    let v = e.load(ty, p, 0);
                    e.shuffle_lanes(v, v, [3, 2, 1, 0])
                };
                let q = e.addr_of(to, j);
                e.store(v, q, 0);
                Ok(())
            }),
            Row::Affine(step) => e.for_range(lo, hi, 1, |e, j| {
                let k = e.b.ins().imul_imm_s(j, step);
                let p = e.addr_of(from, k);
                let v = e.load(types::F32, p, 0);
                let q = e.addr_of(to, j);
                e.store(v, q, 0);
                Ok(())
            }),
            Row::Modulo { n, stride } => e.for_n(0, row / n, 1, |e, rep| {
                let at = e.mul_imm(rep, n);
                let to = e.addr_of(to, at);
                if stride == 1 {
                    let (lo, hi) = (e.i(0), e.i(n));
                    return copy(e, from, to, lo, hi);
                }
                e.for_n(0, n, 1, |e, j| {
                    let k = e.mul_imm(j, stride);
                    let p = e.addr_of(from, k);
                    let v = e.load(types::F32, p, 0);
                    let q = e.addr_of(to, j);
                    e.store(v, q, 0);
                    Ok(())
                })
            }),
            Row::Runs(ref runs) => {
                for &(first, offset, len) in runs {
                    let k = e.b.ins().iconst(types::I64, offset);
                    let from = e.addr_of(from, k);
                    let at = e.i(first);
                    let to = e.addr_of(to, at);
                    let (lo, hi) = (e.i(0), e.i(len));
                    copy(e, from, to, lo, hi)?;
                }
                Ok(())
            }
            Row::Table(table) => e.for_n(0, row, 1, |e, j| {
                let k = e.load_i64(table, j);
                let p = e.addr_of(from, k);
                let v = e.load(types::F32, p, 0);
                let q = e.addr_of(to, j);
                e.store(v, q, 0);
                Ok(())
            }),
        }
    }
}

/// Copies elements `lo..hi` from `from` to `to`, four at a time.
fn copy(e: &mut Emit, from: Value, to: Value, lo: Value, hi: Value) -> Result<(), BackendError> {
    span(e, lo, hi, |e, ty, j| {
        let p = e.addr_of(from, j);
        let v = e.load(ty, p, 0);
        let q = e.addr_of(to, j);
        e.store(v, q, 0);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{SliceAttrs, SliceDim};

    /// A slice of channels of `[N, C, H, W]` copies one block of `H*W`
    /// elements per channel kept, all channels of a sample in one row.
    #[test]
    fn a_channel_slice_merges_into_rows_of_whole_blocks() {
        let a = Indexing::Slice(SliceAttrs {
            dims: vec![SliceDim {
                dim: 1,
                start: 2,
                step: 1,
                size: 3,
            }],
        });
        let (mut base, t) = terms(&a, &[2, 8, 4, 5], &[2, 3, 4, 5]);
        let dims = merge(&mut base, &[2, 3, 4, 5], t);
        assert_eq!(base, 40);
        assert_eq!(dims, vec![(2, Term::Affine(160)), (60, Term::Affine(1))]);
    }

    /// A reversed last dim stays its own dim with a negative step.
    #[test]
    fn a_reversed_dim_keeps_its_negative_step() {
        let a = Indexing::Slice(SliceAttrs {
            dims: vec![SliceDim {
                dim: 1,
                start: 4,
                step: -2,
                size: 3,
            }],
        });
        let (mut base, t) = terms(&a, &[3, 5], &[3, 3]);
        let dims = merge(&mut base, &[3, 3], t);
        assert_eq!(base, 4);
        assert_eq!(dims, vec![(3, Term::Affine(5)), (3, Term::Affine(-2))]);
    }
}
