//! The reference interpreter's norms: hand-computed `batch_norm`,
//! `group_norm`, `layer_norm`, `instance_norm` and `local_response_norm`
//! (both window placements), and the identities
//! `layer_norm == group_norm(groups=1)` and `instance_norm ==
//! group_norm(groups=C)` on seeded random tensors.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    BatchNormAttrs, GroupNormAttrs, InstanceNormAttrs, LayerNormAttrs, LocalResponseNormAttrs,
};
use nnc_runtime::Tensor;
use nnc_tests::{assert_close, assert_near, tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(-2.0f32..3.0)).collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn gn(groups: usize, eps: f32, affine: bool) -> GroupNormAttrs {
    GroupNormAttrs {
        groups,
        eps,
        affine,
    }
}

fn ln(normalized_dims: usize, eps: f32, affine: bool) -> LayerNormAttrs {
    LayerNormAttrs {
        normalized_dims,
        eps,
        affine,
    }
}

fn inorm(eps: f32, affine: bool) -> InstanceNormAttrs {
    InstanceNormAttrs { eps, affine }
}

// ------------------------------------------------------------- batch_norm

#[test]
fn batch_norm_rank_2_per_channel() {
    // [N=2, C=2]; eps=0.25 turns the variances 3.75 and 0 into std 2 and 0.5.
    let x = tensor(&[2, 2], &[1., 2., 3., 4.]);
    let gamma = tensor(&[2], &[2., 0.5]);
    let beta = tensor(&[2], &[1., -1.]);
    let mean = tensor(&[2], &[1., 2.]);
    let var = tensor(&[2], &[3.75, 0.]);
    let y = interp::batch_norm(
        &x,
        &gamma,
        &beta,
        &mean,
        &var,
        &BatchNormAttrs { eps: 0.25 },
    )
    .unwrap();
    // Channel 0: 2 (x-1)/2 + 1 = x; channel 1: 0.5 (x-2)/0.5 - 1 = x - 3.
    assert_close(&y, &[2, 2], &[1., -1., 3., 1.], 1e-6);
}

#[test]
fn batch_norm_rank_4_uses_dim_1() {
    let x = tensor(&[1, 2, 1, 2], &[1., 5., 2., 3.]);
    let gamma = tensor(&[2], &[2., 0.5]);
    let beta = tensor(&[2], &[1., -1.]);
    let mean = tensor(&[2], &[1., 2.]);
    let var = tensor(&[2], &[4., 0.25]);
    let y =
        interp::batch_norm(&x, &gamma, &beta, &mean, &var, &BatchNormAttrs { eps: 0.0 }).unwrap();
    assert_close(&y, &[1, 2, 1, 2], &[1., 5., -1., 0.], 1e-6);
}

#[test]
fn batch_norm_rejects_mis_shaped_parameters() {
    let x = Tensor::zeros(vec![1, 3, 2, 2]).unwrap();
    let p3 = Tensor::zeros(vec![3]).unwrap();
    let p2 = Tensor::zeros(vec![2]).unwrap();
    let a = BatchNormAttrs { eps: 1e-5 };
    assert!(interp::batch_norm(&x, &p3, &p3, &p3, &p3, &a).is_ok());
    let err = interp::batch_norm(&x, &p3, &p3, &p3, &p2, &a).unwrap_err();
    assert!(err.to_string().contains("running_var"), "{err}");
    let x1 = Tensor::zeros(vec![3]).unwrap();
    assert!(matches!(
        interp::batch_norm(&x1, &p3, &p3, &p3, &p3, &a),
        Err(InterpError::Operands { .. })
    ));
}

// ------------------------------------------------------------- group_norm

