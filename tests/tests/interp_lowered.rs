//! The interpreter's lowered ops (`im2col`, `gemm`, `col2im`,
//! `elementwise`, fused epilogues, `separable_conv2d`) on hand-computed
//! cases. That `im2col + gemm` is `conv2d` and `gemm + col2im` is
//! `conv_transpose2d` on random configurations is in `interp_conv.rs`.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    Activation, BinaryOp, Col2ImAttrs, Conv2dAttrs, ElementwiseAttrs, ElementwiseStep, Epilogue,
    Expansion, GemmAttrs, Im2ColAttrs, Padding, SeparableConv2dAttrs,
};
use nnc_tests::{assert_near, tensor};

fn gemm_attrs(out: usize, groups: usize, bias: bool) -> GemmAttrs {
    GemmAttrs {
        out_channels: out,
        groups,
        bias,
        epilogue: Epilogue::default(),
        winograd: None,
    }
}

#[test]
fn im2col_lays_each_window_tap_out_as_a_row() {
    // x = [[0 1 2], [3 4 5], [6 7 8]], 2x2 windows, stride 1: four columns.
    let x = tensor(&[1, 1, 3, 3], &(0..9).map(|v| v as f32).collect::<Vec<_>>());
    let a = Im2ColAttrs {
        kernel: [2, 2],
        stride: [1, 1],
        padding: Padding::ZERO,
        dilation: [1, 1],
    };
    let cols = interp::im2col(&x, &a).unwrap();
    #[rustfmt::skip]
    assert_near(&cols, &[1, 4, 2, 2], &[
        0., 1., 3., 4.,  // tap (0, 0) of each window
        1., 2., 4., 5.,  // tap (0, 1)
        3., 4., 6., 7.,  // tap (1, 0)
        4., 5., 7., 8.,  // tap (1, 1)
    ]);
}

#[test]
fn im2col_reads_zero_in_the_padding_and_skips_with_stride() {
    // x = [[1 2], [3 4]], 3x3 window, pad 1, stride 2: (2 + 2 - 3) / 2 + 1
    // = 1 window, starting at (-1, -1), so its first row and column of taps
    // read the zero padding.
    let x = tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let a = Im2ColAttrs {
        kernel: [3, 3],
        stride: [2, 2],
        padding: Padding::symmetric([1, 1]),
        dilation: [1, 1],
    };
    let cols = interp::im2col(&x, &a).unwrap();
    assert_near(&cols, &[1, 9, 1, 1], &[0., 0., 0., 0., 1., 2., 0., 3., 4.]);
}

#[test]
fn gemm_multiplies_over_channels_and_adds_the_bias() {
    // x has K = 2 channels of 3 positions; weight [[1, 0], [1, -1]].
    let x = tensor(&[1, 2, 3], &[1., 2., 3., 4., 5., 6.]);
    let w = tensor(&[2, 2], &[1., 0., 1., -1.]);
    let b = tensor(&[2], &[10., 20.]);
    let y = interp::gemm(&x, &w, Some(&b), &gemm_attrs(2, 1, true)).unwrap();
    assert_near(&y, &[1, 2, 3], &[11., 12., 13., 17., 17., 17.]);
}

#[test]
fn grouped_gemm_uses_each_groups_own_channels() {
    // Two groups of one input and two output channels each.
    let x = tensor(&[1, 2, 2], &[1., 2., 3., 4.]);
    let w = tensor(&[4, 1], &[1., 2., 3., 4.]);
    let y = interp::gemm(&x, &w, None, &gemm_attrs(4, 2, false)).unwrap();
    assert_near(&y, &[1, 4, 2], &[1., 2., 2., 4., 9., 12., 12., 16.]);
}

#[test]
fn col2im_adds_overlapping_taps() {
    // One output channel, 2x2 kernel, stride 1, columns over a 1x2 input:
    // the output is 2x3 and the middle column receives two taps.
    let cols = tensor(&[1, 4, 1, 2], &[1., 2., 10., 20., 100., 200., 1000., 2000.]);
    let a = Col2ImAttrs {
        out_channels: 1,
        kernel: [2, 2],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        output_size: [2, 3],
        bias: true,
        epilogue: Epilogue::default(),
    };
    let b = tensor(&[1], &[0.5]);
    let y = interp::col2im(&cols, Some(&b), &a).unwrap();
    assert_near(&y, &[1, 1, 2, 3], &[1.5, 12.5, 20.5, 100.5, 1200.5, 2000.5]);
}

#[test]
fn col2im_drops_taps_that_land_in_the_padding() {
    // Stride 2, pad 1, 3x3 kernel over one input pixel: only the centre
    // tap lands inside a 1x1 output.
    let cols = tensor(
        &[1, 9, 1, 1],
        &(1..=9).map(|v| v as f32).collect::<Vec<_>>(),
    );
    let a = Col2ImAttrs {
        out_channels: 1,
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
        output_size: [1, 1],
        bias: false,
        epilogue: Epilogue::default(),
    };
    let y = interp::col2im(&cols, None, &a).unwrap();
    assert_near(&y, &[1, 1, 1, 1], &[5.]);
}

