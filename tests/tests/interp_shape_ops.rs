//! The reference interpreter's `linear` and data-movement ops: `flatten`,
//! `reshape`, `permute`, `select`, `concat`.

use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    ConcatAttrs, Epilogue, FlattenAttrs, LinearAttrs, PermuteAttrs, ReshapeAttrs, SelectAttrs,
};
use nnc_runtime::Tensor;
use nnc_tests::tensor;

fn iota(shape: &[usize]) -> Tensor {
    let n = shape.iter().product::<usize>();
    Tensor::new(shape.to_vec(), (0..n).map(|i| i as f32).collect()).unwrap()
}

fn assert_tensor(actual: &Tensor, shape: &[usize], expected: &[f32]) {
    assert_eq!(actual.shape(), shape, "shape");
    assert_eq!(actual.data(), expected, "data");
}

fn is_operand_error(r: Result<Tensor, InterpError>) -> bool {
    matches!(r, Err(InterpError::Operands { .. }))
}

// ------------------------------------------------------------- linear

#[test]
fn linear_with_bias() {
    let x = tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let w = tensor(&[2, 3], &[1., 0., -1., 0.5, 0.5, 0.5]);
    let b = tensor(&[2], &[10., 20.]);
    let y = interp::linear(
        &x,
        &w,
        Some(&b),
        &LinearAttrs {
            out_features: 2,
            bias: true,
            epilogue: Epilogue::default(),
        },
    )
    .unwrap();
    // Row 0: 1 - 3 + 10 = 8, 3 + 20 = 23. Row 1: 4 - 6 + 10 = 8, 7.5 + 20 = 27.5.
    assert_tensor(&y, &[2, 2], &[8., 23., 8., 27.5]);
}

#[test]
fn linear_keeps_leading_dims() {
    let x = tensor(&[2, 1, 2], &[1., 2., 3., 4.]);
    let w = tensor(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    let y = interp::linear(
        &x,
        &w,
        None,
        &LinearAttrs {
            out_features: 3,
            bias: false,
            epilogue: Epilogue::default(),
        },
    )
    .unwrap();
    assert_tensor(&y, &[2, 1, 3], &[1., 2., 3., 3., 4., 7.]);
    let v = tensor(&[2], &[5., -1.]);
    let y = interp::linear(
        &v,
        &w,
        None,
        &LinearAttrs {
            out_features: 3,
            bias: false,
            epilogue: Epilogue::default(),
        },
    )
    .unwrap();
    assert_tensor(&y, &[3], &[5., -1., 4.]);
}

#[test]
fn linear_rejects_mismatched_operands() {
    let x = Tensor::zeros(vec![2, 3]).unwrap();
    let w = Tensor::zeros(vec![4, 3]).unwrap();
    let b = Tensor::zeros(vec![4]).unwrap();
    let a = LinearAttrs {
        out_features: 4,
        bias: true,
        epilogue: Epilogue::default(),
    };
    assert!(interp::linear(&x, &w, Some(&b), &a).is_ok());
    let w_bad = Tensor::zeros(vec![4, 2]).unwrap();
    assert!(is_operand_error(interp::linear(&x, &w_bad, Some(&b), &a)));
    let b_bad = Tensor::zeros(vec![3]).unwrap();
    assert!(is_operand_error(interp::linear(&x, &w, Some(&b_bad), &a)));
    assert!(is_operand_error(interp::linear(&x, &w, None, &a)));
    let a5 = LinearAttrs {
        out_features: 5,
        bias: false,
        epilogue: Epilogue::default(),
    };
    assert!(is_operand_error(interp::linear(&x, &w, None, &a5)));
    let scalar = Tensor::zeros(vec![]).unwrap();
    assert!(is_operand_error(interp::linear(&scalar, &w, Some(&b), &a)));
}

// ------------------------------------------------------------- flatten, reshape

#[test]
fn flatten_merges_a_dim_range() {
    let x = iota(&[2, 3, 4]);
    let y = interp::flatten(
        &x,
        &FlattenAttrs {
            start_dim: 1,
            end_dim: 2,
        },
    )
    .unwrap();
    assert_tensor(&y, &[2, 12], x.data());
    let y = interp::flatten(
        &x,
        &FlattenAttrs {
            start_dim: 0,
            end_dim: 1,
        },
    )
    .unwrap();
    assert_tensor(&y, &[6, 4], x.data());
    let y = interp::flatten(
        &x,
        &FlattenAttrs {
            start_dim: 1,
            end_dim: 1,
        },
    )
    .unwrap();
    assert_tensor(&y, &[2, 3, 4], x.data());
    assert!(is_operand_error(interp::flatten(
        &x,
        &FlattenAttrs {
            start_dim: 1,
            end_dim: 3
        }
    )));
    assert!(is_operand_error(interp::flatten(
        &x,
        &FlattenAttrs {
            start_dim: 2,
            end_dim: 1
        }
    )));
}

#[test]
fn reshape_keeps_the_data() {
    let x = iota(&[2, 3]);
    let y = interp::reshape(
        &x,
        &ReshapeAttrs {
            shape: vec![3, 1, 2],
        },
    )
    .unwrap();
    assert_tensor(&y, &[3, 1, 2], &[0., 1., 2., 3., 4., 5.]);
    assert!(is_operand_error(interp::reshape(
        &x,
        &ReshapeAttrs { shape: vec![4, 2] }
    )));
}

// ------------------------------------------------------------- permute

#[test]
fn permute_transposes_a_matrix() {
    let y = interp::permute(&iota(&[2, 3]), &PermuteAttrs { dims: vec![1, 0] }).unwrap();
    assert_tensor(&y, &[3, 2], &[0., 3., 1., 4., 2., 5.]);
}

#[test]
fn permute_rank_3_moves_each_element() {
    // x[i, j, k] = 12 i + 4 j + k; dims [2, 0, 1] gives out[k, i, j] = x[i, j, k].
    let x = iota(&[2, 3, 4]);
    let y = interp::permute(
        &x,
        &PermuteAttrs {
            dims: vec![2, 0, 1],
        },
    )
    .unwrap();
    assert_eq!(y.shape(), &[4, 2, 3]);
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                assert_eq!(y.data()[(k * 2 + i) * 3 + j], (12 * i + 4 * j + k) as f32);
            }
        }
    }
    // Permuting back restores the input.
    let back = interp::permute(
        &y,
        &PermuteAttrs {
            dims: vec![1, 2, 0],
        },
    )
    .unwrap();
    assert_eq!(back, x);
}

