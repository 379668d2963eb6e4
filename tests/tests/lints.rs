//! Every lint has cases in `tests/cases/lints/` that must raise it and
//! cases that must not, and their rendered warnings are snapshotted, so a
//! change to any message, span or help line shows up in review.
//!
//! Each `.nn` case starts with two comments: what it exercises, then
//! `# expect: nnc::a, nnc::b` (the codes of the warnings it must give, in
//! the order they are reported) or `# expect: none`. An `.onnx` case (made
//! by `scripts/lint_fixtures.py`) carries the same line as its doc string.
//! Re-bless with `INSTA_UPDATE=always` (or `cargo insta review`) and read
//! every changed snapshot.

// A failed expectation in a test is a test failure, not a library panic.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use nnc_compiler::driver::{compile_source, load_any};
use nnc_compiler::interp;
use nnc_compiler::ir::{Graph, Op};
use nnc_compiler::lint::{self, gridding, Level, Levels, LintError, LINTS};
use nnc_frontend::diagnostic::render_all;
use nnc_frontend::{Diagnostic, Severity, SourceFile};
use nnc_runtime::{Tensor, WeightSet};
use nnc_tests::random_model::{layer, random_model};
use nnc_tests::repo_root;
use proptest::prelude::*;
use std::path::Path;

/// The codes a case says it must raise.
fn expected(line: &str, path: &Path) -> Vec<String> {
    let list = line
        .trim()
        .strip_prefix("# expect:")
        .or_else(|| line.trim().strip_prefix("expect:"))
        .unwrap_or_else(|| panic!("{}: no `# expect:` line", path.display()))
        .trim();
    if list == "none" {
        Vec::new()
    } else {
        list.split(',').map(|c| c.trim().to_string()).collect()
    }
}

fn codes(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| d.code.clone().unwrap_or_default())
        .collect()
}

fn compile(path: &Path, prefix: &str) -> (SourceFile, Graph) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let source = SourceFile::new(format!("{prefix}/{name}"), text);
    match compile_source(&source) {
        Ok(graph) => (source, graph),
        Err(d) => panic!("{}", render_all(&d, &source)),
    }
}

fn warnings(graph: &Graph) -> Vec<Diagnostic> {
    lint::check(graph, &Levels::default())
}

#[test]
fn lint_cases() {
    insta::glob!("../cases/lints", "*.nn", |path| {
        let (source, graph) = compile(path, "lints");
        let expect = expected(source.text().lines().nth(1).unwrap_or(""), path);
        let found = warnings(&graph);
        assert_eq!(
            codes(&found),
            expect,
            "{}:\n{}",
            path.display(),
            render_all(&found, &source)
        );
        assert!(found.iter().all(|d| d.severity == Severity::Warning));
        insta::assert_snapshot!(render_all(&found, &source));
    });
}

#[test]
fn onnx_lint_cases_name_the_imported_binding() {
    use nnc_frontend::onnx::proto::ModelProto;
    use prost::Message;
    insta::glob!("../cases/lints", "*.onnx", |path| {
        let bytes = std::fs::read(path).unwrap();
        let doc = ModelProto::decode(bytes.as_slice())
            .unwrap()
            .doc_string
            .unwrap_or_default();
        let loaded = load_any(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let found = warnings(&loaded.model.graph);
        assert_eq!(codes(&found), expected(&doc, path), "{}", path.display());
        // The source is the `.nn` text the model was imported as; render it
        // under a stable name.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let source = SourceFile::new(
            format!("lints/{name} (imported)"),
            loaded.model.source.text(),
        );
        insta::assert_snapshot!(render_all(&found, &source));
    });
}

/// The bundled models' warnings, each one right:
/// - `all_ops.nn` exercises `conv_transpose2d` with `output_padding` by
///   upsampling 8x8 to 16x16 with kernel 3 and stride 2, which does overlap
///   unevenly; the model exists to cover the op's attributes, not to be
///   trained.
/// - `lenet5.nn` is LeNet-5 as published: its last map's units each see
///   16x16 of the 32x32 digit, and only the fully connected layers combine
///   them.
#[test]
fn bundled_models_give_exactly_these_warnings() {
    let mut found = Vec::new();
    for path in nnc_tests::nn_files(&repo_root().join("models")) {
        let (_, graph) = compile(&path, "models");
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        for d in warnings(&graph) {
            found.push(format!(
                "{file}: {}: {}",
                d.code.unwrap_or_default(),
                d.message
            ));
        }
    }
    assert_eq!(
        found,
        [
            "all_ops.nn: nnc::checkerboard: checkerboard artifacts: transposed convolution `up.conv` overlaps unevenly (kernel 3, stride 2)",
            "lenet5.nn: nnc::receptive_field: receptive field: each unit that the classifier `fc1` reads sees 16x16 of the 32x32 input",
        ]
    );
}

