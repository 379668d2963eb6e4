//! From an ONNX graph to `.nn` statements and weights.
//!
//! Nodes are converted in graph order. Every ONNX value becomes either a
//! constant known at import time (initializers, `Constant` nodes, shape
//! arithmetic, folded here) or a binding of the `.nn` model with a static
//! shape that the importer tracks, because ops such as `Shape`, `Reshape`
//! with `0` dims, `Flatten` and `auto_pad` need it. A constant used where a
//! tensor is needed becomes a `constant` binding. A node that cannot be
//! converted is recorded with the reason and its outputs are poisoned; its
//! users are then only checked (with the shapes the model annotates), not
//! converted, and import reports every problem at once.

mod attrs;
mod conv;
mod indexing;
mod math;
mod norm;
mod recurrent;
mod reduce;
mod resize;
mod shape_ops;
mod table;

use super::constant::{numel, Constant, Data};
use super::emit::{self, Names};
use super::error::Unsupported;
use super::model::DataDir;
use super::proto::tensor_proto::DataLocation;
use super::proto::{GraphProto, NodeProto, TensorProto};
use crate::ast::{Expr, Stmt};
use attrs::Attrs;
use nnc_runtime::{Tensor, WeightSet};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use table::Conversion;
pub use table::{lookup, supported, OnnxOp, OPS};

/// An ONNX value during import.
#[derive(Clone, Debug)]
pub enum Val {
    /// Known at import time.
    Const(Rc<Constant>),
    /// A binding of the model with its static shape.
    Dyn { path: String, shape: Vec<usize> },
    /// The output of a node that could not be converted.
    Poisoned,
}

/// What a node converter returns: one value per ONNX output (`None` for an
/// output it does not produce, which must then be unused), or why the node
/// cannot be imported.
type Outputs = Result<Vec<Option<Val>>, String>;

/// The most elements of any tensor the imported model computes.
const MAX_ELEMENTS: usize = 1 << 40;

/// The state of one import.
pub struct Converter<'g> {
    pub opset: i64,
    /// Sizes for symbolic input dims.
    dims: &'g BTreeMap<String, usize>,
    pub data_dir: DataDir,
    values: HashMap<String, Val>,
    /// Inline initializers, checked but not decoded: a node that reads one
    /// decodes it ([`Converter::value`]), so a weight is decoded straight
    /// from the file's bytes into the tensor the model keeps, once.
    initializers: HashMap<&'g str, &'g TensorProto>,
    /// Initializers decoded for the node being converted (a converter may
    /// read an operand more than once); cleared after each node.
    decoded: RefCell<HashMap<String, Rc<Constant>>>,
    body: Vec<Stmt>,
    weights: WeightSet,
    names: Names,
    /// Constants already written as `constant` bindings, by ONNX value name.
    materialized: HashMap<String, String>,
    /// ONNX values that some node or the graph output reads.
    used: HashSet<&'g str>,
    /// `MatMul` outputs whose only user adds a constant bias: the bias
    /// initializer, which the `linear` takes as its own bias.
    matmul_bias: HashMap<String, String>,
    /// Outputs of those `Add`s, and the `MatMul` output they stand for.
    absorbed_add: HashMap<String, String>,
    /// Static shapes of float values that the model annotates (value_info,
    /// graph outputs), for checking nodes downstream of a rejected one.
    annotated: HashMap<&'g str, Vec<usize>>,
    problems: Vec<Unsupported>,
}

/// The result of converting a graph.
pub struct Converted {
    pub body: Vec<Stmt>,
    pub weights: WeightSet,
    pub problems: Vec<Unsupported>,
}

