//! `nnc import`: an ONNX model to `.nn` text plus safetensors weights.

use anyhow::{bail, Context, Result};
use nnc_compiler::{driver, stats};
use std::path::{Path, PathBuf};

/// `nnc import`: writes the `.nn` text and the weights, after checking that
/// the text compiles (and printing its lint warnings; denied ones stop the
/// import before anything is written).
pub fn command(
    model: &Path,
    output: &Path,
    weights: Option<PathBuf>,
    dims: Vec<(String, usize)>,
    limit: nnc_runtime::MemoryLimit,
    lints: &crate::cli::lint::LintArgs,
) -> Result<()> {
    if !driver::is_onnx(model) {
        bail!("`{}` is not an `.onnx` file", model.display());
    }
    let options = nnc_frontend::onnx::Options {
        dims: dims.into_iter().collect(),
        max_memory: limit,
    };
    let loaded = driver::import(model, &options)?;
    crate::cli::lint::report(&loaded.model, lints)?;
    let weights_path = weights.unwrap_or_else(|| output.with_extension("safetensors"));
    // A comment says where the model and its weights came from; the parser
    // skips it, so the text still reads back as the imported AST.
    let header = format!(
        "# imported from {} by nnc import; weights in {}\n",
        model.display(),
        weights_path.display()
    );
    std::fs::write(output, header + loaded.model.source.text())
        .with_context(|| format!("writing `{}`", output.display()))?;
    let tensors = loaded.weights.unwrap_or_default();
    nnc_runtime::save_safetensors(&weights_path, &tensors)?;
    let s = stats::stats(&loaded.model.graph);
    println!(
        "imported `{}`: {} ops, {} parameters\n  wrote {}\n  wrote {}",
        model.display(),
        s.layers.len(),
        stats::group_digits(s.total_params),
        output.display(),
        weights_path.display()
    );
    Ok(())
}

/// Parses `NAME=SIZE` for `--dim`.
pub fn parse_dim(s: &str) -> std::result::Result<(String, usize), String> {
    let (name, size) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=SIZE"))?;
    match size.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok((name.trim().to_string(), n)),
        _ => Err(format!("the size in `{s}` is not a positive integer")),
    }
}
