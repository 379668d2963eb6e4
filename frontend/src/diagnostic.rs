//! Diagnostics: what went wrong, where, and how to fix it, rendered like rustc.
//!
//! Every error that points into a `.nn` file, from the parser or from the
//! compiler's lowering and shape checks, is a [`Diagnostic`]. Rendering goes
//! through codespan-reporting so the output matches what Rust users know:
//! `error: ...`, `--> file:line:col`, the source line, a caret and a label,
//! then `= help:` notes.

use crate::span::{SourceFile, Span};
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};

/// How bad it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A labelled span.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    /// The primary label says what is wrong; secondary labels point at
    /// related places (a first definition, the block being called).
    pub primary: bool,
}

/// One diagnostic message with its labels and notes.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The identifier of the check that raised it, rendered in brackets
    /// after the severity (`warning[nnc::gridding]`); lints have one,
    /// errors none.
    pub code: Option<String>,
    /// Lowercase, no trailing period, meaningful alone.
    pub message: String,
    pub labels: Vec<Label>,
    /// Help lines rendered as `= help: ...`.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error with a message and no labels yet.
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code: None,
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A warning with a message and no labels yet.
    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Sets the identifier shown after the severity.
    pub fn with_code(mut self, code: impl Into<String>) -> Diagnostic {
        self.code = Some(code.into());
        self
    }

    /// Adds the primary label.
    pub fn with_primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    /// Adds a secondary label.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    /// Adds a help note.
    pub fn with_help(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(format!("help: {}", note.into()));
        self
    }

    /// Adds a plain note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(format!("note: {}", note.into()));
        self
    }

    /// Renders without colour, as snapshots and library users see it.
    pub fn render(&self, file: &SourceFile) -> String {
        let mut buffer = termcolor::Buffer::no_color();
        self.emit(file, &mut buffer);
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }

    /// Writes the diagnostic to a terminal (the binary uses this for colour).
    pub fn emit(&self, file: &SourceFile, out: &mut dyn termcolor::WriteColor) {
        let simple = SimpleFile::new(file.name(), file.text());
        let config = term::Config::default();
        // A failure to write to the terminal is not something a diagnostic
        // can report; the caller sees the (partial) output it got.
        let _ = term::emit(out, &config, &simple, &self.to_codespan(file));
    }

    fn to_codespan(&self, file: &SourceFile) -> CsDiagnostic<()> {
        let base = match self.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        };
        let len = file.text().len();
        let labels = self
            .labels
            .iter()
            .map(|l| {
                // Clamp so that a span from another text can never make the
                // renderer index out of bounds.
                let start = (l.span.start as usize).min(len);
                let end = (l.span.end as usize).clamp(start, len);
                let label = if l.primary {
                    CsLabel::primary((), start..end)
                } else {
                    CsLabel::secondary((), start..end)
                };
                label.with_message(l.message.clone())
            })
            .collect();
        let base = match &self.code {
            Some(code) => base.with_code(code.clone()),
            None => base,
        };
        base.with_message(self.message.clone())
            .with_labels(labels)
            .with_notes(self.notes.clone())
    }
}

/// Renders a list of diagnostics, separated as rustc separates them.
pub fn render_all(diagnostics: &[Diagnostic], file: &SourceFile) -> String {
    diagnostics
        .iter()
        .map(|d| d.render(file))
        .collect::<Vec<_>>()
        .join("")
}

/// The closest candidate to `name` by edit distance, for "did you mean" help.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.len() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
