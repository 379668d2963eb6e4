//! Lints: the design rules of the notes, checked on a model as lowered.
//!
//! A lint finds a place where a model is valid but probably not what its
//! author meant (dilation rates that leave holes, a transposed convolution
//! that makes checkerboard artifacts, a batch norm that costs a kernel it
//! need not), and says so with a warning rendered like an error: the source
//! line, a label under the binding, and a `help:` line with the fix.
//!
//! One lint per file, a free function `fn(&Graph) -> Vec<Diagnostic>`, one
//! registry table [`LINTS`]. The file name, the registry name and the
//! identifier agree (`lint/gridding.rs`, `gridding`, `nnc::gridding`).
//! [`check`] runs every lint at the level [`Levels`] gives it (the
//! command line's `--allow ID` and `--deny warnings`).
//!
//! Lints read the IR as lowered, before any pass: the ops the `.nn` text
//! writes (for an ONNX model, the text it is imported as), each with the
//! location of its binding. A warning's primary label is on the binding it
//! is about; a node without a location is named in the message and its
//! label becomes a note, so the warning renders without source. Lints never
//! change the graph and never fail: a model they cannot judge gets no
//! warning.

pub mod checkerboard;
pub mod dropout_keep_probability;
pub mod explicit_pad;
pub mod gridding;
pub mod receptive_field;
pub mod unfolded_batch_norm;

use crate::ir::{
    AvgPool2dAttrs, Conv2dAttrs, ConvTranspose2dAttrs, DropoutAttrs, Graph, MaxPool2dAttrs, Node,
    NodeId, Op, PadAttrs,
};
use nnc_frontend::{Diagnostic, Severity};

/// The prefix of every lint identifier.
pub const PREFIX: &str = "nnc::";

/// The name that stands for every lint in `--allow` and `--deny`.
pub const ALL: &str = "warnings";

/// A named check.
pub struct Lint {
    /// The registry name (`gridding`); the identifier is `nnc::gridding`.
    pub name: &'static str,
    /// One line for `nnc lints` and the docs: what it warns about.
    pub description: &'static str,
    /// Finds every place the rule is broken, as warnings without a code.
    pub check: fn(&Graph) -> Vec<Diagnostic>,
}

impl Lint {
    /// The identifier (`nnc::gridding`), as warnings show it and
    /// `--allow` takes it.
    pub fn id(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }
}

/// Every lint, in the order their warnings are listed for one binding.
pub const LINTS: &[Lint] = &[
    Lint {
        name: gridding::NAME,
        description: "a chain of dilated convolutions whose rates leave input pixels the top layer never sees (the HDC rule)",
        check: gridding::gridding,
    },
    Lint {
        name: checkerboard::NAME,
        description: "a conv_transpose2d whose kernel is not a multiple of its stride overlaps unevenly (checkerboard artifacts)",
        check: checkerboard::checkerboard,
    },
    Lint {
        name: receptive_field::NAME,
        description: "the units global pooling or a classifier reads each see less than the whole input",
        check: receptive_field::receptive_field,
    },
    Lint {
        name: unfolded_batch_norm::NAME,
        description: "a batch_norm that fold-bn cannot fold (after an activation, or after a producer with another user) costs a kernel",
        check: unfolded_batch_norm::unfolded_batch_norm,
    },
    Lint {
        name: dropout_keep_probability::NAME,
        description: "a classic dropout whose p (the drop probability) is above 0.5 looks like a keep probability",
        check: dropout_keep_probability::dropout_keep_probability,
    },
    Lint {
        name: explicit_pad::NAME,
        description: "a pad whose only user is a conv2d or pool that could carry the padding itself",
        check: explicit_pad::explicit_pad,
    },
];

/// The lint `name` names: its identifier (`nnc::gridding`) or its
/// registry name (`gridding`).
pub fn find(name: &str) -> Option<&'static Lint> {
    let short = name.strip_prefix(PREFIX).unwrap_or(name);
    LINTS.iter().find(|l| l.name == short)
}

/// What happens to a lint's warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Not reported.
    Allow,
    /// Reported as warnings (the default).
    Warn,
    /// Reported as errors: the command fails.
    Deny,
}

/// Why `--allow` or `--deny` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LintError {
    /// A name that is neither a lint nor `warnings`.
    #[error("unknown lint `{name}`; the lints are: {}, or `warnings` for all", lint_ids().join(", "))]
    UnknownLint { name: String },
    /// One name both allowed and denied.
    #[error("`{name}` is both allowed and denied")]
    Conflict { name: String },
}

/// The identifiers of all lints, in registry order.
pub fn lint_ids() -> Vec<String> {
    LINTS.iter().map(Lint::id).collect()
}