#[test]
fn group_norm_two_groups_with_affine() {
    // Group 0 = channels 0, 1 = [1, 3, 5, 7]: mean 4, variance 5.
    // Group 1 = channels 2, 3 = [2, 2, 2, 6]: mean 3, variance 3.
    let x = tensor(&[1, 4, 1, 2], &[1., 3., 5., 7., 2., 2., 2., 6.]);
    let s5 = 5f32.sqrt();
    let s3 = 3f32.sqrt();
    let plain = interp::group_norm(&x, None, None, &gn(2, 0.0, false)).unwrap();
    let expected = [
        -3. / s5,
        -1. / s5,
        1. / s5,
        3. / s5,
        -1. / s3,
        -1. / s3,
        -1. / s3,
        3. / s3,
    ];
    assert_close(&plain, &[1, 4, 1, 2], &expected, 1e-6);

    let w = tensor(&[4], &[1., 2., 3., 4.]);
    let b = tensor(&[4], &[0., 1., 0., -1.]);
    let y = interp::group_norm(&x, Some(&w), Some(&b), &gn(2, 0.0, true)).unwrap();
    let expected = [
        -3. / s5,
        -1. / s5,
        2. * 1. / s5 + 1.,
        2. * 3. / s5 + 1.,
        -3. / s3,
        -3. / s3,
        -4. / s3 - 1.,
        4. * 3. / s3 - 1.,
    ];
    assert_close(&y, &[1, 4, 1, 2], &expected, 1e-6);
}

#[test]
fn group_norm_normalises_each_sample_separately() {
    // Sample 1 is sample 0 scaled by 10 and shifted by 7; both normalise to
    // the same values.
    let x = tensor(&[2, 2, 1, 1], &[1., 3., 17., 37.]);
    let y = interp::group_norm(&x, None, None, &gn(1, 0.0, false)).unwrap();
    assert_close(&y, &[2, 2, 1, 1], &[-1., 1., -1., 1.], 1e-6);
}

#[test]
fn group_norm_adds_eps_to_the_variance() {
    // [0, 2]: mean 1, variance 1; eps 3 makes the std 2.
    let x = tensor(&[1, 2, 1], &[0., 2.]);
    let y = interp::group_norm(&x, None, None, &gn(1, 3.0, false)).unwrap();
    assert_close(&y, &[1, 2, 1], &[-0.5, 0.5], 1e-6);
}

#[test]
fn group_norm_rejects_bad_groups_and_affine() {
    let x = Tensor::zeros(vec![1, 6, 2, 2]).unwrap();
    assert!(interp::group_norm(&x, None, None, &gn(4, 1e-5, false)).is_err());
    assert!(interp::group_norm(&x, None, None, &gn(0, 1e-5, false)).is_err());
    let w = Tensor::zeros(vec![6]).unwrap();
    let w5 = Tensor::zeros(vec![5]).unwrap();
    assert!(interp::group_norm(&x, Some(&w), Some(&w), &gn(3, 1e-5, true)).is_ok());
    assert!(interp::group_norm(&x, Some(&w5), Some(&w), &gn(3, 1e-5, true)).is_err());
    assert!(interp::group_norm(&x, None, None, &gn(3, 1e-5, true)).is_err());
    assert!(interp::group_norm(&x, Some(&w), Some(&w), &gn(3, 1e-5, false)).is_err());
}

// ------------------------------------------------------------- layer_norm

#[test]
fn layer_norm_last_dim_with_affine() {
    // Row 0 = [1, 2, 3]: mean 2, variance 2/3. Row 1 = [0, 0, 6]: mean 2, variance 8.
    let x = tensor(&[2, 3], &[1., 2., 3., 0., 0., 6.]);
    let r0 = (2.0f32 / 3.0).sqrt();
    let r1 = 8f32.sqrt();
    let plain = interp::layer_norm(&x, None, None, &ln(1, 0.0, false)).unwrap();
    assert_close(
        &plain,
        &[2, 3],
        &[-1. / r0, 0., 1. / r0, -2. / r1, -2. / r1, 4. / r1],
        1e-6,
    );

    let w = tensor(&[3], &[1., 2., 3.]);
    let b = tensor(&[3], &[0., 0., 1.]);
    let y = interp::layer_norm(&x, Some(&w), Some(&b), &ln(1, 0.0, true)).unwrap();
    let expected = [
        -1. / r0,
        0.,
        3. / r0 + 1.,
        -2. / r1,
        -4. / r1,
        12. / r1 + 1.,
    ];
    assert_close(&y, &[2, 3], &expected, 1e-6);
}

