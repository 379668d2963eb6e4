//! Graph-to-graph optimisation passes and the one registry that orders them.
//!
//! Each pass is one file with a free function `fn(&mut Graph, &mut
//! WeightSet) -> Result<PassReport, PassError>`; its file name, registry name
//! and CLI name agree (`fold_bn.rs`, `fold-bn`, `--pass=fold-bn`). Passes edit
//! the graph only through [`Graph`]'s methods and keep the weight set in step
//! with the graph's `weight` nodes: a pass that adds a weight node inserts
//! its tensor, and [`dce`] removes the tensors of the weights it deletes.
//! [`run_pipeline`] can run the verifier after every pass, so a pass that
//! breaks an invariant is named in the error.

pub mod dce;
pub mod fold_bn;
pub mod fold_constants;
pub mod fuse;
pub mod lower_conv;
pub mod simplify;

use crate::interp::InterpError;
use crate::ir::{Graph, GraphError, Node, NodeId, Op, TensorType, WeightAttrs, WeightRole};
use crate::verify::{verify, VerifyError};
use nnc_runtime::{Tensor, TensorError, WeightSet};
use rayon::prelude::*;

/// A named graph transformation.
pub struct Pass {
    /// The registry and CLI name, a verb phrase (`fold-bn`).
    pub name: &'static str,
    /// One line for `nnc passes`.
    pub description: &'static str,
    /// Runs the pass once over the whole graph.
    pub run: fn(&mut Graph, &mut WeightSet) -> Result<PassReport, PassError>,
}

/// What one run of a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// How many rewrites the pass made (0 when it changed nothing).
    pub fired: usize,
    /// Explanations, mostly of candidates the pass did not rewrite and why
    /// (`bn1: producer conv1 has 2 users`).
    pub notes: Vec<String>,
}

/// Why a pass or the pipeline failed. Except for [`PassError::UnknownPass`],
/// every variant is a compiler bug or a graph the pass cannot handle, and
/// names the pass.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A name that is not in [`PASSES`].
    #[error("unknown pass `{name}`; the passes are: {}", pass_names().collect::<Vec<_>>().join(", "))]
    UnknownPass { name: String },
    /// The verifier rejected the graph a pass produced.
    #[error("pass `{pass}` produced invalid IR:\n{}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Verify {
        pass: &'static str,
        errors: Vec<VerifyError>,
    },
    /// A graph edit failed.
    #[error("pass `{pass}`: {source}")]
    Graph {
        pass: &'static str,
        #[source]
        source: GraphError,
    },
    /// A weight node whose tensor is not in the weight set.
    #[error("pass `{pass}`: weight `{name}` is not in the weight set")]
    MissingWeight { pass: &'static str, name: String },
    /// The interpreter could not evaluate a constant subgraph.
    #[error("pass `{pass}`: {source}")]
    Interp {
        pass: &'static str,
        #[source]
        source: InterpError,
    },
    /// A computed tensor could not be built.
    #[error("pass `{pass}`: {source}")]
    Tensor {
        pass: &'static str,
        #[source]
        source: TensorError,
    },
}

/// Every pass, in pipeline order.
pub const PASSES: &[Pass] = &[
    Pass {
        name: simplify::NAME,
        description: "remove inverted dropout and identity; classic dropout becomes a scale; a batch_norm without a conv/linear producer becomes a per-channel affine; spelled-out layer/instance norms and activations (x * sigmoid(x), GELU, hardswish) become one op",
        run: simplify::simplify,
    },
    Pass {
        name: fold_bn::NAME,
        description: "fold a batch_norm into the weights and bias of the conv2d, linear or conv_transpose2d before it",
        run: fold_bn::fold_bn,
    },
    Pass {
        name: fold_constants::NAME,
        description: "evaluate ops whose operands are all weights; fold a constant scale into the linear or conv2d after it",
        run: fold_constants::fold_constants,
    },
    Pass {
        name: fuse::NAME,
        description: "make bias adds, residual adds and activations the epilogue of the conv, linear or gemm before them; merge chains of elementwise ops",
        run: fuse::fuse,
    },
    Pass {
        name: lower_conv::NAME,
        description: "choose each convolution's algorithm: gemm (1x1), direct (few input channels), depthwise, separable (depthwise + 1x1), winograd (3x3 stride 1), im2col + gemm, or gemm + col2im (transposed)",
        run: lower_conv::lower_conv,
    },
    Pass {
        name: dce::NAME,
        description: "remove nodes and weights the outputs do not depend on",
        run: dce::dce,
    },
];

