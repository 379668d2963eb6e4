//! Model statistics: per layer output shape, parameters, FLOPs and
//! receptive field; totals. `nnc stats` prints them.
//!
//! Parameters are counted as PyTorch counts them: batch-norm running
//! statistics are buffers and are left out.
//!
//! FLOPs count a multiply-add as 2 (the usual convention), an elementwise op
//! as 1 per output element, a norm as 2 (batch_norm, a per-channel affine at
//! inference) or 5 (statistics, normalise, affine) per element, a pooling
//! window as 1 per element it reads, and softmax as 3 per element. Shape ops
//! and inverted dropout are free.
//!
//! The receptive field of a layer is the extent, in input pixels, that one
//! of its output pixels depends on, with `rf_stride` the distance in input
//! pixels between neighbouring outputs (the product of strides so far). A
//! window of extent `e = dilation*(k-1)+1` and stride `s` gives
//! `rf' = rf + (e-1)*rf_stride` and `rf_stride' = rf_stride*s`. Ops that mix
//! all positions (global pooling, spatial norms, linear on a flattened map)
//! have a global receptive field.

use crate::ir::{Conv2dAttrs, Epilogue, Graph, NodeId, Op, Reduction, WeightRole};
use nnc_runtime::kernels::winograd::Transform;
use std::collections::HashMap;
use std::fmt::Write;

/// The receptive field of a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReceptiveField {
    /// Not an image-shaped value and not derived from one.
    None,
    /// `size` input pixels, neighbouring outputs `stride` pixels apart, per (H, W).
    Window { size: [f64; 2], stride: [f64; 2] },
    /// Depends on the whole input.
    Global,
}

/// Statistics of one op.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    pub id: NodeId,
    /// The binding path.
    pub name: String,
    /// The op name.
    pub op: &'static str,
    pub shape: Vec<usize>,
    /// Elements of the weights this op owns.
    pub params: u64,
    pub flops: u64,
    pub receptive_field: ReceptiveField,
}

/// Statistics of a whole model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelStats {
    pub layers: Vec<LayerStats>,
    pub total_params: u64,
    pub total_flops: u64,
}

/// Computes per-layer and total statistics.
pub fn stats(graph: &Graph) -> ModelStats {
    let mut fields: HashMap<NodeId, ReceptiveField> = HashMap::new();
    let mut layers = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let data: Vec<NodeId> = node
            .inputs()
            .iter()
            .copied()
            .filter(|&i| !matches!(graph.node(i).op, Op::Weight(_)))
            .collect();
        let params: u64 = node
            .inputs()
            .iter()
            // Running statistics are buffers, not parameters, as in PyTorch.
            .filter(|&&i| {
                matches!(&graph.node(i).op, Op::Weight(w)
                    if !matches!(w.role, WeightRole::RunningMean | WeightRole::RunningVar))
            })
            .map(|&i| graph.node(i).ty.numel() as u64)
            .sum();
        let in_field = merge(
            data.iter()
                .map(|i| fields.get(i).copied().unwrap_or(ReceptiveField::None)),
        );
        let field = receptive_field(&node.op, in_field, node.ty.rank());
        fields.insert(id, field);
        if matches!(node.op, Op::Input(_) | Op::Weight(_)) {
            continue;
        }
        let x = data
            .first()
            .map(|&i| graph.node(i).ty.shape.clone())
            .unwrap_or_default();
        layers.push(LayerStats {
            id,
            name: node.name.clone(),
            op: node.op.name(),
            shape: node.ty.shape.clone(),
            params,
            flops: flops(&node.op, &x, &node.ty.shape),
            receptive_field: field,
        });
    }
    ModelStats {
        total_params: layers.iter().map(|l| l.params).sum(),
        total_flops: layers.iter().map(|l| l.flops).sum(),
        layers,
    }
}

fn merge(fields: impl Iterator<Item = ReceptiveField>) -> ReceptiveField {
    fields.fold(ReceptiveField::None, |acc, f| match (acc, f) {
        (ReceptiveField::Global, _) | (_, ReceptiveField::Global) => ReceptiveField::Global,
        (ReceptiveField::None, f) | (f, ReceptiveField::None) => f,
        (
            ReceptiveField::Window {
                size: a,
                stride: sa,
            },
            ReceptiveField::Window {
                size: b,
                stride: sb,
            },
        ) => ReceptiveField::Window {
            size: [a[0].max(b[0]), a[1].max(b[1])],
            stride: [sa[0].max(sb[0]), sa[1].max(sb[1])],
        },
    })
}

