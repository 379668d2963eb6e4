//! The `simplify` rewrite that folds a `pad` into the `conv2d`,
//! `max_pool2d` or `avg_pool2d` that reads it, adding its spatial pads to
//! the op's own padding, so the padded copy is never made (exporters write
//! `Pad` before a window op for TensorFlow's `SAME` padding and Caffe's
//! pooling).
//!
//! Only what gives identical values folds: a constant `pad` of the two
//! spatial dims, by non-negative amounts, read by nothing else, and
//! - before `conv2d`, of zeros (the conv's own padding is zeros);
//! - before `avg_pool2d` with `count_include_pad=true`, of zeros: the zeros
//!   add nothing to the sums and the divisor is the window clipped to the
//!   padded input either way; with `count_include_pad=false` only when the
//!   pool has no padding of its own, as the divisor of the padded input's
//!   elements in the window is then the window clipped to the padded input,
//!   which `count_include_pad=true` computes once the padding is the pool's;
//! - before `max_pool2d`, of `-inf` (the pool's own padding), or with
//!   undilated windows, each of which overlaps the input, of a value no
//!   larger than every input element (zero or less after a `relu`, for
//!   one): the padding never wins. The lowest finite float, which some
//!   converters pad with (and the `.nn` text writes for `-inf`), folds only
//!   on such an input: a window of `-inf` inputs would give `-inf` instead.
//!
//! The folded padding must keep every side of a pool at most half its
//! kernel, and the op its output shape (with `ceil_mode`, padding that
//! was input may keep a window the op's own padding drops).

use super::NAME;
use crate::ir::{
    Activation, AvgPool2dAttrs, Conv2dAttrs, Graph, GraphError, MaxPool2dAttrs, NodeId, Op,
    PadMode, Padding, TensorType, UnaryFunction,
};
use crate::shape::infer;

/// How deep [`non_negative`] looks through the producers of a value.
const SEARCH_DEPTH: usize = 8;

/// The ops a `pad` can fold into, with their attributes.
pub(super) enum Window {
    Conv2d(Conv2dAttrs),
    MaxPool2d(MaxPool2dAttrs),
    AvgPool2d(AvgPool2dAttrs),
}

/// What [`fold_pad`] did with a window op's operand.
pub(super) enum Outcome {
    /// The operand is not a `pad`.
    NoPad,
    /// The `pad` was folded into the op and removed.
    Folded,
    /// The `pad` stays, for this reason.
    Kept(String),
}

/// Folds the `pad` that window op `id` (with attributes `window`) reads,
/// when that is exact (see the module docs).
pub(super) fn fold_pad(
    graph: &mut Graph,
    id: NodeId,
    window: Window,
) -> Result<Outcome, GraphError> {
    let node = graph.node(id);
    let Some(&pad_id) = node.inputs().first() else {
        return Ok(Outcome::NoPad);
    };
    let pad_node = graph.node(pad_id);
    let Op::Pad(pad) = &pad_node.op else {
        return Ok(Outcome::NoPad);
    };
    let pad_name = pad_node.name.clone();
    let keep = |why: &str| {
        Ok(Outcome::Kept(format!(
            "{pad_name}: not folded into {}: {why}",
            node.name
        )))
    };
    if graph.users(pad_id) != [id] || graph.outputs().contains(&pad_id) {
        return keep("it has other users");
    }
    if node.inputs()[1..].contains(&pad_id) {
        return keep("the op also reads it as a parameter");
    }
    let Some(spatial) = spatial_pads(&pad.pads) else {
        return keep("it pads more than the two spatial dims, or crops");
    };
    if pad.mode != PadMode::Constant {
        return keep(&format!("its mode is {}", pad.mode.name()));
    }
    let (value, source) = (pad.value, pad_node.inputs()[0]);
    let own = match &window {
        Window::Conv2d(a) => a.padding,
        Window::MaxPool2d(a) => a.padding,
        Window::AvgPool2d(a) => a.padding,
    };
    let Some(padding) = own.checked_add(spatial) else {
        return keep("the padding would overflow");
    };
    let folded = match window {
        Window::Conv2d(a) => {
            if value != 0.0 {
                return keep("a conv pads with zeros, not with its value");
            }
            Op::Conv2d(Conv2dAttrs { padding, ..a })
        }
        Window::AvgPool2d(a) => {
            if value != 0.0 {
                return keep("an average pool pads with zeros, not with its value");
            }
            if !a.count_include_pad && !a.padding.is_zero() {
                return keep("the pool does not count its own padding, but would count the pad's");
            }
            Op::AvgPool2d(AvgPool2dAttrs {
                padding,
                count_include_pad: true,
                ..a
            })
        }
        Window::MaxPool2d(a) => {
            if value != f32::NEG_INFINITY {
                if a.dilation != [1, 1] {
                    return keep("a dilated window may see only the pad's value");
                }
                if !(value <= 0.0 && non_negative(graph, source, SEARCH_DEPTH)) {
                    return keep("its value could be larger than an input element");
                }
            }
            Op::MaxPool2d(MaxPool2dAttrs { padding, ..a })
        }
    };
    // Shape inference rejects a pool padding past half its kernel.
    let mut types: Vec<&TensorType> = node.inputs().iter().map(|&i| &graph.node(i).ty).collect();
    types[0] = &graph.node(source).ty;
    match infer(&folded, &types) {
        Ok(ty) if ty == node.ty => {}
        Ok(_) => return keep("the op's own padding would give another output size"),
        Err(e) => return keep(&e.message),
    }
    let mut inputs = node.inputs().to_vec();
    inputs[0] = source;
    graph.node_mut(id).op = folded;
    graph.set_inputs(id, inputs)?;
    graph.remove(pad_id)?;
    graph
        .node_mut(id)
        .note(NAME, format!("folded {pad_name} into pad={padding}"));
    Ok(Outcome::Folded)
}

