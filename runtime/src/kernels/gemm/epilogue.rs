//! The fused epilogue: `c = act(acc + bias[row] + residual[row, col])`,
//! in the form the micro-kernels apply it to one tile of C.
//!
//! K is processed in blocks, so a tile of C is stored several times. The
//! bias and the residual are added on the *first* K block (before the
//! tile's old contents could be overwritten, which makes an in-place
//! residual, `residual == c` with `ldr == ldc`, legal) and the activation
//! on the *last* one.

use super::Activation;

impl Activation {
    /// Applies the activation to one value (the scalar reference the vector
    /// kernels agree with to within rounding).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            // Comparisons rather than `f32::max`, which drops a NaN: NaN
            // passes through, as in the interpreter.
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::Clip { min, max } => {
                if x < min {
                    min
                } else if x > max {
                    max
                } else {
                    x
                }
            }
            Activation::LeakyRelu { negative_slope } => {
                if x < 0.0 {
                    x * negative_slope
                } else {
                    x
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Elu { alpha, scale } => {
                if x > 0.0 {
                    scale * x
                } else {
                    scale * alpha * x.exp_m1()
                }
            }
            // `f32::max` and `min` drop a NaN operand; the interpreter
            // keeps it.
            Activation::Celu { .. } if x.is_nan() => x,
            Activation::Celu { alpha } => x.max(0.0) + (alpha * (x / alpha).exp_m1()).min(0.0),
            Activation::Softplus => softplus(x),
            Activation::Softsign => x / (1.0 + x.abs()),
            Activation::Hardsigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::Hardswish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Silu => x * sigmoid(x),
            Activation::Mish => x * softplus(x).tanh(),
            // `erfc(-u)` for `1 + erf(u)`, which cancels in the negative tail.
            Activation::Gelu => 0.5 * x * libm::erfcf(-x * std::f32::consts::FRAC_1_SQRT_2),
            Activation::GeluTanh => {
                let inner = (2.0 / std::f32::consts::PI).sqrt() * x * (1.0 + 0.044_715 * x * x);
                0.5 * x * (1.0 + inner.tanh())
            }
        }
    }
}

/// `1 / (1 + exp(-x))`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `ln(1 + exp(x))` without overflow.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// One tile's view of the epilogue, with pointers already offset to the
/// tile's first row (bias) and top-left element (residual).
#[derive(Clone, Copy)]
pub(crate) struct TileEpilogue {
    /// `bias[r]` for tile row `r`, or null.
    pub bias: *const f32,
    /// `residual[r * ldr + j]` for tile element `(r, j)`, or null.
    pub residual: *const f32,
    pub ldr: usize,
    pub activation: Activation,
}

/// One micro-kernel call: `rows x cols` of C from `kc` steps of K.
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    pub kc: usize,
    /// Packed A at this tile's first row and K block; row `r`, step `kk` is
    /// at `a[kk * MR + r]`.
    pub a: *const f32,
    /// B at this tile's first column and K block; step `kk`, column `j` is
    /// at `b[kk * b_stride + j]` (packed: `b_stride = NR`).
    pub b: *const f32,
    pub b_stride: usize,
    pub c: *mut f32,
    pub ldc: usize,
    pub rows: usize,
    pub cols: usize,
    /// First K block: start from bias + residual instead of C's contents.
    pub first: bool,
    /// Last K block: apply the activation.
    pub last: bool,
    pub epi: TileEpilogue,
}

impl Tile {
    /// The same tile restricted to columns `j0 ..`, `cols` wide.
    pub(crate) fn columns(&self, j0: usize, cols: usize) -> Tile {
        let mut t = *self;
        t.cols = cols;
        // Wrapping arithmetic: the sub-tile lies inside this tile, so the
        // offsets stay inside the same allocations when dereferenced.
        t.b = self.b.wrapping_add(j0);
        t.c = self.c.wrapping_add(j0);
        if !t.epi.residual.is_null() {
            t.epi.residual = self.epi.residual.wrapping_add(j0);
        }
        t
    }

    /// The linear part of the epilogue for one element whose product sum
    /// is `acc`: adds bias and residual (first block) or C's old value.
    ///
    /// # Safety
    /// `(r, j)` must be inside the tile, whose pointers must be valid.
    #[inline(always)]
    pub(crate) unsafe fn combine(&self, r: usize, j: usize, acc: f32) -> f32 {
        // SAFETY: the caller guarantees `(r, j)` is inside the tile.
        unsafe {
            let mut x = acc;
            if self.first {
                if !self.epi.bias.is_null() {
                    x += *self.epi.bias.add(r);
                }
                if !self.epi.residual.is_null() {
                    x += *self.epi.residual.add(r * self.epi.ldr + j);
                }
            } else {
                x += *self.c.add(r * self.ldc + j);
            }
            x
        }
    }
}

/// Scalar store of a finished tile held in `acc[r * stride + j]`: the
/// whole epilogue, element by element. Used by the portable kernel and the
/// narrow (vector-along-M) kernels, whose tiles are small.
///
/// # Safety
/// The tile's pointers must be valid for its `rows x cols` elements.
#[inline(always)]
pub(crate) unsafe fn store_scalar(t: &Tile, acc: &[f32], stride: usize) {
    for r in 0..t.rows {
        for j in 0..t.cols {
            // SAFETY: `(r, j)` is inside the tile.
            unsafe {
                let mut x = t.combine(r, j, acc[r * stride + j]);
                if t.last {
                    x = t.epi.activation.apply(x);
                }
                *t.c.add(r * t.ldc + j) = x;
            }
        }
    }
}
