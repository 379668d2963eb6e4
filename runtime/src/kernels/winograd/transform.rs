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
        match m {
            2 => Some(F2X3),
            4 => Some(F4X3),
            _ => None,
        }
    }

    /// The transformed weights of a 3x3 conv: `w [out, C, 3, 3]` becomes
    /// `[a*a*out, C]`, row `e*out + o` holding element `e` of `G g G^T` for
    /// each filter `g = w[o, c]` (see [`FilterTransform`]).
    pub fn filters(&self, w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
        let a = self.a();
        let transform = self.filter_transform(c_in);
        let mut u = vec![0.0f32; a * a * c_out * c_in];
        for (o, w) in w.chunks_exact((9 * c_in).max(1)).take(c_out).enumerate() {
            transform.panel(w, 1, 1, &mut u, |e| (e * c_out + o) * c_in);
        }
        u
    }

    /// The filter transform of convs with `c_in` input channels, a few
    /// output channels at a time.
    pub fn filter_transform(&self, c_in: usize) -> FilterTransform {
        FilterTransform {
            g: self.g,
            a: self.a(),
            c_in,
            scratch: std::cell::RefCell::new((Vec::new(), Vec::new())),
        }
    }
}

/// `G g G^T` for the filters of a few output channels (a GEMM panel's
/// rows), computed as two small products, `(G g)` then `(G g) G^T`, each
/// a few multiply-adds of whole `[C][rows]` planes: vectorisable, and for
/// F(4x4) 126 plane operations per output channel instead of the 196 of
/// one combined product (ResNet-18 has a million filters to transform).
/// The order of every operation is fixed, so a panel of any width gives
/// the same bits.
pub struct FilterTransform {
    /// `[a, 3]`.
    g: &'static [f32],
    a: usize,
    c_in: usize,
    /// The taps `[9][C][rows]` of one panel, and one row of `G g`,
    /// `[3][C][rows]`; reused from panel to panel.
    scratch: std::cell::RefCell<(Vec<f32>, Vec<f32>)>,
}

/// `FilterTransform::panel_body` compiled with `$features` enabled.
macro_rules! panel_with_features {
    ($name:ident, $features:literal) => {
        /// # Safety
        /// The CPU must have `$features` (the caller checks it at run time).
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            &self,
            w: &[f32],
            rows: usize,
            mr: usize,
            out: &mut [f32],
            offset: impl Fn(usize) -> usize,
        ) {
            self.panel_body(w, rows, mr, out, offset)
        }
    };
}

impl FilterTransform {
    /// Transforms the filters `w [rows, C, 3, 3]` of a panel of `mr >=
    /// rows` output channels: element `e`'s `[C][mr]` block goes to
    /// `out[offset(e)..]`, zero in the `mr - rows` rows past the filters.
    ///
    /// # Panics
    /// If `w` is shorter than `rows` filters or `rows > mr`.
    pub fn panel(
        &self,
        w: &[f32],
        rows: usize,
        mr: usize,
        out: &mut [f32],
        offset: impl Fn(usize) -> usize,
    ) {
        // The planes are long, plain multiply-adds: worth the widest
        // vectors the CPU has. Every variant does the same IEEE operations
        // in the same order (no fused multiply-adds), so the bits agree.
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F.
                #[allow(unsafe_code)]
                return unsafe { self.panel_avx512(w, rows, mr, out, offset) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                #[allow(unsafe_code)]
                return unsafe { self.panel_avx2(w, rows, mr, out, offset) };
            }
        }
        self.panel_body(w, rows, mr, out, offset)
    }

    panel_with_features!(panel_avx512, "avx512f");
    panel_with_features!(panel_avx2, "avx2");

    #[inline(always)]
    fn panel_body(
        &self,
        w: &[f32],
        rows: usize,
        mr: usize,
        out: &mut [f32],
        offset: impl Fn(usize) -> usize,
    ) {
        let (a, c_in) = (self.a, self.c_in);
        let n = c_in * mr;
        let mut scratch = self.scratch.borrow_mut();
        let (taps, partial) = &mut *scratch;
        // Every tap of the `rows` filters is written below, so the planes
        // need zeroing only for a short panel's missing rows (zeroing the
        // whole 258 KB for each of ResNet-18's 512-channel panels cost as
        // much as filling it).
        if taps.len() != 9 * n || rows < mr {
            taps.clear();
            taps.resize(9 * n, 0.0);
        }
        assert!(rows <= mr && w.len() >= rows * c_in * 9);
        // taps[tap][c][r] = w[r][c][tap], a channel at a time: the rows'
        // filters are read as `rows` sequential streams and each tap's
        // `rows` values land in one line.
        let (src, dst) = (w.as_ptr(), taps.as_mut_ptr());
        for c in 0..c_in {
            for r in 0..rows {
                // SAFETY: `r < rows` and `c < c_in`, so the filter lies in
                // `w` (asserted above) and `c * mr + r + 8 * n < 9 * n`.
                #[allow(unsafe_code)]
                unsafe {
                    let (g, d) = (src.add((r * c_in + c) * 9), dst.add(c * mr + r));
                    for tap in 0..9 {
                        *d.add(tap * n) = *g.add(tap);
                    }
                }
            }
        }
        partial.resize(3 * n, 0.0);
        for i in 0..a {
            // partial[l] = sum_k G[i][k] g[k][l].
            for (l, p) in partial.chunks_exact_mut(n.max(1)).enumerate() {
                combine(
                    p,
                    (0..3).map(|k| (self.g[i * 3 + k], &taps[(k * 3 + l) * n..][..n])),
                );
            }
            // u[i][j] = sum_l G[j][l] partial[l].
            for j in 0..a {
                combine(
                    &mut out[offset(i * a + j)..][..n],
                    (0..3).map(|l| (self.g[j * 3 + l], &partial[l * n..][..n])),
                );
            }
        }
    }
}

