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
use nnc_compiler::ir::Graph;
use nnc_compiler::lint::{self, Level, Levels, LintError, LINTS};
use nnc_frontend::diagnostic::render_all;
use nnc_frontend::{Diagnostic, Severity, SourceFile};
use nnc_tests::repo_root;
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
