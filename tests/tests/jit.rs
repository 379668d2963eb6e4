//! The compiled backend against the reference interpreter.
//!
//! Every model in `models/`, every pass case and random models from the
//! passes' generator are compiled and run on seeded weights and inputs at
//! 1 and 2 threads; each output must agree with the interpreter's (on the
//! unoptimised graph) within `1e-4 * max(1, max |reference|)`. Also: wrong
//! inputs are errors, threads sharing one compiled model get identical
//! results, and NaN goes where the interpreter puts it through max pooling,
//! the clamps and the reductions.

use std::path::Path;

use nnc_compiler::backend::{compile, Compiled, Options};
use nnc_compiler::driver::compile_source;
use nnc_compiler::interp::run;
use nnc_compiler::ir::Graph;
use nnc_compiler::weights::seeded_weights;
use nnc_frontend::SourceFile;
use nnc_runtime::kernels::gemm::MicroKernel;
use nnc_runtime::{random_input, Pool, RunError, Tensor, WeightSet};
use nnc_tests::random_model::{layer, random_model};
use proptest::prelude::*;

const SEED: u64 = 11;

fn load_text(name: &str, text: &str) -> Graph {
    let source = SourceFile::new(name, text.to_string());
    compile_source(&source)
        .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)))
}

fn load(path: &Path) -> Graph {
    let text = std::fs::read_to_string(path).expect("readable model");
    load_text(&path.display().to_string(), &text)
}

fn inputs(graph: &Graph) -> Vec<Tensor> {
    graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| random_input(&graph.node(id).ty.shape, SEED + i as u64).expect("input"))
        .collect()
}

/// The largest error of `found` against `reference`, relative to
/// `max(1, max |reference|)`.
fn relative_error(reference: &Tensor, found: &Tensor) -> f32 {
    assert_eq!(reference.shape(), found.shape());
    let scale = reference.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = reference
        .data()
        .iter()
        .zip(found.data())
        .fold(0.0f32, |m, (a, b)| {
            if a.is_nan() && b.is_nan() {
                m
            } else {
                m.max((a - b).abs())
                    .max(if b.is_nan() { f32::INFINITY } else { 0.0 })
            }
        });
    err / scale
}

/// Compiles `graph` and checks it against the interpreter at 1 and 2
/// threads; returns the compiled model.
fn check(graph: Graph, what: &str) -> Compiled {
    check_with(graph, what, None)
}

/// [`check`] with the native kernels of `micro_kernel` (`None`: the best
/// this CPU has).
fn check_with(graph: Graph, what: &str, micro_kernel: Option<MicroKernel>) -> Compiled {
    let weights = seeded_weights(&graph, SEED).expect("seeded weights");
    let x = inputs(&graph);
    let reference =
        run(&graph, &weights, &x).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let options = Options {
        threads: 2,
        micro_kernel,
        ..Options::default()
    };
    let compiled =
        compile(graph, weights, &options).unwrap_or_else(|e| panic!("{what}: compile: {e}"));
    for threads in [1, 2] {
        let pool = Pool::new(threads).expect("pool");
        let out = compiled
            .executable
            .run(&x, &pool)
            .unwrap_or_else(|e| panic!("{what}: run: {e}"));
        assert_eq!(out.len(), reference.len(), "{what}: output count");
        for (i, (r, o)) in reference.iter().zip(&out).enumerate() {
            let err = relative_error(r, o);
            assert!(
                err <= 1e-4,
                "{what}: output {i} at {threads} thread(s) differs by {err:e} (relative)\n{}",
                compiled.graph
            );
        }
    }
    compiled
}

/// `graph`'s outputs for `x`, compiled for and run on one thread.
fn run_on_one_thread(graph: Graph, weights: WeightSet, x: Tensor) -> Vec<Tensor> {
    let options = Options {
        threads: 1,
        ..Options::default()
    };
    let compiled = compile(graph, weights, &options).expect("compile");
    compiled
        .executable
        .run(&[x], &Pool::new(1).expect("pool"))
        .expect("run")
}

#[test]
fn every_model_matches_the_interpreter() {
    let models = nnc_tests::models();
    assert!(models.len() >= 5, "{models:?}");
    for path in models {
        check(load(&path), &path.display().to_string());
    }
}

#[test]
fn every_pass_case_matches_the_interpreter() {
    let cases = nnc_tests::nn_files(&nnc_tests::repo_root().join("tests/cases/passes"));
    assert!(cases.len() >= 20, "{cases:?}");
    for path in cases {
        check(load(&path), &path.display().to_string());
    }
}

/// Edge shapes for every kernel: sizes not divisible by the vector width,
/// 1x1 maps, batch > 1, odd channel counts, dilation with stride, groups
/// with several channels each.
#[test]
fn edge_shape_cases_match_the_interpreter() {
    let cases = nnc_tests::nn_files(&nnc_tests::repo_root().join("tests/cases/jit"));
    assert!(cases.len() >= 5, "{cases:?}");
    for path in cases {
        check(load(&path), &path.display().to_string());
    }
}

/// The pass cases and edge shapes with every other instruction set this
/// CPU has: the AVX2 and portable native kernels, and the JIT's own
/// depthwise and pooling rows, which the kernels use without AVX-512 or
/// AVX2.
#[test]
fn every_micro_kernel_matches_the_interpreter() {
    let root = nnc_tests::repo_root();
    let mut cases = nnc_tests::nn_files(&root.join("tests/cases/passes"));
    cases.extend(nnc_tests::nn_files(&root.join("tests/cases/jit")));
    let others: Vec<MicroKernel> = MicroKernel::ALL
        .into_iter()
        .filter(|k| k.is_available() && *k != MicroKernel::detect())
        .collect();
    for kernel in others {
        for path in &cases {
            let what = format!("{} ({kernel:?})", path.display());
            check_with(load(path), &what, Some(kernel));
        }
    }
}

