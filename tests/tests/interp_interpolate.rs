//! The reference interpreter's `interpolate` on hand-computed cases: each
//! coordinate transform, each nearest rounding at coordinates that land on
//! halves, bilinear weights with clamping at the edges, outputs of length
//! 1, and a scale that is not the ratio of the sizes.

use nnc_compiler::interp;
use nnc_compiler::ir::{CoordinateTransform, InterpolateAttrs, InterpolateMode, NearestRounding};
use nnc_runtime::Tensor;
use nnc_tests::{assert_near, tensor};

use CoordinateTransform::*;
use NearestRounding::*;

/// `[1, 1, h, w]` holding `row * w + col`.
fn grid(h: usize, w: usize) -> Tensor {
    Tensor::new(vec![1, 1, h, w], (0..h * w).map(|i| i as f32).collect()).unwrap()
}

/// `x` resized to `size` with `scale`.
fn resize(
    x: &Tensor,
    size: [usize; 2],
    scale: [f32; 2],
    mode: InterpolateMode,
    coordinate: CoordinateTransform,
) -> Tensor {
    let a = InterpolateAttrs {
        size,
        scale,
        mode,
        coordinate,
    };
    interp::interpolate(x, &a).unwrap()
}

fn nearest(r: NearestRounding) -> InterpolateMode {
    InterpolateMode::Nearest(r)
}

const BILINEAR: InterpolateMode = InterpolateMode::Bilinear;

#[test]
fn nearest_2x_repeats_each_pixel() {
    // PyTorch's default: asymmetric, floor.
    let y = resize(&grid(2, 3), [4, 6], [2.0, 2.0], nearest(Floor), Asymmetric);
    #[rustfmt::skip]
    let expected = [
        0., 0., 1., 1., 2., 2.,
        0., 0., 1., 1., 2., 2.,
        3., 3., 4., 4., 5., 5.,
        3., 3., 4., 4., 5., 5.,
    ];
    assert_near(&y, &[1, 1, 4, 6], &expected);
}

#[test]
fn halves_round_by_the_mode() {
    // Asymmetric at scale 2 puts odd outputs at 0.5, 1.5, 2.5, 3.5; H keeps
    // its one row (scale 1).
    let x = tensor(&[1, 1, 1, 4], &[10., 20., 30., 40.]);
    let run = |r| resize(&x, [1, 8], [1.0, 2.0], nearest(r), Asymmetric);
    let floor = [10., 10., 20., 20., 30., 30., 40., 40.];
    let ceil = [10., 20., 20., 30., 30., 40., 40., 40.];
    assert_near(&run(RoundPreferFloor), &[1, 1, 1, 8], &floor);
    assert_near(&run(Floor), &[1, 1, 1, 8], &floor);
    assert_near(&run(RoundPreferCeil), &[1, 1, 1, 8], &ceil);
    assert_near(&run(Ceil), &[1, 1, 1, 8], &ceil);
}

#[test]
fn nearest_downsampling_by_half_pixel() {
    // 5 -> 2, scale 0.4: coordinates 0.5/0.4 - 0.5 = 0.75 and 3.25.
    let x = grid(1, 5);
    let run = |r| resize(&x, [1, 2], [1.0, 0.4], nearest(r), HalfPixel);
    assert_near(&run(RoundPreferFloor), &[1, 1, 1, 2], &[1., 3.]);
    assert_near(&run(Floor), &[1, 1, 1, 2], &[0., 3.]);
    assert_near(&run(Ceil), &[1, 1, 1, 2], &[1., 4.]);
}

#[test]
fn tf_half_pixel_for_nn_shifts_by_half_a_pixel() {
    // 2 -> 4: coordinates (o + 0.5) / 2 = 0.25, 0.75, 1.25, 1.75; rows keep
    // their one pixel (scale 1 is the identity).
    let x = tensor(&[1, 1, 1, 2], &[5., 7.]);
    let run = |r| resize(&x, [1, 4], [1.0, 2.0], nearest(r), TfHalfPixelForNn);
    assert_near(&run(Floor), &[1, 1, 1, 4], &[5., 5., 7., 7.]);
    assert_near(&run(RoundPreferFloor), &[1, 1, 1, 4], &[5., 7., 7., 7.]);
}

