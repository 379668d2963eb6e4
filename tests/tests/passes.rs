//! The optimisation passes of `compiler/src/passes/`, with the reference
//! interpreter as the oracle.
//!
//! Every model in `models/` and every focused case in `tests/cases/passes/`
//! runs through the pipeline one pass at a time on seeded weights (with
//! non-trivial batch-norm statistics) and a seeded input; the verifier runs
//! after each pass and the outputs before and after each pass, and before
//! and after the whole pipeline, must agree within DESIGN.md's tolerance:
//! `max |after - before| <= tol * max(1, max |before|)`. The focused cases
//! live in one folder per pass (named like the pass) and snapshot the IR
//! before and after that pass with its report, including cases where the
//! pass must not fire. A case whose first line is `# run-before: a, b` is
//! first put through those passes, so its "before" is what the pass sees in
//! the pipeline.

use std::path::Path;

use nnc_compiler::driver::compile_source;
use nnc_compiler::interp::run;
use nnc_compiler::ir::{
    BatchNormAttrs, BinaryOp, Conv2dAttrs, Epilogue, Graph, InputAttrs, Node, Op, Padding,
    TensorType, WeightAttrs, WeightRole,
};
use nnc_compiler::passes::{self, Pass, PassError, PassReport, PASSES};
use nnc_compiler::weights::{expected_weights, seeded_weights};
use nnc_frontend::SourceFile;
use nnc_runtime::{random_input, Tensor, WeightSet};
use nnc_tests::random_model::{layer, random_model};
use proptest::prelude::*;

const SEED: u64 = 7;

fn load(path: &Path) -> Graph {
    let text = std::fs::read_to_string(path).expect("readable case");
    let source = SourceFile::new(path.display().to_string(), text);
    compile_source(&source)
        .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)))
}

fn seeded_inputs(graph: &Graph) -> Vec<Tensor> {
    graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random_input(&graph.node(id).ty.shape, SEED + i as u64).expect("input"))
        .collect()
}

fn interpret(graph: &Graph, weights: &WeightSet, inputs: &[Tensor], what: &str) -> Vec<Tensor> {
    run(graph, weights, inputs)
        .unwrap_or_else(|e| panic!("{what}: the interpreter fails: {e}\n{graph}"))
}

/// Fails unless every output agrees within `tol` relative to the reference's
/// largest magnitude (and at least `tol` absolute).
fn assert_close(what: &str, reference: &[Tensor], found: &[Tensor], tol: f32) {
    assert_eq!(reference.len(), found.len(), "{what}: output count");
    for (i, (r, f)) in reference.iter().zip(found).enumerate() {
        assert_eq!(r.shape(), f.shape(), "{what}: output {i} shape");
        let scale = r.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = r
            .data()
            .iter()
            .zip(f.data())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= tol * scale,
            "{what}: output {i} differs by {err:e}, more than {tol:e} * {scale}"
        );
    }
}

/// The tolerance of each pass, from DESIGN.md: dce preserves values
/// exactly, fold-constants and fuse within 1e-6 relative, simplify (whose
/// batch-norm affine rounds differently from the interpreter's `f64`
/// batch norm), fold-bn and lower-conv (which sums in another order)
/// within 1e-5.
fn tolerance(pass: &str) -> f32 {
    match pass {
        "dce" => 0.0,
        "fold-constants" | "fuse" => 1e-6,
        _ => 1e-5,
    }
}

