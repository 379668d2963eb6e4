//! Building the `.nn` AST the importer produces: statements, attribute
//! expressions, and the names of bindings.
//!
//! Every node gets the dummy span; the driver prints the tree and parses the
//! text again, so diagnostics point at lines of the imported `.nn` text.

use crate::ast::*;
use crate::span::Span;
use std::collections::HashSet;

/// An int attribute. A negative one is a negation, as the parser reads
/// `-1`, so that printing and parsing give back the same tree.
pub fn int(v: i64) -> Expr {
    match v.checked_neg() {
        Some(n) if v < 0 => expr(ExprKind::Neg(Box::new(expr(ExprKind::Int(n))))),
        _ => expr(ExprKind::Int(v)),
    }
}

/// A float attribute. An ONNX float is an `f32`; it is written as the
/// shortest decimal that reads back as that `f32` (`1e-5`, not
/// `9.999999747378752e-6`).
///
/// The language has no infinity literal; an infinity is written as the
/// largest finite `f32` of its sign (the converters reject NaN).
pub fn float(v: f32) -> Expr {
    let v = v.clamp(f32::MIN, f32::MAX);
    let shortest: f64 = v.abs().to_string().parse().unwrap_or(f64::from(v.abs()));
    let magnitude = expr(ExprKind::Float(shortest));
    if v.is_sign_negative() {
        expr(ExprKind::Neg(Box::new(magnitude)))
    } else {
        magnitude
    }
}

/// A bool attribute.
pub fn boolean(v: bool) -> Expr {
    expr(ExprKind::Bool(v))
}

/// A string attribute.
pub fn string(v: &str) -> Expr {
    expr(ExprKind::Str(v.to_string()))
}

/// A list of ints.
pub fn ints<I: IntoIterator<Item = i64>>(v: I) -> Expr {
    expr(ExprKind::List(v.into_iter().map(int).collect()))
}

/// A pair of float attributes, written as one float when both are equal.
pub fn float_pair(p: [f32; 2]) -> Expr {
    if p[0] == p[1] {
        float(p[0])
    } else {
        expr(ExprKind::List(p.into_iter().map(float).collect()))
    }
}

/// A pair attribute, written as one int when both are equal.
pub fn pair(p: [usize; 2]) -> Expr {
    if p[0] == p[1] {
        int(p[0] as i64)
    } else {
        ints(p.map(|v| v as i64))
    }
}

fn expr(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::DUMMY,
    }
}

fn ident(name: &str) -> Ident {
    Ident {
        name: name.to_string(),
        span: Span::DUMMY,
    }
}

/// A path from a dotted name the importer made (segments are valid).
pub fn path(dotted: &str) -> Path {
    Path {
        segments: dotted.split('.').map(str::to_string).collect(),
        span: Span::DUMMY,
    }
}

/// `input name: f32[dims]`.
pub fn input(name: &str, dims: &[usize]) -> Stmt {
    Stmt::Input(InputStmt {
        name: ident(name),
        ty: TensorTypeExpr {
            dtype: ident("f32"),
            dims: dims
                .iter()
                .map(|&d| Dim {
                    value: d as u64,
                    span: Span::DUMMY,
                })
                .collect(),
            span: Span::DUMMY,
        },
        span: Span::DUMMY,
    })
}

/// `target = callee(positional..., key=value...)`.
pub fn call(
    target: &str,
    callee: &str,
    positional: &[String],
    keywords: Vec<(&str, Expr)>,
) -> Stmt {
    let mut args: Vec<Arg> = positional
        .iter()
        .map(|p| Arg::Positional(path(p)))
        .collect();
    args.extend(keywords.into_iter().map(|(name, value)| Arg::Keyword {
        name: ident(name),
        value,
    }));
    Stmt::Let(LetStmt {
        target: path(target),
        repeat_to: None,
        value: Rhs::Call(Call {
            callee: ident(callee),
            args,
            span: Span::DUMMY,
        }),
        span: Span::DUMMY,
    })
}

/// `output a, b`.
pub fn output(values: &[String]) -> Stmt {
    Stmt::Output(OutputStmt {
        values: values.iter().map(|v| path(v)).collect(),
        span: Span::DUMMY,
    })
}

/// The whole file: one model.
pub fn file(name: &str, body: Vec<Stmt>) -> File {
    File {
        items: vec![Item::Model(Model {
            name: ident(name),
            body,
            span: Span::DUMMY,
        })],
    }
}

/// Words that read as values in attribute position; a segment spelled like
/// one gets a `_` prefix so that no name is ever mistaken for a literal.
/// (`input`, `output` and the other keywords are contextual and stay.)
const RESERVED: &[&str] = &["true", "false"];

/// Turns one name segment into an identifier or a decimal index.
fn segment(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let is_index = cleaned.bytes().all(|b| b.is_ascii_digit())
        && (cleaned == "0" || !cleaned.starts_with('0'));
    if is_index
        || (cleaned.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !RESERVED.contains(&cleaned.as_str()))
    {
        cleaned
    } else {
        format!("_{cleaned}")
    }
}

/// Hands out binding names: dotted paths made from ONNX names, unique
/// within the model.
#[derive(Default)]
pub struct Names {
    used: HashSet<String>,
}

impl Names {
    /// A fresh dotted path from an ONNX name such as `/layer1/layer1.0/conv1/Conv`
    /// (`layer1.layer1.0.conv1.Conv`) or `features.0.weight`'s owner
    /// `features.0`; `fallback` when the name has no usable characters.
    pub fn fresh(&mut self, raw: &str, fallback: &str) -> String {
        let segments: Vec<String> = raw
            .split(['/', '.', ':', ' '])
            .filter(|s| !s.is_empty())
            .map(segment)
            .collect();
        let base = if segments.is_empty() {
            segment(fallback)
        } else {
            segments.join(".")
        };
        self.unique(base)
    }

    /// A fresh single identifier (inputs and the model name are identifiers,
    /// not paths).
    pub fn fresh_ident(&mut self, raw: &str, fallback: &str) -> String {
        let base = if raw.is_empty() {
            segment(fallback)
        } else {
            segment(raw)
        };
        let base = if base.starts_with(|c: char| c.is_ascii_digit()) {
            format!("_{base}")
        } else {
            base
        };
        self.unique(base)
    }

    fn unique(&mut self, base: String) -> String {
        // `features.0` taken becomes `features.0._2`: an index segment
        // cannot take a suffix and stay an index.
        let index_last = base
            .rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_digit()));
        let mut name = base.clone();
        let mut n = 2;
        while !self.used.insert(name.clone()) {
            name = if index_last {
                format!("{base}._{n}")
            } else {
                format!("{base}_{n}")
            };
            n += 1;
        }
        name
    }
}
