//! `nnc profile`: where the time of a compiled model goes, layer by layer,
//! against the machine's measured roofline.
//!
//! Each layer's time is the median over the profiled runs. Its arithmetic
//! intensity is FLOPs per byte read and written (weights included, each
//! byte once); with the measured FMA peak `P` (one core's, times the
//! threads) and memory bandwidth `B`, a layer whose intensity is below the
//! ridge `P / B` is memory-bound (it cannot beat `B * intensity` however
//! good its arithmetic), otherwise compute-bound. This is why a
//! depthwise-separable block is not as fast as its FLOP count suggests: its
//! depthwise half does 9 multiply-adds per element it loads and stores, far
//! below the ridge, so memory, not FLOPs, sets its time.

use anyhow::{Context, Result};
use nnc_compiler::backend::{roofline, Compiled};
use nnc_runtime::{Pool, Tensor};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Per-step start and end of every profiled run.
pub type Runs = Vec<Vec<(Duration, Duration)>>;

/// Runs the model `warmup + runs` times and records the step spans of the
/// timed runs.
pub fn record(
    compiled: &Compiled,
    inputs: &[Tensor],
    pool: &Pool,
    warmup: usize,
    runs: usize,
) -> Result<Runs> {
    let exe = &compiled.executable;
    let mut arena = exe.arena()?;
    for _ in 0..warmup {
        exe.run_in(&mut arena, inputs, pool)?;
    }
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let mut spans = Vec::with_capacity(exe.steps().len());
        exe.run_timed(&mut arena, inputs, pool, Some(&mut spans))?;
        all.push(spans);
    }
    Ok(all)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The profile table and the roofline summary.
