//! `nnc bench`: latency over many runs after a warm-up.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use nnc_runtime::{Executable, Pool, Tensor};
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// Latency figures of one benchmark.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Figures {
    pub model: String,
    pub threads: usize,
    pub runs: usize,
    pub warmup: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    pub gflops: f64,
    pub gflop_per_s: f64,
    pub compile_ms: f64,
    /// With several threads, the round trip of a cache line between two
    /// threads (ns) before and after the timed runs: about 60 on two cores
    /// that share an L3, several hundred across dies (see `cli::cores`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_round_trip_ns: Option<[f64; 2]>,
    /// Every timed run's latency, sorted (for pooling several benchmarks'
    /// runs, as `bench/compare_ort.py` does).
    pub times_ms: Vec<f64>,
}

/// Runs `exe` `warmup` times, then at least `runs` times and for at least
/// `min_time` (at most 100 times `runs`), with a progress bar on a
/// terminal. Returns each timed run's latency in milliseconds.
pub fn measure(
    exe: &Executable,
    inputs: &[Tensor],
    pool: &Pool,
    warmup: usize,
    runs: usize,
    min_time: Duration,
) -> Result<Vec<f64>> {
    let mut arena = exe.arena()?;
    for _ in 0..warmup {
        exe.run_in(&mut arena, inputs, pool)?;
    }
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(runs as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos}/{len} runs {wide_bar} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let start = Instant::now();
    let mut times = Vec::with_capacity(runs);
    while times.len() < runs || start.elapsed() < min_time {
        let t = Instant::now();
        exe.run_in(&mut arena, inputs, pool)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        bar.set_length(runs.max(times.len()) as u64);
        bar.set_position(times.len() as u64);
        if times.len() >= 100 * runs.max(1) {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(times)
}

/// The `q`-quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `nnc bench`: compiles `model`, times it, and prints the figures (one
/// JSON object with `json`).
pub fn command(
    model: &Path,
    weights: &crate::WeightArgs,
    threads: usize,
    runs: usize,
    warmup: usize,
    seconds: f64,
    json: bool,
) -> Result<()> {
    let (m, w) = weights.model(model)?;
    let inputs = crate::read_inputs(&m.graph, &[], weights.seed)?;
    let compiled = crate::compile(&m, w, threads, weights.memory.limit())?;
    let pool = Pool::new(threads)?;
    let (mut times, cores) = super::cores::around(pool.threads(), || {
        measure(
            &compiled.executable,
            &inputs,
            &pool,
            warmup,
            runs,
            Duration::from_secs_f64(seconds.max(0.0)),
        )
    })?;
    times.sort_by(f64::total_cmp);
    let gflops = compiled.report.layers.iter().map(|l| l.flops).sum::<u64>() as f64 / 1e9;
    let median = quantile(&times, 0.5);
    let figures = Figures {
        model: m.graph.name.clone(),
        threads: pool.threads(),
        runs: times.len(),
        warmup,
        median_ms: median,
        min_ms: quantile(&times, 0.0),
        p10_ms: quantile(&times, 0.1),
        p90_ms: quantile(&times, 0.9),
        gflops,
        gflop_per_s: gflops / (median / 1e3),
        compile_ms: compiled.report.total().as_secs_f64() * 1e3,
        core_round_trip_ns: cores,
        times_ms: times,
    };
    if json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!(
            "{}: {} runs on {} thread{}: median {:.3} ms, min {:.3} ms, p90 {:.3} ms; {:.2} GFLOP/s ({:.3} GFLOP per run); compiled in {:.1} ms",
            figures.model,
            figures.runs,
            figures.threads,
            if figures.threads == 1 { "" } else { "s" },
            figures.median_ms,
            figures.min_ms,
            figures.p90_ms,
            figures.gflop_per_s,
            figures.gflops,
            figures.compile_ms
        );
        if let Some(cores) = figures.core_round_trip_ns {
            println!("{}", super::cores::describe(cores));
        }
    }
    Ok(())
}