/// The level of every lint. A lint named by `--allow` or `--deny` takes
/// that level; otherwise `warnings` in either list decides; otherwise it
/// warns. So `--deny warnings --allow nnc::gridding` makes every warning
/// but gridding an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    allow_all: bool,
    deny_all: bool,
    allow: Vec<&'static str>,
    deny: Vec<&'static str>,
}

impl Levels {
    /// Levels from the names given to `--allow` and `--deny`: lint
    /// identifiers, registry names, or `warnings`.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Levels, LintError> {
        let mut levels = Levels::default();
        for (names, all, list) in [
            (allow, &mut levels.allow_all, &mut levels.allow),
            (deny, &mut levels.deny_all, &mut levels.deny),
        ] {
            for name in names {
                if name == ALL {
                    *all = true;
                } else {
                    let lint =
                        find(name).ok_or_else(|| LintError::UnknownLint { name: name.clone() })?;
                    list.push(lint.name);
                }
            }
        }
        if levels.allow_all && levels.deny_all {
            return Err(LintError::Conflict { name: ALL.into() });
        }
        if let Some(name) = levels.allow.iter().find(|n| levels.deny.contains(n)) {
            return Err(LintError::Conflict {
                name: format!("{PREFIX}{name}"),
            });
        }
        Ok(levels)
    }

    /// The level of `lint`.
    pub fn level(&self, lint: &Lint) -> Level {
        if self.allow.contains(&lint.name) {
            Level::Allow
        } else if self.deny.contains(&lint.name) {
            Level::Deny
        } else if self.allow_all {
            Level::Allow
        } else if self.deny_all {
            Level::Deny
        } else {
            Level::Warn
        }
    }

    /// The flag that makes `lint` an error, for the note an error carries.
    fn deny_flag(&self, lint: &Lint) -> String {
        if self.deny.contains(&lint.name) {
            format!("--deny {}", lint.id())
        } else {
            format!("--deny {ALL}")
        }
    }
}

/// Runs every lint that `levels` does not allow; returns its findings in
/// source order, each with its identifier as the code, as a warning or (when
/// denied) an error, and a note saying which flag silences or denies it.
pub fn check(graph: &Graph, levels: &Levels) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for lint in LINTS {
        let level = levels.level(lint);
        if level == Level::Allow {
            continue;
        }
        for d in (lint.check)(graph) {
            let d = d.with_code(lint.id());
            found.push(match level {
                Level::Allow | Level::Warn => {
                    d.with_note(format!("`--allow {}` silences this warning", lint.id()))
                }
                Level::Deny => Diagnostic {
                    severity: Severity::Error,
                    ..d
                }
                .with_note(format!(
                    "`{}` makes this warning an error",
                    levels.deny_flag(lint)
                )),
            });
        }
    }
    // Source order; findings without a location last. The sort is stable,
    // so one binding's findings keep the registry order.
    found.sort_by_key(|d| {
        d.labels
            .iter()
            .find(|l| l.primary)
            .map_or(u32::MAX, |l| l.span.start)
    });
    found
}

// Helpers shared by the lints.

/// A warning about `node` with `label` under its binding; without a source
/// location the label becomes a note naming the node.
pub(crate) fn warning(node: &Node, message: String, label: String) -> Diagnostic {
    let d = Diagnostic::warning(message);
    match node.loc {
        Some(loc) => d.with_primary(loc.span, label),
        None => d.with_note(format!("`{}`: {label}", node.name)),
    }
}

/// Adds a secondary label under `node`'s binding, unless it has no
/// location or a label already marks that span (the bindings of one block
/// instantiated several times share a line).
pub(crate) fn also_at(d: Diagnostic, node: &Node, label: String) -> Diagnostic {
    match node.loc {
        Some(loc) if !d.labels.iter().any(|l| l.span == loc.span) => {
            d.with_secondary(loc.span, label)
        }
        Some(_) | None => d,
    }
}

/// `[a, b]` as the `.nn` text writes a pair attribute: `a` when both agree.
pub(crate) fn pair(p: [usize; 2]) -> String {
    if p[0] == p[1] {
        p[0].to_string()
    } else {
        format!("[{}, {}]", p[0], p[1])
    }
}

