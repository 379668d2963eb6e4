//! Unit tests of the importer's pieces that the fixture suite reaches only
//! indirectly: binding names and the constant folds.

use super::constant::{Constant, Data};
use super::emit::Names;

#[test]
fn onnx_names_become_paths_that_parse() {
    let mut names = Names::default();
    assert_eq!(
        names.fresh("/layer1/layer1.0/conv1/Conv", "conv"),
        "layer1.layer1.0.conv1.Conv"
    );
    assert_eq!(names.fresh("features.0", "x"), "features.0");
    // Taken names get a suffix; an index segment gets one of its own.
    assert_eq!(names.fresh("features.0", "x"), "features.0._2");
    assert_eq!(names.fresh("relu", "x"), "relu");
    assert_eq!(names.fresh("relu", "x"), "relu_2");
    // Characters outside identifiers, leading digits and zeros, literals.
    assert_eq!(names.fresh("onnx::Conv_12", "x"), "onnx.Conv_12");
    assert_eq!(names.fresh("1x1-conv", "x"), "_1x1_conv");
    assert_eq!(names.fresh("block.01", "x"), "block._01");
    assert_eq!(names.fresh("true", "x"), "_true");
    assert_eq!(names.fresh("///", "gemm"), "gemm");
    assert_eq!(names.fresh_ident("input.1", "input"), "input_1");
    assert_eq!(names.fresh_ident("0", "input"), "_0");
}

fn ints(dims: &[usize], values: &[i64]) -> Constant {
    Constant {
        dims: dims.to_vec(),
        data: Data::I64(values.to_vec()),
    }
}

#[test]
fn constant_folds() {
    let m = ints(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    assert_eq!(m.transposed(&[1, 0]), ints(&[3, 2], &[1, 4, 2, 5, 3, 6]));
    assert_eq!(m.gathered(1, &[2, 0], &[2]), ints(&[2, 2], &[3, 1, 6, 4]));
    assert_eq!(m.gathered(0, &[1], &[]), ints(&[3], &[4, 5, 6]));
    let joined = Constant::concatenated(&[&m, &ints(&[2, 1], &[7, 8])], 1);
    assert_eq!(joined, Some(ints(&[2, 4], &[1, 2, 3, 7, 4, 5, 6, 8])));
    assert_eq!(Constant::concatenated(&[&m, &ints(&[1, 1], &[7])], 1), None);
    let column = ints(&[2, 1], &[10, 20]);
    let sum = m.broadcast(&column, |a, b| a + b, |a, b| a.checked_add(b));
    assert_eq!(sum, Some(ints(&[2, 3], &[11, 12, 13, 24, 25, 26])));
    // Integer division by zero does not fold; floats follow IEEE.
    let zero = ints(&[], &[0]);
    assert_eq!(
        m.broadcast(&zero, |a, b| a / b, |a, b| a.checked_div(b)),
        None
    );
    let half = Constant {
        dims: vec![],
        data: Data::F32(vec![0.5]),
    };
    let scaled = m.broadcast(&half, |a, b| a * b, |a, b| a.checked_mul(b));
    assert_eq!(
        scaled.map(|c| c.data),
        Some(Data::F32(vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0]))
    );
}

#[test]
#[allow(clippy::panic)]
fn floats_print_as_they_parse() {
    use crate::ast::ExprKind;
    use crate::printer::print_expr;
    assert_eq!(print_expr(&super::emit::float(1e-5)), "1e-5");
    assert_eq!(print_expr(&super::emit::float(-0.3)), "-0.3");
    // No infinity literal: the largest finite float of the sign.
    let lowest = super::emit::float(f32::NEG_INFINITY);
    assert_eq!(print_expr(&lowest), "-3.4028235e38");
    let ExprKind::Float(v) = super::emit::float(f32::INFINITY).kind else {
        panic!("not a float");
    };
    // The shortest decimal of f32::MAX reads back as f32::MAX.
    assert_eq!(v as f32, f32::MAX);
}

/// Upsample (opsets 7 and 9) and Resize-10, converted from the fixtures
/// that ONNX Runtime ran (the opset check refuses them until opsets below
/// 11 import; `tests/tests/onnx.rs` then compares their outputs). Each is
/// asymmetric, rounds nearest coordinates down where the axis grows and up
/// where it shrinks, and reads its scales from an attribute before opset 9.
#[test]
#[allow(clippy::unwrap_used)]
fn resize_and_upsample_before_opset_11_convert() {
    use super::convert::Converter;
    use super::model::DataDir;
    use super::proto::ModelProto;
    use crate::printer::print_file;
    use prost::Message;
    let cases = [
        (
            "upsample_opset9_nearest",
            "interpolate(x0, scale_factor=[2.0, 3.0])",
        ),
        (
            "upsample_opset9_linear",
            "interpolate(x0, scale_factor=[1.5, 2.5], mode=\"bilinear\", coordinate=\"asymmetric\")",
        ),
        (
            "upsample_opset7_attribute",
            "interpolate(x0, scale_factor=[2.0, 1.5])",
        ),
        (
            "resize_opset10_nearest_down",
            "interpolate(x0, scale_factor=[0.6, 0.45], nearest=\"ceil\")",
        ),
        (
            "resize_opset10_linear_up",
            "interpolate(x0, scale_factor=[1.7, 2.5], mode=\"bilinear\", coordinate=\"asymmetric\")",
        ),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases/onnx/resize");
    for (name, expected) in cases {
        let bytes = std::fs::read(root.join(name).join("model.onnx")).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        let opset = model.opset_import[0].version();
        let dims = std::collections::BTreeMap::new();
        let graph = model.graph.as_ref().unwrap();
        let converted = Converter::new(
            opset,
            DataDir {
                dir: None,
                limit: nnc_runtime::MemoryLimit::default(),
                mapped: None,
            },
            &dims,
        )
        .run(graph);
        assert!(
            converted.problems.is_empty(),
            "{name}: {:?}",
            converted.problems
        );
        let text = print_file(&super::emit::file("m", converted.body));
        assert!(text.contains(expected), "{name}:\n{text}");
    }
}
