//! Shape inference: the output type of every op from its operand types,
//! exactly by the formulas of `shared/seed/README.md`.
//!
//! Lowering calls [`weight_shapes`] to learn which weights an op owns (their
//! shapes follow from the data operand) and then [`infer`] on all operands;
//! the verifier calls [`infer`] again on every node to check stored types.

mod indexing;

use crate::ir::*;
use nnc_runtime::{checked_numel, format_shape};

/// A shape error, without a location: the caller knows the span.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeError {
    /// Lowercase, no trailing period.
    pub message: String,
    /// What is wrong at the op, for the primary label.
    pub label: String,
    /// How to fix it, if there is a general answer.
    pub help: Option<String>,
}

impl ShapeError {
    fn new(message: impl Into<String>, label: impl Into<String>) -> ShapeError {
        ShapeError {
            message: message.into(),
            label: label.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> ShapeError {
        self.help = Some(help.into());
        self
    }
}

type SResult<T> = Result<T, ShapeError>;

/// A weight an op owns: the suffix of its name, its shape and its role.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSpec {
    /// Appended to the binding's path with a dot: `weight`, `running_mean`, `weight_ih_l0`.
    pub suffix: String,
    pub shape: Vec<usize>,
    pub role: WeightRole,
}

/// The weights of an op whose only weight is an optional per-channel bias
/// (the second half of a lowered conv: `col2im`, `winograd_output`).
fn bias_only(bias: bool, channels: usize) -> Vec<WeightSpec> {
    if bias {
        vec![spec("bias", vec![channels], WeightRole::Bias { fan_in: 1 })]
    } else {
        Vec::new()
    }
}

fn spec(suffix: impl Into<String>, shape: Vec<usize>, role: WeightRole) -> WeightSpec {
    WeightSpec {
        suffix: suffix.into(),
        shape,
        role,
    }
}

fn require_rank(op: &str, x: &TensorType, rank: usize, layout: &str) -> SResult<()> {
    if x.rank() != rank {
        return Err(ShapeError::new(
            format!("`{op}` expects a rank-{rank} input {layout}, found {x}"),
            format!("input has rank {}", x.rank()),
        ));
    }
    Ok(())
}

fn require_min_rank(op: &str, x: &TensorType, rank: usize) -> SResult<()> {
    if x.rank() < rank {
        return Err(ShapeError::new(
            format!("`{op}` expects an input of rank at least {rank}, found {x}"),
            format!("input has rank {}", x.rank()),
        ));
    }
    Ok(())
}

/// The weights `op` owns, given the type of its data operand `x`.
pub fn weight_shapes(op: &Op, x: &TensorType) -> SResult<Vec<WeightSpec>> {
    let channels = |name: &str| -> SResult<usize> {
        require_min_rank(name, x, 2)?;
        Ok(x.shape[1])
    };
    Ok(match op {
        Op::Conv2d(a) => conv_weights("conv2d", a, x)?,
        Op::DepthwiseConv2d(a) => {
            let w = conv_weights("depthwise_conv2d", a, x)?;
            require_depthwise("depthwise_conv2d", a, x)?;
            w
        }
        Op::SeparableConv2d(a) => {
            let dw = &a.depthwise;
            let mut w = Vec::new();
            let expanded;
            let x = match &a.expand {
                Some(e) => {
                    let fan_in = channels("separable_conv2d")?;
                    if fan_in != e.in_channels {
                        return Err(ShapeError::new(
                            format!(
                                "`separable_conv2d` expands {} input channels, found {x}",
                                e.in_channels
                            ),
                            "input channels",
                        ));
                    }
                    // The depthwise conv reads the expansion's output, one
                    // channel per group.
                    let c = dw.groups;
                    w.push(spec(
                        "expand.weight",
                        vec![c, fan_in],
                        WeightRole::Kernel { fan_in },
                    ));
                    if e.bias {
                        w.push(spec("expand.bias", vec![c], WeightRole::Bias { fan_in }));
                    }
                    let mut shape = x.shape.clone();
                    shape[1] = c;
                    expanded = TensorType::f32(shape);
                    &expanded
                }
                None => x,
            };
            w.extend(conv_weights("separable_conv2d", dw, x)?);
            require_depthwise("separable_conv2d", dw, x)?;
            let fan_in = dw.out_channels;
            w.push(spec(
                "pointwise.weight",
                vec![a.out_channels, dw.out_channels],
                WeightRole::Kernel { fan_in },
            ));
            if a.bias {
                w.push(spec(
                    "pointwise.bias",
                    vec![a.out_channels],
                    WeightRole::Bias { fan_in },
                ));
            }
            w
        }
        Op::Gemm(a) => {
            require_min_rank("gemm", x, 2)?;
            check_groups("gemm", x.shape[1], a.out_channels, a.groups)?;
            let fan_in = x.shape[1] / a.groups;
            let weight = if a.winograd.is_some() {
                // The 3x3 conv weight whose transform the products use.
                spec(
                    "weight",
                    vec![a.out_channels / a.groups, fan_in, 3, 3],
                    WeightRole::Kernel { fan_in: 9 * fan_in },
                )
            } else {
                spec(
                    "weight",
                    vec![a.out_channels, fan_in],
                    WeightRole::Kernel { fan_in },
                )
            };
            let mut w = vec![weight];
            if a.bias {
                w.push(spec(
                    "bias",
                    vec![a.out_channels],
                    WeightRole::Bias { fan_in },
                ));
            }
            w
        }
        Op::Col2Im(a) => bias_only(a.bias, a.out_channels),
        Op::WinogradOutput(a) => bias_only(a.bias, a.out_channels),
        Op::Im2Col(_) | Op::Elementwise(_) | Op::WinogradInput(_) => Vec::new(),
        Op::ConvTranspose2d(a) => {
            require_rank("conv_transpose2d", x, 4, "[N, C, H, W]")?;
            check_groups("conv_transpose2d", x.shape[1], a.out_channels, a.groups)?;
            // PyTorch computes the default init's fan-in from weight dim 1.
            let fan_in = product(
                "conv_transpose2d",
                &[a.out_channels / a.groups, a.kernel[0], a.kernel[1]],
            )?;
            let mut w = vec![spec(
                "weight",
                vec![
                    x.shape[1],
                    a.out_channels / a.groups,
                    a.kernel[0],
                    a.kernel[1],
                ],
                WeightRole::Kernel { fan_in },
            )];
            if a.bias {
                w.push(spec(
                    "bias",
                    vec![a.out_channels],
                    WeightRole::Bias { fan_in },
                ));
            }
            w
        }
        Op::BatchNorm(_) => {
            let c = channels("batch_norm")?;
            vec![
                spec("weight", vec![c], WeightRole::NormWeight),
                spec("bias", vec![c], WeightRole::NormBias),
                spec("running_mean", vec![c], WeightRole::RunningMean),
                spec("running_var", vec![c], WeightRole::RunningVar),
            ]
        }
        Op::GroupNorm(a) => {
            let c = channels("group_norm")?;
            affine(a.affine, vec![c])
        }
        Op::InstanceNorm(a) => {
            require_min_rank("instance_norm", x, 3)?;
            affine(a.affine, vec![x.shape[1]])
        }
        Op::LayerNorm(a) => {
            if a.normalized_dims == 0 || a.normalized_dims > x.rank() {
                return Err(ShapeError::new(
                    format!(
                        "`layer_norm` cannot normalise over the last {} dims of {x}",
                        a.normalized_dims
                    ),
                    "`dims` out of range",
                )
                .help(format!("`dims` must be between 1 and {}", x.rank())));
            }
            affine(a.affine, x.shape[x.rank() - a.normalized_dims..].to_vec())
        }
        Op::Linear(a) => {
            require_min_rank("linear", x, 1)?;
            let fan_in = x.shape[x.rank() - 1];
            let mut w = vec![spec(
                "weight",
                vec![a.out_features, fan_in],
                WeightRole::Kernel { fan_in },
            )];
            if a.bias {
                w.push(spec(
                    "bias",
                    vec![a.out_features],
                    WeightRole::Bias { fan_in },
                ));
            }
            w
        }
        Op::Rnn(a) => recurrent_weights("rnn", a, 1, x)?,
        Op::Lstm(a) => recurrent_weights("lstm", a, 4, x)?,
        Op::Gru(a) => recurrent_weights("gru", a, 3, x)?,
        Op::Constant(a) => vec![spec("value", a.shape.clone(), WeightRole::Constant)],
        Op::Prelu(a) => {
            // One slope per channel (dim 1), or one for every element.
            if a.num_parameters != 1 {
                let c = channels("prelu")?;
                if a.num_parameters != c {
                    return Err(ShapeError::new(
                        format!(
                            "`prelu` num_parameters={} does not match the {c} channels of {x}",
                            a.num_parameters
                        ),
                        format!("expected 1 or {c}"),
                    )
                    .help("a prelu has one slope, or one per channel (dim 1)"));
                }
            }
            vec![spec("weight", vec![a.num_parameters], WeightRole::Slope)]
        }
        Op::MatMul | Op::Pad(_) | Op::Indexing(_) | Op::Interpolate(_) => Vec::new(),
        Op::Input(_)
        | Op::Weight(_)
        | Op::Activation(_)
        | Op::Unary(_)
        | Op::MaxPool2d(_)
        | Op::AvgPool2d(_)
        | Op::GlobalAvgPool
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Permute(_)
        | Op::Select(_)
        | Op::Binary(_)
        | Op::Concat(_)
        | Op::Softmax(_)
        | Op::LogSoftmax(_)
        | Op::Reduce(_)
        | Op::LocalResponseNorm(_)
        | Op::Dropout(_)
        | Op::Identity => Vec::new(),
    })
}

fn conv_weights(op: &str, a: &Conv2dAttrs, x: &TensorType) -> SResult<Vec<WeightSpec>> {
    require_rank(op, x, 4, "[N, C, H, W]")?;
    check_groups(op, x.shape[1], a.out_channels, a.groups)?;
    let fan_in = product(op, &[x.shape[1] / a.groups, a.kernel[0], a.kernel[1]])?;
    let mut w = vec![spec(
        "weight",
        vec![
            a.out_channels,
            x.shape[1] / a.groups,
            a.kernel[0],
            a.kernel[1],
        ],
        WeightRole::Kernel { fan_in },
    )];
    if a.bias {
        w.push(spec(
            "bias",
            vec![a.out_channels],
            WeightRole::Bias { fan_in },
        ));
    }
    Ok(w)
}

fn require_depthwise(op: &str, a: &Conv2dAttrs, x: &TensorType) -> SResult<()> {
    if a.groups != x.shape[1] {
        return Err(ShapeError::new(
            format!(
                "`{op}` needs groups equal to the {} input channels, found groups={}",
                x.shape[1], a.groups
            ),
            "not a depthwise convolution",
        ));
    }
    Ok(())
}

fn affine(affine: bool, shape: Vec<usize>) -> Vec<WeightSpec> {
    if affine {
        vec![
            spec("weight", shape.clone(), WeightRole::NormWeight),
            spec("bias", shape, WeightRole::NormBias),
        ]
    } else {
        Vec::new()
    }
}

fn recurrent_weights(
    op: &str,
    a: &RecurrentAttrs,
    gates: usize,
    x: &TensorType,
) -> SResult<Vec<WeightSpec>> {
    require_rank(
        op,
        x,
        3,
        if a.batch_first {
            "[batch, seq, features]"
        } else {
            "[seq, batch, features]"
        },
    )?;
    let mut w = Vec::new();
    let mut input = x.shape[2];
    let rows = product(op, &[gates, a.hidden])?;
    for l in 0..a.layers {
        let fan_in = a.hidden;
        for suffix in a.direction.suffixes() {
            w.push(spec(
                format!("weight_ih_l{l}{suffix}"),
                vec![rows, input],
                WeightRole::Kernel { fan_in },
            ));
            w.push(spec(
                format!("weight_hh_l{l}{suffix}"),
                vec![rows, a.hidden],
                WeightRole::Kernel { fan_in },
            ));
            if a.bias {
                w.push(spec(
                    format!("bias_ih_l{l}{suffix}"),
                    vec![rows],
                    WeightRole::Bias { fan_in },
                ));
                w.push(spec(
                    format!("bias_hh_l{l}{suffix}"),
                    vec![rows],
                    WeightRole::Bias { fan_in },
                ));
            }
        }
        input = product(op, &[a.hidden, a.direction.count()])?;
    }
    Ok(w)
}

/// The product of a weight's dims or of its fan-in factors, or an error when
/// attributes as large as `kernel=4294967296` make it overflow.
/// The input patch side `m + 2` of Winograd F(m x m, 3x3), if nnc has
/// that transform.
fn winograd_side(op: &str, m: usize) -> SResult<usize> {
    nnc_runtime::kernels::winograd::Transform::of(m)
        .map(|t| t.a())
        .ok_or_else(|| {
            ShapeError::new(
                format!("`{op}` has no Winograd transform for tiles of {m}"),
                "unknown tile",
            )
        })
}

fn product(op: &str, factors: &[usize]) -> SResult<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            ShapeError::new(
                format!("the weights of `{op}` are too large to address"),
                "these attributes make a weight's element count overflow",
            )
        })
}

