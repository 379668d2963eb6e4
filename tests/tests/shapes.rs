//! Shape inference against values computed by hand from the formulas of
//! `shared/seed/README.md`; each case shows its arithmetic.

use nnc_compiler::driver::compile_source;
use nnc_frontend::SourceFile;

/// Lowers a one-op model and returns the shape of its output.
fn shape(inputs: &[(&str, &[usize])], op: &str) -> Vec<usize> {
    let mut src = String::from("model m {\n");
    for (name, dims) in inputs {
        let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        src.push_str(&format!("    input {name}: f32[{}]\n", dims.join(", ")));
    }
    src.push_str(&format!("    y = {op}\n    output y\n}}\n"));
    let source = SourceFile::new("shape.nn", src.clone());
    match compile_source(&source) {
        Ok(g) => g.node(g.outputs()[0]).ty.shape.clone(),
        Err(d) => panic!(
            "{src}\n{}",
            nnc_frontend::diagnostic::render_all(&d, &source)
        ),
    }
}

#[test]
fn conv2d_output_size() {
    // floor((224 + 2*3 - 1*(7-1) - 1) / 2) + 1 = floor(223/2) + 1 = 112
    assert_eq!(
        shape(
            &[("x", &[1, 3, 224, 224])],
            "conv2d(x, out=64, kernel=7, stride=2, pad=3)"
        ),
        [1, 64, 112, 112]
    );
    // dilation 2: floor((10 + 0 - 2*2 - 1) / 1) + 1 = 6
    assert_eq!(
        shape(
            &[("x", &[1, 3, 10, 10])],
            "conv2d(x, out=8, kernel=3, dilation=2)"
        ),
        [1, 8, 6, 6]
    );
    // H: floor((7 + 2 - 1*2 - 1) / 2) + 1 = 4;  W: floor((9 + 4 - 2*4 - 1) / 3) + 1 = 2
    assert_eq!(
        shape(
            &[("x", &[2, 4, 7, 9])],
            "conv2d(x, out=6, kernel=[3, 5], stride=[2, 3], pad=[1, 2], dilation=[1, 2], groups=2)"
        ),
        [2, 6, 4, 2]
    );
    // The smallest legal input: 3 + 0 - 2 - 1 = 0 -> 1 output.
    assert_eq!(
        shape(&[("x", &[1, 1, 3, 3])], "conv2d(x, out=1, kernel=3)"),
        [1, 1, 1, 1]
    );
}

#[test]
fn pooling_output_size_with_ceil_mode() {
    // floor: floor((5 - 2) / 2) + 1 = 2;  ceil: ceil(3/2) + 1 = 3, last window starts at 4 < 5
    assert_eq!(
        shape(&[("x", &[1, 1, 5, 5])], "max_pool2d(x, kernel=2)"),
        [1, 1, 2, 2]
    );
    assert_eq!(
        shape(
            &[("x", &[1, 1, 5, 5])],
            "max_pool2d(x, kernel=2, ceil_mode=true)"
        ),
        [1, 1, 3, 3]
    );
    // ceil(5/2) + 1 = 4, but window 4 would start at 3*2 = 6 >= 5 + 1 (in the
    // right padding), so PyTorch drops it: 3.
    assert_eq!(
        shape(
            &[("x", &[1, 1, 5, 5])],
            "avg_pool2d(x, kernel=2, pad=1, ceil_mode=true)"
        ),
        [1, 1, 3, 3]
    );
    // ceil((6 + 2 - 3) / 2) + 1 = 4; window 4 starts at 6 < 6 + 1: kept.
    assert_eq!(
        shape(
            &[("x", &[1, 1, 6, 6])],
            "max_pool2d(x, kernel=3, stride=2, pad=1, ceil_mode=true)"
        ),
        [1, 1, 4, 4]
    );
    // ResNet's stem pool: floor((112 + 2 - 3) / 2) + 1 = 56
    assert_eq!(
        shape(
            &[("x", &[1, 64, 112, 112])],
            "max_pool2d(x, kernel=3, stride=2, pad=1)"
        ),
        [1, 64, 56, 56]
    );
    assert_eq!(
        shape(&[("x", &[1, 8, 7, 7])], "global_avg_pool(x)"),
        [1, 8, 1, 1]
    );
}