impl<'g> Converter<'g> {
    pub fn new(opset: i64, data_dir: DataDir, dims: &'g BTreeMap<String, usize>) -> Converter<'g> {
        Converter {
            opset,
            dims,
            data_dir,
            values: HashMap::new(),
            initializers: HashMap::new(),
            decoded: RefCell::default(),
            body: Vec::new(),
            weights: WeightSet::new(),
            names: Names::default(),
            materialized: HashMap::new(),
            used: HashSet::new(),
            matmul_bias: HashMap::new(),
            absorbed_add: HashMap::new(),
            annotated: HashMap::new(),
            problems: Vec::new(),
        }
    }

    /// Converts the whole graph: inputs, initializers, nodes and outputs.
    pub fn run(mut self, graph: &'g GraphProto) -> Converted {
        for node in &graph.node {
            self.used.extend(node.input.iter().map(String::as_str));
        }
        self.used.extend(graph.output.iter().map(|o| o.name()));
        for info in graph.value_info.iter().chain(&graph.output) {
            let shape = super::model::input_shape(info, &BTreeMap::new()).ok();
            if let Some(shape) = shape.filter(|s| numel(s).is_some_and(|n| n <= MAX_ELEMENTS)) {
                self.annotated.insert(info.name(), shape);
            }
        }
        for init in &graph.initializer {
            // External data is read now (one small read per tensor); inline
            // data is checked now and decoded where a node reads it.
            let checked = if init.data_location() == DataLocation::External {
                super::model::tensor_to_constant(init, &self.data_dir).map(|c| {
                    self.values
                        .insert(init.name().to_string(), Val::Const(Rc::new(c)));
                })
            } else {
                super::model::check_inline_tensor(init, &self.data_dir).map(|()| {
                    self.values.remove(init.name());
                    self.initializers.insert(init.name(), init);
                })
            };
            if let Err(why) = checked {
                self.problem(init.name(), "initializer", why);
            }
        }
        self.find_linear_biases(graph);
        for input in &graph.input {
            if self.values.contains_key(input.name())
                || self.initializers.contains_key(input.name())
            {
                continue; // An initializer listed as an input (IR version < 4).
            }
            let shape = super::model::input_shape(input, self.dims).and_then(|s| match numel(&s) {
                Some(n) if n <= MAX_ELEMENTS => Ok(s),
                _ => Err(format!("the shape {s:?} is too large")),
            });
            match shape {
                Ok(shape) => {
                    let name = self.names.fresh_ident(input.name(), "input");
                    self.body.push(emit::input(&name, &shape));
                    self.values
                        .insert(input.name().to_string(), Val::Dyn { path: name, shape });
                }
                Err(why) => {
                    self.problem(input.name(), "input", why);
                    self.values.insert(input.name().to_string(), Val::Poisoned);
                }
            }
        }
        for node in &graph.node {
            self.node(node);
            self.decoded.get_mut().clear();
        }
        let mut outputs = Vec::new();
        for out in &graph.output {
            match self.value(out.name()) {
                Some(Val::Dyn { path, .. }) => outputs.push(path),
                Some(Val::Const(c)) => outputs.push(self.materialize(out.name(), &c)),
                Some(Val::Poisoned) => {}
                None => self.problem(
                    out.name(),
                    "output",
                    "no node computes this graph output".into(),
                ),
            }
        }
        if self.problems.is_empty() {
            self.body.push(emit::output(&outputs));
        }
        Converted {
            body: self.body,
            weights: self.weights,
            problems: self.problems,
        }
    }

    /// Finds `MatMul(x, W)` followed by `Add(_, b)` with constant `W [K, N]`
    /// and `b [N]`, the MatMul's output used by nothing else: the pattern
    /// exporters write for a PyTorch `Linear` on inputs of rank 3 or more.
    /// Both become one `linear` with a bias.
    fn find_linear_biases(&mut self, graph: &'g GraphProto) {
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for name in graph.node.iter().flat_map(|n| n.input.iter()) {
            *uses.entry(name.as_str()).or_default() += 1;
        }
        for name in graph.output.iter().map(|o| o.name()) {
            *uses.entry(name).or_default() += 1;
        }
        let weight_cols = |name: &str| match self.const_dims(name)?[..] {
            [_, cols] => Some(cols),
            _ => None,
        };
        let matmuls: HashMap<&str, usize> = graph
            .node
            .iter()
            .filter(|n| n.op_type() == "MatMul" && n.input.len() == 2 && n.output.len() == 1)
            .filter(|n| uses.get(n.output[0].as_str()) == Some(&1))
            .filter_map(|n| Some((n.output[0].as_str(), weight_cols(&n.input[1])?)))
            .collect();
        for add in graph
            .node
            .iter()
            .filter(|n| n.op_type() == "Add" && n.input.len() == 2)
        {
            for (m, b) in [(0, 1), (1, 0)] {
                let Some(&cols) = matmuls.get(add.input[m].as_str()) else {
                    continue;
                };
                let bias_fits = self.const_dims(&add.input[b]) == Some(vec![cols]);
                if bias_fits && !self.matmul_bias.contains_key(&add.input[m]) {
                    self.matmul_bias
                        .insert(add.input[m].clone(), add.input[b].clone());
                    if let Some(out) = add.output.first() {
                        self.absorbed_add.insert(out.clone(), add.input[m].clone());
                    }
                    break;
                }
            }
        }
    }

    fn problem(&mut self, node: &str, op_type: &str, why: String) {
        self.problems.push(Unsupported {
            node: node.to_string(),
            op_type: op_type.to_string(),
            opset: self.opset,
            why,
        });
    }

    fn node(&mut self, node: &'g NodeProto) {
        let label = if node.name().is_empty() {
            node.output.first().cloned().unwrap_or_default()
        } else {
            node.name().to_string()
        };
        let poison = |c: &mut Converter<'g>| {
            for out in &node.output {
                c.values.insert(out.clone(), Val::Poisoned);
            }
        };
        let domain = node.domain();
        if !matches!(domain, "" | "ai.onnx") {
            self.problem(
                &label,
                node.op_type(),
                format!("ops of domain `{domain}` are not supported"),
            );
            return poison(self);
        }
        if lookup(node.op_type()).is_none() {
            self.problem(
                &label,
                node.op_type(),
                "nnc has no conversion for this op".into(),
            );
            return poison(self);
        }
        // Every op has an output; converters name their bindings after the
        // first.
        if node.output.is_empty() {
            self.problem(&label, node.op_type(), "the node has no outputs".into());
            return;
        }
        // A node reading a poisoned value cannot be imported; it is still
        // checked, so that its own problems are listed too, when the model
        // annotates the shapes of those values (see `check_downstream`).
        let poisoned: Vec<&String> = node
            .input
            .iter()
            // (An initializer is never poisoned: no need to decode one.)
            .filter(|i| matches!(self.values.get(*i), Some(Val::Poisoned)))
            .collect();
        if !poisoned.is_empty() {
            if let Err(why) = self.check_downstream(node, &poisoned) {
                self.problem(&label, node.op_type(), why);
            }
            return poison(self);
        }
        match self.convert_checked(node) {
            Ok(outs) => {
                for (out, val) in node.output.iter().zip(outs) {
                    if let Some(val) = val {
                        self.values.insert(out.clone(), val);
                    }
                }
            }
            Err(why) => {
                self.problem(&label, node.op_type(), why);
                poison(self);
            }
        }
    }