/// Every lint has a case that raises it, and the docs name it.
#[test]
fn every_lint_has_a_case_and_is_documented() {
    let mut raised = Vec::new();
    for path in nnc_tests::nn_files(&repo_root().join("tests/cases/lints")) {
        let text = std::fs::read_to_string(&path).unwrap();
        raised.extend(expected(text.lines().nth(1).unwrap_or(""), &path));
    }
    let docs = std::fs::read_to_string(repo_root().join("docs/language.md")).unwrap();
    for l in LINTS {
        assert!(raised.contains(&l.id()), "no case raises `{}`", l.id());
        assert!(
            docs.contains(&format!("`{}`", l.id())),
            "docs/language.md does not document `{}`",
            l.id()
        );
    }
}

fn case(name: &str) -> Graph {
    compile(&repo_root().join("tests/cases/lints").join(name), "lints").1
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn allow_silences_and_deny_makes_errors() {
    let graph = case("batch_norm_shared_producer.nn");
    let levels =
        |allow: &[&str], deny: &[&str]| Levels::new(&strings(allow), &strings(deny)).unwrap();
    let severities = |l: &Levels| -> Vec<Severity> {
        lint::check(&graph, l).iter().map(|d| d.severity).collect()
    };

    assert_eq!(severities(&levels(&[], &[])), [Severity::Warning; 2]);
    assert!(severities(&levels(&["nnc::unfolded_batch_norm"], &[])).is_empty());
    assert!(severities(&levels(&["unfolded_batch_norm"], &[])).is_empty());
    assert!(severities(&levels(&["warnings"], &[])).is_empty());
    assert_eq!(
        severities(&levels(&[], &["warnings"])),
        [Severity::Error; 2]
    );
    assert_eq!(
        severities(&levels(&[], &["nnc::unfolded_batch_norm"])),
        [Severity::Error; 2]
    );
    // A lint named by --allow stays silent under --deny warnings.
    assert!(severities(&levels(&["nnc::unfolded_batch_norm"], &["warnings"])).is_empty());
    // Another lint's --allow leaves this one denied.
    assert_eq!(
        severities(&levels(&["nnc::gridding"], &["warnings"])),
        [Severity::Error; 2]
    );

    let denied = lint::check(&graph, &levels(&[], &["warnings"]));
    assert!(denied[0]
        .notes
        .iter()
        .any(|n| n.contains("`--deny warnings` makes this warning an error")));
    let warned = warnings(&graph);
    assert!(warned[0]
        .notes
        .iter()
        .any(|n| n.contains("`--allow nnc::unfolded_batch_norm` silences this warning")));
}

#[test]
fn levels_reject_unknown_and_conflicting_names() {
    let err = Levels::new(&strings(&["nnc::griding"]), &[]).unwrap_err();
    assert_eq!(
        err,
        LintError::UnknownLint {
            name: "nnc::griding".into()
        }
    );
    let text = err.to_string();
    for l in LINTS {
        assert!(text.contains(&l.id()), "{text}");
    }
    assert_eq!(
        Levels::new(&strings(&["gridding"]), &strings(&["nnc::gridding"])).unwrap_err(),
        LintError::Conflict {
            name: "nnc::gridding".into()
        }
    );
    assert!(Levels::new(&strings(&["warnings"]), &strings(&["warnings"])).is_err());
    let levels = Levels::new(&[], &strings(&["nnc::checkerboard"])).unwrap();
    let level = |name: &str| levels.level(lint::find(name).unwrap());
    assert_eq!(level("checkerboard"), Level::Deny);
    assert_eq!(level("gridding"), Level::Warn);
}

/// A node without a source location (as a graph built in code has) is
/// named in the message, its label becomes a note, and the warning
/// renders without source lines.
#[test]
fn a_warning_without_a_location_renders_without_source() {
    let mut graph = case("checkerboard_kernel3_stride2.nn");
    for id in graph.node_ids() {
        graph.node_mut(id).loc = None;
    }
    let found = warnings(&graph);
    assert_eq!(codes(&found), ["nnc::checkerboard"]);
    assert!(found[0].labels.is_empty());
    let text = render_all(&found, &SourceFile::new("m.nn", ""));
    assert!(
        text.starts_with(
            "warning[nnc::checkerboard]: checkerboard artifacts: transposed convolution `up`"
        ),
        "{text}"
    );
    assert!(
        text.contains("= note: `up`: neighbouring outputs sum 2 and 1 kernel taps"),
        "{text}"
    );
    assert!(!text.contains("┌─"), "{text}");
}

/// The registry: unique names, each file's `NAME` the identifier's tail.
#[test]
fn lint_ids_are_unique_and_prefixed() {
    let ids = lint::lint_ids();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
    for (l, id) in LINTS.iter().zip(&ids) {
        assert_eq!(id, &format!("nnc::{}", l.name));
        assert!(lint::find(id).is_some() && lint::find(l.name).is_some());
    }
}

/// A model as `.nn` text, compiled, with every weight 1 (so no products
/// cancel) and the given input.
fn ones_model(text: &str, input: Tensor) -> (Graph, Vec<f32>) {
    let source = SourceFile::new("oracle.nn", text.to_string());
    let graph =
        compile_source(&source).unwrap_or_else(|d| panic!("{}\n{text}", render_all(&d, &source)));
    let mut weights = WeightSet::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        if let Op::Weight(w) = &node.op {
            let n = node.ty.numel();
            weights.insert(
                w.name.clone(),
                Tensor::new(node.ty.shape.clone(), vec![1.0; n]).unwrap(),
            );
        }
    }
    let out = interp::run(&graph, &weights, &[input]).unwrap();
    let data = out[0].data().to_vec();
    (graph, data)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The interpreter as oracle for the gridding lint: a stack of 1-D
    /// dilated convolutions with all-ones weights, applied to a one-hot
    /// input at the centre, is zero exactly at the offsets the stack never
    /// sees; the lint's sampling set has those holes, and it warns exactly
    /// when there are some.
    #[test]
    fn gridding_holes_are_the_interpreters_zeros(
        layers in prop::collection::vec((2usize..5, 1usize..5), 2..4),
    ) {
        let sampling = gridding::sample(&layers).unwrap();
        let span = sampling.span;
        let width = 2 * span - 1;
        let mut text = format!("model m {{\n    input x: f32[1, 1, 1, {width}]\n");
        let mut cur = "x".to_string();
        for (i, (k, r)) in layers.iter().enumerate() {
            text.push_str(&format!(
                "    l{i} = conv2d({cur}, out=1, kernel=[1, {k}], dilation=[1, {r}], bias=false)\n"
            ));
            cur = format!("l{i}");
        }
        text.push_str(&format!("    output {cur}\n}}\n"));
        let mut x = vec![0.0; width];
        x[span - 1] = 1.0;
        let (graph, y) = ones_model(&text, Tensor::new(vec![1, 1, 1, width], x).unwrap());
        prop_assert_eq!(y.len(), span);
        // y[o] sums x[o + offset] over the offsets reached, so it is
        // nonzero exactly when offset span - 1 - o is reached.
        let mut zeros: Vec<usize> = (0..span).filter(|&o| y[o] == 0.0).map(|o| span - 1 - o).collect();
        zeros.sort_unstable();
        prop_assert_eq!(&zeros, &sampling.holes, "{}", text);
        let expected: Vec<&str> = if zeros.is_empty() { vec![] } else { vec!["nnc::gridding"] };
        prop_assert_eq!(codes(&warnings(&graph)), expected, "{}", text);
    }

    /// The interpreter as oracle for the checkerboard lint: a 1-D
    /// transposed convolution with all-ones weights on an all-ones input
    /// gives each output the number of taps that reach it; away from the
    /// borders those counts differ exactly when the lint warns.
    #[test]
    fn checkerboard_warns_where_the_interpreter_sees_uneven_overlap(
        k in 1usize..7,
        s in 1usize..4,
        d in 1usize..3,
    ) {
        let width = 12;
        let text = format!(
            "model m {{\n    input x: f32[1, 1, 1, {width}]\n    up = conv_transpose2d(x, out=1, kernel=[1, {k}], stride=[1, {s}], dilation=[1, {d}], bias=false)\n    output up\n}}\n"
        );
        let (graph, y) = ones_model(&text, Tensor::new(vec![1, 1, 1, width], vec![1.0; width]).unwrap());
        // Outputs every input reaches with all its taps: from the last
        // tap of the first input to the first tap of the last.
        let (first, last) = ((k - 1) * d, (width - 1) * s);
        prop_assume!(last >= first + s);
        let interior = &y[first..=last];
        let uneven = interior.iter().any(|&v| v != interior[0]);
        let expected: Vec<&str> = if uneven { vec!["nnc::checkerboard"] } else { vec![] };
        prop_assert_eq!(codes(&warnings(&graph)), expected, "{}\n{:?}", text, y);
    }

    /// Random small models (the passes' generator): the lints never fail,
    /// every warning has a code and a label inside the source, and models
    /// without dilation or transposed convolutions get no gridding or
    /// checkerboard warnings.
    #[test]
    fn lints_judge_random_models(
        c in 1usize..5,
        h in 3usize..10,
        layers in prop::collection::vec(layer(), 1..12),
    ) {
        let text = random_model(c, h, &layers);
        let source = SourceFile::new("random.nn", text.clone());
        let graph = compile_source(&source)
            .unwrap_or_else(|d| panic!("{}\n{text}", render_all(&d, &source)));
        let found = warnings(&graph);
        for d in &found {
            prop_assert!(d.code.as_deref().is_some_and(|c| c.starts_with("nnc::")));
            prop_assert!(d.labels.iter().all(|l| (l.span.end as usize) <= text.len()));
            prop_assert!(d.labels.iter().filter(|l| l.primary).count() == 1);
        }
        let found = codes(&found);
        if !text.contains("dilation=2") {
            prop_assert!(!found.iter().any(|c| c == "nnc::gridding"), "{}", text);
        }
        if !text.contains("conv_transpose2d") {
            prop_assert!(!found.iter().any(|c| c == "nnc::checkerboard"), "{}", text);
        }
    }
}
