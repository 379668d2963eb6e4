//! The reference interpreter's `linear` and data-movement ops: `flatten`,
//! `reshape`, `permute`, `select`, `concat`, and the indexing ops `slice`,
//! `index_select`, `repeat`, `expand` (also as the `.nn` language resolves
//! their attributes).

use nnc_compiler::driver::compile_source;
use nnc_compiler::interp::{self, InterpError};
use nnc_compiler::ir::{
    ConcatAttrs, Epilogue, ExpandAttrs, FlattenAttrs, IndexSelectAttrs, LinearAttrs, PermuteAttrs,
    RepeatAttrs, ReshapeAttrs, SelectAttrs, SliceAttrs, SliceDim,
};
use nnc_frontend::SourceFile;
use nnc_runtime::{Tensor, WeightSet};
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

// ------------------------------------------------------------- slice

fn slice_dims(dims: &[(usize, usize, i64, usize)]) -> SliceAttrs {
    SliceAttrs {
        dims: dims
            .iter()
            .map(|&(dim, start, step, size)| SliceDim {
                dim,
                start,
                step,
                size,
            })
            .collect(),
    }
}

#[test]
fn slice_takes_every_step_th_index() {
    // Columns 1 and 3 of [[0..5], [5..10], [10..15]].
    let y = interp::slice(&iota(&[3, 5]), &slice_dims(&[(1, 1, 2, 2)])).unwrap();
    assert_tensor(&y, &[3, 2], &[1., 3., 6., 8., 11., 13.]);
    // Rows 1..3 of the same, whole.
    let y = interp::slice(&iota(&[3, 5]), &slice_dims(&[(0, 1, 1, 2)])).unwrap();
    assert_tensor(&y, &[2, 5], &[5., 6., 7., 8., 9., 10., 11., 12., 13., 14.]);
}

#[test]
fn slice_with_negative_steps_walks_backwards() {
    // Each row of [2, 4] reversed.
    let y = interp::slice(&iota(&[2, 4]), &slice_dims(&[(1, 3, -1, 4)])).unwrap();
    assert_tensor(&y, &[2, 4], &[3., 2., 1., 0., 7., 6., 5., 4.]);
    // Rows 1, 0 and columns 0, 3 of [2, 4], dims listed out of order.
    let y = interp::slice(&iota(&[2, 4]), &slice_dims(&[(1, 0, 3, 2), (0, 1, -1, 2)])).unwrap();
    assert_tensor(&y, &[2, 2], &[4., 7., 0., 3.]);
    // The middle dim of [2, 3, 2] from index 2 down by 2: indices 2, 0.
    let y = interp::slice(&iota(&[2, 3, 2]), &slice_dims(&[(1, 2, -2, 2)])).unwrap();
    assert_tensor(&y, &[2, 2, 2], &[4., 5., 0., 1., 10., 11., 6., 7.]);
}

#[test]
fn slice_rejects_ranges_outside_the_dim() {
    let x = iota(&[3, 5]);
    assert!(interp::slice(&x, &slice_dims(&[(1, 4, -2, 3)])).is_ok());
    for bad in [
        (1, 4, -2, 4), // the fourth index would be -2
        (1, 0, 2, 4),  // index 6
        (1, 5, 1, 1),  // the start is past the end
        (1, 0, 0, 1),  // a step of 0
        (1, 0, 1, 0),  // nothing taken
        (2, 0, 1, 1),  // no dim 2
    ] {
        assert!(
            is_operand_error(interp::slice(&x, &slice_dims(&[bad]))),
            "{bad:?}"
        );
    }
    assert!(is_operand_error(interp::slice(
        &x,
        &slice_dims(&[(0, 0, 1, 1), (0, 1, 1, 1)])
    )));
}

// ------------------------------------------------------------- index_select

#[test]
fn index_select_takes_the_listed_slices_in_order() {
    // [2, 3, 2] along dim 1 at 2, 0, 2: x[n, j, k] = 6 n + 2 j + k.
    let a = IndexSelectAttrs {
        dim: 1,
        index: vec![2, 0, 2],
    };
    let y = interp::index_select(&iota(&[2, 3, 2]), &a).unwrap();
    assert_tensor(
        &y,
        &[2, 3, 2],
        &[4., 5., 0., 1., 4., 5., 10., 11., 6., 7., 10., 11.],
    );
    // The last dim of [2, 3]: columns 1 and 1.
    let a = IndexSelectAttrs {
        dim: 1,
        index: vec![1, 1],
    };
    let y = interp::index_select(&iota(&[2, 3]), &a).unwrap();
    assert_tensor(&y, &[2, 2], &[1., 1., 4., 4.]);
    let bad = |dim, index: &[usize]| {
        let a = IndexSelectAttrs {
            dim,
            index: index.to_vec(),
        };
        is_operand_error(interp::index_select(&iota(&[2, 3]), &a))
    };
    assert!(bad(1, &[3]));
    assert!(bad(2, &[0]));
    assert!(bad(0, &[]));
}

