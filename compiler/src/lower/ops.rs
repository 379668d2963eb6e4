//! From a call `op(x, key=value, ...)` to a typed [`Op`]: the op registry,
//! keyword attributes with their defaults, and their type checks.
//!
//! Each builder reads every attribute its op knows through [`AttrReader`],
//! so the reader also knows the full list of valid names when it reports an
//! unknown one with a "did you mean".

mod indexing;
mod interpolate;

use super::value::{suggest, Value};
use crate::ir::TensorType;
use crate::ir::*;
use crate::shape::resolve_dim;
use nnc_frontend::{Diagnostic, Span};
use std::collections::BTreeMap;

/// The most stacked layers an `rnn` or `lstm` may have.
const MAX_RECURRENT_LAYERS: usize = 1024;

/// How many tensor operands an op takes.
#[derive(Clone, Copy)]
enum Arity {
    Exactly(usize),
    AtLeast(usize),
    Between(usize, usize),
}

/// The ops of the language other than the classes ([`Activation`],
/// [`UnaryFunction`], [`BinaryOp`], [`Indexing`], [`Reduction`]), with their
/// tensor arity. The names here
/// are the names users write; `build` below turns each into an `Op`.
const OPS: &[(&str, Arity)] = &[
    ("conv2d", Arity::Exactly(1)),
    ("conv_transpose2d", Arity::Exactly(1)),
    ("batch_norm", Arity::Exactly(1)),
    ("group_norm", Arity::Exactly(1)),
    ("layer_norm", Arity::Exactly(1)),
    ("instance_norm", Arity::Exactly(1)),
    ("max_pool2d", Arity::Exactly(1)),
    ("avg_pool2d", Arity::Exactly(1)),
    ("global_avg_pool", Arity::Exactly(1)),
    ("global_max_pool", Arity::Exactly(1)),
    ("linear", Arity::Exactly(1)),
    ("flatten", Arity::Exactly(1)),
    ("reshape", Arity::Exactly(1)),
    ("permute", Arity::Exactly(1)),
    ("select", Arity::Exactly(1)),
    ("concat", Arity::AtLeast(1)),
    ("softmax", Arity::Exactly(1)),
    ("log_softmax", Arity::Exactly(1)),
    ("local_response_norm", Arity::Exactly(1)),
    ("dropout", Arity::Exactly(1)),
    ("identity", Arity::Exactly(1)),
    ("rnn", Arity::Between(1, 2)),
    ("lstm", Arity::Between(1, 3)),
    ("matmul", Arity::Exactly(2)),
    ("pad", Arity::Exactly(1)),
    ("constant", Arity::Exactly(0)),
    ("gru", Arity::Between(1, 2)),
    ("prelu", Arity::Exactly(1)),
    ("interpolate", Arity::Exactly(1)),
];

/// The names of all ops, for "did you mean" suggestions.
pub fn op_names() -> impl Iterator<Item = &'static str> {
    OPS.iter()
        .map(|(name, _)| *name)
        .chain(Activation::ALL.iter().map(|a| a.name()))
        .chain(UnaryFunction::ALL.iter().map(|f| f.name()))
        .chain(
            BinaryOp::ALL
                .iter()
                .map(|b| b.name())
                // `pow` is both; list it once.
                .filter(|name| UnaryFunction::from_name(name).is_none()),
        )
        .chain(Indexing::NAMES)
        .chain(Reduction::ALL.iter().map(|r| r.name()))
}

/// True if `name` is an op.
pub fn is_op(name: &str) -> bool {
    arity(name).is_some()
}

/// The tensor arity of the op `name`.
fn arity(name: &str) -> Option<Arity> {
    let unary = Activation::from_name(name).is_some()
        || UnaryFunction::from_name(name).is_some()
        || Reduction::from_name(name).is_some();
    let binary = BinaryOp::from_name(name).is_some();
    if unary && binary {
        // `pow(x, exponent=2.0)` and `pow(a, b)`.
        Some(Arity::Between(1, 2))
    } else if unary {
        Some(Arity::Exactly(1))
    } else if binary {
        Some(Arity::Exactly(2))
    } else if Indexing::NAMES.contains(&name) {
        Some(Arity::Exactly(1))
    } else {
        OPS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }
}

/// What an op of the language takes, as its builder reads it: the tensor
/// operands and the keyword attributes.
#[derive(Clone, Debug)]
pub struct Signature {
    pub name: &'static str,
    /// The fewest and the most tensor operands (`None`: no limit).
    pub tensors: (usize, Option<usize>),
    pub required: Vec<&'static str>,
    pub optional: Vec<&'static str>,
    /// What each attribute (required or optional) takes, as its builder
    /// reads it.
    pub kinds: BTreeMap<&'static str, AttrKind>,
}

