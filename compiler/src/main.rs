//! The `nnc` command-line tool.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
use nnc_compiler::driver::{self, LoadError, Loaded, Model};
use nnc_compiler::ir::Graph;
use nnc_compiler::{backend, lint, passes, stats, weights};
use nnc_runtime::{random_input, read_npy, MemoryLimit, Tensor, WeightSet, DEFAULT_SEED};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cli;

/// nnc: a neural-network compiler for CPU inference.
///
/// Models are written in the `.nn` language (see docs/language.md) or
/// imported from ONNX. Without a weights file, weights are seeded
/// deterministically, so every model runs out of the box.
#[derive(Parser)]
#[command(name = "nnc", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, lower, infer shapes and verify; print errors or a summary.
    ///
    /// Also checks the model against the design rules of the notes and
    /// prints a warning, with a fix, where it breaks one (`nnc lints` lists
    /// them); `compile`, `run` and `import` print the same warnings.
    Check {
        /// The model, a `.nn` or `.onnx` file.
        model: PathBuf,
        #[command(flatten)]
        memory: MemoryArgs,
        #[command(flatten)]
        lints: cli::lint::LintArgs,
    },
    /// Print the IR of a model, as lowered or after optimisation passes.
    DumpIr {
        /// The model, a `.nn` or `.onnx` file.
        model: PathBuf,
        /// Run the default pipeline up to and including this pass
        /// (`nnc passes` lists them).
        #[arg(long, value_name = "NAME", conflicts_with = "passes")]
        pass: Option<String>,
        /// Run exactly these passes, in this order (comma-separated).
        #[arg(long, value_name = "A,B,C")]
        passes: Option<String>,
        /// Print the IR after every pass, not only at the end.
        #[arg(long)]
        print_after_all: bool,
        /// `text` (the IR as in docs/ir.md) or `dot` (Graphviz; render
        /// with `dot -Tsvg`).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Seed for the generated weights the passes fold.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
    /// List the optimisation passes in pipeline order.
    Passes,
    /// List the lints: the warnings `check`, `compile`, `run` and `import`
    /// print, by the id that `--allow` and `--deny` take.
    Lints,
    /// Compile a model and report each layer and the compile time.
    ///
    /// Runs the pass pipeline, the memory plan and the JIT, then prints each
    /// layer's algorithm, fused epilogue, GEMM micro-kernel and FLOPs, the
    /// compile time per phase, and the arena size next to the naive sum of
    /// all intermediates and the liveness lower bound.
    Compile {
        /// The model, a `.nn` or `.onnx` file.
        model: PathBuf,
        #[command(flatten)]
        weights: WeightArgs,
        /// Threads the kernels are split for, as `run` would use them (0:
        /// one per core); some layers change algorithm with it (a recurrent
        /// layer's steps are split across threads).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// What to produce: `report` (the table above, nothing written) or
        /// `bundle` (into `-o DIR`: an object file with the kernels and
        /// weights, `libnnc_runtime.a` and `nnc.h`, for C programs; see
        /// docs/bundles.md).
        #[arg(long, value_enum, default_value = "report")]
        emit: cli::bundle::Emit,
        /// The directory a bundle is written to (created if missing).
        #[arg(
            short = 'o',
            long = "output",
            value_name = "DIR",
            required_if_eq("emit", "bundle")
        )]
        output: Option<PathBuf>,
        /// The bundle's open function is PREFIX_model_open: distinct
        /// prefixes let several models link into one program.
        #[arg(long, value_name = "PREFIX", default_value = "nnc")]
        prefix: String,
        #[command(flatten)]
        lints: cli::lint::LintArgs,
    },
    /// Run a model and print (or save) its outputs.
    Run {
        /// The model, a `.nn` or `.onnx` file.
        model: PathBuf,
        /// Execute with the reference interpreter instead of compiled code
        /// (the oracle the compiler is tested against).
        #[arg(long)]
        interp: bool,
        /// Threads for compiled code (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Weights as safetensors, named by PyTorch module paths.
        /// Default: seeded weights (see docs/language.md).
        #[arg(long, value_name = "FILE")]
        weights: Option<PathBuf>,
        /// An input as `.npy`, one per model input in declaration order.
        /// Default: seeded uniform values in [-1, 1).
        #[arg(long = "input", value_name = "FILE")]
        inputs: Vec<PathBuf>,
        /// Where to write each output as `.npy`, in output order.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        outputs: Vec<PathBuf>,
        /// Seed for generated weights and inputs.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        #[command(flatten)]
        memory: MemoryArgs,
        #[command(flatten)]
        lints: cli::lint::LintArgs,
    },
    /// Time a compiled model's latency.
    ///
    /// Warm-up runs, then the median, minimum, 10th and 90th percentile
    /// latency over many runs (with a progress bar), and the achieved
    /// GFLOP/s; `--json` prints the same figures as one JSON object.
    Bench {
        /// The model, a `.nn` or `.onnx` file.
        model: PathBuf,
        #[command(flatten)]
        weights: WeightArgs,
        /// Threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Timed runs (at least; more while under one second).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Keep timing runs for at least this many seconds.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show where a compiled model's time goes, layer by layer.
    ///
    /// Runs the model many times and prints, per layer (with its source
    /// line): median time and share, FLOPs, bytes moved, arithmetic
    /// intensity, GFLOP/s, GB/s, % of the FMA peak, and whether a roofline
    /// built from the measured FMA peak and memory bandwidth makes it
    /// compute- or memory-bound.
    Profile {
        /// The model, a `.nn` or `.onnx` file.
        model: PathBuf,
        #[command(flatten)]
        weights: WeightArgs,
        /// Threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Profiled runs (each layer's time is the median).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Write the profiled runs as a Chrome trace (open in Perfetto).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Per-layer output shape, parameters, FLOPs and receptive field.
    Stats {
        /// The model, a `.nn` or `.onnx` file.
        model: PathBuf,
    },
    /// Convert an ONNX model to a `.nn` file and a `.safetensors` weights file.
    Import {
        /// The ONNX model.
        model: PathBuf,
        /// Where to write the `.nn` text.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Where to write the weights. Default: the output path with the
        /// extension `.safetensors`.
        #[arg(long, value_name = "FILE")]
        weights: Option<PathBuf>,
        /// The size of a symbolic input dim, such as `--dim batch=1`
        /// (repeatable); nnc compiles static shapes.
        #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = cli::import::parse_dim)]
        dims: Vec<(String, usize)>,
        #[command(flatten)]
        memory: MemoryArgs,
        #[command(flatten)]
        lints: cli::lint::LintArgs,
    },
}

/// How `dump-ir` prints a graph.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Dot,
}

