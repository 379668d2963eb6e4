//! Lowering: from the AST of a `.nn` file to a typed [`Graph`].
//!
//! Blocks are instantiated (every binding prefixed with the call's path),
//! attributes evaluated and checked, and each node's type inferred as it is
//! created, so shape errors point at the binding that causes them. Name
//! resolution and shape errors are collected (a failing node poisons its
//! users instead of cascading); lowering returns all of them.

mod blocks;
mod ops;
mod value;

pub use ops::{is_op, op_names, signatures, AttrKind, Signature};
pub use value::Value;

use crate::ir::*;
use crate::shape::{infer, weight_shapes, ShapeError};
use nnc_frontend::ast::{self, Arg, Item, ParamKind, Rhs, Stmt};
use nnc_frontend::{Diagnostic, SourceFile, Span};
use nnc_runtime::{checked_numel, DType};
use ops::{AttrReader, KeywordArg};
use std::collections::HashMap;
use value::{eval, suggest, Params};

/// Lowers a parsed file to a graph, or returns every error found.
pub fn lower(file: &ast::File, source: &SourceFile) -> Result<Graph, Vec<Diagnostic>> {
    let mut lowerer = Lowerer {
        source,
        blocks: HashMap::new(),
        graph: Graph::new(""),
        errors: Vec::new(),
        weight_names: HashMap::new(),
        bindings: 0,
        statement: Span::DUMMY,
        too_large: false,
        too_many_errors: false,
    };
    lowerer.run(file);
    if lowerer.errors.is_empty() {
        Ok(lowerer.graph)
    } else {
        Err(lowerer.errors)
    }
}

/// A value in scope: a node, or a binding whose op failed (its users are
/// skipped silently, since the failure was already reported).
#[derive(Clone, Copy)]
enum Slot {
    Node(NodeId),
    Poisoned,
}

#[derive(Clone, Copy)]
struct Binding {
    slot: Slot,
    span: Span,
}

/// The names visible while lowering one model or one block instance.
struct Scope {
    /// Dotted path prepended to every binding (`layer1.0`), empty at model level.
    prefix: String,
    values: HashMap<String, Binding>,
    params: Params,
    /// Block names from the model down to here, to stop runaway recursion.
    depth: usize,
    in_block: bool,
}

impl Scope {
    fn full_name(&self, local: &str) -> String {
        if self.prefix.is_empty() {
            local.to_string()
        } else {
            format!("{}.{}", self.prefix, local)
        }
    }
}

/// A binding's right-hand side taken apart: callee, its span, tensor
/// arguments, keyword arguments and the whole call's span.
type CallParts<'b> = (
    &'b str,
    Span,
    Vec<&'b ast::Path>,
    Vec<(&'b ast::Ident, &'b ast::Expr)>,
    Span,
);

struct Lowerer<'a> {
    source: &'a SourceFile,
    blocks: HashMap<String, &'a ast::Block>,
    graph: Graph,
    errors: Vec<Diagnostic>,
    weight_names: HashMap<String, Span>,
    /// Bindings lowered so far, counting every block instance's own.
    bindings: usize,
    /// The model-level statement being lowered, for errors found deep
    /// inside the blocks it instantiates.
    statement: Span,
    /// Set once the model has expanded past [`MAX_BINDINGS`]; lowering then
    /// stops quietly.
    too_large: bool,
    /// Set once [`MAX_ERRORS`] errors are collected; lowering then stops.
    too_many_errors: bool,
}

/// Instantiation depth past which we stop; recursion is rejected up front,
/// so this only guards against pathological but legal nesting.
const MAX_BLOCK_DEPTH: usize = 64;

/// The most bindings a model may expand to, counting every binding of every
/// block instance. Blocks calling blocks several times multiply, so without
/// a bound a short file could take forever to lower.
const MAX_BINDINGS: usize = 200_000;

/// The most errors lowering collects before it stops. Each error may carry
/// a "did you mean" over every name in scope, so a repetition of a failing
/// statement costs the square of its length; past a few hundred errors the
/// report helps nobody.
const MAX_ERRORS: usize = 500;

/// The most instances one repetition `name.A..=B` may make.
const MAX_REPETITION: u64 = 10_000;

/// The arguments of one block call, as written at the call site.
#[derive(Clone, Copy)]
struct BlockCall<'c> {
    callee_span: Span,
    positional: &'c [&'c ast::Path],
    /// Tensor parameters passed by keyword, already reported as errors.
    tensor_keywords: usize,
    args: &'c [KeywordArg],
    failed: bool,
}

