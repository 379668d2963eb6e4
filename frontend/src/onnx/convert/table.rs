//! Every ONNX op nnc imports, in one table: its ONNX name, the `.nn` ops it
//! becomes, and how it is converted. The table is the list of supported
//! ops (`nnc import` names every node whose op is missing from it) and the
//! dispatch; ops that map one to one onto an elementwise `.nn` op need no
//! converter of their own, only a row.

use super::attrs::Attrs;
use super::{Converter, Outputs};
use crate::onnx::proto::NodeProto;

/// A converter: the node, its attributes (each one read is marked used), to
/// one value per ONNX output.
pub(super) type Convert = fn(&mut Converter<'_>, &NodeProto, &mut Attrs<'_>) -> Outputs;

/// How a row's op is converted.
#[derive(Clone, Copy)]
pub(super) enum Conversion {
    /// One operand to the row's single `.nn` op, with ONNX attributes
    /// renamed: `(onnx name, .nn name, default)`.
    Unary(&'static [(&'static str, &'static str, f32)]),
    /// Two operands, NumPy broadcasting, to the row's single `.nn` op;
    /// folded at import when both are constants.
    Binary,
    /// A converter of its own.
    Custom(Convert),
}

/// One ONNX op.
pub struct OnnxOp {
    /// The ONNX `op_type`.
    pub onnx: &'static str,
    /// The `.nn` ops it may become (empty: only folded at import, as shape
    /// arithmetic is).
    pub dsl: &'static [&'static str],
    pub(super) conversion: Conversion,
}

const fn unary(onnx: &'static str, dsl: &'static [&'static str]) -> OnnxOp {
    OnnxOp {
        onnx,
        dsl,
        conversion: Conversion::Unary(&[]),
    }
}

const fn renamed(
    onnx: &'static str,
    dsl: &'static [&'static str],
    attrs: &'static [(&'static str, &'static str, f32)],
) -> OnnxOp {
    OnnxOp {
        onnx,
        dsl,
        conversion: Conversion::Unary(attrs),
    }
}

