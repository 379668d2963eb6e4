//! Differential: a valid random model from the fuzzer's bytes (see
//! `nnc_fuzz::random_graph`), compiled with the JIT and run at 1 and 2
//! threads, must agree with the reference interpreter on the unoptimised
//! graph within `TOLERANCE * max(1, max |reference|)`, widened where the
//! output is ill-conditioned (see `mismatch`), NaN where the interpreter
//! has NaN. An error from compiling or running a model that the
//! front end accepted is a crash too, except the backend's documented
//! `Unsupported` (a constant as a model output).

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use nnc_compiler::backend::{compile, BackendError, Options};
use nnc_compiler::interp;
use nnc_compiler::ir::{BinaryOp, Graph, NodeId, Op};
use nnc_compiler::weights::seeded_weights;
use nnc_fuzz::random_graph::random_graph;
use nnc_runtime::{random_input, Pool, Tensor};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// As `tests/tests/jit.rs` (which uses 1e-4 on hand-made models), but a
/// random chain of ops can compound rounding differences a little further.
const TOLERANCE: f32 = 1e-3;

const SEED: u64 = 11;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(Some(model)) = random_graph(&mut u) else {
        return;
    };
    let (text, graph) = (model.text, model.graph);
    // Panics inside the compiler do not know the model; reproducing a crash
    // with `NNC_FUZZ_SHOW=1` prints it first.
    if std::env::var_os("NNC_FUZZ_SHOW").is_some() {
        eprintln!("{text}");
    }
    let weights = seeded_weights(&graph, SEED).unwrap_or_else(|e| panic!("weights: {e}\n{text}"));
    let inputs: Vec<Tensor> = graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            random_input(&graph.node(id).ty.shape, SEED + i as u64)
                .unwrap_or_else(|e| panic!("input: {e}\n{text}"))
        })
        .collect();
    let values = interp::run_all(&graph, &weights, &inputs)
        .unwrap_or_else(|e| panic!("interpreter: {e}\n{text}"));
    let reference: Vec<Tensor> = graph
        .outputs()
        .iter()
        .map(|id| values[id].clone())
        .collect();
    let fragile = fragile_outputs(&graph, &values);
    // The same model on inputs moved by a few ulp: how much each output
    // moves with rounding (see `mismatch`).
    let nudged: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| nudge(t, i as u64))
        .collect();
    let noise = interp::run(&graph, &weights, &nudged)
        .unwrap_or_else(|e| panic!("interpreter on nudged inputs: {e}\n{text}"));
    let compiled = match compile(graph, weights, options()) {
        Ok(compiled) => compiled,
        // A documented limit of the backend (a constant as an output) is a
        // clean error; the others are compiler bugs.
        Err(BackendError::Unsupported { .. }) => return,
        Err(
            e @ (BackendError::Pass(_)
            | BackendError::NotLowered { .. }
            | BackendError::NoNativeActivation(_)
            | BackendError::Memory(_)
            | BackendError::Codegen(_)),
        ) => panic!("compile: {e}\n{text}"),
    };
    for (threads, pool) in pools() {
        let out = compiled
            .executable
            .run(&inputs, pool)
            .unwrap_or_else(|e| panic!("run at {threads} thread(s): {e}\n{text}"));
        assert_eq!(out.len(), reference.len(), "output count\n{text}");
        for (i, ((r, o), n)) in reference.iter().zip(&out).zip(&noise).enumerate() {
            assert_eq!(r.shape(), o.shape(), "output {i}: shape\n{text}");
            if let Some(at) = mismatch(r, o, n, fragile[i]) {
                panic!(
                    "output {i} at {threads} thread(s) differs at element {at}: \
                     interpreter {}, compiled {}\n{text}\ncompiled graph:\n{}",
                    r.data()[at],
                    o.data()[at],
                    compiled.graph
                );
            }
        }
    }
});

/// Tasks sized for 2 threads, under the machine's available memory read
/// once (the models are far below it, so reading `/proc/meminfo` for each
/// execution would only cost time; a model refused for its size is a bug).
fn options() -> &'static Options {
    static OPTIONS: OnceLock<Options> = OnceLock::new();
    OPTIONS.get_or_init(|| Options {
        threads: 2,
        ..Options::default()
    })
}