impl Format {
    fn print(self, graph: &Graph) -> String {
        match self {
            Format::Text => graph.to_string(),
            Format::Dot => nnc_compiler::ir::dot::to_dot(graph),
        }
    }
}

/// Where a compiled model's weights come from.
#[derive(clap::Args)]
pub(crate) struct WeightArgs {
    /// Weights as safetensors, named by PyTorch module paths.
    /// Default: an `.onnx` model's own, else seeded weights (see
    /// docs/language.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) weights: Option<PathBuf>,
    /// Seed for generated weights and inputs.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) memory: MemoryArgs,
}

/// The memory limit of commands that load or compile a model.
#[derive(clap::Args)]
pub(crate) struct MemoryArgs {
    /// Refuse a model whose arena, weights or any one tensor needs more
    /// memory than SIZE (`512M`, `2G`, `1.5GiB` or bytes; units are powers
    /// of 1024). Default: the memory this machine has available (Linux:
    /// `MemAvailable`, within the cgroup's `memory.max`).
    #[arg(long, value_name = "SIZE", value_parser = MemoryLimit::parse)]
    pub(crate) max_memory: Option<MemoryLimit>,
}

impl MemoryArgs {
    /// `--max-memory`, or the machine's available memory.
    pub(crate) fn limit(&self) -> MemoryLimit {
        self.max_memory.unwrap_or_default()
    }
}

impl WeightArgs {
    /// The model at `path` with its weights: `--weights` if given, else
    /// those an `.onnx` file carries, else seeded ones.
    pub(crate) fn model(&self, path: &Path) -> Result<(Model, WeightSet)> {
        let limit = self.memory.limit();
        let loaded = load_with_weights(path, limit)?;
        let weights = match (&self.weights, loaded.weights) {
            (Some(file), _) => load_weights(&loaded.model.graph, file, limit)?,
            (None, Some(imported)) => imported,
            (None, None) => weights::seeded_weights(&loaded.model.graph, self.seed)?,
        };
        Ok((loaded.model, weights))
    }
}

