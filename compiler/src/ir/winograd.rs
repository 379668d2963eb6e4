//! The transform matrices of Winograd's minimal filtering algorithm
//! F(m x m, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016), which `winograd_input`, `gemm` and `winograd_output`
//! compute a 3x3 stride-1 convolution with.
//!
//! A tile of `m x m` outputs needs an `a x a` input patch, `a = m + 2`. With
//! `d` the patch and `g` one 3x3 filter, the tile is
//! `Y = AT [(G g G^T) ⊙ (BT d BT^T)] AT^T`: the filter and input transforms
//! turn the convolution into `a*a` independent element-wise products, and
//! summing those over input channels is one matrix product per element
//! (`a*a` GEMMs of `[C_out, C_in] x [C_in, tiles]`). That is `a*a` multiplies
//! per `m*m` outputs and input channel instead of `9*m*m`: 2.25x fewer for
//! F(2x2, 3x3).
//!
//! The entries of `BT` and `AT` are small integers, so the transforms are
//! exact but for rounding; `G` holds halves, exact in binary.

/// The three matrices of F(m x m, 3x3), row-major.
#[derive(Clone, Copy, Debug)]
pub struct Transform {
    /// Outputs per tile side.
    pub m: usize,
    /// `[a, a]`: the input transform.
    pub bt: &'static [f32],
    /// `[a, 3]`: the filter transform.
    pub g: &'static [f32],
    /// `[m, a]`: the output transform.
    pub at: &'static [f32],
}

impl Transform {
    /// Input patch side, `m + 2`.
    pub fn a(&self) -> usize {
        self.m + 2
    }

    /// The transform for `m` outputs per tile side, if there is one.
    pub fn of(m: usize) -> Option<Transform> {
        (m == 2).then_some(F2X3)
    }

    /// `G g G^T` for one 3x3 filter `g` (row-major) into `out` (`a*a`
    /// values, row-major). Lowering transforms every filter of a model
    /// (a million for ResNet-18), so F(2x2, 3x3)'s is unrolled.
    pub fn filter_into(&self, g: &[f32], out: &mut [f32]) {
        if self.m == 2 {
            // G's rows are g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2;
            // applied to the columns of g, then to the rows of the result.
            let side = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
            let mut gg = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let column = side(g[j], g[3 + j], g[6 + j]);
                for i in 0..4 {
                    gg[i][j] = column[i];
                }
            }
            for i in 0..4 {
                out[i * 4..][..4].copy_from_slice(&side(gg[i][0], gg[i][1], gg[i][2]));
            }
            return;
        }
        let a = self.a();
        let mut gg = vec![0.0f64; a * 3];
        for i in 0..a {
            for j in 0..3 {
                gg[i * 3 + j] = (0..3)
                    .map(|k| f64::from(self.g[i * 3 + k]) * f64::from(g[k * 3 + j]))
                    .sum();
            }
        }
        for i in 0..a {
            for j in 0..a {
                out[i * a + j] = (0..3)
                    .map(|k| gg[i * 3 + k] * f64::from(self.g[j * 3 + k]))
                    .sum::<f64>() as f32;
            }
        }
    }
}

/// F(2x2, 3x3).
pub const F2X3: Transform = Transform {
    m: 2,
    #[rustfmt::skip]
    bt: &[
        1.0,  0.0, -1.0,  0.0,
        0.0,  1.0,  1.0,  0.0,
        0.0, -1.0,  1.0,  0.0,
        0.0,  1.0,  0.0, -1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0,  0.0, 0.0,
        0.5,  0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0,  0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0,  1.0,  0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// One output tile through the transforms equals the direct 3x3
    /// correlation of the patch, for an arbitrary patch and filter (which
    /// also checks the unrolled filter transform against the definition's
    /// arithmetic: a wrong entry changes the tile).
    #[test]
    fn one_tile_is_the_direct_convolution() {
        let t = F2X3;
        let a = t.a();
        let d: Vec<f32> = (0..a * a).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        let g: Vec<f32> = (0..9).map(|i| ((i * 5 % 7) as f32) * 0.25 - 0.5).collect();
        let mut u = vec![0.0f32; a * a];
        t.filter_into(&g, &mut u);
        // V = BT d BT^T, then Y = AT (U ⊙ V) AT^T.
        let mat = |l: &[f32], r: &[f32], rows: usize, inner: usize, cols: usize| {
            let mut out = vec![0.0f32; rows * cols];
            for i in 0..rows {
                for j in 0..cols {
                    out[i * cols + j] =
                        (0..inner).map(|k| l[i * inner + k] * r[k * cols + j]).sum();
                }
            }
            out
        };
        let transpose = |m: &[f32], rows: usize, cols: usize| {
            let mut out = vec![0.0f32; rows * cols];
            for i in 0..rows {
                for j in 0..cols {
                    out[j * rows + i] = m[i * cols + j];
                }
            }
            out
        };
        let v = mat(&mat(t.bt, &d, a, a, a), &transpose(t.bt, a, a), a, a, a);
        let uv: Vec<f32> = u.iter().zip(&v).map(|(x, y)| x * y).collect();
        let y = mat(
            &mat(t.at, &uv, t.m, a, a),
            &transpose(t.at, t.m, a),
            t.m,
            a,
            t.m,
        );
        for p in 0..t.m {
            for q in 0..t.m {
                let direct: f32 = (0..3)
                    .flat_map(|ky| (0..3).map(move |kx| (ky, kx)))
                    .map(|(ky, kx)| g[ky * 3 + kx] * d[(p + ky) * a + q + kx])
                    .sum();
                assert!(
                    (y[p * t.m + q] - direct).abs() < 1e-4,
                    "{p},{q}: {} vs {direct}",
                    y[p * t.m + q]
                );
            }
        }
    }
}