fn check_groups(op: &str, c_in: usize, c_out: usize, groups: usize) -> SResult<()> {
    if groups == 0 {
        return Err(ShapeError::new(
            format!("`{op}` has groups=0"),
            "`groups` must be at least 1",
        ));
    }
    if !c_in.is_multiple_of(groups) {
        return Err(ShapeError::new(
            format!("`{op}` groups={groups} does not divide the {c_in} input channels"),
            format!("{c_in} input channels cannot be split into {groups} groups"),
        )
        .help("`groups` must divide both the input and the output channel counts"));
    }
    if !c_out.is_multiple_of(groups) {
        return Err(ShapeError::new(
            format!("`{op}` groups={groups} does not divide the {c_out} output channels"),
            format!("{c_out} output channels cannot be split into {groups} groups"),
        )
        .help("`groups` must divide both the input and the output channel counts"));
    }
    Ok(())
}

/// Output size of a sliding window along one dim, by the conv formula
/// `floor((in + begin + end - dilation*(k-1) - 1) / stride) + 1` (`begin`
/// and `end` the padding before and after), or with `ceil` and the rule
/// of PyTorch and ONNX that the last window must start inside the input or
/// the padding before it.
pub fn window_output(
    input: usize,
    kernel: usize,
    stride: usize,
    [begin, end]: [usize; 2],
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let span = dilation as i128 * (kernel as i128 - 1) + 1;
    let numerator = input as i128 + begin as i128 + end as i128 - span;
    if numerator < 0 || stride == 0 {
        return None;
    }
    let stride = stride as i128;
    let mut out = if ceil_mode {
        (numerator + stride - 1) / stride + 1
    } else {
        numerator / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= input as i128 + begin as i128 {
        out -= 1;
    }
    usize::try_from(out).ok().filter(|&o| o >= 1)
}

#[allow(clippy::too_many_arguments)]
fn spatial(
    op: &str,
    x: &TensorType,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: Padding,
    dilation: [usize; 2],
    ceil_mode: bool,
) -> SResult<[usize; 2]> {
    let mut out = [0; 2];
    for (i, axis) in ["height", "width"].iter().enumerate() {
        let input = x.shape[2 + i];
        let sides = [pad.begin[i], pad.end[i]];
        out[i] = window_output(input, kernel[i], stride[i], sides, dilation[i], ceil_mode).ok_or_else(|| {
            let effective = dilation[i].saturating_mul(kernel[i].saturating_sub(1)).saturating_add(1);
            let padded = if sides[0] == sides[1] {
                format!("2*pad {}", sides[0])
            } else {
                format!("pads {} + {}", sides[0], sides[1])
            };
            ShapeError::new(
                format!(
                    "`{op}` output {axis} would be less than 1: input {axis} {input} + {padded} is smaller than the {}kernel extent {effective}",
                    if dilation[i] > 1 { "dilated " } else { "" }
                ),
                format!("input {x} is too small for this window"),
            )
            .help("use a smaller kernel or dilation, more padding, or a larger input")
        })?;
    }
    Ok(out)
}

/// The output type of `op` applied to operands of types `inputs`
/// (data operands first, then the op's weights in [`weight_shapes`] order).
pub fn infer(op: &Op, inputs: &[&TensorType]) -> SResult<TensorType> {
    // A fused residual is the last operand and must have the output's type.
    let residual = op.epilogue().is_some_and(|e| e.residual);
    let (inputs, residual) = match inputs.split_last() {
        Some((last, rest)) if residual => (rest, Some(*last)),
        _ if residual => {
            return Err(ShapeError::new(
                format!("`{}` has a fused residual but no operands", op.name()),
                "missing operand",
            ))
        }
        _ => (inputs, None),
    };
    let ty = infer_unchecked(op, inputs)?;
    if let Some(r) = residual {
        if *r != ty {
            return Err(ShapeError::new(
                format!(
                    "`{}` fused residual has type {r} but the output is {ty}",
                    op.name()
                ),
                "mis-shaped residual",
            ));
        }
    }
    if checked_numel(&ty.shape).is_none() || ty.numel().checked_mul(4).is_none() {
        return Err(ShapeError::new(
            format!("the element count of {} overflows", format_shape(&ty.shape)),
            "this shape is too large to address",
        ));
    }
    Ok(ty)
}

fn operand<'a>(op: &Op, inputs: &[&'a TensorType], i: usize) -> SResult<&'a TensorType> {
    inputs.get(i).copied().ok_or_else(|| {
        ShapeError::new(
            format!("`{}` is missing operand {}", op.name(), i + 1),
            "missing operand",
        )
    })
}

