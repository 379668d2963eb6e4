//! Snapshots of every bundled model: its IR as `nnc dump-ir` prints it and
//! its statistics as `nnc stats` prints them. A change to lowering, shape
//! inference or the printer shows up here as a reviewable diff.

use nnc_compiler::driver::compile_source;
use nnc_compiler::stats::{render, stats};
use nnc_frontend::diagnostic::render_all;
use nnc_frontend::SourceFile;

fn load(path: &std::path::Path) -> nnc_compiler::ir::Graph {
    let text = std::fs::read_to_string(path).expect("model is readable");
    let name = format!(
        "models/{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
    );
    let source = SourceFile::new(name, text);
    match compile_source(&source) {
        Ok(graph) => graph,
        Err(diagnostics) => panic!("{}", render_all(&diagnostics, &source)),
    }
}

#[test]
fn ir_of_every_model() {
    insta::glob!("../../models", "*.nn", |path| {
        insta::assert_snapshot!(load(path).to_string());
    });
}

#[test]
fn stats_of_every_model() {
    insta::glob!("../../models", "*.nn", |path| {
        let graph = load(path);
        insta::assert_snapshot!(render(&graph, &stats(&graph)));
    });
}

#[test]
fn stats_of_the_notes_cases() {
    insta::glob!("../cases/stats", "*.nn", |path| {
        let graph = load(path);
        insta::assert_snapshot!(render(&graph, &stats(&graph)));
    });
}

/// torchvision's published parameter counts (`sum(p.numel() for p in
/// model.parameters())`), which exclude batch-norm running statistics.
#[test]
fn parameter_counts_match_torchvision() {
    let root = nnc_tests::repo_root();
    let resnet = load(&root.join("models/resnet18.nn"));
    assert_eq!(stats(&resnet).total_params, 11_689_512);
    let mobilenet = load(&root.join("models/mobilenet_v2.nn"));
    assert_eq!(stats(&mobilenet).total_params, 3_504_872);
}