fn window(
    input: ReceptiveField,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    transposed: bool,
) -> ReceptiveField {
    let (size, jump) = match input {
        ReceptiveField::Global => return ReceptiveField::Global,
        ReceptiveField::None => ([1.0, 1.0], [1.0, 1.0]),
        ReceptiveField::Window { size, stride } => (size, stride),
    };
    let mut out_size = [0.0; 2];
    let mut out_jump = [0.0; 2];
    for i in 0..2 {
        let extent = (dilation[i] * (kernel[i] - 1) + 1) as f64;
        if transposed {
            // An output of a transposed conv sees ceil(extent / stride)
            // input positions, and its neighbours are 1/stride inputs apart.
            let taps = (extent / stride[i] as f64).ceil();
            out_size[i] = size[i] + (taps - 1.0) * jump[i];
            out_jump[i] = jump[i] / stride[i] as f64;
        } else {
            out_size[i] = size[i] + (extent - 1.0) * jump[i];
            out_jump[i] = jump[i] * stride[i] as f64;
        }
    }
    ReceptiveField::Window {
        size: out_size,
        stride: out_jump,
    }
}

fn receptive_field(op: &Op, input: ReceptiveField, rank: usize) -> ReceptiveField {
    let spatial_input = !matches!(input, ReceptiveField::None);
    match op {
        Op::Input(_) => {
            if rank == 4 {
                ReceptiveField::Window {
                    size: [1.0, 1.0],
                    stride: [1.0, 1.0],
                }
            } else {
                ReceptiveField::None
            }
        }
        Op::Weight(_) => ReceptiveField::None,
        Op::Conv2d(a) | Op::DepthwiseConv2d(a) => {
            window(input, a.kernel, a.stride, a.dilation, false)
        }
        Op::SeparableConv2d(a) => window(
            input,
            a.depthwise.kernel,
            a.depthwise.stride,
            a.depthwise.dilation,
            false,
        ),
        Op::Im2Col(a) => window(input, a.kernel, a.stride, a.dilation, false),
        // Counted as the 3x3 convolution it starts; the tiles then map back
        // to output positions one to one.
        Op::WinogradInput(_) => window(input, [3, 3], [1, 1], [1, 1], false),
        Op::WinogradOutput(_) => input,
        Op::ConvTranspose2d(a) => window(input, a.kernel, a.stride, a.dilation, true),
        Op::Col2Im(a) => window(input, a.kernel, a.stride, a.dilation, true),
        Op::MaxPool2d(a) => window(input, a.kernel, a.stride, a.dilation, false),
        Op::AvgPool2d(a) => window(input, a.kernel, a.stride, [1, 1], false),
        // A reduction over the batch or the channels alone that keeps the
        // dims leaves every position seeing what its input saw.
        Op::Reduce(a) if a.keepdim && a.dims.iter().all(|&d| d < 2) => input,
        // The channel window of each position is at that position.
        Op::LocalResponseNorm(_) => input,
        // Ops that mix all positions, and ops after which the map is no
        // longer [N, C, H, W] (positions mixed or reinterpreted): the
        // dependence is global.
        Op::GlobalAvgPool
        | Op::Reduce(_)
        | Op::GroupNorm(_)
        | Op::InstanceNorm(_)
        | Op::LayerNorm(_)
        | Op::Softmax(_)
        | Op::LogSoftmax(_)
        | Op::Linear(_)
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Permute(_)
        | Op::Select(_)
        | Op::Indexing(_)
        | Op::Rnn(_)
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::MatMul => {
            if spatial_input {
                ReceptiveField::Global
            } else {
                ReceptiveField::None
            }
        }
        Op::BatchNorm(_)
        | Op::Activation(_)
        | Op::Unary(_)
        | Op::Prelu(_)
        | Op::Binary(_)
        | Op::Concat(_)
        | Op::Dropout(_)
        | Op::Identity
        | Op::Elementwise(_)
        | Op::Gemm(_) => input,
        Op::Pad(_) | Op::Constant(_) => input,
        Op::Interpolate(a) => resampled(input, a),
    }
}