/// Runs the whole pipeline on `path` one pass at a time, checking each pass
/// and the whole against the interpreter; returns the reports.
fn check_pipeline(path: &Path) -> (Graph, Vec<(&'static str, PassReport)>) {
    check_graph(load(path), &path.display().to_string())
}

/// [`check_pipeline`] on a loaded graph; `what` names it in failures.
fn check_graph(mut graph: Graph, what: &str) -> (Graph, Vec<(&'static str, PassReport)>) {
    let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let inputs = seeded_inputs(&graph);
    let reference = interpret(&graph, &weights, &inputs, what);
    let mut before = reference.clone();
    let mut reports = Vec::new();
    for pass in PASSES {
        let report = passes::run_pass(pass, &mut graph, &mut weights, true)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let after = interpret(
            &graph,
            &weights,
            &inputs,
            &format!("{what} after {}", pass.name),
        );
        assert_close(
            &format!("{what} after {}", pass.name),
            &before,
            &after,
            tolerance(pass.name),
        );
        before = after;
        reports.push((pass.name, report));
    }
    assert_close(
        &format!("{what} after the pipeline"),
        &reference,
        &before,
        1e-5,
    );
    // dce ran last, so the weight set holds exactly the graph's weights.
    let names: Vec<String> = expected_weights(&graph)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let held: Vec<String> = weights.names().map(str::to_string).collect();
    assert_eq!(
        names, held,
        "{what}: weight set and graph disagree after the pipeline"
    );
    (graph, reports)
}

fn fired(reports: &[(&str, PassReport)]) -> String {
    reports
        .iter()
        .map(|(name, r)| format!("{name}={}", r.fired))
        .collect::<Vec<_>>()
        .join(" ")
}

fn count(graph: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    graph
        .node_ids()
        .into_iter()
        .filter(|&id| pred(&graph.node(id).op))
        .count()
}

#[test]
fn every_pass_preserves_the_outputs_of_every_model() {
    let models = nnc_tests::models();
    assert!(
        models.len() >= 5,
        "expected the models/ directory, found {models:?}"
    );
    for path in models {
        let (_, reports) = check_pipeline(&path);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("{name}: {}", fired(&reports));
        for (pass, report) in &reports {
            for note in &report.notes {
                println!("    {pass}: {note}");
            }
        }
    }
}

#[test]
fn every_pass_preserves_the_outputs_of_every_pass_case() {
    let cases = nnc_tests::nn_files(&nnc_tests::repo_root().join("tests/cases/passes"));
    assert!(
        cases.len() >= 10,
        "expected the pass cases, found {cases:?}"
    );
    for path in cases {
        check_pipeline(&path);
    }
}

#[test]
fn ir_before_and_after_each_focused_case() {
    insta::glob!("../cases/passes", "*/*.nn", |path| {
        let folder = path
            .parent()
            .and_then(Path::file_name)
            .map(|f| f.to_string_lossy().into_owned());
        let folder = folder.unwrap_or_default();
        let pass =
            passes::find(&folder).unwrap_or_else(|| panic!("folder `{folder}` is not a pass name"));
        let mut graph = load(path);
        let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
        let text = std::fs::read_to_string(path).expect("readable case");
        if let Some(list) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# run-before:"))
        {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            passes::run_pipeline(&mut graph, &mut weights, &names, true)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let before = graph.to_string();
        let report = passes::run_pass(pass, &mut graph, &mut weights, true)
            .unwrap_or_else(|e| panic!("{e}"));
        let notes: String = report
            .notes
            .iter()
            .map(|n| format!("note: {n}\n"))
            .collect();
        insta::assert_snapshot!(format!(
            "{before}\n--- after {}: fired {}\n{notes}\n{graph}",
            pass.name, report.fired
        ));
    });
}

fn run_on_case(
    pass_names: &[&str],
    case: &str,
) -> (Graph, WeightSet, Vec<(&'static str, PassReport)>) {
    let mut graph = load(&nnc_tests::repo_root().join(case));
    let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let reports = passes::run_pipeline(&mut graph, &mut weights, pass_names, true)
        .unwrap_or_else(|e| panic!("{e}"));
    (graph, weights, reports)
}

#[test]
fn resnet18_keeps_no_batch_norm_after_simplify_fold_bn_and_dce() {
    let (graph, weights, reports) =
        run_on_case(&["simplify", "fold-bn", "dce"], "models/resnet18.nn");
    assert_eq!(
        count(&graph, |op| matches!(op, Op::BatchNorm(_))),
        0,
        "{graph}"
    );
    // 20 batch norms, each after a conv with a single user.
    assert_eq!(reports[1].1.fired, 20);
    assert!(reports[1].1.notes.is_empty(), "{:?}", reports[1].1.notes);
    assert!(
        weights.names().all(|n| !n.contains("running")),
        "batch-norm statistics left in the weight set"
    );
    // Every conv now carries the folded bias.
    let convs = graph
        .node_ids()
        .into_iter()
        .filter(|&id| matches!(graph.node(id).op, Op::Conv2d(_)));
    for id in convs {
        assert!(
            matches!(&graph.node(id).op, Op::Conv2d(a) if a.bias),
            "{} has no bias",
            graph.node(id).name
        );
    }
}

#[test]
fn fold_bn_explains_what_it_does_not_fold() {
    let (graph, _, reports) =
        run_on_case(&["fold-bn"], "tests/cases/passes/fold-bn/conv_two_users.nn");
    assert_eq!(reports[0].1.fired, 0);
    assert_eq!(
        reports[0].1.notes,
        ["bn: not folded: producer conv has 2 users"]
    );
    assert_eq!(count(&graph, |op| matches!(op, Op::BatchNorm(_))), 1);

    let (_, _, reports) = run_on_case(&["fold-bn"], "tests/cases/passes/fold-bn/conv_is_output.nn");
    assert_eq!(
        reports[0].1.notes,
        ["bn: not folded: producer conv is a graph output"]
    );

    // After a ReLU there is no candidate, so nothing to explain; simplify
    // turns that batch norm into an affine instead.
    let (graph, _, reports) = run_on_case(
        &["fold-bn", "simplify"],
        "tests/cases/passes/fold-bn/bn_after_relu.nn",
    );
    assert_eq!((reports[0].1.fired, reports[0].1.notes.len()), (0, 0));
    assert_eq!(reports[1].1.fired, 1);
    assert_eq!(count(&graph, |op| matches!(op, Op::BatchNorm(_))), 0);
}

#[test]
fn simplify_leaves_batch_norm_after_conv_for_fold_bn() {
    let (graph, _, reports) = run_on_case(
        &["simplify"],
        "tests/cases/passes/simplify/bn_after_conv_untouched.nn",
    );
    assert_eq!(reports[0].1.fired, 0);
    assert_eq!(count(&graph, |op| matches!(op, Op::BatchNorm(_))), 1);
}

#[test]
fn simplify_removes_every_dropout_and_identity() {
    for path in nnc_tests::models() {
        let mut graph = nnc_compiler::driver::load(&path)
            .expect("model loads")
            .graph;
        let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
        passes::run_pipeline(&mut graph, &mut weights, &["simplify"], true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            count(&graph, |op| matches!(op, Op::Dropout(_) | Op::Identity)),
            0,
            "{}",
            path.display()
        );
    }
}

/// A `pad` of `-inf` before a max pool folds into it whatever the input
/// (the pool's own padding is `-inf`), and the values stay the same; the
/// lowest finite float does not fold, as a window of `-inf` inputs would
/// then give `-inf` instead of it. The `.nn` text has no infinity, so the
/// value is set on the lowered graph; the input's first two rows are
/// `-inf`, so the top windows see only the pad and `-inf`.
#[test]
fn simplify_folds_a_minus_infinity_pad_into_a_max_pool() {
    let text = "model pad_max {
    input x: f32[1, 2, 6, 7]
    p = pad(x, pads=[0, 0, 1, 0, 0, 0, 0, 1], value=-1.0)
    y = max_pool2d(p, kernel=[2, 3], stride=2, pad=[0, 1, 1, 0])
    output y
}
";
    for (value, folds) in [(f32::NEG_INFINITY, true), (f32::MIN, false)] {
        let source = SourceFile::new("pad_max.nn", text.to_string());
        let mut graph = compile_source(&source)
            .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)));
        for id in graph.node_ids() {
            if let Op::Pad(a) = &mut graph.node_mut(id).op {
                a.value = value;
            }
        }
        let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
        let mut x = random_input(&[1, 2, 6, 7], SEED).expect("input");
        for plane in x.data_mut().chunks_exact_mut(6 * 7) {
            plane[..2 * 7].fill(f32::NEG_INFINITY);
        }
        let before = interpret(&graph, &weights, std::slice::from_ref(&x), "before");
        passes::run_pipeline(&mut graph, &mut weights, &["simplify"], true)
            .unwrap_or_else(|e| panic!("{e}"));
        let pads = count(&graph, |op| matches!(op, Op::Pad(_)));
        assert_eq!(pads, usize::from(!folds), "{value}:\n{graph}");
        let after = interpret(&graph, &weights, &[x], "after");
        assert_eq!(before[0].data(), after[0].data(), "{value}");
        assert!(
            before[0].data().contains(&value),
            "{value}: no window sees only the pad"
        );
    }
}

