//! Elementwise ops: activations, `dropout`, `identity`, and the binary
//! operations with NumPy broadcasting.
//!
//! Activations let NaN through, as PyTorch does.

use nnc_runtime::{format_shape, Tensor};

use super::error::{operands, InterpError};
use crate::ir::{
    Activation, BinaryOp, DropoutAttrs, DropoutMode, UnaryFunction, SELU_ALPHA, SELU_SCALE,
};

/// An activation, element by element (see [`activation_scalar`]).
pub fn activation(x: &Tensor, act: Activation) -> Tensor {
    map(x, |v| activation_scalar(act, v))
}

/// One activation of one value, by its textbook definition. NaN passes
/// through every activation, as in PyTorch.
pub fn activation_scalar(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Relu => {
            if v < 0.0 {
                0.0
            } else {
                v
            }
        }
        Activation::Relu6 => clamp(v, 0.0, 6.0),
        Activation::LeakyRelu { negative_slope } => {
            if v >= 0.0 {
                v
            } else {
                negative_slope * v
            }
        }
        Activation::Sigmoid => sigmoid_scalar(v),
        Activation::Tanh => v.tanh(),
        // When `min > max` every element becomes `max`, as in PyTorch's
        // `clamp`.
        Activation::Clip { min, max } => clamp(v, min, max),
        Activation::Elu { alpha } => elu(v, alpha),
        Activation::Selu => SELU_SCALE * elu(v, SELU_ALPHA),
        // `f64::max` and `min` drop a NaN operand.
        Activation::Celu { .. } if v.is_nan() => v,
        Activation::Celu { alpha } => {
            let x = f64::from(v);
            let a = f64::from(alpha);
            (x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0)) as f32
        }
        Activation::Softplus => softplus(f64::from(v)) as f32,
        Activation::Softsign => v / (1.0 + v.abs()),
        Activation::Hardsigmoid { alpha, beta } => clamp(alpha * v + beta, 0.0, 1.0),
        Activation::Hardswish => v * clamp(v + 3.0, 0.0, 6.0) / 6.0,
        Activation::Silu => v * sigmoid_scalar(v),
        Activation::Mish => {
            let x = f64::from(v);
            (x * softplus(x).tanh()) as f32
        }
        Activation::Gelu { tanh: false } => {
            // `1 + erf(u) = erfc(-u)`: the sum cancels in the negative
            // tail (below `u = -5.9` it is 0 even in f64), `erfc` does not.
            let x = f64::from(v);
            (0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)) as f32
        }
        Activation::Gelu { tanh: true } => {
            let x = f64::from(v);
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            (0.5 * x * (1.0 + inner.tanh())) as f32
        }
    }
}

/// `prelu`: `x` where `x >= 0`, else `weight[c] * x` for the channel `c`
/// (dim 1) of each element; one weight applies to every element.
pub fn prelu(x: &Tensor, weight: &Tensor) -> Result<Tensor, InterpError> {
    let w = weight.data();
    let channels = x.shape().get(1).copied().unwrap_or(1);
    if w.len() != 1 && w.len() != channels {
        return Err(operands(
            "prelu",
            format!(
                "{} slopes for {} with {channels} channels",
                w.len(),
                format_shape(x.shape())
            ),
        ));
    }
    // Elements per channel: the product of the dims after the first two.
    let plane: usize = x.shape().iter().skip(2).product();
    let mut out = x.clone();
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let c = if w.len() == 1 {
            0
        } else {
            i / plane % channels
        };
        *v = prelu_scalar(*v, w[c]);
    }
    Ok(out)
}

/// `x` where `x >= 0`, else `x * slope`.
pub fn prelu_scalar(x: f32, slope: f32) -> f32 {
    if x >= 0.0 {
        x
    } else {
        x * slope
    }
}

/// Unary math, element by element (see [`unary_scalar`]).
pub fn unary(x: &Tensor, f: UnaryFunction) -> Tensor {
    map(x, |v| unary_scalar(f, v))
}

/// One unary function of one value, by the library definitions.
pub fn unary_scalar(f: UnaryFunction, v: f32) -> f32 {
    match f {
        UnaryFunction::Exp => v.exp(),
        UnaryFunction::Log => v.ln(),
        UnaryFunction::Sqrt => v.sqrt(),
        UnaryFunction::Reciprocal => 1.0 / v,
        UnaryFunction::Neg => -v,
        UnaryFunction::Abs => v.abs(),
        UnaryFunction::Erf => libm::erf(f64::from(v)) as f32,
        UnaryFunction::Pow { exponent } => v.powf(exponent),
    }
}

/// `x` if `x > 0`, else `alpha * (exp(x) - 1)`, in double precision.
fn elu(v: f32, alpha: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        (f64::from(alpha) * f64::from(v).exp_m1()) as f32
    }
}