#[test]
fn permute_rejects_non_permutations() {
    let x = iota(&[2, 3]);
    assert!(is_operand_error(interp::permute(
        &x,
        &PermuteAttrs { dims: vec![0, 0] }
    )));
    assert!(is_operand_error(interp::permute(
        &x,
        &PermuteAttrs { dims: vec![0] }
    )));
    assert!(is_operand_error(interp::permute(
        &x,
        &PermuteAttrs { dims: vec![0, 2] }
    )));
}

// ------------------------------------------------------------- select

#[test]
fn select_removes_the_dim() {
    let x = iota(&[2, 3]);
    assert_tensor(
        &interp::select(&x, &SelectAttrs { dim: 1, index: 2 }).unwrap(),
        &[2],
        &[2., 5.],
    );
    assert_tensor(
        &interp::select(&x, &SelectAttrs { dim: 0, index: 1 }).unwrap(),
        &[3],
        &[3., 4., 5.],
    );
    // The middle dim of [2, 3, 2]: x[i, 1, k] = 6 i + 2 + k.
    let y = interp::select(&iota(&[2, 3, 2]), &SelectAttrs { dim: 1, index: 1 }).unwrap();
    assert_tensor(&y, &[2, 2], &[2., 3., 8., 9.]);
    assert!(is_operand_error(interp::select(
        &x,
        &SelectAttrs { dim: 1, index: 3 }
    )));
    assert!(is_operand_error(interp::select(
        &x,
        &SelectAttrs { dim: 2, index: 0 }
    )));
}

// ------------------------------------------------------------- concat

#[test]
fn concat_along_first_and_inner_dims() {
    let a = tensor(&[1, 2], &[1., 2.]);
    let b = tensor(&[2, 2], &[3., 4., 5., 6.]);
    assert_tensor(
        &interp::concat(&[&a, &b], &ConcatAttrs { dim: 0 }).unwrap(),
        &[3, 2],
        &[1., 2., 3., 4., 5., 6.],
    );
    let a = tensor(&[2, 1], &[1., 2.]);
    let y = interp::concat(&[&a, &b, &a], &ConcatAttrs { dim: 1 }).unwrap();
    assert_tensor(&y, &[2, 4], &[1., 3., 4., 1., 2., 5., 6., 2.]);
}

#[test]
fn concat_channels_of_feature_maps() {
    // [1, 1, 1, 2] ++ [1, 2, 1, 2] along channels.
    let a = tensor(&[1, 1, 1, 2], &[1., 2.]);
    let b = tensor(&[1, 2, 1, 2], &[3., 4., 5., 6.]);
    let y = interp::concat(&[&a, &b], &ConcatAttrs { dim: 1 }).unwrap();
    assert_tensor(&y, &[1, 3, 1, 2], &[1., 2., 3., 4., 5., 6.]);
}

#[test]
fn concat_rejects_mismatched_operands() {
    let a = Tensor::zeros(vec![2, 3]).unwrap();
    let b = Tensor::zeros(vec![3, 3]).unwrap();
    assert!(interp::concat(&[&a, &b], &ConcatAttrs { dim: 0 }).is_ok());
    assert!(is_operand_error(interp::concat(
        &[&a, &b],
        &ConcatAttrs { dim: 1 }
    )));
    assert!(is_operand_error(interp::concat(
        &[&a, &b],
        &ConcatAttrs { dim: 2 }
    )));
    let c = Tensor::zeros(vec![2, 3, 1]).unwrap();
    assert!(is_operand_error(interp::concat(
        &[&a, &c],
        &ConcatAttrs { dim: 0 }
    )));
    assert!(is_operand_error(interp::concat(
        &[],
        &ConcatAttrs { dim: 0 }
    )));
}