impl<'a> Lowerer<'a> {
    fn loc(&self, span: Span) -> Option<SourceLoc> {
        let (line, col) = self.source.line_col(span.start);
        Some(SourceLoc { span, line, col })
    }

    fn run(&mut self, file: &'a ast::File) {
        let mut model: Option<&ast::Model> = None;
        for item in &file.items {
            match item {
                Item::Block(b) => {
                    if is_op(&b.name.name) {
                        self.errors.push(
                            Diagnostic::error(format!(
                                "block `{}` has the name of an op",
                                b.name.name
                            ))
                            .with_primary(b.name.span, "this name is taken by an op")
                            .with_help("rename the block"),
                        );
                    } else if let Some(first) = self.blocks.get(&b.name.name) {
                        self.errors.push(
                            Diagnostic::error(format!("block `{}` is defined twice", b.name.name))
                                .with_primary(b.name.span, "redefined here")
                                .with_secondary(first.name.span, "first defined here")
                                .with_help("rename one of the blocks"),
                        );
                    } else {
                        self.blocks.insert(b.name.name.clone(), b);
                    }
                }
                Item::Model(m) => {
                    if let Some(first) = model {
                        self.errors.push(
                            Diagnostic::error("a file may define only one model")
                                .with_primary(m.name.span, "second model")
                                .with_secondary(first.name.span, "first model defined here"),
                        );
                    } else {
                        model = Some(m);
                    }
                }
            }
        }
        self.check_recursion();
        let Some(model) = model else {
            let end = self.source.text().trim_end().len();
            self.errors.push(
                Diagnostic::error("no model in this file")
                    .with_primary(Span::new(end, end), "the file ends without a `model`")
                    .with_help("add `model name { input x: f32[...] ... output y }`"),
            );
            return;
        };
        self.graph.name = model.name.name.clone();
        if !self.errors.is_empty() {
            return;
        }
        self.lower_model(model);
    }

    fn lower_model(&mut self, model: &'a ast::Model) {
        let mut scope = Scope {
            prefix: String::new(),
            values: HashMap::new(),
            params: Params::new(),
            depth: 0,
            in_block: false,
        };
        let mut outputs = Vec::new();
        let mut output_span = None;
        for stmt in &model.body {
            match stmt {
                Stmt::Input(input) => self.lower_input(&mut scope, input),
                Stmt::Let(binding) => {
                    self.statement = binding.span;
                    self.lower_let(&mut scope, binding);
                }
                Stmt::Output(out) => {
                    output_span = Some(out.span);
                    for path in &out.values {
                        if let Some(Slot::Node(id)) = self.resolve(&scope, path) {
                            outputs.push(id);
                        }
                    }
                }
                Stmt::Return(ret) => self.errors.push(
                    Diagnostic::error("`return` outside a block")
                        .with_primary(ret.span, "models end with `output`, not `return`")
                        .with_help(format!("write `output {}`", ret.value.dotted())),
                ),
            }
        }
        if model.body.is_empty() {
            self.errors.push(
                Diagnostic::error(format!("model `{}` is empty", model.name.name))
                    .with_primary(model.span, "this model has no inputs, ops or outputs")
                    .with_help("declare inputs with `input x: f32[...]`, bind ops, and name the results with `output`"),
            );
            return;
        }
        if self.graph.inputs().is_empty() && !model.body.iter().any(|s| matches!(s, Stmt::Input(_)))
        {
            self.errors.push(
                Diagnostic::error(format!("model `{}` has no inputs", model.name.name))
                    .with_primary(model.name.span, "no `input` statement")
                    .with_help("declare an input: `input x: f32[1, 3, 224, 224]`"),
            );
        }
        // A `return` was already reported with the advice to write `output`.
        let has_return = model.body.iter().any(|s| matches!(s, Stmt::Return(_)));
        if output_span.is_none() && !has_return {
            self.errors.push(
                Diagnostic::error(format!("model `{}` has no outputs", model.name.name))
                    .with_primary(model.name.span, "no `output` statement")
                    .with_help("name the model's results: `output y`"),
            );
        }
        self.graph.set_outputs(outputs);
    }

