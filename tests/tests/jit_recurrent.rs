//! The compiled `rnn`, `lstm` and `gru` kernels against the reference
//! interpreter.
//!
//! Small models written inline cover the shapes the kernel specialises on:
//! one to three layers, batch 1 (no transposes) and batch 3 (the input is
//! transposed on the way in and `h` on the way out), both `batch_first`
//! settings, with and without bias, hidden and input sizes that are not
//! multiples of the vector width, and a single time step. On top of the
//! forward layers: reverse and bidirectional ones at every shape; initial
//! states and `output="h_n"`/`"c_n"` in every direction; per-sample
//! `lengths` with every direction, state and output setting; `gru` runs
//! the whole matrix too. Each model is
//! compiled and run at 1 and 2 threads, and must agree with the interpreter
//! within `1e-4 * max(1, max |reference|)`.

use nnc_compiler::backend::{compile, Options, Report};
use nnc_compiler::driver::compile_source;
use nnc_compiler::interp::run;
use nnc_compiler::ir::Graph;
use nnc_compiler::weights::seeded_weights;
use nnc_frontend::SourceFile;
use nnc_runtime::{random_input, Pool, Tensor};

const SEED: u64 = 5;

fn load(name: &str, text: &str) -> Graph {
    let source = SourceFile::new(name, text.to_string());
    compile_source(&source)
        .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)))
}

/// The largest difference of `found` from `reference`, relative to
/// `max(1, max |reference|)`; NaN where the reference is finite counts as
/// infinitely wrong.
fn relative_error(reference: &Tensor, found: &Tensor) -> f32 {
    assert_eq!(reference.shape(), found.shape());
    let scale = reference.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = reference
        .data()
        .iter()
        .zip(found.data())
        .map(|(a, b)| {
            if b.is_nan() {
                f32::INFINITY
            } else {
                (a - b).abs()
            }
        })
        .fold(0.0f32, f32::max);
    err / scale
}

/// Compiles `text` for 2 threads and checks every output against the
/// interpreter on pools of 1 and 2 threads; returns what `nnc compile`
/// would report.
fn check(what: &str, text: &str) -> Report {
    let graph = load(what, text);
    let weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let x: Vec<Tensor> = graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random_input(&graph.node(id).ty.shape, SEED + i as u64).expect("input"))
        .collect();
    let reference =
        run(&graph, &weights, &x).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let compiled = compile(
        graph,
        weights,
        &Options {
            threads: 2,
            ..Options::default()
        },
    )
    .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
    for threads in [1, 2] {
        let pool = Pool::new(threads).expect("pool");
        let out = compiled
            .executable
            .run(&x, &pool)
            .unwrap_or_else(|e| panic!("{what}: run: {e}"));
        assert_eq!(out.len(), reference.len(), "{what}: output count");
        for (r, o) in reference.iter().zip(&out) {
            let err = relative_error(r, o);
            assert!(
                err <= 1e-4,
                "{what}: differs by {err:e} (relative) at {threads} thread(s)\n{text}"
            );
        }
    }
    compiled.report
}

/// One recurrent op over an input of `seq` steps of `batch` samples with
/// `input` features, in the layout `batch_first` says.
struct Case {
    op: &'static str,
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    bias: bool,
    batch_first: bool,
    /// `forward`, `reverse` or `bidirectional`.
    direction: &'static str,
    /// Whether `h0` (and `c0` for `lstm`) are model inputs.
    states: bool,
    /// `sequence`, `h_n` or `c_n`.
    output: &'static str,
    /// Per-sample lengths; empty when all are full.
    lengths: &'static [usize],
}

impl Case {
    fn forward(
        op: &'static str,
        (seq, batch, input, hidden, layers, bias, batch_first): Shape,
    ) -> Case {
        Case {
            op,
            seq,
            batch,
            input,
            hidden,
            layers,
            bias,
            batch_first,
            direction: "forward",
            states: false,
            output: "sequence",
            lengths: &[],
        }
    }