/// A graph in which two 1x1 convs read the same weight tensor and only the
/// first is followed by a batch norm; the DSL gives every op its own
/// weights, so it is built by hand.
fn shared_weight_graph() -> Graph {
    let mut g = Graph::new("shared");
    let x = g
        .add(Node::new(
            Op::Input(InputAttrs { name: "x".into() }),
            vec![],
            TensorType::f32(vec![1, 2, 3, 3]),
            "x",
        ))
        .expect("add");
    let weight = |g: &mut Graph, name: &str, shape: Vec<usize>, role| {
        g.add(Node::new(
            Op::Weight(WeightAttrs {
                name: name.into(),
                role,
            }),
            vec![],
            TensorType::f32(shape),
            name,
        ))
        .expect("add")
    };
    let w = weight(
        &mut g,
        "shared.weight",
        vec![3, 2, 1, 1],
        WeightRole::Kernel { fan_in: 2 },
    );
    let conv = Op::Conv2d(Conv2dAttrs {
        out_channels: 3,
        kernel: [1, 1],
        stride: [1, 1],
        padding: Padding::ZERO,
        dilation: [1, 1],
        groups: 1,
        bias: false,
        epilogue: Epilogue::default(),
    });
    let ty = TensorType::f32(vec![1, 3, 3, 3]);
    let a = g
        .add(Node::new(conv.clone(), vec![x, w], ty.clone(), "a"))
        .expect("add");
    let b = g
        .add(Node::new(conv, vec![x, w], ty.clone(), "b"))
        .expect("add");
    let gamma = weight(&mut g, "bn.weight", vec![3], WeightRole::NormWeight);
    let beta = weight(&mut g, "bn.bias", vec![3], WeightRole::NormBias);
    let mean = weight(&mut g, "bn.running_mean", vec![3], WeightRole::RunningMean);
    let var = weight(&mut g, "bn.running_var", vec![3], WeightRole::RunningVar);
    let bn = g
        .add(Node::new(
            Op::BatchNorm(BatchNormAttrs { eps: 1e-5 }),
            vec![a, gamma, beta, mean, var],
            ty,
            "bn",
        ))
        .expect("add");
    g.set_outputs(vec![bn, b]);
    g
}