/// The values an attribute takes, by the [`AttrReader`] method that reads
/// it; the fuzz targets draw attribute values from these.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrKind {
    /// An int of any sign (a dim, an index, an offset).
    Int,
    /// An int of at least `min`.
    Count { min: usize },
    /// An int of at least `min`, or a list of two such ints.
    Pair { min: usize },
    /// An int, a list `[h, w]` or `[top, left, bottom, right]`, none negative.
    Padding,
    /// A number (an int is accepted).
    Float,
    /// `true` or `false`.
    Bool,
    /// One of these strings.
    Choice(Vec<&'static str>),
    /// A list of ints.
    Ints,
    /// A positive number or a list of two.
    Scales,
}

/// The signature of every op, read off its builder by building it with no
/// attributes on a 4-D input (the fuzz suite generates calls from these).
pub fn signatures() -> Vec<Signature> {
    let x = TensorType::f32(vec![1, 4, 8, 8]);
    op_names()
        .map(|name| {
            let mut r = AttrReader::new(name, Span::default(), &[]);
            let _ = build(name, &mut r, &[&x]);
            let required = r.missing.clone();
            let kinds = r.kinds.iter().cloned().collect();
            let mut optional: Vec<&'static str> = r
                .known
                .iter()
                .copied()
                .filter(|k| !required.contains(k))
                .collect();
            optional.dedup();
            let tensors = match arity(name) {
                Some(Arity::Exactly(n)) => (n, Some(n)),
                Some(Arity::AtLeast(n)) => (n, None),
                Some(Arity::Between(low, high)) => (low, Some(high)),
                None => (0, Some(0)),
            };
            Signature {
                name,
                tensors,
                required,
                optional,
                kinds,
            }
        })
        .collect()
}

/// Checks the number of tensor operands of an op call.
pub fn check_arity(name: &str, found: usize, span: Span) -> Result<(), Diagnostic> {
    let Some(arity) = arity(name) else {
        return Ok(());
    };
    let (ok, expected) = match arity {
        Arity::Exactly(n) => (
            found == n,
            format!("{n} tensor argument{}", if n == 1 { "" } else { "s" }),
        ),
        Arity::AtLeast(n) => (
            found >= n,
            format!(
                "at least {n} tensor argument{}",
                if n == 1 { "" } else { "s" }
            ),
        ),
        Arity::Between(low, high) => (
            (low..=high).contains(&found),
            format!("{low} to {high} tensor arguments"),
        ),
    };
    if ok {
        return Ok(());
    }
    Err(
        Diagnostic::error(format!("`{name}` takes {expected}, found {found}"))
            .with_primary(span, format!("expected {expected}"))
            .with_help("tensors are passed by position; attributes are written `name=value`"),
    )
}

/// A keyword attribute as written at the call site, evaluated.
pub struct KeywordArg {
    pub name: String,
    pub name_span: Span,
    pub value: Value,
    pub value_span: Span,
}

/// Reads the keyword attributes of one call, remembering which names the op
/// asked for.
pub struct AttrReader<'a> {
    op: &'a str,
    call_span: Span,
    args: &'a [KeywordArg],
    known: Vec<&'static str>,
    /// What each attribute in `known` takes, in the order first asked for.
    kinds: Vec<(&'static str, AttrKind)>,
    /// Required attributes found missing.
    missing: Vec<&'static str>,
    errors: Vec<Diagnostic>,
}

