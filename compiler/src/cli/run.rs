//! `nnc run`: compile (or interpret) a model and print or save its
//! outputs.

use anyhow::{bail, Context, Result};
use nnc_compiler::{interp, weights};
use nnc_runtime::{write_npy, Pool, Tensor};
use std::path::{Path, PathBuf};

/// Runs `model` on `inputs` (`.npy` files, or seeded inputs) and prints a
/// summary of each output, writing it to the matching `-o` file; lint
/// warnings come first.
#[allow(clippy::too_many_arguments)]
pub fn command(
    model: &Path,
    interp: bool,
    threads: usize,
    weights: Option<PathBuf>,
    inputs: &[PathBuf],
    outputs: &[PathBuf],
    seed: u64,
    limit: nnc_runtime::MemoryLimit,
    lints: &crate::cli::lint::LintArgs,
) -> Result<()> {
    let loaded = crate::load_with_weights(model, limit)?;
    let m = loaded.model;
    crate::cli::lint::report(&m, lints)?;
    let weights = match (weights, loaded.weights) {
        (Some(path), _) => crate::load_weights(&m.graph, &path, limit)?,
        (None, Some(imported)) => imported,
        (None, None) => weights::seeded_weights(&m.graph, seed)?,
    };
    let inputs = crate::read_inputs(&m.graph, inputs, seed)?;
    let start = std::time::Instant::now();
    let (results, how) = if interp {
        (
            interp::run(&m.graph, &weights, &inputs)?,
            "the reference interpreter".to_string(),
        )
    } else {
        let compiled = crate::compile(&m, weights, threads, limit)?;
        let pool = Pool::new(threads)?;
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        (
            compiled.executable.run(&inputs, &pool)?,
            format!(
                "compiled code (compiled in {compile_ms:.1} ms, {} thread{})",
                pool.threads(),
                if pool.threads() == 1 { "" } else { "s" }
            ),
        )
    };
    let elapsed = start.elapsed();
    if !outputs.is_empty() && outputs.len() != results.len() {
        bail!(
            "the model has {} output{} but {} `-o` file{} were given",
            results.len(),
            if results.len() == 1 { "" } else { "s" },
            outputs.len(),
            if outputs.len() == 1 { "" } else { "s" }
        );
    }
    for (i, t) in results.iter().enumerate() {
        let name = &m.graph.node(m.graph.outputs()[i]).name;
        println!("{}", summary(name, t));
        if let Some(path) = outputs.get(i) {
            write_npy(path, t).with_context(|| format!("writing output `{name}`"))?;
            println!("  written to {}", path.display());
        }
    }
    eprintln!(
        "ran `{}` with {how} in {:.1} ms",
        m.graph.name,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

fn summary(name: &str, t: &Tensor) -> String {
    let data = t.data();
    let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
    for &v in data {
        min = min.min(v);
        max = max.max(v);
        sum += v as f64;
    }
    let mean = if data.is_empty() {
        0.0
    } else {
        sum / data.len() as f64
    };
    let head: Vec<String> = data.iter().take(6).map(|v| format!("{v:.6}")).collect();
    let mut line = format!(
        "output `{name}`: f32{}  min {min:.6}  max {max:.6}  mean {mean:.6}\n  [{}{}]",
        nnc_runtime::format_shape(t.shape()),
        head.join(", "),
        if data.len() > 6 { ", ..." } else { "" }
    );
    // For a classifier, the top class is what a user looks for first.
    if t.shape().len() == 2 && t.shape()[0] == 1 && data.len() > 1 {
        if let Some((arg, _)) = data.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
            line.push_str(&format!("\n  argmax {arg}"));
        }
    }
    line
}