    fn source(&self) -> String {
        let shape = if self.batch_first {
            [self.batch, self.seq, self.input]
        } else {
            [self.seq, self.batch, self.input]
        };
        let dirs = if self.direction == "bidirectional" {
            2
        } else {
            1
        };
        let state = format!(
            "f32[{}, {}, {}]",
            self.layers * dirs,
            self.batch,
            self.hidden
        );
        let mut inputs = format!(
            "    input x: f32[{}, {}, {}]\n",
            shape[0], shape[1], shape[2]
        );
        let mut operands = "x".to_string();
        if self.states {
            let names: &[&str] = if self.op == "lstm" {
                &["h0", "c0"]
            } else {
                &["h0"]
            };
            for name in names {
                inputs += &format!("    input {name}: {state}\n");
                operands += &format!(", {name}");
            }
        }
        if !self.lengths.is_empty() {
            let lengths: Vec<String> = self.lengths.iter().map(usize::to_string).collect();
            operands += &format!(", lengths=[{}]", lengths.join(", "));
        }
        format!(
            "model m {{\n{inputs}    y = {}({operands}, hidden={}, layers={}, bias={}, batch_first={}, direction=\"{}\", output=\"{}\")\n    output y\n}}\n",
            self.op,
            self.hidden,
            self.layers,
            self.bias,
            self.batch_first,
            self.direction,
            self.output
        )
    }

    fn check(&self) -> Report {
        let text = self.source();
        let what = format!(
            "{} seq={} batch={} input={} hidden={} layers={} bias={} batch_first={} direction={} states={} output={} lengths={:?}",
            self.op,
            self.seq,
            self.batch,
            self.input,
            self.hidden,
            self.layers,
            self.bias,
            self.batch_first,
            self.direction,
            self.states,
            self.output,
            self.lengths
        );
        check(&what, &text)
    }
}

/// (seq, batch, input, hidden, layers, bias, batch_first).
type Shape = (usize, usize, usize, usize, usize, bool, bool);

/// Shapes every op is checked at:
/// (seq, batch, input, hidden, layers, bias, batch_first).
const SHAPES: [Shape; 12] = [
    (5, 1, 3, 1, 1, true, false),
    // One sample over several chunks of eight steps (the native cell step
    // computes the input projections of a chunk during the one before),
    // the last chunk partial; fewer and more input features than hidden
    // units, and hidden sizes off the vector widths.
    (19, 1, 5, 7, 2, true, false),
    (18, 1, 40, 33, 1, false, true),
    (4, 1, 6, 5, 2, true, false),
    (6, 3, 5, 3, 2, false, true),
    (4, 3, 7, 13, 3, true, false),
    (1, 3, 1, 1, 1, true, false),
    (1, 1, 9, 13, 1, true, true),
    (3, 3, 5, 3, 3, false, true),
    (7, 1, 2, 5, 1, false, true),
    (6, 3, 4, 13, 2, true, true),
    // Multiples of four throughout: only the vector path of the gate pass.
    (8, 4, 16, 32, 2, true, false),
];

fn check_shapes(op: &'static str) {
    for shape in SHAPES {
        Case::forward(op, shape).check();
    }
}

#[test]
fn rnn_matches_the_interpreter() {
    check_shapes("rnn");
}

#[test]
fn lstm_matches_the_interpreter() {
    check_shapes("lstm");
}

/// Reverse and bidirectional layers at every shape.
fn check_directions(op: &'static str) {
    for direction in ["reverse", "bidirectional"] {
        for shape in SHAPES {
            Case {
                direction,
                ..Case::forward(op, shape)
            }
            .check();
        }
    }
}

/// Shapes the initial states and final-state outputs are checked at.
const STATE_SHAPES: [Shape; 6] = [
    (5, 1, 3, 4, 1, true, false),
    (17, 1, 6, 20, 2, true, true),
    (4, 3, 5, 3, 2, true, true),
    (1, 3, 2, 5, 2, false, false),
    (6, 3, 4, 13, 2, true, false),
    (3, 1, 6, 5, 2, false, true),
];

/// Initial states and final-state outputs in every direction.
fn check_states(op: &'static str) {
    let outputs: &[&'static str] = if op == "lstm" {
        &["sequence", "h_n", "c_n"]
    } else {
        &["sequence", "h_n"]
    };
    for direction in ["forward", "reverse", "bidirectional"] {
        for &output in outputs {
            for states in [false, true] {
                for shape in STATE_SHAPES {
                    Case {
                        direction,
                        states,
                        output,
                        ..Case::forward(op, shape)
                    }
                    .check();
                }
            }
        }
    }
}

