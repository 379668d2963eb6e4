//! Robustness: whatever text it is given, `compile_source` returns `Ok` or
//! `Err` and never panics, and the diagnostics it returns render without
//! panicking.
//!
//! Inputs, from least to most structured: random bytes and printable text,
//! random sequences of the language's tokens, random models built from the
//! grammar (every op, attribute values at the edges: 0, negative, huge), and
//! small mutations of the real models in `models/`. Each property runs 512
//! cases; `PROPTEST_CASES=50000` makes a longer hunt. Minimal reproducers of
//! what they found are kept as explicit regression tests at the end.

use nnc_compiler::driver::compile_source;
use nnc_compiler::lower::{self, op_names};
use nnc_frontend::diagnostic::render_all;
use nnc_frontend::lexer::{lex, TokenKind};
use nnc_frontend::SourceFile;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Compiles `text` and renders whatever diagnostics come back. A panic in
/// either fails the property.
fn compile_and_render(text: &str) {
    let source = SourceFile::new("fuzz.nn", text);
    match compile_source(&source) {
        Ok(_) => {}
        Err(diagnostics) => {
            assert!(
                !diagnostics.is_empty(),
                "failed without diagnostics:\n{text}"
            );
            let rendered = render_all(&diagnostics, &source);
            assert!(
                rendered.contains("error"),
                "rendered no error:\n{rendered}\nfor:\n{text}"
            );
        }
    }
}

/// `cases` per property, unless `PROPTEST_CASES` asks for a longer run.
fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        // Reproducers become regression tests below, not files on disk.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every attribute name of every op, from the compiler.
fn attributes() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = lower::signatures()
        .into_iter()
        .flat_map(|s| s.required.into_iter().chain(s.optional))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

const WORDS: &[&str] = &[
    "model", "block", "input", "output", "return", "int", "float", "bool", "str", "ints", "true",
    "false", "f32", "f16", "x", "y", "conv1", "layer1", "layer", "b", "planes",
];

const PUNCTUATION: &[&str] = &[
    "(", ")", "[", "]", "{", "}", ",", ":", ".", "..=", "=", "+", "-", "*", "/", "\n", "\n", "\n",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "7",
    "64",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "99999999999999999999",
    "0.5",
    "1e-5",
    "2.5e3",
    "1e400",
    "\"inverted\"",
    "\"classic\"",
    "\"x\"",
];

fn vocabulary() -> Vec<&'static str> {
    op_names()
        .collect::<Vec<_>>()
        .iter()
        .chain(&attributes())
        .chain(WORDS)
        .chain(PUNCTUATION)
        .chain(NUMBERS)
        .copied()
        .collect()
}

/// Each op with its tensor arity, required attributes and optional ones, so
/// that generated calls usually get past attribute checking and reach shape
/// inference. Read from the compiler, so a new op is fuzzed as soon as it
/// exists.
fn signatures() -> Vec<(&'static str, usize, Vec<&'static str>, Vec<&'static str>)> {
    lower::signatures()
        .into_iter()
        .map(|s| {
            let arity = s.tensors.1.map_or(2, |high| high.min(s.tensors.0.max(1)));
            (s.name, arity, s.required, s.optional)
        })
        .collect()
}

/// An integer, mostly small, sometimes at the edges.
fn int() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![
        12 => 0i64..8,
        3 => -3i64..0,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN + 1),
        1 => Just(1i64 << 32),
        1 => Just(1i64 << 62),
    ]
}