#[test]
fn padding_that_differs_per_side() {
    // pad=[top, left, bottom, right]:
    // H: floor((7 + 0 + 2 - 3) / 2) + 1 = 4;  W: floor((9 + 1 + 0 - 3) / 2) + 1 = 4
    assert_eq!(
        shape(
            &[("x", &[1, 3, 7, 9])],
            "conv2d(x, out=4, kernel=3, stride=2, pad=[0, 1, 2, 0])"
        ),
        [1, 4, 4, 4]
    );
    // `[h, w]` and `[h, w, h, w]` are the same padding.
    assert_eq!(
        shape(
            &[("x", &[1, 3, 7, 9])],
            "conv2d(x, out=4, kernel=3, pad=[1, 2, 1, 2])"
        ),
        shape(
            &[("x", &[1, 3, 7, 9])],
            "conv2d(x, out=4, kernel=3, pad=[1, 2])"
        )
    );
    // ceil mode, H: ceil((4 + 0 + 1 - 2) / 2) + 1 = 3, but window 3 starts at
    // 2*2 = 4 >= 4 + 0 (in the bottom padding): 2.
    // W: ceil((4 + 1 + 0 - 2) / 2) + 1 = 3, window 3 starts at 4 < 4 + 1: 3.
    // (With the sides swapped the same sums give 3 and 2.)
    assert_eq!(
        shape(
            &[("x", &[1, 1, 4, 4])],
            "avg_pool2d(x, kernel=2, pad=[0, 1, 1, 0], ceil_mode=true)"
        ),
        [1, 1, 2, 3]
    );
    assert_eq!(
        shape(
            &[("x", &[1, 1, 4, 4])],
            "max_pool2d(x, kernel=2, pad=[1, 0, 0, 1], ceil_mode=true)"
        ),
        [1, 1, 3, 2]
    );
}

#[test]
fn conv_transpose2d_output_size() {
    // (4 - 1)*2 - 2*1 + 1*(3 - 1) + 1 + 1 = 8
    assert_eq!(
        shape(
            &[("x", &[1, 4, 4, 4])],
            "conv_transpose2d(x, out=2, kernel=3, stride=2, pad=1, output_padding=1)"
        ),
        [1, 2, 8, 8]
    );
    // (3 - 1)*1 - 0 + 2*(3 - 1) + 0 + 1 = 7
    assert_eq!(
        shape(
            &[("x", &[1, 4, 3, 3])],
            "conv_transpose2d(x, out=4, kernel=3, dilation=2, groups=2)"
        ),
        [1, 4, 7, 7]
    );
}

#[test]
fn linear_flatten_and_friends() {
    assert_eq!(shape(&[("x", &[2, 5, 7])], "linear(x, out=3)"), [2, 5, 3]);
    assert_eq!(shape(&[("x", &[2, 3, 4, 5])], "flatten(x)"), [2, 60]);
    assert_eq!(
        shape(
            &[("x", &[2, 3, 4, 5])],
            "flatten(x, start_dim=1, end_dim=2)"
        ),
        [2, 12, 5]
    );
    assert_eq!(
        shape(&[("x", &[2, 3, 4])], "permute(x, dims=[2, 0, 1])"),
        [4, 2, 3]
    );
    assert_eq!(
        shape(&[("x", &[2, 3, 4])], "select(x, dim=1, index=-1)"),
        [2, 4]
    );
    assert_eq!(
        shape(&[("x", &[2, 3, 4])], "reshape(x, shape=[4, -1])"),
        [4, 6]
    );
    assert_eq!(shape(&[("x", &[2, 3, 4])], "softmax(x, dim=1)"), [2, 3, 4]);
}

#[test]
fn broadcasting_and_concat() {
    // Right-aligned: [1, 3, 1, 5] with [_, _, 4, 1] -> [1, 3, 4, 5]
    assert_eq!(
        shape(&[("a", &[1, 3, 1, 5]), ("b", &[4, 1])], "a + b"),
        [1, 3, 4, 5]
    );
    assert_eq!(shape(&[("a", &[2, 1]), ("b", &[3])], "mul(a, b)"), [2, 3]);
    assert_eq!(
        shape(
            &[("a", &[1, 2, 4, 4]), ("b", &[1, 3, 4, 4])],
            "concat(a, b)"
        ),
        [1, 5, 4, 4]
    );
    assert_eq!(
        shape(
            &[("a", &[1, 2, 4, 4]), ("b", &[1, 2, 4, 3])],
            "concat(a, b, dim=-1)"
        ),
        [1, 2, 4, 7]
    );
}

#[test]
fn recurrent_and_norms() {
    assert_eq!(
        shape(&[("x", &[5, 2, 8])], "lstm(x, hidden=16, layers=2)"),
        [5, 2, 16]
    );
    assert_eq!(
        shape(&[("x", &[2, 5, 8])], "rnn(x, hidden=16, batch_first=true)"),
        [2, 5, 16]
    );
    for op in [
        "batch_norm(x)",
        "group_norm(x, groups=2)",
        "layer_norm(x)",
        "instance_norm(x, affine=true)",
    ] {
        assert_eq!(shape(&[("x", &[1, 4, 3, 3])], op), [1, 4, 3, 3], "{op}");
    }
}
