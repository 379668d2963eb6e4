//! `mean`, `sum`, `amax` and `amin` over any dims, `global_max_pool`, and
//! `global_avg_pool` (the mean over `H, W`).
//!
//! The operand's dims are first simplified: size-1 dims dropped, runs of
//! reduced dims and runs of kept dims merged, so `[N, C, H, W]` reduced
//! over `H, W` is `N*C` rows of `H*W`. Then the innermost group decides
//! the vectorisation:
//! - reduced (a row reduction: `mean` over `H, W`, over the last dim):
//!   one task per output element, folding each contiguous row four
//!   vectors at a time, the outer reduced groups looped around it;
//! - kept (a reduction over a leading dim: over channels, over the batch):
//!   one task per block of sixteen contiguous output columns, each column
//!   accumulated in registers while the kernel walks every reduced
//!   position.

use super::lanes::{self, Columns, RowAccumulators};
use super::{Kernel, Operands};
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::{ReduceAttrs, Reduction};
use cranelift_codegen::ir::{InstBuilder, Value};

/// A run of dims of the operand merged into one: its size, the stride of
/// its innermost dim, and whether it is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Group {
    size: usize,
    stride: usize,
    reduced: bool,
}

/// The operand's dims without the size-1 ones, adjacent dims of the same
/// kind merged (a merged run is contiguous in memory, so it is one dim of
/// the product of the sizes and the innermost stride).
fn groups(shape: &[usize], dims: &[usize]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut stride = 1;
    for d in (0..shape.len()).rev() {
        let (size, reduced) = (shape[d], dims.contains(&d));
        if size != 1 {
            match out.last_mut() {
                Some(g) if g.reduced == reduced => g.size *= size,
                _ => out.push(Group {
                    size,
                    stride,
                    reduced,
                }),
            }
        }
        stride *= size;
    }
    out.reverse();
    out
}

/// How a reduction folds two partial results.
fn combine(function: Reduction) -> impl Fn(&mut Emit, Value, Value) -> Value {
    move |e, acc, v| match function {
        Reduction::Mean | Reduction::Sum => e.b.ins().fadd(acc, v),
        Reduction::Max => e.max_keeping_nan(acc, v),
        Reduction::Min => e.min_keeping_nan(acc, v),
    }
}

/// The result from the folded value: divided by the count for `mean`.
fn finish(e: &mut Emit, function: Reduction, count: usize, acc: Value) -> Value {
    match function {
        Reduction::Mean => {
            let ty = e.b.func.dfg.value_type(acc);
            let inv = e.f(ty, 1.0 / count.max(1) as f32);
            e.b.ins().fmul(acc, inv)
        }
        Reduction::Sum | Reduction::Max | Reduction::Min => acc,
    }
}

/// The digits of task index `t` in `groups` (row-major), dotted with the
/// groups' strides: where in the operand the task's output element or
/// row of columns starts.
fn offset_of(e: &mut Emit, t: Value, groups: &[(usize, usize)]) -> Value {
    let mut rest = t;
    let mut offset = e.i(0);
    for &(size, stride) in groups.iter().rev() {
        let digit = e.rem_imm(rest, size);
        rest = e.div_imm(rest, size);
        let term = e.mul_imm(digit, stride);
        offset = e.add(offset, term);
    }
    offset
}