impl<'a> AttrReader<'a> {
    /// A reader over the keyword arguments of a call to `op`.
    pub fn new(op: &'a str, call_span: Span, args: &'a [KeywordArg]) -> AttrReader<'a> {
        AttrReader {
            op,
            call_span,
            args,
            known: Vec::new(),
            kinds: Vec::new(),
            missing: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The argument `name`, if given; records that the op knows `name` and
    /// what it takes.
    fn get(&mut self, name: &'static str, kind: AttrKind) -> Option<&'a KeywordArg> {
        self.know(name, kind);
        self.args.iter().find(|a| a.name == name)
    }

    /// Records that the op knows `name` and what it takes.
    fn know(&mut self, name: &'static str, kind: AttrKind) {
        self.known.push(name);
        if !self.kinds.iter().any(|(n, _)| *n == name) {
            self.kinds.push((name, kind));
        }
    }

    fn type_error(&mut self, arg: &KeywordArg, expected: &str) {
        let mut d = Diagnostic::error(format!(
            "attribute `{}` of `{}` expects {expected}, found {}",
            arg.name,
            self.op,
            arg.value.describe()
        ))
        .with_primary(arg.value_span, format!("expected {expected}"));
        // `kernel="3"`: the number is right, the quotes are not.
        if let Value::Str(text) = &arg.value {
            if text.trim().parse::<f64>().is_ok() && expected != "a string" {
                d = d.with_help(format!("remove the quotes: `{}={}`", arg.name, text.trim()));
            }
        }
        self.errors.push(d);
    }

    fn missing(&mut self, name: &'static str, example: &str) {
        self.missing.push(name);
        self.errors.push(
            Diagnostic::error(format!(
                "missing required attribute `{name}` for `{}`",
                self.op
            ))
            .with_primary(self.call_span, format!("`{name}` is required"))
            .with_help(format!("add `{name}={example}`")),
        );
    }

    fn range_error(&mut self, arg: &KeywordArg, what: &str) {
        self.errors.push(
            Diagnostic::error(format!(
                "attribute `{}` of `{}` must be {what}",
                arg.name, self.op
            ))
            .with_primary(arg.value_span, format!("must be {what}")),
        );
    }

    /// An integer attribute, or `None` when absent or ill-typed.
    pub fn int(&mut self, name: &'static str) -> Option<i64> {
        let arg = self.get(name, AttrKind::Int)?;
        match arg.value {
            Value::Int(v) => Some(v),
            _ => {
                self.type_error(arg, "an int");
                None
            }
        }
    }

    /// A count attribute (at least `min`) with a default.
    pub fn count(&mut self, name: &'static str, default: usize, min: usize) -> usize {
        match self.get(name, AttrKind::Count { min }) {
            None => default,
            Some(arg) => match arg.value {
                Value::Int(v) if v >= min as i64 => v as usize,
                Value::Int(_) => {
                    self.range_error(arg, &format!("at least {min}"));
                    default.max(min)
                }
                _ => {
                    self.type_error(arg, "an int");
                    default.max(min)
                }
            },
        }
    }

    /// A required count attribute (at least 1).
    pub fn required_count(&mut self, name: &'static str, example: &str) -> usize {
        if self.args.iter().any(|a| a.name == name) {
            self.count(name, 1, 1)
        } else {
            self.know(name, AttrKind::Count { min: 1 });
            self.missing(name, example);
            1
        }
    }

    /// A pair attribute (`3` or `[3, 5]`), each element at least `min`.
    pub fn pair(
        &mut self,
        name: &'static str,
        default: Option<[usize; 2]>,
        min: usize,
    ) -> [usize; 2] {
        let fallback = default.unwrap_or([1, 1]);
        let Some(arg) = self.get(name, AttrKind::Pair { min }) else {
            if default.is_none() {
                self.missing(name, "3");
            }
            return fallback;
        };
        let pair = match &arg.value {
            Value::Int(v) => Some([*v, *v]),
            Value::List(items) if items.len() == 2 => match (&items[0], &items[1]) {
                (Value::Int(a), Value::Int(b)) => Some([*a, *b]),
                _ => None,
            },
            _ => None,
        };
        match pair {
            None => {
                self.type_error(arg, "an int or a list of 2 ints");
                fallback
            }
            Some([a, b]) if a < min as i64 || b < min as i64 => {
                self.range_error(arg, &format!("at least {min}"));
                fallback
            }
            Some([a, b]) => [a as usize, b as usize],
        }
    }

    /// A padding attribute, zero by default: `1` (every side), `[h, w]`
    /// (both sides of each axis) or `[top, left, bottom, right]`; no side
    /// negative.
    pub fn padding(&mut self, name: &'static str) -> Padding {
        let Some(arg) = self.get(name, AttrKind::Padding) else {
            return Padding::ZERO;
        };
        let sides = match &arg.value {
            Value::Int(v) => Some(vec![*v; 4]),
            Value::List(items) if matches!(items.len(), 2 | 4) => items
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>()
                .map(|v| match v[..] {
                    [h, w] => vec![h, w, h, w],
                    _ => v,
                }),
            _ => None,
        };
        match sides {
            None => {
                self.type_error(
                    arg,
                    "an int, a list [h, w] or a list [top, left, bottom, right]",
                );
                Padding::ZERO
            }
            Some(v) if v.iter().any(|&p| p < 0) => {
                self.range_error(arg, "at least 0");
                Padding::ZERO
            }
            Some(v) => {
                Padding::from_sides([v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize])
            }
        }
    }

    /// A float attribute (ints are accepted) with a default.
    pub fn float(&mut self, name: &'static str, default: f32) -> f32 {
        self.optional_float(name).unwrap_or(default)
    }

    /// A float attribute (ints are accepted), `None` when absent.
    pub fn optional_float(&mut self, name: &'static str) -> Option<f32> {
        let arg = self.get(name, AttrKind::Float)?;
        match arg.value {
            Value::Float(v) => Some(v as f32),
            Value::Int(v) => Some(v as f32),
            _ => {
                self.type_error(arg, "a number");
                None
            }
        }
    }

    /// A required float attribute.
    pub fn required_float(&mut self, name: &'static str, example: &str) -> f32 {
        if self.args.iter().any(|a| a.name == name) {
            self.optional_float(name).unwrap_or(0.0)
        } else {
            self.know(name, AttrKind::Float);
            self.missing(name, example);
            0.0
        }
    }

    /// A bool attribute with a default.
    pub fn bool(&mut self, name: &'static str, default: bool) -> bool {
        let Some(arg) = self.get(name, AttrKind::Bool) else {
            return default;
        };
        match arg.value {
            Value::Bool(v) => v,
            _ => {
                self.type_error(arg, "a bool (`true` or `false`)");
                default
            }
        }
    }

    /// A string attribute restricted to `choices`, with a default.
    pub fn choice(
        &mut self,
        name: &'static str,
        choices: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        let Some(arg) = self.get(name, AttrKind::Choice(choices.to_vec())) else {
            return default;
        };
        match &arg.value {
            Value::Str(s) => match choices.iter().find(|c| **c == s.as_str()) {
                Some(c) => c,
                None => {
                    let list: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                    self.range_error(arg, &format!("one of {}", list.join(", ")));
                    if let (Some(close), Some(d)) =
                        (suggest(s, choices.iter().copied()), self.errors.pop())
                    {
                        self.errors
                            .push(d.with_help(format!("did you mean \"{close}\"?")));
                    }
                    default
                }
            },
            _ => {
                self.type_error(arg, "a string");
                default
            }
        }
    }

    /// A list-of-ints attribute, `None` when absent or ill-typed.
    pub fn ints(&mut self, name: &'static str) -> Option<Vec<i64>> {
        let arg = self.get(name, AttrKind::Ints)?;
        let list = match &arg.value {
            Value::List(items) => items
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>(),
            _ => None,
        };
        if list.is_none() {
            self.type_error(arg, "a list of ints");
        }
        list
    }

    /// The span of an attribute's value, or the call's span when absent.
    pub fn span_of(&self, name: &str) -> Span {
        self.args
            .iter()
            .find(|a| a.name == name)
            .map_or(self.call_span, |a| a.value_span)
    }

    /// Reports attributes the op did not ask for, and returns all errors.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        for arg in self.args {
            if !self.known.contains(&arg.name.as_str()) {
                let mut d = Diagnostic::error(format!(
                    "unknown attribute `{}` for `{}`",
                    arg.name, self.op
                ))
                .with_primary(arg.name_span, "unknown attribute");
                if let Some(s) = suggest(&arg.name, self.known.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                } else {
                    let mut known = self.known.clone();
                    known.sort_unstable();
                    known.dedup();
                    d = d.with_help(format!("`{}` takes: {}", self.op, known.join(", ")));
                }
                self.errors.push(d);
            }
        }
        self.errors
    }
}

