//! Ahead-of-time bundles end to end: `nnc compile --emit=bundle`, the C
//! programs of `tests/c/` linked with the system's `cc` exactly as the
//! bundle's README says (object file, `libnnc_runtime.a`, `-lpthread -ldl
//! -lm`), run, and their outputs compared with the reference interpreter;
//! two bundles in one program; and the bundle's errors.

// A failed expectation in a test is a test failure, not a library panic.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

#[path = "../../tests/c/harness.rs"]
mod harness;
use harness::{
    assert_close, model_path, read_floats, reference, root, run_and_compare, write_floats,
};

fn output_of(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `nnc compile models/<model>.nn --emit=bundle -o <dir> --prefix <prefix>`.
fn bundle(model: &str, dir: &Path, prefix: &str, threads: usize) -> String {
    let out = output_of(
        Command::new(env!("CARGO_BIN_EXE_nnc"))
            .arg("compile")
            .arg(model_path(model))
            .args(["--emit=bundle", "--prefix", prefix, "--threads"])
            .arg(threads.to_string())
            .arg("-o")
            .arg(dir),
        "nnc compile --emit=bundle",
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Links `tests/c/<program>.c` with the bundles in `dirs` as their README
/// says, plus `defines`.
fn link(program: &str, dirs: &[&Path], defines: &[String], exe: &Path) {
    let mut cc = Command::new("cc");
    cc.arg(root().join("tests/c").join(format!("{program}.c")));
    for d in dirs {
        cc.arg("-I").arg(d);
        for entry in std::fs::read_dir(d).expect("the bundle's directory") {
            let path = entry.expect("a bundle file").path();
            if path.extension().is_some_and(|e| e == "o") {
                cc.arg(path);
            }
        }
    }
    cc.arg(dirs[0].join("libnnc_runtime.a"))
        .args(["-lpthread", "-ldl", "-lm", "-Wall", "-Werror"])
        .args(defines)
        .arg("-o")
        .arg(exe);
    output_of(&mut cc, &format!("cc {program}.c"));
}

/// Bundles `model`, links `nnc_run.c` with it, runs it at `threads` and
/// compares every output with the interpreter's.
fn check_model(model: &str, compile_threads: usize, threads: usize) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("bundle");
    let report = bundle(model, &dir, model, compile_threads);
    assert!(report.contains(&format!("{model}_model.o")), "{report}");
    for file in ["libnnc_runtime.a", "nnc.h", "README", &format!("{model}.h")] {
        assert!(dir.join(file).is_file(), "the bundle has no {file}");
    }
    let exe = tmp.path().join("run");
    link(
        "nnc_run",
        &[&dir],
        &[
            "-DNNC_BUNDLE".into(),
            format!("-DNNC_OPEN={model}_model_open"),
        ],
        &exe,
    );
    run_and_compare(&exe, &[threads.to_string()], model, tmp.path());
}

#[test]
fn a_lenet5_bundle_matches_the_interpreter() {
    check_model("lenet5", 1, 1);
}

#[test]
fn a_mobilenet_v2_bundle_matches_the_interpreter() {
    check_model("mobilenet_v2", 2, 2);
}

#[test]
fn an_lstm_seq_bundle_matches_the_interpreter() {
    check_model("lstm_seq", 2, 1);
}

#[test]
fn every_other_bundled_model_matches_the_interpreter() {
    let covered = ["lenet5", "mobilenet_v2", "lstm_seq"];
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("models")).expect("models/") {
        let path = entry.expect("a model file").path();
        let Some(model) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "nn") && !covered.contains(&model) {
            check_model(model, 2, 2);
            checked += 1;
        }
    }
    // resnet18, vgg_cifar, lstm2 and all_ops at least.
    assert!(checked >= 4, "only {checked} models checked");
}

#[test]
fn two_bundles_link_into_one_program_and_share_nothing_but_the_runtime() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    bundle("lenet5", &first, "first", 2);
    bundle("vgg_cifar", &second, "second", 2);
    let exe = tmp.path().join("two");
    link("bundle_two", &[&first, &second], &[], &exe);
    let (x1, y1) = reference("lenet5");
    let (x2, y2) = reference("vgg_cifar");
    let file = |name: &str| tmp.path().join(name);
    write_floats(&file("a.in"), x1[0].data());
    write_floats(&file("b.in"), x2[0].data());
    let args = ["a.in", "a.out", "b.in", "b.out"].map(|n| file(n).display().to_string());
    output_of(Command::new(&exe).args(args), "two bundles in one program");
    assert_close(
        &y1[0],
        &read_floats(&file("a.out")),
        "lenet5 beside vgg_cifar",
    );
    assert_close(
        &y2[0],
        &read_floats(&file("b.out")),
        "vgg_cifar beside lenet5",
    );
}

#[test]
fn a_prefix_that_is_not_a_c_identifier_is_refused() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .arg("compile")
        .arg(model_path("lenet5"))
        .args(["--emit=bundle", "--prefix", "my-model", "-o"])
        .arg(tmp.path())
        .output()
        .expect("nnc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("my-model"), "{stderr}");
}

#[test]
fn an_output_directory_without_a_bundle_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .arg("compile")
        .arg(model_path("lenet5"))
        .args(["-o", "somewhere"])
        .output()
        .expect("nnc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--emit=bundle"), "{stderr}");
    assert!(!Path::new("somewhere").exists(), "nothing is written");
}

#[test]
fn a_bundle_needs_an_output_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .arg("compile")
        .arg(model_path("lenet5"))
        .arg("--emit=bundle")
        .output()
        .expect("nnc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--output"), "{stderr}");
}