const fn binary(onnx: &'static str, dsl: &'static [&'static str]) -> OnnxOp {
    OnnxOp {
        onnx,
        dsl,
        conversion: Conversion::Binary,
    }
}

const fn custom(onnx: &'static str, dsl: &'static [&'static str], convert: Convert) -> OnnxOp {
    OnnxOp {
        onnx,
        dsl,
        conversion: Conversion::Custom(convert),
    }
}

/// Every ONNX op nnc imports, in alphabetical order.
pub const OPS: &[OnnxOp] = &[
    unary("Abs", &["abs"]),
    binary("Add", &["add"]),
    custom("AveragePool", &["avg_pool2d"], |c, n, a| {
        c.window_1d(n, a, Converter::pool)
    }),
    custom("BatchNormalization", &["batch_norm"], |c, n, a| {
        c.batch_norm(n, a)
    }),
    custom("Cast", &[], |c, n, a| c.cast(n, a)),
    renamed("Celu", &["celu"], &[("alpha", "alpha", 1.0)]),
    custom("Clip", &["clip", "relu6", "relu"], |c, n, a| c.clip(n, a)),
    custom("Concat", &["concat"], |c, n, a| c.concat(n, a)),
    custom("Constant", &[], |c, _, a| c.constant_node(a)),
    custom("ConstantOfShape", &[], |c, n, a| c.constant_of_shape(n, a)),
    custom("Conv", &["conv2d"], |c, n, a| {
        c.window_1d(n, a, Converter::conv)
    }),
    custom("ConvTranspose", &["conv_transpose2d"], |c, n, a| {
        c.window_1d(n, a, Converter::conv_transpose)
    }),
    binary("Div", &["div"]),
    custom("Dropout", &["dropout"], |c, n, a| c.dropout(n, a)),
    renamed("Elu", &["elu"], &[("alpha", "alpha", 1.0)]),
    unary("Erf", &["erf"]),
    unary("Exp", &["exp"]),
    custom("Expand", &["expand", "reshape"], |c, n, _| c.expand(n)),
    custom("Flatten", &["flatten"], |c, n, a| c.flatten(n, a)),
    custom("GRU", &["gru"], |c, n, a| c.recurrent(n, a)),
    custom("Gather", &["select", "index_select"], |c, n, a| {
        c.gather(n, a)
    }),
    custom("Gelu", &["gelu"], |c, n, a| c.gelu(n, a)),
    custom("Gemm", &["linear", "matmul"], |c, n, a| c.gemm(n, a)),
    custom("GlobalAveragePool", &["global_avg_pool"], |c, n, a| {
        c.window_1d(n, a, |c, n, _| c.global_avg_pool(n))
    }),
    custom("GlobalMaxPool", &["global_max_pool", "amax"], |c, n, _| {
        c.global_max_pool(n)
    }),
    custom("GroupNormalization", &["group_norm"], |c, n, a| {
        c.group_norm(n, a)
    }),
    renamed(
        "HardSigmoid",
        &["hardsigmoid"],
        &[("alpha", "alpha", 0.2), ("beta", "beta", 0.5)],
    ),
    unary("HardSwish", &["hardswish"]),
    custom("Identity", &["identity"], |c, n, _| c.identity(n)),
    custom("InstanceNormalization", &["instance_norm"], |c, n, a| {
        c.instance_norm(n, a)
    }),
    custom("LRN", &["local_response_norm"], |c, n, a| c.lrn(n, a)),
    custom("LSTM", &["lstm"], |c, n, a| c.recurrent(n, a)),
    custom("LayerNormalization", &["layer_norm"], |c, n, a| {
        c.layer_norm(n, a)
    }),
    renamed(
        "LeakyRelu",
        &["leaky_relu"],
        &[("alpha", "negative_slope", 0.01)],
    ),
    unary("Log", &["log"]),
    custom("LogSoftmax", &["log_softmax", "reshape"], |c, n, a| {
        c.softmax(n, a, "log_softmax")
    }),
    custom("MatMul", &["matmul", "linear"], |c, n, _| c.matmul(n)),
    custom("Max", &["maximum", "identity"], |c, n, a| {
        c.variadic(n, a, "maximum", false)
    }),
    custom("MaxPool", &["max_pool2d"], |c, n, a| {
        c.window_1d(n, a, Converter::pool)
    }),
    custom("Mean", &["add", "mul", "identity"], |c, n, a| {
        c.variadic(n, a, "add", true)
    }),
    custom("Min", &["minimum", "identity"], |c, n, a| {
        c.variadic(n, a, "minimum", false)
    }),
    unary("Mish", &["mish"]),
    binary("Mul", &["mul"]),
    unary("Neg", &["neg"]),
    custom("PRelu", &["prelu"], |c, n, _| c.prelu(n)),
    custom("Pad", &["pad"], |c, n, a| c.pad(n, a)),
    custom("Pow", &["pow"], |c, n, a| c.pow(n, a)),
    custom("RNN", &["rnn"], |c, n, a| c.recurrent(n, a)),
    unary("Reciprocal", &["reciprocal"]),
    custom("ReduceMax", &["amax"], |c, n, a| c.reduce(n, a, "amax", 18)),
    custom("ReduceMean", &["mean"], |c, n, a| {
        c.reduce(n, a, "mean", 18)
    }),
    custom("ReduceMin", &["amin"], |c, n, a| c.reduce(n, a, "amin", 18)),
    custom("ReduceSum", &["sum"], |c, n, a| c.reduce(n, a, "sum", 13)),
    unary("Relu", &["relu"]),
    custom("Reshape", &["reshape"], |c, n, a| c.reshape(n, a)),
    custom("Resize", &["interpolate"], |c, n, a| c.resize(n, a)),
    custom("Selu", &["selu"], |c, n, a| c.selu(n, a)),
    custom("Shape", &[], |c, n, a| c.shape(n, a)),
    unary("Sigmoid", &["sigmoid"]),
    custom("Slice", &["slice"], |c, n, a| c.slice(n, a)),
    custom("Softmax", &["softmax", "reshape"], |c, n, a| {
        c.softmax(n, a, "softmax")
    }),
    unary("Softplus", &["softplus"]),
    unary("Softsign", &["softsign"]),
    custom("Split", &["slice"], |c, n, a| c.split(n, a)),
    unary("Sqrt", &["sqrt"]),
    custom("Squeeze", &["reshape"], |c, n, a| c.squeeze(n, a)),
    binary("Sub", &["sub"]),
    custom("Sum", &["add", "identity"], |c, n, a| {
        c.variadic(n, a, "add", false)
    }),
    unary("Tanh", &["tanh"]),
    custom("Tile", &["repeat"], |c, n, _| c.tile(n)),
    custom("Transpose", &["permute"], |c, n, a| c.transpose(n, a)),
    custom("Unsqueeze", &["reshape"], |c, n, a| c.squeeze(n, a)),
    custom("Upsample", &["interpolate"], |c, n, a| c.upsample(n, a)),
];

/// The row of an ONNX op type.
pub fn lookup(op_type: &str) -> Option<&'static OnnxOp> {
    OPS.iter().find(|op| op.onnx == op_type)
}

/// The ONNX op types nnc imports.
pub fn supported() -> impl Iterator<Item = &'static str> {
    OPS.iter().map(|op| op.onnx)
}