/// A comma-separated list of binding names in backticks.
pub(crate) fn names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the lints need to know about an op. This is the one exhaustive
/// match over [`Op`] in the lints: a new op must be classified here.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind<'a> {
    /// A model input.
    Input,
    /// A weight or a `constant`: a fixed tensor, the same for every input.
    Fixed,
    /// `conv2d` (and the depthwise form `lower-conv` makes of it).
    Conv(&'a Conv2dAttrs),
    ConvTranspose(&'a ConvTranspose2dAttrs),
    Linear,
    MaxPool(&'a MaxPool2dAttrs),
    AvgPool(&'a AvgPool2dAttrs),
    GlobalPool,
    BatchNorm,
    /// `group_norm`, `layer_norm`, `instance_norm`: each output position is
    /// its input position, normalised by statistics of the sample.
    Norm,
    /// `relu`, `relu6`, `leaky_relu`, `sigmoid`, `tanh`, `clip`.
    Activation,
    /// `add`, `mul`, `sub`, `div` and the fused `elementwise` chain: per
    /// position, with broadcasting.
    Arithmetic,
    Dropout(&'a DropoutAttrs),
    Identity,
    Pad(&'a PadAttrs),
    /// `flatten` and `reshape`: a feature map becomes a feature vector.
    Flatten,
    /// Ops the lints do not look through: `concat`, `softmax`, `permute`,
    /// `select`, `matmul`, the recurrent ops, and the ops passes make.
    Other,
}

/// How the lints see `op`.
pub(crate) fn kind(op: &Op) -> Kind<'_> {
    match op {
        Op::Input(_) => Kind::Input,
        Op::Weight(_) | Op::Constant(_) => Kind::Fixed,
        Op::Conv2d(a) | Op::DepthwiseConv2d(a) => Kind::Conv(a),
        Op::ConvTranspose2d(a) => Kind::ConvTranspose(a),
        Op::Linear(_) => Kind::Linear,
        Op::MaxPool2d(a) => Kind::MaxPool(a),
        Op::AvgPool2d(a) => Kind::AvgPool(a),
        Op::GlobalAvgPool => Kind::GlobalPool,
        Op::BatchNorm(_) => Kind::BatchNorm,
        Op::GroupNorm(_) | Op::LayerNorm(_) | Op::InstanceNorm(_) | Op::LocalResponseNorm(_) => {
            Kind::Norm
        }
        Op::Activation(_) | Op::Unary(_) | Op::Prelu(_) => Kind::Activation,
        Op::Binary(_) | Op::Elementwise(_) => Kind::Arithmetic,
        Op::Dropout(a) => Kind::Dropout(a),
        Op::Identity => Kind::Identity,
        Op::Pad(a) => Kind::Pad(a),
        Op::Flatten(_) | Op::Reshape(_) => Kind::Flatten,
        Op::Permute(_)
        | Op::Select(_)
        | Op::Concat(_)
        | Op::Softmax(_)
        | Op::Rnn(_)
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::MatMul
        | Op::Im2Col(_)
        | Op::Gemm(_)
        | Op::Col2Im(_)
        | Op::SeparableConv2d(_)
        | Op::WinogradInput(_)
        | Op::WinogradOutput(_)
        | Op::Indexing(_)
        | Op::LogSoftmax(_)
        | Op::Reduce(_)
        | Op::Interpolate(_) => Kind::Other,
    }
}

/// The operand whose position `id` keeps, when every output position of
/// `id` depends on the same position of that one operand and on nothing
/// else that varies across positions: activations, norms, dropout,
/// identity, a 1x1 stride-1 conv, and arithmetic whose other operands are
/// fixed or constant across positions (a bias, a per-channel scale).
/// `None` for every other op, and for arithmetic on two maps (a residual
/// add), whose positions come from two places.
pub(crate) fn per_position(graph: &Graph, id: NodeId) -> Option<NodeId> {
    let node = graph.node(id);
    let first = node.inputs().first().copied();
    match kind(&node.op) {
        Kind::Activation | Kind::BatchNorm | Kind::Norm | Kind::Dropout(_) | Kind::Identity => {
            first
        }
        Kind::Conv(a) if a.kernel == [1, 1] && a.stride == [1, 1] => first,
        Kind::Arithmetic => {
            let mut varying = node
                .inputs()
                .iter()
                .copied()
                .filter(|&i| varies_across_positions(graph.node(i)));
            match (varying.next(), varying.next()) {
                (Some(only), None) => Some(only),
                (Some(_), Some(_)) | (None, _) => None,
            }
        }
        Kind::Conv(_)
        | Kind::Input
        | Kind::Fixed
        | Kind::ConvTranspose(_)
        | Kind::Linear
        | Kind::MaxPool(_)
        | Kind::AvgPool(_)
        | Kind::GlobalPool
        | Kind::Pad(_)
        | Kind::Flatten
        | Kind::Other => None,
    }
}

/// True unless `node` is fixed (a weight or constant) or its last two dims,
/// the ones that broadcast against `H, W`, are both 1.
fn varies_across_positions(node: &Node) -> bool {
    !matches!(kind(&node.op), Kind::Fixed) && node.ty.shape.iter().rev().take(2).any(|&d| d > 1)
}

/// `v` as a short decimal: at most four places, no trailing zeros
/// (`0.9` for the `f32` 0.9, not `0.8999999761581421`).
pub(crate) fn decimal(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}
