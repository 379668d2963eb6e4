//! `lower-conv`: chooses an algorithm for every convolution and rewrites it
//! into the lowered ops that name it, with the reason as a note:
//!
//! | convolution | becomes |
//! |---|---|
//! | 1x1, stride 1, no padding | `gemm` on the input itself (no im2col) |
//! | at most 4 input channels, wider than 1x1, stride 1 or 2 on both axes, no groups, dilation or residual | stays `conv2d`: the backend's direct convolution |
//! | depthwise (`groups = C_in > 1`, any channel multiplier) whose only user is a 1x1 stride-1 unpadded conv | one `separable_conv2d`; when the depthwise input is a 1x1 expansion (a `gemm` on its input) read by nothing else and of at least 2 MiB, that too (`expand_in=`) |
//! | other depthwise | `depthwise_conv2d` |
//! | 3x3, stride 1, no dilation or groups, at least 16 channels in and out, at least 9 2x2 tiles | `winograd_input` + `gemm` (16 or 36 groups) + `winograd_output`: Winograd F(2x2, 3x3), or F(4x4, 3x3) from 49 4x4 tiles |
//! | anything else (stride, padding, dilation, groups) | `im2col` + `gemm` (per group) |
//! | `conv_transpose2d` | `gemm` to columns + `col2im` |
//!
//! Padding that differs per side (top, left, bottom, right) changes no
//! choice but the 1x1 GEMM's, which needs none on any side: every kernel
//! above places its windows by the top and left padding alone and takes
//! the output size, which the bottom and right padding decide, from the
//! output shape.
//!
//! Weights are laid out for the GEMM: a conv weight `[out, C/groups, kh,
//! kw]` is the same data as `[out, C/groups*kh*kw]`, whose column order is
//! `im2col`'s row order; a transposed-conv weight `[C_in, out/groups, kh,
//! kw]` is transposed per group to `[out*kh*kw, C_in/groups]`. A Winograd
//! conv's `gemm` keeps the conv's own `[out, C, 3, 3]` weight and names the
//! transform (`weight=winograd F(mxm, 3x3)`); the interpreter and the
//! backend transform it where they use it (the backend while packing), so
//! the transformed filters, 16/9 or 4 times the conv's, are never stored
//! whole. Fused
//! epilogues move with the op that produces the final value. The conv node
//! keeps its name, location and users; an `im2col` or column `gemm` it
//! needs is a new node named `<conv>.im2col` or `<conv>.gemm`.
//!
//! Precondition: a verified graph whose weight nodes have tensors. Values
//! change only by summation order (1e-5 relative).

use super::{reshape_weight, reshape_weight_view, weight_tensor, PassError, PassReport};
use crate::ir::{
    Col2ImAttrs, Conv2dAttrs, ConvTranspose2dAttrs, Epilogue, Expansion, GemmAttrs, Graph,
    Im2ColAttrs, Node, NodeId, Op, Padding, SeparableConv2dAttrs, TensorType, WinogradInputAttrs,
    WinogradOutputAttrs,
};
use nnc_runtime::kernels::winograd::{Transform, F2X3, F4X3};
use nnc_runtime::WeightSet;

/// The registry and CLI name.
pub const NAME: &str = "lower-conv";

/// Lowers every `conv2d` and `conv_transpose2d`; `fired` counts lowered
/// convolutions (a separable pair counts once).
pub fn lower_conv(graph: &mut Graph, weights: &mut WeightSet) -> Result<PassReport, PassError> {
    let mut report = PassReport::default();
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let note = if let Op::Conv2d(a) = &graph.node(id).op {
            let a = a.clone();
            lower_conv2d(graph, weights, id, a)?
        } else if let Op::ConvTranspose2d(a) = &graph.node(id).op {
            let a = a.clone();
            lower_conv_transpose2d(graph, weights, id, a)?
        } else {
            continue;
        };
        // The choice is in the IR; the report keeps only refusals, like
        // the other passes'.
        report.fired += 1;
        graph.node_mut(note.0).note(NAME, note.1);
    }
    Ok(report)
}

fn graph_err(source: crate::ir::GraphError) -> PassError {
    PassError::Graph { pass: NAME, source }
}

