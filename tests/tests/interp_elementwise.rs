//! The reference interpreter's elementwise ops: activations,
//! `dropout` in both modes, `identity`, broadcasting `add` / `mul`,
//! `softmax` and `log_softmax`.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    Activation, BinaryOp, DropoutAttrs, DropoutMode, SoftmaxAttrs, UnaryFunction,
};
use nnc_runtime::Tensor;
use nnc_tests::{assert_near, tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ------------------------------------------------------------- activations

#[test]
fn relu_and_relu6() {
    let x = tensor(&[2, 3], &[-2., -0.5, 0., 3., 6., 7.5]);
    assert_near(
        &interp::activation(&x, Activation::Relu),
        &[2, 3],
        &[0., 0., 0., 3., 6., 7.5],
    );
    assert_near(
        &interp::activation(&x, Activation::Relu6),
        &[2, 3],
        &[0., 0., 0., 3., 6., 6.],
    );
}

#[test]
fn leaky_relu_scales_negatives_only() {
    let x = tensor(&[3], &[-2., 0., 5.]);
    let y = interp::activation(
        &x,
        Activation::LeakyRelu {
            negative_slope: 0.1,
        },
    );
    assert_near(&y, &[3], &[-0.2, 0., 5.]);
}

#[test]
fn sigmoid_values_and_saturation() {
    let ln3 = 3f32.ln();
    let x = tensor(&[5], &[0., ln3, -ln3, 100., -100.]);
    let y = interp::activation(&x, Activation::Sigmoid);
    // sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4.
    assert_near(&y, &[5], &[0.5, 0.75, 0.25, 1.0, 0.0]);
    assert!(y.data().iter().all(|v| v.is_finite()));
    // Far from zero it is still strictly positive, not a NaN from inf/inf.
    assert!(y.data()[4] > 0.0);
}

#[test]
fn tanh_values() {
    let ln2 = 2f32.ln();
    let y = interp::activation(&tensor(&[4], &[0., ln2, -ln2, 50.]), Activation::Tanh);
    // tanh(ln 2) = (2 - 1/2) / (2 + 1/2) = 0.6.
    assert_near(&y, &[4], &[0., 0.6, -0.6, 1.]);
}

#[test]
fn clip_bounds_both_sides() {
    let x = tensor(&[4], &[-3., 0.5, 2., 9.]);
    let y = interp::activation(&x, Activation::Clip { min: -1., max: 2. });
    assert_near(&y, &[4], &[-1., 0.5, 2., 2.]);
    // min > max: everything becomes max, as torch.clamp does.
    let y = interp::activation(&x, Activation::Clip { min: 5., max: 1. });
    assert_near(&y, &[4], &[1., 1., 1., 1.]);
}

#[test]
fn activations_let_nan_through() {
    let x = tensor(&[1], &[f32::NAN]);
    assert!(interp::activation(&x, Activation::Relu).data()[0].is_nan());
    assert!(interp::activation(&x, Activation::Relu6).data()[0].is_nan());
    assert!(interp::activation(
        &x,
        Activation::LeakyRelu {
            negative_slope: 0.1
        }
    )
    .data()[0]
        .is_nan());
    assert!(interp::activation(&x, Activation::Clip { min: 0., max: 1. }).data()[0].is_nan());
    assert!(interp::activation(&x, Activation::Sigmoid).data()[0].is_nan());
}

/// Each activation beyond the first six at points where its value is
/// known in closed form.
#[test]
fn more_activations_at_known_points() {
    let ln2 = 2f32.ln();
    let ln3 = 3f32.ln();
    let at = |act: Activation, xs: &[f32]| interp::activation(&tensor(&[xs.len()], xs), act);
    // elu: alpha * (e^x - 1) below 0: e^(-ln 2) - 1 = -1/2.
    let y = at(Activation::Elu { alpha: 0.5 }, &[-ln2, 2.0, 0.0]);
    assert_near(&y, &[3], &[-0.25, 2.0, 0.0]);
    // selu: scale * x above 0, scale * alpha * (e^x - 1) below.
    let y = at(Activation::Selu, &[1.0, -ln2]);
    assert_near(&y, &[2], &[1.050_701, -0.879_049_7]);
    // celu(alpha=2): 2 * (e^(x/2) - 1) below 0.
    let y = at(Activation::Celu { alpha: 2.0 }, &[-2.0 * ln2, 3.0]);
    assert_near(&y, &[2], &[-1.0, 3.0]);
    // softplus: ln(1 + e^x); ln 2 at 0, ln 4 at ln 3, no overflow at 100.
    let y = at(Activation::Softplus, &[0.0, ln3, 100.0, -100.0]);
    assert_near(&y, &[4], &[ln2, 4f32.ln(), 100.0, 0.0]);
    assert!(y.data()[3] > 0.0);
    let y = at(Activation::Softsign, &[3.0, -1.0]);
    assert_near(&y, &[2], &[0.75, -0.5]);
    // hardsigmoid with PyTorch's alpha = 1/6: relu6(x + 3) / 6.
    let y = at(
        Activation::Hardsigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
        &[0.0, 3.0, -4.0, 1.5],
    );
    assert_near(&y, &[4], &[0.5, 1.0, 0.0, 0.75]);
    let y = at(Activation::Hardswish, &[3.0, -3.0, 1.0, -1.0]);
    assert_near(&y, &[4], &[3.0, 0.0, 4.0 / 6.0, -2.0 / 6.0]);
    // silu(ln 3) = ln 3 * sigmoid(ln 3) = ln 3 * 3/4.
    let y = at(Activation::Silu, &[ln3, 0.0]);
    assert_near(&y, &[2], &[ln3 * 0.75, 0.0]);
    // mish(ln 3) = ln 3 * tanh(ln 4) = ln 3 * 15/17.
    let y = at(Activation::Mish, &[ln3]);
    assert_near(&y, &[1], &[ln3 * 15.0 / 17.0]);
    // gelu(±sqrt 2) = ±sqrt 2 / 2 * (1 ± erf(1)), erf(1) = 0.8427007929.
    let s2 = 2f32.sqrt();
    let y = at(Activation::Gelu { tanh: false }, &[s2, -s2, 0.0]);
    assert_near(&y, &[3], &[1.302_986_2, -0.111_227_34, 0.0]);
    // The tanh form at 1: 0.5 * (1 + tanh(sqrt(2/pi) * 1.044715)).
    let y = at(Activation::Gelu { tanh: true }, &[1.0]);
    assert_near(&y, &[1], &[0.841_192]);
    for act in Activation::ALL {
        let y = at(act, &[f32::NAN]);
        assert!(y.data()[0].is_nan(), "{} of NaN", act.name());
    }
}

/// Unary math at known points, and the binary maximum and minimum, which
/// propagate NaN as torch.maximum does.
#[test]
fn unary_math_and_binary_extremes() {
    let at = |f: UnaryFunction, xs: &[f32]| interp::unary(&tensor(&[xs.len()], xs), f);
    let ln2 = 2f32.ln();
    assert_near(&at(UnaryFunction::Exp, &[0.0, ln2]), &[2], &[1.0, 2.0]);
    let y = at(UnaryFunction::Log, &[1.0, 4.0]);
    assert_near(&y, &[2], &[0.0, 2.0 * ln2]);
    assert_eq!(at(UnaryFunction::Log, &[0.0]).data()[0], f32::NEG_INFINITY);
    assert!(at(UnaryFunction::Log, &[-1.0]).data()[0].is_nan());
    assert_near(&at(UnaryFunction::Sqrt, &[9.0, 0.25]), &[2], &[3.0, 0.5]);
    assert_near(
        &at(UnaryFunction::Reciprocal, &[4.0, -0.5]),
        &[2],
        &[0.25, -2.0],
    );
    assert_near(&at(UnaryFunction::Neg, &[3.0, -0.0]), &[2], &[-3.0, 0.0]);
    assert_near(&at(UnaryFunction::Abs, &[-3.0, 2.0]), &[2], &[3.0, 2.0]);
    // erf(1) = 0.8427007929, odd.
    let y = at(UnaryFunction::Erf, &[1.0, -1.0, 0.0]);
    assert_near(&y, &[3], &[0.842_700_8, -0.842_700_8, 0.0]);
    let y = at(UnaryFunction::Pow { exponent: 3.0 }, &[-2.0, 0.5]);
    assert_near(&y, &[2], &[-8.0, 0.125]);
    let y = at(UnaryFunction::Pow { exponent: 0.5 }, &[16.0]);
    assert_near(&y, &[1], &[4.0]);
    let a = tensor(&[3], &[1.0, -2.0, f32::NAN]);
    let b = tensor(&[3], &[0.5, 3.0, 0.0]);
    let hi = interp::binary(BinaryOp::Maximum, &a, &b).unwrap();
    let lo = interp::binary(BinaryOp::Minimum, &a, &b).unwrap();
    assert_eq!(&hi.data()[..2], &[1.0, 3.0]);
    assert_eq!(&lo.data()[..2], &[0.5, -2.0]);
    assert!(hi.data()[2].is_nan() && lo.data()[2].is_nan());
}

/// `prelu` scales negatives by the slope of their channel (dim 1), or by
/// one shared slope.
#[test]
fn prelu_slopes_per_channel_or_shared() {
    let x = tensor(&[1, 2, 2], &[-2., 3., -4., 5.]);
    let per_channel = interp::prelu(&x, &tensor(&[2], &[0.5, 0.25])).unwrap();
    assert_near(&per_channel, &[1, 2, 2], &[-1., 3., -1., 5.]);
    let shared = interp::prelu(&x, &tensor(&[1], &[0.1])).unwrap();
    assert_near(&shared, &[1, 2, 2], &[-0.2, 3., -0.4, 5.]);
    assert!(interp::prelu(&x, &tensor(&[3], &[0.1, 0.2, 0.3])).is_err());
}

// ------------------------------------------------------------- dropout, identity

#[test]
fn dropout_modes_at_inference() {
    let x = tensor(&[2], &[4., -8.]);
    let inverted = DropoutAttrs {
        p: 0.25,
        mode: DropoutMode::Inverted,
    };
    assert_near(&interp::dropout(&x, &inverted).unwrap(), &[2], &[4., -8.]);
    let classic = DropoutAttrs {
        p: 0.25,
        mode: DropoutMode::Classic,
    };
    // Classic dropout keeps 1 - p = 0.75 of each unit at inference.
    assert_near(&interp::dropout(&x, &classic).unwrap(), &[2], &[3., -6.]);
    let bad = DropoutAttrs {
        p: 1.5,
        mode: DropoutMode::Classic,
    };
    assert!(matches!(
        interp::dropout(&x, &bad),
        Err(InterpError::Operands { .. })
    ));
}

#[test]
fn identity_copies() {
    let x = tensor(&[2, 1], &[1., -1.]);
    assert_eq!(interp::identity(&x), x);
}

// ------------------------------------------------------------- add, mul

#[test]
fn add_same_shape_and_row_broadcast() {
    let a = tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let b = tensor(&[2, 3], &[10., 20., 30., 40., 50., 60.]);
    assert_near(
        &interp::add(&a, &b).unwrap(),
        &[2, 3],
        &[11., 22., 33., 44., 55., 66.],
    );
    let row = tensor(&[3], &[10., 20., 30.]);
    assert_near(
        &interp::add(&a, &row).unwrap(),
        &[2, 3],
        &[11., 22., 33., 14., 25., 36.],
    );
    assert_near(
        &interp::add(&row, &a).unwrap(),
        &[2, 3],
        &[11., 22., 33., 14., 25., 36.],
    );
}

#[test]
fn add_outer_broadcast_and_scalar() {
    let col = tensor(&[2, 1], &[1., 2.]);
    let row = tensor(&[1, 3], &[10., 20., 30.]);
    assert_near(
        &interp::add(&col, &row).unwrap(),
        &[2, 3],
        &[11., 21., 31., 12., 22., 32.],
    );
    let scalar = tensor(&[], &[5.]);
    assert_near(
        &interp::add(&scalar, &row).unwrap(),
        &[1, 3],
        &[15., 25., 35.],
    );
}

#[test]
fn mul_broadcasts_both_operands() {
    let a = tensor(&[1, 2], &[2., 3.]);
    let b = tensor(&[2, 1], &[10., 100.]);
    assert_near(
        &interp::binary(BinaryOp::Mul, &a, &b).unwrap(),
        &[2, 2],
        &[20., 30., 200., 300.],
    );
}

#[test]
fn broadcasting_matches_explicit_indexing() {
    // a [2, 3, 1] + b [3, 4] -> [2, 3, 4] with out[i, j, k] = a[i, j] + b[j, k];
    // c [4, 1, 1, 2] * d [3, 1] -> [4, 1, 3, 2] with out[i, 0, j, k] = c[i, k] * d[j].
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut random = |shape: &[usize]| {
        let n = shape.iter().product();
        Tensor::new(
            shape.to_vec(),
            (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        )
        .unwrap()
    };
    let (a, b) = (random(&[2, 3, 1]), random(&[3, 4]));
    let mut expected = Vec::new();
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                expected.push(a.data()[i * 3 + j] + b.data()[j * 4 + k]);
            }
        }
    }
    assert_near(&interp::add(&a, &b).unwrap(), &[2, 3, 4], &expected);

    let (c, d) = (random(&[4, 1, 1, 2]), random(&[3, 1]));
    let mut expected = Vec::new();
    for i in 0..4 {
        for j in 0..3 {
            for k in 0..2 {
                expected.push(c.data()[i * 2 + k] * d.data()[j]);
            }
        }
    }
    assert_near(
        &interp::binary(BinaryOp::Mul, &c, &d).unwrap(),
        &[4, 1, 3, 2],
        &expected,
    );
}