/// How many operands before an op's weights are data (`x`, then a
/// recurrent op's initial states).
fn data_operands(op: &Op) -> usize {
    match op {
        Op::Rnn(a) => 1 + a.state_operands(1),
        Op::Lstm(a) => 1 + a.state_operands(4),
        Op::Gru(a) => 1 + a.state_operands(3),
        _ => 1,
    }
}

fn check_weights(op: &Op, inputs: &[&TensorType]) -> SResult<()> {
    let x = operand(op, inputs, 0)?;
    let specs = weight_shapes(op, x)?;
    let data = data_operands(op);
    if inputs.len() != data + specs.len() {
        return Err(ShapeError::new(
            format!(
                "`{}` expects {} operands, found {}",
                op.name(),
                data + specs.len(),
                inputs.len()
            ),
            "wrong number of operands",
        ));
    }
    for (w, s) in inputs[data..].iter().zip(&specs) {
        if w.shape != s.shape {
            return Err(ShapeError::new(
                format!(
                    "`{}` weight `{}` has shape {} but {} is expected",
                    op.name(),
                    s.suffix,
                    format_shape(&w.shape),
                    format_shape(&s.shape)
                ),
                "mis-shaped weight",
            ));
        }
    }
    Ok(())
}

fn unary(op: &Op, inputs: &[&TensorType]) -> SResult<TensorType> {
    if inputs.len() != 1 {
        return Err(ShapeError::new(
            format!("`{}` expects 1 operand, found {}", op.name(), inputs.len()),
            "wrong number of operands",
        ));
    }
    Ok(inputs[0].clone())
}