/// The spatial pads of a rank-4 `pad` (ONNX order: every dim's before,
/// then every dim's after) as a [`Padding`], if it pads only `H` and `W`
/// and crops nothing.
fn spatial_pads(pads: &[i64]) -> Option<Padding> {
    let [0, 0, top, left, 0, 0, bottom, right] = *pads else {
        return None;
    };
    let side = |p: i64| usize::try_from(p).ok();
    Some(Padding::from_sides([
        side(top)?,
        side(left)?,
        side(bottom)?,
        side(right)?,
    ]))
}

/// Whether every element of value `id` is provably `>= 0` (or NaN, which
/// a max pool propagates from the input either way), looking `depth`
/// producers deep. Only ops whose compiled form is exact in sign count:
/// clamps, `abs`, `sqrt` and `sigmoid`, not the approximated `softplus`.
fn non_negative(graph: &Graph, id: NodeId, depth: usize) -> bool {
    let Some(depth) = depth.checked_sub(1) else {
        return false;
    };
    let node = graph.node(id);
    let operand = |i: usize| {
        node.inputs()
            .get(i)
            .is_some_and(|&x| non_negative(graph, x, depth))
    };
    match &node.op {
        Op::Activation(a) => match a {
            Activation::Relu
            | Activation::Relu6
            | Activation::Sigmoid
            | Activation::Hardsigmoid { .. } => true,
            Activation::Clip { min, .. } => *min >= 0.0,
            Activation::LeakyRelu { .. }
            | Activation::Tanh
            | Activation::Elu { .. }
            | Activation::Selu
            | Activation::Celu { .. }
            | Activation::Softplus
            | Activation::Softsign
            | Activation::Hardswish
            | Activation::Silu
            | Activation::Mish
            | Activation::Gelu { .. } => false,
        },
        Op::Unary(f) => match f {
            UnaryFunction::Abs => true,
            UnaryFunction::Sqrt => true,
            UnaryFunction::Exp
            | UnaryFunction::Log
            | UnaryFunction::Reciprocal
            | UnaryFunction::Neg
            | UnaryFunction::Erf
            | UnaryFunction::Pow { .. } => false,
        },
        Op::Concat(_) => (0..node.inputs().len()).all(operand),
        // Every undilated window overlaps the input (its padding is at
        // most half the kernel), so the `-inf` padding never wins.
        Op::MaxPool2d(a) => a.dilation == [1, 1] && operand(0),
        Op::AvgPool2d(_)
        | Op::GlobalAvgPool
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Permute(_)
        | Op::Select(_)
        | Op::Identity
        | Op::Dropout(_)
        | Op::Indexing(_)
        // Means, sums and extremes of non-negative values, a bilinear
        // blend's convex weights, and LRN's positive divisor keep the sign.
        | Op::Reduce(_)
        | Op::Interpolate(_)
        | Op::LocalResponseNorm(_) => operand(0),
        Op::Pad(p) => (p.mode != PadMode::Constant || p.value >= 0.0) && operand(0),
        Op::Input(_)
        | Op::Weight(_)
        | Op::Conv2d(_)
        | Op::ConvTranspose2d(_)
        | Op::BatchNorm(_)
        | Op::GroupNorm(_)
        | Op::LayerNorm(_)
        | Op::InstanceNorm(_)
        | Op::Prelu(_)
        | Op::Linear(_)
        | Op::Binary(_)
        | Op::Softmax(_)
        | Op::LogSoftmax(_)
        | Op::Rnn(_)
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::Elementwise(_)
        | Op::Im2Col(_)
        | Op::Gemm(_)
        | Op::Col2Im(_)
        | Op::DepthwiseConv2d(_)
        | Op::SeparableConv2d(_)
        | Op::MatMul
        | Op::Constant(_)
        | Op::WinogradInput(_)
        | Op::WinogradOutput(_) => false,
    }
}
