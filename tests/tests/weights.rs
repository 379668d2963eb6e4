//! Weights files: a valid file loads and gives the same results as the
//! weights it was saved from; every broken file gives a clear error that
//! names the tensor (and both shapes), never a panic. The rendered messages
//! are snapshotted.

use nnc_compiler::driver::load;
use nnc_compiler::ir::Graph;
use nnc_compiler::weights::{describe_load_errors, load_weights, seeded_weights};
use nnc_runtime::{
    random_input, save_safetensors, to_safetensors_bytes, MemoryLimit, Tensor, WeightSet,
};
use std::path::Path;

fn lenet() -> Graph {
    load(&nnc_tests::repo_root().join("models/lenet5.nn"))
        .expect("lenet5 loads")
        .graph
}

/// The error text for loading `bytes` as lenet5's weights, with the
/// temporary directory replaced so the snapshot is stable.
fn load_error(graph: &Graph, dir: &Path, file: &str, bytes: Option<&[u8]>) -> String {
    let path = dir.join(file);
    if let Some(bytes) = bytes {
        std::fs::write(&path, bytes).expect("write");
    }
    match load_weights(graph, &path, MemoryLimit::default()) {
        Ok(_) => panic!("loading {file} should fail"),
        Err(errors) => {
            describe_load_errors(&path, &errors).replace(&dir.display().to_string(), "<dir>")
        }
    }
}

#[test]
fn saved_weights_load_back_and_give_identical_outputs() {
    let graph = lenet();
    let seeded = seeded_weights(&graph, 7).expect("seeded");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lenet5.safetensors");
    save_safetensors(&path, &seeded).expect("save");
    let loaded = load_weights(&graph, &path, MemoryLimit::default()).expect("loads");
    assert_eq!(loaded, seeded);
    let x = random_input(&[1, 1, 32, 32], 3).expect("input");
    let a = nnc_compiler::interp::run(&graph, &seeded, std::slice::from_ref(&x)).expect("runs");
    let b = nnc_compiler::interp::run(&graph, &loaded, &[x]).expect("runs");
    assert_eq!(a, b);
}

#[test]
fn pytorch_num_batches_tracked_is_ignored() {
    let graph = load(&nnc_tests::repo_root().join("tests/cases/stats/two_3x3.nn"))
        .expect("loads")
        .graph;
    let mut weights = seeded_weights(&graph, 0).expect("seeded");
    // An f32 stand-in: the loader skips the name whatever the dtype.
    weights.insert(
        "bn.num_batches_tracked",
        Tensor::zeros(vec![]).expect("scalar"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.safetensors");
    save_safetensors(&path, &weights).expect("save");
    assert!(load_weights(&graph, &path, MemoryLimit::default()).is_ok());
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = load_error(&lenet(), dir.path(), "absent.safetensors", None);
    assert!(text.contains("absent.safetensors"), "{text}");
    assert!(
        text.starts_with("cannot load weights: cannot read `<dir>/absent.safetensors`"),
        "{text}"
    );
}

#[test]
fn not_a_safetensors_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    insta::assert_snapshot!(load_error(
        &lenet(),
        dir.path(),
        "garbage.safetensors",
        Some(b"this is not a weights file at all")
    ));
}

#[test]
fn truncated_file() {
    let graph = lenet();
    let bytes = to_safetensors_bytes(&seeded_weights(&graph, 0).expect("seeded")).expect("encode");
    let dir = tempfile::tempdir().expect("tempdir");
    let cut = &bytes[..bytes.len() - 1000];
    insta::assert_snapshot!(load_error(&graph, dir.path(), "cut.safetensors", Some(cut)));
}

#[test]
fn missing_extra_and_mis_shaped_tensors_are_all_reported() {
    let graph = lenet();
    let mut weights: WeightSet = seeded_weights(&graph, 0).expect("seeded");
    weights.remove("fc3.bias");
    weights.insert("fc4.weight", Tensor::zeros(vec![10, 84]).expect("zeros"));
    weights.insert(
        "conv1.weight",
        Tensor::zeros(vec![6, 3, 5, 5]).expect("zeros"),
    );
    let bytes = to_safetensors_bytes(&weights).expect("encode");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = load_error(&graph, dir.path(), "wrong.safetensors", Some(&bytes));
    assert!(text.contains("`conv1.weight` has shape [6, 3, 5, 5] in the weights file but the model expects [6, 1, 5, 5]"), "{text}");
    insta::assert_snapshot!(text);
}