/// The field after `interpolate`: each output reads one input pixel per
/// axis (nearest) or two neighbours (bilinear), and output neighbours are
/// `1/scale` input pixels apart.
fn resampled(input: ReceptiveField, a: &crate::ir::InterpolateAttrs) -> ReceptiveField {
    let taps = match a.mode {
        crate::ir::InterpolateMode::Nearest(_) => 1.0,
        crate::ir::InterpolateMode::Bilinear => 2.0,
    };
    match input {
        ReceptiveField::None | ReceptiveField::Global => input,
        ReceptiveField::Window {
            mut size,
            mut stride,
        } => {
            for i in 0..2 {
                size[i] += (taps - 1.0) * stride[i];
                stride[i] /= f64::from(a.scale[i]);
            }
            ReceptiveField::Window { size, stride }
        }
    }
}

fn nonzeros(matrix: &[f32]) -> u64 {
    matrix.iter().filter(|&&v| v != 0.0).count() as u64
}

fn product(shape: &[usize]) -> u64 {
    shape.iter().map(|&d| d as u64).product()
}

/// One FLOP per output element for the bias and for each epilogue step, so
/// fusing moves FLOPs between ops without changing the total.
fn epilogue_flops(bias: bool, e: &Epilogue, n_out: u64) -> u64 {
    n_out * (u64::from(bias) + u64::from(e.residual) + u64::from(e.activation.is_some()))
}

fn flops(op: &Op, x: &[usize], out: &[usize]) -> u64 {
    let n_out = product(out);
    let conv = |a: &Conv2dAttrs, c_in: u64, n_out: u64| {
        let per_output = c_in / a.groups as u64 * (a.kernel[0] * a.kernel[1]) as u64;
        2 * n_out * per_output + epilogue_flops(a.bias, &a.epilogue, n_out)
    };
    let c_in = x.get(1).copied().unwrap_or(0) as u64;
    match op {
        Op::Input(_) | Op::Weight(_) => 0,
        Op::Conv2d(a) | Op::DepthwiseConv2d(a) => conv(a, c_in, n_out),
        Op::SeparableConv2d(a) => {
            let dw = &a.depthwise;
            let n_mid = n_out / a.out_channels.max(1) as u64 * dw.out_channels as u64;
            // With an expansion, the depthwise conv reads its `groups`
            // channels, each computed from `c_in` at every input position.
            let (expansion, dw_in) = match &a.expand {
                Some(e) => {
                    let n_expanded = product(x) / c_in.max(1) * dw.groups as u64;
                    let act = Epilogue {
                        residual: false,
                        activation: e.activation,
                    };
                    (
                        2 * n_expanded * c_in + epilogue_flops(e.bias, &act, n_expanded),
                        dw.groups as u64,
                    )
                }
                None => (0, c_in),
            };
            expansion
                + conv(dw, dw_in, n_mid)
                + 2 * n_out * dw.out_channels as u64
                + epilogue_flops(a.bias, &a.epilogue, n_out)
        }
        Op::ConvTranspose2d(a) => {
            let per_input = (a.out_channels / a.groups * a.kernel[0] * a.kernel[1]) as u64;
            2 * product(x) * per_input + epilogue_flops(a.bias, &a.epilogue, n_out)
        }
        Op::Linear(a) => {
            let k = x.last().copied().unwrap_or(0) as u64;
            2 * n_out * k + epilogue_flops(a.bias, &a.epilogue, n_out)
        }
        Op::Gemm(a) => {
            let k = c_in / a.groups.max(1) as u64;
            2 * n_out * k + epilogue_flops(a.bias, &a.epilogue, n_out)
        }
        Op::Im2Col(_) => 0,
        // The additions of the transforms as the kernels do them: a
        // product with a row of BT or AT of r nonzeros is r - 1 adds.
        Op::WinogradInput(a) => Transform::of(a.tile).map_or(0, |t| {
            let (side, adds) = (t.a() as u64, nonzeros(t.bt) - t.a() as u64);
            // Rows then columns of each a x a patch.
            n_out / (side * side) * 2 * side * adds
        }),
        Op::WinogradOutput(a) => Transform::of(a.tile).map_or(0, |t| {
            let (side, m) = (t.a() as u64, t.m as u64);
            let adds = nonzeros(t.at) - m;
            product(x) / (side * side) * (side + m) * adds
                + epilogue_flops(a.bias, &a.epilogue, n_out)
        }),
        // The scatter adds every column element into the output.
        Op::Col2Im(a) => product(x) + epilogue_flops(a.bias, &a.epilogue, n_out),
        Op::Elementwise(a) => a.steps.len() as u64 * n_out,
        Op::BatchNorm(_) => 2 * n_out,
        Op::GroupNorm(_) | Op::LayerNorm(_) | Op::InstanceNorm(_) => 5 * n_out,
        Op::Activation(_) | Op::Unary(_) | Op::Prelu(_) | Op::Binary(_) => n_out,
        Op::MaxPool2d(a) => n_out * (a.kernel[0] * a.kernel[1]) as u64,
        Op::AvgPool2d(a) => n_out * (a.kernel[0] * a.kernel[1]) as u64,
        Op::GlobalAvgPool => product(x),
        Op::Softmax(_) | Op::LogSoftmax(_) => 3 * n_out,
        // One operation per input element, and the division of a mean.
        Op::Reduce(a) => {
            product(x)
                + match a.function {
                    Reduction::Mean => n_out,
                    Reduction::Sum | Reduction::Max | Reduction::Min => 0,
                }
        }
        // Per output: the window's squares and sums, the scale and shift,
        // the power and the division.
        Op::LocalResponseNorm(a) => (a.size as u64)
            .saturating_mul(2)
            .saturating_add(3)
            .saturating_mul(n_out),
        Op::Dropout(a) => match a.mode {
            crate::ir::DropoutMode::Inverted => 0,
            crate::ir::DropoutMode::Classic => n_out,
        },
        Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Permute(_)
        | Op::Select(_)
        | Op::Concat(_)
        | Op::Identity
        | Op::Pad(_)
        | Op::Constant(_)
        | Op::Indexing(_) => 0,
        Op::MatMul => 2 * n_out * x.last().copied().unwrap_or(0) as u64,
        // Four products and three sums per bilinear pixel; nearest copies.
        Op::Interpolate(a) => match a.mode {
            crate::ir::InterpolateMode::Nearest(_) => 0,
            crate::ir::InterpolateMode::Bilinear => 7 * n_out,
        },
        Op::Rnn(a) | Op::Lstm(a) | Op::Gru(a) => {
            let gates: u64 = match op {
                Op::Lstm(_) => 4,
                Op::Gru(_) => 3,
                _ => 1,
            };
            let dirs = a.direction.count() as u64;
            // Steps times batch; x is [seq, batch, in] or [batch, seq, in].
            let steps = (x.first().copied().unwrap_or(0) * x.get(1).copied().unwrap_or(0)) as u64;
            let h = a.hidden as u64;
            let mut input = x.get(2).copied().unwrap_or(0) as u64;
            let mut total = 0;
            for _ in 0..a.layers {
                let matmuls = 2 * gates * h * (input + h);
                let biases = if a.bias { 2 * gates * h } else { 0 };
                // Gate non-linearities and the cell update, per hidden unit.
                let pointwise = if gates == 4 { 8 * h } else { h };
                total += dirs * steps * (matmuls + biases + pointwise);
                input = dirs * h;
            }
            total
        }
    }
}

