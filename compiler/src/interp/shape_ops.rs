//! Data-movement ops: `flatten`, `reshape`, `permute`, `select`, `concat`.
//!
//! `flatten` and `reshape` keep the row-major buffer and change only the
//! shape; the others copy elements to their new row-major positions.

use nnc_runtime::{format_shape, Tensor};

use super::check::numel;
use super::error::{operands, InterpError};
use crate::ir::{ConcatAttrs, FlattenAttrs, PermuteAttrs, ReshapeAttrs, SelectAttrs};

/// `flatten`: merges dims `start_dim..=end_dim` into one.
pub fn flatten(x: &Tensor, a: &FlattenAttrs) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    if a.start_dim > a.end_dim || a.end_dim >= shape.len() {
        return Err(operands(
            "flatten",
            format!(
                "dims {}..={} are not a valid range for shape {}",
                a.start_dim,
                a.end_dim,
                format_shape(shape)
            ),
        ));
    }
    let mut out_shape = shape[..a.start_dim].to_vec();
    out_shape.push(numel(&shape[a.start_dim..=a.end_dim]));
    out_shape.extend_from_slice(&shape[a.end_dim + 1..]);
    Ok(Tensor::new(out_shape, x.data().to_vec())?)
}

/// `reshape` to `a.shape`, which must have the same number of elements.
pub fn reshape(x: &Tensor, a: &ReshapeAttrs) -> Result<Tensor, InterpError> {
    if nnc_runtime::checked_numel(&a.shape) != Some(x.len()) {
        return Err(operands(
            "reshape",
            format!(
                "cannot reshape {} ({} elements) to {}",
                format_shape(x.shape()),
                x.len(),
                format_shape(&a.shape)
            ),
        ));
    }
    Ok(Tensor::new(a.shape.clone(), x.data().to_vec())?)
}

/// `permute`: output dim `i` is input dim `dims[i]`.
pub fn permute(x: &Tensor, a: &PermuteAttrs) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    let rank = shape.len();
    let mut seen = vec![false; rank];
    let is_permutation = a.dims.len() == rank
        && a.dims
            .iter()
            .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true));
    if !is_permutation {
        return Err(operands(
            "permute",
            format!(
                "dims {:?} are not a permutation of the {rank} dims of {}",
                a.dims,
                format_shape(shape)
            ),
        ));
    }
    let in_strides = x.strides();
    let out_shape: Vec<usize> = a.dims.iter().map(|&d| shape[d]).collect();
    // The input stride of each output dim.
    let strides: Vec<usize> = a.dims.iter().map(|&d| in_strides[d]).collect();
    let mut out = Tensor::zeros(out_shape.clone())?;
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    for o in out.data_mut() {
        *o = x.data()[offset];
        for d in (0..rank).rev() {
            index[d] += 1;
            offset += strides[d];
            if index[d] < out_shape[d] {
                break;
            }
            offset -= strides[d] * out_shape[d];
            index[d] = 0;
        }
    }
    Ok(out)
}

/// `select`: picks `index` along `dim` and removes that dim.
pub fn select(x: &Tensor, a: &SelectAttrs) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    if a.dim >= shape.len() || a.index >= shape[a.dim] {
        return Err(operands(
            "select",
            format!(
                "index {} along dim {} is out of range for shape {}",
                a.index,
                a.dim,
                format_shape(shape)
            ),
        ));
    }
    let inner = numel(&shape[a.dim + 1..]);
    let mut out_shape = shape.to_vec();
    out_shape.remove(a.dim);
    let mut data = Vec::with_capacity(numel(&out_shape));
    if inner > 0 {
        for block in x.data().chunks_exact(shape[a.dim] * inner) {
            data.extend_from_slice(&block[a.index * inner..][..inner]);
        }
    }
    Ok(Tensor::new(out_shape, data)?)
}

/// `concat` along `dim`: all operands have the same rank and agree on every
/// other dim.
pub fn concat(xs: &[&Tensor], a: &ConcatAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "concat";
    let Some(first) = xs.first() else {
        return Err(operands(OP, "needs at least one operand"));
    };
    let rank = first.shape().len();
    if a.dim >= rank {
        return Err(operands(
            OP,
            format!(
                "dim {} is out of range for shape {}",
                a.dim,
                format_shape(first.shape())
            ),
        ));
    }
    let mut out_shape = first.shape().to_vec();
    out_shape[a.dim] = 0;
    for (i, x) in xs.iter().enumerate() {
        let s = x.shape();
        let agrees = s.len() == rank && (0..rank).all(|d| d == a.dim || s[d] == first.shape()[d]);
        if !agrees {
            return Err(operands(
                OP,
                format!(
                    "operand {i} has shape {} which does not match {} outside dim {}",
                    format_shape(s),
                    format_shape(first.shape()),
                    a.dim
                ),
            ));
        }
        out_shape[a.dim] += s[a.dim];
    }
    let outer = numel(&out_shape[..a.dim]);
    let inner = numel(&out_shape[a.dim + 1..]);
    let mut data = Vec::with_capacity(numel(&out_shape));
    for o in 0..outer {
        for x in xs {
            let chunk = x.shape()[a.dim] * inner;
            data.extend_from_slice(&x.data()[o * chunk..][..chunk]);
        }
    }
    Ok(Tensor::new(out_shape, data)?)
}