#[test]
fn layer_norm_over_two_dims_with_elementwise_affine() {
    // [1, 2, 3, 4]: mean 2.5, variance 1.25, eps 0.75 makes it 2.
    let x = tensor(&[1, 2, 2], &[1., 2., 3., 4.]);
    let w = tensor(&[2, 2], &[1., -1., 2., 0.]);
    let b = tensor(&[2, 2], &[0., 0., 0., 5.]);
    let s = 2f32.sqrt();
    let y = interp::layer_norm(&x, Some(&w), Some(&b), &ln(2, 0.75, true)).unwrap();
    assert_close(&y, &[1, 2, 2], &[-1.5 / s, 0.5 / s, 1.0 / s, 5.], 1e-6);
}

#[test]
fn layer_norm_rejects_bad_dims_and_affine_shapes() {
    let x = Tensor::zeros(vec![2, 3, 4]).unwrap();
    assert!(interp::layer_norm(&x, None, None, &ln(0, 1e-5, false)).is_err());
    assert!(interp::layer_norm(&x, None, None, &ln(4, 1e-5, false)).is_err());
    let w = Tensor::zeros(vec![3, 4]).unwrap();
    let wrong = Tensor::zeros(vec![4, 3]).unwrap();
    assert!(interp::layer_norm(&x, Some(&w), Some(&w), &ln(2, 1e-5, true)).is_ok());
    assert!(interp::layer_norm(&x, Some(&wrong), Some(&w), &ln(2, 1e-5, true)).is_err());
    assert!(interp::layer_norm(&x, Some(&w), Some(&w), &ln(1, 1e-5, true)).is_err());
}

// ------------------------------------------------------------- instance_norm

#[test]
fn instance_norm_per_sample_and_channel_with_affine() {
    // (n, c) planes: [1, 3] (mean 2, var 1), [2, 6] (mean 4, var 4),
    // [0, 10] (mean 5, var 25), [-1, -1] (var 0).
    let x = tensor(&[2, 2, 1, 2], &[1., 3., 2., 6., 0., 10., -1., -1.]);
    let eps = 1e-5f32;
    let w = tensor(&[2], &[2., 3.]);
    let b = tensor(&[2], &[1., -1.]);
    let y = interp::instance_norm(&x, Some(&w), Some(&b), &inorm(eps, true)).unwrap();
    let n1 = 1. / (1. + eps).sqrt();
    let n2 = 2. / (4. + eps).sqrt();
    let n3 = 5. / (25. + eps).sqrt();
    let expected = [
        1. - 2. * n1,
        1. + 2. * n1,
        -1. - 3. * n2,
        -1. + 3. * n2,
        1. - 2. * n3,
        1. + 2. * n3,
        -1.,
        -1.,
    ];
    assert_close(&y, &[2, 2, 1, 2], &expected, 1e-6);
}

#[test]
fn instance_norm_requires_spatial_dims() {
    let x = Tensor::zeros(vec![2, 3]).unwrap();
    assert!(interp::instance_norm(&x, None, None, &inorm(1e-5, false)).is_err());
    let x = Tensor::zeros(vec![2, 3, 4]).unwrap();
    assert!(interp::instance_norm(&x, None, None, &inorm(1e-5, false)).is_ok());
    let w = Tensor::zeros(vec![4]).unwrap();
    assert!(interp::instance_norm(&x, Some(&w), Some(&w), &inorm(1e-5, true)).is_err());
}

// ------------------------------------------------------------- identities