fn int_list(len: std::ops::Range<usize>) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(int(), len).prop_map(|v| {
        format!(
            "[{}]",
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A value of any kind, including expressions.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => int().prop_map(|v| v.to_string()),
        2 => int_list(0..5),
        2 => prop::sample::select(vec![
            "0.5", "1e-5", "1.5", "-0.5", "1e300", "true", "false", "\"classic\"", "\"inverted\"", "\"3\"",
        ])
        .prop_map(str::to_string),
        1 => (int(), int()).prop_map(|(a, b)| format!("{a} / {b}")),
        1 => (int(), int()).prop_map(|(a, b)| format!("({a} - {b}) * 2")),
    ]
}

/// A value for the attribute `name`, usually of the kind it takes.
fn attribute_value(name: &'static str) -> BoxedStrategy<String> {
    let typical: BoxedStrategy<String> = match name {
        "bias" | "affine" | "ceil_mode" | "count_include_pad" | "batch_first" => {
            prop::sample::select(vec!["true", "false"])
                .prop_map(str::to_string)
                .boxed()
        }
        "eps" | "negative_slope" | "min" | "max" | "p" => prop_oneof![
            prop::sample::select(vec!["0.5", "1e-5", "0.0", "6.0", "-1.0", "0.99"])
                .prop_map(str::to_string),
            int().prop_map(|v| v.to_string()),
        ]
        .boxed(),
        "mode" => prop::sample::select(vec!["\"inverted\"", "\"classic\"", "\"other\""])
            .prop_map(str::to_string)
            .boxed(),
        "kernel" | "stride" | "pad" | "dilation" | "output_padding" => {
            prop_oneof![3 => int().prop_map(|v| v.to_string()), 1 => int_list(0..4)].boxed()
        }
        "shape" => int_list(0..6).boxed(),
        "dims" => prop_oneof![int().prop_map(|v| v.to_string()), int_list(0..6)].boxed(),
        _ => int().prop_map(|v| v.to_string()).boxed(),
    };
    prop_oneof![9 => typical, 1 => any_value()].boxed()
}

/// One statement of a random model: `vN = op(operands, attrs)` over the
/// values defined so far (`x` and `v0 .. v{index-1}`), or an infix form.
fn statement(index: usize) -> impl Strategy<Value = String> {
    let operand = (0..=index).prop_map(|i| {
        if i == 0 {
            "x".to_string()
        } else {
            format!("v{}", i - 1)
        }
    });
    let signatures = signatures();
    let call = (
        0..signatures.len(),
        any::<u64>(),
        prop::option::weighted(0.05, prop::sample::select(attributes())),
    )
        .prop_flat_map(move |(op, seed, stray)| {
            let (name, arity, ref required, ref optional) = signatures[op];
            // Required attributes are usually present, optional ones sometimes;
            // the bits of `seed` decide, so that shrinking keeps the choice.
            let mut attrs: Vec<&'static str> = Vec::new();
            for (i, a) in required.iter().chain(optional).enumerate() {
                let bits = (seed >> (4 * i)) & 0xf;
                let keep = if i < required.len() {
                    bits != 0
                } else {
                    bits < 5
                };
                if keep {
                    attrs.push(a);
                }
            }
            attrs.extend(stray);
            let arity = if seed >> 60 == 0 {
                (seed as usize >> 56) % 4
            } else {
                arity
            };
            let values: Vec<BoxedStrategy<String>> =
                attrs.iter().map(|a| attribute_value(a)).collect();
            (
                Just(name),
                prop::collection::vec(operand.clone(), arity..=arity),
                Just(attrs),
                values,
            )
        })
        .prop_map(move |(op, operands, attrs, values)| {
            let args: Vec<String> = operands
                .into_iter()
                .chain(attrs.iter().zip(values).map(|(a, v)| format!("{a}={v}")))
                .collect();
            format!("v{index} = {op}({})", args.join(", "))
        });
    let operand = (0..=index).prop_map(|i| {
        if i == 0 {
            "x".to_string()
        } else {
            format!("v{}", i - 1)
        }
    });
    let infix = (
        operand.clone(),
        prop::sample::select(vec!["+", "*"]),
        operand,
    )
        .prop_map(move |(a, op, b)| format!("v{index} = {a} {op} {b}"));
    prop_oneof![6 => call, 1 => infix]
}

/// A random model: one input of rank 0 to 5 with small or edge-case dims,
/// a few statements, and an output.
fn random_model() -> impl Strategy<Value = String> {
    let dim =
        prop_oneof![60 => 1u64..9, 1 => Just(0u64), 1 => Just(1u64 << 31), 1 => Just(u64::MAX)];
    let dims = prop_oneof![
        3 => prop::collection::vec(dim.clone(), 4..=4),
        2 => prop::collection::vec(dim, 0..6),
    ];
    (dims, 1usize..6)
        .prop_flat_map(|(dims, count)| {
            let statements: Vec<_> = (0..count).map(statement).collect();
            (Just(dims), statements, 0..=count)
        })
        .prop_map(|(dims, statements, out)| {
            let dims: Vec<String> = dims.iter().map(u64::to_string).collect();
            let output = if out == 0 {
                "x".to_string()
            } else {
                format!("v{}", out - 1)
            };
            format!(
                "model m {{\n    input x: f32[{}]\n    {}\n    output {output}\n}}\n",
                dims.join(", "),
                statements.join("\n    ")
            )
        })
}

/// The real models, read once.
fn models() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "nn"));
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// A small edit to a source text. Indices are taken modulo the number of
/// tokens or lines, so every mutation applies to every text.
#[derive(Clone, Debug)]
enum Mutation {
    DeleteToken(usize),
    DuplicateToken(usize),
    SwapTokens(usize, usize),
    /// Replaces the n-th integer with an edge value.
    ReplaceNumber(usize, &'static str),
    /// Replaces the n-th identifier with the m-th one.
    ReplaceIdent(usize, usize),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<usize>();
    prop_oneof![
        index.prop_map(Mutation::DeleteToken),
        index.prop_map(Mutation::DuplicateToken),
        (index, index).prop_map(|(a, b)| Mutation::SwapTokens(a, b)),
        (
            index,
            prop::sample::select(vec![
                "0",
                "1",
                "4294967296",
                "9223372036854775807",
                "18446744073709551615"
            ])
        )
            .prop_map(|(i, v)| Mutation::ReplaceNumber(i, v)),
        (index, index).prop_map(|(a, b)| Mutation::ReplaceIdent(a, b)),
        index.prop_map(Mutation::DeleteLine),
        index.prop_map(Mutation::DuplicateLine),
        (index, index).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

/// The text split into tokens, each with the text before it (blank space
/// and comments), by the real lexer; `None` if the text does not lex.
fn split_tokens(text: &str) -> Option<Vec<(String, String, TokenKind)>> {
    let tokens = lex(text).ok()?;
    let mut out = Vec::new();
    let mut pos = 0;
    for t in tokens {
        let (start, end) = (t.span.start as usize, t.span.end as usize);
        out.push((
            text.get(pos..start)?.to_string(),
            text.get(start..end)?.to_string(),
            t.kind,
        ));
        pos = end;
    }
    Some(out)
}

fn join_tokens(tokens: &[(String, String, TokenKind)]) -> String {
    tokens
        .iter()
        .map(|(gap, text, _)| format!("{gap}{text}"))
        .collect()
}

fn apply(text: &str, m: &Mutation) -> String {
    match m {
        Mutation::DeleteLine(_) | Mutation::DuplicateLine(_) | Mutation::SwapLines(..) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return text.to_string();
            }
            let n = lines.len();
            match *m {
                Mutation::DeleteLine(i) => {
                    lines.remove(i % n);
                }
                Mutation::DuplicateLine(i) => lines.insert(i % n, lines[i % n]),
                Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
                _ => {}
            }
            lines.join("\n")
        }
        _ => {
            // Mutations stop at text that no longer lexes; the byte fuzzing
            // covers lexer errors.
            let Some(mut tokens) = split_tokens(text) else {
                return text.to_string();
            };
            // Keep the final `Eof` (empty text) out of the edits.
            let n = tokens.len().saturating_sub(1);
            if n == 0 {
                return text.to_string();
            }
            let of_kind = |tokens: &[(String, String, TokenKind)], ident: bool| -> Vec<usize> {
                tokens
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| match t.2 {
                        TokenKind::Ident(_) => ident,
                        TokenKind::Int(_) => !ident,
                        _ => false,
                    })
                    .map(|(i, _)| i)
                    .collect()
            };
            match *m {
                Mutation::DeleteToken(i) => {
                    tokens.remove(i % n);
                }
                Mutation::DuplicateToken(i) => {
                    let (_, t, k) = tokens[i % n].clone();
                    tokens.insert(i % n, (" ".to_string(), t, k));
                }
                Mutation::SwapTokens(a, b) => {
                    let (ta, tb) = (tokens[a % n].1.clone(), tokens[b % n].1.clone());
                    tokens[a % n].1 = tb;
                    tokens[b % n].1 = ta;
                }
                Mutation::ReplaceNumber(i, value) => {
                    let ints = of_kind(&tokens, false);
                    if !ints.is_empty() {
                        tokens[ints[i % ints.len()]].1 = value.to_string();
                    }
                }
                Mutation::ReplaceIdent(a, b) => {
                    let idents = of_kind(&tokens, true);
                    if !idents.is_empty() {
                        let replacement = tokens[idents[b % idents.len()]].1.clone();
                        tokens[idents[a % idents.len()]].1 = replacement;
                    }
                }
                _ => {}
            }
            join_tokens(&tokens)
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        compile_and_render(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_ascii_never_panics(text in "[ -~\n\t]{0,300}") {
        compile_and_render(&text);
    }

    #[test]
    fn random_token_sequences_never_panic(
        tokens in prop::collection::vec(prop::sample::select(vocabulary()), 0..120),
        header in any::<bool>(),
    ) {
        // Half the sequences start inside a model, so that the parser gets
        // past the first item more often.
        let prefix = if header { "model m {\ninput x: f32[1, 3, 8, 8]\n" } else { "" };
        compile_and_render(&format!("{prefix}{}", tokens.join(" ")));
    }

    #[test]
    fn random_models_never_panic(text in random_model()) {
        compile_and_render(&text);
    }

    #[test]
    fn mutated_models_never_panic(
        model in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let models = models();
        prop_assume!(!models.is_empty());
        let mut text = models[model.index(models.len())].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        compile_and_render(&text);
    }
}

#[test]
fn the_real_models_compile() {
    let models = models();
    assert!(models.len() >= 5, "expected the models/ directory");
    for text in &models {
        let source = SourceFile::new("model.nn", text.as_str());
        if let Err(d) = compile_source(&source) {
            panic!("{}", render_all(&d, &source));
        }
    }
}

// Regressions: minimal reproducers of panics, aborts and hangs found by the
// properties above or by reading the code they pointed at; each is now an
// error with a diagnostic.

/// Asserts that `text` fails to compile with a diagnostic whose message
/// contains `message`, and that the diagnostics render.
fn assert_error(text: &str, message: &str) {
    let source = SourceFile::new("regression.nn", text);
    let Err(diagnostics) = compile_source(&source) else {
        panic!("compiled, but should fail with `{message}`:\n{text}");
    };
    let rendered = render_all(&diagnostics, &source);
    assert!(
        rendered.contains(message),
        "expected `{message}` in:\n{rendered}"
    );
}

#[test]
fn lstm_hidden_size_overflowing_the_gate_rows() {
    // `4 * hidden` overflowed while computing the weight shapes.
    assert_error(
        "model m {\n    input x: f32[4, 1, 8]\n    y = lstm(x, hidden=9223372036854775807)\n    output y\n}\n",
        "too large to address",
    );
}

#[test]
fn conv_kernel_overflowing_the_fan_in() {
    // `C / groups * kh * kw` overflowed.
    assert_error(
        "model m {\n    input x: f32[1, 3, 8, 8]\n    y = conv2d(x, out=1, kernel=4294967296)\n    output y\n}\n",
        "too large to address",
    );
    assert_error(
        "model m {\n    input x: f32[1, 3, 8, 8]\n    y = conv_transpose2d(x, out=4294967296, kernel=4294967296)\n    output y\n}\n",
        "too large to address",
    );
}

#[test]
fn recurrent_layers_bounded_before_allocating_their_weights() {
    // Four weight specs per layer were built for 2^32 layers: an abort on
    // memory exhaustion, not a diagnostic.
    assert_error(
        "model m {\n    input x: f32[4, 1, 8]\n    y = lstm(x, hidden=8, layers=4294967296)\n    output y\n}\n",
        "attribute `layers` of `lstm` must be at most",
    );
}

#[test]
fn concat_overflowing_the_joined_dim() {
    let x = "input x: f32[1, 2305843009213693951]";
    assert_error(
        &format!("model m {{\n    {x}\n    y = concat(x, x, x, x, x, x, x, x, x, dim=1)\n    output y\n}}\n"),
        "overflows",
    );
}

#[test]
fn long_operator_chain_in_an_attribute() {
    // `1+1+...+1` nests to the left; evaluating 200000 levels overflowed the stack.
    let chain = vec!["1"; 200_000].join("+");
    assert_error(
        &format!("model m {{\n    input x: f32[1, 8]\n    y = linear(x, out={chain})\n    output y\n}}\n"),
        "attribute expression is too long",
    );
}

#[test]
fn exponential_block_expansion_stops() {
    // Each block calls the previous one twice: 2^40 instances of an empty
    // block, which lowered without end.
    let mut text = String::from("block b0(x) {\n    return x\n}\n");
    for k in 1..=40 {
        text.push_str(&format!(
            "block b{k}(x) {{\n    first = b{p}(x)\n    second = b{p}(first)\n    return second\n}}\n",
            p = k - 1
        ));
    }
    text.push_str("model m {\n    input x: f32[1, 8]\n    y = b40(x)\n    output y\n}\n");
    assert_error(&text, "the model expands to more than");
}

#[test]
fn block_nesting_at_the_depth_limit() {
    // 80 blocks each calling the next: the depth limit stops the expansion
    // with an error before the stack of a test thread runs out.
    let mut text = String::from("block b0(x) {\n    y = relu(x)\n    return y\n}\n");
    for k in 1..80 {
        text.push_str(&format!(
            "block b{k}(x) {{\n    y = b{}(x)\n    return y\n}}\n",
            k - 1
        ));
    }
    text.push_str("model m {\n    input x: f32[1, 8]\n    y = b79(x)\n    output y\n}\n");
    assert_error(&text, "blocks nested too deeply");
}

#[test]
fn integer_after_a_name_is_not_silently_dropped() {
    // `output y 3` parsed as `output y`: the path parser consumed an integer
    // that followed a name.
    assert_error(
        "model m {\n    input x: f32[1, 8]\n    y = relu(x)\n    output y 3\n}\n",
        "expected end of line after the statement, found integer `3`",
    );
}

#[test]
fn an_undefined_name_in_a_block_instantiated_many_times_is_fast() {
    // Found by the `parse_nn` fuzz target: each of 1000 instances defined a
    // thousand poisoned `units` and failed `return ub2nits.999` with a "did
    // you mean" over them, before the copies were dropped as repeats. The
    // names now count towards the binding limit. Here 10000 instances of
    // 10000 names: most of a minute before, now at once.
    let text = "block unit(x) {\n    y = relu(x)\n    return y\n}\n\nblock stage(x) {\n    units.0..=9999 = u(itxn)\n    return ub2nits.999\n}\n\nmodel m {\n    input x: f32[1, 8]\n    stages.0..=9999 = stage(x)\n    output stages.9999\n}\n";
    let start = std::time::Instant::now();
    assert_error(text, "cannot find value `ub2nits.999` in this scope");
    assert_error(text, "the model expands to more than 200000 bindings");
    let elapsed = start.elapsed();
    assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
}

#[test]
fn errors_stop_at_a_limit() {
    // 600 undefined names at model level, each an error: lowering stops
    // after 500 and says so.
    let mut text = String::from("model m {\n    input x: f32[1, 8]\n");
    for k in 0..600 {
        text.push_str(&format!("    y{k} = relu(missing{k})\n"));
    }
    text.push_str("    output x\n}\n");
    let source = SourceFile::new("regression.nn", text);
    let Err(diagnostics) = compile_source(&source) else {
        panic!("compiled, but 600 names are undefined");
    };
    assert_eq!(diagnostics.len(), 501);
    let last = diagnostics.last().map(|d| d.message.as_str());
    assert_eq!(last, Some("too many errors; lowering stopped after 500"));
}
