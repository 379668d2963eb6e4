//! Every user-facing error has a failing case in `tests/cases/errors/`, and
//! its rendered diagnostics are snapshotted, so a change to any message, span
//! or help line shows up in review.
//!
//! Each case is a complete `.nn` file whose first line is a comment saying
//! which error it exercises. Re-bless with `INSTA_UPDATE=always` (or
//! `cargo insta review`) and read every changed snapshot.

use nnc_compiler::driver::compile_source;
use nnc_frontend::diagnostic::render_all;
use nnc_frontend::SourceFile;

#[test]
fn errors() {
    insta::glob!("../cases/errors", "*.nn", |path| {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = SourceFile::new(format!("errors/{file_name}"), text);
        let diagnostics = match compile_source(&source) {
            Ok(_) => panic!(
                "{}: compiled, but every case in cases/errors must fail",
                path.display()
            ),
            Err(diagnostics) => diagnostics,
        };
        assert!(
            !diagnostics.is_empty(),
            "{}: failed with no diagnostics",
            path.display()
        );
        insta::assert_snapshot!(render_all(&diagnostics, &source));
    });
}
