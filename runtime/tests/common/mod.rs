//! Helpers shared by the native-kernel tests: deterministic inputs and the
//! micro-kernels this CPU can run. Each test file uses its own subset.
#![allow(dead_code)]

use nnc_runtime::kernels::gemm::{Activation, MicroKernel};

/// Deterministic pseudo-random floats in [-1, 1) (xorshift64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next()).collect()
    }

    /// Values in [-scale, scale).
    pub fn scaled(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| scale * self.next()).collect()
    }
}

/// `len` values in [-1, 1) that depend only on `seed`.
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    Rng(seed | 1).vec(len)
}

/// Every micro-kernel this CPU has.
pub fn kernels() -> Vec<MicroKernel> {
    MicroKernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect()
}

/// Every native activation, some with two sets of parameters.
pub const ACTIVATIONS: [Activation; 17] = [
    Activation::None,
    Activation::Relu,
    Activation::Clip {
        min: -0.25,
        max: 0.5,
    },
    Activation::LeakyRelu {
        negative_slope: 0.1,
    },
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Elu {
        alpha: 0.7,
        scale: 1.0,
    },
    Activation::Elu {
        alpha: 1.673_263_2,
        scale: 1.050_701,
    },
    Activation::Celu { alpha: 0.5 },
    Activation::Softplus,
    Activation::Softsign,
    Activation::Hardsigmoid {
        alpha: 0.2,
        beta: 0.5,
    },
    Activation::Hardswish,
    Activation::Silu,
    Activation::Mish,
    Activation::Gelu,
    Activation::GeluTanh,
];

/// The activation's definition in f64, the oracle for the native kernels'.
pub fn act_f64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Clip { min, max } => x.max(min as f64).min(max as f64),
        Activation::LeakyRelu { negative_slope } => {
            if x < 0.0 {
                x * negative_slope as f64
            } else {
                x
            }
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Elu { alpha, scale } => {
            f64::from(scale)
                * if x > 0.0 {
                    x
                } else {
                    f64::from(alpha) * x.exp_m1()
                }
        }
        Activation::Celu { alpha } => {
            let a = f64::from(alpha);
            x.max(0.0) + (a * (x / a).exp_m1()).min(0.0)
        }
        Activation::Softplus => (1.0 + x.exp()).ln(),
        Activation::Softsign => x / (1.0 + x.abs()),
        Activation::Hardsigmoid { alpha, beta } => {
            (f64::from(alpha) * x + f64::from(beta)).clamp(0.0, 1.0)
        }
        Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::Silu => x * sigmoid(x),
        Activation::Mish => x * (1.0 + x.exp()).ln().tanh(),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())),
        Activation::GeluTanh => {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
            0.5 * x * (1.0 + inner.tanh())
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
