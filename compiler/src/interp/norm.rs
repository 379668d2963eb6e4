//! `batch_norm`, `group_norm`, `layer_norm`, `instance_norm` (inference)
//! and `local_response_norm`.
//!
//! The three statistics-computing norms share one helper that normalises a
//! contiguous slice with its own mean and biased variance (divide by the
//! count), accumulated in `f64`. They differ only in which slices they cut
//! the tensor into and how the affine parameters are indexed:
//! `layer_norm` is `group_norm` with one group and `instance_norm` is
//! `group_norm` with one group per channel.

use nnc_runtime::{format_shape, Tensor};

use super::check::{numel, presence, shape_is};
use super::error::{operands, InterpError};
use crate::ir::{
    BatchNormAttrs, GroupNormAttrs, InstanceNormAttrs, LayerNormAttrs, LocalResponseNormAttrs,
};

/// `batch_norm` with running statistics: per channel `c` (dim 1),
/// `y = weight[c] * (x - mean[c]) / sqrt(var[c] + eps) + bias[c]`, for
/// `x [N, C, ...]` of rank at least 2.
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    a: &BatchNormAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "batch_norm";
    let c = channels(OP, x, 2)?;
    for (what, t) in [
        ("weight", weight),
        ("bias", bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ] {
        shape_is(OP, what, t, &[c])?;
    }
    let inner = numel(&x.shape()[2..]);
    let mut out = x.clone();
    if inner == 0 {
        return Ok(out);
    }
    for (i, block) in out.data_mut().chunks_exact_mut(inner).enumerate() {
        let ch = i % c;
        let scale = f64::from(weight.data()[ch])
            / (f64::from(running_var.data()[ch]) + f64::from(a.eps)).sqrt();
        let mean = f64::from(running_mean.data()[ch]);
        let shift = f64::from(bias.data()[ch]);
        for v in block {
            *v = ((f64::from(*v) - mean) * scale + shift) as f32;
        }
    }
    Ok(out)
}

/// `group_norm`: for `x [N, C, ...]`, normalises each sample's channels
/// `g*C/G .. (g+1)*C/G` (with all their spatial positions) together, then
/// applies the per-channel affine `weight [C]`, `bias [C]` when given.
pub fn group_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: &GroupNormAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "group_norm";
    let c = channels(OP, x, 2)?;
    if a.groups == 0 || !c.is_multiple_of(a.groups) {
        return Err(operands(
            OP,
            format!(
                "groups={} must be positive and divide the {c} channels",
                a.groups
            ),
        ));
    }
    let affine = channel_affine(OP, weight, bias, a.affine, c)?;
    let inner = numel(&x.shape()[2..]);
    let mut out = x.clone();
    let group_len = c / a.groups * inner;
    if group_len > 0 {
        for group in out.data_mut().chunks_exact_mut(group_len) {
            normalize(group, a.eps);
        }
    }
    if let Some((w, b)) = affine {
        apply_channel_affine(out.data_mut(), w, b, c, inner);
    }
    Ok(out)
}

/// `layer_norm` over the last `normalized_dims` dims of `x`, with an
/// elementwise affine `weight`, `bias` of that trailing shape when given.
pub fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: &LayerNormAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "layer_norm";
    let rank = x.shape().len();
    if a.normalized_dims == 0 || a.normalized_dims > rank {
        return Err(operands(
            OP,
            format!(
                "normalized_dims={} must be between 1 and the input rank {rank}",
                a.normalized_dims
            ),
        ));
    }
    let normalized_shape = &x.shape()[rank - a.normalized_dims..];
    presence(OP, "weight", a.affine, weight.is_some())?;
    presence(OP, "bias", a.affine, bias.is_some())?;
    if let Some(w) = weight {
        shape_is(OP, "weight", w, normalized_shape)?;
    }
    if let Some(b) = bias {
        shape_is(OP, "bias", b, normalized_shape)?;
    }
    let inner = numel(normalized_shape);
    let mut out = x.clone();
    if inner == 0 {
        return Ok(out);
    }
    for row in out.data_mut().chunks_exact_mut(inner) {
        normalize(row, a.eps);
        if let (Some(w), Some(b)) = (weight, bias) {
            for ((v, &g), &s) in row.iter_mut().zip(w.data()).zip(b.data()) {
                *v = *v * g + s;
            }
        }
    }
    Ok(out)
}

