//! nnc's C API from C: programs in `tests/c/` built with the system's `cc`
//! against `nnc.h` and libnnc (`libnnc.so`), run on bundled models and
//! compared with the reference interpreter; and misuse of the API (NULL
//! handles and arrays, missing files, indices out of range) answered with
//! error codes and messages, not crashes.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../c/harness.rs"]
mod harness;
use harness::{model_path, root, run_and_compare};

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

/// Runs `models/<model>.nn` through libnnc from C at `threads` threads
/// and checks every output against the interpreter's.
fn check_model(model: &str, threads: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = build_c("nnc_run", dir.path());
    let leading = [
        model_path(model).display().to_string(),
        "-".into(),
        threads.to_string(),
    ];
    run_and_compare(&exe, &leading, model, dir.path());
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
    assert_eq!(stdout.matches("ok: ").count(), 17, "{stdout}");
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
