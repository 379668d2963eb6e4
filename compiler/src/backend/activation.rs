//! The IR's activations in the form the native kernels take
//! ([`nnc_runtime::kernels::gemm::Activation`]), converted once when a
//! kernel's descriptor is built.

use super::BackendError;
use crate::ir::{Activation, SELU_ALPHA, SELU_SCALE};
use nnc_runtime::kernels::gemm;

/// The native kernels' form of an activation, if they have it. `fuse`
/// asks this before it makes an activation an epilogue, so a producer never
/// carries one that its micro-kernel would have to drop.
pub fn lookup_native(act: Activation) -> Option<gemm::Activation> {
    Some(match act {
        Activation::Relu => gemm::Activation::Relu,
        Activation::Relu6 => gemm::Activation::Clip { min: 0.0, max: 6.0 },
        Activation::Clip { min, max } => gemm::Activation::Clip { min, max },
        Activation::LeakyRelu { negative_slope } => gemm::Activation::LeakyRelu { negative_slope },
        Activation::Sigmoid => gemm::Activation::Sigmoid,
        Activation::Tanh => gemm::Activation::Tanh,
        Activation::Elu { alpha } => gemm::Activation::Elu { alpha, scale: 1.0 },
        Activation::Selu => gemm::Activation::Elu {
            alpha: SELU_ALPHA,
            scale: SELU_SCALE,
        },
        Activation::Celu { alpha } => gemm::Activation::Celu { alpha },
        Activation::Softplus => gemm::Activation::Softplus,
        Activation::Softsign => gemm::Activation::Softsign,
        Activation::Hardsigmoid { alpha, beta } => gemm::Activation::Hardsigmoid { alpha, beta },
        Activation::Hardswish => gemm::Activation::Hardswish,
        Activation::Silu => gemm::Activation::Silu,
        Activation::Mish => gemm::Activation::Mish,
        Activation::Gelu { tanh: false } => gemm::Activation::Gelu,
        Activation::Gelu { tanh: true } => gemm::Activation::GeluTanh,
    })
}

/// The native form of an epilogue's activation (`None`: no activation),
/// or an error naming one the native kernels lack.
pub fn native_activation(act: Option<Activation>) -> Result<gemm::Activation, BackendError> {
    match act {
        None => Ok(gemm::Activation::None),
        Some(act) => lookup_native(act).ok_or(BackendError::NoNativeActivation(act.name())),
    }
}
