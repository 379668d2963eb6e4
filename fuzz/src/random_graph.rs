//! A valid random model from the fuzzer's bytes, for `graph_diff`.
//!
//! The ops, their tensor arity, their attributes and what each attribute
//! takes are read from the compiler ([`lower::signatures`]), so a new op is
//! fuzzed as soon as it exists. Each statement is drawn from the bytes
//! (op, operands among the values defined so far, attributes within small
//! bounds) and kept only if the model still compiles with it; the compiler's
//! own shape checks are the filter, so every model returned is valid and
//! nothing here restates a shape rule.

use arbitrary::{Result, Unstructured};
use nnc_compiler::driver::compile_source;
use nnc_compiler::ir::Graph;
use nnc_compiler::lower::{self, AttrKind, Signature};
use nnc_compiler::weights::expected_weights;
use nnc_frontend::SourceFile;
use nnc_runtime::checked_numel;
use std::sync::OnceLock;

/// The most statements drawn (kept or not) for one model.
const MAX_STATEMENTS: usize = 8;

/// The most elements of any one value: keeps the interpreter and the
/// compiled code fast enough for thousands of models a minute.
const MAX_ELEMENTS: usize = 1 << 14;

/// A model that compiles, with its source text.
pub struct RandomGraph {
    pub text: String,
    pub graph: Graph,
}

/// Draws a model from `u`. Returns `None` when the drawn model is too large
/// (see [`MAX_ELEMENTS`]).
pub fn random_graph(u: &mut Unstructured<'_>) -> Result<Option<RandomGraph>> {
    let signatures = signatures();
    let mut header = Vec::new();
    let mut values = Vec::new();
    let inputs = if u.ratio(1, 4)? { 2 } else { 1 };
    let first = input_shape(u)?;
    for i in 0..inputs {
        // A second input usually has the first one's shape, so that binary
        // ops and concats find a partner.
        let shape = if i > 0 && u.ratio(2, 3)? {
            first.clone()
        } else if i > 0 {
            input_shape(u)?
        } else {
            first.clone()
        };
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        header.push(format!("    input x{i}: f32[{}]", dims.join(", ")));
        values.push(format!("x{i}"));
    }

    let mut body: Vec<String> = Vec::new();
    let mut graph = None;
    let count = u.int_in_range(1..=MAX_STATEMENTS)?;
    for k in 0..count {
        if u.is_empty() {
            break;
        }
        let name = format!("v{k}");
        let signature = u.choose(signatures)?;
        let line = statement(u, signature, &name, &values)?;
        body.push(line);
        let text = model_text(&header, &body, std::slice::from_ref(&name));
        match compile(&text) {
            Some(g) => {
                graph = Some(g);
                values.push(name);
            }
            None => {
                body.pop();
            }
        }
    }
    if body.is_empty() {
        return Ok(None);
    }
    // The last value is an output; sometimes an earlier one is too.
    let mut outputs = vec![values[values.len() - 1].clone()];
    if u.ratio(1, 3)? {
        let other = u.choose(&values)?.clone();
        if !outputs.contains(&other) {
            outputs.insert(0, other);
        }
    }
    let text = model_text(&header, &body, &outputs);
    if outputs.len() > 1 {
        graph = compile(&text);
    }
    let Some(graph) = graph else {
        return Ok(None);
    };
    let too_large = graph
        .node_ids()
        .into_iter()
        .any(|id| graph.node(id).ty.numel() > MAX_ELEMENTS)
        || expected_weights(&graph)
            .iter()
            .any(|(_, shape)| checked_numel(shape).is_none_or(|n| n > MAX_ELEMENTS));
    Ok((!too_large).then_some(RandomGraph { text, graph }))
}

/// The compiler's ops, read once.
fn signatures() -> &'static [Signature] {
    static SIGNATURES: OnceLock<Vec<Signature>> = OnceLock::new();
    SIGNATURES.get_or_init(lower::signatures)
}

fn compile(text: &str) -> Option<Graph> {
    compile_source(&SourceFile::new("random.nn", text)).ok()
}

fn model_text(header: &[String], body: &[String], outputs: &[String]) -> String {
    let mut lines = vec!["model random {".to_string()];
    lines.extend(header.iter().cloned());
    lines.extend(body.iter().map(|l| format!("    {l}")));
    lines.push(format!("    output {}", outputs.join(", ")));
    lines.push("}".to_string());
    lines.join("\n") + "\n"
}