/// `dst = sum of coefficient * plane` over the terms, zero terms skipped,
/// in order.
#[inline(always)]
fn combine<'a>(dst: &mut [f32], terms: impl Iterator<Item = (f32, &'a [f32])>) {
    let mut first = true;
    for (coefficient, plane) in terms {
        if coefficient == 0.0 {
            continue;
        }
        if first {
            for (d, &x) in dst.iter_mut().zip(plane) {
                *d = coefficient * x;
            }
            first = false;
        } else {
            for (d, &x) in dst.iter_mut().zip(plane) {
                *d += coefficient * x;
            }
        }
    }
    if first {
        dst.fill(0.0);
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

/// F(4x4, 3x3): 36 multiplies per 16 outputs (4x fewer than direct).
/// Built on the interpolation points 0, -1, 1, 1/2, -2 and infinity
/// rather than Lavin's 0, ±1, ±2: mixing 1/2 and -2 keeps the transformed
/// values closer in scale, and in an f32 simulation of 3000 small random
/// convolutions the worst error relative to `1 + |y|` fell from 1.26e-5
/// (Lavin's points, over lower-conv's 1e-5 budget) to 5.4e-6.
pub const F4X3: Transform = Transform {
    m: 4,
    #[rustfmt::skip]
    bt: &[
        1.0, -1.5, -2.0,  1.5, 1.0, 0.0,
        0.0,  1.0, -2.5,  0.5, 1.0, 0.0,
        0.0, -1.0,  0.5,  2.5, 1.0, 0.0,
        0.0, -2.0, -1.0,  2.0, 1.0, 0.0,
        0.0,  0.5, -1.0, -0.5, 1.0, 0.0,
        0.0,  1.0, -1.5, -2.0, 1.5, 1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0,           0.0,           0.0,
        -1.0 / 3.0,    1.0 / 3.0,    -1.0 / 3.0,
        1.0 / 3.0,     1.0 / 3.0,     1.0 / 3.0,
        -16.0 / 15.0, -8.0 / 15.0,   -4.0 / 15.0,
        1.0 / 15.0,   -2.0 / 15.0,    4.0 / 15.0,
        0.0,           0.0,           1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0,  1.0, 1.0, 1.0,    1.0, 0.0,
        0.0, -1.0, 1.0, 0.5,   -2.0, 0.0,
        0.0,  1.0, 1.0, 0.25,   4.0, 0.0,
        0.0, -1.0, 1.0, 0.125, -8.0, 1.0,
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// One output tile through the transforms equals the direct 3x3
    /// correlation of the patch, for an arbitrary patch and filter.
    #[test]
    fn one_tile_is_the_direct_convolution() {
        for t in [F2X3, F4X3] {
            one_tile(t);
        }
    }

    /// A panel of fewer filters than rows, after a full one on the same
    /// transform (whose planes it reuses), holds each filter's transform
    /// (the same bits as `filters`) and zeros in the rows past them, for
    /// every element.
    #[test]
    fn a_short_panel_after_a_full_one_is_zero_padded() {
        let (c_in, mr) = (3, 4);
        for t in [F2X3, F4X3] {
            let elements = t.a() * t.a();
            let w: Vec<f32> = (0..6 * c_in * 9)
                .map(|i| ((i * 13 % 17) as f32) - 8.0)
                .collect();
            let expected = t.filters(&w, 6, c_in);
            let transform = t.filter_transform(c_in);
            let block = c_in * mr;
            let mut full = vec![f32::NAN; elements * block];
            transform.panel(&w, 4, mr, &mut full, |e| e * block);
            let mut short = vec![f32::NAN; elements * block];
            transform.panel(&w[4 * c_in * 9..], 2, mr, &mut short, |e| e * block);
            for e in 0..elements {
                for c in 0..c_in {
                    for r in 0..mr {
                        let got = short[e * block + c * mr + r];
                        let at = format!("F({}) element {e}, channel {c}, row {r}", t.m);
                        if r < 2 {
                            let want = expected[(e * 6 + 4 + r) * c_in + c];
                            assert_eq!(got.to_bits(), want.to_bits(), "{at}");
                        } else {
                            // The padding may be -0 (a negative coefficient
                            // times a zero tap); stale values or NaN fail.
                            assert!(got == 0.0, "{at}: {got}");
                        }
                    }
                }
            }
        }
    }

    fn one_tile(t: Transform) {
        let a = t.a();
        let d: Vec<f32> = (0..a * a).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        let g: Vec<f32> = (0..9).map(|i| ((i * 5 % 7) as f32) * 0.25 - 0.5).collect();
        let u = t.filters(&g, 1, 1);
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