#[test]
fn incompatible_shapes_do_not_broadcast() {
    let a = Tensor::zeros(vec![2, 3]).unwrap();
    let b = Tensor::zeros(vec![2]).unwrap();
    let err = interp::add(&a, &b).unwrap_err();
    assert!(matches!(err, InterpError::Operands { .. }));
    assert!(err.to_string().contains("[2, 3]"), "{err}");
    let c = Tensor::zeros(vec![4, 3]).unwrap();
    assert!(interp::binary(BinaryOp::Mul, &a, &c).is_err());
    assert_eq!(
        interp::broadcast_shape(&[2, 1, 3], &[4, 1]),
        Some(vec![2, 4, 3])
    );
    assert_eq!(interp::broadcast_shape(&[3], &[4]), None);
}

// ------------------------------------------------------------- softmax

#[test]
fn softmax_last_dim() {
    let x = tensor(&[1, 3], &[1., 2., 3.]);
    let y = interp::softmax(&x, &SoftmaxAttrs { dim: 1 }).unwrap();
    let s = 1f64.exp() + 2f64.exp() + 3f64.exp();
    let expected = [1f64.exp() / s, 2f64.exp() / s, 3f64.exp() / s].map(|v| v as f32);
    assert_near(&y, &[1, 3], &expected);
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    // exp(1000) overflows f32; subtracting the max keeps this exact.
    let x = tensor(&[2], &[1000., 1001.]);
    let y = interp::softmax(&x, &SoftmaxAttrs { dim: 0 }).unwrap();
    let e = 1f64.exp();
    assert_near(&y, &[2], &[(1. / (1. + e)) as f32, (e / (1. + e)) as f32]);
    let x = tensor(&[3], &[f32::NEG_INFINITY, 0., 0.]);
    let y = interp::softmax(&x, &SoftmaxAttrs { dim: 0 }).unwrap();
    assert_near(&y, &[3], &[0., 0.5, 0.5]);
}