/// `instance_norm`: for `x [N, C, spatial...]` (rank at least 3), normalises
/// each `(n, c)` plane on its own, then applies the per-channel affine
/// `weight [C]`, `bias [C]` when given.
pub fn instance_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: &InstanceNormAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "instance_norm";
    let c = channels(OP, x, 3)?;
    let affine = channel_affine(OP, weight, bias, a.affine, c)?;
    let inner = numel(&x.shape()[2..]);
    let mut out = x.clone();
    if inner > 0 {
        for plane in out.data_mut().chunks_exact_mut(inner) {
            normalize(plane, a.eps);
        }
    }
    if let Some((w, b)) = affine {
        apply_channel_affine(out.data_mut(), w, b, c, inner);
    }
    Ok(out)
}

/// `local_response_norm` across the channels of `x [N, C, ...]`: each
/// element is divided by `(k + alpha/size * s)^beta`, where `s` sums the
/// squares of the elements at the same position in the channels
/// `c - before ..= c - before + size - 1` that exist (the zero padding adds
/// nothing, but still counts in `size`, as in PyTorch and ONNX).
pub fn local_response_norm(x: &Tensor, a: &LocalResponseNormAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "local_response_norm";
    let c = channels(OP, x, 3)?;
    if a.size == 0 || a.before >= a.size {
        return Err(operands(
            OP,
            format!(
                "a window of {} channels cannot start {} before the channel",
                a.size, a.before
            ),
        ));
    }
    let inner = numel(&x.shape()[2..]);
    let mut out = x.clone();
    if inner == 0 {
        return Ok(out);
    }
    for (sample, block) in out.data_mut().chunks_exact_mut(c * inner).enumerate() {
        let input = &x.data()[sample * c * inner..][..c * inner];
        for ch in 0..c {
            let first = ch.saturating_sub(a.before);
            let last = ch.saturating_add(a.size - 1 - a.before).min(c - 1);
            for j in 0..inner {
                let sum: f64 = (first..=last)
                    .map(|i| f64::from(input[i * inner + j]).powi(2))
                    .sum();
                block[ch * inner + j] = a.normalise(input[ch * inner + j], sum);
            }
        }
    }
    Ok(out)
}

/// The channel count (dim 1) of an input of rank at least `min_rank`.
fn channels(op: &'static str, x: &Tensor, min_rank: usize) -> Result<usize, InterpError> {
    if x.shape().len() < min_rank {
        return Err(operands(
            op,
            format!(
                "the input must have rank at least {min_rank} but has shape {}",
                format_shape(x.shape())
            ),
        ));
    }
    Ok(x.shape()[1])
}

/// Validates an optional per-channel affine pair against the attributes.
fn channel_affine<'t>(
    op: &'static str,
    weight: Option<&'t Tensor>,
    bias: Option<&'t Tensor>,
    affine: bool,
    c: usize,
) -> Result<Option<(&'t Tensor, &'t Tensor)>, InterpError> {
    presence(op, "weight", affine, weight.is_some())?;
    presence(op, "bias", affine, bias.is_some())?;
    match (weight, bias) {
        (Some(w), Some(b)) => {
            shape_is(op, "weight", w, &[c])?;
            shape_is(op, "bias", b, &[c])?;
            Ok(Some((w, b)))
        }
        _ => Ok(None),
    }
}

/// `y = weight[c] * y + bias[c]` over `[N, C, inner]` data.
fn apply_channel_affine(data: &mut [f32], weight: &Tensor, bias: &Tensor, c: usize, inner: usize) {
    if inner == 0 {
        return;
    }
    for (i, block) in data.chunks_exact_mut(inner).enumerate() {
        let (g, s) = (weight.data()[i % c], bias.data()[i % c]);
        for v in block {
            *v = *v * g + s;
        }
    }
}

/// Replaces `values` by `(values - mean) / sqrt(var + eps)`, with the mean
/// and the biased variance of `values` computed in `f64` (two passes).
fn normalize(values: &mut [f32], eps: f32) {
    let count = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / count;
    let inv_std = 1.0 / (var + f64::from(eps)).sqrt();
    for v in values {
        *v = ((f64::from(*v) - mean) * inv_std) as f32;
    }
}