#[test]
fn a_wrong_input_is_an_error_not_a_crash() {
    let compiled = check(
        load(&nnc_tests::repo_root().join("models/lenet5.nn")),
        "lenet5",
    );
    let pool = Pool::new(1).expect("pool");
    let exe = &compiled.executable;
    let wrong = Tensor::zeros(vec![1, 1, 28, 28]).expect("tensor");
    assert_eq!(
        exe.run(&[wrong], &pool).unwrap_err(),
        RunError::InputShape {
            name: "x".into(),
            expected: vec![1, 1, 32, 32],
            found: vec![1, 1, 28, 28],
        }
    );
    assert_eq!(
        exe.run(&[], &pool).unwrap_err(),
        RunError::InputCount {
            expected: 1,
            found: 0
        }
    );
    let err = exe.run(&[], &pool).unwrap_err().to_string();
    assert_eq!(err, "the model takes 1 input, found 0");
}

#[test]
fn threads_sharing_a_compiled_model_get_identical_results() {
    let graph = load(&nnc_tests::repo_root().join("models/vgg_cifar.nn"));
    let x = inputs(&graph);
    let compiled = check(graph, "vgg_cifar");
    let exe = &compiled.executable;
    let alone = exe.run(&x, &Pool::new(1).expect("pool")).expect("run");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let x = &x;
                s.spawn(move || {
                    let pool = Pool::new(1 + i % 2).expect("pool");
                    (0..3)
                        .map(|_| exe.run(x, &pool).expect("run"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for out in h.join().expect("thread") {
                assert_eq!(out, alone, "a concurrent run differs");
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The passes' random models, compiled, agree with the interpreter.
    #[test]
    fn random_models_match_the_interpreter(
        c in 1usize..5,
        h in 3usize..10,
        layers in prop::collection::vec(layer(), 1..10),
    ) {
        let text = random_model(c, h, &layers);
        check(load_text("random.nn", &text), &text);
    }
}

/// The algorithm `nnc compile` reports for layer `name` (empty if none).
fn algorithm_of(compiled: &Compiled, name: &str) -> String {
    compiled
        .report
        .layers
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.algorithm.clone())
        .unwrap_or_default()
}

/// `linear` over several rows is one product per block of output features
/// with the rows as columns (transposed in and out); over one row, or with
/// a residual fused in, a matrix-vector product per row. All agree with
/// the interpreter: with and without bias, a fused activation, more blocks
/// than threads, and row counts below and above the GEMM's narrow width.
#[test]
fn linear_over_many_rows_matches_the_interpreter() {
    let text = "model rows {\n    input x: f32[5, 3, 40]\n    input y: f32[2, 33]\n    \
        a = linear(x, out=70)\n    r = relu(a)\n    b = linear(x, out=9, bias=false)\n    \
        c = linear(y, out=1500)\n    t = tanh(c)\n    \
        d = linear(x, out=40)\n    e = add(d, x)\n    output r, b, t, e\n}\n";
    let compiled = check(load_text("rows.nn", text), text);
    let algorithm = |name: &str| algorithm_of(&compiled, name);
    assert_eq!(algorithm("a"), "gemm over the rows");
    assert_eq!(algorithm("c"), "gemm over the rows");
    assert_eq!(
        algorithm("d"),
        "gemv per row",
        "a fused residual keeps the per-row path"
    );
}

/// A `linear` with 16 MiB of weights or more, over single rows, reads its
/// weight in place (the compiled model keeps it instead of a packed copy),
/// with and without a fused residual over two rows, and agrees with the
/// interpreter; a smaller one is packed as before.
#[test]
fn large_linear_weights_are_read_in_place() {
    let text = "model big {\n    input x: f32[2, 2048]\n    input z: f32[1, 4096]\n    \
        d = linear(x, out=2048)\n    e = add(d, x)\n    \
        f = linear(z, out=1024)\n    g = relu(f)\n    h = linear(g, out=10)\n    \
        output e, h\n}\n";
    let compiled = check(load_text("big.nn", text), text);
    let algorithm = |name: &str| algorithm_of(&compiled, name);
    assert_eq!(algorithm("d"), "gemv per row, in place");
    assert_eq!(algorithm("f"), "gemv per row, in place");
    assert_eq!(algorithm("h"), "gemv per row");
    assert_eq!(
        compiled.report.kept_weight_bytes,
        4 * (2048 * 2048 + 4096 * 1024),
        "the two large weights, and nothing else, are kept"
    );
}

/// An `avg_pool2d` whose window is the whole unpadded map runs as a
/// global average pool (the reductions' kernel): square and oblong maps,
/// with a stride and in ceil mode (still one output), against the
/// interpreter's windows.
#[test]
fn whole_map_average_pools_match_the_interpreter() {
    let text = "model whole {\n    input x: f32[2, 5, 7, 7]\n    input y: f32[1, 4, 3, 5]\n    \
        a = avg_pool2d(x, kernel=[7, 7])\n    \
        b = avg_pool2d(y, kernel=[3, 5], stride=[2, 2], ceil_mode=true)\n    \
        output a, b\n}\n";
    check(load_text("whole.nn", text), text);
}

/// A `max_pool2d` and an `avg_pool2d` of random geometry: every stride
/// (the native rows have a path each for 1, 2 and more), dilations, pads
/// differing per side, ceil mode, and maps from one column to several
/// 16-lane chunks with a partial last one.
fn random_pools() -> impl Strategy<Value = String> {
    (
        (1usize..3, 1usize..4, 1usize..14, 1usize..40),
        ([1usize..5, 1..5], [1usize..4, 1..4], [1usize..3, 1..3]),
        ([0usize..3, 0..3, 0..3, 0..3], any::<bool>(), any::<bool>()),
    )
        .prop_map(|((n, c, h, w), (k, s, d), (p, ceil, include_pad))| {
            // PyTorch's rule: at most half the window on each side.
            let pad = [p[0].min(k[0] / 2), p[1].min(k[1] / 2), p[2].min(k[0] / 2), p[3].min(k[1] / 2)];
            let [kh, kw] = k;
            let [sh, sw] = s;
            let [dh, dw] = d;
            let [pt, pl, pb, pr] = pad;
            format!(
                "model pools {{\n    input x: f32[{n}, {c}, {h}, {w}]\n    \
                 m = max_pool2d(x, kernel=[{kh}, {kw}], stride=[{sh}, {sw}], pad=[{pt}, {pl}, {pb}, {pr}], dilation=[{dh}, {dw}], ceil_mode={ceil})\n    \
                 a = avg_pool2d(x, kernel=[{kh}, {kw}], stride=[{sh}, {sw}], pad=[{pt}, {pl}, {pb}, {pr}], ceil_mode={ceil}, count_include_pad={include_pad})\n    \
                 output m, a\n}}\n"
            )
        })
}

/// A `permute` of a random shape by a random permutation, followed by a
/// relu so that the permute is not the model's output.
fn random_permutes() -> impl Strategy<Value = String> {
    prop::collection::vec(1usize..6, 1..6)
        .prop_flat_map(|shape| {
            let rank = shape.len();
            (
                Just(shape),
                Just((0..rank).collect::<Vec<_>>()).prop_shuffle(),
            )
        })
        .prop_map(|(shape, dims)| {
            let list = |v: &[usize]| {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "model permutes {{\n    input x: f32[{}]\n    p = permute(x, dims=[{}])\n    \
                 r = relu(p)\n    output r\n}}\n",
                list(&shape),
                list(&dims)
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Compiled permutes (dims merged, rows copied by vectors or gathered)
    /// agree with the interpreter.
    #[test]
    fn random_permutes_match_the_interpreter(text in random_permutes()) {
        check(load_text("permutes.nn", &text), &text);
    }

    /// Compiled pools of random geometry agree with the interpreter.
    #[test]
    fn random_pools_match_the_interpreter(text in random_pools()) {
        let source = SourceFile::new("pools.nn", text.clone());
        // Windows larger than the padded input have no output: skipped.
        let graph = compile_source(&source);
        prop_assume!(graph.is_ok());
        if let Ok(graph) = graph {
            check(graph, &text);
        }
    }
}

/// The compiled `tanh` (a rational approximation) stays within a few ulp
/// of the interpreter's `f32::tanh`, and `sigmoid` (computed through it as
/// `(1 + tanh(x/2)) / 2`) within a few ulp of 0.5 absolute, over a range
/// from the tiny to the saturated, NaN included.
#[test]
fn compiled_tanh_and_sigmoid_are_accurate() {
    let graph = load_text(
        "act.nn",
        "model act {\n    input x: f32[1, 4003]\n    t = tanh(x)\n    s = sigmoid(x)\n    output t, s\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let mut values: Vec<f32> = (0..4000)
        .map(|i| -20.0 + 40.0 * i as f32 / 3999.0)
        .collect();
    values.extend([1e-7, -3e-5, f32::NAN]);
    let x = Tensor::new(vec![1, 4003], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    for (name, r, o) in [
        ("tanh", &reference[0], &out[0]),
        ("sigmoid", &reference[1], &out[1]),
    ] {
        for (i, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
            if a.is_nan() {
                assert!(b.is_nan(), "{name}: NaN in, {b} out");
                continue;
            }
            let tol = if name == "tanh" {
                // A few ulp of the result (of 0.25 on the grid near 0, where
                // the grid's values are not tiny).
                4.0 * f32::EPSILON * a.abs().max(if i >= 4000 { 0.0 } else { 0.25 })
            } else {
                4.0 * f32::EPSILON * 0.5
            };
            assert!(
                (a - b).abs() <= tol.max(f32::MIN_POSITIVE),
                "{name} at input {i}: {b} against {a}"
            );
        }
    }
}

/// NaNs go where the interpreter puts them: max pooling keeps a NaN in a
/// window (the compiled max is a `maxps` plus a NaN blend, not IEEE
/// `fmax`), and relu and relu6 (compare-and-select, one instruction each)
/// pass NaN through and clamp everything else exactly.
#[test]
fn compiled_max_pool_and_clamps_treat_nan_like_the_interpreter() {
    let graph = load_text(
        "nan.nn",
        "model nan {\n    input x: f32[1, 2, 9, 11]\n    p = max_pool2d(x, kernel=3, stride=2, pad=1)\n    r = relu(x)\n    r6 = relu6(x)\n    output p, r, r6\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let mut values: Vec<f32> = (0..198).map(|i| (i as f32 * 0.37).sin() * 8.0).collect();
    for i in [0, 13, 57, 100, 120, 197] {
        values[i] = f32::NAN;
    }
    let x = Tensor::new(vec![1, 2, 9, 11], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    let mut nans = 0;
    for (r, o) in reference.iter().zip(&out) {
        for (i, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
            if a.is_nan() {
                nans += 1;
                assert!(b.is_nan(), "output {i}: NaN expected, {b} found");
            } else {
                assert_eq!(a, b, "output {i}");
            }
        }
    }
    // Each NaN reaches the pooled outputs of its windows as well as the
    // relu and relu6 outputs at its own position.
    assert!(nans > 2 * 6, "only {nans} NaN outputs");
}

/// Asserts that `out` has a NaN exactly where `reference` does and is
/// within `1e-5` (relative to `max(1, |reference|)`) elsewhere; returns the
/// counts of NaN and of other outputs.
fn compare_keeping_nan(reference: &[Tensor], out: &[Tensor]) -> (usize, usize) {
    let (mut nans, mut finite) = (0, 0);
    for (r, o) in reference.iter().zip(out) {
        for (i, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
            if a.is_nan() {
                nans += 1;
                assert!(b.is_nan(), "output {i}: NaN expected, {b} found");
            } else {
                finite += 1;
                assert!(
                    a == b || (a.is_finite() && (a - b).abs() <= 1e-5 * a.abs().max(1.0)),
                    "output {i}: {b} against {a}"
                );
            }
        }
    }
    (nans, finite)
}

/// A NaN reaching a relu or relu6 fused into a convolution's GEMM epilogue
/// stays NaN, as in the interpreter (the native epilogue's `maxps` once
/// turned it into the bound).
#[test]
fn fused_relu_and_clamp_epilogues_keep_nan() {
    let graph = load_text(
        "nan_epilogue.nn",
        "model nan_epilogue {\n    input x: f32[1, 8, 6, 6]\n    \
         c = conv2d(x, out=16, kernel=1)\n    r = relu(c)\n    \
         d = conv2d(x, out=16, kernel=1)\n    r6 = relu6(d)\n    \
         e = conv2d(x, out=16, kernel=3, pad=1)\n    h = clip(e, min=0.5, max=0.5)\n    \
         output r, r6, h\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let mut values: Vec<f32> = (0..288).map(|i| (i as f32 * 0.29).cos()).collect();
    for i in [0, 41, 77, 200] {
        values[i] = f32::NAN;
    }
    let x = Tensor::new(vec![1, 8, 6, 6], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    let (nans, _) = compare_keeping_nan(&reference, &out);
    assert!(nans >= 3 * 16 * 4, "only {nans} NaN outputs");
}

/// A NaN or an infinity in one channel reaches only the compiled
/// `local_response_norm` outputs whose windows hold it, as in the
/// interpreter (a running window sum once carried it into every later
/// channel), at the edges of the channel range and inside it.
#[test]
fn compiled_local_response_norm_keeps_nan_and_inf_in_their_windows() {
    let graph = load_text(
        "lrn.nn",
        "model lrn {\n    input x: f32[1, 9, 3, 5]\n    \
         a = local_response_norm(x, size=3)\n    \
         b = local_response_norm(x, size=1)\n    \
         c = local_response_norm(x, size=4, alpha=0.5, beta=0.6, k=2.0)\n    \
         output a, b, c\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let mut values: Vec<f32> = (0..135).map(|i| (i as f32 * 0.61).sin() * 3.0).collect();
    // Channel 0 (an edge), channel 4 (inside) and channel 8 (the other edge).
    values[2] = f32::NAN;
    values[4 * 15 + 7] = f32::INFINITY;
    values[8 * 15 + 1] = f32::NAN;
    let x = Tensor::new(vec![1, 9, 3, 5], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    let (_, finite) = compare_keeping_nan(&reference, &out);
    // Most outputs see no NaN or infinity in their window.
    assert!(finite > 3 * 100, "only {finite} finite outputs");
}

/// The compiled `local_response_norm` raises `k + alpha/size * s` to
/// `beta` as the interpreter's `powf` does where `exp(beta * log(...))`
/// would be NaN or clamped: a negative base with an integer `beta` keeps
/// its sign (odd) or loses it (even), with any other `beta` it is NaN;
/// `0^0` is 1; `0^beta` and `inf^beta` are 0 or infinity; an infinite
/// `beta` (`1e300` as f32) sends the power to 0, 1 or infinity. Model `a`
/// is the `graph_diff` finding (`beta=-1.0, k=-1.0` gave NaN). Checked at
/// a vector-only plane (8 positions) and one with a scalar tail (15), with
/// one position zero in every channel and one infinity.
#[test]
fn compiled_local_response_norm_raises_to_beta_like_powf() {
    for (h, w) in [(4, 2), (5, 3)] {
        let graph = load_text(
            "lrn_pow.nn",
            &format!(
                "model lrn_pow {{\n    input x: f32[1, 3, {h}, {w}]\n    \
                 a = local_response_norm(x, size=2, before=0, alpha=-1.0, beta=-1.0, k=-1.0)\n    \
                 b = local_response_norm(x, size=2, beta=0.0, k=0.0)\n    \
                 c = local_response_norm(x, size=3, alpha=-1.0, beta=3.0, k=0.5)\n    \
                 d = local_response_norm(x, size=3, alpha=-2.0, beta=2.0, k=0.1)\n    \
                 e = local_response_norm(x, size=3, alpha=-2.0, beta=0.5, k=0.1)\n    \
                 f = local_response_norm(x, size=2, alpha=1.0, beta=2.0, k=0.0)\n    \
                 g = local_response_norm(x, size=2, alpha=-1.0, k=-1.0)\n    \
                 i = local_response_norm(x, size=2, alpha=-1.0, beta=1e300, k=1.0)\n    \
                 j = local_response_norm(x, size=2, alpha=1.0, beta=-1e300, k=0.5)\n    \
                 output a, b, c, d, e, f, g, i, j\n}}\n"
            ),
        );
        let weights = seeded_weights(&graph, SEED).expect("weights");
        let plane = h * w;
        let mut values: Vec<f32> = (0..3 * plane)
            .map(|i| (i as f32 * 0.61).sin() * 3.0)
            .collect();
        for ch in 0..3 {
            values[ch * plane + 1] = 0.0;
        }
        values[plane + plane - 1] = f32::INFINITY;
        let x = Tensor::new(vec![1, 3, h, w], values).expect("tensor");
        let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
        let out = run_on_one_thread(graph, weights, x);
        let (nans, finite) = compare_keeping_nan(&reference, &out);
        // Model `e` is NaN wherever its base is negative; the rest mostly
        // are not.
        assert!(
            nans > 0 && finite > 6 * 3 * plane,
            "{nans} NaN, {finite} not"
        );
    }
}

/// Signed zeros survive to a reciprocal as in the interpreter: `elu` with
/// `alpha=0` gives `-0` for a negative input and `elu` keeps `-0` (`expm1`),
/// so `1 / elu(elu(x, alpha=0))` is `-inf` there. Found by `graph_diff`:
/// `simplify` took the two `elu`s for a `relu` (`+0`, so `+inf`), and the
/// compiled `expm1` turned `-0` into `+0`.
#[test]
fn compiled_elu_keeps_negative_zero_for_a_reciprocal() {
    let graph = load_text(
        "elu_zero.nn",
        "model elu_zero {\n    input x: f32[2, 1, 1, 3]\n    \
         a = elu(x, alpha=0.0)\n    \
         b = elu(a, alpha=1)\n    \
         c = reciprocal(b)\n    \
         output c\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let x = Tensor::new(vec![2, 1, 1, 3], vec![-1.0, 0.5, -0.0, 0.0, -3.0, 2.0]).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    assert_eq!(reference[0].data()[0], f32::NEG_INFINITY);
    let out = run_on_one_thread(graph, weights, x);
    compare_keeping_nan(&reference, &out);
}

/// `sigmoid` and `silu` keep their relative accuracy in the negative
/// tail, standalone (the JIT's code): `(1 + tanh(x/2)) / 2` was exactly 0
/// from about -16 on, so `reciprocal(silu(-57))` was `-inf` where the
/// interpreter has `-1.3e23`. Found by `graph_diff` (as `log(silu(1/x))`).
#[test]
fn compiled_sigmoid_keeps_its_negative_tail() {
    let graph = load_text(
        "sigmoid_tail.nn",
        "model sigmoid_tail {\n    input x: f32[1, 1, 1, 12]\n    \
         s = sigmoid(x)\n    \
         q = silu(x)\n    \
         r = reciprocal(q)\n    \
         output s, r\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let values = vec![
        -0.5, -3.0, -9.0, -16.5, -20.0, -33.3, -57.27, -70.0, -80.0, -86.0, 0.0, 5.0,
    ];
    let x = Tensor::new(vec![1, 1, 1, 12], values.clone()).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    // By hand (Python, f64): 1 / (1 + exp(57.27)) = 1.3426253e-25.
    assert!((reference[0].data()[6] / 1.342_625_3e-25 - 1.0).abs() < 1e-6);
    let out = run_on_one_thread(graph, weights, x);
    for (i, (r, o)) in reference.iter().zip(&out).enumerate() {
        for (j, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
            assert!(
                a == b || (a - b).abs() <= 1e-5 * a.abs(),
                "output {i}, x = {}: {b} against {a}",
                values[j]
            );
        }
    }
}

/// `pow` by a constant at `powf`'s special values: `(-inf)^0.1` is +inf
/// (it was NaN through `ln`, so `pow(log(0), 0.1)` was NaN for inf; found
/// by `graph_diff`), `(-inf)^-0.3` is +0, and the square root's `(-0)^0.5`
/// is +0 and `(-inf)^0.5` +inf (`sqrt` gives -0 and NaN).
#[test]
fn compiled_pow_by_a_constant_follows_powf_at_the_edges() {
    for exponent in ["0.1", "0.5", "-0.3", "-0.5", "3.0", "-2.0"] {
        let graph = load_text(
            "pow_edges.nn",
            &format!(
                "model pow_edges {{\n    input x: f32[1, 1, 1, 8]\n    \
                 y = pow(x, exponent={exponent})\n    \
                 output y\n}}\n"
            ),
        );
        let weights = seeded_weights(&graph, SEED).expect("weights");
        let values = vec![
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            f32::INFINITY,
            2.0,
            -2.0,
            0.3,
            f32::NAN,
        ];
        let x = Tensor::new(vec![1, 1, 1, 8], values.clone()).expect("tensor");
        let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
        let out = run_on_one_thread(graph, weights, x);
        for ((v, a), b) in values.iter().zip(reference[0].data()).zip(out[0].data()) {
            let same = (a.is_nan() && b.is_nan())
                || (a == b && a.is_sign_negative() == b.is_sign_negative())
                || (a.is_finite() && *a != 0.0 && (a - b).abs() <= 1e-6 * a.abs());
            assert!(same, "pow({v}, {exponent}) = {b}, want {a}");
        }
    }
}

/// `clip(x, min=1e-5, max=6)` after an op is not `relu6`: `simplify`
/// compared the two on its probes within an absolute 1e-5 and made the
/// clip a `relu6`, so `sqrt` of it was 0 instead of 0.0032 for every
/// negative `x` (through `gelu`, 0 against 0.0016). Found by `graph_diff`.
#[test]
fn a_clip_just_above_zero_is_not_relu6() {
    let graph = load_text(
        "clip_small.nn",
        "model clip_small {\n    input x: f32[1, 1, 1, 4]\n    \
         a = minimum(x, x)\n    \
         b = clip(a, min=1e-5, max=6.0)\n    \
         c = sqrt(b)\n    \
         output c\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let x = Tensor::new(vec![1, 1, 1, 4], vec![-1.0, 0.0, 4.0, 5.0]).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let floor = 1e-5f32.sqrt();
    assert_eq!(reference[0].data(), [floor, floor, 2.0, 5f32.sqrt()]);
    let compiled = compile(graph, weights, &Options::default()).expect("compile");
    assert!(
        !compiled.graph.to_string().contains("relu6"),
        "{}",
        compiled.graph
    );
    let out = compiled
        .executable
        .run(std::slice::from_ref(&x), &Pool::new(1).expect("pool"))
        .expect("run");
    compare_keeping_nan(&reference, &out);
}

/// Every activation at the edges of `f32` (infinities, NaN, ±1e30, where
/// `exp` overflows or underflows, tiny values) as the interpreter computes
/// it: standalone (the JIT's code) and fused into a 1x1 conv's GEMM
/// epilogue (the native code: 16 columns as vectors, 4 as the narrow
/// tail). The vector `tanh` was `2 sigmoid(2x) - 1`, whose 1e-7 residue
/// near 0 made `mish(-1e30)` 6e22; `gelu(-1e30)` scaled the residue of a
/// clamped `erf`; `silu(-inf)` gave `-inf` for NaN.
#[test]
fn activations_at_the_edges_match_the_interpreter() {
    let edges = [
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        -1e30,
        1e30,
        -100.0,
        100.0,
        -88.5,
        88.5,
        -20.0,
        20.0,
        -1e-30,
        0.0,
        -0.0,
        1e-5,
        3.0,
        -3.0,
        0.5,
        -7.95,
        7.95,
    ];
    let acts = [
        "relu(c)",
        "relu6(c)",
        "leaky_relu(c, negative_slope=0.1)",
        "sigmoid(c)",
        "tanh(c)",
        "clip(c, min=-1.0, max=6.0)",
        "elu(c, alpha=1.3)",
        "selu(c)",
        "celu(c, alpha=0.7)",
        "celu(c, alpha=-0.5)",
        "softplus(c)",
        "softsign(c)",
        "hardsigmoid(c, alpha=0.2, beta=0.5)",
        "hardswish(c)",
        "silu(c)",
        "mish(c)",
        "gelu(c)",
        "gelu(c, approximate=\"tanh\")",
    ];
    for act in acts {
        let standalone = act.replace("(c", "(x");
        let text = format!(
            "model edges {{\n    input x: f32[1, 1, 1, 20]\n    \
             c = conv2d(x, out=1, kernel=1, bias=false)\n    \
             fused = {act}\n    \
             alone = {standalone}\n    \
             output fused, alone\n}}\n"
        );
        let graph = load_text("edges.nn", &text);
        let weights = seeded_weights(&graph, SEED).expect("weights");
        let x = Tensor::new(vec![1, 1, 1, 20], edges.to_vec()).expect("tensor");
        let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
        let compiled = compile(graph, weights, &Options::default()).expect("compile");
        assert!(
            compiled.graph.to_string().contains(&format!(
                "epilogue={}",
                act.split('(').next().unwrap_or(act)
            )),
            "{act} is not fused into the conv:\n{}",
            compiled.graph
        );
        let pool = Pool::new(1).expect("pool");
        let out = compiled
            .executable
            .run(std::slice::from_ref(&x), &pool)
            .expect("run");
        for (i, (r, o)) in reference.iter().zip(&out).enumerate() {
            for (j, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
                let same = (a.is_nan() && b.is_nan())
                    || a == b
                    || (a.is_finite() && (a - b).abs() <= 1e-5 * a.abs().max(1.0));
                assert!(same, "{act}, output {i}, element {j}: {b} against {a}");
            }
        }
    }
}

/// A norm of values whose squares overflow f32 (beyond about 1.8e19 from
/// the mean) normalises them as the interpreter does (it sums in f64):
/// the compiled sum of squares was infinite, every output 0. Found by
/// `graph_diff` (`local_response_norm` with `k=0, beta=6` before a
/// `group_norm`). Rows of ordinary values beside them keep the usual path.
#[test]
fn compiled_norms_of_huge_values_match_the_interpreter() {
    let graph = load_text(
        "norm_huge.nn",
        "model norm_huge {\n    input x: f32[2, 4, 2, 2]\n    \
         g = group_norm(x, groups=2, affine=false)\n    \
         l = layer_norm(x, affine=false)\n    \
         i = instance_norm(x)\n    \
         output g, l, i\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let mut values: Vec<f32> = (0..32).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
    for (i, v) in values.iter_mut().take(16).enumerate() {
        *v = ((i * 5 % 7) as f32 - 3.0) * 4e20;
    }
    let x = Tensor::new(vec![2, 4, 2, 2], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    for (r, o) in reference.iter().zip(&out) {
        for (i, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "element {i}: {b} against {a}"
            );
        }
    }
}

/// `local_response_norm` of channels beyond about 1.8e19, whose f32 sum
/// of squares overflows: computed in f64 like the interpreter's (it was
/// `x / inf^beta = 0`: 0 for 245 after an LRN with `alpha=-1, beta=6,
/// k=0` made values near 1e20). Found by `graph_diff`. The vector lanes
/// and the scalar tail, `beta` 0.75 (the square-root path) and 0.5, and
/// columns of ordinary values beside them.
#[test]
fn compiled_local_response_norm_of_huge_values_matches_the_interpreter() {
    for beta in ["0.75", "0.5"] {
        let graph = load_text(
            "lrn_huge.nn",
            &format!(
                "model lrn_huge {{\n    input x: f32[1, 4, 2, 3]\n    \
                 y = local_response_norm(x, size=3, beta={beta}, k=0.5)\n    \
                 output y\n}}\n"
            ),
        );
        let weights = seeded_weights(&graph, SEED).expect("weights");
        let mut values: Vec<f32> = (0..24).map(|i| (i % 7) as f32 * 0.3 - 0.9).collect();
        for i in [1, 4, 5, 13, 23] {
            values[i] = if i % 2 == 0 { 4e20 } else { -3e21 };
        }
        let x = Tensor::new(vec![1, 4, 2, 3], values).expect("tensor");
        let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
        let out = run_on_one_thread(graph, weights, x);
        for (i, (a, b)) in reference[0].data().iter().zip(out[0].data()).enumerate() {
            assert!(
                a.is_finite() && (a == b || (a - b).abs() <= 1e-5 * a.abs()),
                "beta {beta}, element {i}: {b} against {a}"
            );
        }
    }
}

/// `expm1` near 0 to a few ulp: `x - celu(x, alpha=6)` is about `-x^2/12`
/// for small `x`, all cancellation, and the compiled `exp(x) - 1` (5e-5
/// off at 0.002) made its reciprocal 0.5% wrong. Found by `graph_diff`.
#[test]
fn compiled_expm1_is_accurate_near_zero() {
    let graph = load_text(
        "expm1_small.nn",
        "model expm1_small {\n    input x: f32[1, 1, 1, 8]\n    \
         c = celu(x, alpha=6.0)\n    \
         d = sub(x, c)\n    \
         y = reciprocal(d)\n    \
         output y\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let values = vec![-0.012, -0.05, -0.3, -1.0, -2.9, -0.6, -0.0041, -0.17];
    let x = Tensor::new(vec![1, 1, 1, 8], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    for (i, (a, b)) in reference[0].data().iter().zip(out[0].data()).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs(),
            "element {i}: {b} against {a}"
        );
    }
}

/// The compiled `erf` is exactly `±1` where f32's rounds to it (from
/// about 3.92): `1 - 6e-8` from the rational approximation made
/// `1 / log(erf(x))` `-6e6` where the interpreter has `inf`. Found by
/// `graph_diff`.
#[test]
fn compiled_erf_saturates_exactly() {
    let graph = load_text(
        "erf_one.nn",
        "model erf_one {\n    input x: f32[1, 1, 1, 6]\n    \
         e = erf(x)\n    \
         l = log(e)\n    \
         y = reciprocal(l)\n    \
         output e, y\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let x = Tensor::new(vec![1, 1, 1, 6], vec![3.95, 4.0, 4.5, 7.0, 100.0, -5.0]).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    assert_eq!(&reference[0].data()[..5], &[1.0; 5]);
    let out = run_on_one_thread(graph, weights, x);
    assert_eq!(out[0].data(), reference[0].data());
    assert_eq!(&out[1].data()[..5], &reference[1].data()[..5]);
}

/// GELU (exact) in its negative tail to a few ulp of its conditioning,
/// standalone and fused into a conv: `1 + erf(u)` cancelled below
/// `u = -2.5` and was 0 below -4, so `1 / gelu(x)` was `-inf` where the
/// interpreter had `-1.4e7`. Found by `graph_diff`. The interpreter's own
/// values are checked against `0.5 x erfc(-x / sqrt 2)` from Python's
/// `math.erfc`.
#[test]
fn compiled_gelu_is_accurate_in_its_negative_tail() {
    let hand = [
        (-3.0, -0.004_049_694_094_890_287_f64),
        (-5.0, -1.433_257_859_395_973_1e-6),
        (-8.0, -4.976_768_459_417_455_5e-15),
        (-10.0, -7.619_853_024_160_593e-23),
        (-13.0, -7.952_313_719_414_897e-38),
    ];
    let one = load_text(
        "gelu_one.nn",
        "model gelu_one {\n    input x: f32[5]\n    y = gelu(x)\n    output y\n}\n",
    );
    let x = Tensor::new(vec![5], hand.iter().map(|&(v, _)| v).collect()).expect("tensor");
    let no_weights = seeded_weights(&one, SEED).expect("weights");
    let values = run(&one, &no_weights, &[x]).expect("interpreter");
    for (&(v, want), &got) in hand.iter().zip(values[0].data()) {
        let got = f64::from(got);
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "interpreter gelu({v}) = {got}, want {want}"
        );
    }

    let graph = load_text(
        "gelu_tail.nn",
        "model gelu_tail {\n    input x: f32[1, 1, 1, 64]\n    \
         input z: f32[1, 1, 1, 64]\n    \
         c = conv2d(z, out=1, kernel=1, bias=false)\n    \
         fused = gelu(c)\n    \
         alone = gelu(x)\n    \
         r = reciprocal(alone)\n    \
         output fused, alone, r\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let w = weights.get("c.weight").expect("c.weight").data()[0];
    // `z = x / w`, so that the conv's output runs over about the same
    // values as `x`: -20 to 3.
    let xs: Vec<f32> = (0..64).map(|i| -20.0 + i as f32 * 0.37).collect();
    let zs: Vec<f32> = xs.iter().map(|&x| x / w).collect();
    let inputs = [
        Tensor::new(vec![1, 1, 1, 64], xs.clone()).expect("tensor"),
        Tensor::new(vec![1, 1, 1, 64], zs).expect("tensor"),
    ];
    let reference = run(&graph, &weights, &inputs).expect("interpreter");
    let options = Options {
        threads: 1,
        ..Options::default()
    };
    let compiled = compile(graph, weights, &options).expect("compile");
    assert!(compiled.graph.to_string().contains("epilogue=gelu"));
    let out = compiled
        .executable
        .run(&inputs, &Pool::new(1).expect("pool"))
        .expect("run");
    for (i, (r, o)) in reference.iter().zip(&out).enumerate() {
        for (j, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
            // The tail's relative condition number is about `x^2`: an input
            // rounded by half an ulp moves the output by `x^2` half-ulps.
            let x = f64::from(xs[j]);
            let tolerance = 4e-6 * (x * x).max(1.0) * f64::from(a.abs());
            // nnc's threads flush subnormal results to (signed) zero.
            let floor = f64::from(f32::MIN_POSITIVE);
            let same = a == b
                || (f64::from(*a) - f64::from(*b)).abs() <= tolerance.max(floor)
                    && a.is_sign_negative() == b.is_sign_negative();
            assert!(same, "output {i}, element {j} (x = {x}): {b} against {a}");
        }
    }
}

/// A classic `dropout` of a rank-0 value scales it by a scalar weight:
/// `simplify` made its `1 - p` a `[1]` tensor, so the `mul` it became
/// broadcast to `[1]` against the node's `[]` and the verifier refused
/// the graph. Found by `graph_diff`.
#[test]
fn compiled_classic_dropout_of_a_scalar_is_a_scalar() {
    let graph = load_text(
        "dropout_scalar.nn",
        "model dropout_scalar {\n    input x: f32[3, 5, 5]\n    \
         m = mean(x, keepdim=false)\n    \
         y = dropout(m, p=0.25, mode=\"classic\")\n    \
         output y\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let x = random_input(&[3, 5, 5], SEED).expect("input");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    assert_eq!(out[0].shape(), reference[0].shape());
    compare_keeping_nan(&reference, &out);
}

/// `pad` of a rank-0 value (no pads) copies it: the kernel took the last
/// dim of a shape that has none and overflowed while compiling. Found by
/// `graph_diff`.
#[test]
fn compiled_pad_of_a_scalar_is_the_scalar() {
    let graph = load_text(
        "pad_scalar.nn",
        "model pad_scalar {\n    input x: f32[4]\n    \
         s = select(x, dim=-1, index=2)\n    \
         y = pad(s, pads=[], mode=\"constant\", value=0.5)\n    \
         output y\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let x = Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    assert_eq!(reference[0].data(), &[3.0]);
    let out = run_on_one_thread(graph, weights, x);
    assert_eq!(out[0].data(), &[3.0]);
}

/// `exp` up to the largest finite result: between 88 and ln(f32::MAX) it
/// gave e^88 (its argument was clamped at 88 so that 2^n stayed a normal
/// float); now 2^n is two factors. Found by `graph_diff` (`exp(exp(x))`).
#[test]
fn compiled_exp_reaches_the_largest_float() {
    let graph = load_text(
        "exp_top.nn",
        "model exp_top {\n    input x: f32[1, 1, 1, 12]\n    \
         y = exp(x)\n    \
         output y\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let values = vec![
        88.0, 88.03, 88.5, 88.7, 88.722, 88.73, 100.0, -87.2, -100.0, 0.0, 1.0, -1.0,
    ];
    let x = Tensor::new(vec![1, 1, 1, 12], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    assert!(reference[0].data()[4].is_finite() && reference[0].data()[4] > 3.3e38);
    let out = run_on_one_thread(graph, weights, x);
    compare_keeping_nan(&reference, &out);
    // Below -87 the result is 0, as the vector epilogues' (the true value
    // is under 1.6e-38; it was clamped to `exp(-87)`).
    assert_eq!(&out[0].data()[7..9], [0.0, 0.0]);
}

/// A NaN reaching a `celu` fused into a GEMM's epilogue stays NaN, as in
/// the interpreter: the native epilogue's `max(x, 0) + min(neg, 0)` took
/// the zeros. Found by `graph_diff` (a NaN from `sqrt` of a negative input
/// through a strided 1x1 conv). Both the vector stores (16 columns) and
/// the narrow tail's scalar ones (3) are covered.
#[test]
fn compiled_celu_epilogue_keeps_nan() {
    let graph = load_text(
        "celu_nan.nn",
        "model celu_nan {\n    input x: f32[1, 4, 8, 38]\n    \
         s = sqrt(x)\n    \
         c = conv2d(s, out=3, kernel=1, stride=2, bias=false)\n    \
         v = celu(c, alpha=0.5)\n    \
         output v\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let x = random_input(&[1, 4, 8, 38], SEED).expect("input");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    let (nans, finite) = compare_keeping_nan(&reference, &out);
    assert!(
        nans > 0 && finite > 0,
        "{nans} NaN and {finite} other outputs"
    );
}

/// `celu` with a negative alpha takes `exp` of `x / alpha > 0`, which
/// overflows for `x` below `88.7 * alpha`: the result is `-inf`, as in the
/// interpreter, not the `-1.7e38` of an `exp` clamped at 88. Found by
/// `graph_diff` (after a reciprocal of a small input).
#[test]
fn compiled_celu_with_a_negative_alpha_overflows_to_minus_infinity() {
    let graph = load_text(
        "celu_overflow.nn",
        "model celu_overflow {\n    input x: f32[1, 1, 1, 4]\n    \
         v = celu(x, alpha=-1.0)\n    \
         output v\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let x = Tensor::new(vec![1, 1, 1, 4], vec![-100.0, -50.0, 2.0, -1e30]).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    assert_eq!(reference[0].data()[0], f32::NEG_INFINITY);
    assert_eq!(reference[0].data()[3], f32::NEG_INFINITY);
    let out = run_on_one_thread(graph, weights, x);
    compare_keeping_nan(&reference, &out);
}

/// A concat whose operands are all written in place into its buffer has no
/// kernel of its own; one that must copy (a model input, an operand used
/// twice, slices that are not contiguous) keeps its copy. Values are
/// checked against the interpreter as for every case.
#[test]
fn concats_of_operands_written_in_place_need_no_copy() {
    let path = nnc_tests::repo_root().join("tests/cases/jit/concat_in_place.nn");
    let compiled = check(load(&path), "concat_in_place");
    let kernels: Vec<&str> = compiled
        .report
        .layers
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    for gone in ["branches", "dense1", "dense2", "with_relu"] {
        assert!(!kernels.contains(&gone), "{gone} copies: {kernels:?}");
    }
    for kept in ["with_input", "twice", "batch"] {
        assert!(kernels.contains(&kept), "{kept} has no kernel: {kernels:?}");
    }
}

/// NaNs go where the interpreter puts them through the reductions, in both
/// kernel shapes (rows folded by vector accumulators then across lanes, and
/// blocks of columns) and in the vector body and scalar tails of each:
/// `amax` and `amin` keep a NaN and are exact otherwise, infinities
/// included; `sum` turns NaN wherever the interpreter's does.
#[test]
fn compiled_reductions_treat_nan_like_the_interpreter() {
    let graph = load_text(
        "nan.nn",
        "model nan {\n    input x: f32[2, 3, 5, 7]\n    a = amax(x, dims=[2, 3])\n    b = amin(x, dims=[3])\n    c = amax(x, dims=[1])\n    d = amin(x, dims=[0, 2])\n    e = global_max_pool(x)\n    f = sum(x, dims=[1])\n    output a, b, c, d, e, f\n}\n",
    );
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let mut values: Vec<f32> = (0..210).map(|i| (i as f32 * 0.61).sin() * 4.0).collect();
    for i in [3, 38, 70, 104, 139, 201] {
        values[i] = f32::NAN;
    }
    for i in [12, 150] {
        values[i] = f32::NEG_INFINITY;
    }
    values[88] = f32::INFINITY;
    let x = Tensor::new(vec![2, 3, 5, 7], values).expect("tensor");
    let reference = run(&graph, &weights, std::slice::from_ref(&x)).expect("interpreter");
    let out = run_on_one_thread(graph, weights, x);
    let mut nans = 0;
    for (k, (r, o)) in reference.iter().zip(&out).enumerate() {
        for (i, (a, b)) in r.data().iter().zip(o.data()).enumerate() {
            if a.is_nan() {
                nans += 1;
                assert!(b.is_nan(), "output {k}[{i}]: NaN expected, {b} found");
            } else if k == 5 {
                let close = a == b || (a - b).abs() <= 1e-5 * a.abs().max(1.0);
                assert!(close, "sum[{i}]: {b} against {a}");
            } else {
                assert_eq!(a, b, "output {k}[{i}]");
            }
        }
    }
    assert!(nans > 12, "only {nans} NaN outputs");
}

/// `pow(a, b)` of two tensors, compiled, at the points where C's `pow`
/// has special cases: negative bases with odd, even and fractional
/// exponents, zero bases, zero exponents (even of NaN).
#[test]
fn compiled_pow_of_two_tensors_follows_c() {
    let graph = load_text(
        "pow.nn",
        "model pow {\n    input a: f32[9]\n    input b: f32[9]\n    p = pow(a, b)\n    output p\n}\n",
    );
    let a = Tensor::new(vec![9], vec![-2., -2., 0., 0., 3., f32::NAN, -1.5, 2., 0.]).expect("a");
    let b = Tensor::new(vec![9], vec![3., 2., 2., -1., 0.5, 0., 0.5, -2., 0.]).expect("b");
    let want = [
        -8.,
        4.,
        0.,
        f32::INFINITY,
        3f32.sqrt(),
        1.,
        f32::NAN,
        0.25,
        1.,
    ];
    let weights = seeded_weights(&graph, SEED).expect("weights");
    let reference = run(&graph, &weights, &[a.clone(), b.clone()]).expect("interpreter");
    let compiled = compile(graph, weights, &Options::default()).expect("compile");
    let out = compiled
        .executable
        .run(&[a, b], &Pool::new(1).expect("pool"))
        .expect("run");
    for (name, got) in [("interpreter", &reference[0]), ("compiled", &out[0])] {
        for (i, (g, w)) in got.data().iter().zip(want).enumerate() {
            let ok =
                (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 * w.abs().max(1.0) || g == &w;
            assert!(ok, "{name}: pow element {i}: {g} against {w}");
        }
    }
}
