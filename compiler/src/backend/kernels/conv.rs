//! Convolution kernels that are not a plain GEMM: `depthwise_conv2d`,
//! `separable_conv2d` and `col2im`.

use super::{Consts, Kernel, Operands};
use crate::backend::BackendError;
use crate::ir::{Col2ImAttrs, Conv2dAttrs, SeparableConv2dAttrs};

/// `depthwise_conv2d`.
pub fn depthwise(
    _a: &Conv2dAttrs,
    _ops: Operands<'_>,
    _consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    Err(BackendError::Codegen(
        "depthwise_conv2d is not implemented yet".into(),
    ))
}

/// `separable_conv2d`.
pub fn separable(
    _a: &SeparableConv2dAttrs,
    _ops: Operands<'_>,
    _consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    Err(BackendError::Codegen(
        "separable_conv2d is not implemented yet".into(),
    ))
}

/// `col2im`.
pub fn col2im(
    _a: &Col2ImAttrs,
    _ops: Operands<'_>,
    _consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    Err(BackendError::Codegen(
        "col2im is not implemented yet".into(),
    ))
}
