//! Blocks: recursion checks, matching call arguments to parameters, and
//! instantiating a block's body under the call's path. Repetition
//! (`name.A..=B = block(...)`) chains instances here too.

use super::value::{eval, suggest, Params, Value};
use super::{Binding, BlockCall, Lowerer, Scope, Slot, MAX_BLOCK_DEPTH, MAX_REPETITION};
use nnc_frontend::ast::{self, ParamKind, Rhs, Stmt};
use nnc_frontend::{Diagnostic, Span};
use std::collections::{HashMap, HashSet};

impl<'a> Lowerer<'a> {
    /// Rejects blocks that call themselves, directly or through others,
    /// before any instantiation could loop.
    pub(super) fn check_recursion(&mut self) {
        let mut names: Vec<&String> = self.blocks.keys().collect();
        names.sort();
        let mut reported = HashSet::new();
        for start in names {
            // A cycle through several blocks is reported once, from the
            // first of its blocks in name order.
            if reported.contains(start) {
                continue;
            }
            let mut stack = vec![(start.clone(), Vec::<(String, Span)>::new())];
            let mut visited = HashSet::new();
            while let Some((name, path)) = stack.pop() {
                let Some(block) = self.blocks.get(&name) else {
                    continue;
                };
                for stmt in &block.body {
                    let Stmt::Let(ast::LetStmt {
                        value: Rhs::Call(call),
                        ..
                    }) = stmt
                    else {
                        continue;
                    };
                    let callee = &call.callee.name;
                    if !self.blocks.contains_key(callee) {
                        continue;
                    }
                    let mut next = path.clone();
                    next.push((name.clone(), call.callee.span));
                    if callee == start {
                        if !reported.contains(start) {
                            reported.extend(next.iter().map(|(n, _)| n.clone()));
                            let chain: Vec<String> =
                                next.iter().map(|(n, _)| format!("`{n}`")).collect();
                            let (_, span) = next[next.len() - 1];
                            self.errors.push(
                                Diagnostic::error(format!("block `{start}` calls itself"))
                                    .with_primary(span, "recursive call")
                                    .with_note(format!("call chain: {} -> `{start}`", chain.join(" -> ")))
                                    .with_help("blocks are expanded at compile time and cannot recurse; use repetition `name.0..=N = block(...)`"),
                            );
                        }
                    } else if visited.insert(callee.clone()) {
                        stack.push((callee.clone(), next));
                    }
                }
            }
        }
    }

    pub(super) fn lower_block_binding(
        &mut self,
        scope: &mut Scope,
        binding: &'a ast::LetStmt,
        block: &'a ast::Block,
        call: &BlockCall<'_>,
    ) {
        let target = &binding.target;
        let names = match &binding.repeat_to {
            None => None,
            Some(last) => match self.repetition_names(target, last) {
                Ok(names) => Some(names),
                Err(poisoned) => {
                    // Counted as bindings, as in `lower_let`.
                    self.bindings = self.bindings.saturating_add(poisoned.len());
                    for name in poisoned {
                        self.define(scope, &name, target.span, Slot::Poisoned);
                    }
                    return;
                }
            },
        };
        let Some((tensors, attrs)) = self.bind_params(scope, block, call) else {
            let names = names.unwrap_or_else(|| vec![target.dotted()]);
            self.bindings = self.bindings.saturating_add(names.len());
            for name in names {
                self.define(scope, &name, target.span, Slot::Poisoned);
            }
            return;
        };
        match names {
            Some(names) => {
                let mut tensors = tensors;
                for local in names {
                    let slot =
                        self.instantiate(scope, &local, block, &tensors, &attrs, binding.span);
                    self.define(scope, &local, target.span, slot);
                    // Each later instance takes the previous one's output as
                    // its first tensor argument.
                    if let Some(first_tensor) = tensors.first_mut() {
                        *first_tensor = slot;
                    }
                }
            }
            None => {
                let local = target.dotted();
                let slot = self.instantiate(scope, &local, block, &tensors, &attrs, binding.span);
                self.define(scope, &local, target.span, slot);
            }
        }
    }