fn format_field(f: ReceptiveField) -> (String, String) {
    fn num(v: f64) -> String {
        if v.fract() == 0.0 {
            format!("{v}")
        } else {
            format!("{v:.3}")
        }
    }
    match f {
        ReceptiveField::None => ("-".into(), "-".into()),
        ReceptiveField::Global => ("global".into(), "-".into()),
        ReceptiveField::Window { size, stride } => (
            format!("{}x{}", num(size[0]), num(size[1])),
            format!("{}x{}", num(stride[0]), num(stride[1])),
        ),
    }
}

/// Groups digits in threes: `11689512` -> `11,689,512`.
pub fn group_digits(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders the statistics as the table `nnc stats` prints.
pub fn render(graph: &Graph, s: &ModelStats) -> String {
    let mut rows = vec![[
        "layer".to_string(),
        "op".to_string(),
        "output".to_string(),
        "params".to_string(),
        "FLOPs".to_string(),
        "rf".to_string(),
        "rf stride".to_string(),
    ]];
    for l in &s.layers {
        let (rf, stride) = format_field(l.receptive_field);
        rows.push([
            l.name.clone(),
            l.op.to_string(),
            nnc_runtime::format_shape(&l.shape),
            group_digits(l.params),
            group_digits(l.flops),
            rf,
            stride,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("model {}\n", graph.name);
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            // Text columns align left, numbers right.
            if (3..=4).contains(&i) {
                let _ = write!(line, "{:>width$}  ", cell, width = widths[i]);
            } else {
                let _ = write!(line, "{:<width$}  ", cell, width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "total: {} parameters, {} FLOPs ({:.3} GFLOPs), {} layers",
        group_digits(s.total_params),
        group_digits(s.total_flops),
        s.total_flops as f64 / 1e9,
        s.layers.len()
    );
    out
}
