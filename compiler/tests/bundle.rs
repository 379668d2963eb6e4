//! Ahead-of-time bundles end to end: `nnc compile --emit=bundle`, the C
//! programs of `tests/c/` linked with the system's `cc` exactly as the
//! bundle's README says (object file, `libnnc_runtime.a`, `-lpthread -ldl
//! -lm`), run, and their outputs compared with the reference interpreter;
//! two bundles in one program; and the bundle's errors.

// A failed expectation in a test is a test failure, not a library panic.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn model_path(model: &str) -> PathBuf {
    root().join("models").join(format!("{model}.nn"))
}

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

fn write_floats(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("writable input file");
}

fn read_floats(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("the program wrote its output")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The model's seeded inputs and the interpreter's outputs with the
/// weights `nnc compile` seeds.
fn reference(model: &str) -> (Vec<Tensor>, Vec<Tensor>) {
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
fn assert_close(want: &Tensor, got: &[f32], what: &str) {
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
    let (inputs, outputs) = reference(model);
    let mut args = vec![threads.to_string()];
    for (i, t) in inputs.iter().enumerate() {
        let file = tmp.path().join(format!("in{i}.bin"));
        write_floats(&file, t.data());
        args.push(file.display().to_string());
    }
    let files: Vec<PathBuf> = (0..outputs.len())
        .map(|i| tmp.path().join(format!("out{i}.bin")))
        .collect();
    args.extend(files.iter().map(|p| p.display().to_string()));
    let out = output_of(
        Command::new(&exe).args(&args),
        &format!("the {model} bundle"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (i, (want, file)) in outputs.iter().zip(&files).enumerate() {
        let dims: Vec<String> = want.shape().iter().map(usize::to_string).collect();
        assert!(
            stdout.contains(&format!("output {i}: {}\n", dims.join("x"))),
            "{stdout}"
        );
        assert_close(
            want,
            &read_floats(file),
            &format!("{model} output {i} at {threads} threads"),
        );
    }
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
