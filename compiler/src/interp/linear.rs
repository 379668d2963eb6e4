//! `linear`: `y = x W^T + b` over the last dim of `x`.

use nnc_runtime::Tensor;

use super::check::{presence, shape_is};
use super::error::{operands, InterpError};
use crate::ir::LinearAttrs;

/// `linear`: `x [..., in]`, `weight [out, in]`, optional `bias [out]`;
/// output `[..., out]` with `y[o] = sum_i x[i] * weight[o, i] + bias[o]`.
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    a: &LinearAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "linear";
    let Some((&in_features, batch)) = x.shape().split_last() else {
        return Err(operands(OP, "the input must have rank at least 1"));
    };
    let out_features = a.out_features;
    shape_is(OP, "weight", weight, &[out_features, in_features])?;
    presence(OP, "bias", a.bias, bias.is_some())?;
    if let Some(b) = bias {
        shape_is(OP, "bias", b, &[out_features])?;
    }
    let mut shape = batch.to_vec();
    shape.push(out_features);
    let mut out = Tensor::zeros(shape)?;
    if in_features == 0 || out_features == 0 {
        if let (Some(b), true) = (bias, out_features > 0) {
            // An empty dot product: every row is just the bias.
            for row in out.data_mut().chunks_exact_mut(out_features) {
                row.copy_from_slice(b.data());
            }
        }
        return Ok(out);
    }
    for (x_row, y_row) in x
        .data()
        .chunks_exact(in_features)
        .zip(out.data_mut().chunks_exact_mut(out_features))
    {
        for (o, (y, w_row)) in y_row
            .iter_mut()
            .zip(weight.data().chunks_exact(in_features))
            .enumerate()
        {
            let dot: f32 = x_row.iter().zip(w_row).map(|(&p, &q)| p * q).sum();
            *y = dot + bias.map_or(0.0, |b| b.data()[o]);
        }
    }
    Ok(out)
}