    fn lower_input(&mut self, scope: &mut Scope, input: &ast::InputStmt) {
        if scope.in_block {
            self.errors.push(
                Diagnostic::error("`input` inside a block")
                    .with_primary(input.span, "blocks take tensors as parameters")
                    .with_help("add a tensor parameter to the block instead"),
            );
            self.define(scope, &input.name.name, input.name.span, Slot::Poisoned);
            return;
        }
        let name = input.name.name.clone();
        let dtype = match DType::from_name(&input.ty.dtype.name) {
            Some(d) => d,
            None => {
                self.errors.push(
                    Diagnostic::error(format!("unsupported dtype `{}`", input.ty.dtype.name))
                        .with_primary(input.ty.dtype.span, "nnc cannot compute in this dtype")
                        .with_help(format!("supported dtypes: {}", DType::SUPPORTED.join(", "))),
                );
                self.define(scope, &name, input.name.span, Slot::Poisoned);
                return;
            }
        };
        let mut shape = Vec::new();
        for dim in &input.ty.dims {
            match usize::try_from(dim.value) {
                Ok(0) | Err(_) => {
                    self.errors.push(
                        Diagnostic::error(format!(
                            "input `{name}` has a dimension of size {}",
                            dim.value
                        ))
                        .with_primary(dim.span, "dimensions must be at least 1")
                        .with_help("nnc compiles static, non-empty shapes"),
                    );
                    self.define(scope, &name, input.name.span, Slot::Poisoned);
                    return;
                }
                Ok(d) => shape.push(d),
            }
        }
        if checked_numel(&shape)
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .is_none()
        {
            self.errors.push(
                Diagnostic::error(format!("the element count of input `{name}` overflows"))
                    .with_primary(input.ty.span, "this shape is too large to address")
                    .with_help("nnc compiles shapes whose byte size fits in memory"),
            );
            self.define(scope, &name, input.name.span, Slot::Poisoned);
            return;
        }
        let node = Node::new(
            Op::Input(InputAttrs { name: name.clone() }),
            Vec::new(),
            TensorType { dtype, shape },
            name.clone(),
        )
        .at(self.loc(input.span));
        let slot = match self.graph.add(node) {
            Ok(id) => Slot::Node(id),
            Err(_) => Slot::Poisoned,
        };
        self.define(scope, &name, input.name.span, slot);
    }

    fn define(&mut self, scope: &mut Scope, local: &str, span: Span, slot: Slot) {
        if let Some(first) = scope.values.get(local) {
            self.errors.push(
                Diagnostic::error(format!("the name `{local}` is defined twice"))
                    .with_primary(span, "redefined here")
                    .with_secondary(first.span, "first defined here")
                    .with_help("every binding needs its own name; it is also the module path of its weights"),
            );
            return;
        }
        scope
            .values
            .insert(local.to_string(), Binding { slot, span });
    }