fn dim_error(r: &mut AttrReader<'_>, name: &str, message: String, label: String) {
    let span = r.span_of(name);
    r.errors.push(
        Diagnostic::error(message)
            .with_primary(span, label)
            .with_help("dims count from 0; a negative dim counts from the end, -1 being the last"),
    );
}

/// Builds the op `name` from its attributes; `xs` are the data operand types.
/// Returns the op, or every attribute error found.
pub fn build(name: &str, r: &mut AttrReader<'_>, xs: &[&TensorType]) -> Option<Op> {
    if let Some(act) = Activation::from_name(name) {
        return Some(Op::Activation(activation(act, r)));
    }
    // A name of both classes (`pow`) is binary when it is given two tensors.
    let binary = BinaryOp::from_name(name).filter(|_| xs.len() == 2);
    if let Some(f) = UnaryFunction::from_name(name).filter(|_| binary.is_none()) {
        return Some(Op::Unary(unary(f, r)));
    }
    if let Some(op) = binary.or(BinaryOp::from_name(name)) {
        return Some(Op::Binary(op));
    }
    if Indexing::NAMES.contains(&name) {
        return indexing::build(name, r, xs.first().copied()).map(Op::Indexing);
    }
    let rank = xs.first().map_or(0, |x| x.rank());
    if let Some(function) = Reduction::from_name(name) {
        return Some(Op::Reduce(reduce(function, r, rank)));
    }
    let resolve = |r: &mut AttrReader<'_>, attr: &'static str, value: i64, extra: usize| -> usize {
        match resolve_dim(name, value, rank + extra) {
            Ok(d) => d,
            Err(e) => {
                dim_error(r, attr, e.message, e.label);
                0
            }
        }
    };
    let op = match name {
        "conv2d" => Op::Conv2d(Conv2dAttrs {
            out_channels: r.required_count("out", "64"),
            kernel: r.pair("kernel", None, 1),
            stride: r.pair("stride", Some([1, 1]), 1),
            padding: r.padding("pad"),
            dilation: r.pair("dilation", Some([1, 1]), 1),
            groups: r.count("groups", 1, 1),
            bias: r.bool("bias", true),
            epilogue: Epilogue::default(),
        }),
        "conv_transpose2d" => Op::ConvTranspose2d(ConvTranspose2dAttrs {
            out_channels: r.required_count("out", "64"),
            kernel: r.pair("kernel", None, 1),
            stride: r.pair("stride", Some([1, 1]), 1),
            padding: r.pair("pad", Some([0, 0]), 0),
            output_padding: r.pair("output_padding", Some([0, 0]), 0),
            dilation: r.pair("dilation", Some([1, 1]), 1),
            groups: r.count("groups", 1, 1),
            bias: r.bool("bias", true),
            epilogue: Epilogue::default(),
        }),
        "batch_norm" => Op::BatchNorm(BatchNormAttrs {
            eps: r.float("eps", 1e-5),
        }),
        "group_norm" => Op::GroupNorm(GroupNormAttrs {
            groups: r.required_count("groups", "32"),
            eps: r.float("eps", 1e-5),
            affine: r.bool("affine", true),
        }),
        "layer_norm" => Op::LayerNorm(LayerNormAttrs {
            normalized_dims: r.count("dims", rank.saturating_sub(1).max(1), 1),
            eps: r.float("eps", 1e-5),
            affine: r.bool("affine", true),
        }),
        "instance_norm" => Op::InstanceNorm(InstanceNormAttrs {
            eps: r.float("eps", 1e-5),
            affine: r.bool("affine", false),
        }),
        "identity" => Op::Identity,
        "global_avg_pool" => Op::GlobalAvgPool,
        // `amax` over `H, W`, so that it shares the reductions' kernel;
        // the rank is checked here because the dims presume it.
        "global_max_pool" => {
            if let Some(x) = xs.first().filter(|x| x.rank() != 4) {
                r.errors.push(
                    Diagnostic::error(format!(
                        "`global_max_pool` expects a rank-4 input [N, C, H, W], found {x}"
                    ))
                    .with_primary(r.call_span, format!("input has rank {}", x.rank()))
                    .with_help(
                        "`amax(x, dims=[...], keepdim=true)` takes the maximum over any dims",
                    ),
                );
            }
            Op::Reduce(ReduceAttrs {
                function: Reduction::Max,
                dims: vec![2, 3],
                keepdim: true,
            })
        }
        "max_pool2d" => {
            let kernel = r.pair("kernel", None, 1);
            Op::MaxPool2d(MaxPool2dAttrs {
                kernel,
                stride: r.pair("stride", Some(kernel), 1),
                padding: r.padding("pad"),
                dilation: r.pair("dilation", Some([1, 1]), 1),
                ceil_mode: r.bool("ceil_mode", false),
            })
        }
        "avg_pool2d" => {
            let kernel = r.pair("kernel", None, 1);
            Op::AvgPool2d(AvgPool2dAttrs {
                kernel,
                stride: r.pair("stride", Some(kernel), 1),
                padding: r.padding("pad"),
                ceil_mode: r.bool("ceil_mode", false),
                count_include_pad: r.bool("count_include_pad", true),
            })
        }
        "linear" => Op::Linear(LinearAttrs {
            out_features: r.required_count("out", "10"),
            bias: r.bool("bias", true),
            epilogue: Epilogue::default(),
        }),
        "flatten" => {
            let start = r.int("start_dim").unwrap_or(1);
            let end = r.int("end_dim").unwrap_or(-1);
            Op::Flatten(FlattenAttrs {
                start_dim: resolve(r, "start_dim", start, 0),
                end_dim: resolve(r, "end_dim", end, 0),
            })
        }
        "reshape" => {
            let numel = xs.first().map_or(0, |x| x.numel());
            let shape = match r.ints("shape") {
                Some(s) => resolve_reshape(r, &s, numel),
                None => {
                    if !r.args.iter().any(|a| a.name == "shape") {
                        r.missing("shape", "[1, -1]");
                    }
                    vec![numel]
                }
            };
            Op::Reshape(ReshapeAttrs { shape })
        }
        "permute" => {
            let dims = match r.ints("dims") {
                Some(d) => d.iter().map(|&v| resolve(r, "dims", v, 0)).collect(),
                None => {
                    if !r.args.iter().any(|a| a.name == "dims") {
                        r.missing("dims", "[0, 2, 1]");
                    }
                    (0..rank).collect()
                }
            };
            Op::Permute(PermuteAttrs { dims })
        }
        "select" => {
            let dim_value = r.int("dim");
            let index_value = r.int("index");
            if dim_value.is_none() && !r.args.iter().any(|a| a.name == "dim") {
                r.missing("dim", "0");
            }
            if index_value.is_none() && !r.args.iter().any(|a| a.name == "index") {
                r.missing("index", "-1");
            }
            let dim = resolve(r, "dim", dim_value.unwrap_or(0), 0);
            let size = xs
                .first()
                .and_then(|x| x.shape.get(dim))
                .copied()
                .unwrap_or(1);
            let index = match index_value.unwrap_or(0) {
                i if i < 0 && i + size as i64 >= 0 => (i + size as i64) as usize,
                i if i >= 0 && (i as usize) < size => i as usize,
                i => {
                    let span = r.span_of("index");
                    r.errors.push(
                        Diagnostic::error(format!("`select` index {i} is out of range for a dim of size {size}"))
                            .with_primary(span, format!("index must be in {}..{size}", -(size as i64)))
                            .with_help("indices count from 0; a negative index counts from the end, -1 being the last"),
                    );
                    0
                }
            };
            Op::Select(SelectAttrs { dim, index })
        }
        "concat" => {
            let dim = r.int("dim").unwrap_or(1);
            Op::Concat(ConcatAttrs {
                dim: resolve(r, "dim", dim, 0),
            })
        }
        "softmax" => {
            let dim = r.int("dim").unwrap_or(-1);
            Op::Softmax(SoftmaxAttrs {
                dim: resolve(r, "dim", dim, 0),
            })
        }
        "log_softmax" => {
            let dim = r.int("dim").unwrap_or(-1);
            Op::LogSoftmax(SoftmaxAttrs {
                dim: resolve(r, "dim", dim, 0),
            })
        }
        "local_response_norm" => {
            let size = r.required_count("size", "5");
            let before = r.count("before", size / 2, 0);
            if before >= size {
                let span = r.span_of("before");
                r.errors.push(
                    Diagnostic::error(format!(
                        "`local_response_norm` window of {size} channels cannot start {before} before the channel"
                    ))
                    .with_primary(span, format!("must be below `size` ({size})"))
                    .with_help("the window holds `before` channels, the channel itself, then `size - 1 - before` channels"),
                );
            }
            Op::LocalResponseNorm(LocalResponseNormAttrs {
                size,
                alpha: r.float("alpha", 1e-4),
                beta: r.float("beta", 0.75),
                k: r.float("k", 1.0),
                before: before.min(size - 1),
            })
        }
        "dropout" => {
            let p = r.float("p", 0.5);
            if !(0.0..1.0).contains(&p) {
                let span = r.span_of("p");
                r.errors.push(
                    Diagnostic::error(format!("dropout probability {p:?} is not in [0, 1)"))
                        .with_primary(span, "must be at least 0 and below 1"),
                );
            }
            let mode = match r.choice("mode", &["inverted", "classic"], "inverted") {
                "classic" => DropoutMode::Classic,
                _ => DropoutMode::Inverted,
            };
            Op::Dropout(DropoutAttrs { p, mode })
        }
        "rnn" | "lstm" | "gru" => {
            let hidden = r.required_count("hidden", "128");
            let mut layers = r.count("layers", 1, 1);
            // Every layer owns four weights; a bound keeps `layers=4294967296`
            // from exhausting memory before any shape is checked.
            if layers > MAX_RECURRENT_LAYERS {
                if let Some(arg) = r.args.iter().find(|a| a.name == "layers") {
                    r.range_error(arg, &format!("at most {MAX_RECURRENT_LAYERS}"));
                }
                layers = 1;
            }
            let direction = match r.choice(
                "direction",
                &["forward", "reverse", "bidirectional"],
                "forward",
            ) {
                "reverse" => RnnDirection::Reverse,
                "bidirectional" => RnnDirection::Bidirectional,
                _ => RnnDirection::Forward,
            };
            // Initial states are the tensor arguments after `x`: `h0`, and
            // `c0` for `lstm`, which takes both or neither.
            if name == "lstm" && xs.len() == 2 {
                r.errors.push(
                    Diagnostic::error("`lstm` takes the initial states `h0` and `c0` together")
                        .with_primary(r.call_span, "only one initial state given")
                        .with_help("pass `lstm(x, h0, c0, ...)`, or neither state for zeros"),
                );
            }
            let lengths = match r.ints("lengths") {
                Some(l) if l.iter().all(|&v| v >= 1) => l.iter().map(|&v| v as usize).collect(),
                Some(_) => {
                    let span = r.span_of("lengths");
                    r.errors.push(
                        Diagnostic::error(format!("`{name}` lengths must be at least 1"))
                            .with_primary(span, "length below 1"),
                    );
                    Vec::new()
                }
                None => Vec::new(),
            };
            let output = match r.choice("output", &["sequence", "h_n", "c_n"], "sequence") {
                "h_n" => RecurrentOutput::HiddenState,
                "c_n" => RecurrentOutput::CellState,
                _ => RecurrentOutput::Sequence,
            };
            // Only `gru` has the choice; the others read it for the
            // unknown-attribute check alone when it is `gru`.
            let linear_before_reset = if name == "gru" {
                r.bool("linear_before_reset", true)
            } else {
                true
            };
            let a = RecurrentAttrs {
                linear_before_reset,
                hidden,
                layers,
                bias: r.bool("bias", true),
                batch_first: r.bool("batch_first", false),
                direction,
                initial_state: xs.len() > 1,
                lengths,
                output,
            };
            match name {
                "rnn" => Op::Rnn(a),
                "lstm" => Op::Lstm(a),
                _ => Op::Gru(a),
            }
        }
        "matmul" => Op::MatMul,
        "interpolate" => interpolate::build(r, xs.first().copied()),
        "pad" => {
            let pads = match r.ints("pads") {
                Some(p) => p,
                None => {
                    if !r.args.iter().any(|a| a.name == "pads") {
                        r.missing("pads", "[0, 0, 1, 1, 0, 0, 1, 1]");
                    }
                    vec![0; 2 * rank]
                }
            };
            let mode = match r.choice("mode", &["constant", "reflect", "edge"], "constant") {
                "reflect" => PadMode::Reflect,
                "edge" => PadMode::Edge,
                _ => PadMode::Constant,
            };
            Op::Pad(PadAttrs {
                pads,
                mode,
                value: r.float("value", 0.0),
            })
        }
        "prelu" => Op::Prelu(PreluAttrs {
            num_parameters: r.count("num_parameters", 1, 1),
        }),
        "constant" => {
            let shape = match r.ints("shape") {
                Some(s) if s.iter().all(|&d| d >= 1) => s.iter().map(|&d| d as usize).collect(),
                Some(_) => {
                    let span = r.span_of("shape");
                    r.errors.push(
                        Diagnostic::error("`constant` sizes must be at least 1")
                            .with_primary(span, "size below 1"),
                    );
                    Vec::new()
                }
                None => {
                    if !r.args.iter().any(|a| a.name == "shape") {
                        r.missing("shape", "[1, 64, 1, 1]");
                    }
                    Vec::new()
                }
            };
            Op::Constant(ConstantAttrs { shape })
        }
        _ => {
            // `is_op` accepted the name, so the table above lists it: a
            // compiler bug, reported rather than dropped.
            r.errors.push(
                Diagnostic::error(format!("internal error: the op `{name}` has no builder"))
                    .with_primary(r.call_span, "this op"),
            );
            return None;
        }
    };
    Some(op)
}

