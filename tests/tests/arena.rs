//! The arena a model runs in: one from `Executable::arena` (for arenas of
//! 2 MiB or more, with room to start the kernels' arena on a huge-page
//! boundary), an empty vector (replaced by such an arena), and a vector of
//! exactly the arena's length (the kernels' arena at its start) all give
//! the same outputs, bit for bit, and the reference interpreter's within
//! rounding.

use nnc_compiler::backend::{compile, Options};
use nnc_compiler::driver::compile_source;
use nnc_compiler::interp;
use nnc_compiler::weights::seeded_weights;
use nnc_frontend::SourceFile;
use nnc_runtime::{random_input, Pool, Tensor};

/// Activations of 1 MiB each: an arena of a few MiB.
const MODEL: &str = "model wide {
    input x: f32[1, 16, 128, 128]
    a = conv2d(x, out=16, kernel=3, pad=1)
    b = relu(a)
    c = conv2d(b, out=16, kernel=1)
    d = add(c, x)
    output d
}";

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_arena_gives_the_same_outputs() {
    let source = SourceFile::new("wide.nn", MODEL.to_string());
    let graph = compile_source(&source)
        .unwrap_or_else(|d| panic!("{}", nnc_frontend::diagnostic::render_all(&d, &source)));
    let weights = seeded_weights(&graph, 1).unwrap_or_else(|e| panic!("{e}"));
    let compiled = compile(graph.clone(), weights.clone(), &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let exe = &compiled.executable;
    assert!(
        4 * exe.arena_len() >= 2 << 20,
        "the arena is only {} floats",
        exe.arena_len()
    );
    let x = random_input(&[1, 16, 128, 128], 7).unwrap_or_else(|e| panic!("{e}"));
    let pool = Pool::new(2).unwrap_or_else(|e| panic!("{e}"));
    let run = |arena: &mut Vec<f32>| {
        let y = exe
            .run_in(arena, std::slice::from_ref(&x), &pool)
            .unwrap_or_else(|e| panic!("{e}"));
        bits(&y[0])
    };

    let mut own = exe.arena().unwrap_or_else(|e| panic!("{e}"));
    assert!(own.len() >= exe.arena_len());
    let in_own = run(&mut own);
    let mut empty = Vec::new();
    assert_eq!(run(&mut empty), in_own, "an empty arena");
    assert!(empty.len() >= exe.arena_len());
    let mut exact = vec![f32::NAN; exe.arena_len()];
    assert_eq!(
        run(&mut exact),
        in_own,
        "an arena of exactly arena_len floats"
    );
    // A second run in the same arena, its old contents still there.
    assert_eq!(run(&mut own), in_own, "a second run");

    let want =
        interp::run(&graph, &weights, std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{e}"));
    let scale = want[0].data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let got = in_own.iter().map(|&b| f32::from_bits(b));
    for (i, (got, &want)) in got.zip(want[0].data()).enumerate() {
        assert!(
            (got - want).abs() <= 1e-4 * scale,
            "output {i}: {got} against the interpreter's {want}"
        );
    }
}