/// Pools of 1 and 2 threads, made once: starting and joining a worker
/// thread for every execution cost more than many of the models' runs.
/// A run leaves a pool as it found it, a refused one included
/// (`tests/tests/concurrency.rs`).
fn pools() -> [(usize, &'static Pool); 2] {
    static POOLS: OnceLock<[Pool; 2]> = OnceLock::new();
    let [one, two] = POOLS.get_or_init(|| {
        [1, 2].map(|threads| Pool::new(threads).unwrap_or_else(|e| panic!("pool: {e}")))
    });
    [(1, one), (2, two)]
}

/// How far [`nudge`] moves each input, relative: about eight ulp.
const NUDGE: f32 = 1e-6;

/// `t` with each element scaled by `1 + NUDGE * u`, `u` in `[-1, 1]` from
/// a fixed sequence of its own for each input `which`: with one sequence
/// for all, `x0 - lrn(x1)` moved as a whole where it cancels (each
/// input's element scaled by the same factor) and hid its conditioning.
fn nudge(t: &Tensor, which: u64) -> Tensor {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ which.wrapping_mul(0xd1b5_4a32_d192_ed03);
    let data = t
        .data()
        .iter()
        .map(|&v| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            v * (1.0 + NUDGE * u)
        })
        .collect();
    Tensor::new(t.shape().to_vec(), data).unwrap_or_else(|_| t.clone())
}

/// The first element where `found` is not within tolerance of `reference`:
/// finite values within `TOLERANCE * max(1, max finite |reference|)` plus
/// 16 times how far the element moved on nudged inputs (`noise`), and
/// none where that moved it to or from a non-finite value; non-finite
/// ones (NaN, infinities) equal in kind otherwise.
///
/// The nudge is the element's condition: after a value that cancels to
/// near zero (`batch_norm` output, `x - celu(x)`) an op like `reciprocal`
/// turns the few ulp by which two correct evaluations differ (the
/// compiled code folds `batch_norm` into a scale and shift) into any
/// relative error. Such elements are not evidence of a bug; a wrong
/// kernel is wrong on well-conditioned elements too.
///
/// `fragile` (see [`fragile_outputs`]) relaxes the comparison where
/// rounding decides the result in ways no nudge of the inputs shows:
/// behind a cancellation nothing is compared (`1 / (x - tanh(x))` for
/// small `x` is all rounding: `x - tanh(x)` is a few ulp of `x`, so one
/// ulp of `tanh` moves it by a third), and behind a value that may have
/// been flushed to zero, values of different kinds (finite, infinite,
/// NaN) are not evidence (`log` of `-7e-38` is NaN, of `-0` `-inf`).
fn mismatch(reference: &Tensor, found: &Tensor, noise: &Tensor, fragile: Fragile) -> Option<usize> {
    if fragile == Fragile::Cancelled {
        return None;
    }
    let scale = reference
        .data()
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f32, |m, v| m.max(v.abs()));
    reference
        .data()
        .iter()
        .zip(found.data())
        .zip(noise.data())
        .position(|((&a, &b), &n)| {
            let kinds_may_differ = fragile == Fragile::Tiny && !(a.is_finite() && b.is_finite());
            if a.is_finite() != n.is_finite() || kinds_may_differ {
                false
            } else if a.is_nan() || b.is_nan() {
                a.is_nan() != b.is_nan()
            } else if a.is_infinite() || b.is_infinite() {
                a != b
            } else {
                (a - b).abs() > TOLERANCE * scale + 16.0 * (a - n).abs()
            }
        })
}

/// How an output's comparison is relaxed (see [`mismatch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fragile {
    No,
    /// Behind a value that may have been flushed to zero.
    Tiny,
    /// Behind a cancellation.
    Cancelled,
}

/// How close to 0, relative to its operands' largest magnitude, an `add`
/// or `sub` result must come to count as cancelled (or a norm's group
/// spread): a few thousand ulp.
const CANCELLED: f32 = 1e-5;