#[test]
fn softmax_along_a_leading_dim() {
    // Columns are normalised: [1, 1] -> [0.5, 0.5], [0, 2] -> [1, e^2] / (1 + e^2).
    let x = tensor(&[2, 2], &[1., 0., 1., 2.]);
    let y = interp::softmax(&x, &SoftmaxAttrs { dim: 0 }).unwrap();
    let e2 = 2f64.exp();
    assert_near(
        &y,
        &[2, 2],
        &[0.5, (1. / (1. + e2)) as f32, 0.5, (e2 / (1. + e2)) as f32],
    );
}

#[test]
fn softmax_middle_dim_sums_to_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    let data: Vec<f32> = (0..2 * 5 * 3)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    let x = tensor(&[2, 5, 3], &data);
    let y = interp::softmax(&x, &SoftmaxAttrs { dim: 1 }).unwrap();
    for n in 0..2 {
        for k in 0..3 {
            let sum: f32 = (0..5).map(|j| y.data()[(n * 5 + j) * 3 + k]).sum();
            assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
            // Order is preserved along the dim.
            for j in 1..5 {
                let (p, q) = ((n * 5 + j - 1) * 3 + k, (n * 5 + j) * 3 + k);
                assert_eq!(x.data()[p] < x.data()[q], y.data()[p] < y.data()[q]);
            }
        }
    }
    assert!(interp::softmax(&x, &SoftmaxAttrs { dim: 3 }).is_err());
}