#[test]
fn fold_bn_copies_a_weight_that_another_op_reads() {
    let mut graph = shared_weight_graph();
    assert!(nnc_compiler::verify::verify(&graph).is_empty());
    let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let original = weights.get("shared.weight").cloned();
    let inputs = seeded_inputs(&graph);
    let reference = interpret(&graph, &weights, &inputs, "shared");
    let reports = passes::run_pipeline(&mut graph, &mut weights, &["fold-bn", "dce"], true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reports[0].1.fired, 1);
    assert_eq!(
        weights.get("shared.weight").cloned(),
        original,
        "the shared tensor was modified in place"
    );
    assert!(
        weights.contains("shared.weight.folded"),
        "{:?}",
        weights.names().collect::<Vec<_>>()
    );
    assert!(weights.contains("a.bias"));
    assert_close(
        "shared",
        &reference,
        &interpret(&graph, &weights, &inputs, "shared"),
        1e-5,
    );
}

#[test]
fn dce_removes_dead_weights_from_the_weight_set_and_keeps_inputs() {
    let (graph, weights, reports) = run_on_case(&["dce"], "tests/cases/passes/dce/dead_branch.nn");
    assert_eq!(
        reports[0].1.fired, 4,
        "unused conv, its weight and bias, and its relu"
    );
    assert_eq!(graph.inputs().len(), 2);
    assert_eq!(
        weights.names().collect::<Vec<_>>(),
        ["conv.bias", "conv.weight"]
    );
}