    fn resolve(&mut self, scope: &Scope, path: &ast::Path) -> Option<Slot> {
        let name = path.dotted();
        if let Some(b) = scope.values.get(&name) {
            return Some(b.slot);
        }
        if self.too_large {
            // The binding may be one that was never lowered.
            return Some(Slot::Poisoned);
        }
        let message = format!("cannot find value `{name}` in this scope");
        // Every instance of a block makes the same mistake at the same place
        // and `instantiate` keeps only the first copy; skip building the
        // others, whose "did you mean" over every name in scope is costly
        // (a thousand instances of a scope of a thousand names took seconds).
        let reported = |e: &Diagnostic| {
            e.message == message && e.labels.first().is_some_and(|l| l.span == path.span)
        };
        if scope.in_block && self.errors.iter().any(reported) {
            return None;
        }
        let mut d = Diagnostic::error(message).with_primary(path.span, "not defined");
        if let Some(s) = suggest(&name, scope.values.keys().map(String::as_str)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else if scope.in_block {
            d = d.with_help("a block sees only its parameters and its own bindings");
        } else if path.segments.len() == 1 && !name.starts_with(|c: char| c.is_ascii_digit()) {
            d = d.with_help(format!(
                "bind `{name}` before this statement, or declare it as an input: `input {name}: f32[...]`"
            ));
        } else {
            d = d.with_help(format!("bind `{name}` before this statement"));
        }
        self.errors.push(d);
        None
    }

    fn lower_let(&mut self, scope: &mut Scope, binding: &'a ast::LetStmt) {
        let local = binding.target.dotted();
        if self.errors.len() >= MAX_ERRORS {
            if !self.too_many_errors {
                self.too_many_errors = true;
                self.errors.push(
                    Diagnostic::error(format!(
                        "too many errors; lowering stopped after {MAX_ERRORS}"
                    ))
                    .with_primary(self.statement, "stopped while lowering this statement")
                    .with_help("fix the errors above and compile again"),
                );
            }
            return;
        }
        self.bindings += 1;
        if self.bindings > MAX_BINDINGS {
            if !self.too_large {
                self.too_large = true;
                self.errors.push(
                    Diagnostic::error(format!("the model expands to more than {MAX_BINDINGS} bindings"))
                        .with_primary(self.statement, "the expansion passes the limit here")
                        .with_help("blocks that call blocks several times, and repetitions `name.A..=B`, multiply the bindings"),
                );
            }
            return;
        }
        let (callee, callee_span, positional, keywords, call_span): CallParts<'_> =
            match &binding.value {
                Rhs::Call(call) => {
                    let mut positional = Vec::new();
                    let mut keywords = Vec::new();
                    for arg in &call.args {
                        match arg {
                            Arg::Positional(p) => positional.push(p),
                            Arg::Keyword { name, value } => keywords.push((name, value)),
                        }
                    }
                    (
                        &call.callee.name,
                        call.callee.span,
                        positional,
                        keywords,
                        call.span,
                    )
                }
                Rhs::Binary { op, lhs, rhs, span } => {
                    (op.op_name(), *span, vec![lhs, rhs], Vec::new(), *span)
                }
            };

        // Evaluate keyword arguments once, reporting duplicates.
        let block = self.blocks.get(callee).copied();
        let mut args = Vec::new();
        let mut failed = false;
        let mut tensor_keywords = 0;
        for (name, expr) in keywords {
            if let Some(first) = args.iter().find(|a: &&KeywordArg| a.name == name.name) {
                self.errors.push(
                    Diagnostic::error(format!("attribute `{}` is given twice", name.name))
                        .with_primary(name.span, "given again here")
                        .with_secondary(first.name_span, "first given here"),
                );
                failed = true;
                continue;
            }
            // A block's tensor parameter passed by keyword: its value is a
            // tensor name, not an attribute expression, so say that rather
            // than failing to evaluate it.
            if let Some(block) = block {
                let tensor_param = block
                    .params
                    .iter()
                    .any(|p| p.name.name == name.name && matches!(p.kind, ParamKind::Tensor));
                if tensor_param {
                    self.errors.push(
                        Diagnostic::error(format!(
                            "tensor parameter `{}` of block `{}` is passed by keyword",
                            name.name, block.name.name
                        ))
                        .with_primary(name.span.to(expr.span), "tensors are passed by position")
                        .with_help(format!(
                            "pass the tensor positionally, in the order of the block's parameters: `{}({})`",
                            block.name.name,
                            block
                                .params
                                .iter()
                                .filter(|p| matches!(p.kind, ParamKind::Tensor))
                                .map(|p| p.name.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                    failed = true;
                    tensor_keywords += 1;
                    continue;
                }
            }
            match eval(expr, &scope.params) {
                Ok(value) => args.push(KeywordArg {
                    name: name.name.clone(),
                    name_span: name.span,
                    value,
                    value_span: expr.span,
                }),
                Err(d) => {
                    self.errors.push(d);
                    failed = true;
                }
            }
        }

        if let Some(block) = block {
            let call = BlockCall {
                callee_span,
                positional: &positional,
                tensor_keywords,
                args: &args,
                failed,
            };
            self.lower_block_binding(scope, binding, block, &call);
            return;
        }
        if binding.repeat_to.is_some() {
            self.errors.push(
                Diagnostic::error("repetition needs a block")
                    .with_primary(callee_span, format!("`{callee}` is not a block"))
                    .with_help(
                        "`name.0..=N = f(x)` chains instances of a block; wrap the ops in a block",
                    ),
            );
            let names = match &binding.repeat_to {
                Some(last) => self
                    .repetition_names(&binding.target, last)
                    .unwrap_or_else(|names| names),
                None => vec![local],
            };
            // Each name counts as a binding: a block instantiated a thousand
            // times, each defining a thousand names here, would otherwise
            // pass the binding limit unnoticed (found by `parse_nn`).
            self.bindings = self.bindings.saturating_add(names.len());
            for name in names {
                self.define(scope, &name, binding.target.span, Slot::Poisoned);
            }
            return;
        }
        if !is_op(callee) {
            let mut d = Diagnostic::error(format!("unknown op `{callee}`"))
                .with_primary(callee_span, "not an op or a block");
            let block_names: Vec<String> = self.blocks.keys().cloned().collect();
            let mut candidates: Vec<&str> = op_names().collect();
            candidates.extend(block_names.iter().map(String::as_str));
            if let Some(s) = suggest(callee, candidates) {
                d = d.with_help(format!("did you mean `{s}`?"));
            } else {
                d = d.with_help("the ops are listed in docs/language.md");
            }
            self.errors.push(d);
            self.define(scope, &local, binding.target.span, Slot::Poisoned);
            return;
        }
        let slot = self
            .lower_op(
                scope,
                &local,
                callee,
                call_span,
                &positional,
                &args,
                failed,
                binding.span,
            )
            .map_or(Slot::Poisoned, Slot::Node);
        self.define(scope, &local, binding.target.span, slot);
    }

    #[allow(clippy::too_many_arguments)]
    fn lower_op(
        &mut self,
        scope: &Scope,
        local: &str,
        callee: &str,
        call_span: Span,
        positional: &[&ast::Path],
        args: &[KeywordArg],
        mut failed: bool,
        stmt_span: Span,
    ) -> Option<NodeId> {
        if let Err(d) = ops::check_arity(callee, positional.len(), call_span) {
            self.errors.push(d);
            failed = true;
        }
        let mut inputs = Vec::new();
        for path in positional {
            match self.resolve(scope, path) {
                Some(Slot::Node(id)) => inputs.push(id),
                Some(Slot::Poisoned) => failed = true,
                None => failed = true,
            }
        }
        if failed {
            return None;
        }
        let types: Vec<TensorType> = inputs
            .iter()
            .map(|&i| self.graph.node(i).ty.clone())
            .collect();
        let type_refs: Vec<&TensorType> = types.iter().collect();
        let mut reader = AttrReader::new(callee, call_span, args);
        let op = ops::build(callee, &mut reader, &type_refs);
        let attr_errors = reader.finish();
        let op = match op {
            Some(op) if attr_errors.is_empty() => op,
            _ => {
                self.errors.extend(attr_errors);
                return None;
            }
        };
        let full = scope.full_name(local);
        let loc = self.loc(stmt_span);
        // The data operand decides the weights' shapes; a `constant` has
        // none, and its attributes alone decide.
        let scalar = TensorType::f32(Vec::new());
        let data = types
            .first()
            .or_else(|| matches!(op, Op::Constant(_)).then_some(&scalar));
        let weights = match data.map(|x| weight_shapes(&op, x)) {
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                self.shape_error(e, call_span, &inputs);
                return None;
            }
            None => Vec::new(),
        };
        let mut all_types = types.clone();
        for spec in weights {
            let name = format!("{full}.{}", spec.suffix);
            if let Some(first) = self.weight_names.get(&name) {
                self.errors.push(
                    Diagnostic::error(format!("two ops own the weight `{name}`"))
                        .with_primary(stmt_span, "second owner")
                        .with_secondary(*first, "first owner")
                        .with_help("rename one binding so the module paths differ"),
                );
                return None;
            }
            self.weight_names.insert(name.clone(), stmt_span);
            let ty = TensorType::f32(spec.shape);
            if checked_numel(&ty.shape).is_none() {
                self.errors.push(
                    Diagnostic::error(format!("the element count of weight `{name}` overflows"))
                        .with_primary(call_span, "this weight is too large to address"),
                );
                return None;
            }
            let node = Node::new(
                Op::Weight(WeightAttrs {
                    name: name.clone(),
                    role: spec.role,
                }),
                Vec::new(),
                ty.clone(),
                name,
            )
            .at(loc);
            let id = self.graph.add(node).ok()?;
            inputs.push(id);
            all_types.push(ty);
        }
        let refs: Vec<&TensorType> = all_types.iter().collect();
        let ty = match infer(&op, &refs) {
            Ok(ty) => ty,
            Err(e) => {
                self.shape_error(e, call_span, &inputs);
                return None;
            }
        };
        self.graph.add(Node::new(op, inputs, ty, full).at(loc)).ok()
    }

    fn shape_error(&mut self, e: ShapeError, span: Span, inputs: &[NodeId]) {
        let mut d = Diagnostic::error(e.message).with_primary(span, e.label);
        for &input in inputs.iter().take(4) {
            let node = self.graph.node(input);
            if matches!(node.op, Op::Weight(_)) {
                continue;
            }
            if let Some(loc) = node.loc {
                d = d.with_secondary(loc.span, format!("`{}` has type {}", node.name, node.ty));
            }
        }
        if let Some(help) = e.help {
            d = d.with_help(help);
        }
        self.errors.push(d);
    }
}