// ------------------------------------------------------------- log_softmax

#[test]
fn log_softmax_last_dim() {
    let x = tensor(&[1, 3], &[1., 2., 3.]);
    let y = interp::log_softmax(&x, &SoftmaxAttrs { dim: 1 }).unwrap();
    let l = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let expected = [1. - l, 2. - l, 3. - l].map(|v| v as f32);
    assert_near(&y, &[1, 3], &expected);
}

#[test]
fn log_softmax_is_finite_where_softmax_underflows() {
    // softmax gives exactly 0 for the first element (e^-1000 underflows),
    // whose logarithm would be -inf; log_softmax keeps -1000.
    let x = tensor(&[2], &[-1000., 0.]);
    let y = interp::log_softmax(&x, &SoftmaxAttrs { dim: 0 }).unwrap();
    assert_near(&y, &[2], &[-1000., 0.]);
    // Large inputs: log(1 + e) from the max, exactly as from 0 and 1.
    let x = tensor(&[2], &[1000., 1001.]);
    let y = interp::log_softmax(&x, &SoftmaxAttrs { dim: 0 }).unwrap();
    let l = (1. + 1f64.exp()).ln();
    assert_near(&y, &[2], &[(-l) as f32, (1. - l) as f32]);
}

#[test]
fn log_softmax_along_a_leading_dim() {
    // Columns [1, 1] and [0, 2]: -ln 2 twice, then -ln(1 + e^2) and
    // 2 - ln(1 + e^2).
    let x = tensor(&[2, 2], &[1., 0., 1., 2.]);
    let y = interp::log_softmax(&x, &SoftmaxAttrs { dim: 0 }).unwrap();
    let (h, l) = (2f64.ln(), (1. + 2f64.exp()).ln());
    assert_near(
        &y,
        &[2, 2],
        &[(-h) as f32, (-l) as f32, (-h) as f32, (2. - l) as f32],
    );
    assert!(interp::log_softmax(&x, &SoftmaxAttrs { dim: 2 }).is_err());
}
