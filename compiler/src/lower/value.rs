//! Attribute values and the evaluation of attribute expressions.

use nnc_frontend::ast::{ArithOp, Expr, ExprKind};
use nnc_frontend::diagnostic::{did_you_mean, edit_distance};
use nnc_frontend::{Diagnostic, Span};
use std::collections::HashMap;

/// An evaluated attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<Value>),
}

impl Value {
    /// How the value's kind is named in type errors: "an int", "a string".
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a bool",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
        }
    }
}

/// The closest candidate to `name` for a "did you mean" help, leaving out
/// candidates that differ from it in every character (`a` for `y`):
/// replacing a whole name is not a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    did_you_mean(
        name,
        candidates
            .into_iter()
            .filter(|c| edit_distance(name, c) < len.max(c.chars().count())),
    )
}

/// The values of the enclosing block's attribute parameters.
pub type Params = HashMap<String, Value>;

/// Evaluates an attribute expression with the given block parameters.
pub fn eval(expr: &Expr, params: &Params) -> Result<Value, Diagnostic> {
    match &expr.kind {
        ExprKind::Int(v) => Ok(Value::Int(*v)),
        ExprKind::Float(v) => Ok(Value::Float(*v)),
        ExprKind::Bool(v) => Ok(Value::Bool(*v)),
        ExprKind::Str(v) => Ok(Value::Str(v.clone())),
        ExprKind::List(items) => Ok(Value::List(
            items
                .iter()
                .map(|e| eval(e, params))
                .collect::<Result<_, _>>()?,
        )),
        ExprKind::Param(name) => params.get(name).cloned().ok_or_else(|| {
            let mut d = Diagnostic::error(format!("cannot find parameter `{name}` in this scope"))
                .with_primary(expr.span, "not a parameter of the enclosing block");
            if let Some(s) = suggest(name, params.keys().map(String::as_str)) {
                d = d.with_help(format!("did you mean `{s}`?"));
            } else if params.is_empty() {
                d = d.with_help(
                    "attribute values are literals here; names refer to block parameters",
                );
            }
            d
        }),
        ExprKind::Neg(inner) => match eval(inner, params)? {
            Value::Int(v) => v
                .checked_neg()
                .map(Value::Int)
                .ok_or_else(|| overflow(expr.span)),
            Value::Float(v) => Ok(Value::Float(-v)),
            other => Err(
                Diagnostic::error(format!("cannot negate {}", other.describe()))
                    .with_primary(inner.span, "expected a number"),
            ),
        },
        ExprKind::Binary { op, lhs, rhs } => {
            let l = eval(lhs, params)?;
            let r = eval(rhs, params)?;
            arith(*op, l, r, expr.span, lhs.span, rhs.span)
        }
    }
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::error("integer overflow in attribute expression")
        .with_primary(span, "this overflows 64 bits")
}

fn arith(
    op: ArithOp,
    l: Value,
    r: Value,
    span: Span,
    lspan: Span,
    rspan: Span,
) -> Result<Value, Diagnostic> {
    let number = |v: &Value, s: Span| -> Result<f64, Diagnostic> {
        match v {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            other => Err(Diagnostic::error(format!(
                "cannot apply `{}` to {}",
                op.symbol(),
                other.describe()
            ))
            .with_primary(s, "expected a number")),
        }
    };
    if let (Value::Int(a), Value::Int(b)) = (&l, &r) {
        let (a, b) = (*a, *b);
        let result = match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div => {
                if b == 0 {
                    return Err(
                        Diagnostic::error("division by zero in attribute expression")
                            .with_primary(rspan, "this is zero"),
                    );
                }
                // Floor division, as Python's `//`, so `-1 / 2` is `-1`.
                a.checked_div(b).map(|q| {
                    if (a % b != 0) && ((a < 0) != (b < 0)) {
                        q - 1
                    } else {
                        q
                    }
                })
            }
        };
        return result.map(Value::Int).ok_or_else(|| overflow(span));
    }
    let a = number(&l, lspan)?;
    let b = number(&r, rspan)?;
    Ok(Value::Float(match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => a / b,
    }))
}
