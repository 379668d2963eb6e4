//! The parser: tokens to the AST. Stops at the first syntax error.
//!
//! The grammar is written out in `docs/language.md`; each `parse_*` method
//! below implements one of its rules.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::lexer::{lex, Token, TokenKind};
use crate::span::Span;

/// Nesting limit for attribute expressions, so that hostile input such as a
/// million `(` cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// Limit on the binary operators of one attribute expression. A chain such
/// as `1+1+...+1` nests to the left without any parenthesis, and evaluating
/// or dropping a tree as deep as a long chain would overflow the stack.
const MAX_OPERATORS: usize = 256;

/// Parses a whole `.nn` source text.
pub fn parse(src: &str) -> Result<File, Diagnostic> {
    let tokens = lex(src)?;
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        operators: 0,
    };
    parser.parse_file()
}

struct Parser<'a> {
    /// The text the tokens came from, to tell whether two tokens share a line.
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Binary operators in the attribute expression being parsed.
    operators: usize,
}

type PResult<T> = Result<T, Diagnostic>;

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with `Eof`, and `bump` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, offset: usize) -> &TokenKind {
        &self.tokens[(self.pos + offset).min(self.tokens.len() - 1)].kind
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn at(&self, kind: &TokenKind) -> bool {
        &self.peek().kind == kind
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Ident(s) if s == keyword)
    }

    fn eat(&mut self, kind: &TokenKind) -> Option<Token> {
        if self.at(kind) {
            Some(self.bump())
        } else {
            None
        }
    }

    fn skip_newlines(&mut self) {
        while self.at(&TokenKind::Newline) {
            self.bump();
        }
    }

    /// The last token before the current one that is not a newline.
    fn previous(&self) -> Option<&Token> {
        self.tokens[..self.pos.min(self.tokens.len())]
            .iter()
            .rev()
            .find(|t| t.kind != TokenKind::Newline)
    }

    /// True when the current token does not continue the previous token's
    /// line: it is the end of the file, or a newline inside `(...)` or
    /// `[...]` separates them. What was expected then belongs at the end of
    /// the previous token, as rustc points at a missing `;` or `)`.
    fn after_line_break(&self) -> bool {
        let token = self.peek();
        if token.kind == TokenKind::Eof {
            return true;
        }
        let directly_after_newline =
            self.pos > 0 && self.tokens[self.pos - 1].kind == TokenKind::Newline;
        match self.previous() {
            Some(prev) if !directly_after_newline => self
                .src
                .get(prev.span.end as usize..token.span.start as usize)
                .is_some_and(|between| between.contains('\n')),
            _ => false,
        }
    }

    fn unexpected(&self, expected: &str) -> Diagnostic {
        let token = self.peek();
        let d = Diagnostic::error(format!(
            "expected {expected}, found {}",
            token.kind.describe()
        ));
        match self.previous() {
            Some(prev) if self.after_line_break() => {
                let end = prev.span.end as usize;
                let d = d.with_primary(Span::new(end, end), format!("expected {expected}"));
                if token.kind == TokenKind::Eof {
                    d
                } else {
                    d.with_secondary(token.span, "unexpected token")
                }
            }
            _ => d.with_primary(token.span, format!("expected {expected}")),
        }
    }

    /// Adds an "unclosed" label at an opening delimiter when the error looks
    /// like its closing partner is missing: the parser reached another
    /// closing delimiter, a new line or the end of the file instead.
    fn note_unclosed(&self, d: Diagnostic, open: Span, delimiter: &str) -> Diagnostic {
        let closing = matches!(
            self.peek().kind,
            TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace | TokenKind::Eof
        );
        if closing || self.after_line_break() {
            d.with_secondary(open, format!("unclosed `{delimiter}`"))
        } else {
            d
        }
    }

    fn expect(&mut self, kind: &TokenKind, expected: &str) -> PResult<Token> {
        self.eat(kind).ok_or_else(|| self.unexpected(expected))
    }

    fn expect_ident(&mut self, what: &str) -> PResult<Ident> {
        match &self.peek().kind {
            TokenKind::Ident(name) => {
                let ident = Ident {
                    name: name.clone(),
                    span: self.peek().span,
                };
                self.bump();
                Ok(ident)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn parse_file(&mut self) -> PResult<File> {
        let mut items = Vec::new();
        self.skip_newlines();
        while !self.at(&TokenKind::Eof) {
            if self.at_keyword("block") {
                items.push(Item::Block(self.parse_block()?));
            } else if self.at_keyword("model") {
                items.push(Item::Model(self.parse_model()?));
            } else {
                return Err(self
                    .unexpected("`block` or `model`")
                    .with_help("a `.nn` file holds `block name(...) { ... }` definitions and one `model name { ... }`"));
            }
            self.skip_newlines();
        }
        Ok(File { items })
    }

    fn parse_block(&mut self) -> PResult<Block> {
        let start = self.bump().span;
        let name = self.expect_ident("a block name")?;
        let open = self.expect(&TokenKind::LParen, "`(` after the block name")?;
        let mut params = Vec::new();
        while !self.at(&TokenKind::RParen) {
            params.push(self.parse_param()?);
            if self.eat(&TokenKind::Comma).is_none() {
                break;
            }
        }
        self.expect(&TokenKind::RParen, "`,` or `)` in the parameter list")
            .map_err(|d| self.note_unclosed(d, open.span, "("))?;
        let (body, end) = self.parse_body()?;
        Ok(Block {
            name,
            params,
            body,
            span: start.to(end),
        })
    }

    fn parse_param(&mut self) -> PResult<Param> {
        let name = self.expect_ident("a parameter name")?;
        if self.eat(&TokenKind::Colon).is_none() {
            return Ok(Param {
                span: name.span,
                name,
                kind: ParamKind::Tensor,
            });
        }
        let ty_token =
            self.expect_ident("a parameter type (`int`, `float`, `bool`, `str` or `ints`)")?;
        let ty = AttrType::from_keyword(&ty_token.name).ok_or_else(|| {
            Diagnostic::error(format!("unknown parameter type `{}`", ty_token.name))
                .with_primary(ty_token.span, "not a parameter type")
                .with_help("attribute parameters are `int`, `float`, `bool`, `str` or `ints`; a tensor parameter has no type")
        })?;
        let mut span = name.span.to(ty_token.span);
        let default = if self.eat(&TokenKind::Eq).is_some() {
            let e = self.parse_expr(0)?;
            span = span.to(e.span);
            Some(e)
        } else {
            None
        };
        Ok(Param {
            name,
            kind: ParamKind::Attr {
                ty,
                ty_span: ty_token.span,
                default,
            },
            span,
        })
    }

    fn parse_model(&mut self) -> PResult<Model> {
        let start = self.bump().span;
        let name = self.expect_ident("a model name")?;
        let (body, end) = self.parse_body()?;
        Ok(Model {
            name,
            body,
            span: start.to(end),
        })
    }

    /// `{ stmt* }`, returning the statements and the closing brace's span.
    fn parse_body(&mut self) -> PResult<(Vec<Stmt>, Span)> {
        let open = self.expect(&TokenKind::LBrace, "`{`")?;
        let mut body = Vec::new();
        loop {
            self.skip_newlines();
            if let Some(end) = self.eat(&TokenKind::RBrace) {
                return Ok((body, end.span));
            }
            if self.at(&TokenKind::Eof) {
                return Err(self
                    .unexpected("`}`")
                    .with_secondary(open.span, "unclosed `{`")
                    .with_help("every `{` needs a matching `}`"));
            }
            body.push(self.parse_stmt()?);
            // At the end of the file the loop reports the missing `}`.
            let ends_statement = self.at(&TokenKind::RBrace) || self.at(&TokenKind::Eof);
            if !ends_statement && self.eat(&TokenKind::Newline).is_none() {
                let d = self.unexpected("end of line after the statement");
                let starts_statement =
                    matches!(self.peek().kind, TokenKind::Ident(_) | TokenKind::Int(_))
                        && matches!(self.peek_at(1), TokenKind::Eq | TokenKind::DotDotEq);
                return Err(match self.peek().kind {
                    TokenKind::Plus | TokenKind::Star => d.with_help(
                        "`a + b` and `a * b` take exactly two value names; bind intermediate results to names",
                    ),
                    _ if starts_statement => d.with_help("write one statement per line"),
                    _ => d,
                });
            }
        }
    }

    fn parse_stmt(&mut self) -> PResult<Stmt> {
        // Keywords are contextual: `input = relu(x)` binds a value named `input`.
        let keyword_position = !matches!(
            self.peek_at(1),
            TokenKind::Eq | TokenKind::Dot | TokenKind::DotDotEq
        );
        if keyword_position && self.at_keyword("input") {
            let start = self.bump().span;
            let name = self.expect_ident("an input name")?;
            self.expect(&TokenKind::Colon, "`:` and a tensor type")?;
            let ty = self.parse_tensor_type()?;
            return Ok(Stmt::Input(InputStmt {
                span: start.to(ty.span),
                name,
                ty,
            }));
        }
        if keyword_position && self.at_keyword("output") {
            let start = self.bump().span;
            let mut values = vec![self.parse_path()?];
            while self.eat(&TokenKind::Comma).is_some() {
                values.push(self.parse_path()?);
            }
            let end = values.last().map_or(start, |p| p.span);
            return Ok(Stmt::Output(OutputStmt {
                values,
                span: start.to(end),
            }));
        }
        if keyword_position && self.at_keyword("return") {
            let start = self.bump().span;
            let value = self.parse_path()?;
            return Ok(Stmt::Return(ReturnStmt {
                span: start.to(value.span),
                value,
            }));
        }
        let target = self.parse_path()?;
        let repeat_to = if self.eat(&TokenKind::DotDotEq).is_some() {
            Some(self.parse_dim("the last index of the repetition")?)
        } else {
            None
        };
        self.expect(&TokenKind::Eq, "`=` after the binding name")?;
        let value = self.parse_rhs()?;
        let end = match &value {
            Rhs::Call(c) => c.span,
            Rhs::Binary { span, .. } => *span,
        };
        Ok(Stmt::Let(LetStmt {
            span: target.span.to(end),
            target,
            repeat_to,
            value,
        }))
    }

    fn parse_dim(&mut self, what: &str) -> PResult<Dim> {
        match self.peek().kind {
            TokenKind::Int(value) => {
                let span = self.bump().span;
                Ok(Dim { value, span })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn parse_tensor_type(&mut self) -> PResult<TensorTypeExpr> {
        let dtype = self.expect_ident("a dtype such as `f32`")?;
        let open = self.expect(&TokenKind::LBracket, "`[` and the dimensions")?;
        let mut dims = Vec::new();
        while !self.at(&TokenKind::RBracket) {
            dims.push(self.parse_dim("a dimension (a non-negative integer)")?);
            if self.eat(&TokenKind::Comma).is_none() {
                break;
            }
        }
        let end = self
            .expect(&TokenKind::RBracket, "`,` or `]` in the dimension list")
            .map_err(|d| self.note_unclosed(d, open.span, "["))?;
        Ok(TensorTypeExpr {
            span: dtype.span.to(end.span),
            dtype,
            dims,
        })
    }

    /// `name ('.' (name | index))*`
    fn parse_path(&mut self) -> PResult<Path> {
        // A path may start with an index, as `nn.Sequential` children do:
        // inside a block, `0 = conv2d(...)` owns `<prefix>.0.weight`.
        let (first, mut span) = match &self.peek().kind {
            TokenKind::Int(i) => {
                let first = (i.to_string(), self.peek().span);
                self.bump();
                first
            }
            _ => {
                let ident = self.expect_ident("a value name")?;
                (ident.name, ident.span)
            }
        };
        let mut segments = vec![first];
        while self.at(&TokenKind::Dot) {
            self.bump();
            let token = self.bump();
            match token.kind {
                TokenKind::Ident(s) => segments.push(s),
                TokenKind::Int(i) => segments.push(i.to_string()),
                other => {
                    return Err(Diagnostic::error(format!(
                        "expected a name or an index after `.`, found {}",
                        other.describe()
                    ))
                    .with_primary(token.span, "expected a name or an index"))
                }
            }
            span = span.to(token.span);
        }
        Ok(Path { segments, span })
    }

    fn parse_rhs(&mut self) -> PResult<Rhs> {
        if matches!(self.peek().kind, TokenKind::Ident(_)) && self.peek_at(1) == &TokenKind::LParen
        {
            return Ok(Rhs::Call(self.parse_call()?));
        }
        let lhs = self.parse_path()?;
        let op = match self.peek().kind {
            TokenKind::Plus => BinaryOp::Add,
            TokenKind::Star => BinaryOp::Mul,
            _ => {
                return Err(self
                    .unexpected("`(`, `+` or `*`")
                    .with_help("a binding is `name = op(args)`, `name = a + b` or `name = a * b`"))
            }
        };
        self.bump();
        let rhs = self.parse_path()?;
        Ok(Rhs::Binary {
            op,
            span: lhs.span.to(rhs.span),
            lhs,
            rhs,
        })
    }

    fn parse_call(&mut self) -> PResult<Call> {
        let callee = self.expect_ident("an op or block name")?;
        let open = self.expect(&TokenKind::LParen, "`(`")?;
        let mut args = Vec::new();
        while !self.at(&TokenKind::RParen) {
            let keyword = matches!(self.peek().kind, TokenKind::Ident(_))
                && self.peek_at(1) == &TokenKind::Eq;
            if keyword {
                let name = self.expect_ident("an attribute name")?;
                self.bump();
                let value = self.parse_expr(0)?;
                args.push(Arg::Keyword { name, value });
            } else {
                args.push(Arg::Positional(self.parse_path().map_err(|d| {
                    d.with_help(
                        "tensor arguments are value names; attributes are written `name=value`",
                    )
                })?));
            }
            if self.eat(&TokenKind::Comma).is_none() {
                break;
            }
        }
        let end = self
            .expect(&TokenKind::RParen, "`,` or `)` in the argument list")
            .map_err(|d| self.note_unclosed(d, open.span, "("))?;
        Ok(Call {
            span: callee.span.to(end.span),
            callee,
            args,
        })
    }

    /// Precedence climbing over `+ - * /`, with unary minus and parentheses.
    fn parse_expr(&mut self, depth: usize) -> PResult<Expr> {
        if depth == 0 {
            self.operators = 0;
        }
        let lhs = self.parse_primary(depth)?;
        self.parse_expr_rest(lhs, 0, depth)
    }

    fn parse_expr_rest(&mut self, mut lhs: Expr, min_prec: u8, depth: usize) -> PResult<Expr> {
        loop {
            let op = match self.peek().kind {
                TokenKind::Plus => ArithOp::Add,
                TokenKind::Minus => ArithOp::Sub,
                TokenKind::Star => ArithOp::Mul,
                TokenKind::Slash => ArithOp::Div,
                _ => return Ok(lhs),
            };
            if op.precedence() <= min_prec {
                return Ok(lhs);
            }
            self.operators += 1;
            if self.operators > MAX_OPERATORS {
                return Err(Diagnostic::error("attribute expression is too long")
                    .with_primary(
                        self.peek().span,
                        format!("more than {MAX_OPERATORS} operators in one expression"),
                    )
                    .with_help("compute the value outside nnc and write the result"));
            }
            self.bump();
            let mut rhs = self.parse_primary(depth)?;
            // Left associativity: only strictly tighter operators bind into `rhs`.
            while let Some(next) = self.peek_arith() {
                if next.precedence() > op.precedence() {
                    rhs = self.parse_expr_rest(rhs, op.precedence(), depth)?;
                } else {
                    break;
                }
            }
            lhs = Expr {
                span: lhs.span.to(rhs.span),
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
        }
    }

    fn peek_arith(&self) -> Option<ArithOp> {
        match self.peek().kind {
            TokenKind::Plus => Some(ArithOp::Add),
            TokenKind::Minus => Some(ArithOp::Sub),
            TokenKind::Star => Some(ArithOp::Mul),
            TokenKind::Slash => Some(ArithOp::Div),
            _ => None,
        }
    }

    fn parse_primary(&mut self, depth: usize) -> PResult<Expr> {
        if depth > MAX_DEPTH {
            return Err(
                Diagnostic::error("expression nested too deeply").with_primary(
                    self.peek().span,
                    format!("more than {MAX_DEPTH} levels of nesting"),
                ),
            );
        }
        let token = self.peek().clone();
        let span = token.span;
        let kind = match token.kind {
            TokenKind::Int(v) => {
                self.bump();
                let v = i64::try_from(v).map_err(|_| {
                    Diagnostic::error(format!("integer `{v}` is too large"))
                        .with_primary(span, "attribute integers must fit in 63 bits")
                })?;
                ExprKind::Int(v)
            }
            TokenKind::Float(f) => {
                self.bump();
                ExprKind::Float(f)
            }
            TokenKind::Str(s) => {
                self.bump();
                ExprKind::Str(s)
            }
            TokenKind::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "true" => ExprKind::Bool(true),
                    "false" => ExprKind::Bool(false),
                    _ => ExprKind::Param(name),
                }
            }
            TokenKind::Minus => {
                self.bump();
                let inner = self.parse_primary(depth + 1)?;
                return Ok(Expr {
                    span: span.to(inner.span),
                    kind: ExprKind::Neg(Box::new(inner)),
                });
            }
            TokenKind::LParen => {
                self.bump();
                let mut inner = self.parse_expr(depth + 1)?;
                let end = self
                    .expect(&TokenKind::RParen, "`)`")
                    .map_err(|d| self.note_unclosed(d, span, "("))?;
                inner.span = span.to(end.span);
                return Ok(inner);
            }
            TokenKind::LBracket => {
                self.bump();
                let mut items = Vec::new();
                while !self.at(&TokenKind::RBracket) {
                    items.push(self.parse_expr(depth + 1)?);
                    if self.eat(&TokenKind::Comma).is_none() {
                        break;
                    }
                }
                let end = self
                    .expect(&TokenKind::RBracket, "`,` or `]` in the list")
                    .map_err(|d| self.note_unclosed(d, span, "["))?;
                return Ok(Expr {
                    span: span.to(end.span),
                    kind: ExprKind::List(items),
                });
            }
            _ => return Err(self.unexpected("an attribute value")),
        };
        Ok(Expr { kind, span })
    }
}