/// `f` with the attributes written at the call.
fn unary(f: UnaryFunction, r: &mut AttrReader<'_>) -> UnaryFunction {
    match f {
        UnaryFunction::Exp
        | UnaryFunction::Log
        | UnaryFunction::Sqrt
        | UnaryFunction::Reciprocal
        | UnaryFunction::Neg
        | UnaryFunction::Abs
        | UnaryFunction::Erf => f,
        UnaryFunction::Pow { .. } => UnaryFunction::Pow {
            exponent: r.required_float("exponent", "2.0"),
        },
    }
}

/// `act` with the attributes written at the call (each defaulting to the
/// value in [`Activation::ALL`]).
fn activation(act: Activation, r: &mut AttrReader<'_>) -> Activation {
    match act {
        Activation::Relu
        | Activation::Relu6
        | Activation::Sigmoid
        | Activation::Tanh
        | Activation::Selu
        | Activation::Softplus
        | Activation::Softsign
        | Activation::Hardswish
        | Activation::Silu
        | Activation::Mish => act,
        Activation::Elu { alpha } => Activation::Elu {
            alpha: r.float("alpha", alpha),
        },
        Activation::Celu { alpha } => {
            let alpha = r.float("alpha", alpha);
            if alpha == 0.0 {
                let span = r.span_of("alpha");
                r.errors.push(
                    Diagnostic::error("`celu` alpha must not be 0")
                        .with_primary(span, "divides the input"),
                );
            }
            Activation::Celu { alpha }
        }
        Activation::Hardsigmoid { alpha, beta } => Activation::Hardsigmoid {
            alpha: r.float("alpha", alpha),
            beta: r.float("beta", beta),
        },
        Activation::Gelu { .. } => Activation::Gelu {
            tanh: r.choice("approximate", &["none", "tanh"], "none") == "tanh",
        },
        Activation::LeakyRelu { negative_slope } => Activation::LeakyRelu {
            negative_slope: r.float("negative_slope", negative_slope),
        },
        Activation::Clip { .. } => {
            let min = r.required_float("min", "0.0");
            let max = r.required_float("max", "6.0");
            if min > max {
                let span = r.span_of("max");
                r.errors.push(
                    Diagnostic::error(format!("`clip` max {max:?} is smaller than min {min:?}"))
                        .with_primary(span, "smaller than `min`"),
                );
            }
            Activation::Clip { min, max }
        }
    }
}

