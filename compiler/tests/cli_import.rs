//! `nnc import` options end to end (apart from cli.rs so that the two
//! suites grow without touching each other).

// A failed expectation in a test is a test failure, not a library panic.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("nnc starts")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn import_takes_sizes_for_symbolic_dims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.nn");
    let model = "tests/cases/onnx/errors/symbolic_batch/model.onnx";
    let o = nnc(&["import", model, "-o", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--dim batch=SIZE"), "{}", stderr(&o));
    let o = nnc(&[
        "import",
        model,
        "-o",
        out.to_str().unwrap(),
        "--dim",
        "batch=2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("# imported from "), "{text}");
    assert!(text.contains("input x: f32[2, 3, 4, 4]"), "{text}");
    let o = nnc(&["check", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnc(&[
        "import",
        model,
        "-o",
        out.to_str().unwrap(),
        "--dim",
        "batch=0",
    ]);
    assert!(!o.status.success());
}
