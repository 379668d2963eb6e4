//! One compiled model run from many threads at once: every caller gets
//! exactly its own result, and a run that fails leaves the pool usable.
//!
//! The model is small (a few hundred microseconds a run) but its
//! convolutions are large enough to be split across the pool, so the runs
//! exercise the pool's hand-over between steps, not only the caller's
//! thread. Expected outputs are computed first, one run at a time, and
//! checked against the reference interpreter; the concurrent runs must then
//! reproduce them bit for bit (the kernels split work the same way whoever
//! runs them).

use nnc_compiler::backend::{compile, Compiled, Options};
use nnc_compiler::driver::compile_source;
use nnc_compiler::interp;
use nnc_compiler::ir::Graph;
use nnc_compiler::weights::seeded_weights;
use nnc_frontend::SourceFile;
use nnc_runtime::{random_input, Pool, RunError, Tensor};

const MODEL: &str = "model shared {
    input x: f32[1, 8, 24, 24]
    a = conv2d(x, out=16, kernel=3, pad=1)
    b = relu(a)
    c = conv2d(b, out=16, kernel=3, pad=1)
    d = max_pool2d(c, kernel=2)
    e = global_avg_pool(d)
    f = flatten(e)
    y = linear(f, out=10)
    output y
}";

const THREADS: usize = 8;
const RUNS: usize = 1000;
/// Distinct inputs; thread `t`'s run `i` uses input `(7 * t + i) % INPUTS`,
/// so threads running at the same time have different inputs.
const INPUTS: usize = 64;

struct Fixture {
    compiled: Compiled,
    inputs: Vec<Tensor>,
    expected: Vec<Vec<u32>>,
}

fn fixture() -> Fixture {
    let source = SourceFile::new("shared.nn", MODEL.to_string());
    let graph: Graph = compile_source(&source)
        .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)));
    let weights = seeded_weights(&graph, 3).unwrap_or_else(|e| panic!("{e}"));
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let compiled =
        compile(graph.clone(), weights.clone(), &options).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        compiled
            .executable
            .steps()
            .iter()
            .any(|s| s.parallel && s.tasks > 1),
        "the model must have steps the pool splits"
    );
    let inputs: Vec<Tensor> = (0..INPUTS)
        .map(|i| random_input(&[1, 8, 24, 24], 100 + i as u64).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let alone = Pool::new(1).unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<Vec<u32>> = inputs
        .iter()
        .map(|x| {
            let got = compiled
                .executable
                .run(std::slice::from_ref(x), &alone)
                .unwrap_or_else(|e| panic!("{e}"));
            let want = interp::run(&graph, &weights, std::slice::from_ref(x))
                .unwrap_or_else(|e| panic!("{e}"));
            let scale = want[0].data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for (g, w) in got[0].data().iter().zip(want[0].data()) {
                assert!((g - w).abs() <= 1e-4 * scale, "{g} vs {w}");
            }
            bits(&got[0])
        })
        .collect();
    // The inputs give different outputs, so a run given another caller's
    // result would be caught.
    for (i, e) in expected.iter().enumerate() {
        assert!(
            !expected[..i].contains(e),
            "inputs {i} and another give one output"
        );
    }
    Fixture {
        compiled,
        inputs,
        expected,
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

/// Runs `RUNS` runs on each of `THREADS` threads, each taking its pool
/// from `pool_of(thread)`, and returns how many results were wrong.
fn wrong_results<'p>(f: &Fixture, pool_of: impl Fn(usize) -> &'p Pool + Sync) -> usize {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool_of = &pool_of;
                scope.spawn(move || {
                    let pool = pool_of(t);
                    let mut arena = f
                        .compiled
                        .executable
                        .arena()
                        .unwrap_or_else(|e| panic!("{e}"));
                    (0..RUNS)
                        .filter(|i| {
                            let k = (7 * t + i) % INPUTS;
                            let x = std::slice::from_ref(&f.inputs[k]);
                            // Half the runs reuse an arena, half allocate one.
                            let out = if i % 2 == 0 {
                                f.compiled.executable.run_in(&mut arena, x, pool)
                            } else {
                                f.compiled.executable.run(x, pool)
                            };
                            !matches!(out, Ok(y) if bits(&y[0]) == f.expected[k])
                        })
                        .count()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a caller panicked")))
            .sum()
    })
}

#[test]
fn eight_threads_sharing_one_model_and_one_pool_each_get_their_own_results() {
    let f = fixture();
    let pool = Pool::new(2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong_results(&f, |_| &pool), 0);
}

#[test]
fn eight_threads_with_their_own_pools_each_get_their_own_results() {
    let f = fixture();
    let pools: Vec<Pool> = (0..THREADS)
        .map(|t| Pool::new(1 + t % 2).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(wrong_results(&f, |t| &pools[t]), 0);
}

#[test]
fn a_refused_run_leaves_the_pool_and_the_arena_usable() {
    let f = fixture();
    let exe = &f.compiled.executable;
    let pool = Pool::new(2).unwrap_or_else(|e| panic!("{e}"));
    let mut arena = exe.arena().unwrap_or_else(|e| panic!("{e}"));
    let wrong_shape = random_input(&[1, 8, 24, 23], 0).unwrap_or_else(|e| panic!("{e}"));
    for k in 0..INPUTS {
        let refused = exe.run_in(&mut arena, std::slice::from_ref(&wrong_shape), &pool);
        assert!(
            matches!(refused, Err(RunError::InputShape { .. })),
            "{refused:?}"
        );
        assert!(matches!(
            exe.run(&[], &pool),
            Err(RunError::InputCount {
                expected: 1,
                found: 0
            })
        ));
        let y = exe
            .run_in(&mut arena, std::slice::from_ref(&f.inputs[k]), &pool)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bits(&y[0]), f.expected[k], "input {k}");
    }
}