/// The names of all passes, in pipeline order.
pub fn pass_names() -> impl Iterator<Item = &'static str> {
    PASSES.iter().map(|p| p.name)
}

/// The pass registered under `name`.
pub fn find(name: &str) -> Option<&'static Pass> {
    PASSES.iter().find(|p| p.name == name)
}

/// The default pipeline up to and including `name` (what `dump-ir
/// --pass=NAME` runs), or `None` for an unknown name.
pub fn pipeline_through(name: &str) -> Option<Vec<&'static str>> {
    let end = PASSES.iter().position(|p| p.name == name)?;
    Some(PASSES[..=end].iter().map(|p| p.name).collect())
}

/// The passes a comma-separated list names (`--passes=simplify,dce`), in
/// the order given; an unknown name is an error that lists the valid ones.
pub fn parse_list(list: &str) -> Result<Vec<&'static str>, PassError> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            find(name)
                .map(|p| p.name)
                .ok_or_else(|| PassError::UnknownPass {
                    name: name.to_string(),
                })
        })
        .collect()
}

/// Runs one pass, then the verifier when `verify_each` is set.
pub fn run_pass(
    pass: &Pass,
    graph: &mut Graph,
    weights: &mut WeightSet,
    verify_each: bool,
) -> Result<PassReport, PassError> {
    let report = (pass.run)(graph, weights)?;
    if verify_each {
        let errors = verify(graph);
        if !errors.is_empty() {
            return Err(PassError::Verify {
                pass: pass.name,
                errors,
            });
        }
    }
    Ok(report)
}

