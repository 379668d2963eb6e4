//! The reference interpreter's `conv2d` and `conv_transpose2d`: hand-computed
//! cases, a textbook gather-form reference for both, and the identities
//! (grouped conv = separate convs, 1x1 conv = matmul, conv_transpose is the
//! adjoint of conv).

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    Col2ImAttrs, Conv2dAttrs, ConvTranspose2dAttrs, Epilogue, GemmAttrs, Im2ColAttrs, Padding,
    WinogradInputAttrs, WinogradOutputAttrs,
};
use nnc_runtime::kernels::winograd::{F2X3, F4X3};
use nnc_runtime::Tensor;
use nnc_tests::{assert_close, random, tensor};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug)]
struct Conf {
    kernel: [usize; 2],
    stride: [usize; 2],
    /// Top and left; both sides of each axis for `conv_transpose2d`.
    padding: [usize; 2],
    /// Bottom and right, for `conv2d` only.
    padding_end: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Conf {
    /// The padding of `conv2d`: `padding` before, `padding_end` after.
    fn sides(&self) -> Padding {
        Padding {
            begin: self.padding,
            end: self.padding_end,
        }
    }
}

fn conv(out: usize, c: &Conf, bias: bool) -> Conv2dAttrs {
    Conv2dAttrs {
        out_channels: out,
        kernel: c.kernel,
        stride: c.stride,
        padding: c.sides(),
        dilation: c.dilation,
        groups: c.groups,
        bias,
        epilogue: Epilogue::default(),
    }
}

fn conv_t(out: usize, c: &Conf, output_padding: [usize; 2], bias: bool) -> ConvTranspose2dAttrs {
    ConvTranspose2dAttrs {
        out_channels: out,
        kernel: c.kernel,
        stride: c.stride,
        padding: c.padding,
        output_padding,
        dilation: c.dilation,
        groups: c.groups,
        bias,
        epilogue: Epilogue::default(),
    }
}

fn simple(kernel: usize, stride: usize, padding: usize, dilation: usize, groups: usize) -> Conf {
    Conf {
        kernel: [kernel; 2],
        stride: [stride; 2],
        padding: [padding; 2],
        padding_end: [padding; 2],
        dilation: [dilation; 2],
        groups,
    }
}

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

// ---------------------------------------------------------------- conv2d by hand

#[test]
fn conv2d_2x2_kernel_with_bias() {
    let x = tensor(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    let w = tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let b = tensor(&[1], &[0.5]);
    let y = interp::conv2d(&x, &w, Some(&b), &conv(1, &simple(2, 1, 0, 1, 1), true)).unwrap();
    // 1*1+2*2+3*4+4*5 = 37, 2+6+15+24 = 47, 4+10+21+32 = 67, 5+12+24+36 = 77.
    assert_close(&y, &[1, 1, 2, 2], &[37.5, 47.5, 67.5, 77.5], 0.0);
}

#[test]
fn conv2d_stride_2_pad_1_sums_only_real_pixels() {
    let x = tensor(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    let w = tensor(&[1, 1, 3, 3], &[1.0; 9]);
    let y = interp::conv2d(&x, &w, None, &conv(1, &simple(3, 2, 1, 1, 1), false)).unwrap();
    // Each output is the sum of the 2x2 corner of the input its window covers.
    assert_close(&y, &[1, 1, 2, 2], &[12., 16., 24., 28.], 0.0);
}

#[test]
fn conv2d_dilation_2_skips_pixels() {
    let x = tensor(&[1, 1, 4, 4], &iota(16));
    let w = tensor(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
    let y = interp::conv2d(&x, &w, None, &conv(1, &simple(2, 1, 0, 2, 1), false)).unwrap();
    // y[r][c] = x[r][c] + 10 x[r][c+2] + 100 x[r+2][c] + 1000 x[r+2][c+2].
    assert_close(&y, &[1, 1, 2, 2], &[10820., 11931., 15264., 16375.], 0.0);
}

#[test]
fn conv2d_asymmetric_stride_and_padding() {
    // A 1x2 input row, kernel [1, 2], stride [1, 2], padding [0, 1]: the
    // padded row is [0, 1, 2, 0], windows [0, 1] and [2, 0].
    let x = tensor(&[1, 1, 1, 2], &[1., 2.]);
    let w = tensor(&[1, 1, 1, 2], &[3., 5.]);
    let c = Conf {
        kernel: [1, 2],
        stride: [1, 2],
        padding: [0, 1],
        padding_end: [0, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let y = interp::conv2d(&x, &w, None, &conv(1, &c, false)).unwrap();
    assert_close(&y, &[1, 1, 1, 2], &[5., 6.], 0.0);
}

#[test]
fn conv2d_padding_that_differs_per_side() {
    // pad=[top 1, left 0, bottom 0, right 1] on a 2x2 input, 2x2 kernel:
    // the padded input is [[0, 0, 0], [1, 2, 0], [3, 4, 0]] and the output
    // (2 + 1 - 2 + 1 = 2 each way) reads its four 2x2 windows.
    let x = tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let w = tensor(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
    let c = Conf {
        padding: [1, 0],
        padding_end: [0, 1],
        ..simple(2, 1, 0, 1, 1)
    };
    let y = interp::conv2d(&x, &w, None, &conv(1, &c, false)).unwrap();
    // 100*1 + 1000*2, 100*2, 1 + 10*2 + 100*3 + 1000*4, 2 + 100*4.
    assert_close(&y, &[1, 1, 2, 2], &[2100., 200., 4321., 402.], 0.0);
    // The bottom and right padding decide the output size alone: 3 more
    // rows below give 3 more output rows, reading only padding and row 1.
    let c = Conf {
        padding: [0, 0],
        padding_end: [3, 0],
        ..simple(2, 1, 0, 1, 1)
    };
    let y = interp::conv2d(&x, &w, None, &conv(1, &c, false)).unwrap();
    assert_close(&y, &[1, 1, 4, 1], &[4321., 43., 0., 0.], 0.0);
}

#[test]
fn conv2d_groups_use_their_own_input_channels() {
    // Two groups of two input channels; group 0 reads channels 0, 1 and
    // group 1 reads channels 2, 3.
    let x = tensor(&[1, 4, 1, 1], &[1., 2., 3., 4.]);
    let w = tensor(&[2, 2, 1, 1], &[1., 10., 100., 1000.]);
    let y = interp::conv2d(&x, &w, None, &conv(2, &simple(1, 1, 0, 1, 2), false)).unwrap();
    assert_close(&y, &[1, 2, 1, 1], &[21., 4300.], 0.0);
}

#[test]
fn conv2d_depthwise_with_channel_multiplier() {
    let x = tensor(&[1, 2, 1, 2], &[1., 2., 5., 6.]);
    let w = tensor(&[4, 1, 1, 1], &[2., 3., -1., 10.]);
    let y = interp::conv2d(&x, &w, None, &conv(4, &simple(1, 1, 0, 1, 2), false)).unwrap();
    assert_close(
        &y,
        &[1, 4, 1, 2],
        &[2., 4., 3., 6., -5., -6., 50., 60.],
        0.0,
    );
}

#[test]
fn conv2d_batches_and_multiple_output_channels() {
    // Two samples, two output channels summing both input channels with
    // different weights.
    let x = tensor(&[2, 2, 1, 1], &[1., 2., 3., 4.]);
    let w = tensor(&[2, 2, 1, 1], &[1., 1., 1., -1.]);
    let b = tensor(&[2], &[0., 100.]);
    let y = interp::conv2d(&x, &w, Some(&b), &conv(2, &simple(1, 1, 0, 1, 1), true)).unwrap();
    assert_close(&y, &[2, 2, 1, 1], &[3., 99., 7., 99.], 0.0);
}

// ------------------------------------------------------- conv_transpose2d by hand

#[test]
fn conv_transpose2d_stride_2_paints_blocks() {
    let x = tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let w = tensor(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
    let y = interp::conv_transpose2d(
        &x,
        &w,
        None,
        &conv_t(1, &simple(2, 2, 0, 1, 1), [0, 0], false),
    )
    .unwrap();
    #[rustfmt::skip]
    let expected = [
        1., 10., 2., 20.,
        100., 1000., 200., 2000.,
        3., 30., 4., 40.,
        300., 3000., 400., 4000.,
    ];
    assert_close(&y, &[1, 1, 4, 4], &expected, 0.0);
}

#[test]
fn conv_transpose2d_stride_1_overlaps_add_up() {
    let x = tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let w = tensor(&[1, 1, 2, 2], &[1.0; 4]);
    let y = interp::conv_transpose2d(
        &x,
        &w,
        None,
        &conv_t(1, &simple(2, 1, 0, 1, 1), [0, 0], false),
    )
    .unwrap();
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[1., 3., 2., 4., 10., 6., 3., 7., 4.],
        0.0,
    );
}

#[test]
fn conv_transpose2d_padding_and_output_padding() {
    // Unpadded, the 3x3 ones kernel at stride 2 paints a 5x5 map; padding 1
    // crops one row and column at the start and output_padding 1 extends
    // the end, so the output is full rows/cols 1..=4.
    let x = tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let w = tensor(&[1, 1, 3, 3], &[1.0; 9]);
    let y = interp::conv_transpose2d(
        &x,
        &w,
        None,
        &conv_t(1, &simple(3, 2, 1, 1, 1), [1, 1], false),
    )
    .unwrap();
    #[rustfmt::skip]
    let expected = [
        1., 3., 2., 2.,
        4., 10., 6., 6.,
        3., 7., 4., 4.,
        3., 7., 4., 4.,
    ];
    assert_close(&y, &[1, 1, 4, 4], &expected, 0.0);
}

#[test]
fn conv_transpose2d_dilation() {
    let x = tensor(&[1, 1, 1, 2], &[1., 2.]);
    let w = tensor(&[1, 1, 1, 2], &[1., 10.]);
    let c = Conf {
        kernel: [1, 2],
        stride: [1, 1],
        padding: [0, 0],
        padding_end: [0, 0],
        dilation: [1, 2],
        groups: 1,
    };
    let y = interp::conv_transpose2d(&x, &w, None, &conv_t(1, &c, [0, 0], false)).unwrap();
    // Width (2-1) + 2*(2-1) + 1 = 4; tap 1 lands two columns to the right.
    assert_close(&y, &[1, 1, 1, 4], &[1., 2., 10., 20.], 0.0);
}

#[test]
fn conv_transpose2d_groups_and_bias() {
    let x = tensor(&[1, 2, 1, 1], &[1., 2.]);
    let w = tensor(&[2, 2, 1, 1], &[1., 2., 3., 4.]);
    let b = tensor(&[4], &[0.5, 0., 0., -1.]);
    let y = interp::conv_transpose2d(
        &x,
        &w,
        Some(&b),
        &conv_t(4, &simple(1, 1, 0, 1, 2), [0, 0], true),
    )
    .unwrap();
    // Input channel 0 feeds outputs 0, 1; input channel 1 feeds outputs 2, 3.
    assert_close(&y, &[1, 4, 1, 1], &[1.5, 2., 6., 7.], 0.0);
}

// ------------------------------------------------------------- references

/// Textbook `conv2d`: for every output element, sum over its window.
fn reference_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, c: &Conf) -> (Vec<usize>, Vec<f32>) {
    let (n, cin, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (cout, cpg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let oh = (h + c.padding[0] + c.padding_end[0] - c.dilation[0] * (kh - 1) - 1) / c.stride[0] + 1;
    let ow =
        (wd + c.padding[1] + c.padding_end[1] - c.dilation[1] * (kw - 1) - 1) / c.stride[1] + 1;
    let opg = cout / c.groups;
    let mut out = Vec::new();
    for bi in 0..n {
        for oc in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = b.map_or(0.0, |b| f64::from(b.data()[oc]));
                    for icg in 0..cpg {
                        let ic = (oc / opg) * cpg + icg;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride[0] + ky * c.dilation[0]) as i64
                                    - c.padding[0] as i64;
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as i64
                                    - c.padding[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let xv = x.data()
                                    [((bi * cin + ic) * h + iy as usize) * wd + ix as usize];
                                let wv = w.data()[((oc * cpg + icg) * kh + ky) * kw + kx];
                                s += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    out.push(s as f32);
                }
            }
        }
    }
    (vec![n, cout, oh, ow], out)
}

/// Textbook `conv_transpose2d` in gather form: output `o` receives input `i`
/// through tap `k` when `i*stride + k*dilation - pad == o`.
fn reference_conv_transpose(
    x: &Tensor,
    w: &Tensor,
    c: &Conf,
    output_padding: [usize; 2],
) -> (Vec<usize>, Vec<f32>) {
    let (n, cin, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (opg, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
    let cout = opg * c.groups;
    let ipg = cin / c.groups;
    let oh =
        (h - 1) * c.stride[0] + c.dilation[0] * (kh - 1) + output_padding[0] + 1 - 2 * c.padding[0];
    let ow = (wd - 1) * c.stride[1] + c.dilation[1] * (kw - 1) + output_padding[1] + 1
        - 2 * c.padding[1];
    let mut out = Vec::new();
    for bi in 0..n {
        for oc in 0..cout {
            let (g, ocg) = (oc / opg, oc % opg);
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0f64;
                    for icg in 0..ipg {
                        let ic = g * ipg + icg;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let ny = (oy + c.padding[0]) as i64 - (ky * c.dilation[0]) as i64;
                                let nx = (ox + c.padding[1]) as i64 - (kx * c.dilation[1]) as i64;
                                if ny < 0
                                    || nx < 0
                                    || ny % c.stride[0] as i64 != 0
                                    || nx % c.stride[1] as i64 != 0
                                {
                                    continue;
                                }
                                let (iy, ix) = (
                                    (ny / c.stride[0] as i64) as usize,
                                    (nx / c.stride[1] as i64) as usize,
                                );
                                if iy >= h || ix >= wd {
                                    continue;
                                }
                                let xv = x.data()[((bi * cin + ic) * h + iy) * wd + ix];
                                let wv = w.data()[((ic * opg + ocg) * kh + ky) * kw + kx];
                                s += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    out.push(s as f32);
                }
            }
        }
    }
    (vec![n, cout, oh, ow], out)
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(&p, &q)| f64::from(p) * f64::from(q))
        .sum()
}

fn norm(a: &Tensor) -> f64 {
    dot(a, a).sqrt()
}

/// A random conv configuration (conf, input channels, output channels,
/// batch, [h, w], data seed) whose output is at least 1x1. Half of them
/// pad `conv2d` differently after the input than before it.
#[allow(clippy::type_complexity)]
fn conf_strategy() -> impl Strategy<Value = (Conf, usize, usize, usize, [usize; 2], u64)> {
    let window = (1usize..4, 1usize..4, 1usize..3, 0usize..3);
    let channels = (1usize..4, 1usize..3, 1usize..3);
    let data = (1usize..10, 1usize..10, 1usize..3, any::<u64>());
    let ends = prop_oneof![Just(None), (0usize..4, 0usize..4).prop_map(Some)];
    (window.clone(), window, channels, data, ends).prop_filter_map(
        "output must be at least 1x1",
        |((kh, sh, dh, ph), (kw, sw, dw, pw), (groups, ipg, opg), (h, w, n, seed), ends)| {
            let c = Conf {
                kernel: [kh, kw],
                stride: [sh, sw],
                padding: [ph, pw],
                padding_end: ends.map_or([ph, pw], |(eh, ew)| [eh, ew]),
                dilation: [dh, dw],
                groups,
            };
            let [eh, ew] = c.padding_end;
            let fits = h + ph + eh > dh * (kh - 1) && w + pw + ew > dw * (kw - 1);
            fits.then_some((c, groups * ipg, groups * opg, n, [h, w], seed))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv2d_matches_the_textbook_loop((c, cin, cout, n, [h, w], seed) in conf_strategy(), bias in any::<bool>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&[n, cin, h, w], &mut rng);
        let wt = random(&[cout, cin / c.groups, c.kernel[0], c.kernel[1]], &mut rng);
        let b = random(&[cout], &mut rng);
        let b = bias.then_some(&b);
        let y = interp::conv2d(&x, &wt, b, &conv(cout, &c, bias)).unwrap();
        let (shape, expected) = reference_conv(&x, &wt, b, &c);
        assert_close(&y, &shape, &expected, 1e-5);
    }

    #[test]
    fn conv_transpose2d_matches_the_gather_form((c, cin, cout, n, [h, w], seed) in conf_strategy(), op in (0usize..3, 0usize..3)) {
        // output_padding must be below the stride or the dilation.
        let output_padding = [
            op.0 % c.stride[0].max(c.dilation[0]),
            op.1 % c.stride[1].max(c.dilation[1]),
        ];
        let oh = (h - 1) * c.stride[0] + c.dilation[0] * (c.kernel[0] - 1) + output_padding[0] + 1;
        let ow = (w - 1) * c.stride[1] + c.dilation[1] * (c.kernel[1] - 1) + output_padding[1] + 1;
        prop_assume!(oh > 2 * c.padding[0] && ow > 2 * c.padding[1]);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&[n, cin, h, w], &mut rng);
        let wt = random(&[cin, cout / c.groups, c.kernel[0], c.kernel[1]], &mut rng);
        let y = interp::conv_transpose2d(&x, &wt, None, &conv_t(cout, &c, output_padding, false)).unwrap();
        let (shape, expected) = reference_conv_transpose(&x, &wt, &c, output_padding);
        assert_close(&y, &shape, &expected, 1e-5);
    }

    /// `conv2d` is `im2col` then a grouped `gemm` with the weight read as
    /// `[out, C/groups*kh*kw]`, as `lower-conv` rewrites it.
    #[test]
    fn conv2d_is_im2col_then_gemm((c, cin, cout, n, [h, w], seed) in conf_strategy(), bias in any::<bool>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&[n, cin, h, w], &mut rng);
        let wt = random(&[cout, cin / c.groups, c.kernel[0], c.kernel[1]], &mut rng);
        let b = random(&[cout], &mut rng);
        let b = bias.then_some(&b);
        let direct = interp::conv2d(&x, &wt, b, &conv(cout, &c, bias)).unwrap();
        let cols = interp::im2col(&x, &Im2ColAttrs {
            kernel: c.kernel, stride: c.stride, padding: c.sides(), dilation: c.dilation,
        }).unwrap();
        let k = cin / c.groups * c.kernel[0] * c.kernel[1];
        let w2 = Tensor::new(vec![cout, k], wt.data().to_vec()).unwrap();
        let lowered = interp::gemm(&cols, &w2, b, &GemmAttrs {
            out_channels: cout, groups: c.groups, bias, epilogue: Epilogue::default(),
            winograd: None,
        }).unwrap();
        assert_close(&lowered, direct.shape(), direct.data(), 1e-5);
    }

    /// A 3x3 stride-1 `conv2d` is `winograd_input`, a `gemm` with one group
    /// per transformed element (weight row `e*out + o` holding element `e`
    /// of `G g G^T`), then `winograd_output`, as `lower-conv` rewrites it,
    /// for F(2x2, 3x3) and F(4x4, 3x3); any padding, on each side, and
    /// sizes whose last tiles are clipped.
    #[test]
    fn conv2d_3x3_is_winograd(
        (cin, cout, n) in (1usize..5, 1usize..5, 1usize..3),
        (h, w, py, px) in (1usize..14, 1usize..14, 0usize..3, 0usize..3),
        (ey, ex) in (0usize..3, 0usize..3),
        (f4, bias) in (any::<bool>(), any::<bool>()),
        seed in any::<u64>(),
    ) {
        prop_assume!(h + py + ey >= 3 && w + px + ex >= 3);
        let t = if f4 { F4X3 } else { F2X3 };
        let (m, side) = (t.m, t.a());
        let c = Conf {
            kernel: [3, 3], stride: [1, 1], padding: [py, px], padding_end: [ey, ex],
            dilation: [1, 1], groups: 1,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&[n, cin, h, w], &mut rng);
        let wt = random(&[cout, cin, 3, 3], &mut rng);
        let b = random(&[cout], &mut rng);
        let b = bias.then_some(&b);
        let direct = interp::conv2d(&x, &wt, b, &conv(cout, &c, bias)).unwrap();
        let (oh, ow) = (direct.shape()[2], direct.shape()[3]);
        let tiles = [oh.div_ceil(m), ow.div_ceil(m)];
        let v = interp::winograd_input(&x, &WinogradInputAttrs { tile: m, tiles, padding: c.sides() }).unwrap();
        let groups = side * side;
        let u = Tensor::new(vec![groups * cout, cin], t.filters(wt.data(), cout, cin)).unwrap();
        let products = interp::gemm(&v, &u, None, &GemmAttrs {
            out_channels: groups * cout, groups, bias: false, epilogue: Epilogue::default(),
            winograd: None,
        }).unwrap();
        let lowered = interp::winograd_output(&products, b, &WinogradOutputAttrs {
            out_channels: cout, tile: m, output_size: [oh, ow], bias, epilogue: Epilogue::default(),
        }).unwrap();
        // F(4x4, 3x3)'s transforms multiply by up to 8 and subtract terms of
        // that size, so its rounding error is several times F(2x2, 3x3)'s
        // (one seed of cin 4 erred by 1.15e-5 on an output of 0.06).
        let tol = if f4 { 4e-5 } else { 1e-5 };
        assert_close(&lowered, direct.shape(), direct.data(), tol);
    }

    /// `conv_transpose2d` is a grouped `gemm` with each group's weight
    /// transposed to `[out/groups*kh*kw, C_in/groups]`, then `col2im`.
    #[test]
    fn conv_transpose2d_is_gemm_then_col2im((c, cin, cout, n, [h, w], seed) in conf_strategy(), op in (0usize..3, 0usize..3)) {
        let output_padding = [
            op.0 % c.stride[0].max(c.dilation[0]),
            op.1 % c.stride[1].max(c.dilation[1]),
        ];
        let oh = (h - 1) * c.stride[0] + c.dilation[0] * (c.kernel[0] - 1) + output_padding[0] + 1;
        let ow = (w - 1) * c.stride[1] + c.dilation[1] * (c.kernel[1] - 1) + output_padding[1] + 1;
        prop_assume!(oh > 2 * c.padding[0] && ow > 2 * c.padding[1]);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&[n, cin, h, w], &mut rng);
        let wt = random(&[cin, cout / c.groups, c.kernel[0], c.kernel[1]], &mut rng);
        let b = random(&[cout], &mut rng);
        let direct = interp::conv_transpose2d(&x, &wt, Some(&b), &conv_t(cout, &c, output_padding, true)).unwrap();
        let (cg, rows) = (cin / c.groups, cout / c.groups * c.kernel[0] * c.kernel[1]);
        let mut t = vec![0.0; wt.len()];
        for g in 0..c.groups {
            for ci in 0..cg {
                for r in 0..rows {
                    t[(g * rows + r) * cg + ci] = wt.data()[(g * cg + ci) * rows + r];
                }
            }
        }
        let wt2 = Tensor::new(vec![c.groups * rows, cg], t).unwrap();
        let cols = interp::gemm(&x, &wt2, None, &GemmAttrs {
            out_channels: c.groups * rows, groups: c.groups, bias: false, epilogue: Epilogue::default(),
            winograd: None,
        }).unwrap();
        let lowered = interp::col2im(&cols, Some(&b), &Col2ImAttrs {
            out_channels: cout, kernel: c.kernel, stride: c.stride, padding: c.padding,
            dilation: c.dilation, output_size: [direct.shape()[2], direct.shape()[3]],
            bias: true, epilogue: Epilogue::default(),
        }).unwrap();
        assert_close(&lowered, direct.shape(), direct.data(), 1e-5);
    }

    /// `<conv(x), y> == <x, conv_transpose(y)>` with the same weight: the
    /// conv weight `[out, in/g, kh, kw]` read as a transposed-conv weight
    /// `[in', out'/g, kh, kw]` with `in' = out` and `out' = in`.
    #[test]
    fn conv_transpose2d_is_the_adjoint_of_conv2d((c, cin, cout, n, [h, w], seed) in conf_strategy()) {
        // The transposed conv pads both sides equally.
        let c = Conf { padding_end: c.padding, ..c };
        prop_assume!((0..2).all(|i| [h, w][i] + 2 * c.padding[i] > c.dilation[i] * (c.kernel[i] - 1)));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random(&[n, cin, h, w], &mut rng);
        let wt = random(&[cout, cin / c.groups, c.kernel[0], c.kernel[1]], &mut rng);
        let cx = interp::conv2d(&x, &wt, None, &conv(cout, &c, false)).unwrap();
        let y = random(cx.shape(), &mut rng);
        // The output padding that makes the transposed conv restore [h, w].
        let output_padding = [
            (h + 2 * c.padding[0] - c.dilation[0] * (c.kernel[0] - 1) - 1) % c.stride[0],
            (w + 2 * c.padding[1] - c.dilation[1] * (c.kernel[1] - 1) - 1) % c.stride[1],
        ];
        let ty = interp::conv_transpose2d(&y, &wt, None, &conv_t(cin, &c, output_padding, false)).unwrap();
        prop_assert_eq!(ty.shape(), x.shape());
        let lhs = dot(&cx, &y);
        let rhs = dot(&x, &ty);
        let scale = norm(&cx) * norm(&y) + norm(&x) * norm(&ty) + 1e-12;
        prop_assert!((lhs - rhs).abs() <= 1e-4 * scale, "{} vs {}", lhs, rhs);
    }
}

// ------------------------------------------------------------- identities

/// Channels `start..start+len` of a `[N, C, H, W]` tensor.
fn channels(t: &Tensor, start: usize, len: usize) -> Tensor {
    let (n, c) = (t.shape()[0], t.shape()[1]);
    let plane = t.shape()[2] * t.shape()[3];
    let mut data = Vec::new();
    for b in 0..n {
        data.extend_from_slice(&t.data()[(b * c + start) * plane..(b * c + start + len) * plane]);
    }
    Tensor::new(vec![n, len, t.shape()[2], t.shape()[3]], data).unwrap()
}

/// Rows `start..start+len` of the first dim.
fn leading(t: &Tensor, start: usize, len: usize) -> Tensor {
    let row: usize = t.shape()[1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[0] = len;
    Tensor::new(shape, t.data()[start * row..(start + len) * row].to_vec()).unwrap()
}

#[test]
fn grouped_conv_equals_separate_convs_per_group() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // (channels, groups, out per group, conf); groups == channels is depthwise.
    let cases = [
        (4, 2, 3, simple(3, 1, 1, 1, 2)),
        (3, 3, 1, simple(3, 2, 1, 1, 3)),
        (3, 3, 2, simple(3, 1, 2, 2, 3)),
        (6, 3, 2, simple(2, 2, 0, 1, 3)),
    ];
    for (cin, groups, opg, c) in cases {
        let x = random(&[2, cin, 7, 6], &mut rng);
        let w = random(
            &[groups * opg, cin / groups, c.kernel[0], c.kernel[1]],
            &mut rng,
        );
        let b = random(&[groups * opg], &mut rng);
        let y = interp::conv2d(&x, &w, Some(&b), &conv(groups * opg, &c, true)).unwrap();
        let single = Conf { groups: 1, ..c };
        for g in 0..groups {
            let ipg = cin / groups;
            let part = interp::conv2d(
                &channels(&x, g * ipg, ipg),
                &leading(&w, g * opg, opg),
                Some(&leading(&b, g * opg, opg)),
                &conv(opg, &single, true),
            )
            .unwrap();
            let expected = channels(&y, g * opg, opg);
            assert_close(&part, expected.shape(), expected.data(), 1e-6);
        }
    }
}

#[test]
fn pointwise_conv_is_a_matmul() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (n, cin, cout, h, w) = (2, 5, 3, 4, 3);
    let x = random(&[n, cin, h, w], &mut rng);
    let wt = random(&[cout, cin, 1, 1], &mut rng);
    let b = random(&[cout], &mut rng);
    let y = interp::conv2d(&x, &wt, Some(&b), &conv(cout, &simple(1, 1, 0, 1, 1), true)).unwrap();
    let mut expected = vec![0.0f32; n * cout * h * w];
    for bi in 0..n {
        for o in 0..cout {
            for p in 0..h * w {
                let mut s = b.data()[o];
                for ci in 0..cin {
                    s += wt.data()[o * cin + ci] * x.data()[(bi * cin + ci) * h * w + p];
                }
                expected[(bi * cout + o) * h * w + p] = s;
            }
        }
    }
    assert_close(&y, &[n, cout, h, w], &expected, 1e-5);
}

// ------------------------------------------------------------- errors

fn operand_error(r: Result<Tensor, InterpError>, needle: &str) {
    match r {
        Err(e @ InterpError::Operands { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
        }
        other => panic!("expected an operand error mentioning `{needle}`, got {other:?}"),
    }
}

#[test]
fn conv2d_rejects_inconsistent_operands() {
    let x = Tensor::zeros(vec![1, 4, 5, 5]).unwrap();
    let w = Tensor::zeros(vec![2, 4, 3, 3]).unwrap();
    let ok = simple(3, 1, 0, 1, 1);
    assert!(interp::conv2d(&x, &w, None, &conv(2, &ok, false)).is_ok());
    // Weight input channels do not match the input.
    let w3 = Tensor::zeros(vec![2, 3, 3, 3]).unwrap();
    operand_error(
        interp::conv2d(&x, &w3, None, &conv(2, &ok, false)),
        "input channels per group",
    );
    // Groups that do not divide the channels.
    let w1 = Tensor::zeros(vec![2, 1, 3, 3]).unwrap();
    operand_error(
        interp::conv2d(&x, &w1, None, &conv(2, &simple(3, 1, 0, 1, 3), false)),
        "groups=3",
    );
    // Rank-3 input.
    let x3 = Tensor::zeros(vec![4, 5, 5]).unwrap();
    operand_error(
        interp::conv2d(&x3, &w, None, &conv(2, &ok, false)),
        "rank 4",
    );
    // Kernel larger than the padded input.
    let small = Tensor::zeros(vec![1, 4, 2, 2]).unwrap();
    operand_error(
        interp::conv2d(&small, &w, None, &conv(2, &ok, false)),
        "smaller than",
    );
    // Bias of the wrong length, and a bias the attributes do not declare.
    let b = Tensor::zeros(vec![3]).unwrap();
    operand_error(
        interp::conv2d(&x, &w, Some(&b), &conv(2, &ok, true)),
        "bias",
    );
    let b2 = Tensor::zeros(vec![2]).unwrap();
    operand_error(
        interp::conv2d(&x, &w, Some(&b2), &conv(2, &ok, false)),
        "bias",
    );
    operand_error(interp::conv2d(&x, &w, None, &conv(2, &ok, true)), "bias");
    // Attributes that disagree with the weight, and a zero stride.
    operand_error(
        interp::conv2d(&x, &w, None, &conv(5, &ok, false)),
        "out_channels",
    );
    operand_error(
        interp::conv2d(&x, &w, None, &conv(2, &simple(3, 0, 0, 1, 1), false)),
        "stride",
    );
    operand_error(
        interp::conv2d(&x, &w, None, &conv(2, &simple(3, 1, 0, 0, 1), false)),
        "dilation",
    );
}

#[test]
fn conv_transpose2d_rejects_inconsistent_operands() {
    let x = Tensor::zeros(vec![1, 4, 3, 3]).unwrap();
    let w = Tensor::zeros(vec![4, 2, 3, 3]).unwrap();
    let ok = simple(3, 2, 1, 1, 1);
    assert!(interp::conv_transpose2d(&x, &w, None, &conv_t(2, &ok, [1, 1], false)).is_ok());
    // output_padding must be below the stride (or the dilation).
    operand_error(
        interp::conv_transpose2d(&x, &w, None, &conv_t(2, &ok, [2, 0], false)),
        "output_padding",
    );
    // Weight for a different number of input channels.
    let w5 = Tensor::zeros(vec![5, 2, 3, 3]).unwrap();
    operand_error(
        interp::conv_transpose2d(&x, &w5, None, &conv_t(2, &ok, [0, 0], false)),
        "input channels",
    );
    // Padding that removes the whole output.
    let one = Tensor::zeros(vec![1, 4, 1, 1]).unwrap();
    let w1 = Tensor::zeros(vec![4, 2, 1, 1]).unwrap();
    operand_error(
        interp::conv_transpose2d(
            &one,
            &w1,
            None,
            &conv_t(2, &simple(1, 1, 1, 1, 1), [0, 0], false),
        ),
        "padding",
    );
    // Groups that do not divide the input channels.
    let w3 = Tensor::zeros(vec![4, 1, 3, 3]).unwrap();
    operand_error(
        interp::conv_transpose2d(
            &x,
            &w3,
            None,
            &conv_t(3, &simple(3, 1, 0, 1, 3), [0, 0], false),
        ),
        "groups",
    );
}
