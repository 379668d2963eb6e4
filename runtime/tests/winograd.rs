//! The native Winograd transforms against f64 oracles, for every
//! implementation this CPU has and both tile sizes: the input transform
//! against `BT d BT^T` and the output transform against `AT M AT^T` plus
//! bias, residual and activation, both computed as plain matrix products;
//! and the two with the element-wise products between them against the
//! 3x3 convolution from its definition. Plane counts that leave lanes
//! empty, clipped output tiles, paddings of 0 to 2 (also differing between
//! the top or left and the bottom or right), and task ranges that
//! skip planes (whose memory must stay untouched) are covered.

#![allow(unsafe_code)]

use nnc_runtime::kernels::gemm::{Activation, MicroKernel};
use nnc_runtime::kernels::winograd::Transform;
use nnc_runtime::kernels::winograd::{
    nnc_winograd_input, nnc_winograd_output, WinogradInput, WinogradOutput,
};
use proptest::prelude::*;

mod common;
use common::{kernels as implementations, values};

const SENTINEL: f32 = 12345.0;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `l [r, k] · x [k, k] · l^T` in f64.
fn two_sided(l: &[f32], x: &[f64], r: usize, k: usize) -> Vec<f64> {
    let mut lx = vec![0.0f64; r * k];
    for i in 0..r {
        for j in 0..k {
            lx[i * k + j] = (0..k).map(|t| f64::from(l[i * k + t]) * x[t * k + j]).sum();
        }
    }
    let mut out = vec![0.0f64; r * r];
    for i in 0..r {
        for j in 0..r {
            out[i * r + j] = (0..k)
                .map(|t| lx[i * k + t] * f64::from(l[j * k + t]))
                .sum();
        }
    }
    out
}

/// One conv's geometry: `batch` items of `channels` planes of `size`,
/// padded by `padding` before (top, left) and `padding_end` after, into
/// tiles of `m`; the transforms see only `padding` and the tiles.
#[derive(Clone, Debug)]
struct Case {
    m: usize,
    batch: usize,
    channels: usize,
    size: [usize; 2],
    padding: [usize; 2],
    padding_end: [usize; 2],
    seed: u64,
}

impl Case {
    /// The 3x3 conv's output size, if it has one.
    fn output_size(&self) -> Option<[usize; 2]> {
        let [h, w] = self.size;
        let ([py, px], [ey, ex]) = (self.padding, self.padding_end);
        let oh = (h + py + ey).checked_sub(2).filter(|&n| n > 0)?;
        let ow = (w + px + ex).checked_sub(2).filter(|&n| n > 0)?;
        Some([oh, ow])
    }

    fn tiles(&self, [oh, ow]: [usize; 2]) -> [usize; 2] {
        [oh.div_ceil(self.m), ow.div_ceil(self.m)]
    }

    fn transform(&self) -> Result<Transform> {
        Ok(Transform::of(self.m).ok_or("no such transform")?)
    }

    /// The input transform of planes `first..last` of every item: the
    /// oracle's values there and the sentinel elsewhere.
    fn expected_input(
        &self,
        x: &[f32],
        [th, tw]: [usize; 2],
        planes: (usize, usize),
    ) -> Result<Vec<f32>> {
        let t = self.transform()?;
        let (m, a) = (t.m, t.a());
        let [h, w] = self.size;
        let [py, px] = self.padding;
        let c = self.channels;
        let mut out = vec![SENTINEL; self.batch * a * a * c * th * tw];
        for plane in planes.0..planes.1 {
            let (b, ch) = (plane / c, plane % c);
            for ty in 0..th {
                for tx in 0..tw {
                    let d: Vec<f64> = (0..a * a)
                        .map(|i| {
                            let (r, s) = (i / a, i % a);
                            let iy = (m * ty + r).checked_sub(py).filter(|&y| y < h);
                            let ix = (m * tx + s).checked_sub(px).filter(|&x| x < w);
                            match (iy, ix) {
                                (Some(iy), Some(ix)) => f64::from(x[(plane * h + iy) * w + ix]),
                                _ => 0.0,
                            }
                        })
                        .collect();
                    for (e, v) in two_sided(t.bt, &d, a, a).into_iter().enumerate() {
                        out[((b * a * a + e) * c + ch) * th * tw + ty * tw + tx] = v as f32;
                    }
                }
            }
        }
        Ok(out)
    }

