//! Lint warnings for the commands that read a model (`check`, `compile`,
//! `run`, `import`): the `--allow` and `--deny` flags, and printing the
//! warnings like errors before the command goes on.

use anyhow::Result;
use codespan_reporting::term::termcolor::StandardStream;
use nnc_compiler::driver::{LoadError, Model};
use nnc_compiler::lint;
use nnc_frontend::Severity;

/// The lint levels of one command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LintArgs {
    /// Silence a warning: its id (`nnc::gridding`; `nnc lints` lists
    /// them), or `warnings` for all (repeatable).
    #[arg(long = "allow", value_name = "ID")]
    pub allow: Vec<String>,
    /// Make warnings errors that fail the command (exit code 1):
    /// `--deny warnings` for all, or one id (repeatable). An id given to
    /// `--allow` stays silent.
    #[arg(long = "deny", value_name = "ID")]
    pub deny: Vec<String>,
}

/// Lints `model`: prints its warnings to stderr with a count, and fails
/// with the denied ones as errors (rendered by `main` like any source
/// error).
pub fn report(model: &Model, args: &LintArgs) -> Result<()> {
    let levels = lint::Levels::new(&args.allow, &args.deny)?;
    let (errors, warnings): (Vec<_>, Vec<_>) = lint::check(&model.graph, &levels)
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !warnings.is_empty() {
        let mut stderr = StandardStream::stderr(crate::stderr_color());
        for d in &warnings {
            d.emit(&model.source, &mut stderr);
        }
        eprintln!(
            "warning: `{}` generated {} warning{}",
            model.source.name(),
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Diagnostics {
            source_file: model.source.clone(),
            diagnostics: errors,
        }
        .into())
    }
}
