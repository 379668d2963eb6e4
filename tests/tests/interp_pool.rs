//! The reference interpreter's pools: hand-computed `max_pool2d` (padding,
//! dilation, `ceil_mode`, NaN), `avg_pool2d` (`count_include_pad` both ways,
//! `ceil_mode` with PyTorch's divisor rule), both with padding that differs
//! per side, and `global_avg_pool`.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{AvgPool2dAttrs, MaxPool2dAttrs, Padding};
use nnc_runtime::Tensor;
use nnc_tests::{assert_near, tensor};

/// `[1, 1, h, w]` holding `row * w + col`.
fn grid(h: usize, w: usize) -> Tensor {
    Tensor::new(vec![1, 1, h, w], (0..h * w).map(|i| i as f32).collect()).unwrap()
}

fn max(kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> MaxPool2dAttrs {
    MaxPool2dAttrs {
        kernel: [kernel; 2],
        stride: [stride; 2],
        padding: Padding::symmetric([padding; 2]),
        dilation: [1, 1],
        ceil_mode,
    }
}

fn avg(
    kernel: usize,
    stride: usize,
    padding: usize,
    ceil_mode: bool,
    count_include_pad: bool,
) -> AvgPool2dAttrs {
    AvgPool2dAttrs {
        kernel: [kernel; 2],
        stride: [stride; 2],
        padding: Padding::symmetric([padding; 2]),
        ceil_mode,
        count_include_pad,
    }
}

// ------------------------------------------------------------- max_pool2d

#[test]
fn max_pool_2x2_stride_2() {
    let y = interp::max_pool2d(&grid(4, 4), &max(2, 2, 0, false)).unwrap();
    assert_near(&y, &[1, 1, 2, 2], &[5., 7., 13., 15.]);
}

#[test]
fn max_pool_padding_is_minus_infinity() {
    // All values negative: zero padding would win, -inf padding never does.
    let x = tensor(
        &[1, 1, 3, 3],
        &[-1., -2., -3., -4., -5., -6., -7., -8., -9.],
    );
    let y = interp::max_pool2d(&x, &max(3, 2, 1, false)).unwrap();
    assert_near(&y, &[1, 1, 2, 2], &[-1., -2., -4., -5.]);
}

#[test]
fn max_pool_ceil_mode_keeps_the_partial_last_window() {
    // 5x5, kernel 2, stride 2: floor gives 2 windows per axis, ceil gives 3,
    // the last covering only row/col 4.
    let floor = interp::max_pool2d(&grid(5, 5), &max(2, 2, 0, false)).unwrap();
    assert_near(&floor, &[1, 1, 2, 2], &[6., 8., 16., 18.]);
    let ceil = interp::max_pool2d(&grid(5, 5), &max(2, 2, 0, true)).unwrap();
    assert_near(
        &ceil,
        &[1, 1, 3, 3],
        &[6., 8., 9., 16., 18., 19., 21., 23., 24.],
    );
}

#[test]
fn max_pool_ceil_mode_drops_a_window_starting_in_the_padding() {
    // 5x5, kernel 2, stride 2, pad 1: ceil((5+2-2)/2)+1 = 4, but the 4th
    // window would start at padded index 6 = 5 + pad, inside the right
    // padding, so PyTorch drops it and the output is 3x3. Windows cover real
    // rows {0}, {1, 2}, {3, 4}.
    let y = interp::max_pool2d(&grid(5, 5), &max(2, 2, 1, true)).unwrap();
    assert_near(
        &y,
        &[1, 1, 3, 3],
        &[0., 2., 4., 10., 12., 14., 20., 22., 24.],
    );
}

#[test]
fn max_pool_padding_that_differs_per_side() {
    // pad=[top 1, left 0, bottom 0, right 1], kernel 2, stride 2 on 3x3:
    // H and W are floor((3 + 1 - 2) / 2) + 1 = 2. Rows {-1, 0}, {1, 2};
    // columns {0, 1}, {2, 3}; -1 and 3 are padding, which never wins.
    let x = tensor(
        &[1, 1, 3, 3],
        &[-1., -2., -3., -4., -5., -6., -7., -8., -9.],
    );
    let a = MaxPool2dAttrs {
        padding: Padding::from_sides([1, 0, 0, 1]),
        ..max(2, 2, 0, false)
    };
    let y = interp::max_pool2d(&x, &a).unwrap();
    assert_near(&y, &[1, 1, 2, 2], &[-1., -3., -4., -6.]);
}

#[test]
fn max_pool_ceil_mode_drops_a_window_starting_in_the_bottom_padding() {
    // 4x4 grid, kernel 2, stride 2, ceil mode, pad=[0, 1, 1, 0]. H: ceil((4
    // + 1 - 2) / 2) + 1 = 3 windows, but the third starts at row 4, in the
    // bottom padding: 2 (rows {0, 1}, {2, 3}). W: ceil((4 + 1 - 2) / 2) +
    // 1 = 3, the third starting at padded column 4 = input column 3, inside
    // the input: columns {-1, 0}, {1, 2}, {3, 4}.
    let a = MaxPool2dAttrs {
        padding: Padding::from_sides([0, 1, 1, 0]),
        ..max(2, 2, 0, true)
    };
    let y = interp::max_pool2d(&grid(4, 4), &a).unwrap();
    assert_near(&y, &[1, 1, 2, 3], &[4., 6., 7., 12., 14., 15.]);
}

#[test]
fn max_pool_dilation() {
    let x = tensor(&[1, 1, 1, 5], &[5., 1., 4., 2., 3.]);
    let a = MaxPool2dAttrs {
        kernel: [1, 2],
        stride: [1, 1],
        padding: Padding::ZERO,
        dilation: [1, 2],
        ceil_mode: false,
    };
    let y = interp::max_pool2d(&x, &a).unwrap();
    // max(x[j], x[j+2]).
    assert_near(&y, &[1, 1, 1, 3], &[5., 2., 4.]);
}

#[test]
fn max_pool_propagates_nan() {
    let x = tensor(&[1, 1, 1, 4], &[1., f32::NAN, 3., 0.]);
    let a = MaxPool2dAttrs {
        kernel: [1, 2],
        stride: [1, 2],
        padding: Padding::ZERO,
        dilation: [1, 1],
        ceil_mode: false,
    };
    let y = interp::max_pool2d(&x, &a).unwrap();
    assert!(y.data()[0].is_nan());
    assert_eq!(y.data()[1], 3.0);
}

#[test]
fn max_pool_handles_channels_and_batches_separately() {
    let x = tensor(&[2, 2, 1, 2], &[1., 2., 30., 40., -5., -6., 7., 0.]);
    let y = interp::max_pool2d(
        &x,
        &MaxPool2dAttrs {
            kernel: [1, 2],
            stride: [1, 2],
            ..max(1, 1, 0, false)
        },
    )
    .unwrap();
    assert_near(&y, &[2, 2, 1, 1], &[2., 40., -5., 7.]);
}

// ------------------------------------------------------------- avg_pool2d

#[test]
fn avg_pool_2x2_stride_2() {
    let y = interp::avg_pool2d(&grid(4, 4), &avg(2, 2, 0, false, true)).unwrap();
    assert_near(&y, &[1, 1, 2, 2], &[2.5, 4.5, 10.5, 12.5]);
}

#[test]
fn avg_pool_padding_counted_or_not() {
    let x = tensor(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    // Every window is 2x2 in the padded input; the real elements it covers
    // sum to these values, and there are this many of them.
    let sums = [1., 3., 2., 4., 10., 6., 3., 7., 4.];
    let counts = [1., 2., 1., 2., 4., 2., 1., 2., 1.];
    let with_pad = interp::avg_pool2d(&x, &avg(2, 1, 1, false, true)).unwrap();
    let expected: Vec<f32> = sums.iter().map(|s| s / 4.0).collect();
    assert_near(&with_pad, &[1, 1, 3, 3], &expected);
    let without_pad = interp::avg_pool2d(&x, &avg(2, 1, 1, false, false)).unwrap();
    let expected: Vec<f32> = sums.iter().zip(counts).map(|(s, c)| s / c).collect();
    assert_near(&without_pad, &[1, 1, 3, 3], &expected);
}

#[test]
fn avg_pool_ceil_mode_divides_by_the_window_clipped_to_the_input() {
    // 3x3, kernel 2, stride 2, no padding, ceil mode: the last window per
    // axis hangs off the input; PyTorch divides by the part inside
    // (min(start + k, H + pad) - start), even with count_include_pad.
    let x = tensor(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    for include in [true, false] {
        let y = interp::avg_pool2d(&x, &avg(2, 2, 0, true, include)).unwrap();
        assert_near(&y, &[1, 1, 2, 2], &[3., 4.5, 7.5, 9.]);
    }
}

#[test]
fn avg_pool_ceil_mode_with_padding() {
    // 4x4 grid, kernel 3, stride 2, pad 1, ceil mode: 3 windows per axis
    // (floor mode would give 2). In input coordinates they start at -1, 1,
    // 3 and end (clipped to H + pad = 5) at 2, 4, 5, so the padded sizes are
    // 3, 3, 2 and the real rows {0, 1}, {1, 2, 3}, {3}. A window over real
    // rows R and cols C sums 4 * |C| * sum(R) + |R| * sum(C).
    let real: [&[f32]; 3] = [&[0., 1.], &[1., 2., 3.], &[3.]];
    let padded = [3., 3., 2.];
    let mut sums = Vec::new();
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for (r, pr) in real.iter().zip(padded) {
        for (c, pc) in real.iter().zip(padded) {
            let s = 4. * c.len() as f32 * r.iter().sum::<f32>()
                + r.len() as f32 * c.iter().sum::<f32>();
            sums.push(s);
            include.push(s / (pr * pc));
            exclude.push(s / (r.len() * c.len()) as f32);
        }
    }
    assert_eq!(sums, [10., 24., 10., 51., 90., 33., 25., 42., 15.]);
    let y = interp::avg_pool2d(&grid(4, 4), &avg(3, 2, 1, true, true)).unwrap();
    assert_near(&y, &[1, 1, 3, 3], &include);
    let y = interp::avg_pool2d(&grid(4, 4), &avg(3, 2, 1, true, false)).unwrap();
    assert_near(&y, &[1, 1, 3, 3], &exclude);
    // The last window without padding is exactly element (3, 3).
    assert_eq!(y.data()[8], 15.0);
}

#[test]
fn avg_pool_padding_that_differs_per_side_with_ceil_mode() {
    // 4x4 grid (0..16), kernel 2, stride 2, ceil mode, pad=[0, 1, 1, 0]:
    // 2 rows of windows, {0, 1} and {2, 3}, each 2 tall in the padded
    // input; 3 columns, {-1, 0}, {1, 2} and {3, 4}, clipped to the padded
    // input (-1..4) as 2, 2 and 1 wide, with 1, 2 and 1 real columns.
    // Sums: 0+4, 1+2+5+6, 3+7 in the first row of windows, and 8+12,
    // 9+10+13+14, 11+15 in the second.
    let sums = [4., 14., 10., 20., 46., 26.];
    let include: Vec<f32> = sums
        .iter()
        .zip([4., 4., 2.].repeat(2))
        .map(|(s, d)| s / d)
        .collect();
    let exclude: Vec<f32> = sums
        .iter()
        .zip([2., 4., 2.].repeat(2))
        .map(|(s, d)| s / d)
        .collect();
    for (count_include_pad, expected) in [(true, include), (false, exclude)] {
        let a = AvgPool2dAttrs {
            padding: Padding::from_sides([0, 1, 1, 0]),
            ..avg(2, 2, 0, true, count_include_pad)
        };
        let y = interp::avg_pool2d(&grid(4, 4), &a).unwrap();
        assert_near(&y, &[1, 1, 2, 3], &expected);
    }
}

#[test]
fn avg_pool_divides_by_the_window_clipped_to_both_paddings() {
    // One row of 3, kernel 3, stride 2, pad left 1 and right 0 with
    // ceil mode: ceil((3 + 1 - 3) / 2) + 1 = 2 windows, starting at padded
    // columns 0 and 2 (input columns -1 and 1). The padded input is 4 wide,
    // so the second window (2..5) is clipped to 2 columns, both real.
    let x = tensor(&[1, 1, 1, 3], &[3., 6., 9.]);
    let a = AvgPool2dAttrs {
        kernel: [1, 3],
        stride: [1, 2],
        padding: Padding::from_sides([0, 1, 0, 0]),
        ceil_mode: true,
        count_include_pad: true,
    };
    let y = interp::avg_pool2d(&x, &a).unwrap();
    // (0 + 3 + 6) / 3 and (6 + 9) / 2.
    assert_near(&y, &[1, 1, 1, 2], &[3., 7.5]);
    let y = interp::avg_pool2d(
        &x,
        &AvgPool2dAttrs {
            count_include_pad: false,
            ..a
        },
    )
    .unwrap();
    assert_near(&y, &[1, 1, 1, 2], &[4.5, 7.5]);
}

#[test]
fn global_avg_pool_means_each_plane() {
    let x = tensor(&[1, 2, 2, 2], &[1., 2., 3., 4., -1., 1., 5., 7.]);
    let y = interp::global_avg_pool(&x).unwrap();
    assert_near(&y, &[1, 2, 1, 1], &[2.5, 3.]);
    let x = tensor(&[2, 1, 1, 3], &[3., 6., 9., 0., 0., -3.]);
    let y = interp::global_avg_pool(&x).unwrap();
    assert_near(&y, &[2, 1, 1, 1], &[6., -1.]);
}

// ------------------------------------------------------------- errors

#[test]
fn pools_reject_bad_operands() {
    let x = grid(4, 4);
    let is_operand_error =
        |r: Result<Tensor, InterpError>| matches!(r, Err(InterpError::Operands { .. }));
    // Padding larger than half the kernel, on any one side.
    assert!(is_operand_error(interp::max_pool2d(
        &x,
        &max(2, 2, 2, false)
    )));
    assert!(is_operand_error(interp::max_pool2d(
        &x,
        &MaxPool2dAttrs {
            padding: Padding::from_sides([0, 0, 0, 2]),
            ..max(3, 1, 0, false)
        }
    )));
    assert!(is_operand_error(interp::avg_pool2d(
        &x,
        &avg(3, 1, 2, false, true)
    )));
    // Kernel larger than the input, zero stride, zero kernel.
    assert!(is_operand_error(interp::max_pool2d(
        &x,
        &max(5, 1, 0, false)
    )));
    assert!(is_operand_error(interp::avg_pool2d(
        &x,
        &avg(2, 0, 0, false, true)
    )));
    assert!(is_operand_error(interp::max_pool2d(
        &x,
        &max(0, 1, 0, false)
    )));
    // Wrong rank.
    let x3 = Tensor::zeros(vec![1, 4, 4]).unwrap();
    assert!(is_operand_error(interp::max_pool2d(
        &x3,
        &max(2, 2, 0, false)
    )));
    assert!(is_operand_error(interp::avg_pool2d(
        &x3,
        &avg(2, 2, 0, false, true)
    )));
    assert!(is_operand_error(interp::global_avg_pool(&x3)));
}