    /// Converts a node and checks what the converter cannot see alone:
    /// result sizes, attributes nobody read, and outputs it does not
    /// compute that are used.
    fn convert_checked(&mut self, node: &'g NodeProto) -> Outputs {
        let mut attrs = Attrs::new(&node.attribute);
        let outs = self.dispatch(node, &mut attrs)?;
        // Shapes only grow through ops such as broadcasting, matmul and
        // pad; bounding every result keeps all later products in range.
        for v in outs.iter().flatten() {
            if let Val::Dyn { shape, .. } = v {
                if numel(shape).is_none_or(|n| n > MAX_ELEMENTS) {
                    return Err(format!("the result of shape {shape:?} is too large"));
                }
            }
        }
        if let Some(a) = attrs.unread().first() {
            return Err(format!("attribute `{a}` is not supported"));
        }
        for (i, out) in node.output.iter().enumerate() {
            let missing = outs.get(i).is_none_or(Option::is_none);
            if missing && !out.is_empty() && self.used.contains(out.as_str()) {
                return Err(format!(
                    "output {i} (`{out}`) is used, but nnc computes only {}",
                    describe_outputs(&outs)
                ));
            }
        }
        Ok(outs)
    }

    /// Converts a node whose `poisoned` inputs come from nodes that could
    /// not be imported, with each such input standing in as a tensor of the
    /// shape the model annotates for it, then undoes everything the
    /// conversion wrote. Only float tensors stand in: a missing integer
    /// value is usually a shape computation, which converters need as a
    /// constant, and a stand-in would report a problem that is not there.
    fn check_downstream(
        &mut self,
        node: &'g NodeProto,
        poisoned: &[&String],
    ) -> Result<(), String> {
        let mut stand_ins = Vec::new();
        for name in poisoned {
            match self.annotated.get(name.as_str()) {
                Some(shape) => stand_ins.push(((*name).clone(), shape.clone())),
                None => return Ok(()), // Unknown shape: nothing to check with.
            }
        }
        // Bindings are fresh names, so the weights the conversion adds are
        // exactly the new names.
        let body = self.body.len();
        let weights: HashSet<String> = self.weights.names().map(str::to_string).collect();
        let materialized = self.materialized.clone();
        for (name, shape) in &stand_ins {
            let path = format!("unimported.{}", self.names.fresh(name, "value"));
            self.values.insert(
                name.clone(),
                Val::Dyn {
                    path,
                    shape: shape.clone(),
                },
            );
        }
        let result = self.convert_checked(node).map(|_| ());
        for (name, _) in stand_ins {
            self.values.insert(name, Val::Poisoned);
        }
        self.body.truncate(body);
        let added: Vec<String> = self
            .weights
            .names()
            .filter(|n| !weights.contains(*n))
            .map(str::to_string)
            .collect();
        for name in added {
            self.weights.remove(&name);
        }
        self.materialized = materialized;
        result
    }

