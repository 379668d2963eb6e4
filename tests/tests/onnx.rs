//! ONNX import against ONNX Runtime: every fixture under `tests/cases/onnx/`
//! (made by `scripts/onnx_fixtures.py`) is imported, run by the reference
//! interpreter on the stored inputs and compared with the outputs ONNX
//! Runtime computed, within 1e-4 relative. The imported `.nn` text must
//! parse back to the same AST and lower to the same IR as the AST the
//! importer built. Models nnc cannot import must list every offending node.

// A failed expectation in a test is a test failure, not a library panic.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use nnc_compiler::driver::{load_any, LoadError};
use nnc_compiler::interp::run;
use nnc_compiler::lower::lower;
use nnc_frontend::onnx::{import_bytes, import_file, ImportError};
use nnc_frontend::{parse, print_file, SourceFile};
use nnc_runtime::{read_npy, Tensor};
use nnc_tests::repo_root;
use std::path::{Path, PathBuf};

/// Relative tolerance against ONNX Runtime: `|nnc - ort| <= TOL * (1 + |ort|)`.
const TOL: f32 = 1e-4;

fn fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![repo_root().join("tests/cases/onnx")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture dir").flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("errors") {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "model.onnx") {
                out.push(dir.clone());
            }
        }
    }
    out.sort();
    out
}

