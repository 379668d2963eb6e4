//! Lowering of focused cases in `tests/cases/lower/`: the IR of each is
//! snapshotted, and the names that blocks and repetition produce are
//! asserted explicitly.

use nnc_compiler::driver::compile_source;
use nnc_compiler::ir::{Graph, Op};
use nnc_frontend::SourceFile;

fn load(path: &std::path::Path) -> Graph {
    let text = std::fs::read_to_string(path).expect("readable");
    let source = SourceFile::new(path.display().to_string(), text);
    compile_source(&source)
        .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)))
}

fn weight_names(graph: &Graph) -> Vec<String> {
    let mut names: Vec<String> = graph
        .node_ids()
        .into_iter()
        .filter_map(|id| match &graph.node(id).op {
            Op::Weight(w) => Some(w.name.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

#[test]
fn ir_of_every_lowering_case() {
    insta::glob!("../cases/lower", "*.nn", |path| {
        insta::assert_snapshot!(load(path).to_string());
    });
}

#[test]
fn repetition_names_each_instance() {
    let g = load(&nnc_tests::repo_root().join("tests/cases/lower/repetition.nn"));
    assert_eq!(
        weight_names(&g),
        [
            "stage.1.conv.weight",
            "stage.2.conv.weight",
            "stage.3.conv.weight"
        ]
    );
    // Chained: the output is stage.3's relu, fed by stage.2's.
    let out = g.node(g.outputs()[0]);
    assert_eq!(out.name, "stage.3.act");
    let conv = g.node(out.inputs()[0]);
    assert_eq!(g.node(conv.inputs()[0]).name, "stage.2.act");
}

#[test]
fn nested_blocks_give_sequential_names() {
    let g = load(&nnc_tests::repo_root().join("tests/cases/lower/nested_blocks.nn"));
    let names = weight_names(&g);
    for expected in [
        "features.0.conv.0.0.weight",
        "features.0.conv.0.1.running_mean",
        "features.0.conv.1.0.weight",
        "features.0.conv.1.1.running_var",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // pad defaults to kernel / 2: 0 for the 1x1 conv, 1 for the 3x3 (stride 2: 16 -> 8).
    assert_eq!(g.node(g.outputs()[0]).ty.shape, [1, 16, 8, 8]);
}