    fn dispatch(&mut self, node: &'g NodeProto, a: &mut Attrs<'g>) -> Outputs {
        let Some(row) = lookup(node.op_type()) else {
            return Err(format!("nnc has no conversion for `{}`", node.op_type()));
        };
        let dsl = row.dsl.first().copied().unwrap_or_default();
        match row.conversion {
            Conversion::Unary(renames) => self.unary(node, a, dsl, renames),
            Conversion::Binary => self.binary(node, a, dsl),
            Conversion::Custom(convert) => convert(self, node, a),
        }
    }

    // ----------------------------------------------------------- operands

    /// Operand `i`, or `None` when absent or given as the empty name.
    fn arg(&self, node: &NodeProto, i: usize) -> Result<Option<Val>, String> {
        match node.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(name) => self
                .value(name)
                .map(Some)
                .ok_or_else(|| format!("input `{name}` is not defined before this node")),
        }
    }

    /// The value named `name`, decoding an initializer on its first read
    /// by the current node. An initializer decodes without error: it was
    /// checked when the graph was read.
    fn value(&self, name: &str) -> Option<Val> {
        if let Some(v) = self.values.get(name) {
            return Some(v.clone());
        }
        let init = self.initializers.get(name)?;
        let mut decoded = self.decoded.borrow_mut();
        if let Some(c) = decoded.get(name) {
            return Some(Val::Const(c.clone()));
        }
        let c = Rc::new(super::model::tensor_to_constant(init, &self.data_dir).ok()?);
        decoded.insert(name.to_string(), c.clone());
        Some(Val::Const(c))
    }

    /// The dims of a constant, without decoding an initializer.
    fn const_dims(&self, name: &str) -> Option<Vec<usize>> {
        match (self.values.get(name), self.initializers.get(name)) {
            (Some(Val::Const(c)), _) => Some(c.dims.clone()),
            (None, Some(init)) => init.dims.iter().map(|&d| usize::try_from(d).ok()).collect(),
            _ => None,
        }
    }

    /// A constant's values as `f32`, moved out rather than copied when
    /// nothing else holds the constant: a weight read once is decoded into
    /// the tensor the model keeps without a second copy.
    fn take_f32(&self, c: Rc<Constant>) -> Vec<f32> {
        self.decoded
            .borrow_mut()
            .retain(|_, cached| !Rc::ptr_eq(cached, &c));
        match Rc::try_unwrap(c) {
            Ok(Constant {
                data: Data::F32(v), ..
            }) => v,
            Ok(c) => c.data.to_f32(),
            Err(c) => c.data.to_f32(),
        }
    }

    /// Operand `i` as a binding (constants are written as `constant`s).
    fn dynamic(&mut self, node: &NodeProto, i: usize) -> Result<(String, Vec<usize>), String> {
        match self.arg(node, i)? {
            Some(v) => self
                .bound(&node.input[i], v)
                .ok_or_else(|| format!("input {i} is required")),
            None => Err(format!("input {i} is required")),
        }
    }

    /// A value as a binding: a constant is written as a `constant` named
    /// after `onnx_name`; `None` for a poisoned value.
    fn bound(&mut self, onnx_name: &str, v: Val) -> Option<(String, Vec<usize>)> {
        match v {
            Val::Dyn { path, shape } => Some((path, shape)),
            Val::Const(c) => Some((self.materialize(onnx_name, &c), c.dims.clone())),
            Val::Poisoned => None,
        }
    }

    /// Operand `i`, which must be known at import time.
    fn constant(
        &self,
        node: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Option<Rc<Constant>>, String> {
        match self.arg(node, i)? {
            Some(Val::Const(c)) => Ok(Some(c)),
            Some(_) => Err(format!(
                "{what} (`{}`) is computed at run time; nnc needs it to be a constant",
                node.input[i]
            )),
            None => Ok(None),
        }
    }

    fn required_constant(
        &self,
        node: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Rc<Constant>, String> {
        self.constant(node, i, what)?
            .ok_or_else(|| format!("{what} is required"))
    }

    /// Writes a constant as a `constant` binding holding it as its weight.
    fn materialize(&mut self, onnx_name: &str, c: &Constant) -> String {
        if let Some(path) = self.materialized.get(onnx_name) {
            return path.clone();
        }
        let path = self.names.fresh(onnx_name, "constant");
        let dims: Vec<i64> = c.dims.iter().map(|&d| d as i64).collect();
        self.body.push(emit::call(
            &path,
            "constant",
            &[],
            vec![("shape", emit::ints(dims))],
        ));
        self.weight(&path, "value", c.dims.clone(), c.data.to_f32());
        self.materialized
            .insert(onnx_name.to_string(), path.clone());
        path
    }

    // ------------------------------------------------------------ results

    /// A fresh binding name for a node: from `owner` (the module path of the
    /// node's weights, when their names say it), else the node's name, else
    /// its first output's.
    fn binding(&mut self, node: &NodeProto, owner: Option<&str>) -> String {
        let raw = owner
            .or(Some(node.name()).filter(|n| !n.is_empty()))
            .or(node.output.first().map(String::as_str))
            .unwrap_or("");
        let fallback = node.op_type().to_ascii_lowercase();
        self.names.fresh(raw, &fallback)
    }

    /// A fresh binding name from a raw ONNX name.
    fn named(&mut self, raw: &str, fallback: &str) -> String {
        self.names.fresh(raw, fallback)
    }

    /// A fresh binding name derived from another (for helper statements
    /// such as the explicit `pad` before a conv).
    fn helper(&mut self, base: &str, what: &str) -> String {
        self.names.fresh(&format!("{base}.{what}"), what)
    }

    /// Appends `target = callee(operands, keywords)` and returns its value.
    fn emit(
        &mut self,
        target: String,
        callee: &str,
        operands: &[String],
        keywords: Vec<(&str, Expr)>,
        shape: Vec<usize>,
    ) -> Val {
        self.body
            .push(emit::call(&target, callee, operands, keywords));
        Val::Dyn {
            path: target,
            shape,
        }
    }

    /// Adds the weight `owner.suffix`.
    fn weight(&mut self, owner: &str, suffix: &str, dims: Vec<usize>, data: Vec<f32>) {
        // The converters build data and dims from the same sizes, so this
        // cannot fail; were it to, lowering reports the weight as missing.
        if let Ok(t) = Tensor::new(dims, data) {
            self.weights.insert(format!("{owner}.{suffix}"), t);
        }
    }
}

/// The PyTorch module path that an ONNX initializer's name implies
/// (`layer1.0.conv1.weight` -> `layer1.0.conv1`), if it looks like one.
fn owner_of(initializer: &str) -> Option<&str> {
    initializer
        .strip_suffix(".weight")
        .filter(|o| !o.is_empty())
}

fn describe_outputs(outs: &[Option<Val>]) -> String {
    let produced: Vec<String> = outs
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_some())
        .map(|(i, _)| format!("output {i}"))
        .collect();
    produced.join(" and ")
}

/// The value of a single constant output.
fn constant_out(c: Constant) -> Outputs {
    Ok(vec![Some(Val::Const(Rc::new(c)))])
}

/// A single output.
fn one(v: Val) -> Outputs {
    Ok(vec![Some(v)])
}

/// Normalises a possibly negative axis against a rank.
fn axis(value: i64, rank: usize, what: &str) -> Result<usize, String> {
    let r = rank as i64;
    let a = if value < 0 { value + r } else { value };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("{what} {value} is out of range for rank {rank}"))
    }
}

/// The `i64` values of a constant used as a list (shape, axes, pads).
fn int_list(c: &Rc<Constant>) -> Vec<i64> {
    match &c.data {
        Data::I64(v) => v.clone(),
        Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
    }
}