    /// The instance names of a repetition `stem.A..=B`: `stem.A` to `stem.B`.
    /// An invalid range is reported, and the names later statements most
    /// likely use are returned as the error, to be poisoned so that their
    /// uses stay quiet.
    pub(super) fn repetition_names(
        &mut self,
        target: &ast::Path,
        last: &ast::Dim,
    ) -> Result<Vec<String>, Vec<String>> {
        let stem = target.segments[..target.segments.len().saturating_sub(1)].join(".");
        let name = |i: u64| {
            if stem.is_empty() {
                i.to_string()
            } else {
                format!("{stem}.{i}")
            }
        };
        let span = target.span.to(last.span);
        let last = last.value;
        let dotted = target.dotted();
        let Some(first) = target.segments.last().and_then(|s| s.parse::<u64>().ok()) else {
            self.errors.push(
                Diagnostic::error(format!("repetition `{dotted}..={last}` has no first index"))
                    .with_primary(span, format!("`{dotted}` does not end in an index"))
                    .with_help(format!(
                        "the last segment before `..=` is the first index: `{dotted}.0..={last}`"
                    )),
            );
            return Err(vec![dotted]);
        };
        if first > last {
            self.errors.push(
                Diagnostic::error(format!("repetition range `{first}..={last}` is empty"))
                    .with_primary(
                        span,
                        format!("the first index {first} is greater than the last index {last}"),
                    )
                    .with_help(format!(
                        "write the smaller index first: `{}..={first}`",
                        name(last)
                    )),
            );
            return Err(vec![name(first), name(last)]);
        }
        if last - first >= MAX_REPETITION {
            self.errors.push(
                Diagnostic::error(format!("repetition range `{first}..={last}` is too long"))
                    .with_primary(span, format!("more than {MAX_REPETITION} instances")),
            );
            return Err(vec![name(first), name(last)]);
        }
        Ok((first..=last).map(name).collect())
    }

    /// Matches call arguments to block parameters. Returns the tensor slots
    /// in parameter order and the attribute values, or `None` after
    /// reporting errors.
    pub(super) fn bind_params(
        &mut self,
        scope: &Scope,
        block: &'a ast::Block,
        call: &BlockCall<'_>,
    ) -> Option<(Vec<Slot>, Params)> {
        let BlockCall {
            callee_span,
            positional,
            tensor_keywords,
            args,
            mut failed,
        } = *call;
        let tensor_params: Vec<&ast::Param> = block
            .params
            .iter()
            .filter(|p| matches!(p.kind, ParamKind::Tensor))
            .collect();
        // Tensors passed by keyword were reported already; counting them
        // here keeps the arity error for real miscounts.
        if positional.len() + tensor_keywords != tensor_params.len() {
            let names: Vec<String> = tensor_params
                .iter()
                .map(|p| format!("`{}`", p.name.name))
                .collect();
            self.errors.push(
                Diagnostic::error(format!(
                    "block `{}` takes {} tensor argument{}, found {}",
                    block.name.name,
                    tensor_params.len(),
                    if tensor_params.len() == 1 { "" } else { "s" },
                    positional.len()
                ))
                .with_primary(
                    callee_span,
                    format!(
                        "expected {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                )
                .with_secondary(block.name.span, "block defined here"),
            );
            failed = true;
        }
        let mut tensors = Vec::new();
        for path in positional {
            match self.resolve(scope, path) {
                Some(slot) => tensors.push(slot),
                None => failed = true,
            }
        }
        let mut params = Params::new();
        for arg in args {
            let param = block.params.iter().find(|p| p.name.name == arg.name);
            match param.map(|p| &p.kind) {
                Some(ParamKind::Attr { ty, .. }) => match coerce(*ty, &arg.value) {
                    Some(v) => {
                        params.insert(arg.name.clone(), v);
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::error(format!(
                                "argument `{}` of block `{}` expects {}, found {}",
                                arg.name,
                                block.name.name,
                                describe_type(*ty),
                                arg.value.describe()
                            ))
                            .with_primary(
                                arg.value_span,
                                format!("expected {}", describe_type(*ty)),
                            )
                            .with_secondary(
                                param.map_or(block.name.span, |p| p.span),
                                "parameter declared here",
                            ),
                        );
                        failed = true;
                    }
                },
                Some(ParamKind::Tensor) => {
                    self.errors.push(
                        Diagnostic::error(format!(
                            "tensor parameter `{}` passed as an attribute",
                            arg.name
                        ))
                        .with_primary(arg.name_span, "tensors are passed by position")
                        .with_help(format!(
                            "pass the tensor positionally: `{}(..., value, ...)`",
                            block.name.name
                        )),
                    );
                    failed = true;
                }
                None => {
                    let attr_names = block
                        .params
                        .iter()
                        .filter(|p| !matches!(p.kind, ParamKind::Tensor))
                        .map(|p| p.name.name.as_str());
                    let mut d = Diagnostic::error(format!(
                        "block `{}` has no parameter `{}`",
                        block.name.name, arg.name
                    ))
                    .with_primary(arg.name_span, "unknown parameter")
                    .with_secondary(block.name.span, "block defined here");
                    if let Some(s) = suggest(&arg.name, attr_names) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    }
                    self.errors.push(d);
                    failed = true;
                }
            }
        }
        // Defaults are evaluated in order, so they may use earlier parameters.
        for param in &block.params {
            if let ParamKind::Attr {
                ty,
                default,
                ty_span,
            } = &param.kind
            {
                if args.iter().any(|a| a.name == param.name.name) {
                    // Given, and reported above if it was ill-typed.
                    continue;
                }
                match default {
                    Some(expr) => match eval(expr, &params) {
                        Ok(v) => match coerce(*ty, &v) {
                            Some(v) => {
                                params.insert(param.name.name.clone(), v);
                            }
                            None => {
                                self.errors.push(
                                    Diagnostic::error(format!(
                                        "default of `{}` is {}, but the parameter is {}",
                                        param.name.name,
                                        v.describe(),
                                        describe_type(*ty)
                                    ))
                                    .with_primary(
                                        expr.span,
                                        format!("expected {}", describe_type(*ty)),
                                    )
                                    .with_secondary(*ty_span, "parameter type declared here"),
                                );
                                failed = true;
                            }
                        },
                        Err(d) => {
                            self.errors.push(d);
                            failed = true;
                        }
                    },
                    None => {
                        self.errors.push(
                            Diagnostic::error(format!(
                                "missing argument `{}` for block `{}`",
                                param.name.name, block.name.name
                            ))
                            .with_primary(callee_span, format!("`{}` is required", param.name.name))
                            .with_secondary(
                                param.span,
                                "parameter declared here without a default",
                            ),
                        );
                        failed = true;
                    }
                }
            }
        }
        if failed || tensors.iter().any(|s| matches!(s, Slot::Poisoned)) {
            return None;
        }
        Some((tensors, params))
    }

