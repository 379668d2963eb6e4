//! The `nnc` binary's lint warnings: printed by `check`, `compile`, `run`
//! and `import`; silenced by `--allow`; errors with exit code 1 under
//! `--deny warnings`; listed by `nnc lints` and `nnc help check`.

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

const GRIDDING: &str = "tests/cases/lints/gridding_common_factor.nn";

#[test]
fn check_prints_warnings_and_succeeds() {
    let o = nnc(&["check", GRIDDING]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("warning[nnc::gridding]: gridding: dilations 2, 4, 6"),
        "{err}"
    );
    assert!(
        err.contains("sees 1 of every 2 pixels in each direction"),
        "{err}"
    );
    assert!(err.contains("= help: use saw-tooth rates"), "{err}");
    assert!(
        err.contains(&format!("warning: `{GRIDDING}` generated 1 warning\n")),
        "{err}"
    );
    assert!(stdout(&o).starts_with("ok: model `m`"), "{}", stdout(&o));
}

#[test]
fn allow_silences_a_warning() {
    for allow in ["nnc::gridding", "gridding", "warnings"] {
        let o = nnc(&["check", GRIDDING, "--allow", allow]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "--allow {allow}");
    }
    // Another lint's --allow leaves this one.
    let o = nnc(&["check", GRIDDING, "--allow", "nnc::checkerboard"]);
    assert!(stderr(&o).contains("warning[nnc::gridding]"));
}

#[test]
fn deny_warnings_fails_with_exit_code_1() {
    let o = nnc(&["check", GRIDDING, "--deny", "warnings"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("error[nnc::gridding]: gridding:"), "{err}");
    assert!(
        err.contains("= note: `--deny warnings` makes this warning an error"),
        "{err}"
    );
    assert!(err.contains("due to 1 previous error"), "{err}");
    assert_eq!(stdout(&o), "");

    // A lint named by --allow stays silent under --deny warnings.
    let o = nnc(&[
        "check",
        GRIDDING,
        "--deny",
        "warnings",
        "--allow",
        "nnc::gridding",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A model without warnings passes --deny warnings.
    let o = nnc(&["check", "models/resnet18.nn", "--deny", "warnings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn unknown_lint_is_an_error_listing_the_lints() {
    let o = nnc(&["check", GRIDDING, "--allow", "nnc::griding"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("unknown lint `nnc::griding`"), "{err}");
    assert!(err.contains("nnc::gridding, nnc::checkerboard"), "{err}");
}

#[test]
fn lints_and_help_list_the_ids_and_flags() {
    let o = nnc(&["lints"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for id in [
        "nnc::gridding",
        "nnc::checkerboard",
        "nnc::receptive_field",
        "nnc::unfolded_batch_norm",
        "nnc::dropout_keep_probability",
        "nnc::explicit_pad",
    ] {
        assert!(out.contains(id), "{out}");
    }
    for command in ["check", "compile", "run", "import"] {
        let o = nnc(&["help", command]);
        assert!(o.status.success());
        let out = stdout(&o);
        assert!(
            out.contains("--allow <ID>") && out.contains("--deny <ID>"),
            "nnc help {command}:\n{out}"
        );
    }
}

#[test]
fn compile_and_run_print_the_warnings_first() {
    let case = "tests/cases/lints/checkerboard_kernel3_stride2.nn";
    let o = nnc(&["run", "--interp", case]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("warning[nnc::checkerboard]"));
    assert!(stdout(&o).contains("output `up`"));
    let o = nnc(&["run", "--interp", case, "--deny", "warnings"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");

    let o = nnc(&["compile", case]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("warning[nnc::checkerboard]"));
    assert!(stdout(&o).starts_with("compiled `m`"));
}

#[test]
fn import_names_the_imported_bindings_and_deny_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.nn");
    let out_str = out.to_str().expect("utf-8");
    let model = "tests/cases/lints/onnx_dilated_stack.onnx";
    let o = nnc(&["import", model, "-o", out_str, "--deny", "warnings"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!out.exists());

    let o = nnc(&["import", model, "-o", out_str]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("what `encoder.1` sees of `x`"),
        "the binding of ONNX node /encoder/1/Conv: {err}"
    );
    assert!(err.contains("transposed convolution `decoder`"), "{err}");
    assert!(out.exists());
}