// ------------------------------------------------------------- repeat

#[test]
fn repeat_tiles_each_dim() {
    let x = iota(&[2, 3]);
    let repeat = |repeats: &[usize]| {
        let a = RepeatAttrs {
            repeats: repeats.to_vec(),
        };
        interp::repeat(&x, &a)
    };
    assert_tensor(
        &repeat(&[2, 1]).unwrap(),
        &[4, 3],
        &[0., 1., 2., 3., 4., 5., 0., 1., 2., 3., 4., 5.],
    );
    assert_tensor(
        &repeat(&[1, 2]).unwrap(),
        &[2, 6],
        &[0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.],
    );
    // A leading count adds a dim, as `Tensor.repeat` does.
    let y = repeat(&[2, 1, 2]).unwrap();
    let once = [0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.];
    assert_tensor(&y, &[2, 2, 6], &[once, once].concat());
    assert!(is_operand_error(repeat(&[2])));
    assert!(is_operand_error(repeat(&[1, 0])));
}

// ------------------------------------------------------------- expand

#[test]
fn expand_broadcasts_dims_of_size_one() {
    // [3, 1] to [2, 3, 4]: each value four times, the block twice.
    let a = ExpandAttrs {
        shape: vec![2, 3, 4],
    };
    let y = interp::expand(&iota(&[3, 1]), &a).unwrap();
    let block = [0., 0., 0., 0., 1., 1., 1., 1., 2., 2., 2., 2.];
    assert_tensor(&y, &[2, 3, 4], &[block, block].concat());
    // [1, 3] to [2, 3].
    let a = ExpandAttrs { shape: vec![2, 3] };
    let y = interp::expand(&iota(&[1, 3]), &a).unwrap();
    assert_tensor(&y, &[2, 3], &[0., 1., 2., 0., 1., 2.]);
    let bad = |shape: &[usize]| {
        let a = ExpandAttrs {
            shape: shape.to_vec(),
        };
        is_operand_error(interp::expand(&iota(&[2, 3]), &a))
    };
    assert!(bad(&[2, 4]));
    assert!(bad(&[3]));
    assert!(!bad(&[5, 2, 3]));
}

// ------------------------------------------------------------- in the language

/// The outputs of the one-input model `body` on `iota(shape)`.
fn run_model(shape: &[usize], body: &str) -> Vec<Tensor> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let text = format!(
        "model m {{\n    input x: f32[{}]\n{body}}}\n",
        dims.join(", ")
    );
    let source = SourceFile::new("m.nn", text);
    let graph = compile_source(&source)
        .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)));
    interp::run(&graph, &WeightSet::new(), &[iota(shape)]).unwrap()
}

/// Starts and ends count from the end when negative and clamp to the dim,
/// as in ONNX: the resolved slices take what Python's slicing would.
#[test]
fn slice_attributes_clamp_like_onnx() {
    let y = run_model(
        &[2, 5],
        "    a = slice(x, dims=[1], starts=[-1], ends=[-100], steps=[-2])
    b = slice(x, starts=[1, -3], ends=[100, -1])
    c = slice(x, dims=[-1, 0], starts=[3, 5], ends=[0, -3], steps=[-3, -1])
    output a, b, c
",
    );
    // x[:, ::-2] (from 4 down through 0): columns 4, 2, 0.
    assert_tensor(&y[0], &[2, 3], &[4., 2., 0., 9., 7., 5.]);
    // x[1:, 2:4].
    assert_tensor(&y[1], &[1, 2], &[7., 8.]);
    // Rows from 5 (clamped to 1) down through 0 (-3 is before the first
    // row, so the end clamps to -1); column 3 alone (3 down to 0, by 3,
    // stops before 0).
    assert_tensor(&y[2], &[2, 1], &[8., 3.]);
}

#[test]
fn index_select_repeat_and_expand_in_the_language() {
    let y = run_model(
        &[2, 3],
        "    i = index_select(x, dim=-1, index=[-1, 0])
    r = repeat(x, repeats=[1, 1, 2])
    e = expand(i, shape=[2, -1, 2])
    output i, r, e
",
    );
    assert_tensor(&y[0], &[2, 2], &[2., 0., 5., 3.]);
    assert_tensor(
        &y[1],
        &[1, 2, 6],
        &[0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.],
    );
    assert_tensor(&y[2], &[2, 2, 2], &[2., 0., 5., 3., 2., 0., 5., 3.]);
}