fn normalize_dim(op: &str, dim: i64, rank: usize) -> SResult<usize> {
    let r = rank as i64;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(ShapeError::new(
            format!("`{op}` dim {dim} is out of range for rank {rank}"),
            format!("dim must be in {}..{}", -r, r),
        ));
    }
    Ok(d as usize)
}

/// Resolves a possibly negative dim against a rank (used by lowering).
pub fn resolve_dim(op: &str, dim: i64, rank: usize) -> SResult<usize> {
    normalize_dim(op, dim, rank)
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

fn infer_unchecked(op: &Op, inputs: &[&TensorType]) -> SResult<TensorType> {
    match op {
        Op::Input(_) | Op::Weight(_) => Err(ShapeError::new(
            format!("`{}` has no operands to infer from", op.name()),
            "leaf node",
        )),
        Op::Conv2d(a) | Op::DepthwiseConv2d(a) => {
            check_weights(op, inputs)?;
            let x = inputs[0];
            let [h, w] = spatial(
                op.name(),
                x,
                a.kernel,
                a.stride,
                a.padding,
                a.dilation,
                false,
            )?;
            Ok(TensorType::f32(vec![x.shape[0], a.out_channels, h, w]))
        }
        Op::SeparableConv2d(a) => {
            check_weights(op, inputs)?;
            let (x, dw) = (inputs[0], &a.depthwise);
            let [h, w] = spatial(
                op.name(),
                x,
                dw.kernel,
                dw.stride,
                dw.padding,
                dw.dilation,
                false,
            )?;
            if dw.epilogue.residual {
                return Err(ShapeError::new(
                    "`separable_conv2d` cannot fuse a residual into its depthwise half",
                    "depthwise residual",
                ));
            }
            Ok(TensorType::f32(vec![x.shape[0], a.out_channels, h, w]))
        }
        Op::Im2Col(a) => {
            let x = unary(op, inputs)?;
            require_rank("im2col", &x, 4, "[N, C, H, W]")?;
            let [h, w] = spatial(
                "im2col", &x, a.kernel, a.stride, a.padding, a.dilation, false,
            )?;
            let rows = product("im2col", &[x.shape[1], a.kernel[0], a.kernel[1]])?;
            Ok(TensorType::f32(vec![x.shape[0], rows, h, w]))
        }
        Op::WinogradInput(a) => {
            let x = unary(op, inputs)?;
            require_rank("winograd_input", &x, 4, "[N, C, H, W]")?;
            let side = winograd_side("winograd_input", a.tile)?;
            let rows = product("winograd_input", &[side, side, x.shape[1]])?;
            Ok(TensorType::f32(vec![
                x.shape[0], rows, a.tiles[0], a.tiles[1],
            ]))
        }
        Op::WinogradOutput(a) => {
            check_weights(op, inputs)?;
            let x = inputs[0];
            require_rank("winograd_output", x, 4, "[N, a*a*out, TH, TW]")?;
            let side = winograd_side("winograd_output", a.tile)?;
            let rows = product("winograd_output", &[side, side, a.out_channels])?;
            if x.shape[1] != rows {
                return Err(ShapeError::new(
                    format!("`winograd_output` needs {rows} rows (a*a*out) but its operand is {x}"),
                    "mis-shaped operand",
                ));
            }
            for i in 0..2 {
                let covered = a.tile * x.shape[2 + i];
                if a.output_size[i] > covered || a.output_size[i] + a.tile <= covered {
                    return Err(ShapeError::new(
                        format!(
                            "`winograd_output` output size {:?} is not covered by the tiles of {x} exactly",
                            a.output_size
                        ),
                        "bad output size",
                    ));
                }
            }
            Ok(TensorType::f32(vec![
                x.shape[0],
                a.out_channels,
                a.output_size[0],
                a.output_size[1],
            ]))
        }
        Op::Gemm(a) => {
            check_weights(op, inputs)?;
            let mut shape = inputs[0].shape.clone();
            shape[1] = a.out_channels;
            Ok(TensorType::f32(shape))
        }
        Op::Col2Im(a) => {
            check_weights(op, inputs)?;
            let x = inputs[0];
            require_rank("col2im", x, 4, "[N, out*kh*kw, H, W]")?;
            let rows = product("col2im", &[a.out_channels, a.kernel[0], a.kernel[1]])?;
            if x.shape[1] != rows {
                return Err(ShapeError::new(
                    format!("`col2im` needs {rows} rows (out*kh*kw) but the columns are {x}"),
                    "mis-shaped columns",
                ));
            }
            for i in 0..2 {
                // The transposed-conv size without output_padding, and the
                // largest output_padding allowed.
                let base = (x.shape[2 + i] as i128 - 1) * a.stride[i] as i128
                    - 2 * a.padding[i] as i128
                    + a.dilation[i] as i128 * (a.kernel[i] as i128 - 1)
                    + 1;
                let size = a.output_size[i] as i128;
                if size < base.max(1) || size >= base + a.stride[i].max(a.dilation[i]) as i128 {
                    return Err(ShapeError::new(
                        format!(
                            "`col2im` output size {} does not fit input {x} (expected {base} plus an output_padding)",
                            a.output_size[i]
                        ),
                        "bad output size",
                    ));
                }
            }
            Ok(TensorType::f32(vec![
                x.shape[0],
                a.out_channels,
                a.output_size[0],
                a.output_size[1],
            ]))
        }
        Op::Elementwise(a) => {
            if inputs.is_empty() {
                return Err(ShapeError::new(
                    "`elementwise` has no operands",
                    "missing operand",
                ));
            }
            for step in &a.steps {
                if let Some(i) = step.operand() {
                    if i == 0 || i >= inputs.len() {
                        return Err(ShapeError::new(
                            format!("`elementwise` step reads operand {i} of {}", inputs.len()),
                            "operand index out of range",
                        ));
                    }
                }
            }
            let mut shape = inputs[0].shape.clone();
            for x in &inputs[1..] {
                shape = broadcast(&shape, &x.shape).ok_or_else(|| {
                    ShapeError::new(
                        format!(
                            "`elementwise` operands {} and {x} do not broadcast",
                            format_shape(&shape)
                        ),
                        "incompatible shapes",
                    )
                })?;
            }
            Ok(TensorType::f32(shape))
        }
        Op::ConvTranspose2d(a) => {
            check_weights(op, inputs)?;
            let x = inputs[0];
            let mut out = [0usize; 2];
            #[allow(clippy::needless_range_loop)] // `i` indexes six per-axis arrays
            for i in 0..2 {
                if a.output_padding[i] >= a.stride[i].max(a.dilation[i]) {
                    return Err(ShapeError::new(
                        format!(
                            "`conv_transpose2d` output_padding {} must be smaller than stride {} or dilation {}",
                            a.output_padding[i], a.stride[i], a.dilation[i]
                        ),
                        "output_padding too large",
                    )
                    .help(format!(
                        "use an output_padding below {}, the larger of stride and dilation",
                        a.stride[i].max(a.dilation[i])
                    )));
                }
                let size = (x.shape[2 + i] as i128 - 1) * a.stride[i] as i128
                    - 2 * a.padding[i] as i128
                    + a.dilation[i] as i128 * (a.kernel[i] as i128 - 1)
                    + a.output_padding[i] as i128
                    + 1;
                let axis = if i == 0 { "height" } else { "width" };
                out[i] = usize::try_from(size)
                    .ok()
                    .filter(|&s| s >= 1)
                    .ok_or_else(|| {
                        ShapeError::new(
                            format!(
                                "`conv_transpose2d` output {axis} would be {size}, less than 1"
                            ),
                            format!("padding {} is too large for input {x}", a.padding[i]),
                        )
                        .help("reduce the padding")
                    })?;
            }
            Ok(TensorType::f32(vec![
                x.shape[0],
                a.out_channels,
                out[0],
                out[1],
            ]))
        }
        Op::BatchNorm(_) | Op::GroupNorm(_) | Op::LayerNorm(_) | Op::InstanceNorm(_) => {
            check_weights(op, inputs)?;
            if let Op::GroupNorm(a) = op {
                let c = inputs[0].shape[1];
                if a.groups == 0 || !c.is_multiple_of(a.groups) {
                    return Err(ShapeError::new(
                        format!(
                            "`group_norm` groups={} does not divide the {c} channels",
                            a.groups
                        ),
                        format!("{c} channels cannot be split into {} groups", a.groups),
                    )
                    .help("`groups` must divide the channel count"));
                }
            }
            Ok(inputs[0].clone())
        }
        Op::Activation(_) | Op::Unary(_) => unary(op, inputs),
        // The slope's shape was checked with the weights.
        Op::Prelu(_) => match inputs {
            [x, _] => Ok((*x).clone()),
            _ => Err(ShapeError::new(
                format!("`prelu` expects 2 operands, found {}", inputs.len()),
                "wrong number of operands",
            )),
        },
        Op::Dropout(_) | Op::Identity => unary(op, inputs),
        Op::Softmax(a) | Op::LogSoftmax(a) => {
            let ty = unary(op, inputs)?;
            if a.dim >= ty.rank() {
                return Err(ShapeError::new(
                    format!("`{}` dim {} is out of range for {ty}", op.name(), a.dim),
                    "bad dim",
                ));
            }
            Ok(ty)
        }
        Op::Reduce(a) => {
            let x = unary(op, inputs)?;
            let sorted = a.dims.windows(2).all(|w| w[0] < w[1]);
            if let Some(&bad) = a.dims.iter().find(|&&d| d >= x.rank()) {
                return Err(ShapeError::new(
                    format!("`{}` dim {bad} is out of range for {x}", op.name()),
                    "bad dim",
                ));
            }
            if !sorted {
                return Err(ShapeError::new(
                    format!(
                        "`{}` dims {:?} are not sorted and distinct",
                        op.name(),
                        a.dims
                    ),
                    "bad dims",
                ));
            }
            Ok(TensorType::f32(a.output_shape(&x.shape)))
        }
        Op::LocalResponseNorm(a) => {
            let x = unary(op, inputs)?;
            require_min_rank("local_response_norm", &x, 3)?;
            if a.size == 0 || a.before >= a.size {
                return Err(ShapeError::new(
                    format!(
                        "`local_response_norm` window of {} channels cannot start {} before the channel",
                        a.size, a.before
                    ),
                    "bad window",
                ));
            }
            Ok(x)
        }
        Op::MaxPool2d(a) => {
            let x = unary(op, inputs)?;
            require_rank("max_pool2d", &x, 4, "[N, C, H, W]")?;
            check_pool_padding("max_pool2d", a.kernel, a.padding)?;
            let [h, w] = spatial(
                "max_pool2d",
                &x,
                a.kernel,
                a.stride,
                a.padding,
                a.dilation,
                a.ceil_mode,
            )?;
            Ok(TensorType::f32(vec![x.shape[0], x.shape[1], h, w]))
        }
        Op::AvgPool2d(a) => {
            let x = unary(op, inputs)?;
            require_rank("avg_pool2d", &x, 4, "[N, C, H, W]")?;
            check_pool_padding("avg_pool2d", a.kernel, a.padding)?;
            let [h, w] = spatial(
                "avg_pool2d",
                &x,
                a.kernel,
                a.stride,
                a.padding,
                [1, 1],
                a.ceil_mode,
            )?;
            Ok(TensorType::f32(vec![x.shape[0], x.shape[1], h, w]))
        }
        Op::GlobalAvgPool => {
            let x = unary(op, inputs)?;
            require_rank("global_avg_pool", &x, 4, "[N, C, H, W]")?;
            Ok(TensorType::f32(vec![x.shape[0], x.shape[1], 1, 1]))
        }
        Op::Linear(a) => {
            check_weights(op, inputs)?;
            let mut shape = inputs[0].shape.clone();
            if let Some(last) = shape.last_mut() {
                *last = a.out_features;
            }
            Ok(TensorType::f32(shape))
        }
        Op::Flatten(a) => {
            let x = unary(op, inputs)?;
            if a.end_dim >= x.rank().max(1) || a.start_dim >= x.rank().max(1) {
                return Err(ShapeError::new(
                    format!(
                        "`flatten` dims {}..={} are out of range for {x}",
                        a.start_dim, a.end_dim
                    ),
                    format!("input has rank {}", x.rank()),
                ));
            }
            if a.start_dim > a.end_dim {
                return Err(ShapeError::new(
                    format!(
                        "`flatten` start_dim {} comes after end_dim {}",
                        a.start_dim, a.end_dim
                    ),
                    "no dims to merge",
                )
                .help("`start_dim` must not come after `end_dim`"));
            }
            if x.rank() == 0 {
                return Ok(TensorType::f32(vec![1]));
            }
            let merged: usize = x.shape[a.start_dim..=a.end_dim].iter().product();
            let mut shape = x.shape[..a.start_dim].to_vec();
            shape.push(merged);
            shape.extend_from_slice(&x.shape[a.end_dim + 1..]);
            Ok(TensorType::f32(shape))
        }
        Op::Reshape(a) => {
            let x = unary(op, inputs)?;
            if checked_numel(&a.shape) != Some(x.numel()) {
                return Err(ShapeError::new(
                    format!(
                        "cannot reshape {x} ({} elements) to {}",
                        x.numel(),
                        format_shape(&a.shape)
                    ),
                    "element counts differ",
                ));
            }
            Ok(TensorType::f32(a.shape.clone()))
        }
        Op::Permute(a) => {
            let x = unary(op, inputs)?;
            let mut seen = vec![false; x.rank()];
            let valid = a.dims.len() == x.rank()
                && a.dims
                    .iter()
                    .all(|&d| d < x.rank() && !std::mem::replace(&mut seen[d], true));
            if !valid {
                return Err(ShapeError::new(
                    format!(
                        "`permute` dims {:?} are not a permutation of the {} dims of {x}",
                        a.dims,
                        x.rank()
                    ),
                    "not a permutation",
                )
                .help(format!(
                    "`dims` must list each of 0..{} exactly once",
                    x.rank()
                )));
            }
            Ok(TensorType::f32(
                a.dims.iter().map(|&d| x.shape[d]).collect(),
            ))
        }
        Op::Select(a) => {
            let x = unary(op, inputs)?;
            if a.dim >= x.rank() || a.index >= x.shape[a.dim] {
                return Err(ShapeError::new(
                    format!(
                        "`select` index {} along dim {} is out of range for {x}",
                        a.index, a.dim
                    ),
                    "out of range",
                ));
            }
            let mut shape = x.shape.clone();
            shape.remove(a.dim);
            Ok(TensorType::f32(shape))
        }
        Op::Binary(_) => {
            if inputs.len() != 2 {
                return Err(ShapeError::new(
                    format!("`{}` expects 2 operands, found {}", op.name(), inputs.len()),
                    "wrong number of operands",
                ));
            }
            let (a, b) = (inputs[0], inputs[1]);
            broadcast(&a.shape, &b.shape)
                .map(TensorType::f32)
                .ok_or_else(|| {
                    ShapeError::new(
                        format!(
                            "`{}` operands {a} and {b} cannot be broadcast together",
                            op.name()
                        ),
                        "shapes are not broadcastable",
                    )
                    .help(
                        "aligned from the right, each pair of dims must be equal or one of them 1",
                    )
                })
        }
        Op::Concat(a) => {
            let first = operand(op, inputs, 0)?;
            if a.dim >= first.rank() {
                return Err(ShapeError::new(
                    format!("`concat` dim {} is out of range for {first}", a.dim),
                    "bad dim",
                ));
            }
            let mut shape = first.shape.clone();
            shape[a.dim] = 0;
            for (i, t) in inputs.iter().enumerate() {
                let compatible = t.rank() == first.rank()
                    && (0..t.rank()).all(|d| d == a.dim || t.shape[d] == first.shape[d]);
                if !compatible {
                    return Err(ShapeError::new(
                        format!(
                            "`concat` operand {} has shape {} but operand 1 has {}; they may differ only in dim {}",
                            i + 1,
                            format_shape(&t.shape),
                            format_shape(&first.shape),
                            a.dim
                        ),
                        "mismatched operand shapes",
                    ));
                }
                shape[a.dim] = shape[a.dim].checked_add(t.shape[a.dim]).ok_or_else(|| {
                    ShapeError::new(
                        format!("the concatenated dim {} of `concat` overflows", a.dim),
                        "this shape is too large to address",
                    )
                })?;
            }
            Ok(TensorType::f32(shape))
        }
        Op::Rnn(a) | Op::Lstm(a) | Op::Gru(a) => {
            check_weights(op, inputs)?;
            let x = inputs[0];
            let batch = x.shape[if a.batch_first { 0 } else { 1 }];
            let state = vec![a.layers * a.direction.count(), batch, a.hidden];
            for (i, h) in inputs[1..data_operands(op)].iter().enumerate() {
                if h.shape != state {
                    return Err(ShapeError::new(
                        format!(
                            "`{}` initial state {} is {h} but {} is expected",
                            op.name(),
                            ["h0", "c0"][i.min(1)],
                            format_shape(&state)
                        ),
                        "mis-shaped initial state",
                    )
                    .help("initial states are [layers*directions, batch, hidden]"));
                }
            }
            let seq = x.shape[if a.batch_first { 1 } else { 0 }];
            if !a.lengths.is_empty()
                && (a.lengths.len() != batch || a.lengths.iter().any(|&l| l == 0 || l > seq))
            {
                return Err(ShapeError::new(
                    format!(
                        "`{}` lengths {:?} do not fit a batch of {batch} sequences of {seq} steps",
                        op.name(),
                        a.lengths
                    ),
                    "lengths do not fit the input",
                )
                .help("give one length per batch element, each from 1 to the sequence length"));
            }
            match a.output {
                RecurrentOutput::Sequence => {
                    let features = product(op.name(), &[a.hidden, a.direction.count()])?;
                    Ok(TensorType::f32(vec![x.shape[0], x.shape[1], features]))
                }
                RecurrentOutput::CellState if !matches!(op, Op::Lstm(_)) => Err(ShapeError::new(
                    format!("`{}` has no cell state", op.name()),
                    "`output=\"c_n\"` is for `lstm` only",
                )),
                RecurrentOutput::HiddenState | RecurrentOutput::CellState => {
                    Ok(TensorType::f32(state))
                }
            }
        }
        Op::MatMul => infer_matmul(inputs),
        Op::Interpolate(a) => {
            let x = unary(op, inputs)?;
            infer_interpolate(a, &x)
        }
        Op::Pad(a) => {
            let x = unary(op, inputs)?;
            infer_pad(a, &x)
        }
        Op::Indexing(a) => indexing::infer(a, &unary(op, inputs)?),
        Op::Constant(a) => match inputs {
            [w] if w.shape == a.shape => Ok(TensorType::f32(a.shape.clone())),
            _ => Err(ShapeError::new(
                format!(
                    "`constant` of shape {} needs its one value weight of that shape",
                    format_shape(&a.shape)
                ),
                "wrong operands",
            )),
        },
    }
}

/// PyTorch's rule that a pool pads at most half its kernel, applied to
/// each side, which guarantees that every window overlaps the input.
fn check_pool_padding(op: &str, kernel: [usize; 2], pad: Padding) -> SResult<()> {
    for (i, &k) in kernel.iter().enumerate() {
        if pad.largest(i) > k / 2 {
            return Err(ShapeError::new(
                format!(
                    "`{op}` padding {} is more than half the kernel size {k}",
                    pad.largest(i)
                ),
                "padding too large",
            )
            .help("a window would see only padding; use pad <= kernel / 2"));
        }
    }
    Ok(())
}

/// NumPy `matmul` for operands of rank at least 2: `[..., m, k] x [..., k, n]`
/// with the leading dims broadcast.
fn infer_matmul(inputs: &[&TensorType]) -> SResult<TensorType> {
    let [a, b] = inputs else {
        return Err(ShapeError::new(
            format!("`matmul` expects 2 operands, found {}", inputs.len()),
            "wrong number of operands",
        ));
    };
    if a.rank() < 2 || b.rank() < 2 {
        return Err(ShapeError::new(
            format!("`matmul` expects operands of rank at least 2, found {a} and {b}"),
            "rank below 2",
        )
        .help("reshape a vector to [1, k] or [k, 1] first"));
    }
    let (m, k) = (a.shape[a.rank() - 2], a.shape[a.rank() - 1]);
    let (k2, n) = (b.shape[b.rank() - 2], b.shape[b.rank() - 1]);
    if k != k2 {
        return Err(ShapeError::new(
            format!("`matmul` inner dims differ: {a} has {k} columns but {b} has {k2} rows"),
            "inner dims differ",
        ));
    }
    let mut shape = broadcast(&a.shape[..a.rank() - 2], &b.shape[..b.rank() - 2]).ok_or_else(|| {
        ShapeError::new(
            format!("the leading dims of `matmul` operands {a} and {b} cannot be broadcast together"),
            "shapes are not broadcastable",
        )
    })?;
    shape.extend([m, n]);
    Ok(TensorType::f32(shape))
}

/// `interpolate`: `[N, C, H, W]` to `[N, C, size]`, with sizes of at least
/// 1 and positive, finite scales.
fn infer_interpolate(a: &InterpolateAttrs, x: &TensorType) -> SResult<TensorType> {
    require_rank("interpolate", x, 4, "[N, C, H, W]")?;
    if a.size.contains(&0) {
        return Err(ShapeError::new(
            format!("`interpolate` output size {:?} has a zero dim", a.size),
            "empty output",
        ));
    }
    if let Some(bad) = a.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(ShapeError::new(
            format!("`interpolate` scale {bad:?} is not a positive number"),
            "scales must be positive and finite",
        ));
    }
    Ok(TensorType::f32(vec![
        x.shape[0], x.shape[1], a.size[0], a.size[1],
    ]))
}

