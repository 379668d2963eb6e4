//! The abstract syntax tree of `.nn` files.
//!
//! Every node carries the byte span it was parsed from. The ONNX importer
//! builds the same tree (with dummy spans), so there is one lowering path.
//! `PartialEq` compares spans too; use [`File::without_spans`] to compare
//! trees that came from different texts (the round-trip tests do).

use crate::span::Span;

/// A whole `.nn` file: block definitions and models, in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

/// A top-level definition.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Block(Block),
    Model(Model),
}

/// An identifier with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A dotted name such as `layer1.0.conv1`: the name of a value and the
/// PyTorch module path of the weights it owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    /// Segments, each an identifier or a decimal index (`0` in `layer1.0`).
    pub segments: Vec<String>,
    pub span: Span,
}

impl Path {
    /// The segments joined with dots.
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

/// `block name(params) { body }`: a reusable, parameterised group of bindings.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// One block parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub kind: ParamKind,
    pub span: Span,
}

/// A block parameter is a tensor (positional at call sites) or a typed
/// attribute (keyword at call sites, optionally with a default).
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    Tensor,
    Attr {
        ty: AttrType,
        ty_span: Span,
        default: Option<Expr>,
    },
}

/// The type of an attribute parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrType {
    Int,
    Float,
    Bool,
    Str,
    /// A list of integers, such as a kernel size `[3, 5]`.
    Ints,
}

impl AttrType {
    /// The keyword that spells this type.
    pub fn keyword(self) -> &'static str {
        match self {
            AttrType::Int => "int",
            AttrType::Float => "float",
            AttrType::Bool => "bool",
            AttrType::Str => "str",
            AttrType::Ints => "ints",
        }
    }

    /// Parses a type keyword.
    pub fn from_keyword(s: &str) -> Option<AttrType> {
        Some(match s {
            "int" => AttrType::Int,
            "float" => AttrType::Float,
            "bool" => AttrType::Bool,
            "str" => AttrType::Str,
            "ints" => AttrType::Ints,
            _ => return None,
        })
    }
}

/// `model name { body }`: the graph that `nnc` compiles.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// A statement of a block or model body.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `input x: f32[1, 3, 224, 224]` (models only).
    Input(InputStmt),
    /// `name = op(args)`, `name = a + b`, or the repetition
    /// `name.8..=10 = block(args)`.
    Let(LetStmt),
    /// `output a, b` (models only).
    Output(OutputStmt),
    /// `return name` (blocks only).
    Return(ReturnStmt),
}

/// `input name: dtype[dims]`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputStmt {
    pub name: Ident,
    pub ty: TensorTypeExpr,
    pub span: Span,
}

/// A written tensor type such as `f32[1, 3, 224, 224]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorTypeExpr {
    pub dtype: Ident,
    pub dims: Vec<Dim>,
    pub span: Span,
}

/// One written dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct Dim {
    pub value: u64,
    pub span: Span,
}

/// A binding.
#[derive(Clone, Debug, PartialEq)]
pub struct LetStmt {
    pub target: Path,
    /// For `name.8..=10 = block(...)`: the last index (10). The first index is
    /// the last segment of `target`.
    pub repeat_to: Option<Dim>,
    pub value: Rhs,
    pub span: Span,
}

/// The right-hand side of a binding.
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    Call(Call),
    /// `a + b` or `a * b`, the same as `add(a, b)` and `mul(a, b)`.
    Binary {
        op: BinaryOp,
        lhs: Path,
        rhs: Path,
        span: Span,
    },
}

/// The infix operators on tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Mul,
}

impl BinaryOp {
    /// The symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Mul => "*",
        }
    }

    /// The op that the symbol stands for.
    pub fn op_name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Mul => "mul",
        }
    }
}

/// `callee(args)`: an op or a block.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub callee: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

/// A call argument: tensors are positional, attributes are keywords.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Positional(Path),
    Keyword { name: Ident, value: Expr },
}