#[test]
fn elementwise_runs_its_steps_in_order_with_broadcasting() {
    // ((x * s) + t) then relu then + y, with s and t per channel.
    let x = tensor(&[1, 2, 2], &[1., -2., 3., -4.]);
    let s = tensor(&[2, 1], &[2., -1.]);
    let t = tensor(&[2, 1], &[1., 0.5]);
    let y = tensor(&[2], &[10., 20.]);
    let a = ElementwiseAttrs {
        steps: vec![
            ElementwiseStep::Binary(BinaryOp::Mul, 1),
            ElementwiseStep::Binary(BinaryOp::Add, 2),
            ElementwiseStep::Activation(Activation::Relu),
            ElementwiseStep::Binary(BinaryOp::Add, 3),
        ],
    };
    let out = interp::elementwise(&[&x, &s, &t, &y], &a).unwrap();
    // Channel 0: 2x+1 = [3, -3] -> [3, 0]; channel 1: -x+0.5 = [-2.5, 4.5] -> [0, 4.5].
    assert_near(&out, &[1, 2, 2], &[13., 20., 10., 24.5]);
}

#[test]
fn elementwise_rejects_a_step_that_reads_a_missing_operand() {
    let x = tensor(&[2], &[1., 2.]);
    let a = ElementwiseAttrs {
        steps: vec![ElementwiseStep::Binary(BinaryOp::Add, 1)],
    };
    let err = interp::elementwise(&[&x], &a).unwrap_err();
    assert!(matches!(err, InterpError::Operands { .. }), "{err}");
}

#[test]
fn epilogue_adds_the_residual_before_the_activation() {
    let out = tensor(&[1, 4], &[1., -1., 3., -3.]);
    let residual = tensor(&[1, 4], &[1., 2., -5., 1.]);
    let e = Epilogue {
        residual: true,
        activation: Some(Activation::Clip { min: 0.0, max: 1.5 }),
    };
    let y = interp::epilogue(out.clone(), Some(&residual), &e).unwrap();
    assert_near(&y, &[1, 4], &[1.5, 1., 0., 0.]);
    // A residual that would need broadcasting is an error, not a broadcast.
    let row = tensor(&[4], &[0., 0., 0., 0.]);
    assert!(interp::epilogue(out.clone(), Some(&row), &e).is_err());
    // A residual the epilogue does not declare is an error too.
    assert!(interp::epilogue(out, Some(&residual), &Epilogue::default()).is_err());
}

/// A 1x1 depthwise conv of `channels` channels without bias.
fn depthwise_1x1(channels: usize, epilogue: Epilogue) -> Conv2dAttrs {
    Conv2dAttrs {
        out_channels: channels,
        kernel: [1, 1],
        stride: [1, 1],
        padding: Padding::ZERO,
        dilation: [1, 1],
        groups: channels,
        bias: false,
        epilogue,
    }
}

#[test]
fn separable_conv2d_is_depthwise_then_activation_then_pointwise() {
    // Two channels of a 1x2 image; 1x1 depthwise taps 2 and -1 with ReLU;
    // pointwise sums the two channels.
    let x = tensor(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
    let dw = tensor(&[2, 1, 1, 1], &[2., -1.]);
    let pw = tensor(&[1, 2], &[1., 1.]);
    let pb = tensor(&[1], &[0.25]);
    let a = SeparableConv2dAttrs {
        expand: None,
        depthwise: depthwise_1x1(
            2,
            Epilogue {
                residual: false,
                activation: Some(Activation::Relu),
            },
        ),
        out_channels: 1,
        bias: true,
        epilogue: Epilogue::default(),
    };
    let y = interp::separable_conv2d(&x, &[&dw, &pw, &pb], &a).unwrap();
    // Depthwise: [2, 4] and [-3, -4] -> relu -> [2, 4], [0, 0].
    assert_near(&y, &[1, 1, 1, 2], &[2.25, 4.25]);
    // A weight operand too many or too few is an error.
    assert!(interp::separable_conv2d(&x, &[&dw, &pw], &a).is_err());
    assert!(interp::separable_conv2d(&x, &[&dw, &pw, &pb, &pb], &a).is_err());
}

#[test]
fn separable_conv2d_with_an_expansion_expands_first() {
    // One input channel of a 1x2 image, [1, 3], expanded to two channels
    // by weights 1 and -2 with bias 0.5 and ReLU6: [1.5, 3.5] and
    // [0, 0] (from -1.5, -5.5). Then 1x1 depthwise taps 2 and 3 (no
    // activation): [3, 7] and [0, 0]; pointwise weights 1 and 1: [3, 7].
    let x = tensor(&[1, 1, 1, 2], &[1., 3.]);
    let ew = tensor(&[2, 1], &[1., -2.]);
    let eb = tensor(&[2], &[0.5, 0.5]);
    let dw = tensor(&[2, 1, 1, 1], &[2., 3.]);
    let pw = tensor(&[1, 2], &[1., 1.]);
    let a = SeparableConv2dAttrs {
        expand: Some(Expansion {
            in_channels: 1,
            bias: true,
            activation: Some(Activation::Relu6),
        }),
        depthwise: depthwise_1x1(2, Epilogue::default()),
        out_channels: 1,
        bias: false,
        epilogue: Epilogue::default(),
    };
    assert_eq!(a.depthwise_operand(), 3);
    let y = interp::separable_conv2d(&x, &[&ew, &eb, &dw, &pw], &a).unwrap();
    assert_near(&y, &[1, 1, 1, 2], &[3.0, 7.0]);
    // Without the expansion's bias operand the operands do not add up.
    assert!(interp::separable_conv2d(&x, &[&ew, &dw, &pw], &a).is_err());
}