/// `pad`: each dim grows by its two pads (shrinks for negative ones, which
/// crop) and must keep at least one element; `reflect` needs pads smaller
/// than the dim, since the edge is not repeated.
fn infer_pad(a: &PadAttrs, x: &TensorType) -> SResult<TensorType> {
    let rank = x.rank();
    if a.pads.len() != 2 * rank {
        return Err(ShapeError::new(
            format!(
                "`pad` needs {} pads for {x}, found {}",
                2 * rank,
                a.pads.len()
            ),
            "wrong number of pads",
        )
        .help("list every dim's pad before it, then every dim's pad after it"));
    }
    let mut shape = Vec::with_capacity(rank);
    for (d, &size) in x.shape.iter().enumerate() {
        let (before, after) = (a.pads[d], a.pads[rank + d]);
        if a.mode == PadMode::Reflect && (before >= size as i64 || after >= size as i64) {
            return Err(ShapeError::new(
                format!("`pad` reflect pads {before} and {after} of dim {d} must be smaller than its size {size}"),
                "pad too large to reflect",
            ));
        }
        let grown = size as i128 + i128::from(before) + i128::from(after);
        let grown = usize::try_from(grown).ok().filter(|&g| g >= 1).ok_or_else(|| {
            ShapeError::new(
                format!("`pad` pads {before} and {after} leave dim {d} of size {size} with {grown} elements"),
                "cropped to nothing",
            )
            .help("negative pads crop; they may not remove the whole dim")
        })?;
        shape.push(grown);
    }
    Ok(TensorType::f32(shape))
}
