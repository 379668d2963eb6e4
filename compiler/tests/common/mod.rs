//! Helpers shared by the native-kernel tests: deterministic inputs and the
//! micro-kernels this CPU can run. Each test file uses its own subset.
#![allow(dead_code)]

use nnc_compiler::backend::gemm::MicroKernel;

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