    /// Lowers one instance of a block under the prefix `local`; returns the
    /// slot of its `return` value.
    pub(super) fn instantiate(
        &mut self,
        outer: &Scope,
        local: &str,
        block: &'a ast::Block,
        tensors: &[Slot],
        attrs: &Params,
        call_span: Span,
    ) -> Slot {
        if self.too_large {
            return Slot::Poisoned;
        }
        if outer.depth >= MAX_BLOCK_DEPTH {
            self.errors
                .push(Diagnostic::error("blocks nested too deeply").with_primary(
                    call_span,
                    format!("more than {MAX_BLOCK_DEPTH} nested block calls"),
                ));
            return Slot::Poisoned;
        }
        let mut scope = Scope {
            prefix: outer.full_name(local),
            values: HashMap::new(),
            params: attrs.clone(),
            depth: outer.depth + 1,
            in_block: true,
        };
        let tensor_params = block
            .params
            .iter()
            .filter(|p| matches!(p.kind, ParamKind::Tensor));
        for (param, slot) in tensor_params.zip(tensors) {
            scope.values.insert(
                param.name.name.clone(),
                Binding {
                    slot: *slot,
                    span: param.span,
                },
            );
        }
        let mut result = None;
        let errors_before = self.errors.len();
        for (i, stmt) in block.body.iter().enumerate() {
            match stmt {
                Stmt::Let(binding) => self.lower_let(&mut scope, binding),
                Stmt::Return(ret) => {
                    if i + 1 != block.body.len() {
                        self.errors.push(
                            Diagnostic::error("`return` must be the last statement of a block")
                                .with_primary(ret.span, "statements after this are never used")
                                .with_help("move `return` to the end of the block"),
                        );
                    }
                    result = self.resolve(&scope, &ret.value);
                }
                Stmt::Input(input) => self.lower_input(&mut scope, input),
                Stmt::Output(out) => self.errors.push(
                    Diagnostic::error("`output` inside a block")
                        .with_primary(out.span, "blocks end with `return`")
                        .with_help("write `return name` to give the block's result"),
                ),
            }
        }
        // An `output` in the block was reported with the advice to write `return`.
        let ends = |s: &Stmt| matches!(s, Stmt::Return(_) | Stmt::Output(_));
        if result.is_none() && !block.body.iter().any(ends) {
            self.errors.push(
                Diagnostic::error(format!("block `{}` has no `return`", block.name.name))
                    .with_primary(block.name.span, "this block returns nothing")
                    .with_help("end the block with `return name`"),
            );
        }
        // Errors inside one instance would repeat for every instance; keep
        // the first copy of each.
        if self.errors.len() > errors_before {
            let mut seen = Vec::new();
            let new: Vec<Diagnostic> = self.errors.drain(errors_before..).collect();
            for d in new {
                if !self.errors[..errors_before].contains(&d) && !seen.contains(&d) {
                    seen.push(d);
                }
            }
            self.errors.extend(seen);
        }
        result.unwrap_or(Slot::Poisoned)
    }
}

fn coerce(ty: ast::AttrType, v: &Value) -> Option<Value> {
    use ast::AttrType as T;
    match (ty, v) {
        (T::Int, Value::Int(_))
        | (T::Bool, Value::Bool(_))
        | (T::Str, Value::Str(_))
        | (T::Float, Value::Float(_)) => Some(v.clone()),
        (T::Float, Value::Int(i)) => Some(Value::Float(*i as f64)),
        (T::Ints, Value::List(items)) if items.iter().all(|i| matches!(i, Value::Int(_))) => {
            Some(v.clone())
        }
        _ => None,
    }
}

fn describe_type(ty: ast::AttrType) -> &'static str {
    match ty {
        ast::AttrType::Int => "an int",
        ast::AttrType::Float => "a float",
        ast::AttrType::Bool => "a bool",
        ast::AttrType::Str => "a string",
        ast::AttrType::Ints => "a list of ints",
    }
}
