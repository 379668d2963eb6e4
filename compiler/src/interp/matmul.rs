//! `matmul`: NumPy's matrix product of two operands of rank at least 2,
//! `[..., m, k] x [..., k, n] -> [..., m, n]`, the leading dims broadcast.

use nnc_runtime::{format_shape, Tensor};

use super::elementwise::broadcast_shape;
use super::error::{operands, InterpError};

/// `matmul`: one plain `m x k x n` product per broadcast batch index.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, InterpError> {
    let (ra, rb) = (a.shape().len(), b.shape().len());
    if ra < 2 || rb < 2 {
        return Err(operands(
            "matmul",
            format!(
                "operands must have rank at least 2, found {} and {}",
                format_shape(a.shape()),
                format_shape(b.shape())
            ),
        ));
    }
    let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
    let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
    let batch = broadcast_shape(&a.shape()[..ra - 2], &b.shape()[..rb - 2]);
    let Some(batch) = batch.filter(|_| k == k2) else {
        return Err(operands(
            "matmul",
            format!(
                "shapes {} and {} do not multiply",
                format_shape(a.shape()),
                format_shape(b.shape())
            ),
        ));
    };
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let mut out = Tensor::zeros(shape)?;
    let count: usize = batch.iter().product();
    for i in 0..count {
        let a_off = batch_offset(i, &batch, &a.shape()[..ra - 2]) * m * k;
        let b_off = batch_offset(i, &batch, &b.shape()[..rb - 2]) * k * n;
        let lhs = &a.data()[a_off..][..m * k];
        let rhs = &b.data()[b_off..][..k * n];
        let dst = &mut out.data_mut()[i * m * n..][..m * n];
        for r in 0..m {
            for c in 0..n {
                dst[r * n + c] = (0..k).map(|j| lhs[r * k + j] * rhs[j * n + c]).sum();
            }
        }
    }
    Ok(out)
}

/// The matrix index within an operand whose leading dims are `dims` (aligned
/// right, size-1 dims broadcast) of the `i`-th index of the broadcast `batch`.
fn batch_offset(mut i: usize, batch: &[usize], dims: &[usize]) -> usize {
    let lead = batch.len() - dims.len();
    let (mut offset, mut stride) = (0, 1);
    for d in (0..batch.len()).rev() {
        let index = i % batch[d];
        i /= batch[d];
        if d >= lead {
            let size = dims[d - lead];
            if size != 1 {
                offset += index * stride;
            }
            stride *= size;
        }
    }
    offset
}
