//! Shape checks and size arithmetic shared by the kernels.
//!
//! Every kernel validates its operands with these helpers before it indexes
//! anything, so that inconsistent shapes become [`InterpError::Operands`]
//! instead of a panic.

use std::ops::Range;

use nnc_runtime::{format_shape, Tensor};

use super::error::{operands, InterpError};
use crate::ir::Padding;

/// The four dims of a rank-4 operand, or an error naming the operand.
pub(crate) fn dims4(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4], InterpError> {
    match *t.shape() {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(operands(
            op,
            format!(
                "{what} must have rank 4 but has shape {}",
                format_shape(t.shape())
            ),
        )),
    }
}

/// Checks that an operand has exactly the shape `expected`.
pub(crate) fn shape_is(
    op: &'static str,
    what: &str,
    t: &Tensor,
    expected: &[usize],
) -> Result<(), InterpError> {
    if t.shape() == expected {
        Ok(())
    } else {
        Err(operands(
            op,
            format!(
                "{what} has shape {} but must have shape {}",
                format_shape(t.shape()),
                format_shape(expected)
            ),
        ))
    }
}

/// Checks that an optional operand is present exactly when the attributes
/// say it is.
pub(crate) fn presence(
    op: &'static str,
    what: &str,
    expected: bool,
    found: bool,
) -> Result<(), InterpError> {
    match (expected, found) {
        (true, false) => Err(operands(
            op,
            format!("the attributes require a {what} but none was given"),
        )),
        (false, true) => Err(operands(
            op,
            format!("a {what} was given but the attributes say there is none"),
        )),
        _ => Ok(()),
    }
}

/// Checks that both entries of a `[h, w]` attribute are at least 1.
pub(crate) fn positive_pair(
    op: &'static str,
    what: &str,
    v: [usize; 2],
) -> Result<(), InterpError> {
    if v[0] == 0 || v[1] == 0 {
        Err(operands(
            op,
            format!("{what} must be at least 1 but is [{}, {}]", v[0], v[1]),
        ))
    } else {
        Ok(())
    }
}

/// One axis of a sliding window: kernel extent, stride, padding before
/// and after the input, and dilation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub kernel: usize,
    pub stride: usize,
    /// Padding before the input: the offset of output 0's window.
    pub pad: usize,
    /// Padding after the input.
    pub pad_end: usize,
    pub dilation: usize,
}

impl Window {
    /// The window along axis `i` (0 = height, 1 = width) of pair attributes.
    pub(crate) fn axis(
        i: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: Padding,
        dilation: [usize; 2],
    ) -> Window {
        Window {
            kernel: kernel[i],
            stride: stride[i],
            pad: pad.begin[i],
            pad_end: pad.end[i],
            dilation: dilation[i],
        }
    }

    /// Output length along this axis for an input of length `len`. This is
    /// written apart from `shape::window_output` on purpose: `run` compares
    /// every kernel's result with the type shape inference gave the node, so
    /// the two computations check each other. The PyTorch formula
    /// `floor((len + pad + pad_end - dilation*(kernel-1) - 1) / stride) +
    /// 1`, or with `ceil` instead of `floor` when `ceil_mode` (pooling), in
    /// which case a last window that would start inside the padding after
    /// the input is dropped (ONNX's rule too).
    pub(crate) fn out_len(
        self,
        op: &'static str,
        axis: &str,
        len: usize,
        ceil_mode: bool,
    ) -> Result<usize, InterpError> {
        let overflow = || operands(op, format!("the {axis} arithmetic overflows"));
        let span = self
            .kernel
            .checked_sub(1)
            .and_then(|k| k.checked_mul(self.dilation))
            .and_then(|k| k.checked_add(1))
            .ok_or_else(overflow)?;
        let padded = self
            .pad
            .checked_add(self.pad_end)
            .and_then(|p| p.checked_add(len))
            .ok_or_else(overflow)?;
        if self.stride == 0 || padded < span {
            return Err(operands(
                op,
                format!(
                    "the padded input {axis} {padded} is smaller than the dilated kernel extent {span}"
                ),
            ));
        }
        let room = padded - span;
        let mut out = if ceil_mode {
            room.div_ceil(self.stride) + 1
        } else {
            room / self.stride + 1
        };
        if ceil_mode && (out - 1) * self.stride >= len + self.pad {
            out -= 1;
        }
        Ok(out)
    }
}

/// The indices `i` in `0..count` for which `i*stride + offset - pad` lies in
/// `0..len`: the output positions a kernel tap at `offset` reads from real
/// (unpadded) input, or the input positions a transposed tap writes into the
/// real output.
pub(crate) fn valid_range(
    count: usize,
    len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> Range<usize> {
    if stride == 0 {
        return 0..0;
    }
    let start = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    let end = if offset >= len + pad {
        0
    } else {
        ((len + pad - offset - 1) / stride + 1).min(count)
    };
    start.min(end)..end
}

/// Product of dims (the caller's tensor exists, so this cannot overflow).
pub(crate) fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}
