//! The `nnc` binary end to end: each command on a bundled model, `.npy`
//! input and output, and clear errors (non-zero exit, no panic) for bad
//! input.

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_prints_a_summary() {
    let o = nnc(&["check", "models/resnet18.nn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "ok: model `resnet18`: (x: f32[1, 3, 224, 224]) -> (fc: f32[1, 1000]), 69 ops, 11,689,512 parameters"
    );
}

#[test]
fn dump_ir_and_stats_print_the_model() {
    let o = nnc(&["dump-ir", "models/lenet5.nn"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("graph lenet5 {"));
    let o = nnc(&["stats", "models/lenet5.nn"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("total: 61,706 parameters"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn run_writes_npy_that_feeds_back_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let y = dir.path().join("y.npy");
    let y_str = y.to_str().expect("utf-8 path");
    let o = nnc(&["run", "--interp", "models/lenet5.nn", "-o", y_str]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = nnc_runtime::read_npy(&y).expect("output is a valid .npy");
    assert_eq!(first.shape(), &[1, 10]);

    // Feeding the seeded input explicitly gives the same output.
    let x = dir.path().join("x.npy");
    let input = nnc_runtime::random_input(&[1, 1, 32, 32], 0).expect("input");
    nnc_runtime::write_npy(&x, &input).expect("write");
    let y2 = dir.path().join("y2.npy");
    let o = nnc(&[
        "run",
        "--interp",
        "models/lenet5.nn",
        "--input",
        x.to_str().expect("utf-8"),
        "-o",
        y2.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(nnc_runtime::read_npy(&y2).expect("valid"), first);

    // Compiled code (the default) agrees with the interpreter.
    let y3 = dir.path().join("y3.npy");
    let o = nnc(&["run", "models/lenet5.nn", "-o", y3.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let compiled = nnc_runtime::read_npy(&y3).expect("valid");
    for (a, b) in compiled.data().iter().zip(first.data()) {
        assert!((a - b).abs() <= 1e-5, "{compiled:?} vs {first:?}");
    }
    assert!(stderr(&o).contains("compiled code"), "{}", stderr(&o));
}

#[test]
fn wrong_input_shape_is_an_error_naming_both_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let x = dir.path().join("x.npy");
    nnc_runtime::write_npy(
        &x,
        &nnc_runtime::Tensor::zeros(vec![1, 3, 32, 32]).expect("zeros"),
    )
    .expect("write");
    let o = nnc(&[
        "run",
        "models/lenet5.nn",
        "--input",
        x.to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("input `x` must have shape [1, 1, 32, 32]") && err.contains("[1, 3, 32, 32]"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn source_errors_are_rendered_like_rustc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.nn");
    std::fs::write(&path, "model m {\n    input x: f32[1, 3, 8, 8]\n    y = conv2(x, out=4, kernel=3)\n    output y\n}\n").expect("write");
    let o = nnc(&["check", path.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("error: unknown op `conv2`"), "{err}");
    assert!(err.contains("bad.nn:3:9"), "{err}");
    assert!(err.contains("did you mean `conv2d`?"), "{err}");
}

#[test]
fn missing_model_file_is_an_error() {
    let o = nnc(&["check", "models/no_such_model.nn"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot read `models/no_such_model.nn`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dump_ir_after_fold_bn_has_no_batch_norm() {
    let o = nnc(&["dump-ir", "--pass=fold-bn", "models/resnet18.nn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ir = stdout(&o);
    assert!(ir.contains("= conv2d("), "{ir}");
    assert!(!ir.contains("= batch_norm("), "{ir}");
}

#[test]
fn unknown_pass_lists_the_valid_ones() {
    let o = nnc(&["dump-ir", "--pass=fuse-everything", "models/lenet5.nn"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown pass `fuse-everything`; the passes are: simplify, fold-bn"),
        "{}",
        stderr(&o)
    );
    let o = nnc(&["passes"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("fold-bn"));
}

#[test]
fn dump_ir_after_fuse_shows_resnet_epilogues() {
    let o = nnc(&["dump-ir", "--pass=fuse", "models/resnet18.nn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ir = stdout(&o);
    // The stem: folded-BN bias and the ReLU in the conv's epilogue.
    assert!(
        ir.contains("bias=true, epilogue=relu} : f32[1, 64, 112, 112]  # conv1 @"),
        "{ir}"
    );
    // Every block's second conv ends in the shortcut add and the ReLU.
    assert_eq!(ir.matches("epilogue=add+relu}").count(), 8, "{ir}");
    assert!(!ir.contains("= relu("), "{ir}");
    assert!(!ir.contains("= add("), "{ir}");
}

#[test]
fn dump_ir_prints_graphviz_dot() {
    let o = nnc(&[
        "dump-ir",
        "--pass=dce",
        "--format=dot",
        "tests/cases/passes/lower-conv/separable.nn",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dot = stdout(&o);
    let body = &dot[dot.find("digraph \"separable\" {").expect("a digraph")..];
    assert!(body.trim_end().ends_with('}'), "{dot}");
    // input -> gemm -> separable -> output, plus the dashed residual edge
    // from the input; weights are not nodes.
    assert_eq!(body.matches(" -> ").count(), 4, "{dot}");
    assert_eq!(body.matches("style=dashed").count(), 1, "{dot}");
    assert!(body.contains("%1 = separable_conv2d\\l@dw.weight"), "{dot}");
    assert!(!body.contains("[label=\"@"), "{dot}");
    let o = nnc(&["dump-ir", "--format=svg", "models/lenet5.nn"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("possible values: text, dot"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn import_writes_nn_text_and_weights_that_run_like_the_onnx_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = "tests/cases/onnx/models/resnet_small/model.onnx";
    let input = "tests/cases/onnx/models/resnet_small/input_0.npy";
    let nn = dir.path().join("resnet_small.nn");
    let o = nnc(&["import", onnx, "-o", nn.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("resnet_small.safetensors"),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&nn).unwrap();
    assert!(text.contains("\nmodel resnet_small {\n"), "{text}");

    let weights = dir.path().join("resnet_small.safetensors");
    let (from_nn, from_onnx) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    let o = nnc(&[
        "run",
        nn.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        input,
        "-o",
        from_nn.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nnc(&[
        "run",
        onnx,
        "--input",
        input,
        "-o",
        from_onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(from_nn).unwrap(),
        std::fs::read(from_onnx).unwrap()
    );

    for command in ["check", "stats", "dump-ir"] {
        let o = nnc(&[command, onnx]);
        assert!(o.status.success(), "{command}: {}", stderr(&o));
    }
}

#[test]
fn import_lists_every_unsupported_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.nn");
    let o = nnc(&[
        "import",
        "tests/cases/onnx/errors/unsupported_nodes/model.onnx",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("4 unsupported nodes"), "{err}");
    for node in [
        "`hardmax_node` (Hardmax",
        "`pad_wrap` (Pad",
        "`lstm_clip` (LSTM",
        "`avg_pool_dilated` (AveragePool",
    ] {
        assert!(err.contains(node), "{node} missing: {err}");
    }
    assert!(!out.exists());
    let o = nnc(&["import", "models/lenet5.nn", "-o", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not an `.onnx` file"),
        "{}",
        stderr(&o)
    );
}

/// `compile --threads` compiles for that many threads: the LSTM's steps
/// are split across two (its `.init` step clears their shared state) and
/// not at one. With one core the steps are never split.
#[test]
fn compile_reports_the_layers_for_the_threads_asked() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (threads, split) in [("1", false), ("2", cores > 1)] {
        let o = nnc(&["compile", "models/lstm_seq.nn", "--threads", threads]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert_eq!(
            out.contains("lstm.init"),
            split,
            "--threads {threads}:\n{out}"
        );
    }
}

#[test]
fn compile_bench_and_profile_report_the_compiled_model() {
    let o = nnc(&["compile", "models/lenet5.nn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("im2col + gemm"), "{out}");
    assert!(out.contains("compile time:"), "{out}");
    assert!(out.contains("arena:"), "{out}");

    let o = nnc(&[
        "bench",
        "models/lenet5.nn",
        "--runs",
        "3",
        "--seconds",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let figures: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert!(
        figures["median_ms"].as_f64().expect("median") > 0.0,
        "{figures}"
    );
    assert!(figures["runs"].as_u64().expect("runs") >= 3, "{figures}");
    // With several threads, the cores' round trips before and after the
    // runs (left out if the probe's second thread did not run beside the
    // first: a loaded machine); never with one.
    if let Some(trips) = figures.get("core_round_trip_ns") {
        assert!(figures["threads"].as_u64() > Some(1), "{figures}");
        let trips = trips.as_array().expect("round trips");
        assert_eq!(trips.len(), 2, "{figures}");
        assert!(trips.iter().all(|t| t.as_f64() > Some(0.0)), "{figures}");
    }
    let o = nnc(&[
        "bench",
        "models/lenet5.nn",
        "--runs",
        "1",
        "--seconds",
        "0",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let figures: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert!(figures.get("core_round_trip_ns").is_none(), "{figures}");

    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace.json");
    let o = nnc(&[
        "profile",
        "models/lenet5.nn",
        "--runs",
        "2",
        "--threads",
        "1",
        "--trace",
        trace.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("roofline: FMA peak"), "{out}");
    assert!(out.contains("conv1 @ "), "{out}");
    let events: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).expect("trace")).expect("JSON");
    let events = events["traceEvents"].as_array().expect("events");
    // One event per kernel per run.
    let kernels = out.lines().filter(|l| l.contains(" @ ")).count();
    assert_eq!(events.len(), 2 * kernels, "{out}");
    assert_eq!(events[0]["ph"], "X");
}

#[test]
fn max_memory_refuses_a_model_that_does_not_fit_and_names_the_tensor() {
    // ResNet-18's input (588 KiB) fits in 1 MiB, its first convolution's
    // output does not; the error comes before any weight is seeded.
    let o = nnc(&["compile", "models/resnet18.nn", "--max-memory", "1M"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "error: value `conv1` of type f32[1, 64, 112, 112] needs 3.1 MiB (3211264 bytes), \
             more than the memory limit of 1.0 MiB (1048576 bytes)"
        ),
        "{err}"
    );
    assert!(err.contains("--max-memory SIZE"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // LeNet-5 needs well under 1 MiB and still runs.
    let o = nnc(&["run", "models/lenet5.nn", "--max-memory", "1M"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("output `fc3`: f32[1, 10]"),
        "{}",
        stdout(&o)
    );

    // A size that is not one is a usage error naming the problem.
    let o = nnc(&["check", "models/lenet5.nn", "--max-memory", "12X"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`12X` is not a memory size: the unit must be one of B, K, M, G or T"),
        "{}",
        stderr(&o)
    );
}
