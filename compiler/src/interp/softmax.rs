//! `softmax` and `log_softmax` along one dim, numerically stable: the
//! maximum of each row is subtracted before exponentiating, and the sum is
//! accumulated in `f64`.

use nnc_runtime::{format_shape, Tensor};

use super::check::numel;
use super::error::{operands, InterpError};
use crate::ir::SoftmaxAttrs;

/// `softmax(x)[.., i, ..] = exp(x_i - max) / sum_j exp(x_j - max)` along `dim`.
pub fn softmax(x: &Tensor, a: &SoftmaxAttrs) -> Result<Tensor, InterpError> {
    along("softmax", x, a.dim, |row| {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f64;
        for r in row.iter_mut() {
            *r = (*r - max).exp();
            sum += f64::from(*r);
        }
        for r in row.iter_mut() {
            *r = (f64::from(*r) / sum) as f32;
        }
    })
}

/// `log_softmax(x)[.., i, ..] = x_i - max - log(sum_j exp(x_j - max))`
/// along `dim`, in `f64`: never the logarithm of a rounded-to-zero
/// softmax.
pub fn log_softmax(x: &Tensor, a: &SoftmaxAttrs) -> Result<Tensor, InterpError> {
    along("log_softmax", x, a.dim, |row| {
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let shift = max + sum.ln();
        for r in row.iter_mut() {
            *r = (f64::from(*r) - shift) as f32;
        }
    })
}

/// Applies `f` to every line of `x` along `dim`, gathered into a
/// contiguous row and scattered back.
fn along(
    op: &'static str,
    x: &Tensor,
    dim: usize,
    f: impl Fn(&mut [f32]),
) -> Result<Tensor, InterpError> {
    let shape = x.shape();
    if dim >= shape.len() {
        return Err(operands(
            op,
            format!(
                "dim {dim} is out of range for shape {}",
                format_shape(shape)
            ),
        ));
    }
    let len = shape[dim];
    let inner = numel(&shape[dim + 1..]);
    let mut out = x.clone();
    if len * inner == 0 {
        return Ok(out);
    }
    let mut row = vec![0.0f32; len];
    for block in out.data_mut().chunks_exact_mut(len * inner) {
        for j in 0..inner {
            for (i, r) in row.iter_mut().enumerate() {
                *r = block[i * inner + j];
            }
            f(&mut row);
            for (i, r) in row.iter().enumerate() {
                block[i * inner + j] = *r;
            }
        }
    }
    Ok(out)
}
