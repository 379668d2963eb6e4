//! `mean`, `sum`, `amax` and `amin` over any set of dims (`Op::Reduce`,
//! which `global_max_pool` also builds). Every input element is added
//! into the output element it belongs to, found with a second set of
//! strides that is zero along the reduced dims; sums are accumulated in
//! `f64`.

use nnc_runtime::{format_shape, Tensor};

use super::check::numel;
use super::error::{operands, InterpError};
use crate::ir::{ReduceAttrs, Reduction};

/// Reduces the dims `a.dims` of `x` with `a.function`. A NaN reaches the
/// maximum and the minimum, as in `torch.amax`.
pub fn reduce(x: &Tensor, a: &ReduceAttrs) -> Result<Tensor, InterpError> {
    let op = a.function.name();
    let shape = x.shape();
    let valid = a.dims.windows(2).all(|w| w[0] < w[1]) && a.dims.iter().all(|&d| d < shape.len());
    if !valid {
        return Err(operands(
            op,
            format!(
                "dims {:?} are not sorted, distinct dims of shape {}",
                a.dims,
                format_shape(shape)
            ),
        ));
    }
    // Row-major strides of the output with the reduced dims kept as 1,
    // then zeroed along those dims: every element of a reduced line maps
    // to the same output element.
    let mut strides = vec![0; shape.len()];
    let mut stride = 1;
    for d in (0..shape.len()).rev() {
        if !a.dims.contains(&d) {
            strides[d] = stride;
            stride *= shape[d];
        }
    }
    let out_shape = a.output_shape(shape);
    let mut acc = vec![f64::from(a.function.identity()); numel(&out_shape)];
    let mut index = vec![0; shape.len()];
    let mut at = 0;
    for &v in x.data() {
        let v = f64::from(v);
        let slot = &mut acc[at];
        match a.function {
            Reduction::Mean | Reduction::Sum => *slot += v,
            // A NaN already in the slot stays: `v > NaN` is false.
            Reduction::Max => {
                if v.is_nan() || v > *slot {
                    *slot = v;
                }
            }
            Reduction::Min => {
                if v.is_nan() || v < *slot {
                    *slot = v;
                }
            }
        }
        // The next multi-index, row-major, and the output slot with it.
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            at += strides[d];
            if index[d] < shape[d] {
                break;
            }
            at -= strides[d] * index[d];
            index[d] = 0;
        }
    }
    let count = a.count(shape) as f64;
    let values = acc
        .into_iter()
        .map(|v| match a.function {
            Reduction::Mean => (v / count) as f32,
            Reduction::Sum | Reduction::Max | Reduction::Min => v as f32,
        })
        .collect();
    Ok(Tensor::new(out_shape, values)?)
}