/// Compiles a loaded model for `threads` threads within `limit`.
fn compile(
    m: &Model,
    weights: WeightSet,
    threads: usize,
    limit: MemoryLimit,
) -> Result<backend::Compiled> {
    Ok(backend::compile(
        m.graph.clone(),
        weights,
        &backend::Options {
            threads,
            max_memory: limit,
            ..Default::default()
        },
    )?)
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(LoadError::Diagnostics {
                source_file,
                diagnostics,
            }) = e.downcast_ref::<LoadError>()
            {
                let mut stderr = StandardStream::stderr(stderr_color());
                for d in diagnostics {
                    d.emit(source_file, &mut stderr);
                }
                eprintln!(
                    "error: could not compile `{}` due to {} previous error{}",
                    source_file.name(),
                    diagnostics.len(),
                    if diagnostics.len() == 1 { "" } else { "s" }
                );
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Colour for diagnostics on stderr: termcolor's `Auto` looks only at TERM
/// and NO_COLOR; colour is also wrong when stderr is a file or a pipe.
fn stderr_color() -> ColorChoice {
    if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    }
}

/// Rust ignores SIGPIPE, so `nnc dump-ir m.nn | head` would panic on the
/// closed pipe; like other command-line tools, exit quietly instead.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread
    // exists; restoring a signal's default disposition has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Loads a `.nn` or `.onnx` model (an ONNX model's own weights are dropped;
/// commands that compute use [`load_with_weights`]).
fn load(path: &Path) -> Result<Model> {
    Ok(driver::load_any(path)?.model)
}

/// Loads a model with the weights an `.onnx` file carries, refusing one
/// that does not fit in `limit`.
fn load_with_weights(path: &Path, limit: MemoryLimit) -> Result<Loaded> {
    let options = nnc_frontend::onnx::Options {
        max_memory: limit,
        ..Default::default()
    };
    Ok(driver::load_any_with(path, &options)?)
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Check {
            model,
            memory,
            lints,
        } => {
            let m = load_with_weights(&model, memory.limit())?.model;
            cli::lint::report(&m, &lints)?;
            let s = stats::stats(&m.graph);
            println!(
                "ok: model `{}`: {} -> {}, {} ops, {} parameters",
                m.graph.name,
                types(&m.graph, m.graph.inputs()),
                types(&m.graph, m.graph.outputs()),
                s.layers.len(),
                stats::group_digits(s.total_params)
            );
        }
        Command::DumpIr {
            model,
            pass,
            passes,
            print_after_all,
            format,
            seed,
        } => {
            let loaded = load_with_weights(&model, MemoryLimit::default())?;
            let m = loaded.model;
            let names: Vec<&str> = match (&pass, &passes) {
                (Some(name), _) => {
                    passes::pipeline_through(name).ok_or_else(|| unknown_pass(name))?
                }
                (None, Some(list)) => passes::parse_list(list)?,
                (None, None) => Vec::new(),
            };
            let mut graph = m.graph;
            let mut weights = match loaded.weights {
                Some(w) => w,
                None => weights::seeded_weights(&graph, seed)?,
            };
            if print_after_all {
                println!("// input IR\n{}", format.print(&graph));
            }
            for name in names {
                let pass = passes::find(name).ok_or_else(|| unknown_pass(name))?;
                let report = passes::run_pass(pass, &mut graph, &mut weights, true)?;
                if print_after_all {
                    println!(
                        "// after {name} (fired {} time{})",
                        report.fired,
                        if report.fired == 1 { "" } else { "s" }
                    );
                    for note in &report.notes {
                        println!("// note: {note}");
                    }
                    println!("{}", format.print(&graph));
                } else {
                    for note in &report.notes {
                        println!("// {name}: {note}");
                    }
                }
            }
            if !print_after_all {
                print!("{}", format.print(&graph));
            }
        }
        Command::Passes => {
            for (i, pass) in passes::PASSES.iter().enumerate() {
                println!("{:>2}. {:<16} {}", i + 1, pass.name, pass.description);
            }
        }
        Command::Lints => {
            for l in lint::LINTS {
                println!("{:<31} {}", l.id(), l.description);
            }
        }
        Command::Stats { model } => {
            let m = load(&model)?;
            print!("{}", stats::render(&m.graph, &stats::stats(&m.graph)));
        }
        Command::Compile {
            model,
            weights,
            threads,
            emit,
            output,
            prefix,
            lints,
        } => {
            if emit == cli::bundle::Emit::Report && output.is_some() {
                bail!("`-o` names where a bundle goes: add `--emit=bundle`, or drop `-o` for the report");
            }
            let start = std::time::Instant::now();
            let (m, w) = weights.model(&model)?;
            cli::lint::report(&m, &lints)?;
            if let (cli::bundle::Emit::Bundle, Some(dir)) = (emit, &output) {
                let limit = weights.memory.limit();
                return cli::bundle::command(&m, w, threads, limit, dir, &prefix);
            }
            let loaded = start.elapsed();
            let compiled = compile(&m, w, threads, weights.memory.limit())?;
            let total = start.elapsed();
            println!("compiled `{}`", m.graph.name);
            print!("{}", cli::compile::render(&compiled));
            println!(
                "from source to ready to run: {:.1} ms (read, lower and {} weights {:.1} ms, compile {:.1} ms)",
                total.as_secs_f64() * 1e3,
                if weights.weights.is_some() { "load" } else { "seed or import" },
                loaded.as_secs_f64() * 1e3,
                (total - loaded).as_secs_f64() * 1e3
            );
        }
        Command::Bench {
            model,
            weights,
            threads,
            runs,
            warmup,
            seconds,
            json,
        } => cli::bench::command(&model, &weights, threads, runs, warmup, seconds, json)?,
        Command::Profile {
            model,
            weights,
            threads,
            runs,
            trace,
        } => cli::profile::command(&model, &weights, threads, runs, trace.as_deref())?,
        Command::Run {
            model,
            interp,
            threads,
            weights,
            inputs,
            outputs,
            seed,
            memory,
            lints,
        } => cli::run::command(
            &model,
            interp,
            threads,
            weights,
            &inputs,
            &outputs,
            seed,
            memory.limit(),
            &lints,
        )?,
        Command::Import {
            model,
            output,
            weights,
            dims,
            memory,
            lints,
        } => cli::import::command(&model, &output, weights, dims, memory.limit(), &lints)?,
    }
    Ok(())
}