/// Input magnitudes (or non-finite values) from which a recurrent layer's
/// gates may saturate.
const SATURATING: f32 = 4.0;

/// Magnitudes that may come from a subnormal intermediate (which nnc's
/// threads flush to zero) scaled back up: `f32::MIN_POSITIVE` (1.2e-38)
/// times a factor up to about 2^27.
const TINY: f32 = 1e-30;

/// For each output of `graph`, the most fragile value it depends on in
/// the reference `values`: [`Fragile::Cancelled`] behind an `add` or `sub`
/// of two different values with an element within [`CANCELLED`] of its
/// operands' largest magnitude (0 included), or behind a layer, group or
/// instance norm of a group of values equal to within that (its `x -
/// mean` is all cancellation: `log(layer_norm(x))` of a row of
/// `sigmoid(0)`s is `-inf` in the interpreter, where the mean is exactly
/// the values, and NaN compiled, where the sigmoid's last ulp makes it
/// differ from them), or behind a recurrent layer with an input beyond
/// [`SATURATING`]; [`Fragile::Tiny`] behind a value with an element
/// below [`TINY`] in magnitude, which the compiled code may flush to zero
/// (`silu(-90)` is `-7e-38` in the interpreter, `-0` compiled).
fn fragile_outputs(graph: &Graph, values: &HashMap<NodeId, Tensor>) -> Vec<Fragile> {
    let magnitude = |t: &Tensor| {
        t.data()
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(v.abs()))
    };
    let fragility = |id: NodeId| {
        let node = graph.node(id);
        let cancelled = match &node.op {
            // `x - x` and `x + x` are exact in both.
            Op::Binary(BinaryOp::Add | BinaryOp::Sub) if node.inputs()[0] != node.inputs()[1] => {
                let operands = node.inputs().iter().map(|o| magnitude(&values[o]));
                let scale = operands.fold(0.0f32, f32::max);
                scale > 0.0
                    && values[&id]
                        .data()
                        .iter()
                        .any(|v| v.abs() <= CANCELLED * scale)
            }
            Op::LayerNorm(_) | Op::GroupNorm(_) | Op::InstanceNorm(_) => {
                let x = &values[&node.inputs()[0]];
                let scale = magnitude(x);
                x.data().chunks(norm_group(&node.op, x).max(1)).any(|run| {
                    let (lo, hi) = run
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        });
                    hi - lo <= CANCELLED * scale
                })
            }
            // Large inputs saturate the gates: the interpreter's f64 `1 - z`
            // is 0 or `e^-x` where the compiled f32 one is a multiple of
            // 2^-24 (a GRU's `h_n` on an input of `inf`: 0 against 2.4e-7,
            // and a `reciprocal` after it).
            Op::Rnn(_) | Op::Lstm(_) | Op::Gru(_) => values[&node.inputs()[0]]
                .data()
                .iter()
                .any(|v| !(v.abs() <= SATURATING)),
            _ => false,
        };
        if cancelled {
            Fragile::Cancelled
        } else if values[&id]
            .data()
            .iter()
            .any(|v| *v != 0.0 && v.abs() < TINY)
        {
            Fragile::Tiny
        } else {
            Fragile::No
        }
    };
    graph
        .outputs()
        .iter()
        .map(|&output| {
            let mut seen = HashSet::new();
            let mut stack = vec![output];
            let mut most = Fragile::No;
            while let Some(id) = stack.pop() {
                if !seen.insert(id) {
                    continue;
                }
                most = most.max(fragility(id));
                stack.extend(graph.node(id).inputs().iter().copied());
            }
            most
        })
        .collect()
}

/// The elements of each group a norm `op` normalises together in its
/// input `x`: consecutive runs of this length.
fn norm_group(op: &Op, x: &Tensor) -> usize {
    match op {
        Op::LayerNorm(a) => {
            let first = x.shape().len().saturating_sub(a.normalized_dims);
            x.shape()[first..].iter().product()
        }
        Op::GroupNorm(a) => {
            let samples = x.shape().first().copied().unwrap_or(1);
            x.len() / (samples * a.groups).max(1)
        }
        // Instance norm: each sample's channel.
        _ => x.shape().iter().skip(2).product(),
    }
}
