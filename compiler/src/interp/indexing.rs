//! The indexing ops: `slice`, `index_select`, `repeat`, `expand`. Each
//! checks its attributes against the operand, then reads every output
//! element from the input index its definition gives, one dim at a time.

use nnc_runtime::{checked_numel, format_shape, Tensor};

use super::error::{operands, InterpError};
use crate::ir::{ExpandAttrs, IndexSelectAttrs, Indexing, RepeatAttrs, SliceAttrs};

/// Runs the indexing op `a` on `x`.
pub fn indexing(x: &Tensor, a: &Indexing) -> Result<Tensor, InterpError> {
    match a {
        Indexing::Slice(a) => slice(x, a),
        Indexing::IndexSelect(a) => index_select(x, a),
        Indexing::Repeat(a) => repeat(x, a),
        Indexing::Expand(a) => expand(x, a),
    }
}

/// `slice`: along each listed dim, the indices `start + i * step` for `i`
/// in `0..size`; other dims whole.
pub fn slice(x: &Tensor, a: &SliceAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "slice";
    let shape = x.shape();
    let mut out_shape = shape.to_vec();
    // Per input dim, `(start, step)` of the indices it takes.
    let mut ranges: Vec<(i64, i64)> = vec![(0, 1); shape.len()];
    let mut sliced = vec![false; shape.len()];
    for s in &a.dims {
        let fits = s.dim < shape.len() && !sliced[s.dim] && s.step != 0 && s.size > 0 && {
            let n = shape[s.dim] as i64;
            let (first, last) = (
                s.start as i64,
                s.start as i64 + (s.size as i64 - 1) * s.step,
            );
            (0..n).contains(&first) && (0..n).contains(&last)
        };
        if !fits {
            return Err(operands(
                OP,
                format!(
                    "{} indices from {} by {} along dim {} do not fit shape {}",
                    s.size,
                    s.start,
                    s.step,
                    s.dim,
                    format_shape(shape)
                ),
            ));
        }
        sliced[s.dim] = true;
        ranges[s.dim] = (s.start as i64, s.step);
        out_shape[s.dim] = s.size;
    }
    gather(x, out_shape, |d, o| {
        let (start, step) = ranges[d];
        (start + o as i64 * step) as usize
    })
}

/// `index_select`: along `dim`, the input slices at `index`, in order.
pub fn index_select(x: &Tensor, a: &IndexSelectAttrs) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    let fits = a.dim < shape.len() && !a.index.is_empty() && {
        let n = shape[a.dim];
        a.index.iter().all(|&i| i < n)
    };
    if !fits {
        return Err(operands(
            "index_select",
            format!(
                "indices {:?} along dim {} do not fit shape {}",
                a.index,
                a.dim,
                format_shape(shape)
            ),
        ));
    }
    let mut out_shape = shape.to_vec();
    out_shape[a.dim] = a.index.len();
    gather(x, out_shape, |d, o| if d == a.dim { a.index[o] } else { o })
}

/// `repeat`: output dim `d` is the input tiled `repeats[d]` times, the
/// input aligned with the last repeats.
pub fn repeat(x: &Tensor, a: &RepeatAttrs) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    if a.repeats.len() < shape.len() || a.repeats.contains(&0) {
        return Err(operands(
            "repeat",
            format!(
                "repeats {:?} do not fit shape {}: one count of at least 1 per dim is needed",
                a.repeats,
                format_shape(shape)
            ),
        ));
    }
    let lead = a.repeats.len() - shape.len();
    let out_shape: Option<Vec<usize>> = a
        .repeats
        .iter()
        .enumerate()
        .map(|(d, &r)| {
            if d < lead {
                Some(r)
            } else {
                shape[d - lead].checked_mul(r)
            }
        })
        .collect();
    let Some(out_shape) = out_shape.filter(|s| checked_numel(s).is_some()) else {
        return Err(operands(
            "repeat",
            format!(
                "repeating {} by {:?} overflows",
                format_shape(shape),
                a.repeats
            ),
        ));
    };
    gather(x, out_shape, |d, o| o % shape[d])
}

/// `expand`: the input broadcast to `shape`, aligned at the last dim.
pub fn expand(x: &Tensor, a: &ExpandAttrs) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    let lead = a.shape.len().checked_sub(shape.len());
    let fits = lead.is_some_and(|lead| {
        shape
            .iter()
            .enumerate()
            .all(|(d, &n)| n == 1 || n == a.shape[d + lead])
    });
    if !fits {
        return Err(operands(
            "expand",
            format!(
                "shape {} cannot be broadcast to {}",
                format_shape(shape),
                format_shape(&a.shape)
            ),
        ));
    }
    check_size("expand", &a.shape)?;
    gather(x, a.shape.clone(), |d, o| if shape[d] == 1 { 0 } else { o })
}

fn check_size(op: &'static str, shape: &[usize]) -> Result<(), InterpError> {
    match checked_numel(shape) {
        Some(_) => Ok(()),
        None => Err(operands(
            op,
            format!("the output shape {} overflows", format_shape(shape)),
        )),
    }
}

/// The tensor of shape `out_shape` whose element at output index `o` is the
/// input element whose index along input dim `d` is `source(d, o[d +
/// lead])`, where the output has `lead` more (leading) dims than the input.
fn gather(
    x: &Tensor,
    out_shape: Vec<usize>,
    source: impl Fn(usize, usize) -> usize,
) -> Result<Tensor, InterpError> {
    let rank = x.shape().len();
    let lead = out_shape.len() - rank;
    let strides = x.strides();
    let count: usize = out_shape.iter().product();
    let mut data = Vec::with_capacity(count);
    let mut index = vec![0usize; out_shape.len()];
    for _ in 0..count {
        let offset: usize = (0..rank)
            .map(|d| source(d, index[d + lead]) * strides[d])
            .sum();
        data.push(x.data()[offset]);
        for d in (0..out_shape.len()).rev() {
            index[d] += 1;
            if index[d] < out_shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(Tensor::new(out_shape, data)?)
}
