//! The reference interpreter on every model in `models/`: each runs with
//! seeded weights and a seeded input, produces outputs of the declared types
//! with only finite values, and is deterministic.

use std::path::{Path, PathBuf};

use nnc_compiler::driver::load;
use nnc_compiler::interp::run;
use nnc_compiler::weights::seeded_weights;
use nnc_runtime::{random_input, Tensor};

fn models() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "nn"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
}

fn run_model(path: &Path, seed: u64) -> Vec<Tensor> {
    let model = load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let graph = &model.graph;
    let weights = seeded_weights(graph, seed).unwrap();
    let inputs: Vec<Tensor> = graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random_input(&graph.node(id).ty.shape, seed + i as u64).unwrap())
        .collect();
    let outputs =
        run(graph, &weights, &inputs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(outputs.len(), graph.outputs().len());
    for (out, &id) in outputs.iter().zip(graph.outputs()) {
        assert_eq!(
            out.shape(),
            graph.node(id).ty.shape.as_slice(),
            "{}",
            path.display()
        );
        assert!(
            out.data().iter().all(|v| v.is_finite()),
            "{}",
            path.display()
        );
    }
    outputs
}

#[test]
fn every_model_runs_with_finite_outputs_of_the_declared_shapes() {
    let paths = models();
    assert!(
        paths.len() >= 5,
        "expected the models/ directory, found {paths:?}"
    );
    for path in paths {
        run_model(&path, 1);
    }
}

#[test]
fn runs_are_deterministic_and_depend_on_the_seed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/lenet5.nn");
    let a = run_model(&path, 7);
    let b = run_model(&path, 7);
    let c = run_model(&path, 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Seeded weights larger than one drawing task (drawn in parts on all
/// cores) hold exactly the values of the one stream the documentation
/// specifies (`seeded_uniform`, a single sequential generator).
#[test]
fn large_seeded_weights_are_the_sequential_stream() {
    let text = "model big {\n    input x: f32[1, 300, 4, 4]\n    \
                y = conv2d(x, out=300, kernel=3, pad=1)\n    \
                output y\n}\n";
    let source = nnc_frontend::SourceFile::new("big.nn", text.to_string());
    let graph = nnc_compiler::driver::compile_source(&source).expect("compile");
    let weights = seeded_weights(&graph, 5).expect("weights");
    let kernel = weights.get("y.weight").expect("y.weight");
    assert_eq!(kernel.shape(), [300, 300, 3, 3]);
    let bound = 1.0 / (300.0f32 * 9.0).sqrt();
    let sequential =
        nnc_runtime::seeded_uniform("y.weight", kernel.shape(), -bound, bound, 5).expect("draw");
    assert!(kernel.len() > 10 * (1 << 16));
    assert_eq!(kernel.data(), sequential.data());
}