/// Runs the named passes in the given order; every name is checked before
/// any pass runs. Returns each pass's report.
pub fn run_pipeline(
    graph: &mut Graph,
    weights: &mut WeightSet,
    names: &[&str],
    verify_each: bool,
) -> Result<Vec<(&'static str, PassReport)>, PassError> {
    let passes = names
        .iter()
        .map(|&name| {
            find(name).ok_or_else(|| PassError::UnknownPass {
                name: name.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut reports = Vec::with_capacity(passes.len());
    for pass in passes {
        reports.push((pass.name, run_pass(pass, graph, weights, verify_each)?));
    }
    Ok(reports)
}

// Helpers shared by the passes.

/// What a pass decided about one place it could rewrite.
enum Candidate<T> {
    /// Rewritable (or rewritten), with what the rewrite needs.
    Accepted(T),
    /// Looked like a candidate but is not rewritten; the reason becomes a
    /// note in the report.
    Refused(String),
    /// Not a candidate at all (a batch norm after a ReLU, for fold-bn);
    /// nothing to explain.
    Irrelevant,
}

/// The weight name a node reads, if it is a `weight` node.
fn weight_name(graph: &Graph, id: NodeId) -> Option<&str> {
    match &graph.node(id).op {
        Op::Weight(w) => Some(&w.name),
        _ => None,
    }
}

/// The tensor of weight node `id`, if `id` is a weight node or a
/// `constant` (which is its weight operand's value).
fn weight_tensor<'w>(
    pass: &'static str,
    graph: &Graph,
    weights: &'w WeightSet,
    id: NodeId,
) -> Result<Option<&'w Tensor>, PassError> {
    let id = match graph.node(id).op {
        Op::Constant(_) => graph.node(id).inputs().first().copied().unwrap_or(id),
        _ => id,
    };
    let Some(name) = weight_name(graph, id) else {
        return Ok(None);
    };
    weights
        .get(name)
        .map(Some)
        .ok_or_else(|| PassError::MissingWeight {
            pass,
            name: name.to_string(),
        })
}

/// `base`, or `base.1`, `base.2`, ... : the first name no weight node of the
/// graph and no tensor of the weight set uses.
fn fresh_weight_name(weights: &WeightSet, base: &str) -> String {
    // Every weight node's tensor is in the weight set (the passes'
    // precondition), so its names are all the names taken; looking them
    // up, rather than collecting the graph's, keeps a pass that adds a
    // weight per layer linear in the graph's size.
    let free = |name: &str| !weights.contains(name);
    if free(base) {
        return base.to_string();
    }
    (1usize..)
        .map(|i| format!("{base}.{i}"))
        .find(|name| free(name))
        .unwrap_or_else(|| base.to_string())
}

/// Adds a weight node named `base` (or a fresh variant of it) holding
/// `data` with `shape`, inserts the tensor into the weight set, and returns
/// the node.
fn add_weight(
    pass: &'static str,
    graph: &mut Graph,
    weights: &mut WeightSet,
    base: &str,
    role: WeightRole,
    shape: Vec<usize>,
    data: Vec<f32>,
) -> Result<NodeId, PassError> {
    let name = fresh_weight_name(weights, base);
    let tensor =
        Tensor::new(shape.clone(), data).map_err(|source| PassError::Tensor { pass, source })?;
    let node = Node::new(
        Op::Weight(WeightAttrs {
            name: name.clone(),
            role,
        }),
        Vec::new(),
        TensorType::f32(shape),
        name.clone(),
    );
    let id = graph
        .add(node)
        .map_err(|source| PassError::Graph { pass, source })?;
    weights.insert(name, tensor);
    Ok(id)
}

/// Gives `user` the weight `data` in place of its operand `old` (a weight
/// node): the tensor is overwritten when `user` is the weight's only user,
/// and otherwise stored as a new weight `<name>.folded` so the other users
/// keep the original. Returns the node `user` should read; the caller
/// rewires `user`.
fn replace_weight(
    pass: &'static str,
    graph: &mut Graph,
    weights: &mut WeightSet,
    user: NodeId,
    old: NodeId,
    data: Vec<f32>,
) -> Result<NodeId, PassError> {
    let shape = graph.node(old).ty.shape.clone();
    reshape_weight(pass, graph, weights, user, old, shape, data, "folded")
}

/// Like [`replace_weight`], with a new shape as well (a conv weight laid out
/// as a GEMM operand); a copy is named `<name>.<suffix>`.
#[allow(clippy::too_many_arguments)]
fn reshape_weight(
    pass: &'static str,
    graph: &mut Graph,
    weights: &mut WeightSet,
    user: NodeId,
    old: NodeId,
    shape: Vec<usize>,
    data: Vec<f32>,
    suffix: &str,
) -> Result<NodeId, PassError> {
    let name = weight_name(graph, old).unwrap_or_default().to_string();
    if is_only_user(graph, old, user) {
        let tensor = Tensor::new(shape.clone(), data)
            .map_err(|source| PassError::Tensor { pass, source })?;
        weights.insert(name, tensor);
        graph.node_mut(old).ty = TensorType::f32(shape);
        return Ok(old);
    }
    let role = if let Op::Weight(w) = &graph.node(old).op {
        w.role
    } else {
        WeightRole::NormWeight
    };
    add_weight(
        pass,
        graph,
        weights,
        &format!("{name}.{suffix}"),
        role,
        shape,
        data,
    )
}

/// True when `user` is the only reader of weight node `w` (and `w` is not a
/// graph output), so the weight may be changed in place.
fn is_only_user(graph: &Graph, w: NodeId, user: NodeId) -> bool {
    graph.users(w) == [user] && !graph.outputs().contains(&w)
}

/// Gives weight `old`, read only by `user`, a new shape with the same
/// row-major data (no copy); a shared weight is copied under
/// `<name>.<suffix>`. Returns the node `user` should read.
fn reshape_weight_view(
    pass: &'static str,
    graph: &mut Graph,
    weights: &mut WeightSet,
    user: NodeId,
    old: NodeId,
    shape: Vec<usize>,
    suffix: &str,
) -> Result<NodeId, PassError> {
    let name = weight_name(graph, old).unwrap_or_default().to_string();
    let tensor = weights
        .remove(&name)
        .ok_or_else(|| PassError::MissingWeight {
            pass,
            name: name.clone(),
        })?;
    if is_only_user(graph, old, user) {
        let tensor = Tensor::new(shape.clone(), tensor.into_data())
            .map_err(|source| PassError::Tensor { pass, source })?;
        weights.insert(name, tensor);
        graph.node_mut(old).ty = TensorType::f32(shape);
        return Ok(old);
    }
    let data = tensor.data().to_vec();
    weights.insert(name, tensor);
    reshape_weight(pass, graph, weights, user, old, shape, data, suffix)
}

/// Multiplies weight `old` (read by `user`) by `factor(row, col)` as
/// [`scale_weight`] does: in place when `user` is its only reader (no copy
/// of a large kernel), otherwise into a copy as [`replace_weight`] makes.
fn rescale_weight(
    pass: &'static str,
    graph: &mut Graph,
    weights: &mut WeightSet,
    user: NodeId,
    old: NodeId,
    factor: impl Fn(usize, usize) -> f64 + Sync,
) -> Result<NodeId, PassError> {
    let name = weight_name(graph, old).unwrap_or_default().to_string();
    if !is_only_user(graph, old, user) {
        let tensor =
            weight_tensor(pass, graph, weights, old)?.ok_or_else(|| PassError::MissingWeight {
                pass,
                name: name.clone(),
            })?;
        let data = scale_weight(tensor, factor);
        return replace_weight(pass, graph, weights, user, old, data);
    }
    let missing = PassError::MissingWeight {
        pass,
        name: name.clone(),
    };
    let tensor = weights.get_mut(&name).ok_or(missing)?;
    let shape = tensor.shape().to_vec();
    let cols = shape.get(1).copied().unwrap_or(1).max(1);
    let inner = shape
        .get(2..)
        .map_or(1, |s| s.iter().product::<usize>())
        .max(1);
    // Rows on all cores: folding resnet18's batch norms scales 11M
    // weights, most of the passes' time on one thread.
    let row_len = cols * inner;
    tensor
        .data_mut()
        .par_chunks_mut(row_len)
        .with_min_len((1 << 14) / row_len + 1)
        .enumerate()
        .for_each(|(row, runs)| {
            for (col, run) in runs.chunks_mut(inner).enumerate() {
                let f = factor(row, col);
                for w in run {
                    *w = (f64::from(*w) * f) as f32;
                }
            }
        });
    Ok(old)
}

/// Batch norm as a per-channel affine `y = x * scale + shift`, with
/// `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`,
/// computed in `f64` so folding adds no rounding of its own.
fn bn_scale_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> (Vec<f64>, Vec<f64>) {
    (0..gamma.len())
        .map(|c| {
            let scale = f64::from(gamma[c]) / (f64::from(var[c]) + f64::from(eps)).sqrt();
            (scale, f64::from(beta[c]) - f64::from(mean[c]) * scale)
        })
        .unzip()
}

/// A conv or linear weight with element `[row, col, ...]` multiplied by
/// `factor(row, col)`: the two leading axes are the output and input
/// channels (of one group) of every weight that passes rescale.
fn scale_weight(weight: &Tensor, factor: impl Fn(usize, usize) -> f64) -> Vec<f32> {
    let shape = weight.shape();
    // Row-major: each row holds `cols` runs of `inner` elements.
    let cols = shape.get(1).copied().unwrap_or(1).max(1);
    let inner = shape
        .get(2..)
        .map_or(1, |s| s.iter().product::<usize>())
        .max(1);
    let mut out = Vec::with_capacity(weight.len());
    for (i, run) in weight.data().chunks(inner).enumerate() {
        let f = factor(i / cols, i % cols);
        out.extend(run.iter().map(|&w| (f64::from(w) * f) as f32));
    }
    out
}
