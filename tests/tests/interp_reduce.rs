//! The reference interpreter's reductions (`mean`, `sum`, `amax`, `amin`,
//! and `global_max_pool`, which is `amax` over `H, W`), hand-computed:
//! over one dim, over dims that are not adjacent, over every dim, with
//! and without `keepdim`, and with NaN.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{ReduceAttrs, Reduction};
use nnc_tests::{assert_near, tensor};

fn reduce(function: Reduction, dims: &[usize], keepdim: bool) -> ReduceAttrs {
    ReduceAttrs {
        function,
        dims: dims.to_vec(),
        keepdim,
    }
}

#[test]
fn each_function_over_one_dim() {
    // [[1, 2, 3], [4, 5, 6]]
    let x = tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let mean = interp::reduce(&x, &reduce(Reduction::Mean, &[1], false)).unwrap();
    assert_near(&mean, &[2], &[2., 5.]);
    let sum = interp::reduce(&x, &reduce(Reduction::Sum, &[0], false)).unwrap();
    assert_near(&sum, &[3], &[5., 7., 9.]);
    let max = interp::reduce(&x, &reduce(Reduction::Max, &[1], true)).unwrap();
    assert_near(&max, &[2, 1], &[3., 6.]);
    let min = interp::reduce(&x, &reduce(Reduction::Min, &[0], true)).unwrap();
    assert_near(&min, &[1, 3], &[1., 2., 3.]);
}

#[test]
fn every_dim_makes_a_scalar_or_ones() {
    let x = tensor(&[2, 3], &[1., -2., 3., 4., 5., -6.]);
    let sum = interp::reduce(&x, &reduce(Reduction::Sum, &[0, 1], false)).unwrap();
    assert_near(&sum, &[], &[5.]);
    let max = interp::reduce(&x, &reduce(Reduction::Max, &[0, 1], true)).unwrap();
    assert_near(&max, &[1, 1], &[5.]);
    let min = interp::reduce(&x, &reduce(Reduction::Min, &[0, 1], false)).unwrap();
    assert_near(&min, &[], &[-6.]);
    let mean = interp::reduce(&x, &reduce(Reduction::Mean, &[0, 1], false)).unwrap();
    assert_near(&mean, &[], &[5. / 6.]);
}

#[test]
fn dims_on_both_sides_of_a_kept_one() {
    // x[a, b, c] = 6a + 2b + c on [2, 3, 2]; summing over a and c leaves,
    // per b, (2b + 2b + 1) + (6 + 2b + 6 + 2b + 1) = 8b + 14.
    let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let x = tensor(&[2, 3, 2], &data);
    let sum = interp::reduce(&x, &reduce(Reduction::Sum, &[0, 2], false)).unwrap();
    assert_near(&sum, &[3], &[14., 22., 30.]);
    let mean = interp::reduce(&x, &reduce(Reduction::Mean, &[0, 2], true)).unwrap();
    assert_near(&mean, &[1, 3, 1], &[3.5, 5.5, 7.5]);
    // The largest of each b is at a = 1, c = 1: 7 + 2b.
    let max = interp::reduce(&x, &reduce(Reduction::Max, &[0, 2], false)).unwrap();
    assert_near(&max, &[3], &[7., 9., 11.]);
    // Over the middle dim: per (a, c), the b = 0 element is the smallest.
    let min = interp::reduce(&x, &reduce(Reduction::Min, &[1], false)).unwrap();
    assert_near(&min, &[2, 2], &[0., 1., 6., 7.]);
}

#[test]
fn global_max_pool_is_amax_over_the_spatial_dims() {
    // [1, 2, 2, 2]: channel 0 peaks at 4, channel 1 (all negative) at -1.
    let x = tensor(&[1, 2, 2, 2], &[1., 4., -3., 2., -5., -1., -2., -8.]);
    let y = interp::reduce(&x, &reduce(Reduction::Max, &[2, 3], true)).unwrap();
    assert_near(&y, &[1, 2, 1, 1], &[4., -1.]);
}

#[test]
fn no_dims_is_a_copy() {
    let x = tensor(&[2, 2], &[1., 2., 3., 4.]);
    let y = interp::reduce(&x, &reduce(Reduction::Mean, &[], false)).unwrap();
    assert_near(&y, &[2, 2], &[1., 2., 3., 4.]);
}

#[test]
fn nan_reaches_the_maximum_and_the_minimum() {
    let x = tensor(&[2, 3], &[1., f32::NAN, 3., 4., 5., 6.]);
    for function in [Reduction::Max, Reduction::Min, Reduction::Mean] {
        let y = interp::reduce(&x, &reduce(function, &[1], false)).unwrap();
        assert!(y.data()[0].is_nan(), "{function:?}: {:?}", y.data());
        assert!(!y.data()[1].is_nan(), "{function:?}: {:?}", y.data());
    }
    // Infinities are values like any other.
    let x = tensor(&[2], &[f32::NEG_INFINITY, f32::NEG_INFINITY]);
    let y = interp::reduce(&x, &reduce(Reduction::Max, &[0], false)).unwrap();
    assert_eq!(y.data(), [f32::NEG_INFINITY]);
}

#[test]
fn bad_dims_are_errors() {
    let x = tensor(&[2, 3], &[0.; 6]);
    for dims in [&[2][..], &[1, 0], &[1, 1]] {
        let r = interp::reduce(&x, &reduce(Reduction::Sum, dims, false));
        assert!(
            matches!(r, Err(InterpError::Operands { .. })),
            "{dims:?}: {r:?}"
        );
    }
}