/// `3x3, stride 2, pad 1`: the window, with the attributes that differ
/// from the defaults (a padding that differs per side as `pad [top, left,
/// bottom, right]`).
fn describe(kernel: [usize; 2], stride: [usize; 2], pad: Padding, dilation: [usize; 2]) -> String {
    let pair = |p: [usize; 2]| {
        if p[0] == p[1] {
            p[0].to_string()
        } else {
            format!("{}x{}", p[0], p[1])
        }
    };
    let mut text = format!("{}x{}", kernel[0], kernel[1]);
    if stride != [1, 1] {
        text += &format!(", stride {}", pair(stride));
    }
    if pad.is_symmetric() && !pad.is_zero() {
        text += &format!(", pad {}", pair(pad.begin));
    } else if !pad.is_symmetric() {
        text += &format!(", pad {pad}");
    }
    if dilation != [1, 1] {
        text += &format!(", dilation {}", pair(dilation));
    }
    text
}

/// The weight tensor of operand `index` of `id`, as data.
fn weight_data<'w>(
    graph: &Graph,
    weights: &'w WeightSet,
    id: NodeId,
    index: usize,
) -> Result<&'w [f32], PassError> {
    let w = graph.node(id).inputs()[index];
    weight_tensor(NAME, graph, weights, w)?
        .map(|t| t.data())
        .ok_or_else(|| PassError::MissingWeight {
            pass: NAME,
            name: graph.node(w).name.clone(),
        })
}

/// Lowers one `conv2d`; returns the node that carries the note and the note.
fn lower_conv2d(
    graph: &mut Graph,
    weights: &mut WeightSet,
    id: NodeId,
    a: Conv2dAttrs,
) -> Result<(NodeId, String), PassError> {
    let x = graph.node(id).inputs()[0];
    let c_in = graph.node(x).ty.shape[1];
    let window = describe(a.kernel, a.stride, a.padding, a.dilation);
    if a.groups == c_in && c_in > 1 {
        let multiplier = a.out_channels / c_in;
        let kind = format!("depthwise {window} (groups = C_in = {c_in}, multiplier {multiplier})");
        return match pointwise_user(graph, id, &a) {
            Ok(pw) => {
                let dw_name = graph.node(id).name.clone();
                let expansion = fuse_separable(graph, weights, id, a, pw)?;
                let start = match expansion {
                    Some(name) => format!("1x1 expansion {name} + "),
                    None => String::new(),
                };
                Ok((
                    pw,
                    format!(
                        "{start}{kind} {dw_name} + this pointwise 1x1: separable kernel; the depthwise output is never materialised"
                    ),
                ))
            }
            Err(why) => {
                graph.node_mut(id).op = Op::DepthwiseConv2d(a);
                Ok((id, format!("{kind}: depthwise kernel ({why})")))
            }
        };
    }
    if direct_fits(&a, c_in) {
        let note = if a.groups > 1 {
            format!(
                "{window}, groups {}, {} input channels per group: direct convolution per group, no im2col",
                a.groups,
                c_in / a.groups
            )
        } else {
            format!(
                "{window}, {c_in} input channel{}: direct convolution, no im2col",
                if c_in == 1 { "" } else { "s" }
            )
        };
        return Ok((id, note));
    }
    let out = &graph.node(id).ty.shape;
    if winograd_fits(&a, c_in, [out[2], out[3]]) {
        let t = winograd_tile([out[2], out[3]]);
        lower_winograd(graph, id, a, t)?;
        let (m, side) = (t.m, t.a());
        return Ok((
            id,
            format!(
                "{window}: Winograd F({m}x{m}, 3x3), {} GEMMs on transformed tiles ({:.2}x fewer multiplies)",
                side * side,
                (9 * m * m) as f64 / (side * side) as f64
            ),
        ));
    }
    // Lay the weight out as the GEMM's [out, C/groups*kh*kw] operand.
    let k = c_in / a.groups.max(1) * a.kernel[0] * a.kernel[1];
    let old = graph.node(id).inputs()[1];
    let weight = reshape_weight_view(
        NAME,
        graph,
        weights,
        id,
        old,
        vec![a.out_channels, k],
        "gemm",
    )?;
    let (groups, gemm) = if a.groups > 1 {
        (format!(", groups {}", a.groups), "one GEMM per group")
    } else {
        (String::new(), "GEMM")
    };
    let (source, note) = if a.kernel == [1, 1] && a.stride == [1, 1] && a.padding.is_zero() {
        (
            x,
            format!("1x1, stride 1, no padding{groups}: {gemm} on the input, no im2col"),
        )
    } else {
        let node = graph.node(id);
        let out = &node.ty.shape;
        let cols = Node::new(
            Op::Im2Col(Im2ColAttrs {
                kernel: a.kernel,
                stride: a.stride,
                padding: a.padding,
                dilation: a.dilation,
            }),
            vec![x],
            TensorType::f32(vec![
                out[0],
                c_in * a.kernel[0] * a.kernel[1],
                out[2],
                out[3],
            ]),
            format!("{}.im2col", node.name),
        )
        .at(node.loc);
        let cols = graph.add(cols).map_err(graph_err)?;
        (cols, format!("{window}{groups}: im2col + {gemm}"))
    };
    let mut inputs = graph.node(id).inputs().to_vec();
    inputs[0] = source;
    inputs[1] = weight;
    graph.node_mut(id).op = Op::Gemm(GemmAttrs {
        out_channels: a.out_channels,
        groups: a.groups,
        bias: a.bias,
        epilogue: a.epilogue,
        winograd: None,
    });
    graph.set_inputs(id, inputs).map_err(graph_err)?;
    Ok((id, note))
}