/// Repeats a per-channel vector over `inner` positions: `[C] -> [C, inner]`.
fn per_channel(v: &Tensor, shape: &[usize]) -> Tensor {
    let inner: usize = shape[1..].iter().product();
    let data = v
        .data()
        .iter()
        .flat_map(|&g| std::iter::repeat_n(g, inner))
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

#[test]
fn layer_norm_is_group_norm_with_one_group() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for (n, c, h, w) in [(2, 3, 4, 5), (1, 6, 1, 7), (3, 1, 2, 2)] {
        let x = random(&[n, c, h, w], &mut rng);
        let g = interp::group_norm(&x, None, None, &gn(1, 1e-5, false)).unwrap();
        let l = interp::layer_norm(&x, None, None, &ln(3, 1e-5, false)).unwrap();
        assert_close(&g, l.shape(), l.data(), 1e-5);

        // With the group norm's per-channel affine spread over (C, H, W).
        let gamma = random(&[c], &mut rng);
        let beta = random(&[c], &mut rng);
        let g = interp::group_norm(&x, Some(&gamma), Some(&beta), &gn(1, 1e-5, true)).unwrap();
        let l = interp::layer_norm(
            &x,
            Some(&per_channel(&gamma, &[c, h, w])),
            Some(&per_channel(&beta, &[c, h, w])),
            &ln(3, 1e-5, true),
        )
        .unwrap();
        assert_close(&g, l.shape(), l.data(), 1e-5);
    }
}

#[test]
fn instance_norm_is_group_norm_with_one_group_per_channel() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    for (n, c, h, w) in [(2, 3, 4, 5), (1, 8, 3, 1), (2, 1, 5, 5)] {
        let x = random(&[n, c, h, w], &mut rng);
        let g = interp::group_norm(&x, None, None, &gn(c, 1e-5, false)).unwrap();
        let i = interp::instance_norm(&x, None, None, &inorm(1e-5, false)).unwrap();
        assert_close(&g, i.shape(), i.data(), 1e-5);

        let gamma = random(&[c], &mut rng);
        let beta = random(&[c], &mut rng);
        let g = interp::group_norm(&x, Some(&gamma), Some(&beta), &gn(c, 1e-5, true)).unwrap();
        let i = interp::instance_norm(&x, Some(&gamma), Some(&beta), &inorm(1e-5, true)).unwrap();
        assert_close(&g, i.shape(), i.data(), 1e-5);
    }
}

#[test]
fn normalised_groups_have_zero_mean_and_unit_variance() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let (n, c, h, w, groups) = (2, 6, 3, 4, 3);
    let x = random(&[n, c, h, w], &mut rng);
    let y = interp::group_norm(&x, None, None, &gn(groups, 0.0, false)).unwrap();
    for group in y.data().chunks(c / groups * h * w) {
        let count = group.len() as f64;
        let mean = group.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
        let var = group
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / count;
        assert!(mean.abs() < 1e-5, "mean {mean}");
        assert!(
            (var - 1.0).abs() < 1e-4,
            "variance {var} (biased, divide by count)"
        );
    }
}

#[test]
fn group_norm_ignores_positive_scale_and_shift_of_its_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let x = random(&[2, 4, 3, 3], &mut rng);
    let moved = Tensor::new(
        x.shape().to_vec(),
        x.data().iter().map(|&v| 3.0 * v + 5.0).collect(),
    )
    .unwrap();
    let a = gn(2, 0.0, false);
    let y = interp::group_norm(&x, None, None, &a).unwrap();
    let z = interp::group_norm(&moved, None, None, &a).unwrap();
    assert_close(&z, y.shape(), y.data(), 1e-5);
}