#[test]
fn bilinear_half_pixel_2x() {
    // Coordinates -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1) on
    // both axes; the value is 2 * y + x there. PyTorch's
    // `F.interpolate(scale_factor=2, mode="bilinear")` gives the same.
    #[rustfmt::skip]
    let expected = [
        0.0, 0.25, 0.75, 1.0,
        0.5, 0.75, 1.25, 1.5,
        1.5, 1.75, 2.25, 2.5,
        2.0, 2.25, 2.75, 3.0,
    ];
    for coordinate in [HalfPixel, PytorchHalfPixel] {
        let y = resize(&grid(2, 2), [4, 4], [2.0, 2.0], BILINEAR, coordinate);
        assert_near(&y, &[1, 1, 4, 4], &expected);
    }
}

#[test]
fn bilinear_align_corners_keeps_the_corners() {
    // 2 -> 3: coordinates 0, 0.5, 1.
    let y = resize(&grid(2, 2), [3, 3], [1.5, 1.5], BILINEAR, AlignCorners);
    #[rustfmt::skip]
    let expected = [
        0.0, 0.5, 1.0,
        1.0, 1.5, 2.0,
        2.0, 2.5, 3.0,
    ];
    assert_near(&y, &[1, 1, 3, 3], &expected);
}

#[test]
fn bilinear_asymmetric_downsampling() {
    // 4 -> 3 along W (scale 0.75): coordinates 0, 4/3, 8/3.
    let y = resize(&grid(1, 4), [1, 3], [1.0, 0.75], BILINEAR, Asymmetric);
    assert_near(&y, &[1, 1, 1, 3], &[0.0, 4.0 / 3.0, 8.0 / 3.0]);
}

#[test]
fn an_output_of_one_pixel() {
    // [2, 4] to [1, 1]: half_pixel reads the centre, (0.5, 1.5), which is
    // 4 * 0.5 + 1.5; the PyTorch form and align_corners read (0, 0).
    let x = grid(2, 4);
    let y = resize(&x, [1, 1], [0.5, 0.25], BILINEAR, HalfPixel);
    assert_near(&y, &[1, 1, 1, 1], &[3.5]);
    for coordinate in [PytorchHalfPixel, AlignCorners] {
        let y = resize(&x, [1, 1], [0.5, 0.25], BILINEAR, coordinate);
        assert_near(&y, &[1, 1, 1, 1], &[0.0]);
    }
}

#[test]
fn the_scale_need_not_be_the_ratio_of_the_sizes() {
    // ONNX's keep_aspect_ratio_policy: 4 -> 3 at scale 0.5 reads 0, 2 and
    // 4 (clamped to 3).
    let x = tensor(&[1, 1, 1, 4], &[1., 2., 3., 4.]);
    let y = resize(&x, [1, 3], [1.0, 0.5], nearest(Floor), Asymmetric);
    assert_near(&y, &[1, 1, 1, 3], &[1., 3., 4.]);
}

#[test]
fn half_pixel_symmetric_centres_a_rounded_output() {
    // 5 -> 2 at scale 0.5 (2.5 rounded down): half_pixel would read 0.5
    // and 2.5; the symmetric form shifts both by 0.5.
    let y = resize(
        &grid(1, 5),
        [1, 2],
        [1.0, 0.5],
        BILINEAR,
        HalfPixelSymmetric,
    );
    assert_near(&y, &[1, 1, 1, 2], &[1.0, 3.0]);
}

#[test]
fn every_plane_is_resized_alike() {
    // Batch 2, 2 channels: each plane is its own grid offset by 10 per plane.
    let data: Vec<f32> = (0..4)
        .flat_map(|p| (0..4).map(move |i| (10 * p + i) as f32))
        .collect();
    let x = Tensor::new(vec![2, 2, 2, 2], data).unwrap();
    let y = resize(&x, [1, 1], [0.5, 0.5], nearest(Floor), Asymmetric);
    assert_near(&y, &[2, 2, 1, 1], &[0., 10., 20., 30.]);
}

#[test]
fn a_rank_3_input_is_an_error() {
    let x = tensor(&[1, 2, 2], &[0.; 4]);
    let a = InterpolateAttrs {
        size: [2, 2],
        scale: [1.0, 1.0],
        mode: BILINEAR,
        coordinate: HalfPixel,
    };
    assert!(interp::interpolate(&x, &a).is_err());
}