/// The kernel of `Op::Reduce`.
pub fn build(a: &ReduceAttrs, ops: Operands<'_>) -> Kernel {
    let x = &ops.inputs[0];
    let count = a.count(&x.shape);
    let mut all = groups(&x.shape, &a.dims);
    if all.is_empty() {
        // One element: a kept "column" of width 1 copies it.
        all.push(Group {
            size: 1,
            stride: 1,
            reduced: false,
        });
    }
    let kept: Vec<(usize, usize)> = all
        .iter()
        .filter(|g| !g.reduced)
        .map(|g| (g.size, g.stride))
        .collect();
    let reduced: Vec<(usize, usize)> = all
        .iter()
        .filter(|g| g.reduced)
        .map(|g| (g.size, g.stride))
        .collect();
    let (src, dst, function) = (x.base, ops.out.base, a.function);
    match all.last() {
        Some(&Group {
            size: len,
            reduced: true,
            ..
        }) => {
            let outer = reduced[..reduced.len() - 1].to_vec();
            let tasks: usize = kept.iter().map(|&(size, _)| size).product();
            Kernel::jit(
                tasks,
                Box::new(move |e: &mut Emit| {
                    e.for_tasks(|e, t| {
                        let start = offset_of(e, t, &kept);
                        let from = e.addr(src, start);
                        let combine = combine(function);
                        let accs = RowAccumulators::new(e, len, function.identity());
                        let zero = e.i(0);
                        lanes::nest(e, &outer, zero, &mut |e, at| {
                            let row = e.addr_of(from, at);
                            accs.fold(e, &combine, &mut |e, ty, i, offset| {
                                let p = e.addr_of(row, i);
                                Ok(e.load(ty, p, offset))
                            })
                        })?;
                        let acc = accs.finish(e, &combine);
                        let y = finish(e, function, count, acc);
                        let q = e.addr(dst, t);
                        e.store(y, q, 0);
                        Ok(())
                    })
                }),
            )
        }
        _ => {
            let (width, _) = kept.last().copied().unwrap_or((1, 1));
            let outer = kept[..kept.len().saturating_sub(1)].to_vec();
            let rows: usize = outer.iter().map(|&(size, _)| size).product();
            let blocks = lanes::blocks(width);
            Kernel::jit(
                rows * blocks,
                Box::new(move |e: &mut Emit| {
                    e.for_tasks(|e, t| {
                        let o = e.div_imm(t, blocks);
                        let b = e.rem_imm(t, blocks);
                        let start = offset_of(e, o, &outer);
                        let out_row = e.mul_imm(o, width);
                        lanes::for_block(e, b, width, |e, first, columns| {
                            columns_block(e, function, count, &reduced, columns, |e| {
                                let from = e.add(start, first);
                                let to = e.add(out_row, first);
                                (e.addr(src, from), e.addr(dst, to))
                            })
                        })
                    })
                }),
            )
        }
    }
}

/// One block of output columns: every lane group folded over all the
/// reduced positions (`reduced`, looped outermost first), then stored.
/// `pointers` gives the block's first input and output elements.
fn columns_block(
    e: &mut Emit,
    function: Reduction,
    count: usize,
    reduced: &[(usize, usize)],
    columns: Columns,
    pointers: impl FnOnce(&mut Emit) -> (Value, Value),
) -> Result<(), BackendError> {
    let (from, to) = pointers(e);
    let parts = columns.lanes();
    let accs = columns.accumulators(e, function.identity());
    let combine = combine(function);
    let zero = e.i(0);
    lanes::nest(e, reduced, zero, &mut |e, at| {
        let p = e.addr_of(from, at);
        for (&(ty, offset), &var) in parts.iter().zip(&accs) {
            let x = e.load(ty, p, offset);
            let acc = e.b.use_var(var);
            let acc = combine(e, acc, x);
            e.b.def_var(var, acc);
        }
        Ok(())
    })?;
    for (&(_, offset), &var) in parts.iter().zip(&accs) {
        let acc = e.b.use_var(var);
        let y = finish(e, function, count, acc);
        e.store(y, to, offset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(size: usize, stride: usize, reduced: bool) -> Group {
        Group {
            size,
            stride,
            reduced,
        }
    }

    /// `mean` over `H, W` is rows of `H*W`; over the channels, a reduced
    /// group between two kept ones; size-1 dims vanish whatever their kind.
    #[test]
    fn dims_merge_into_alternating_groups() {
        assert_eq!(
            groups(&[2, 3, 4, 5], &[2, 3]),
            [group(6, 20, false), group(20, 1, true)]
        );
        assert_eq!(
            groups(&[2, 3, 4, 5], &[1]),
            [group(2, 60, false), group(3, 20, true), group(20, 1, false)]
        );
        assert_eq!(
            groups(&[1, 3, 1, 5], &[0, 1, 2]),
            [group(3, 5, true), group(5, 1, false)]
        );
        assert_eq!(groups(&[1, 1], &[1]), []);
    }
}