/// Per-sample lengths with every direction, state and output setting:
/// (shape, lengths).
const LENGTHS: [(Shape, &[usize]); 6] = [
    ((5, 3, 3, 4, 1, true, false), &[5, 2, 3]),
    ((4, 3, 5, 3, 2, true, true), &[1, 4, 2]),
    ((6, 1, 2, 5, 2, false, false), &[4]),
    ((6, 3, 4, 13, 2, true, false), &[6, 6, 1]),
    ((3, 1, 6, 5, 1, false, true), &[3]),
    ((21, 1, 3, 9, 2, true, false), &[13]),
];

fn check_lengths(op: &'static str) {
    let outputs: &[&'static str] = if op == "lstm" {
        &["sequence", "h_n", "c_n"]
    } else {
        &["sequence", "h_n"]
    };
    for direction in ["forward", "reverse", "bidirectional"] {
        for &output in outputs {
            for states in [false, true] {
                for (shape, lengths) in LENGTHS {
                    Case {
                        direction,
                        states,
                        output,
                        lengths,
                        ..Case::forward(op, shape)
                    }
                    .check();
                }
            }
        }
    }
}

#[test]
fn rnn_lengths_match_the_interpreter() {
    check_lengths("rnn");
}

#[test]
fn lstm_lengths_match_the_interpreter() {
    check_lengths("lstm");
}

#[test]
fn rnn_directions_match_the_interpreter() {
    check_directions("rnn");
}

#[test]
fn lstm_directions_match_the_interpreter() {
    check_directions("lstm");
}

#[test]
fn rnn_states_match_the_interpreter() {
    check_states("rnn");
}

#[test]
fn lstm_states_match_the_interpreter() {
    check_states("lstm");
}

#[test]
fn gru_matches_the_interpreter() {
    check_shapes("gru");
    check_directions("gru");
    check_states("gru");
    check_lengths("gru");
}

/// A layer whose `W_hh` reaches 128 KiB runs each step in two parts, one
/// per thread (on a machine with two cores or more), which wait for each
/// other between steps (a first step clears their shared state and sets
/// the initial states): every cell, forward and reverse, with and without
/// initial states, hidden sizes off the block width, several chunks of
/// input projections with a partial last one. `check` also runs the two
/// parts on a pool of one thread, where the first task does every part.
#[test]
fn steps_split_across_threads_match_the_interpreter() {
    // (op, hidden, direction, bias, initial states)
    let cases = [
        ("lstm", 264, "forward", true, false),
        ("lstm", 256, "reverse", false, true),
        ("gru", 300, "forward", true, true),
        ("gru", 296, "reverse", true, false),
        ("rnn", 520, "forward", true, true),
    ];
    for (op, hidden, direction, bias, states) in cases {
        let case = Case {
            direction,
            states,
            ..Case::forward(op, (19, 1, 40, hidden, 1, bias, false))
        };
        let report = case.check();
        // The parts are capped at the cores: one core has one part.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            report.layers.iter().any(|l| l.name.ends_with(".init")),
            cores > 1,
            "{op} hidden={hidden}: split on {cores} cores"
        );
    }
}

/// Two recurrent ops in a row and ops after them: each kernel has its own
/// scratch and the output feeds ordinary kernels.
#[test]
fn chained_recurrent_ops_match_the_interpreter() {
    check(
        "rnn then lstm",
        "model m {
            input x: f32[3, 5, 7]
            r = rnn(x, hidden=6, batch_first=true)
            l = lstm(r, hidden=5, layers=2, batch_first=true)
            last = select(l, dim=1, index=-1)
            y = linear(last, out=3)
            output y
        }",
    );
    check(
        "two outputs",
        "model m {
            input x: f32[4, 2, 3]
            a = lstm(x, hidden=3)
            b = rnn(a, hidden=2, bias=false)
            output a
            output b
        }",
    );
}

/// The example models with recurrent layers, as `tests/jit.rs` runs them.
#[test]
fn recurrent_models_match_the_interpreter() {
    for name in ["models/lstm_seq.nn", "models/lstm2.nn"] {
        let path = nnc_tests::repo_root().join(name);
        let text = std::fs::read_to_string(&path).expect("readable model");
        check(name, &text);
    }
}
