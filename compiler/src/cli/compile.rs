//! `nnc compile`: the per-layer table and the compile-time figures.

use nnc_compiler::backend::{Compiled, Report};
use std::fmt::Write;

/// `12.3 MiB`.
pub fn mib(floats: usize) -> String {
    format!("{:.1} MiB", (4 * floats) as f64 / (1024.0 * 1024.0))
}

/// The report `nnc compile` prints.
pub fn render(compiled: &Compiled) -> String {
    let r: &Report = &compiled.report;
    let mut out = String::new();
    let rows: Vec<[String; 8]> = r
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            [
                i.to_string(),
                match l.loc {
                    Some(loc) => format!("{} @ {}", l.name, loc.line),
                    None => l.name.clone(),
                },
                l.op.to_string(),
                l.algorithm.clone(),
                l.epilogue.clone(),
                l.micro_kernel.clone(),
                format!("{:.1}", l.flops as f64 / 1e6),
                nnc_runtime::format_shape(&l.shape),
            ]
        })
        .collect();
    let header = [
        "#",
        "layer",
        "op",
        "algorithm",
        "epilogue",
        "micro-kernel",
        "MFLOP",
        "output",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let c: String = c.chars().take(*w).collect();
            if i == 6 {
                let _ = write!(s, "{c:>w$}  ");
            } else {
                let _ = write!(s, "{c:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&header));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", line(&cells));
    }
    let total: u64 = r.layers.iter().map(|l| l.flops).sum();
    let _ = writeln!(
        out,
        "\n{} kernels, {:.3} GFLOP per run",
        r.layers.len(),
        total as f64 / 1e9
    );
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|(name, d)| format!("{name} {:.1} ms", d.as_secs_f64() * 1e3))
        .collect();
    let _ = writeln!(
        out,
        "compile time: {:.1} ms ({})",
        r.total().as_secs_f64() * 1e3,
        phases.join(", ")
    );
    let _ = writeln!(
        out,
        "arena: {} (naive sum of intermediates {}, liveness lower bound {}); constants {} (packed weights and tables) and {} of weights read in place",
        mib(r.arena_len),
        mib(r.naive_len),
        mib(r.lower_bound),
        mib(r.const_bytes / 4),
        mib(r.kept_weight_bytes / 4)
    );
    out
}