#[test]
fn the_registry_is_in_pipeline_order_and_names_agree_with_files() {
    const ORDER: [&str; 6] = [
        "simplify",
        "fold-bn",
        "fold-constants",
        "fuse",
        "lower-conv",
        "dce",
    ];
    let names: Vec<&str> = passes::pass_names().collect();
    let positions: Vec<usize> = names
        .iter()
        .map(|n| {
            ORDER
                .iter()
                .position(|o| o == n)
                .unwrap_or_else(|| panic!("`{n}` is not a DESIGN.md pass"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {names:?}"
    );
    for pass in PASSES {
        let file = nnc_tests::repo_root().join(format!(
            "compiler/src/passes/{}.rs",
            pass.name.replace('-', "_")
        ));
        assert!(
            file.is_file(),
            "no file {} for pass `{}`",
            file.display(),
            pass.name
        );
        assert!(!pass.description.is_empty());
        let dir = nnc_tests::repo_root()
            .join("tests/cases/passes")
            .join(pass.name);
        assert!(
            dir.is_dir(),
            "no case folder {} for pass `{}`",
            dir.display(),
            pass.name
        );
    }
    assert_eq!(
        passes::pipeline_through("fold-bn"),
        Some(vec!["simplify", "fold-bn"])
    );
    assert_eq!(passes::pipeline_through("nope"), None);
    assert_eq!(
        passes::parse_list("dce, simplify").expect("valid"),
        ["dce", "simplify"]
    );
    assert!(
        matches!(passes::parse_list("simplify,fuse-all"), Err(PassError::UnknownPass { name }) if name == "fuse-all")
    );
}

#[test]
fn an_unknown_pass_name_lists_the_valid_ones() {
    let mut graph = load(&nnc_tests::repo_root().join("tests/cases/passes/dce/all_live.nn"));
    let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let before = graph.to_string();
    let err = passes::run_pipeline(&mut graph, &mut weights, &["dce", "fold-batchnorm"], true)
        .expect_err("unknown name");
    assert!(matches!(err, PassError::UnknownPass { .. }));
    assert_eq!(
        err.to_string(),
        "unknown pass `fold-batchnorm`; the passes are: simplify, fold-bn, fold-constants, fuse, lower-conv, dce"
    );
    assert_eq!(
        graph.to_string(),
        before,
        "no pass runs when a name is unknown"
    );
}

fn break_types(graph: &mut Graph, _: &mut WeightSet) -> Result<PassReport, PassError> {
    let out = graph.outputs()[0];
    graph.node_mut(out).ty = TensorType::f32(vec![7]);
    Ok(PassReport {
        fired: 1,
        notes: vec![],
    })
}

#[test]
fn a_verifier_failure_names_the_pass() {
    let broken = Pass {
        name: "break-types",
        description: "a deliberately wrong pass",
        run: break_types,
    };
    let mut graph = load(&nnc_tests::repo_root().join("tests/cases/passes/dce/all_live.nn"));
    let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let err =
        passes::run_pass(&broken, &mut graph, &mut weights, true).expect_err("verifier must fail");
    assert!(matches!(
        err,
        PassError::Verify {
            pass: "break-types",
            ..
        }
    ));
    let text = err.to_string();
    assert!(
        text.starts_with("pass `break-types` produced invalid IR:"),
        "{text}"
    );
    assert!(text.contains("stored type f32[7] differs"), "{text}");
    // Without verification the same pass goes through.
    let mut graph = load(&nnc_tests::repo_root().join("tests/cases/passes/dce/all_live.nn"));
    assert!(passes::run_pass(&broken, &mut graph, &mut weights, false).is_ok());
}

fn input(g: &mut Graph, name: &str, shape: Vec<usize>) -> nnc_compiler::ir::NodeId {
    g.add(Node::new(
        Op::Input(InputAttrs { name: name.into() }),
        vec![],
        TensorType::f32(shape),
        name,
    ))
    .expect("add")
}

fn weight(
    g: &mut Graph,
    name: &str,
    shape: Vec<usize>,
    role: WeightRole,
) -> nnc_compiler::ir::NodeId {
    g.add(Node::new(
        Op::Weight(WeightAttrs {
            name: name.into(),
            role,
        }),
        vec![],
        TensorType::f32(shape),
        name,
    ))
    .expect("add")
}

/// Runs `names` on a hand-built graph, checking it against the interpreter
/// within `tol`; returns the reports.
fn check_hand_built(
    graph: &mut Graph,
    names: &[&str],
    tol: f32,
) -> Vec<(&'static str, PassReport)> {
    let errors = nnc_compiler::verify::verify(graph);
    assert!(errors.is_empty(), "{errors:?}");
    let mut weights = seeded_weights(graph, SEED).expect("seeded weights");
    let inputs = seeded_inputs(graph);
    let reference = interpret(graph, &weights, &inputs, &graph.name);
    let reports =
        passes::run_pipeline(graph, &mut weights, names, true).unwrap_or_else(|e| panic!("{e}"));
    assert_close(
        &graph.name,
        &reference,
        &interpret(graph, &weights, &inputs, &graph.name),
        tol,
    );
    reports
}

#[test]
fn fold_constants_evaluates_ops_on_weights_only() {
    // x * reshape(w): the reshape reads only a weight, so it becomes one.
    let mut g = Graph::new("constant_reshape");
    let x = input(&mut g, "x", vec![2, 6]);
    let w = weight(&mut g, "w", vec![2, 3], WeightRole::NormWeight);
    let flat = g
        .add(Node::new(
            Op::Reshape(nnc_compiler::ir::ReshapeAttrs { shape: vec![6] }),
            vec![w],
            TensorType::f32(vec![6]),
            "flat",
        ))
        .expect("add");
    let scaled = g
        .add(Node::new(
            Op::Binary(BinaryOp::Mul),
            vec![x, flat],
            TensorType::f32(vec![2, 6]),
            "scaled",
        ))
        .expect("add");
    g.set_outputs(vec![scaled]);
    let reports = check_hand_built(&mut g, &["fold-constants", "dce"], 0.0);
    assert_eq!(reports[0].1.fired, 1);
    assert_eq!(
        reports[0].1.notes,
        ["scaled: scale not folded: it is a graph output"]
    );
    assert_eq!(count(&g, |op| matches!(op, Op::Reshape(_))), 0, "{g}");
    assert!(
        g.to_string().contains("weight @flat.folded : f32[6]"),
        "{g}"
    );
}

#[test]
fn fold_constants_folds_a_per_channel_scale_into_a_grouped_conv() {
    // mul(x, s[C, 1, 1]) before a conv with 2 groups: input channel c of
    // group g scales weight column c - g * C/groups of that group's rows.
    let mut g = Graph::new("per_channel_scale");
    let x = input(&mut g, "x", vec![1, 4, 5, 5]);
    let s = weight(&mut g, "s", vec![4, 1, 1], WeightRole::NormWeight);
    let scaled = g
        .add(Node::new(
            Op::Binary(BinaryOp::Mul),
            vec![x, s],
            TensorType::f32(vec![1, 4, 5, 5]),
            "scaled",
        ))
        .expect("add");
    let w = weight(
        &mut g,
        "conv.weight",
        vec![6, 2, 3, 3],
        WeightRole::Kernel { fan_in: 18 },
    );
    let conv = Op::Conv2d(Conv2dAttrs {
        out_channels: 6,
        kernel: [3, 3],
        stride: [1, 1],
        padding: Padding::symmetric([1, 1]),
        dilation: [1, 1],
        groups: 2,
        bias: false,
        epilogue: Epilogue::default(),
    });
    let c = g
        .add(Node::new(
            conv,
            vec![scaled, w],
            TensorType::f32(vec![1, 6, 5, 5]),
            "conv",
        ))
        .expect("add");
    g.set_outputs(vec![c]);
    let reports = check_hand_built(&mut g, &["fold-constants", "dce"], 1e-6);
    assert_eq!(reports[0].1.fired, 1);
    assert_eq!(
        count(&g, |op| matches!(op, Op::Binary(BinaryOp::Mul))),
        0,
        "{g}"
    );
}

#[test]
fn fold_constants_explains_the_scales_it_keeps() {
    let (_, _, reports) = run_on_case(
        &["simplify", "fold-constants"],
        "tests/cases/passes/fold-constants/scale_not_folded.nn",
    );
    assert_eq!(reports[1].1.fired, 0);
    assert_eq!(
        reports[1].1.notes,
        [
            "drop: scale not folded: its output has 2 users",
            "bn: scale not folded: its user bn is add, not linear or conv2d",
            "last: scale not folded: it is a graph output",
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random small models (convs with random stride, padding, dilation and
    /// groups; batch norms; activations; residual adds; pools;
    /// depthwise+pointwise pairs; transposed convs; dropout) agree with the
    /// interpreter after every pass and after the whole pipeline.
    #[test]
    fn the_pipeline_preserves_random_models(
        c in 1usize..5,
        h in 3usize..10,
        layers in prop::collection::vec(layer(), 1..10),
    ) {
        let text = random_model(c, h, &layers);
        let source = SourceFile::new("random.nn", text.clone());
        let graph = compile_source(&source)
            .unwrap_or_else(|d| panic!("{}\n{text}", nnc_frontend::diagnostic::render_all(&d, &source)));
        check_graph(graph, &text);
    }
}

/// The IR of every model after each pass of the pipeline, one snapshot per
/// model and pass (with the pass's report; a pass that changed nothing
/// records only that).
#[test]
fn ir_of_every_model_after_each_pass() {
    insta::glob!("../../models", "*.nn", |path| {
        let mut graph = load(path);
        let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
        for pass in PASSES {
            let before = graph.to_string();
            let report = passes::run_pass(pass, &mut graph, &mut weights, true)
                .unwrap_or_else(|e| panic!("{e}"));
            let after = graph.to_string();
            let notes: String = report
                .notes
                .iter()
                .map(|n| format!("note: {n}\n"))
                .collect();
            let ir = if after == before {
                "unchanged\n".to_string()
            } else {
                after
            };
            insta::assert_snapshot!(
                format!("after_{}", pass.name.replace('-', "_")),
                format!("{}: fired {}\n{notes}\n{ir}", pass.name, report.fired)
            );
        }
    });
}

const PIPELINE: [&str; 6] = [
    "simplify",
    "fold-bn",
    "fold-constants",
    "fuse",
    "lower-conv",
    "dce",
];

#[test]
fn resnet18_after_the_pipeline_has_no_batch_norm_and_no_standalone_relu() {
    let (graph, _, reports) = run_on_case(&PIPELINE, "models/resnet18.nn");
    assert_eq!(count(&graph, |op| matches!(op, Op::BatchNorm(_))), 0);
    // No activation or add is left standalone without a note saying why;
    // in ResNet-18 every one of them has a conv to fuse into.
    let standalone: Vec<String> = graph
        .node_ids()
        .into_iter()
        .map(|id| graph.node(id))
        .filter(|n| matches!(n.op, Op::Activation(_)) || matches!(n.op, Op::Binary(BinaryOp::Add)))
        .map(|n| format!("{} {:?}", n.name, n.notes))
        .collect();
    assert!(standalone.is_empty(), "{standalone:?}");
    let gemm = |want: &str| {
        count(
            &graph,
            |op| matches!(op, Op::Gemm(a) if a.bias && a.epilogue.describe() == want),
        )
    };
    let winograd = |want: &str| {
        count(
            &graph,
            |op| matches!(op, Op::WinogradOutput(a) if a.bias && a.epilogue.describe() == want),
        )
    };
    // The stem and the first conv of each of the 8 blocks end in a ReLU;
    // each block's second conv in the shortcut add and a ReLU; the 3
    // downsample convs in nothing. The stem (3 input channels) stays a
    // conv2d for the direct kernel; the 13 3x3 stride-1 convs (every
    // conv2, and conv1 of the blocks that keep their size) run as
    // Winograd; the 3 stride-2 3x3 convs and the 3 strided 1x1
    // downsamples need im2col.
    let direct = |want: &str| {
        count(
            &graph,
            |op| matches!(op, Op::Conv2d(a) if a.bias && a.epilogue.describe() == want),
        )
    };
    assert_eq!(direct("relu"), 1, "{graph}");
    assert_eq!(gemm("relu") + winograd("relu"), 8, "{graph}");
    assert_eq!(winograd("relu"), 5, "{graph}");
    assert_eq!(winograd("add+relu"), 8, "{graph}");
    assert_eq!(gemm(""), 3, "{graph}");
    assert_eq!(count(&graph, |op| matches!(op, Op::WinogradInput(_))), 13);
    assert_eq!(count(&graph, |op| matches!(op, Op::Im2Col(_))), 6);
    assert_eq!(count(&graph, |op| matches!(op, Op::Conv2d(_))), 1);
    let fired: Vec<usize> = reports.iter().map(|(_, r)| r.fired).collect();
    // fold-bn 20; fuse 17 activations + 8 adds; lower-conv 20 convs.
    assert_eq!(fired, [0, 20, 0, 25, 20, 80], "{reports:?}");
    assert!(
        reports[3].1.notes.is_empty(),
        "fuse refused something: {:?}",
        reports[3].1.notes
    );
}

#[test]
fn mobilenet_v2_runs_every_depthwise_pointwise_pair_as_one_separable_op() {
    let input = load(&nnc_tests::repo_root().join("models/mobilenet_v2.nn"));
    let depthwise = count(&input, |op| matches!(op, Op::Conv2d(a) if a.groups > 1));
    assert_eq!(depthwise, 17, "MobileNetV2 has 17 depthwise convs");
    let (graph, _, _) = run_on_case(&PIPELINE, "models/mobilenet_v2.nn");
    assert_eq!(
        count(&graph, |op| matches!(op, Op::SeparableConv2d(_))),
        depthwise
    );
    assert_eq!(count(&graph, |op| matches!(op, Op::DepthwiseConv2d(_))), 0);
    // Only the stem (3 input channels) stays a conv2d, for the direct
    // kernel.
    assert_eq!(count(&graph, |op| matches!(op, Op::Conv2d(_))), 1);
    // Each separable op carries its depthwise ReLU6; the 10 blocks with a
    // shortcut (stride 1, same width) end in the residual add.
    assert_eq!(
        count(&graph, |op| matches!(op, Op::SeparableConv2d(a)
            if a.depthwise.epilogue.describe() == "relu6" && a.bias)),
        17
    );
    assert_eq!(
        count(
            &graph,
            |op| matches!(op, Op::SeparableConv2d(a) if a.epilogue.residual)
        ),
        10
    );
    assert_eq!(count(&graph, |op| matches!(op, Op::BatchNorm(_))), 0);
    assert_eq!(count(&graph, |op| matches!(op, Op::Activation(_))), 0);
}

/// `conv(bias=false) + c` and `c' + conv(bias=true)` with per-channel
/// constants `c` of shapes `[C, 1, 1]` and `[1, C, 1, 1]`, then an add of a
/// constant that varies over width (not a bias) to a third conv.
fn bias_add_graph() -> Graph {
    let mut g = Graph::new("bias_add");
    let x = g
        .add(Node::new(
            Op::Input(InputAttrs { name: "x".into() }),
            vec![],
            TensorType::f32(vec![1, 2, 4, 4]),
            "x",
        ))
        .expect("add");
    let weight = |g: &mut Graph, name: &str, shape: Vec<usize>| {
        g.add(Node::new(
            Op::Weight(WeightAttrs {
                name: name.into(),
                role: WeightRole::NormBias,
            }),
            vec![],
            TensorType::f32(shape),
            name,
        ))
        .expect("add")
    };
    let ty = TensorType::f32(vec![1, 3, 4, 4]);
    let conv = |g: &mut Graph, name: &str, input: nnc_compiler::ir::NodeId, bias: bool| {
        let w = g
            .add(Node::new(
                Op::Weight(WeightAttrs {
                    name: format!("{name}.weight"),
                    role: WeightRole::Kernel { fan_in: 2 },
                }),
                vec![],
                TensorType::f32(vec![3, g.node(input).ty.shape[1], 1, 1]),
                format!("{name}.weight"),
            ))
            .expect("add");
        let mut inputs = vec![input, w];
        if bias {
            inputs.push(weight(g, &format!("{name}.bias"), vec![3]));
        }
        let op = Op::Conv2d(Conv2dAttrs {
            out_channels: 3,
            kernel: [1, 1],
            stride: [1, 1],
            padding: Padding::ZERO,
            dilation: [1, 1],
            groups: 1,
            bias,
            epilogue: Epilogue::default(),
        });
        g.add(Node::new(op, inputs, ty.clone(), name)).expect("add")
    };
    let a = conv(&mut g, "a", x, false);
    let c = weight(&mut g, "c", vec![3, 1, 1]);
    let a_plus = g
        .add(Node::new(
            Op::Binary(BinaryOp::Add),
            vec![a, c],
            ty.clone(),
            "a_plus",
        ))
        .expect("add");
    let b = conv(&mut g, "b", a_plus, true);
    let c2 = weight(&mut g, "c2", vec![1, 3, 1, 1]);
    let b_plus = g
        .add(Node::new(
            Op::Binary(BinaryOp::Add),
            vec![c2, b],
            ty.clone(),
            "b_plus",
        ))
        .expect("add");
    let d = conv(&mut g, "d", b_plus, true);
    let wide = weight(&mut g, "wide", vec![1, 1, 4]);
    let d_plus = g
        .add(Node::new(
            Op::Binary(BinaryOp::Add),
            vec![d, wide],
            ty,
            "d_plus",
        ))
        .expect("add");
    g.set_outputs(vec![d_plus]);
    g
}

#[test]
fn fuse_turns_a_per_channel_constant_add_into_the_bias() {
    let mut graph = bias_add_graph();
    let errors = nnc_compiler::verify::verify(&graph);
    assert!(errors.is_empty(), "{errors:?}");
    let mut weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let inputs = seeded_inputs(&graph);
    let reference = interpret(&graph, &weights, &inputs, "bias_add");
    let c = weights.get("c").expect("c").data().to_vec();
    let c2 = weights.get("c2").expect("c2").data().to_vec();
    let b_bias = weights.get("b.bias").expect("b.bias").data().to_vec();
    let reports = passes::run_pipeline(&mut graph, &mut weights, &["fuse", "dce"], true)
        .unwrap_or_else(|e| panic!("{e}"));
    // Two bias adds fused; the width-varying constant is neither a bias
    // nor a residual of the output's type, so its add stays, with a note.
    assert_eq!(reports[0].1.fired, 2, "{graph}");
    assert_eq!(
        count(&graph, |op| matches!(op, Op::Binary(BinaryOp::Add))),
        1,
        "{graph}"
    );
    assert_eq!(weights.get("a.bias").expect("a.bias").data(), &c[..]);
    let summed: Vec<f32> = b_bias.iter().zip(&c2).map(|(b, c)| b + c).collect();
    assert_eq!(weights.get("b.bias").expect("b.bias").data(), &summed[..]);
    assert_eq!(
        reports[0].1.notes,
        ["d_plus: not fused into d: the add broadcasts f32[1, 3, 4, 4] and f32[1, 1, 4] to f32[1, 3, 4, 4]"]
    );
    assert_close(
        "bias_add",
        &reference,
        &interpret(&graph, &weights, &inputs, "bias_add"),
        1e-6,
    );
}