/// `ln(1 + exp(x))` without overflow: `max(x, 0) + ln(1 + exp(-|x|))`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `dropout` at inference: the identity for inverted dropout, a scale by the
/// keep probability `1 - p` for classic dropout.
pub fn dropout(x: &Tensor, a: &DropoutAttrs) -> Result<Tensor, InterpError> {
    if !(0.0..=1.0).contains(&a.p) {
        return Err(operands(
            "dropout",
            format!("the drop probability p={} must be between 0 and 1", a.p),
        ));
    }
    Ok(match a.mode {
        DropoutMode::Inverted => x.clone(),
        DropoutMode::Classic => {
            let keep = 1.0 - a.p;
            map(x, |v| v * keep)
        }
    })
}

/// `identity`: a copy of `x`.
pub fn identity(x: &Tensor) -> Tensor {
    x.clone()
}

/// A binary operation with NumPy broadcasting (IEEE division, so dividing
/// by zero gives an infinity or NaN, as in PyTorch).
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, InterpError> {
    broadcast_binary(op.name(), a, b, |p, q| binary_scalar(op, p, q))
}

/// One binary operation on one pair of values.
pub fn binary_scalar(op: BinaryOp, p: f32, q: f32) -> f32 {
    match op {
        BinaryOp::Add => p + q,
        BinaryOp::Sub => p - q,
        BinaryOp::Mul => p * q,
        BinaryOp::Div => p / q,
        BinaryOp::Maximum => {
            if p.is_nan() || q.is_nan() {
                f32::NAN
            } else {
                p.max(q)
            }
        }
        BinaryOp::Minimum => {
            if p.is_nan() || q.is_nan() {
                f32::NAN
            } else {
                p.min(q)
            }
        }
        BinaryOp::Pow => p.powf(q),
    }
}

/// `add`: elementwise sum with NumPy broadcasting.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor, InterpError> {
    binary(BinaryOp::Add, a, b)
}

/// `x` broadcast to `shape` (which must be a broadcast of its shape).
pub(crate) fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor, InterpError> {
    if x.shape() == shape {
        return Ok(x.clone());
    }
    let target = Tensor::zeros(shape.to_vec())?;
    let out = broadcast_binary("broadcast", &target, x, |_, q| q)?;
    if out.shape() != shape {
        return Err(operands(
            "broadcast",
            format!(
                "{} does not broadcast to {}",
                format_shape(x.shape()),
                format_shape(shape)
            ),
        ));
    }
    Ok(out)
}

/// The NumPy broadcast of two shapes: aligned at the right, each pair of
/// dims equal or one of them 1. Kept apart from `shape::broadcast` on
/// purpose, so that the interpreter's output-type check tests shape
/// inference against an independent computation.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        let lead = rank - s.len();
        if i < lead {
            1
        } else {
            s[i - lead]
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (p, q) if p == q => Some(p),
            (1, q) => Some(q),
            (p, 1) => Some(p),
            _ => None,
        })
        .collect()
}

/// The logistic function for one value.
pub(crate) fn sigmoid_scalar(v: f32) -> f32 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// `min(max(v, lo), hi)` that lets NaN through.
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// Applies `f` to every element.
fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    let mut out = x.clone();
    for v in out.data_mut() {
        *v = f(*v);
    }
    out
}

/// Applies `f` to broadcast pairs of elements of `a` and `b`.
fn broadcast_binary(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32,
) -> Result<Tensor, InterpError> {
    let shape = broadcast_shape(a.shape(), b.shape()).ok_or_else(|| {
        operands(
            op,
            format!(
                "shapes {} and {} cannot be broadcast together",
                format_shape(a.shape()),
                format_shape(b.shape())
            ),
        )
    })?;
    if a.shape() == b.shape() {
        let data = a
            .data()
            .iter()
            .zip(b.data())
            .map(|(&p, &q)| f(p, q))
            .collect();
        return Ok(Tensor::new(shape, data)?);
    }
    let a_strides = broadcast_strides(a.shape(), &shape);
    let b_strides = broadcast_strides(b.shape(), &shape);
    let mut out = Tensor::zeros(shape.clone())?;
    // Walk the output in row-major order with an odometer over its index,
    // moving the two input offsets by their (possibly zero) strides.
    let mut index = vec![0usize; shape.len()];
    let (mut ia, mut ib) = (0usize, 0usize);
    for o in out.data_mut() {
        *o = f(a.data()[ia], b.data()[ib]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            ia += a_strides[d];
            ib += b_strides[d];
            if index[d] < shape[d] {
                break;
            }
            ia -= a_strides[d] * shape[d];
            ib -= b_strides[d] * shape[d];
            index[d] = 0;
        }
    }
    Ok(out)
}

/// Row-major strides of `shape` seen as `out_shape`, with stride 0 on the
/// broadcast (size-1 or missing) dims.
fn broadcast_strides(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let lead = out_shape.len() - shape.len();
    let mut strides = vec![0usize; out_shape.len()];
    let mut step = 1;
    for i in (0..shape.len()).rev() {
        if shape[i] != 1 {
            strides[lead + i] = step;
        }
        step *= shape[i];
    }
    strides
}