/// Whether conv `a` (with `c_in` input channels) stays a `conv2d` for the
/// backend's direct convolution: a few input channels (a network's stem on
/// the image) or a grouped conv with at most 64 channels per group (ResNeXt,
/// RegNet), with a window wider than 1x1 that the kernel computes
/// ([`Conv2dAttrs::direct_window`]). With 3 channels im2col's column
/// matrix is the image times the taps and its GEMM (K = 27 or 147) is
/// bound by its stores: ResNet-18's 7x7 stem took 0.83 ms of im2col and
/// 2.89 ms of GEMM, and about 2.3 ms direct. A grouped conv's per-group
/// GEMMs have as few rows as a group has output channels; direct, ResNeXt
/// 32x4d's 3x3 layers took 1.3 (4 channels per group, 56x56), 0.64 (8),
/// 0.35 (16) and 0.50 ms (32), against 2.2, 1.43, 1.10 and 0.79 ms through
/// im2col, and RegNetX's 16 per group 0.26-0.70 against 0.77-1.6 ms (one
/// thread, Intel Xeon with AVX-512).
fn direct_fits(a: &Conv2dAttrs, c_in: usize) -> bool {
    let group_in = c_in / a.groups.max(1);
    let grouped = a.groups > 1 && group_in <= 64;
    (c_in <= 4 || grouped) && a.kernel != [1, 1] && a.direct_window()
}

/// Whether conv `a` (with `c_in` input channels and an output of `size`)
/// runs as Winograd F(2x2, 3x3): 3x3, stride 1, undilated, ungrouped,
/// wide enough that its 16 GEMMs are efficient (the transforms cost about
/// as much as im2col, so narrow layers gain nothing), and with at least 9
/// tiles. Winograd's weights are 16/9 the size of the conv's, and a GEMM
/// over few tiles is bound by reading them: on vgg_cifar's 4x4 maps (4
/// tiles) Winograd took 1.14 ms where im2col took 0.64 ms, while ResNet's
/// 7x7 maps (16 tiles) went from 2.7 to 1.6 ms.
fn winograd_fits(a: &Conv2dAttrs, c_in: usize, size: [usize; 2]) -> bool {
    a.kernel == [3, 3]
        && a.stride == [1, 1]
        && a.dilation == [1, 1]
        && a.groups == 1
        && c_in >= 16
        && a.out_channels >= 16
        && size[0].div_ceil(2) * size[1].div_ceil(2) >= 9
}

/// F(4x4, 3x3) on maps of at least 49 of its tiles (28x28 and up), whose
/// GEMMs stay wide enough; F(2x2, 3x3) on smaller ones.
fn winograd_tile(size: [usize; 2]) -> Transform {
    if size[0].div_ceil(4) * size[1].div_ceil(4) >= 49 {
        F4X3
    } else {
        F2X3
    }
}

