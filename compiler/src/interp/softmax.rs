//! `softmax` along one dim, numerically stable: the maximum of each row is
//! subtracted before exponentiating, and the sum is accumulated in `f64`.

use nnc_runtime::{format_shape, Tensor};

use super::check::numel;
use super::error::{operands, InterpError};
use crate::ir::SoftmaxAttrs;

/// `softmax(x)[.., i, ..] = exp(x_i - max) / sum_j exp(x_j - max)` along `dim`.
pub fn softmax(x: &Tensor, a: &SoftmaxAttrs) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    if a.dim >= shape.len() {
        return Err(operands(
            "softmax",
            format!(
                "dim {} is out of range for shape {}",
                a.dim,
                format_shape(shape)
            ),
        ));
    }
    let len = shape[a.dim];
    let inner = numel(&shape[a.dim + 1..]);
    let mut out = x.clone();
    if len * inner == 0 {
        return Ok(out);
    }
    let mut row = vec![0.0f32; len];
    for block in out.data_mut().chunks_exact_mut(len * inner) {
        for j in 0..inner {
            // Gather the strided row, normalise it, scatter it back.
            for (i, r) in row.iter_mut().enumerate() {
                *r = block[i * inner + j];
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0f64;
            for r in row.iter_mut() {
                *r = (*r - max).exp();
                sum += f64::from(*r);
            }
            for (i, r) in row.iter().enumerate() {
                block[i * inner + j] = (f64::from(*r) / sum) as f32;
            }
        }
    }
    Ok(out)
}