/// Rank 1 to 4, mostly 4 (most ops are image ops), dims 1 to 6.
fn input_shape(u: &mut Unstructured<'_>) -> Result<Vec<usize>> {
    let rank = if u.ratio(2, 3)? {
        4
    } else {
        u.int_in_range(1..=4)?
    };
    (0..rank).map(|_| u.int_in_range(1..=6)).collect()
}

/// `name = op(operands, attributes)`.
fn statement(
    u: &mut Unstructured<'_>,
    signature: &Signature,
    name: &str,
    values: &[String],
) -> Result<String> {
    let (low, high) = signature.tensors;
    let high = high.unwrap_or(low + 2);
    let arity = u.int_in_range(low..=high.max(low))?;
    let mut args: Vec<String> = Vec::new();
    for _ in 0..arity {
        // Recent values are likelier operands, so that chains grow deep.
        let back = u.int_in_range(0..=values.len() - 1)?;
        let back = if u.ratio(1, 2)? { back.min(1) } else { back };
        args.push(values[values.len() - 1 - back].clone());
    }
    for &attr in &signature.required {
        args.push(format!("{attr}={}", value(u, signature, attr)?));
    }
    for &attr in &signature.optional {
        if u.ratio(1, 3)? {
            args.push(format!("{attr}={}", value(u, signature, attr)?));
        }
    }
    Ok(format!("{name} = {}({})", signature.name, args.join(", ")))
}

/// A value for `attr` of the kind the compiler reads it as, within small
/// bounds.
fn value(u: &mut Unstructured<'_>, signature: &Signature, attr: &str) -> Result<String> {
    let Some(kind) = signature.kinds.get(attr) else {
        return Ok(u.int_in_range(-1i64..=3)?.to_string());
    };
    Ok(match kind {
        AttrKind::Int => u.int_in_range(-4i64..=4)?.to_string(),
        AttrKind::Count { min } => u.int_in_range(*min..=min + 5)?.to_string(),
        AttrKind::Pair { min } => {
            if u.ratio(3, 4)? {
                u.int_in_range(*min..=min + 3)?.to_string()
            } else {
                let a = u.int_in_range(*min..=min + 3)?;
                let b = u.int_in_range(*min..=min + 3)?;
                format!("[{a}, {b}]")
            }
        }
        AttrKind::Padding => match u.int_in_range(0..=2)? {
            0 => u.int_in_range(0..=2)?.to_string(),
            1 => list(u, 2, 0..=2)?,
            _ => list(u, 4, 0..=2)?,
        },
        AttrKind::Float => {
            const FLOATS: &[&str] = &["0.5", "1e-5", "0.1", "2.0", "-1.0", "6.0", "0.0", "1"];
            // An `eps` of zero divides zero by zero, where the two sides
            // may legitimately round to NaN and infinity differently.
            let pick = *u.choose(FLOATS)?;
            if attr == "eps" && pick.parse::<f32>().is_ok_and(|v| v <= 0.0) {
                "1e-5".to_string()
            } else {
                pick.to_string()
            }
        }
        AttrKind::Bool => u.arbitrary::<bool>()?.to_string(),
        AttrKind::Choice(choices) => format!("\"{}\"", u.choose(choices)?),
        AttrKind::Ints => {
            let len = u.int_in_range(0..=4)?;
            if u.ratio(1, 2)? {
                // A permutation of the first `len` dims.
                let mut dims: Vec<i64> = (0..len as i64).collect();
                for i in (1..dims.len()).rev() {
                    let j = u.int_in_range(0..=i)?;
                    dims.swap(i, j);
                }
                format!(
                    "[{}]",
                    dims.iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                list(u, len, -1..=4)?
            }
        }
        AttrKind::Scales => {
            const SCALES: &[&str] = &["2", "0.5", "1.5", "[2, 1]", "[1, 3]", "3"];
            u.choose(SCALES)?.to_string()
        }
    })
}

/// A list of `len` ints drawn from `range`.
fn list(
    u: &mut Unstructured<'_>,
    len: usize,
    range: std::ops::RangeInclusive<i64>,
) -> Result<String> {
    let items = (0..len)
        .map(|_| u.int_in_range(range.clone()).map(|v| v.to_string()))
        .collect::<Result<Vec<_>>>()?;
    Ok(format!("[{}]", items.join(", ")))
}