/// Rewrites conv `id` as `winograd_input` + a `gemm` with one group
/// per transformed element + `winograd_output` (the conv node itself, which
/// keeps the bias and epilogue).
fn lower_winograd(
    graph: &mut Graph,
    id: NodeId,
    a: Conv2dAttrs,
    t: Transform,
) -> Result<(), PassError> {
    let x = graph.node(id).inputs()[0];
    let x_shape = graph.node(x).ty.shape.clone();
    let (c_in, c_out, side) = (x_shape[1], a.out_channels, t.a());
    // The gemm takes the conv's own [out, C, 3, 3] weight; its transform
    // is computed where it is used (see `GemmAttrs::winograd`).
    let weight = graph.node(id).inputs()[1];
    let node = graph.node(id);
    let (name, loc) = (node.name.clone(), node.loc);
    let [oh, ow] = [node.ty.shape[2], node.ty.shape[3]];
    let tiles = [oh.div_ceil(t.m), ow.div_ceil(t.m)];
    let transformed = Node::new(
        Op::WinogradInput(WinogradInputAttrs {
            tile: t.m,
            tiles,
            padding: a.padding,
        }),
        vec![x],
        TensorType::f32(vec![x_shape[0], side * side * c_in, tiles[0], tiles[1]]),
        format!("{name}.winograd"),
    )
    .at(loc);
    let transformed = graph.add(transformed).map_err(graph_err)?;
    let products = Node::new(
        Op::Gemm(GemmAttrs {
            out_channels: side * side * c_out,
            groups: side * side,
            bias: false,
            epilogue: Epilogue::default(),
            winograd: Some(t.m),
        }),
        vec![transformed, weight],
        TensorType::f32(vec![x_shape[0], side * side * c_out, tiles[0], tiles[1]]),
        format!("{name}.gemm"),
    )
    .at(loc);
    let products = graph.add(products).map_err(graph_err)?;
    let mut inputs = vec![products];
    inputs.extend_from_slice(&graph.node(id).inputs()[2..]);
    graph.node_mut(id).op = Op::WinogradOutput(WinogradOutputAttrs {
        out_channels: c_out,
        tile: t.m,
        output_size: [oh, ow],
        bias: a.bias,
        epilogue: a.epilogue,
    });
    graph.set_inputs(id, inputs).map_err(graph_err)
}

/// The 1x1 conv that a depthwise conv `dw` can be fused with, or why not.
fn pointwise_user(graph: &Graph, dw: NodeId, a: &Conv2dAttrs) -> Result<NodeId, String> {
    let users = graph.users(dw);
    let [pw] = users[..] else {
        return Err(format!("its output has {} users", users.len()));
    };
    if graph.outputs().contains(&dw) {
        return Err("its output is a graph output".into());
    }
    if a.epilogue.residual {
        return Err("it ends in a residual add".into());
    }
    let node = graph.node(pw);
    match &node.op {
        Op::Conv2d(p)
            if p.kernel == [1, 1]
                && p.stride == [1, 1]
                && p.padding.is_zero()
                && p.groups == 1
                && node.inputs()[0] == dw =>
        {
            Ok(pw)
        }
        Op::Conv2d(p) if p.kernel == [1, 1] && !p.padding.is_zero() => Err(format!(
            "its user {} is a 1x1 conv with padding {}, not a pointwise conv",
            node.name, p.padding
        )),
        op => Err(format!(
            "its user {} is a {}, not a 1x1 pointwise conv",
            node.name,
            op.name()
        )),
    }
}

/// An expanded input at least this large is computed inside the separable
/// kernel, a block of rows at a time, instead of written whole and read
/// back. MobileNetV2's 112x112 expansion (4.8 MB, through L3 otherwise):
/// 1.05 -> 0.93-0.97 ms with its separable conv at one thread, the model
/// about 5% faster. Its 56x56 ones (1.8 MB) were no faster fused (0.68
/// against 0.66 ms, 0.43 against 0.41): the halo rows computed twice and
/// the smaller tasks cost what the round trip saved.
const EXPANSION_MIN_BYTES: usize = 2 << 20;

/// The 1x1 expansion (a `gemm` on its input, lowered before `dw`) whose
/// output `dw` reads, if it is worth fusing into the separable kernel:
/// `dw` its only user, not a graph output, no residual, and its output
/// at least [`EXPANSION_MIN_BYTES`].
fn expansion_producer(graph: &Graph, dw: NodeId) -> Option<(NodeId, Expansion)> {
    let x = graph.node(dw).inputs()[0];
    let node = graph.node(x);
    let Op::Gemm(g) = &node.op else {
        return None;
    };
    let input = *node.inputs().first()?;
    let (in_shape, out_shape) = (&graph.node(input).ty.shape, &node.ty.shape);
    let one_by_one = in_shape.len() == 4
        && out_shape.len() == 4
        && in_shape[2..] == out_shape[2..]
        && !matches!(graph.node(input).op, Op::Im2Col(_));
    let fits = g.groups == 1
        && g.winograd.is_none()
        && !g.epilogue.residual
        && one_by_one
        && graph.users(x)[..] == [dw]
        && !graph.outputs().contains(&x)
        && 4 * node.ty.numel() >= EXPANSION_MIN_BYTES;
    fits.then(|| {
        (
            x,
            Expansion {
                in_channels: in_shape[1],
                bias: g.bias,
                activation: g.epilogue.activation,
            },
        )
    })
}

