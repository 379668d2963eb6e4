//! The lexer: source text to tokens with spans.

use crate::diagnostic::Diagnostic;
use crate::span::Span;

/// A token kind. Keywords are identifiers; the parser recognises them by text,
/// which keeps `input`, `output` and friends usable as attribute names.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    Ident(String),
    Int(u64),
    Float(f64),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Colon,
    Dot,
    /// `..=`, the inclusive range of a repetition.
    DotDotEq,
    Eq,
    Plus,
    Minus,
    Star,
    Slash,
    Newline,
    Eof,
}

impl TokenKind {
    /// How the token is named in "expected ..." messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Ident(s) => format!("`{s}`"),
            TokenKind::Int(i) => format!("integer `{i}`"),
            TokenKind::Float(f) => format!("number `{f:?}`"),
            TokenKind::Str(s) => format!("string {s:?}"),
            TokenKind::LParen => "`(`".into(),
            TokenKind::RParen => "`)`".into(),
            TokenKind::LBracket => "`[`".into(),
            TokenKind::RBracket => "`]`".into(),
            TokenKind::LBrace => "`{`".into(),
            TokenKind::RBrace => "`}`".into(),
            TokenKind::Comma => "`,`".into(),
            TokenKind::Colon => "`:`".into(),
            TokenKind::Dot => "`.`".into(),
            TokenKind::DotDotEq => "`..=`".into(),
            TokenKind::Eq => "`=`".into(),
            TokenKind::Plus => "`+`".into(),
            TokenKind::Minus => "`-`".into(),
            TokenKind::Star => "`*`".into(),
            TokenKind::Slash => "`/`".into(),
            TokenKind::Newline => "end of line".into(),
            TokenKind::Eof => "end of file".into(),
        }
    }
}

/// A token and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Splits a source text into tokens. Comments (`#` to end of line) and
/// blank space other than newlines are dropped; newlines end statements,
/// except inside parentheses and brackets, where they are dropped too.
pub fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let single = |kind: TokenKind| Token {
            kind,
            span: Span::new(start, start + 1),
        };
        match c {
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\n' => {
                if depth == 0 {
                    tokens.push(single(TokenKind::Newline));
                }
                i += 1;
            }
            b'(' | b'[' => {
                depth += 1;
                tokens.push(single(if c == b'(' {
                    TokenKind::LParen
                } else {
                    TokenKind::LBracket
                }));
                i += 1;
            }
            b')' | b']' => {
                depth = depth.saturating_sub(1);
                tokens.push(single(if c == b')' {
                    TokenKind::RParen
                } else {
                    TokenKind::RBracket
                }));
                i += 1;
            }
            b'{' | b'}' | b',' | b':' | b'=' | b'+' | b'-' | b'*' | b'/' => {
                let kind = match c {
                    b'{' => TokenKind::LBrace,
                    b'}' => TokenKind::RBrace,
                    b',' => TokenKind::Comma,
                    b':' => TokenKind::Colon,
                    b'=' => TokenKind::Eq,
                    b'+' => TokenKind::Plus,
                    b'-' => TokenKind::Minus,
                    b'*' => TokenKind::Star,
                    _ => TokenKind::Slash,
                };
                tokens.push(single(kind));
                i += 1;
            }
            b'.' => {
                if src[i..].starts_with("..=") {
                    tokens.push(Token {
                        kind: TokenKind::DotDotEq,
                        span: Span::new(i, i + 3),
                    });
                    i += 3;
                } else {
                    tokens.push(single(TokenKind::Dot));
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                let content_start = i;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] != b'"' {
                    return Err(Diagnostic::error("unterminated string")
                        .with_primary(Span::new(start, i), "this string has no closing `\"`")
                        .with_help("close the string on the same line"));
                }
                tokens.push(Token {
                    kind: TokenKind::Str(src[content_start..i].to_string()),
                    span: Span::new(start, i + 1),
                });
                i += 1;
            }
            b'0'..=b'9' => {
                let (token, next) = lex_number(src, i)?;
                tokens.push(token);
                i = next;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                tokens.push(Token {
                    kind: TokenKind::Ident(src[start..i].to_string()),
                    span: Span::new(start, i),
                });
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                let end = i + ch.len_utf8();
                return Err(Diagnostic::error(format!(
                    "unexpected character `{}`",
                    ch.escape_debug()
                ))
                .with_primary(Span::new(start, end), "not part of the `.nn` language")
                .with_help("names are ASCII letters, digits and `_`; comments start with `#`"));
            }
        }
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(src.len(), src.len()),
    });
    Ok(tokens)
}

/// Lexes an integer (`42`) or a float (`0.5`, `1e-5`, `2.5e3`) at `start`.
/// A `.` followed by a non-digit is not part of the number, so that
/// `layer1.0.conv1` lexes as a path.
fn lex_number(src: &str, start: usize) -> Result<(Token, usize), Diagnostic> {
    let bytes = src.as_bytes();
    let mut i = start;
    let digits = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(&mut i);
    let mut is_float = false;
    if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
        // `8.5` is a float, but in `features.8..=10` the `.` starts a range,
        // and in `layer1.0.conv1` the path segment `0` is followed by `.`.
        // Paths only contain integers as whole segments after a `.`, so a
        // number immediately preceded by `.` is a path index, never a float.
        let after_dot = start > 0 && bytes[start - 1] == b'.';
        if !after_dot {
            is_float = true;
            i += 1;
            digits(&mut i);
        }
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            is_float = true;
            i = j;
            digits(&mut i);
        }
    }
    let text = &src[start..i];
    let span = Span::new(start, i);
    let kind = if is_float {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => TokenKind::Float(f),
            _ => {
                return Err(
                    Diagnostic::error(format!("number `{text}` is out of range"))
                        .with_primary(span, "not a finite 64-bit float"),
                )
            }
        }
    } else {
        match text.parse::<u64>() {
            Ok(v) => TokenKind::Int(v),
            Err(_) => {
                return Err(Diagnostic::error(format!("integer `{text}` is too large"))
                    .with_primary(span, "does not fit in 64 bits"))
            }
        }
    };
    Ok((Token { kind, span }, i))
}
