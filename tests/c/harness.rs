//! What the C API tests (`tests/tests/c_api.rs`, through libnnc) and the
//! bundle tests (`compiler/tests/bundle.rs`) share, included by both with
//! `#[path]`: running `nnc_run.c`, built either way, on a bundled model's
//! seeded inputs and comparing its outputs with the reference
//! interpreter's.

use std::path::{Path, PathBuf};
use std::process::Command;

use nnc_compiler::driver::load;
use nnc_compiler::interp::run;
use nnc_compiler::weights::seeded_weights;
use nnc_runtime::{random_input, Tensor, DEFAULT_SEED};

/// The workspace root (both test crates sit one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

pub fn model_path(model: &str) -> PathBuf {
    root().join("models").join(format!("{model}.nn"))
}

pub fn write_floats(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("writable input file");
}

pub fn read_floats(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("the C program wrote its output")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The model's seeded inputs and the interpreter's outputs with the
/// weights `nnc` seeds by default (as `nnc compile` and `nnc_compile` do).
pub fn reference(model: &str) -> (Vec<Tensor>, Vec<Tensor>) {
    let graph = load(&model_path(model)).expect("the model loads").graph;
    let weights = seeded_weights(&graph, DEFAULT_SEED).expect("seeded weights");
    let inputs: Vec<Tensor> = graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random_input(&graph.node(id).ty.shape, 3 + i as u64).expect("input"))
        .collect();
    let outputs = run(&graph, &weights, &inputs).expect("the interpreter runs");
    (inputs, outputs)
}

/// Within `1e-4 * max(1, max |reference|)`, the JIT tests' tolerance.
pub fn assert_close(want: &Tensor, got: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = want
        .data()
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs())
        .fold(
            0.0f32,
            |m, e| if e.is_nan() { f32::INFINITY } else { m.max(e) },
        );
    assert!(
        err <= 1e-4 * scale,
        "{what}: off the interpreter by {err} (scale {scale})"
    );
}

/// Runs `exe` (`nnc_run.c`) with `leading` arguments, then `model`'s
/// seeded inputs and output files in `dir`, and checks each output's
/// printed shape and values against the interpreter.
pub fn run_and_compare(exe: &Path, leading: &[String], model: &str, dir: &Path) {
    let (inputs, outputs) = reference(model);
    let mut args = leading.to_vec();
    for (i, t) in inputs.iter().enumerate() {
        let file = dir.join(format!("in{i}.bin"));
        write_floats(&file, t.data());
        args.push(file.display().to_string());
    }
    let files: Vec<PathBuf> = (0..outputs.len())
        .map(|i| dir.join(format!("out{i}.bin")))
        .collect();
    args.extend(files.iter().map(|p| p.display().to_string()));
    let out = Command::new(exe)
        .args(&args)
        .output()
        .expect("the C program starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{model}: {} failed ({}):\n{stdout}{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, (want, file)) in outputs.iter().zip(&files).enumerate() {
        let dims: Vec<String> = want.shape().iter().map(usize::to_string).collect();
        assert!(
            stdout.contains(&format!("output {i}: {}\n", dims.join("x"))),
            "{model}: output {i}'s shape is not {dims:?}:\n{stdout}"
        );
        assert_close(
            want,
            &read_floats(file),
            &format!("{model} output {i} ({})", leading.join(" ")),
        );
    }
}