/// A reduction with the dims and `keepdim` written at the call; no
/// `dims`, or an empty list, reduces every dim (as `torch.sum(x)` and
/// `torch.amax(x, dim=())` do).
fn reduce(function: Reduction, r: &mut AttrReader<'_>, rank: usize) -> ReduceAttrs {
    let written = r.ints("dims").unwrap_or_default();
    let mut dims = Vec::with_capacity(written.len());
    for &d in &written {
        match resolve_dim(function.name(), d, rank) {
            Ok(d) if dims.contains(&d) => {
                let span = r.span_of("dims");
                r.errors.push(
                    Diagnostic::error(format!(
                        "dim {d} appears more than once in the `dims` of `{}`",
                        function.name()
                    ))
                    .with_primary(span, format!("dim {d} is repeated"))
                    .with_help("list each dim once; a negative dim counts from the end"),
                );
            }
            Ok(d) => dims.push(d),
            Err(e) => dim_error(r, "dims", e.message, e.label),
        }
    }
    if written.is_empty() {
        dims = (0..rank).collect();
    }
    dims.sort_unstable();
    ReduceAttrs {
        function,
        dims,
        keepdim: r.bool("keepdim", false),
    }
}

/// A reshape spec as written: `[1, 4, -1]`.
fn format_spec(spec: &[i64]) -> String {
    let items: Vec<String> = spec.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(", "))
}