fn unknown_pass(name: &str) -> anyhow::Error {
    let valid: Vec<&str> = passes::pass_names().collect();
    anyhow::anyhow!(
        "unknown pass `{name}`; the passes are: {}",
        valid.join(", ")
    )
}

fn types(graph: &Graph, ids: &[nnc_compiler::ir::NodeId]) -> String {
    let list: Vec<String> = ids
        .iter()
        .map(|&id| format!("{}: {}", graph.node(id).name, graph.node(id).ty))
        .collect();
    format!("({})", list.join(", "))
}

fn load_weights(graph: &Graph, path: &Path, limit: MemoryLimit) -> Result<WeightSet> {
    weights::load_weights(graph, path, limit)
        .map_err(|errors| anyhow::anyhow!(weights::describe_load_errors(path, &errors)))
}

fn read_inputs(graph: &Graph, files: &[PathBuf], seed: u64) -> Result<Vec<Tensor>> {
    let declared = graph.inputs();
    if !files.is_empty() && files.len() != declared.len() {
        bail!(
            "the model has {} input{} ({}) but {} `--input` file{} were given",
            declared.len(),
            if declared.len() == 1 { "" } else { "s" },
            types(graph, declared),
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
    }
    declared
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let node = graph.node(id);
            let tensor = match files.get(i) {
                Some(path) => read_npy(path)?,
                None => random_input(&node.ty.shape, seed.wrapping_add(i as u64))?,
            };
            if tensor.shape() != node.ty.shape.as_slice() {
                bail!(
                    "input `{}` must have shape {}, but `{}` has shape {}",
                    node.name,
                    nnc_runtime::format_shape(&node.ty.shape),
                    files
                        .get(i)
                        .map_or_else(String::new, |p| p.display().to_string()),
                    nnc_runtime::format_shape(tensor.shape())
                );
            }
            Ok(tensor)
        })
        .collect()
}
