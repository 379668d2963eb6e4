//! safetensors bytes -> a weight set, checked against the tensors a fixed
//! small model expects (conv with bias, batch norm, layer norm, linear), as
//! `nnc run --weights` does. Weights that fit are run through the
//! interpreter, and every weight set that loads must survive a round trip
//! through `to_safetensors_bytes` bit for bit. Errors are expected; a
//! panic or a round trip that changes a value is a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_compiler::driver::compile_source;
use nnc_compiler::interp;
use nnc_compiler::ir::Graph;
use nnc_compiler::weights::expected_weights;
use nnc_frontend::SourceFile;
use nnc_runtime::{check_weights, load_safetensors_bytes, to_safetensors_bytes, Tensor};
use std::path::Path;
use std::sync::OnceLock;

/// The model the weights are loaded for; `seeds/weights_safetensors.py`
/// writes the seed corpus for the same tensors.
const MODEL: &str = "model small {
    input x: f32[1, 2, 4, 4]
    conv = conv2d(x, out=3, kernel=3, pad=1)
    bn = batch_norm(conv)
    norm = layer_norm(bn, dims=2)
    flat = flatten(norm)
    fc = linear(flat, out=2)
    output fc
}
";

fn graph() -> &'static (Graph, Vec<(String, Vec<usize>)>, Tensor) {
    static GRAPH: OnceLock<(Graph, Vec<(String, Vec<usize>)>, Tensor)> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let graph = compile_source(&SourceFile::new("small.nn", MODEL))
            .unwrap_or_else(|d| panic!("the fixed model does not compile: {d:?}"));
        let expected = expected_weights(&graph);
        let x = Tensor::full(vec![1, 2, 4, 4], 0.5).unwrap_or_else(|e| panic!("{e}"));
        (graph, expected, x)
    })
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let Ok(weights) = load_safetensors_bytes(data, path) else {
        return;
    };
    let bytes = to_safetensors_bytes(&weights)
        .unwrap_or_else(|e| panic!("loaded weights do not save: {e}"));
    let again = load_safetensors_bytes(&bytes, path)
        .unwrap_or_else(|e| panic!("saved weights do not load: {e}"));
    assert_eq!(weights.len(), again.len(), "round trip lost tensors");
    for ((name, a), (name2, b)) in weights.iter().zip(again.iter()) {
        assert_eq!(name, name2);
        assert_eq!(a.shape(), b.shape(), "`{name}` changed shape");
        let same = a
            .data()
            .iter()
            .zip(b.data())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "`{name}` changed values in a round trip");
    }

    let (graph, expected, x) = graph();
    if !check_weights(expected, &weights).is_empty() {
        return;
    }
    let out = interp::run(graph, &weights, std::slice::from_ref(x))
        .unwrap_or_else(|e| panic!("weights that fit do not run: {e}"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shape(), &[1, 2]);
});