fn resolve_reshape(r: &mut AttrReader<'_>, spec: &[i64], numel: usize) -> Vec<usize> {
    let span = r.span_of("shape");
    let inferred = spec.iter().filter(|&&d| d == -1).count();
    if inferred > 1 || spec.iter().any(|&d| d < -1 || d == 0) {
        r.errors.push(
            Diagnostic::error(format!("invalid `reshape` shape {}", format_spec(spec)))
                .with_primary(
                    span,
                    if inferred > 1 {
                        "more than one -1".to_string()
                    } else {
                        "sizes must be positive, or -1".to_string()
                    },
                )
                .with_help(
                    "`shape` holds positive sizes and at most one -1, whose size is inferred",
                ),
        );
        return vec![numel];
    }
    let known: Option<usize> = spec
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize));
    let Some(known) = known else {
        r.errors.push(
            Diagnostic::error(format!("`reshape` shape {} overflows", format_spec(spec)))
                .with_primary(span, "the sizes multiply to more than the address space"),
        );
        return vec![numel];
    };
    let fill = if inferred == 1 {
        if known == 0 || !numel.is_multiple_of(known) {
            r.errors.push(
                Diagnostic::error(format!(
                    "cannot reshape {numel} elements into {}",
                    format_spec(spec)
                ))
                .with_primary(
                    span,
                    format!("the other sizes multiply to {known}, which does not divide {numel}"),
                )
                .with_help(
                    "the sizes other than -1 must multiply to a divisor of the element count",
                ),
            );
            return vec![numel];
        }
        numel / known
    } else {
        0
    };
    spec.iter()
        .map(|&d| if d == -1 { fill } else { d as usize })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name the op table accepts has a builder: `build` reports a
    /// name it has no arm for as an internal error instead of dropping it.
    #[test]
    fn every_op_name_has_a_builder() {
        let x = TensorType::f32(vec![1, 4, 8, 8]);
        for name in op_names() {
            let mut r = AttrReader::new(name, Span::default(), &[]);
            let built = build(name, &mut r, &[&x]);
            let errors = r.finish();
            assert!(
                !errors.iter().any(|d| d.message.contains("has no builder")),
                "`{name}` has no builder"
            );
            assert!(
                built.is_some() || !errors.is_empty(),
                "`{name}` built nothing and reported nothing"
            );
        }
    }

    /// The signatures list every op once, with the attributes its builder
    /// reads: `conv2d` requires `out` and `kernel`.
    #[test]
    fn signatures_come_from_the_builders() {
        let all = signatures();
        assert_eq!(all.len(), op_names().count());
        let conv = all.iter().find(|s| s.name == "conv2d");
        let conv = conv.map(|s| (s.required.clone(), s.optional.contains(&"groups")));
        assert_eq!(conv, Some((vec!["out", "kernel"], true)));
        let relu = all.iter().find(|s| s.name == "relu").map(|s| s.tensors);
        assert_eq!(relu, Some((1, Some(1))));
        // Each attribute's kind is the reader method's: `kernel` is a pair of
        // at least 1, `pad` a padding, `dropout`'s `mode` one of two strings.
        let kind = |op: &str, attr: &str| {
            let s = all.iter().find(|s| s.name == op)?;
            s.kinds.get(attr).cloned()
        };
        assert_eq!(kind("conv2d", "kernel"), Some(AttrKind::Pair { min: 1 }));
        assert_eq!(kind("conv2d", "out"), Some(AttrKind::Count { min: 1 }));
        assert_eq!(kind("conv2d", "pad"), Some(AttrKind::Padding));
        assert_eq!(kind("conv2d", "bias"), Some(AttrKind::Bool));
        assert_eq!(
            kind("dropout", "mode"),
            Some(AttrKind::Choice(vec!["inverted", "classic"]))
        );
        assert_eq!(kind("interpolate", "scale_factor"), Some(AttrKind::Scales));
        // Every attribute listed has a kind.
        for s in &all {
            for name in s.required.iter().chain(&s.optional) {
                assert!(s.kinds.contains_key(name), "`{}`: `{name}`", s.name);
            }
        }
    }
}
