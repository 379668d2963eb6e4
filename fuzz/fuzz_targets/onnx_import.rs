//! ONNX bytes -> import (protobuf decoding, opset and op conversion,
//! constant folding, initializers), then what `nnc import` does next: print
//! the `.nn` text and compile it. Import and compile errors are expected;
//! a panic is a crash, and so is printed text that does not parse (the
//! printer must write the language it reads) and imported weights that do
//! not fit the graph they came with.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_compiler::weights::expected_weights;
use nnc_frontend::{onnx, parse, print_file};
use nnc_fuzz::check_source;
use nnc_runtime::check_weights;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // No data directory: a model with external data is an error, and the
    // fuzzer cannot make nnc read files.
    let Ok(imported) = onnx::import_bytes(data, Path::new("fuzz.onnx"), None) else {
        return;
    };
    let text = print_file(&imported.file);
    if let Err(d) = parse(&text) {
        panic!("the imported model prints as text that does not parse: {d:?}\n{text}");
    }
    if let Some(graph) = check_source("fuzz.onnx (imported)", &text) {
        let problems = check_weights(&expected_weights(&graph), &imported.weights);
        assert!(
            problems.is_empty(),
            "the imported weights do not fit the graph: {problems:?}\n{text}"
        );
    }
});
