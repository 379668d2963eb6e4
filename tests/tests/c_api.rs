//! nnc's C API from C: programs in `tests/c/` built with the system's `cc`
//! against `nnc.h` and libnnc (`libnnc.so`), run on bundled models and
//! compared with the reference interpreter; and misuse of the API (NULL
//! handles and arrays, missing files, indices out of range) answered with
//! error codes and messages, not crashes.

use std::path::{Path, PathBuf};
use std::process::Command;

use nnc_compiler::driver::load;
use nnc_compiler::interp::run;
use nnc_compiler::weights::seeded_weights;
use nnc_runtime::{random_input, Tensor, DEFAULT_SEED};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The directory holding `libnnc.so`, which cargo builds beside this test's
/// dependencies (`target/<profile>/deps`) or uplifts one level up.
fn libnnc_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let deps = exe.parent().expect("the deps directory");
    let found = [deps, deps.parent().expect("the profile directory")]
        .into_iter()
        .find(|d| d.join("libnnc.so").is_file())
        .unwrap_or_else(|| panic!("libnnc.so is neither in {} nor its parent", deps.display()))
        .to_path_buf();
    found
}

/// Builds `tests/c/<name>.c` against libnnc into `dir`.
fn build_c(name: &str, dir: &Path) -> PathBuf {
    let lib = libnnc_dir();
    let exe = dir.join(name);
    let out = Command::new("cc")
        .arg(root().join("tests/c").join(format!("{name}.c")))
        .arg("-I")
        .arg(root().join("runtime/include"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lnnc", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .output()
        .expect("the system's C compiler `cc` runs");
    assert!(
        out.status.success(),
        "cc {name}.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn write_floats(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("writable input file");
}

fn read_floats(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("the C program wrote its output")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Runs `models/<model>.nn` through libnnc from C at `threads` threads
/// and checks every output against the interpreter's, within `1e-4 *
/// max(1, max |reference|)` (the tolerance of the JIT's own tests).
fn check_model(model: &str, threads: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = build_c("nnc_run", dir.path());
    let path = root().join("models").join(format!("{model}.nn"));
    let graph = load(&path).expect("the model loads").graph;
    let weights = seeded_weights(&graph, DEFAULT_SEED).expect("seeded weights");
    let inputs: Vec<Tensor> = graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random_input(&graph.node(id).ty.shape, 5 + i as u64).expect("input"))
        .collect();
    let reference = run(&graph, &weights, &inputs).expect("the interpreter runs");
    let mut args = vec![
        path.display().to_string(),
        "-".to_string(),
        threads.to_string(),
    ];
    for (i, t) in inputs.iter().enumerate() {
        let file = dir.path().join(format!("in{i}.bin"));
        write_floats(&file, t.data());
        args.push(file.display().to_string());
    }
    let outputs: Vec<PathBuf> = (0..reference.len())
        .map(|i| dir.path().join(format!("out{i}.bin")))
        .collect();
    args.extend(outputs.iter().map(|p| p.display().to_string()));
    let out = Command::new(&exe)
        .args(&args)
        .output()
        .expect("nnc_run runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{model}: nnc_run failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, (want, file)) in reference.iter().zip(&outputs).enumerate() {
        let dims: Vec<String> = want.shape().iter().map(usize::to_string).collect();
        assert!(
            stdout.contains(&format!("output {i}: {}\n", dims.join("x"))),
            "{model}: output {i}'s shape is not {dims:?}:\n{stdout}"
        );
        let got = read_floats(file);
        assert_eq!(got.len(), want.len(), "{model}: output {i}'s length");
        let scale = want.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = want
            .data()
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(
                0.0f32,
                |m, e| if e.is_nan() { f32::INFINITY } else { m.max(e) },
            );
        assert!(
            err <= 1e-4 * scale,
            "{model} at {threads} threads: output {i} differs from the interpreter by {err} (scale {scale})"
        );
    }
}

#[test]
fn lenet5_through_libnnc_matches_the_interpreter() {
    check_model("lenet5", 1);
    check_model("lenet5", 2);
}

#[test]
fn lstm_seq_through_libnnc_matches_the_interpreter() {
    check_model("lstm_seq", 2);
}

#[test]
fn mobilenet_v2_through_libnnc_matches_the_interpreter() {
    check_model("mobilenet_v2", 2);
}

#[test]
fn misuse_of_the_c_api_gives_errors_not_crashes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = build_c("nnc_errors", dir.path());
    let out = Command::new(&exe)
        .arg(root().join("models/lenet5.nn"))
        .output()
        .expect("nnc_errors runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nnc_errors ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Every check ran (a crash would have cut the list short).
    assert_eq!(stdout.matches("ok: ").count(), 16, "{stdout}");
}

#[test]
fn a_model_with_errors_is_refused_with_its_diagnostics() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = build_c("nnc_run", dir.path());
    let model = dir.path().join("bad.nn");
    std::fs::write(
        &model,
        "model bad {\n    input x: f32[1, 4]\n    y = relu(z)\n    output y\n}\n",
    )
    .expect("writable model");
    let out = Command::new(&exe)
        .args([model.display().to_string().as_str(), "-", "1"])
        .output()
        .expect("nnc_run runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The rendered diagnostic points at the line.
    assert!(stderr.contains("bad.nn:3"), "{stderr}");
}
