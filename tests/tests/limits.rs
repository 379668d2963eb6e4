//! Memory limits: a model that does not fit is refused with an error that
//! names what does not fit, before it is allocated; one that fits runs.
//!
//! Each case in `tests/cases/limits/` starts with a `# max-memory: SIZE`
//! line and must be refused at that limit, either by the graph check (every
//! value, the weights together) or by the backend (the arena); the error
//! is snapshotted.

use nnc_compiler::driver::compile_source_within;
use nnc_compiler::{backend, interp, weights};
use nnc_frontend::diagnostic::render_all;
use nnc_frontend::SourceFile;
use nnc_runtime::{random_input, MemoryLimit, Pool};

/// The limit a case's first line sets.
fn case_limit(text: &str, name: &str) -> MemoryLimit {
    let first = text.lines().next().unwrap_or_default();
    let size = first
        .strip_prefix("# max-memory:")
        .unwrap_or_else(|| panic!("{name}: the first line must be `# max-memory: SIZE`"));
    MemoryLimit::parse(size).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn models_over_the_limit_are_refused_with_the_reason() {
    insta::glob!("../cases/limits", "*.nn", |path| {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let limit = case_limit(&text, &file_name);
        let source = SourceFile::new(format!("limits/{file_name}"), text);
        let message = match compile_source_within(&source, limit) {
            Err(diagnostics) => render_all(&diagnostics, &source),
            Ok(graph) => {
                let w = weights::seeded_weights(&graph, 0)
                    .unwrap_or_else(|e| panic!("{file_name}: {e}"));
                let options = backend::Options {
                    threads: 1,
                    max_memory: limit,
                    ..Default::default()
                };
                match backend::compile(graph, w, &options) {
                    Ok(_) => panic!(
                        "{file_name}: compiled, but every case in cases/limits must be refused"
                    ),
                    Err(e) => format!("error: {e}"),
                }
            }
        };
        insta::assert_snapshot!(message);
    });
}

/// A model compiles and runs at exactly the memory it needs (the arena,
/// the weights and the packed weights together), matching the interpreter,
/// and is refused one byte below it.
#[test]
fn a_model_at_exactly_its_limit_runs_and_one_byte_less_is_refused() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lenet5.nn"))
        .unwrap_or_else(|e| panic!("lenet5: {e}"));
    let source = SourceFile::new("lenet5.nn", text);
    let graph = compile_source_within(&source, MemoryLimit::from_bytes(1 << 20))
        .unwrap_or_else(|d| panic!("{}", render_all(&d, &source)));
    let w = weights::seeded_weights(&graph, 0).unwrap_or_else(|e| panic!("{e}"));
    let compile = |limit| {
        backend::compile(
            graph.clone(),
            w.clone(),
            &backend::Options {
                threads: 2,
                max_memory: limit,
                ..Default::default()
            },
        )
    };
    let unlimited = compile(MemoryLimit::unlimited()).unwrap_or_else(|e| panic!("{e}"));
    let weight_bytes: usize = w.iter().map(|(_, t)| 4 * t.len()).sum();
    let needed = 4 * unlimited.executable.arena_len() + weight_bytes + unlimited.report.const_bytes;

    let fits = compile(MemoryLimit::from_bytes(needed as u64)).unwrap_or_else(|e| panic!("{e}"));
    let x = random_input(&[1, 1, 32, 32], 7).unwrap_or_else(|e| panic!("{e}"));
    let pool = Pool::new(2).unwrap_or_else(|e| panic!("{e}"));
    let got = fits
        .executable
        .run(std::slice::from_ref(&x), &pool)
        .unwrap_or_else(|e| panic!("{e}"));
    let want = interp::run(&graph, &w, std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{e}"));
    for (g, r) in got[0].data().iter().zip(want[0].data()) {
        assert!((g - r).abs() <= 1e-4 * (1.0 + r.abs()), "{g} vs {r}");
    }

    let refused = compile(MemoryLimit::from_bytes(needed as u64 - 1));
    match refused {
        Err(e) => assert_eq!(
            e.to_string(),
            format!(
                "the arena with the weights and their packed copies needs {}, more than the memory limit of {}; raise it with `--max-memory`",
                nnc_runtime::format_bytes(needed as u64),
                nnc_runtime::format_bytes(needed as u64 - 1)
            )
        ),
        Ok(_) => panic!("compiled one byte under the memory it needs"),
    }
}

/// A compiled model keeps only the weights its kernels read in place (here
/// MobileNetV2's depthwise taps); those it reads as packed copies (every
/// GEMM's) are freed once the code is built, and it still computes what
/// the interpreter does.
#[test]
fn weights_read_only_as_packed_copies_are_freed() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mobilenet_v2.nn"
    ))
    .unwrap_or_else(|e| panic!("mobilenet_v2: {e}"));
    let source = SourceFile::new("mobilenet_v2.nn", text);
    let graph = compile_source_within(&source, MemoryLimit::unlimited())
        .unwrap_or_else(|d| panic!("{}", render_all(&d, &source)));
    let w = weights::seeded_weights(&graph, 0).unwrap_or_else(|e| panic!("{e}"));
    let weight_bytes: usize = w.iter().map(|(_, t)| 4 * t.len()).sum();
    let x = random_input(&[1, 3, 224, 224], 3).unwrap_or_else(|e| panic!("{e}"));
    let want = interp::run(&graph, &w, std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{e}"));
    for threads in [1, 2] {
        let options = backend::Options {
            threads,
            ..Default::default()
        };
        let compiled =
            backend::compile(graph.clone(), w.clone(), &options).unwrap_or_else(|e| panic!("{e}"));
        let kept = compiled.report.kept_weight_bytes;
        assert!(
            kept > 0 && kept < weight_bytes / 20,
            "kept {kept} of {weight_bytes} bytes of weights"
        );
        let pool = Pool::new(threads).unwrap_or_else(|e| panic!("{e}"));
        let got = compiled
            .executable
            .run(std::slice::from_ref(&x), &pool)
            .unwrap_or_else(|e| panic!("{e}"));
        for (g, r) in got[0].data().iter().zip(want[0].data()) {
            assert!((g - r).abs() <= 1e-4 * (1.0 + r.abs()), "{g} vs {r}");
        }
    }
}