    fn check_input(&self, planes: (usize, usize)) -> Result {
        let Some(size) = self.output_size() else {
            return Ok(());
        };
        let [th, tw] = self.tiles(size);
        let [h, w] = self.size;
        let x = values(self.batch * self.channels * h * w, self.seed);
        let expected = self.expected_input(&x, [th, tw], planes)?;
        for kernel_impl in implementations() {
            let spec = WinogradInput::new(
                self.m,
                [self.channels, h, w],
                [th, tw],
                self.padding,
                kernel_impl,
            )?;
            let mut out = vec![SENTINEL; expected.len()];
            // SAFETY: `x` and `out` hold every plane.
            unsafe { nnc_winograd_input(&spec, x.as_ptr(), out.as_mut_ptr(), planes.0, planes.1) };
            for (i, (e, o)) in expected.iter().zip(&out).enumerate() {
                assert!(
                    (e - o).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{kernel_impl:?} {self:?} planes {planes:?}: element {i} is {o}, expected {e}"
                );
            }
        }
        Ok(())
    }

    /// The input transform laid out in the GEMM's panels: each value where
    /// the rows layout's oracle has it, the columns past the tiles written
    /// (zero past the last vector), with the output 64-byte aligned
    /// (streaming stores) and not.
    fn check_input_in_panels(&self) -> Result {
        let Some(size) = self.output_size() else {
            return Ok(());
        };
        let [th, tw] = self.tiles(size);
        let [h, w] = self.size;
        let (c, count) = (self.channels, th * tw);
        let a = self.m + 2;
        let x = values(self.batch * c * h * w, self.seed);
        let planes = self.batch * c;
        let expected = self.expected_input(&x, [th, tw], (0, planes))?;
        for kernel_impl in implementations() {
            let width = kernel_impl.panel_width();
            let padded = count.next_multiple_of(width);
            let spec = WinogradInput::new(self.m, [c, h, w], [th, tw], self.padding, kernel_impl)?
                .in_panels(width);
            let len = self.batch * a * a * c * padded;
            for misaligned in [0, 1] {
                let mut buf = vec![SENTINEL; len + 32];
                let skip = buf.as_ptr().align_offset(64) + misaligned;
                let out = &mut buf[skip..][..len];
                // SAFETY: `x` holds every plane, `out` the panels of all.
                unsafe { nnc_winograd_input(&spec, x.as_ptr(), out.as_mut_ptr(), 0, planes) };
                for (b, e, ch) in (0..self.batch)
                    .flat_map(|b| (0..a * a).flat_map(move |e| (0..c).map(move |ch| (b, e, ch))))
                {
                    for k in 0..padded {
                        let at = ((b * a * a + e) * padded + k / width * width) * c
                            + ch * width
                            + k % width;
                        let got = out[at];
                        if k >= count {
                            let lanes = match kernel_impl {
                                MicroKernel::Avx512 => 16,
                                MicroKernel::Avx2Fma => 8,
                                MicroKernel::Portable => 1,
                            };
                            let written = k < count.next_multiple_of(lanes);
                            assert!(
                                if written { got.is_finite() } else { got == 0.0 },
                                "{kernel_impl:?} {self:?}: column {k} past {count} is {got}"
                            );
                            continue;
                        }
                        let want = expected[((b * a * a + e) * c + ch) * count + k];
                        assert!(
                            (want - got).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{kernel_impl:?} {self:?} (misaligned {misaligned}): item {b}, element {e}, channel {ch}, tile {k} is {got}, expected {want}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn check_output(&self, act: Activation, residual: bool, planes: (usize, usize)) -> Result {
        let Some([oh, ow]) = self.output_size() else {
            return Ok(());
        };
        let [th, tw] = self.tiles([oh, ow]);
        let t = self.transform()?;
        let (m, a) = (t.m, t.a());
        let c = self.channels;
        let x = values(self.batch * a * a * c * th * tw, self.seed ^ 0x1234);
        let bias = values(c, self.seed ^ 0x4321);
        let res = values(self.batch * c * oh * ow, self.seed ^ 0x7777);
        let mut expected = vec![SENTINEL; self.batch * c * oh * ow];
        for plane in planes.0..planes.1 {
            let (b, o) = (plane / c, plane % c);
            for ty in 0..th {
                for tx in 0..tw {
                    let tile: Vec<f64> = (0..a * a)
                        .map(|e| f64::from(x[((b * a * a + e) * c + o) * th * tw + ty * tw + tx]))
                        .collect();
                    let y = two_sided(t.at, &tile, m, a);
                    for p in 0..m {
                        for q in 0..m {
                            let (oy, ox) = (m * ty + p, m * tx + q);
                            if oy < oh && ox < ow {
                                let i = (plane * oh + oy) * ow + ox;
                                let mut v = y[p * m + q] + f64::from(bias[o]);
                                if residual {
                                    v += f64::from(res[i]);
                                }
                                expected[i] = act.apply(v as f32);
                            }
                        }
                    }
                }
            }
        }
        for kernel_impl in implementations() {
            let spec = WinogradOutput::new(
                m,
                c,
                [th, tw],
                [oh, ow],
                Some(&bias),
                Some(act),
                kernel_impl,
            )?;
            let mut out = vec![SENTINEL; expected.len()];
            let r = if residual {
                res.as_ptr()
            } else {
                std::ptr::null()
            };
            // SAFETY: `x`, `out` and the residual hold every plane.
            unsafe {
                nnc_winograd_output(&spec, x.as_ptr(), out.as_mut_ptr(), r, planes.0, planes.1)
            };
            for (i, (e, o)) in expected.iter().zip(&out).enumerate() {
                assert!(
                    (e - o).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{kernel_impl:?} {self:?} {act:?} planes {planes:?}: element {i} is {o}, expected {e}"
                );
            }
        }
        Ok(())
    }

    /// Input transform, the products with the transformed filters summed
    /// over input channels (in f64), and the output transform give the
    /// 3x3 convolution of the definition.
    fn check_convolution(&self, out_channels: usize) -> Result {
        let Some([oh, ow]) = self.output_size() else {
            return Ok(());
        };
        let [th, tw] = self.tiles([oh, ow]);
        let t = self.transform()?;
        let a = t.a();
        let [h, w] = self.size;
        let [py, px] = self.padding;
        let (c, n, count) = (self.channels, self.batch, th * tw);
        let x = values(n * c * h * w, self.seed);
        let weight = values(out_channels * c * 9, self.seed ^ 0x9999);
        let u = t.filters(&weight, out_channels, c);
        for kernel_impl in implementations() {
            let input = WinogradInput::new(self.m, [c, h, w], [th, tw], self.padding, kernel_impl)?;
            let mut v = vec![0.0f32; n * a * a * c * count];
            // SAFETY: `x` and `v` hold every plane.
            unsafe { nnc_winograd_input(&input, x.as_ptr(), v.as_mut_ptr(), 0, n * c) };
            let mut products = vec![0.0f32; n * a * a * out_channels * count];
            for b in 0..n {
                for e in 0..a * a {
                    for o in 0..out_channels {
                        for k in 0..count {
                            let sum: f64 = (0..c)
                                .map(|ch| {
                                    f64::from(u[(e * out_channels + o) * c + ch])
                                        * f64::from(v[((b * a * a + e) * c + ch) * count + k])
                                })
                                .sum();
                            products[((b * a * a + e) * out_channels + o) * count + k] = sum as f32;
                        }
                    }
                }
            }
            let output = WinogradOutput::new(
                self.m,
                out_channels,
                [th, tw],
                [oh, ow],
                None,
                None,
                kernel_impl,
            )?;
            let mut y = vec![SENTINEL; n * out_channels * oh * ow];
            // SAFETY: `products` and `y` hold every plane; no residual.
            unsafe {
                nnc_winograd_output(
                    &output,
                    products.as_ptr(),
                    y.as_mut_ptr(),
                    std::ptr::null(),
                    0,
                    n * out_channels,
                )
            };
            for b in 0..n {
                for o in 0..out_channels {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut direct = 0.0f64;
                            for ch in 0..c {
                                for ky in 0..3 {
                                    for kx in 0..3 {
                                        let iy = (oy + ky).checked_sub(py).filter(|&y| y < h);
                                        let ix = (ox + kx).checked_sub(px).filter(|&x| x < w);
                                        if let (Some(iy), Some(ix)) = (iy, ix) {
                                            direct +=
                                                f64::from(weight[((o * c + ch) * 3 + ky) * 3 + kx])
                                                    * f64::from(
                                                        x[((b * c + ch) * h + iy) * w + ix],
                                                    );
                                        }
                                    }
                                }
                            }
                            let found = y[((b * out_channels + o) * oh + oy) * ow + ox];
                            assert!(
                                (f64::from(found) - direct).abs() <= 1e-4 * (1.0 + direct.abs()),
                                "{kernel_impl:?} {self:?}: output ({b}, {o}, {oy}, {ox}) is {found}, expected {direct}"
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seed = 1;
    for m in [2, 4] {
        for size in [[1, 1], [3, 3], [4, 9], [7, 7], [13, 10], [28, 28], [9, 70]] {
            for (padding, padding_end) in [
                ([0, 0], [0, 0]),
                ([1, 1], [1, 1]),
                ([2, 1], [2, 1]),
                ([0, 1], [2, 0]),
            ] {
                seed += 1;
                cases.push(Case {
                    m,
                    batch: 2,
                    channels: 3,
                    size,
                    padding,
                    padding_end,
                    seed,
                });
            }
        }
    }
    cases
}

#[test]
fn the_input_transform_matches_the_oracle() -> Result {
    for case in cases() {
        let planes = case.batch * case.channels;
        case.check_input((0, planes))?;
        case.check_input((1, planes - 1))?;
    }
    Ok(())
}

#[test]
fn the_input_transform_in_panels_holds_the_oracles_values() -> Result {
    for case in cases() {
        case.check_input_in_panels()?;
    }
    Ok(())
}

#[test]
fn the_output_transform_matches_the_oracle() -> Result {
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Clip { min: 0.0, max: 0.5 },
        Activation::LeakyRelu {
            negative_slope: 0.1,
        },
    ];
    for (i, case) in cases().into_iter().enumerate() {
        let planes = case.batch * case.channels;
        case.check_output(acts[i % acts.len()], i % 2 == 0, (0, planes))?;
        case.check_output(Activation::Relu, true, (2, planes - 1))?;
    }
    Ok(())
}

#[test]
fn transforms_and_products_are_the_convolution() -> Result {
    for case in cases().into_iter().step_by(2) {
        case.check_convolution(5)?;
    }
    Ok(())
}

#[test]
fn relu_and_clip_pass_nan_through() -> Result {
    for act in [Activation::Relu, Activation::Clip { min: 0.0, max: 6.0 }] {
        for kernel_impl in implementations() {
            let spec = WinogradOutput::new(2, 1, [1, 1], [2, 2], None, Some(act), kernel_impl)?;
            // Element 0 of the tile reaches output (0, 0) only (AT's
            // first column is 1, 0).
            let mut x = [0.0f32; 16];
            x[0] = f32::NAN;
            let mut out = [SENTINEL; 4];
            // SAFETY: one plane in and out.
            unsafe {
                nnc_winograd_output(&spec, x.as_ptr(), out.as_mut_ptr(), std::ptr::null(), 0, 1)
            };
            assert!(out[0].is_nan(), "{kernel_impl:?} {act:?}: {out:?}");
            assert_eq!(&out[1..], &[0.0, 0.0, 0.0], "{kernel_impl:?} {act:?}");
        }
    }
    Ok(())
}

/// With no channels the kernels' one task writes nothing.
#[test]
fn no_channels_write_nothing() -> Result {
    for kernel_impl in implementations() {
        let input = WinogradInput::new(2, [0, 4, 4], [2, 2], [1, 1], kernel_impl)?;
        let output = WinogradOutput::new(2, 0, [2, 2], [4, 4], None, None, kernel_impl)?;
        let x = [1.0f32; 16];
        let mut out = [SENTINEL; 16];
        // SAFETY: no plane is read or written.
        unsafe {
            nnc_winograd_input(&input, x.as_ptr(), out.as_mut_ptr(), 0, 1);
            nnc_winograd_output(
                &output,
                x.as_ptr(),
                out.as_mut_ptr(),
                std::ptr::null(),
                0,
                1,
            );
        }
        assert!(
            out.iter().all(|&v| v == SENTINEL),
            "{kernel_impl:?}: {out:?}"
        );
    }
    Ok(())
}

#[test]
fn a_bias_too_short_or_tiles_too_few_are_errors() {
    let short = WinogradOutput::new(
        2,
        3,
        [2, 2],
        [4, 4],
        Some(&[1.0]),
        None,
        MicroKernel::Portable,
    );
    assert!(short.is_err());
    let few = WinogradOutput::new(4, 1, [1, 1], [5, 4], None, None, MicroKernel::Portable);
    assert!(few.is_err());
    assert!(WinogradInput::new(3, [1, 4, 4], [1, 1], [0, 0], MicroKernel::Portable).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_geometries_match_the_oracles(
        m in prop::sample::select(vec![2usize, 4]),
        channels in 1usize..5,
        h in 1usize..24,
        w in 1usize..40,
        py in 0usize..3,
        px in 0usize..3,
        (ey, ex) in (0usize..3, 0usize..3),
        seed in any::<u64>(),
    ) {
        let case = Case {
            m, batch: 1, channels, size: [h, w], padding: [py, px], padding_end: [ey, ex], seed,
        };
        let fail = |e: Box<dyn std::error::Error>| TestCaseError::fail(e.to_string());
        case.check_input((0, channels)).map_err(fail)?;
        case.check_output(Activation::Relu, true, (0, channels)).map_err(fail)?;
    }
}