/// `input_0.npy`, `input_1.npy`, ... (or the outputs) of a fixture.
fn numbered(dir: &Path, stem: &str) -> Vec<Tensor> {
    (0..)
        .map(|i| dir.join(format!("{stem}_{i}.npy")))
        .take_while(|p| p.exists())
        .map(|p| read_npy(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// The largest absolute difference, and the largest one relative to
/// `1 + |expected|`.
fn errors(actual: &Tensor, expected: &Tensor) -> (f32, f32) {
    let mut worst = (0.0f32, 0.0f32);
    for (&a, &e) in actual.data().iter().zip(expected.data()) {
        let diff = (a - e).abs();
        worst.0 = worst.0.max(diff);
        worst.1 = worst.1.max(diff / (1.0 + e.abs()));
    }
    worst
}

fn name(dir: &Path) -> String {
    dir.strip_prefix(repo_root().join("tests/cases/onnx"))
        .unwrap_or(dir)
        .display()
        .to_string()
}

#[test]
fn every_fixture_matches_onnx_runtime() {
    let dirs = fixtures();
    assert!(
        dirs.len() >= 60,
        "expected the ONNX fixtures, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for dir in &dirs {
        let loaded = match load_any(&dir.join("model.onnx")) {
            Ok(l) => l,
            Err(LoadError::Diagnostics {
                source_file,
                diagnostics,
            }) => {
                let messages: Vec<String> =
                    diagnostics.iter().map(|d| d.render(&source_file)).collect();
                failures.push(format!(
                    "{}: {}\n{}",
                    name(dir),
                    messages.join("\n"),
                    source_file.text()
                ));
                continue;
            }
            Err(e) => {
                failures.push(format!("{}: {e}", name(dir)));
                continue;
            }
        };
        let weights = loaded.weights.expect("an imported model has weights");
        let inputs = numbered(dir, "input");
        let expected = numbered(dir, "output");
        let outputs = match run(&loaded.model.graph, &weights, &inputs) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{}: {e}", name(dir)));
                continue;
            }
        };
        if outputs.len() != expected.len() {
            failures.push(format!(
                "{}: {} outputs, ORT has {}",
                name(dir),
                outputs.len(),
                expected.len()
            ));
            continue;
        }
        let mut worst = (0.0f32, 0.0f32);
        for (i, (a, e)) in outputs.iter().zip(&expected).enumerate() {
            if a.shape() != e.shape() {
                failures.push(format!(
                    "{}: output {i} has shape {:?}, ORT {:?}",
                    name(dir),
                    a.shape(),
                    e.shape()
                ));
                continue;
            }
            let (abs, rel) = errors(a, e);
            worst = (worst.0.max(abs), worst.1.max(rel));
        }
        if worst.1 > TOL {
            failures.push(format!(
                "{}: max error {:.2e} ({:.2e} relative) exceeds {TOL:e}\n{}",
                name(dir),
                worst.0,
                worst.1,
                loaded.model.source.text()
            ));
        }
        report.push(format!(
            "{:<52} {:>10.2e} {:>10.2e}",
            name(dir),
            worst.0,
            worst.1
        ));
    }
    // Visible with `--nocapture`: the closing note of the import work quotes it.
    eprintln!(
        "{:<52} {:>10} {:>10}\n{}",
        "fixture",
        "max abs",
        "max rel",
        report.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

/// Strips the `# name @ line:col` locations, which differ between a graph
/// lowered from the printed text and one lowered from the importer's AST.
fn without_locations(ir: &str) -> String {
    ir.lines()
        .map(|l| l.split("  # ").next().unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn printed_models_parse_back_to_the_same_ast_and_ir() {
    for dir in fixtures() {
        let imported = import_file(&dir.join("model.onnx")).unwrap_or_else(|e| panic!("{e}"));
        let text = print_file(&imported.file);
        let reparsed = parse(&text).unwrap_or_else(|d| panic!("{}: {}", name(&dir), d.message));
        assert_eq!(
            reparsed.without_spans(),
            imported.file.without_spans(),
            "{}",
            name(&dir)
        );
        assert_eq!(print_file(&reparsed), text, "{}", name(&dir));

        let from_text =
            lower(&reparsed, &SourceFile::new("printed", text.clone())).expect("lowers");
        let from_ast =
            lower(&imported.file, &SourceFile::new("ast", String::new())).expect("lowers");
        assert_eq!(
            without_locations(&from_text.to_string()),
            without_locations(&from_ast.to_string()),
            "{}",
            name(&dir)
        );
    }
}

#[test]
fn imported_weights_are_exactly_the_weights_the_model_expects() {
    for dir in fixtures() {
        let loaded = load_any(&dir.join("model.onnx")).unwrap_or_else(|e| panic!("{e}"));
        let weights = loaded.weights.expect("weights");
        let expected = nnc_compiler::weights::expected_weights(&loaded.model.graph);
        let problems = nnc_runtime::check_weights(&expected, &weights);
        assert!(problems.is_empty(), "{}: {problems:?}", name(&dir));
    }
}

#[test]
fn pytorch_names_become_module_paths() {
    let imported =
        import_file(&repo_root().join("tests/cases/onnx/models/resnet_small/model.onnx"))
            .expect("imports");
    let text = print_file(&imported.file);
    for line in [
        "conv1 = conv2d(input, out=8, kernel=7, stride=2, pad=3, bias=false)",
        "layer2.0.downsample.0 = conv2d(",
        "fc = linear(",
    ] {
        assert!(text.contains(line), "`{line}` missing from:\n{text}");
    }
    for weight in [
        "layer1.0.bn1.running_var",
        "layer2.0.downsample.1.weight",
        "fc.bias",
    ] {
        assert!(imported.weights.contains(weight), "no weight `{weight}`");
    }
}

#[test]
fn every_unsupported_node_is_listed_at_once() {
    let path = repo_root().join("tests/cases/onnx/errors/unsupported_nodes/model.onnx");
    let err = import_file(&path).expect_err("the model has unsupported nodes");
    let ImportError::Unsupported { nodes, .. } = &err else {
        panic!("expected unsupported nodes, got {err}");
    };
    let listed: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n.node.as_str(), n.op_type.as_str()))
        .collect();
    // `avg_pool_dilated` reads the output of the Hardmax, which cannot be
    // imported, and is listed for its own problem all the same (checked with
    // the shapes the model annotates).
    assert_eq!(
        listed,
        [
            ("hardmax_node", "Hardmax"),
            ("pad_wrap", "Pad"),
            ("lstm_clip", "LSTM"),
            ("avg_pool_dilated", "AveragePool")
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("4 unsupported nodes"), "{text}");
    assert!(
        text.contains("average pooling with dilations is not supported"),
        "{text}"
    );
    assert!(
        text.contains("node `pad_wrap` (Pad, opset 19): mode \"wrap\" is not supported"),
        "{text}"
    );
    assert!(
        text.contains("node `lstm_clip` (LSTM, opset 19): cell clipping"),
        "{text}"
    );
}

#[test]
fn legacy_forms_nnc_cannot_honour_are_listed() {
    let path = repo_root().join("tests/cases/onnx/errors/older_opsets/model.onnx");
    let err = import_file(&path).expect_err("the model has rejected nodes");
    let ImportError::Unsupported { nodes, .. } = &err else {
        panic!("expected unsupported nodes, got {err}");
    };
    let listed: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    // Every node but the Flatten and the Clip with attribute bounds.
    assert_eq!(
        listed,
        [
            "dropout_training",
            "bn_batch_statistics",
            "add_without_broadcast",
            "add_axis_mismatch",
            "gemm_without_broadcast",
            "max_pool_ceil_mode",
            "avg_pool_count_include_pad",
            "pad_without_pads",
            "concat_without_axis",
        ],
        "{err}"
    );
    let text = err.to_string();
    for line in [
        "node `dropout_training` (Dropout, opset 6): is_test=0 (the default before opset 7) drops elements at random",
        "node `bn_batch_statistics` (BatchNormalization, opset 6): is_test=0",
        "node `add_without_broadcast` (Add, opset 6): A [1, 4, 8, 8] and B [8] differ, and `broadcast` is 0",
        "node `add_axis_mismatch` (Add, opset 6): B [4, 8] does not match the dims of A [1, 4, 8, 8] from axis 2",
        "node `gemm_without_broadcast` (Gemm, opset 6): C has shape [3], not the result's [1, 3]",
        "node `max_pool_ceil_mode` (MaxPool, opset 6): attribute `ceil_mode` is not part of MaxPool before opset 10",
        "node `avg_pool_count_include_pad` (AveragePool, opset 6): attribute `count_include_pad` is not part of AveragePool before opset 7",
        "node `pad_without_pads` (Pad, opset 6): `pads` is required",
        "node `concat_without_axis` (Concat, opset 6): `axis` is required",
    ] {
        assert!(text.contains(line), "`{line}` missing from:\n{text}");
    }
}

/// A model of one Relu at `opset`.
fn relu_model(opset: i64) -> Vec<u8> {
    use nnc_frontend::onnx::proto::*;
    use prost::Message;
    let value = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(tensor_proto::DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: vec![tensor_shape_proto::Dimension {
                        value: Some(tensor_shape_proto::dimension::Value::DimValue(2)),
                        ..Default::default()
                    }],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let relu = NodeProto {
        input: vec!["x".into()],
        output: vec!["y".into()],
        op_type: Some("Relu".into()),
        ..Default::default()
    };
    ModelProto {
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(GraphProto {
            node: vec![relu],
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn opsets_outside_the_range_are_rejected_with_the_range() {
    use nnc_frontend::onnx::{MAX_OPSET, MIN_OPSET};
    let path = Path::new("relu.onnx");
    for opset in [MIN_OPSET, 7, 10, MAX_OPSET] {
        let imported = import_bytes(&relu_model(opset), path, None);
        assert!(imported.is_ok(), "opset {opset}: {:?}", imported.err());
    }
    let old = import_bytes(&relu_model(MIN_OPSET - 1), path, None)
        .expect_err("too old")
        .to_string();
    assert!(
        old.contains("opset 5 is older than nnc imports (opsets 6 to 28); convert the model with `onnx.version_converter"),
        "{old}"
    );
    let new = import_bytes(&relu_model(MAX_OPSET + 1), path, None)
        .expect_err("too new")
        .to_string();
    assert!(
        new.contains("opset 29 is newer than nnc imports (opsets 6 to 28)"),
        "{new}"
    );
}

#[test]
fn every_unsupported_resize_names_its_reason() {
    let path = repo_root().join("tests/cases/onnx/errors/unsupported_resize/model.onnx");
    let err = import_file(&path).expect_err("every node is unsupported");
    let text = err.to_string();
    for expected in [
        "node `resize_cubic` (Resize, opset 19): mode \"cubic\" is not supported",
        "node `resize_crop` (Resize, opset 19): coordinate_transformation_mode \"tf_crop_and_resize\" is not supported",
        "node `resize_antialias` (Resize, opset 19): antialias=1 is not supported",
        "node `resize_exclude_outside` (Resize, opset 19): exclude_outside=1 is for cubic sampling",
        "node `resize_channels` (Resize, opset 19): only H and W (the last two dims) can be resized; the scales change dim 1",
    ] {
        assert!(text.contains(expected), "`{expected}` missing from:\n{text}");
    }
}

#[test]
fn bad_bytes_are_an_error_not_a_panic() {
    let path = Path::new("bad.onnx");
    for bytes in [&b""[..], b"not a model", &[0xff; 64], &[0x0a, 0x80]] {
        assert!(import_bytes(bytes, path, None).is_err());
    }
    // Every prefix of a real model: truncated files must fail cleanly.
    let model =
        std::fs::read(repo_root().join("tests/cases/onnx/models/resnet_small/model.onnx")).unwrap();
    for len in (0..model.len()).step_by(97) {
        let _ = import_bytes(&model[..len], path, None);
    }
}

/// Found by the `onnx_import` fuzz target: a graph with no outputs
/// imported as `output` with nothing after it, text that does not parse.
#[test]
fn a_graph_without_outputs_is_an_error() {
    use nnc_frontend::onnx::proto::ModelProto;
    use prost::Message;
    let mut model = ModelProto::decode(relu_model(13).as_slice()).unwrap();
    if let Some(graph) = model.graph.as_mut() {
        graph.output.clear();
    }
    let err = import_bytes(&model.encode_to_vec(), Path::new("no_outputs.onnx"), None)
        .expect_err("no outputs")
        .to_string();
    assert!(err.contains("the graph has no outputs"), "{err}");
}

/// Found by the `onnx_import` fuzz target: a `MatMul` node with no
/// outputs indexed its first output and panicked.
#[test]
fn a_node_without_outputs_is_an_error() {
    use nnc_frontend::onnx::proto::ModelProto;
    use prost::Message;
    let mut model = ModelProto::decode(relu_model(13).as_slice()).unwrap();
    if let Some(graph) = model.graph.as_mut() {
        graph.node[0].output.clear();
        graph.node[0].op_type = Some("MatMul".into());
        graph.node[0].input.push("x".into());
    }
    let err = import_bytes(&model.encode_to_vec(), Path::new("no_outputs.onnx"), None)
        .expect_err("a node without outputs")
        .to_string();
    assert!(err.contains("the node has no outputs"), "{err}");
}

/// Found by the `onnx_import` fuzz target: a `Slice` without `axes` and
/// with more starts than the data has dims indexed past its shape.
#[test]
fn a_slice_with_more_starts_than_dims_is_an_error() {
    use nnc_frontend::onnx::proto::{attribute_proto::AttributeType, AttributeProto, ModelProto};
    use prost::Message;
    let ints = |name: &str, values: Vec<i64>| AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    };
    let mut model = ModelProto::decode(relu_model(9).as_slice()).unwrap();
    if let Some(graph) = model.graph.as_mut() {
        graph.node[0].op_type = Some("Slice".into());
        graph.node[0].attribute = vec![ints("starts", vec![0, 0]), ints("ends", vec![1, 1])];
    }
    let err = import_bytes(&model.encode_to_vec(), Path::new("slice.onnx"), None)
        .expect_err("two starts for a vector")
        .to_string();
    assert!(err.contains("2 starts for data of rank 1"), "{err}");
}

#[test]
fn external_data_needs_the_model_directory() {
    let path = repo_root().join("tests/cases/onnx/external_data/conv/model.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let err = import_bytes(&bytes, &path, None).expect_err("no directory for the external data");
    assert!(err.to_string().contains("external data"), "{err}");
    assert!(import_file(&path).is_ok());
}

#[test]
fn the_default_pass_pipeline_keeps_every_fixture_within_tolerance() {
    let names: Vec<&str> = nnc_compiler::passes::pass_names().collect();
    let mut failures = Vec::new();
    for dir in fixtures() {
        let loaded = load_any(&dir.join("model.onnx")).unwrap_or_else(|e| panic!("{e}"));
        let mut graph = loaded.model.graph;
        let mut weights = loaded.weights.expect("weights");
        if let Err(e) = nnc_compiler::passes::run_pipeline(&mut graph, &mut weights, &names, true) {
            failures.push(format!("{}: {e}", name(&dir)));
            continue;
        }
        let outputs = run(&graph, &weights, &numbered(&dir, "input")).expect("runs");
        for (a, e) in outputs.iter().zip(numbered(&dir, "output")) {
            let (abs, rel) = errors(a, &e);
            if a.shape() != e.shape() || rel > TOL {
                failures.push(format!(
                    "{}: max error {abs:e} after the passes\n{graph}",
                    name(&dir)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn corrupted_models_fail_cleanly() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let path = Path::new("corrupt.onnx");
    let fixtures = [
        "models/lstm_stack",
        "conv_transpose/output_shape",
        "conv/same_upper_even_kernel",
        "pool/max_ceil_mode",
        "linear/gemm_transa_matrix_c",
        "shape/reshape_shape_chain",
        "shape/pad_axes_opset18",
        "softmax/opset11_axis1_flattens",
        "norm/layer_norm_axis1_broadcast_scale",
        "recurrent/lstm_bidirectional_states",
        "errors/unsupported_nodes",
        "conv1d/conv_transpose",
        "models/caffe2_opset9",
        "elementwise/sub_opset6_broadcast_axis0_inputs",
        "errors/older_opsets",
        "resize/opset18_not_larger",
        "errors/unsupported_resize",
    ];
    let rounds: usize = std::env::var("NNC_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for fixture in fixtures {
        let original = std::fs::read(
            repo_root()
                .join("tests/cases/onnx")
                .join(fixture)
                .join("model.onnx"),
        )
        .unwrap();
        for _ in 0..rounds {
            let mut bytes = original.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            // Import and compile must return, with a model or an error.
            if let Ok(imported) = import_bytes(&bytes, path, None) {
                let source = SourceFile::new("corrupt", print_file(&imported.file));
                let _ = nnc_compiler::driver::compile_source(&source);
            }
        }
    }
}

/// Pads that differ per side, given or from `auto_pad=SAME_*`, become the
/// window op's own `pad=[top, left, bottom, right]`: none of these imports
/// a `pad` before its conv or pool. (A pool padding more than half its
/// kernel on some side, as in `pool/avg_exclude_pad_asymmetric`, still
/// goes into a `pad` before the pool.)
#[test]
fn asymmetric_pads_become_the_ops_own_padding() {
    let root = repo_root().join("tests/cases/onnx");
    for case in [
        "conv/asymmetric_pads",
        "conv/same_upper_even_kernel",
        "conv/same_lower",
        "conv/asymmetric_pads_winograd",
        "conv/asymmetric_pads_im2col",
        "conv/same_upper_depthwise",
        "conv/same_lower_separable",
        "pool/max_same_upper",
        "pool/max_same_lower",
        "pool/max_asymmetric_pads",
        "pool/max_ceil_asymmetric_pads",
        "pool/avg_same_upper_include_pad",
        "pool/avg_same_lower_exclude_pad",
        "pool/avg_asymmetric_include_pad",
        "pool/avg_exclude_pad_same_upper_ceil",
    ] {
        let imported = import_file(&root.join(case).join("model.onnx"))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let text = print_file(&imported.file);
        assert!(
            !text.contains(" = pad("),
            "{case} imports with a pad:\n{text}"
        );
        assert!(
            text.contains("pad=["),
            "{case} has no asymmetric pad:\n{text}"
        );
    }
}

/// A `Pad` of the spatial dims read only by a window op folds into the op
/// in `simplify` when the values stay the same (`pad_fold/*`), and stays
/// otherwise (`*_kept`); the other tests check the values against ONNX
/// Runtime with and without the passes.
#[test]
fn pads_before_window_ops_fold_in_simplify() {
    let dirs: Vec<PathBuf> = fixtures()
        .into_iter()
        .filter(|d| name(d).starts_with("pad_fold/"))
        .collect();
    assert!(dirs.len() >= 5, "{dirs:?}");
    for dir in dirs {
        let loaded = load_any(&dir.join("model.onnx")).unwrap_or_else(|e| panic!("{e}"));
        let mut graph = loaded.model.graph;
        let mut weights = loaded.weights.expect("weights");
        let pads = |g: &nnc_compiler::ir::Graph| {
            g.node_ids()
                .into_iter()
                .filter(|&id| matches!(g.node(id).op, nnc_compiler::ir::Op::Pad(_)))
                .count()
        };
        assert_eq!(pads(&graph), 1, "{}:\n{graph}", name(&dir));
        nnc_compiler::passes::run_pipeline(&mut graph, &mut weights, &["simplify"], true)
            .unwrap_or_else(|e| panic!("{}: {e}", name(&dir)));
        let kept = usize::from(name(&dir).ends_with("_kept"));
        assert_eq!(pads(&graph), kept, "{}:\n{graph}", name(&dir));
    }
}

/// The `.nn` text of the model families, for review: a change to naming or
/// to the form of any converted op shows up as a snapshot diff.
#[test]
fn imported_text_of_the_model_families() {
    insta::glob!("../cases/onnx/models", "*/model.onnx", |path| {
        let imported = import_file(path).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(print_file(&imported.file));
    });
}

/// A model whose one initializer lives in an external file at `location`.
fn external_model(location: &str, offset: &str, length: &str) -> Vec<u8> {
    use nnc_frontend::onnx::proto::*;
    use prost::Message;
    let entry = |k: &str, v: &str| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v.into()),
    };
    let weight = TensorProto {
        name: Some("w".into()),
        dims: vec![2],
        data_type: Some(tensor_proto::DataType::Float as i32),
        data_location: Some(tensor_proto::DataLocation::External as i32),
        external_data: vec![
            entry("location", location),
            entry("offset", offset),
            entry("length", length),
        ],
        ..Default::default()
    };
    let input = ValueInfoProto {
        name: Some("x".into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(tensor_proto::DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: vec![tensor_shape_proto::Dimension {
                        value: Some(tensor_shape_proto::dimension::Value::DimValue(2)),
                        ..Default::default()
                    }],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let add = NodeProto {
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        op_type: Some("Add".into()),
        ..Default::default()
    };
    let model = ModelProto {
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            node: vec![add],
            initializer: vec![weight],
            input: vec![input],
            output: vec![ValueInfoProto {
                name: Some("y".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn external_data_is_read_by_range_and_only_below_the_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<u8> = [0.0f32, 9.0, 1.5, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.path().join("w.bin"), &values).unwrap();
    let model = dir.path().join("m.onnx");

    std::fs::write(&model, external_model("w.bin", "8", "8")).unwrap();
    let imported = import_file(&model).expect("imports");
    let w = imported
        .weights
        .iter()
        .find(|(n, _)| n.ends_with(".value"))
        .expect("the constant")
        .1;
    assert_eq!(w.data(), &[1.5, -2.0]);

    for (location, offset, length, why) in [
        ("../w.bin", "0", "8", "below the model's directory"),
        ("/etc/passwd", "0", "8", "below the model's directory"),
        ("w.bin", "12", "8", "fewer than offset 12 plus length 8"),
        ("missing.bin", "0", "8", "cannot read external data"),
        ("w.bin", "0", "4", "not match"),
    ] {
        std::fs::write(&model, external_model(location, offset, length)).unwrap();
        let err = import_file(&model).expect_err(location).to_string();
        let expected = if why == "not match" {
            "has 1 values"
        } else {
            why
        };
        assert!(
            err.contains(expected),
            "{location} {offset} {length}: {err}"
        );
    }
}

#[test]
fn symbolic_dims_need_a_size() {
    let path = repo_root().join("tests/cases/onnx/errors/symbolic_batch/model.onnx");
    let err = import_file(&path)
        .expect_err("the batch dim is symbolic")
        .to_string();
    assert!(
        err.contains("node `x` (input, opset 17): dim 0 is the symbol `batch`"),
        "{err}"
    );
    assert!(err.contains("--dim batch=SIZE"), "{err}");
    let options = nnc_frontend::onnx::Options {
        dims: [("batch".to_string(), 3)].into_iter().collect(),
        ..Default::default()
    };
    let imported = nnc_frontend::onnx::import_file_with(&path, &options).expect("imports");
    assert!(print_file(&imported.file).contains("input x: f32[3, 3, 4, 4]"));
}

/// Every fixture also compiles and runs through the compiled backend (at 1
/// and 2 threads) and must match ONNX Runtime within the same tolerance.
#[test]
fn every_fixture_compiled_matches_onnx_runtime() {
    use nnc_compiler::backend::{compile, BackendError, Options};
    use nnc_runtime::Pool;
    let pools = [Pool::new(1).expect("pool"), Pool::new(2).expect("pool")];
    let (mut compiled_count, mut unsupported, mut failures) = (0, Vec::new(), Vec::new());
    for dir in fixtures() {
        let Ok(loaded) = load_any(&dir.join("model.onnx")) else {
            continue; // the interpreter test reports import failures
        };
        let weights = loaded.weights.expect("an imported model has weights");
        let inputs = numbered(&dir, "input");
        let expected = numbered(&dir, "output");
        let compiled = match compile(
            loaded.model.graph,
            weights,
            &Options {
                threads: 2,
                ..Options::default()
            },
        ) {
            Ok(c) => c,
            Err(BackendError::Unsupported { node, what }) => {
                unsupported.push(format!("{}: {node}: {what}", name(&dir)));
                continue;
            }
            Err(e) => {
                failures.push(format!("{}: {e}", name(&dir)));
                continue;
            }
        };
        compiled_count += 1;
        for pool in &pools {
            let outputs = match compiled.executable.run(&inputs, pool) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{}: {e}", name(&dir)));
                    continue;
                }
            };
            for (i, (a, e)) in outputs.iter().zip(&expected).enumerate() {
                let (abs, rel) = if a.shape() == e.shape() {
                    errors(a, e)
                } else {
                    (f32::INFINITY, f32::INFINITY)
                };
                if rel > TOL {
                    failures.push(format!(
                        "{} at {} thread(s): output {i} differs by {abs:.2e} ({rel:.2e} relative)",
                        name(&dir),
                        pool.threads()
                    ));
                }
            }
        }
    }
    eprintln!(
        "{compiled_count} fixtures compiled; not compiled:\n{}",
        unsupported.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        unsupported.is_empty(),
        "not compiled:\n{}",
        unsupported.join("\n")
    );
    assert!(
        compiled_count >= 100,
        "only {compiled_count} fixtures compiled"
    );
}

/// Every `.nn` op the importer's table says an ONNX op becomes is an op of
/// the language, and every ONNX op is listed once, in order.
#[test]
fn the_import_table_names_ops_of_the_language() {
    let ops: Vec<&str> = nnc_compiler::lower::op_names().collect();
    let names: Vec<&str> = nnc_frontend::onnx::OPS.iter().map(|r| r.onnx).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "the table is sorted, each op once");
    for row in nnc_frontend::onnx::OPS {
        for dsl in row.dsl {
            assert!(ops.contains(dsl), "{} becomes `{dsl}`, not an op", row.onnx);
        }
    }
}

/// Activations that exporters write as several ops become one op in
/// `simplify` (their values are checked with the other fixtures), and a
/// look-alike that is not an activation stays as it is.
#[test]
fn spelled_out_activations_become_one_op() {
    let cases = [
        ("silu", Some("silu")),
        ("hardswish_relu6", Some("hardswish")),
        ("hardswish_hardsigmoid", Some("hardswish")),
        ("gelu_erf", Some("gelu")),
        ("gelu_tanh", Some("gelu")),
        ("not_silu", None),
    ];
    for (case, expected) in cases {
        let path = repo_root().join(format!("tests/cases/onnx/patterns/{case}/model.onnx"));
        let loaded = load_any(&path).unwrap_or_else(|e| panic!("{e}"));
        let (mut graph, mut weights) = (loaded.model.graph, loaded.weights.expect("weights"));
        nnc_compiler::passes::run_pipeline(&mut graph, &mut weights, &["simplify", "dce"], true)
            .expect("simplify");
        let ops: Vec<&str> = graph
            .node_ids()
            .into_iter()
            .map(|id| graph.node(id).op.name())
            .filter(|name| !matches!(*name, "input" | "weight" | "constant"))
            .collect();
        match expected {
            // The input scaling `mul`, then the activation alone.
            Some(op) => assert_eq!(ops, ["mul", op], "{case}:\n{graph}"),
            None => assert!(ops.contains(&"sigmoid"), "{case}:\n{graph}"),
        }
    }
}

/// docs/onnx.md's operator table names every ONNX op the importer's table
/// has (in its first column), so the documentation cannot fall behind.
#[test]
fn the_op_table_in_the_docs_lists_every_supported_op() {
    let doc = std::fs::read_to_string(repo_root().join("docs/onnx.md")).expect("docs/onnx.md");
    let first_columns: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| "))
        .filter_map(|l| l.split('|').nth(1))
        .collect();
    let words: std::collections::HashSet<&str> = first_columns
        .iter()
        .flat_map(|c| c.split(|ch: char| !ch.is_ascii_alphanumeric()))
        .collect();
    let missing: Vec<&str> = nnc_frontend::onnx::OPS
        .iter()
        .map(|row| row.onnx)
        .filter(|op| !words.contains(op))
        .collect();
    assert!(missing.is_empty(), "not in docs/onnx.md: {missing:?}");
}

/// Layer and instance norms that exporters write as reductions and
/// arithmetic become one `layer_norm` in `simplify`, and a group norm
/// written as reshape + instance norm + reshape one `group_norm`, each with
/// the scale and shift after it as its weight and bias; reductions over
/// dims that are not the last ones stay (values are checked with the other
/// fixtures).
#[test]
fn spelled_out_norms_become_one_op() {
    let cases = [
        ("layer_norm", vec!["layer_norm"]),
        ("instance_norm_reciprocal", vec!["layer_norm"]),
        ("group_norm", vec!["group_norm"]),
        (
            "not_a_norm",
            vec!["mean", "sub", "pow", "mean", "add", "sqrt", "div"],
        ),
    ];
    for (case, expected) in cases {
        let path = repo_root().join(format!("tests/cases/onnx/patterns/{case}/model.onnx"));
        let loaded = load_any(&path).unwrap_or_else(|e| panic!("{e}"));
        let (mut graph, mut weights) = (loaded.model.graph, loaded.weights.expect("weights"));
        nnc_compiler::passes::run_pipeline(&mut graph, &mut weights, &["simplify", "dce"], true)
            .expect("simplify");
        let ops: Vec<&str> = graph
            .topo_order()
            .into_iter()
            .map(|id| graph.node(id).op.name())
            .filter(|name| !matches!(*name, "input" | "weight" | "constant"))
            .collect();
        assert_eq!(ops, expected, "{case}:\n{graph}");
    }
}

/// The graphs of `scripts/ort_diff.py --emit-fixtures` (random chains of
/// ops, ORT's outputs) and the regression cases of the bugs it found are
/// fixtures like any other: the tests above run each through the
/// interpreter and the compiled code against ONNX Runtime. This checks
/// that they are there to be run.
#[test]
fn differential_samples_and_regressions_are_fixtures() {
    let names: Vec<String> = fixtures().iter().map(|d| name(d)).collect();
    let sample = names
        .iter()
        .filter(|n| n.starts_with("diff_sample/"))
        .count();
    assert!(sample >= 20, "only {sample} graphs in diff_sample/");
    for case in [
        "diff/clip_min_above_max",
        "diff/group_norm_large_offset",
        "diff/instance_norm_large_offset",
        "diff/layer_norm_large_offset",
        "diff/mean_of_scalars",
        "diff/pow_exponent_of_higher_rank",
        "diff/prelu_of_a_scalar",
        "diff/spelled_norm_eps_of_higher_rank",
    ] {
        assert!(names.iter().any(|n| n == case), "no fixture {case}");
    }
}

/// A model whose output is `ConstantOfShape(shape) + x`, with `shape` an
/// initializer, and an initializer `w` of `w_dims` added to it too.
fn constant_of_shape_model(shape: &[i64], w_dims: &[i64]) -> Vec<u8> {
    use nnc_frontend::onnx::proto::*;
    use prost::Message;
    let value = |name: &str, dims: &[i64]| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(tensor_proto::DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        op_type: Some(op.into()),
        name: Some(output.into()),
        ..Default::default()
    };
    let count: i64 = w_dims.iter().product();
    ModelProto {
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            node: vec![
                node("ConstantOfShape", &["shape"], "zeros"),
                node("Add", &["x", "zeros"], "a"),
                node("Add", &["a", "w"], "y"),
            ],
            initializer: vec![
                TensorProto {
                    name: Some("shape".into()),
                    dims: vec![shape.len() as i64],
                    data_type: Some(tensor_proto::DataType::Int64 as i32),
                    int64_data: shape.to_vec(),
                    ..Default::default()
                },
                TensorProto {
                    name: Some("w".into()),
                    dims: w_dims.to_vec(),
                    data_type: Some(tensor_proto::DataType::Float as i32),
                    float_data: vec![0.5; count as usize],
                    ..Default::default()
                },
            ],
            input: vec![value("x", &[1, 64])],
            output: vec![value("y", &[1, 64])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn constants_and_initializers_over_the_memory_limit_are_refused_before_they_are_built() {
    use nnc_frontend::onnx::{import_bytes_with, Options};
    use nnc_runtime::MemoryLimit;
    let path = Path::new("limits.onnx");
    let within = |bytes: u64| Options {
        max_memory: MemoryLimit::from_bytes(bytes),
        ..Default::default()
    };
    // Within the limit, the model imports.
    let small = constant_of_shape_model(&[1, 64], &[1, 64]);
    assert!(import_bytes_with(&small, path, None, &within(1024)).is_ok());

    // A ConstantOfShape of 2^40 zeros would need 4 TiB.
    let bomb = constant_of_shape_model(&[1 << 20, 1 << 20], &[1, 64]);
    let err = import_bytes_with(&bomb, path, None, &within(1 << 30))
        .expect_err("a 4 TiB constant is refused")
        .to_string();
    assert!(
        err.contains("the constant of shape [1048576, 1048576] needs 4.0 TiB (4398046511104 bytes), more than the memory limit of 1.0 GiB"),
        "{err}"
    );

    // An initializer over the limit is named with its shape.
    let heavy = constant_of_shape_model(&[1, 64], &[64, 64]);
    let err = import_bytes_with(&heavy, path, None, &within(1024))
        .expect_err("a 16 KiB initializer is refused at 1 KiB")
        .to_string();
    assert!(
        err.contains("tensor `w` of shape [64, 64] needs 16.0 KiB (16384 bytes), more than the memory limit of 1.0 KiB (1024 bytes)"),
        "{err}"
    );
}

/// Initializers are checked when the graph is read and decoded only where a
/// node reads them: a malformed one is reported even when no node uses it,
/// each problem named, and a well-formed unused one costs nothing.
#[test]
fn malformed_initializers_are_reported_though_no_node_reads_them() {
    use nnc_frontend::onnx::proto::*;
    use prost::Message;
    let mut model = ModelProto::decode(&relu_model(13)[..]).expect("decodes");
    let tensor =
        |name: &str, dims: Vec<i64>, data_type: tensor_proto::DataType, raw: Vec<u8>| TensorProto {
            name: Some(name.into()),
            dims,
            data_type: Some(data_type as i32),
            raw_data: Some(raw.into()),
            ..Default::default()
        };
    let graph = model.graph.as_mut().expect("has a graph");
    graph.initializer = vec![
        tensor(
            "short",
            vec![2, 3],
            tensor_proto::DataType::Float,
            vec![0; 20],
        ),
        tensor("ragged", vec![2], tensor_proto::DataType::Float, vec![0; 7]),
        tensor("strings", vec![1], tensor_proto::DataType::String, vec![]),
        tensor("fine", vec![2], tensor_proto::DataType::Float, vec![0; 8]),
    ];
    let bytes = model.encode_to_vec();
    let err = import_bytes(&bytes, Path::new("bad.onnx"), None)
        .expect_err("malformed initializers")
        .to_string();
    for line in [
        "tensor `short` has 5 values for dims [2, 3] (6 elements)",
        "tensor `ragged` has 7 raw bytes, not a multiple of its element size 4",
        "tensor `strings` has element type STRING, which nnc does not read",
    ] {
        assert!(err.contains(line), "`{line}` missing from:\n{err}");
    }
    assert!(!err.contains("`fine`"), "{err}");
}

/// A file is mapped and its tensors' raw data decoded from the map; the
/// result is the same as importing the file's bytes.
#[test]
fn a_mapped_file_imports_as_its_bytes_do() {
    let mut weights = 0;
    for dir in fixtures() {
        let path = dir.join("model.onnx");
        let from_file = import_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bytes = std::fs::read(&path).expect("readable");
        let from_bytes = import_bytes(&bytes, &path, Some(&dir)).expect("imports");
        assert_eq!(from_file.file, from_bytes.file, "{}", path.display());
        assert_eq!(from_file.weights, from_bytes.weights, "{}", path.display());
        weights += from_file.weights.len();
    }
    assert!(weights > 0, "the fixtures have weights");
}
