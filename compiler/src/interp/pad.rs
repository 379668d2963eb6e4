//! `pad`: widens every dim by a number of elements before and after it,
//! filled with a constant, the mirrored input (`reflect`) or the repeated
//! edge (`edge`); a negative pad crops instead.

use nnc_runtime::{format_shape, Tensor};

use super::error::{operands, InterpError};
use crate::ir::{PadAttrs, PadMode};

/// `pad`: the output element at index `o` reads the input at `o - before`
/// per dim, mapped back into range by the mode when it falls outside.
pub fn pad(x: &Tensor, a: &PadAttrs) -> Result<Tensor, InterpError> {
    let rank = x.shape().len();
    if a.pads.len() != 2 * rank {
        return Err(operands(
            "pad",
            format!(
                "{} pads given for shape {}",
                a.pads.len(),
                format_shape(x.shape())
            ),
        ));
    }
    let mut shape = Vec::with_capacity(rank);
    for (d, &size) in x.shape().iter().enumerate() {
        let (before, after) = (a.pads[d], a.pads[rank + d]);
        let grown = usize::try_from(size as i128 + i128::from(before) + i128::from(after))
            .ok()
            .filter(|&g| g >= 1);
        let reach = before.max(after);
        let fits = match a.mode {
            PadMode::Constant => true,
            PadMode::Reflect => reach < size as i64,
            PadMode::Edge => size > 0,
        };
        match grown {
            Some(g) if fits => shape.push(g),
            _ => {
                return Err(operands(
                    "pad",
                    format!(
                    "dim {d} of size {size} cannot be padded by {before} and {after} in this mode"
                ),
                ))
            }
        }
    }
    let mut out = Tensor::zeros(shape.clone())?;
    let mut index = vec![0usize; rank];
    for o in out.data_mut() {
        let mut offset = Some(0usize);
        #[allow(clippy::needless_range_loop)] // `d` indexes the index, the pads and both shapes
        for d in 0..rank {
            let size = x.shape()[d] as i64;
            let i = index[d] as i64 - a.pads[d];
            let source = if (0..size).contains(&i) {
                Some(i)
            } else {
                match a.mode {
                    PadMode::Constant => None,
                    PadMode::Edge => Some(i.clamp(0, size - 1)),
                    PadMode::Reflect if i < 0 => Some(-i),
                    PadMode::Reflect => Some(2 * (size - 1) - i),
                }
            };
            offset = match (offset, source) {
                (Some(off), Some(s)) => Some(off * x.shape()[d] + s as usize),
                _ => None,
            };
        }
        *o = offset.map_or(a.value, |off| x.data()[off]);
        for d in (0..rank).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}