/// Rewrites pointwise conv `pw` into the separable op of `dw` and itself,
/// with the expansion before `dw` when [`expansion_producer`] finds one,
/// and removes `dw` and the expansion; returns the expansion's name.
fn fuse_separable(
    graph: &mut Graph,
    weights: &mut WeightSet,
    dw: NodeId,
    a: Conv2dAttrs,
    pw: NodeId,
) -> Result<Option<String>, PassError> {
    let Op::Conv2d(p) = graph.node(pw).op.clone() else {
        return Ok(None);
    };
    let old = graph.node(pw).inputs()[1];
    let c_mid = a.out_channels;
    let pw_weight = reshape_weight_view(
        NAME,
        graph,
        weights,
        pw,
        old,
        vec![p.out_channels, c_mid],
        "gemm",
    )?;
    let expansion = expansion_producer(graph, dw);
    let mut inputs = match &expansion {
        // The expansion's own operands (input, weight, bias) replace its
        // output.
        Some((e, _)) => graph.node(*e).inputs().to_vec(),
        None => vec![graph.node(dw).inputs()[0]],
    };
    inputs.extend_from_slice(&graph.node(dw).inputs()[1..]);
    inputs.push(pw_weight);
    inputs.extend_from_slice(&graph.node(pw).inputs()[2..]);
    graph.node_mut(pw).op = Op::SeparableConv2d(SeparableConv2dAttrs {
        expand: expansion.as_ref().map(|(_, e)| e.clone()),
        depthwise: a,
        out_channels: p.out_channels,
        bias: p.bias,
        epilogue: p.epilogue,
    });
    graph.set_inputs(pw, inputs).map_err(graph_err)?;
    graph.remove(dw).map_err(graph_err)?;
    let Some((e, _)) = expansion else {
        return Ok(None);
    };
    let name = graph.node(e).name.clone();
    graph.remove(e).map_err(graph_err)?;
    Ok(Some(name))
}

/// Lowers one `conv_transpose2d` to a column `gemm` and `col2im`.
fn lower_conv_transpose2d(
    graph: &mut Graph,
    weights: &mut WeightSet,
    id: NodeId,
    a: ConvTranspose2dAttrs,
) -> Result<(NodeId, String), PassError> {
    let x = graph.node(id).inputs()[0];
    let c_in = graph.node(x).ty.shape[1];
    let groups = a.groups.max(1);
    let (c_group, rows) = (
        c_in / groups,
        a.out_channels / groups * a.kernel[0] * a.kernel[1],
    );
    // [C_in, out/groups, kh, kw] -> per group g the transpose
    // [rows, C_in/groups]: W2[g*rows + r, c] = W[g*C_in/groups + c, r].
    let w = weight_data(graph, weights, id, 1)?;
    let mut transposed = vec![0.0f32; w.len()];
    for g in 0..groups {
        for c in 0..c_group {
            for r in 0..rows {
                transposed[(g * rows + r) * c_group + c] = w[((g * c_group + c) * rows) + r];
            }
        }
    }
    let old = graph.node(id).inputs()[1];
    let weight = reshape_weight(
        NAME,
        graph,
        weights,
        id,
        old,
        vec![groups * rows, c_group],
        transposed,
        "gemm",
    )?;
    let node = graph.node(id);
    let out = node.ty.shape.clone();
    let x_shape = &graph.node(x).ty.shape;
    let cols = Node::new(
        Op::Gemm(GemmAttrs {
            out_channels: groups * rows,
            groups,
            bias: false,
            epilogue: Epilogue::default(),
            winograd: None,
        }),
        vec![x, weight],
        TensorType::f32(vec![x_shape[0], groups * rows, x_shape[2], x_shape[3]]),
        format!("{}.gemm", node.name),
    )
    .at(node.loc);
    let window = describe(
        a.kernel,
        a.stride,
        Padding::symmetric(a.padding),
        a.dilation,
    );
    let cols = graph.add(cols).map_err(graph_err)?;
    let mut inputs = vec![cols];
    inputs.extend_from_slice(&graph.node(id).inputs()[2..]);
    graph.node_mut(id).op = Op::Col2Im(Col2ImAttrs {
        out_channels: a.out_channels,
        kernel: a.kernel,
        stride: a.stride,
        padding: a.padding,
        dilation: a.dilation,
        output_size: [out[2], out[3]],
        bias: a.bias,
        epilogue: a.epilogue,
    });
    graph.set_inputs(id, inputs).map_err(graph_err)?;
    Ok((
        id,
        format!("transposed {window}: GEMM to columns, then col2im scatter-add"),
    ))
}