/// An attribute expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// The forms of attribute expressions.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<Expr>),
    /// A block parameter.
    Param(String),
    Neg(Box<Expr>),
    Binary {
        op: ArithOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

/// Integer and float arithmetic in attribute expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    /// Floor division on integers, true division on floats.
    Div,
}

impl ArithOp {
    /// The symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    /// Binding strength: `*` and `/` bind tighter than `+` and `-`.
    pub fn precedence(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => 1,
            ArithOp::Mul | ArithOp::Div => 2,
        }
    }
}

/// `output a, b`.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputStmt {
    pub values: Vec<Path>,
    pub span: Span,
}

/// `return name`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReturnStmt {
    pub value: Path,
    pub span: Span,
}

impl File {
    /// A copy with every span replaced by [`Span::DUMMY`], for comparing the
    /// trees of two different texts.
    pub fn without_spans(&self) -> File {
        let mut file = self.clone();
        file.erase_spans();
        file
    }

    fn erase_spans(&mut self) {
        for item in &mut self.items {
            match item {
                Item::Block(b) => {
                    b.span = Span::DUMMY;
                    b.name.span = Span::DUMMY;
                    for p in &mut b.params {
                        p.span = Span::DUMMY;
                        p.name.span = Span::DUMMY;
                        if let ParamKind::Attr {
                            ty_span, default, ..
                        } = &mut p.kind
                        {
                            *ty_span = Span::DUMMY;
                            if let Some(e) = default {
                                e.erase_spans();
                            }
                        }
                    }
                    b.body.iter_mut().for_each(Stmt::erase_spans);
                }
                Item::Model(m) => {
                    m.span = Span::DUMMY;
                    m.name.span = Span::DUMMY;
                    m.body.iter_mut().for_each(Stmt::erase_spans);
                }
            }
        }
    }
}

impl Stmt {
    fn erase_spans(&mut self) {
        match self {
            Stmt::Input(s) => {
                s.span = Span::DUMMY;
                s.name.span = Span::DUMMY;
                s.ty.span = Span::DUMMY;
                s.ty.dtype.span = Span::DUMMY;
                s.ty.dims.iter_mut().for_each(|d| d.span = Span::DUMMY);
            }
            Stmt::Let(s) => {
                s.span = Span::DUMMY;
                s.target.span = Span::DUMMY;
                if let Some(d) = &mut s.repeat_to {
                    d.span = Span::DUMMY;
                }
                match &mut s.value {
                    Rhs::Call(c) => {
                        c.span = Span::DUMMY;
                        c.callee.span = Span::DUMMY;
                        for a in &mut c.args {
                            match a {
                                Arg::Positional(p) => p.span = Span::DUMMY,
                                Arg::Keyword { name, value } => {
                                    name.span = Span::DUMMY;
                                    value.erase_spans();
                                }
                            }
                        }
                    }
                    Rhs::Binary { lhs, rhs, span, .. } => {
                        *span = Span::DUMMY;
                        lhs.span = Span::DUMMY;
                        rhs.span = Span::DUMMY;
                    }
                }
            }
            Stmt::Output(s) => {
                s.span = Span::DUMMY;
                s.values.iter_mut().for_each(|p| p.span = Span::DUMMY);
            }
            Stmt::Return(s) => {
                s.span = Span::DUMMY;
                s.value.span = Span::DUMMY;
            }
        }
    }
}

impl Expr {
    fn erase_spans(&mut self) {
        self.span = Span::DUMMY;
        match &mut self.kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Bool(_)
            | ExprKind::Str(_)
            | ExprKind::Param(_) => {}
            ExprKind::List(items) => items.iter_mut().for_each(Expr::erase_spans),
            ExprKind::Neg(e) => e.erase_spans(),
            ExprKind::Binary { lhs, rhs, .. } => {
                lhs.erase_spans();
                rhs.erase_spans();
            }
        }
    }
}
