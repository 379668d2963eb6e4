//! Shape inference of the indexing ops (`slice`, `index_select`, `repeat`,
//! `expand`). Their attributes are resolved against the operand when they
//! are built, so these checks only fail for an IR that a pass or a test
//! built wrongly; lowering reports bad attributes at the attribute itself.

use super::{SResult, ShapeError};
use crate::ir::{ExpandAttrs, IndexSelectAttrs, Indexing, RepeatAttrs, SliceAttrs, TensorType};
use nnc_runtime::format_shape;

/// The output type of `op` on an operand of type `x`.
pub(super) fn infer(op: &Indexing, x: &TensorType) -> SResult<TensorType> {
    match op {
        Indexing::Slice(a) => slice(a, x),
        Indexing::IndexSelect(a) => index_select(a, x),
        Indexing::Repeat(a) => repeat(a, x),
        Indexing::Expand(a) => expand(a, x),
    }
}

fn slice(a: &SliceAttrs, x: &TensorType) -> SResult<TensorType> {
    let mut shape = x.shape.clone();
    let mut seen = vec![false; x.rank()];
    for s in &a.dims {
        let Some(&size) = x.shape.get(s.dim) else {
            return Err(ShapeError::new(
                format!("`slice` dim {} is out of range for {x}", s.dim),
                "bad dim",
            ));
        };
        if std::mem::replace(&mut seen[s.dim], true) {
            return Err(ShapeError::new(
                format!("`slice` slices dim {} twice", s.dim),
                "repeated dim",
            ));
        }
        // The last index taken, start + (size - 1) * step, must be inside
        // the dim, as the first must.
        let last = i128::from(s.step) * (s.size as i128 - 1) + s.start as i128;
        if s.step == 0 || s.size == 0 || s.start >= size || last < 0 || last >= size as i128 {
            return Err(ShapeError::new(
                format!(
                    "`slice` of {} indices from {} by {} does not fit dim {} of {x}",
                    s.size, s.start, s.step, s.dim
                ),
                "slice out of range",
            ));
        }
        shape[s.dim] = s.size;
    }
    Ok(TensorType::f32(shape))
}

fn index_select(a: &IndexSelectAttrs, x: &TensorType) -> SResult<TensorType> {
    let Some(&size) = x.shape.get(a.dim) else {
        return Err(ShapeError::new(
            format!("`index_select` dim {} is out of range for {x}", a.dim),
            "bad dim",
        ));
    };
    if a.index.is_empty() || a.index.iter().any(|&i| i >= size) {
        return Err(ShapeError::new(
            format!(
                "`index_select` indices {:?} do not fit dim {} of {x}",
                a.index, a.dim
            ),
            "index out of range",
        ));
    }
    let mut shape = x.shape.clone();
    shape[a.dim] = a.index.len();
    Ok(TensorType::f32(shape))
}

fn repeat(a: &RepeatAttrs, x: &TensorType) -> SResult<TensorType> {
    if a.repeats.len() < x.rank() || a.repeats.contains(&0) {
        return Err(ShapeError::new(
            format!(
                "`repeat` by {:?} does not fit {x}: it needs a count of at least 1 for each of its dims",
                a.repeats
            ),
            "bad repeats",
        ));
    }
    let lead = a.repeats.len() - x.rank();
    let shape = a
        .repeats
        .iter()
        .enumerate()
        .map(|(d, &r)| {
            let size = if d < lead { 1 } else { x.shape[d - lead] };
            size.checked_mul(r)
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| overflow(&a.repeats))?;
    Ok(TensorType::f32(shape))
}

fn expand(a: &ExpandAttrs, x: &TensorType) -> SResult<TensorType> {
    let lead = a.shape.len().checked_sub(x.rank());
    let fits = lead.is_some_and(|lead| {
        a.shape.iter().enumerate().all(|(d, &s)| {
            let size = if d < lead { 1 } else { x.shape[d - lead] };
            s >= 1 && (size == s || size == 1)
        })
    });
    if !fits {
        return Err(ShapeError::new(
            format!(
                "`expand` cannot broadcast {x} to {}",
                format_shape(&a.shape)
            ),
            "not broadcastable",
        )
        .help("aligned from the right, each dim of the operand must be 1 or the new size"));
    }
    Ok(TensorType::f32(a.shape.clone()))
}

fn overflow(repeats: &[usize]) -> ShapeError {
    ShapeError::new(
        format!("`repeat` by {repeats:?} overflows"),
        "this shape is too large to address",
    )
}