pub fn render(compiled: &Compiled, runs: &Runs, threads: usize) -> String {
    let peak = roofline::fma_peak_gflops() * threads as f64;
    let bandwidth = roofline::memory_bandwidth_gbs();
    let ridge = if bandwidth > 0.0 {
        peak / bandwidth
    } else {
        0.0
    };
    let layers = &compiled.report.layers;
    let times: Vec<f64> = (0..layers.len())
        .map(|i| {
            median(
                runs.iter()
                    .filter_map(|r| r.get(i))
                    .map(|(a, b)| (*b - *a).as_secs_f64() * 1e3)
                    .collect(),
            )
        })
        .collect();
    let total: f64 = times.iter().sum();
    let whole = median(
        runs.iter()
            .filter_map(|r| r.last().map(|(_, end)| end.as_secs_f64() * 1e3))
            .collect(),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<4}{:<34}{:<18}{:>9}{:>7}{:>9}{:>9}{:>8}{:>9}{:>8}{:>7}  {:<8} {:<28} micro-kernel",
        "#",
        "layer",
        "op",
        "ms",
        "share",
        "MFLOP",
        "MB",
        "FLOP/B",
        "GFLOP/s",
        "GB/s",
        "%peak",
        "bound",
        "algorithm",
    );
    let (mut memory_ms, mut compute_ms) = (0.0, 0.0);
    for (i, (l, &ms)) in layers.iter().zip(&times).enumerate() {
        let bytes = (l.bytes_read + l.bytes_written) as f64;
        let intensity = l.flops as f64 / bytes.max(1.0);
        let secs = ms / 1e3;
        let gflops = if secs > 0.0 {
            l.flops as f64 / secs / 1e9
        } else {
            0.0
        };
        let gbs = if secs > 0.0 { bytes / secs / 1e9 } else { 0.0 };
        let memory_bound = intensity < ridge;
        if memory_bound {
            memory_ms += ms;
        } else {
            compute_ms += ms;
        }
        let name = match l.loc {
            Some(loc) => format!("{} @ {}", l.name, loc.line),
            None => l.name.clone(),
        };
        let _ = writeln!(
            out,
            "{:<4}{:<34}{:<18}{:>9.3}{:>6.1}%{:>9.1}{:>9.2}{:>8.1}{:>9.1}{:>8.1}{:>6.1}%  {:<8} {:<28} {}",
            i,
            truncate(&name, 33),
            l.op,
            ms,
            100.0 * ms / total.max(1e-12),
            l.flops as f64 / 1e6,
            bytes / 1e6,
            intensity,
            gflops,
            gbs,
            if peak > 0.0 { 100.0 * gflops / peak } else { 0.0 },
            if memory_bound { "memory" } else { "compute" },
            truncate(&l.algorithm, 28),
            l.micro_kernel
        );
    }
    let flops: u64 = layers.iter().map(|l| l.flops).sum();
    let _ = writeln!(
        out,
        "\ntotal {total:.3} ms in kernels ({whole:.3} ms per run), {:.2} GFLOP/s on {threads} thread{}; {:.0}% of the time in memory-bound layers, {:.0}% in compute-bound ones",
        flops as f64 / (total / 1e3).max(1e-12) / 1e9,
        if threads == 1 { "" } else { "s" },
        100.0 * memory_ms / total.max(1e-12),
        100.0 * compute_ms / total.max(1e-12)
    );
    let _ = writeln!(
        out,
        "roofline: FMA peak {peak:.1} GFLOP/s ({threads} x {:.1}, measured), memory bandwidth {bandwidth:.1} GB/s (measured), ridge {ridge:.1} FLOP/byte",
        peak / threads.max(1) as f64
    );
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The runs as a Chrome trace (JSON, viewable in Perfetto): one complete
/// event per kernel per run, runs laid end to end.
pub fn trace(compiled: &Compiled, runs: &Runs) -> Result<String> {
    let layers = &compiled.report.layers;
    let mut events = Vec::new();
    let mut offset = 0.0f64;
    for (r, spans) in runs.iter().enumerate() {
        for (l, (start, end)) in layers.iter().zip(spans) {
            events.push(serde_json::json!({
                "name": l.name,
                "cat": l.op,
                "ph": "X",
                "ts": offset + start.as_secs_f64() * 1e6,
                "dur": (*end - *start).as_secs_f64() * 1e6,
                "pid": 1,
                "tid": 1,
                "args": {
                    "run": r,
                    "op": l.op,
                    "algorithm": l.algorithm,
                    "micro_kernel": l.micro_kernel,
                    "flops": l.flops,
                    "bytes": l.bytes_read + l.bytes_written,
                    "line": l.loc.map(|loc| loc.line),
                },
            }));
        }
        offset += spans.last().map_or(0.0, |(_, end)| end.as_secs_f64() * 1e6);
    }
    Ok(serde_json::to_string(
        &serde_json::json!({ "traceEvents": events }),
    )?)
}

/// `nnc profile`: compiles `model`, records `runs` runs and prints the
/// table (and writes the trace).
pub fn command(
    model: &Path,
    weights: &crate::WeightArgs,
    threads: usize,
    runs: usize,
    trace_path: Option<&Path>,
) -> Result<()> {
    let (m, w) = weights.model(model)?;
    let inputs = crate::read_inputs(&m.graph, &[], weights.seed)?;
    let compiled = crate::compile(&m, w, threads, weights.memory.limit())?;
    let pool = Pool::new(threads)?;
    let (recorded, cores) = super::cores::around(pool.threads(), || {
        record(&compiled, &inputs, &pool, 3, runs)
    })?;
    println!("profile of `{}` ({} runs)", m.graph.name, recorded.len());
    print!("{}", render(&compiled, &recorded, pool.threads()));
    // Two-thread layer times on a machine whose cores can sit on one die
    // or two differ by up to 2x with it (see `cores.rs`).
    if let Some(cores) = cores {
        println!("{}", super::cores::describe(cores));
    }
    if let Some(path) = trace_path {
        std::fs::write(path, trace(&compiled, &recorded)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "trace written to {} (open it in https://ui.perfetto.dev)",
            path.display()
        );
    }
    Ok(())
}