#[test]
fn batch_norm_matches_a_per_element_formula_on_random_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let (n, c, h, w) = (2, 3, 2, 3);
    let x = random(&[n, c, h, w], &mut rng);
    let gamma = random(&[c], &mut rng);
    let beta = random(&[c], &mut rng);
    let mean = random(&[c], &mut rng);
    let var = Tensor::new(vec![c], (0..c).map(|i| 0.5 + i as f32).collect()).unwrap();
    let eps = 1e-3;
    let y = interp::batch_norm(&x, &gamma, &beta, &mean, &var, &BatchNormAttrs { eps }).unwrap();
    let mut expected = Vec::new();
    for (i, &v) in x.data().iter().enumerate() {
        let ch = (i / (h * w)) % c;
        expected.push(
            gamma.data()[ch] * (v - mean.data()[ch]) / (var.data()[ch] + eps).sqrt()
                + beta.data()[ch],
        );
    }
    assert_close(&y, &[n, c, h, w], &expected, 1e-5);
}

// ---------------------------------------------------- local_response_norm

fn lrn(size: usize, alpha: f32, beta: f32, k: f32, before: usize) -> LocalResponseNormAttrs {
    LocalResponseNormAttrs {
        size,
        alpha,
        beta,
        k,
        before,
    }
}

#[test]
fn local_response_norm_even_window_either_side() {
    // Channels 1, 2, 3, 4 at one position; alpha = size makes the scale 1,
    // and beta = 1, k = 1 leave y = x / (1 + sum of squares).
    let x = tensor(&[1, 4, 1, 1], &[1., 2., 3., 4.]);
    // PyTorch's window of 2 is the channel and the one before it.
    let y = interp::local_response_norm(&x, &lrn(2, 2., 1., 1., 1)).unwrap();
    assert_near(&y, &[1, 4, 1, 1], &[1. / 2., 2. / 6., 3. / 14., 4. / 26.]);
    // ONNX's is the channel and the one after it.
    let y = interp::local_response_norm(&x, &lrn(2, 2., 1., 1., 0)).unwrap();
    assert_near(&y, &[1, 4, 1, 1], &[1. / 6., 2. / 14., 3. / 26., 4. / 17.]);
}

#[test]
fn local_response_norm_per_position_on_rank_3() {
    // [N=1, C=3, L=2]: channels [1, -1], [2, 0], [0, 3]; a window of 3
    // centred on the channel, scale 1, k = 0, beta = 0.5: y = x / norm.
    let x = tensor(&[1, 3, 2], &[1., -1., 2., 0., 0., 3.]);
    let y = interp::local_response_norm(&x, &lrn(3, 3., 0.5, 0., 1)).unwrap();
    let r5 = 5f32.sqrt();
    // Position 0 sums 1+4, 1+4+0, 4+0; position 1 sums 1+0, 1+0+9, 0+9.
    assert_near(&y, &[1, 3, 2], &[1. / r5, -1., 2. / r5, 0., 0., 1.]);
}

#[test]
fn local_response_norm_defaults_and_a_window_wider_than_the_channels() {
    // PyTorch's defaults on channels 3 and -4 (size 5 covers both):
    // y = x / (1 + 1e-4 / 5 * 25)^0.75.
    let x = tensor(&[1, 2, 1], &[3., -4.]);
    let y = interp::local_response_norm(&x, &lrn(5, 1e-4, 0.75, 1., 2)).unwrap();
    let d = (1.0f64 + 1e-4 / 5.0 * 25.0).powf(0.75);
    assert_near(&y, &[1, 2, 1], &[(3. / d) as f32, (-4. / d) as f32]);
}

#[test]
fn local_response_norm_rejects_bad_operands() {
    let x = tensor(&[2, 3], &[0.; 6]);
    let r = interp::local_response_norm(&x, &lrn(3, 1e-4, 0.75, 1., 1));
    assert!(matches!(r, Err(InterpError::Operands { .. })), "{r:?}");
    let x = tensor(&[1, 3, 1], &[0.; 3]);
    let r = interp::local_response_norm(&x, &lrn(3, 1e-4, 0.75, 1., 3));
    assert!(matches!(r, Err(InterpError::Operands { .. })), "{r:?}");
}
