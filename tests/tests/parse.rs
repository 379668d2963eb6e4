//! Focused parser behaviour that the round-trip suite cannot see: how
//! paths, numbers, ranges and line breaks are read.

use nnc_frontend::ast::{Arg, ExprKind, Item, Rhs, Stmt};
use nnc_frontend::parse;

fn model_body(src: &str) -> Vec<Stmt> {
    let file = parse(src).unwrap_or_else(|d| panic!("{}", d.message));
    file.items
        .into_iter()
        .find_map(|i| match i {
            Item::Model(m) => Some(m.body),
            Item::Block(_) => None,
        })
        .expect("a model")
}

#[test]
fn dotted_paths_with_indices_are_one_name() {
    let body = model_body("model m {\n    layer1.0.conv1 = relu(x.1)\n}\n");
    let Stmt::Let(s) = &body[0] else {
        panic!("expected a binding")
    };
    assert_eq!(s.target.segments, ["layer1", "0", "conv1"]);
    let Rhs::Call(call) = &s.value else {
        panic!("expected a call")
    };
    let Arg::Positional(p) = &call.args[0] else {
        panic!("expected a tensor")
    };
    assert_eq!(p.dotted(), "x.1");
}

#[test]
fn numbers_in_attributes() {
    let body = model_body("model m {\n    y = f(x, a=1e-5, b=0.5, c=2.5e3, d=-3, e=7)\n}\n");
    let Stmt::Let(s) = &body[0] else {
        panic!("expected a binding")
    };
    let Rhs::Call(call) = &s.value else {
        panic!("expected a call")
    };
    let values: Vec<&ExprKind> = call
        .args
        .iter()
        .filter_map(|a| match a {
            Arg::Keyword { value, .. } => Some(&value.kind),
            Arg::Positional(_) => None,
        })
        .collect();
    assert_eq!(values[0], &ExprKind::Float(1e-5));
    assert_eq!(values[1], &ExprKind::Float(0.5));
    assert_eq!(values[2], &ExprKind::Float(2500.0));
    assert!(matches!(values[3], ExprKind::Neg(inner) if inner.kind == ExprKind::Int(3)));
    assert_eq!(values[4], &ExprKind::Int(7));
}

#[test]
fn repetition_range_and_index_first_paths() {
    let body = model_body("model m {\n    features.8..=10 = b(features.7)\n    0 = relu(x)\n}\n");
    let Stmt::Let(s) = &body[0] else {
        panic!("expected a binding")
    };
    assert_eq!(s.target.dotted(), "features.8");
    assert_eq!(s.repeat_to.as_ref().map(|d| d.value), Some(10));
    let Stmt::Let(s) = &body[1] else {
        panic!("expected a binding")
    };
    assert_eq!(s.target.dotted(), "0");
}

#[test]
fn newlines_inside_brackets_do_not_end_a_statement() {
    let body = model_body("model m {\n    y = conv2d(x,\n        out=4,   # comment\n        kernel=[3,\n                3])\n    output y\n}\n");
    assert_eq!(body.len(), 2);
}

#[test]
fn a_statement_must_end_its_line() {
    let err = parse("model m {\n    y = relu(x) z = relu(y)\n}\n")
        .expect_err("two statements on one line");
    assert_eq!(
        err.message,
        "expected end of line after the statement, found `z`"
    );
}
