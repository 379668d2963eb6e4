//! The AST printer: one canonical layout, so that `parse(print(ast))` gives
//! back `ast` (up to spans). The ONNX importer writes `.nn` files with it.

use crate::ast::*;
use std::fmt::Write;

/// Prints a file in canonical layout: four-space indents, one statement per
/// line, a blank line between items, keyword arguments as `name=value`.
pub fn print_file(file: &File) -> String {
    let mut out = String::new();
    for (i, item) in file.items.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match item {
            Item::Block(b) => print_block(&mut out, b),
            Item::Model(m) => {
                let _ = writeln!(out, "model {} {{", m.name.name);
                print_body(&mut out, &m.body);
                out.push_str("}\n");
            }
        }
    }
    out
}

fn print_block(out: &mut String, block: &Block) {
    let params: Vec<String> = block
        .params
        .iter()
        .map(|p| match &p.kind {
            ParamKind::Tensor => p.name.name.clone(),
            ParamKind::Attr { ty, default, .. } => match default {
                Some(d) => format!("{}: {} = {}", p.name.name, ty.keyword(), print_expr(d)),
                None => format!("{}: {}", p.name.name, ty.keyword()),
            },
        })
        .collect();
    let _ = writeln!(out, "block {}({}) {{", block.name.name, params.join(", "));
    print_body(out, &block.body);
    out.push_str("}\n");
}

fn print_body(out: &mut String, body: &[Stmt]) {
    for stmt in body {
        out.push_str("    ");
        out.push_str(&print_stmt(stmt));
        out.push('\n');
    }
}

/// Prints one statement on one line, without indentation.
pub fn print_stmt(stmt: &Stmt) -> String {
    match stmt {
        Stmt::Input(s) => {
            let dims: Vec<String> = s.ty.dims.iter().map(|d| d.value.to_string()).collect();
            format!(
                "input {}: {}[{}]",
                s.name.name,
                s.ty.dtype.name,
                dims.join(", ")
            )
        }
        Stmt::Let(s) => {
            let target = match &s.repeat_to {
                Some(last) => format!("{}..={}", s.target.dotted(), last.value),
                None => s.target.dotted(),
            };
            let value = match &s.value {
                Rhs::Call(c) => print_call(c),
                Rhs::Binary { op, lhs, rhs, .. } => {
                    format!("{} {} {}", lhs.dotted(), op.symbol(), rhs.dotted())
                }
            };
            format!("{target} = {value}")
        }
        Stmt::Output(s) => {
            let values: Vec<String> = s.values.iter().map(Path::dotted).collect();
            format!("output {}", values.join(", "))
        }
        Stmt::Return(s) => format!("return {}", s.value.dotted()),
    }
}

fn print_call(call: &Call) -> String {
    let args: Vec<String> = call
        .args
        .iter()
        .map(|a| match a {
            Arg::Positional(p) => p.dotted(),
            Arg::Keyword { name, value } => format!("{}={}", name.name, print_expr(value)),
        })
        .collect();
    format!("{}({})", call.callee.name, args.join(", "))
}

/// Prints an attribute expression with the fewest parentheses that keep its
/// structure.
pub fn print_expr(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Int(v) => v.to_string(),
        // `{:?}` is the shortest text that parses back to the same f64 and
        // always has a `.` or an exponent, so it never reads back as an int.
        ExprKind::Float(f) => format!("{f:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => format!("\"{s}\""),
        ExprKind::Param(p) => p.clone(),
        ExprKind::List(items) => {
            let items: Vec<String> = items.iter().map(print_expr).collect();
            format!("[{}]", items.join(", "))
        }
        ExprKind::Neg(inner) => match inner.kind {
            ExprKind::Binary { .. } | ExprKind::Neg(_) => format!("-({})", print_expr(inner)),
            _ => format!("-{}", print_expr(inner)),
        },
        ExprKind::Binary { op, lhs, rhs } => {
            let left = print_operand(lhs, op.precedence(), false);
            let right = print_operand(rhs, op.precedence(), true);
            format!("{left} {} {right}", op.symbol())
        }
    }
}

fn print_operand(expr: &Expr, parent: u8, is_right: bool) -> String {
    let text = print_expr(expr);
    match &expr.kind {
        ExprKind::Binary { op, .. }
            if op.precedence() < parent || (is_right && op.precedence() == parent) =>
        {
            format!("({text})")
        }
        _ => text,
    }
}
