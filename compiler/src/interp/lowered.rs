//! The ops that `fuse` and `lower-conv` produce: fused epilogues,
//! elementwise chains, `im2col`, `gemm`, `col2im` and the separable conv.
//!
//! Each is written as plainly as the op it replaces, so the interpreter can
//! check the rewrite: an epilogue calls the very activation kernels the
//! unfused ops use (so fusing changes no bit), and `gemm`/`im2col`/`col2im`
//! are textbook loops that share nothing with `conv2d`'s direct loops.

use nnc_runtime::{format_shape, Tensor};

use super::check::{dims4, positive_pair, presence, shape_is, valid_range, Window};
use super::conv::conv2d;
use super::elementwise::{
    activation, add, binary, broadcast_shape, broadcast_to, prelu_scalar, unary,
};
use super::error::{operands, InterpError};
use crate::ir::{
    Activation, Col2ImAttrs, ElementwiseAttrs, ElementwiseStep, Epilogue, GemmAttrs, Im2ColAttrs,
    SeparableConv2dAttrs,
};
use nnc_runtime::kernels::winograd::Transform;

/// Applies an activation with the kernel of the op of the same name.
pub fn activate(act: Activation, x: &Tensor) -> Tensor {
    activation(x, act)
}

/// Applies a fused epilogue to a producer's output: the residual add (the
/// residual must have the output's shape), then the activation.
pub fn epilogue(
    out: Tensor,
    residual: Option<&Tensor>,
    e: &Epilogue,
) -> Result<Tensor, InterpError> {
    const OP: &str = "epilogue";
    presence(OP, "residual", e.residual, residual.is_some())?;
    let out = match residual {
        Some(r) => {
            shape_is(OP, "the residual", r, out.shape())?;
            add(&out, r)?
        }
        None => out,
    };
    Ok(match e.activation {
        Some(act) => activate(act, &out),
        None => out,
    })
}

/// `elementwise`: operand 0 broadcast to the output shape, then each step in
/// order, with the same binary and activation kernels as the unfused
/// ops.
pub fn elementwise(x: &[&Tensor], a: &ElementwiseAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "elementwise";
    let Some(first) = x.first() else {
        return Err(operands(OP, "there are no operands"));
    };
    let mut shape = first.shape().to_vec();
    for t in &x[1..] {
        shape = broadcast_shape(&shape, t.shape()).ok_or_else(|| {
            operands(
                OP,
                format!(
                    "operands {} and {} cannot be broadcast together",
                    format_shape(&shape),
                    format_shape(t.shape())
                ),
            )
        })?;
    }
    let mut acc = broadcast_to(first, &shape)?;
    for step in &a.steps {
        let operand = |i: usize| {
            x.get(i)
                .filter(|_| i > 0)
                .copied()
                .ok_or_else(|| operands(OP, format!("a step reads operand {i} of {}", x.len())))
        };
        acc = match *step {
            ElementwiseStep::Binary(op, i) => binary(op, &acc, operand(i)?)?,
            ElementwiseStep::Unary(f) => unary(&acc, f),
            ElementwiseStep::Prelu(i) => {
                let slope = broadcast_to(operand(i)?, acc.shape())?;
                let mut out = acc.clone();
                for (v, s) in out.data_mut().iter_mut().zip(slope.data()) {
                    *v = prelu_scalar(*v, *s);
                }
                out
            }
            ElementwiseStep::Activation(act) => activate(act, &acc),
        };
    }
    Ok(acc)
}

/// `im2col`: `x [N, C, H, W]` to `[N, C*kh*kw, H_out, W_out]`; row
/// `(c*kh + ky)*kw + kx`, column `(oy, ox)` holds `x[c, oy*stride + ky*dilation
/// - pad, ...]`, or 0 in the padding.
pub fn im2col(x: &Tensor, a: &Im2ColAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "im2col";
    let [n, c, h, w] = dims4(OP, "input", x)?;
    positive_pair(OP, "kernel", a.kernel)?;
    positive_pair(OP, "stride", a.stride)?;
    positive_pair(OP, "dilation", a.dilation)?;
    let wy = Window::axis(0, a.kernel, a.stride, a.padding, a.dilation);
    let wx = Window::axis(1, a.kernel, a.stride, a.padding, a.dilation);
    let oh = wy.out_len(OP, "height", h, false)?;
    let ow = wx.out_len(OP, "width", w, false)?;
    let [kh, kw] = a.kernel;
    let mut out = Tensor::zeros(vec![n, c * kh * kw, oh, ow])?;
    let xd = x.data();
    for (row_index, row) in out.data_mut().chunks_exact_mut(oh * ow).enumerate() {
        let (b, r) = (row_index / (c * kh * kw), row_index % (c * kh * kw));
        let (ch, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let plane = &xd[(b * c + ch) * h * w..][..h * w];
        for oy in valid_range(oh, h, wy.stride, ky * wy.dilation, wy.pad) {
            let iy = oy * wy.stride + ky * wy.dilation - wy.pad;
            for ox in valid_range(ow, w, wx.stride, kx * wx.dilation, wx.pad) {
                let ix = ox * wx.stride + kx * wx.dilation - wx.pad;
                row[oy * ow + ox] = plane[iy * w + ix];
            }
        }
    }
    Ok(out)
}

/// `gemm`: `x [N, groups*K, S...]`, `weight [M, K]`, optional `bias [M]`;
/// `y[n, g*M/groups + m, s] = bias + sum_k weight[g*M/groups + m, k] *
/// x[n, g*K + k, s]`, output `[N, M, S...]`.
pub fn gemm(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    a: &GemmAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "gemm";
    if let Some(m) = a.winograd {
        return winograd_gemm(x, weight, bias, a, m);
    }
    let (k_total, spatial) = match *x.shape() {
        [_, k, ref rest @ ..] => (k, rest.iter().product::<usize>()),
        _ => return Err(operands(OP, "the input must have rank at least 2")),
    };
    let (m, groups) = (a.out_channels, a.groups);
    if groups == 0 || k_total % groups != 0 || m % groups != 0 {
        return Err(operands(
            OP,
            format!("groups={groups} must divide both {k_total} input and {m} output channels"),
        ));
    }
    let (k, m_per_group) = (k_total / groups, m / groups);
    shape_is(OP, "weight", weight, &[m, k])?;
    presence(OP, "bias", a.bias, bias.is_some())?;
    if let Some(b) = bias {
        shape_is(OP, "bias", b, &[m])?;
    }
    let mut shape = x.shape().to_vec();
    shape[1] = m;
    let mut out = Tensor::zeros(shape)?;
    let (xd, wd) = (x.data(), weight.data());
    for (plane_index, plane) in out.data_mut().chunks_exact_mut(spatial.max(1)).enumerate() {
        if spatial == 0 {
            break;
        }
        let (b, row) = (plane_index / m, plane_index % m);
        let g = row / m_per_group;
        if let Some(bias) = bias {
            plane.fill(bias.data()[row]);
        }
        for kk in 0..k {
            let tap = wd[row * k + kk];
            let input = &xd[(b * k_total + g * k + kk) * spatial..][..spatial];
            for (y, &v) in plane.iter_mut().zip(input) {
                *y += tap * v;
            }
        }
    }
    Ok(out)
}

/// A `gemm` whose weight is a 3x3 conv weight `[M/groups, K, 3, 3]` and
/// whose products use its Winograd F(mxm, 3x3) transform (see
/// `GemmAttrs::winograd`): transforms it, then multiplies.
fn winograd_gemm(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    a: &GemmAttrs,
    m: usize,
) -> Result<Tensor, InterpError> {
    const OP: &str = "gemm";
    let t = Transform::of(m).ok_or_else(|| operands(OP, format!("no Winograd F({m}x{m}, 3x3)")))?;
    let groups = a.groups.max(1);
    let (c_out, c_in) = (
        a.out_channels / groups,
        x.shape().get(1).copied().unwrap_or(0) / groups,
    );
    shape_is(OP, "weight", weight, &[c_out, c_in, 3, 3])?;
    let u = Tensor::new(
        vec![a.out_channels, c_in],
        t.filters(weight.data(), c_out, c_in),
    )?;
    gemm(
        x,
        &u,
        bias,
        &GemmAttrs {
            winograd: None,
            ..a.clone()
        },
    )
}

/// `col2im`: `cols [N, out*kh*kw, H, W]`, optional `bias [out]`; output
/// `[N, out, output_size]` where `y[o, iy*stride - pad + ky*dilation,
/// ix*stride - pad + kx*dilation] += cols[(o*kh + ky)*kw + kx, iy, ix]`.
pub fn col2im(
    cols: &Tensor,
    bias: Option<&Tensor>,
    a: &Col2ImAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "col2im";
    let [n, rows, h, w] = dims4(OP, "columns", cols)?;
    positive_pair(OP, "kernel", a.kernel)?;
    positive_pair(OP, "stride", a.stride)?;
    positive_pair(OP, "dilation", a.dilation)?;
    let [kh, kw] = a.kernel;
    let c_out = a.out_channels;
    if rows != c_out * kh * kw {
        return Err(operands(
            OP,
            format!("{rows} column rows are not out*kh*kw = {c_out}*{kh}*{kw}"),
        ));
    }
    presence(OP, "bias", a.bias, bias.is_some())?;
    if let Some(b) = bias {
        shape_is(OP, "bias", b, &[c_out])?;
    }
    let [oh, ow] = a.output_size;
    let mut out = Tensor::zeros(vec![n, c_out, oh, ow])?;
    let cd = cols.data();
    for (plane_index, plane) in out.data_mut().chunks_exact_mut(oh * ow).enumerate() {
        let (b, o) = (plane_index / c_out, plane_index % c_out);
        if let Some(bias) = bias {
            plane.fill(bias.data()[o]);
        }
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &cd[((b * c_out + o) * kh * kw + ky * kw + kx) * h * w..][..h * w];
                let ys = valid_range(h, oh, a.stride[0], ky * a.dilation[0], a.padding[0]);
                let xs = valid_range(w, ow, a.stride[1], kx * a.dilation[1], a.padding[1]);
                for iy in ys {
                    let oy = iy * a.stride[0] + ky * a.dilation[0] - a.padding[0];
                    for ix in xs.clone() {
                        let ox = ix * a.stride[1] + kx * a.dilation[1] - a.padding[1];
                        plane[oy * ow + ox] += row[iy * w + ix];
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `separable_conv2d` of `x` with `weights`, its other operands in order
/// (no residual): the expansion with its activation when there is one (a
/// `gemm`), the depthwise conv with its activation, then the pointwise
/// product as a `gemm`. The interpreter materialises the expanded input
/// and the depthwise output; only compiled kernels work tile by tile.
pub fn separable_conv2d(
    x: &Tensor,
    weights: &[&Tensor],
    a: &SeparableConv2dAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "separable_conv2d";
    let dw = &a.depthwise;
    let expected = a.own_operands() - 1;
    if weights.len() != expected {
        return Err(operands(
            OP,
            format!("{} weight operands, expected {expected}", weights.len()),
        ));
    }
    let mut rest = weights.iter().copied();
    let mut next = || rest.next().ok_or_else(|| operands(OP, "too few operands"));
    let expanded;
    let x = match &a.expand {
        Some(e) => {
            let weight = next()?;
            let bias = if e.bias { Some(next()?) } else { None };
            let out = gemm(
                x,
                weight,
                bias,
                &GemmAttrs {
                    out_channels: dw.groups,
                    groups: 1,
                    bias: e.bias,
                    epilogue: Epilogue::default(),
                    winograd: None,
                },
            )?;
            expanded = match e.activation {
                Some(act) => activate(act, &out),
                None => out,
            };
            &expanded
        }
        None => x,
    };
    let dw_weight = next()?;
    let dw_bias = if dw.bias { Some(next()?) } else { None };
    let mid = conv2d(x, dw_weight, dw_bias, dw)?;
    let mid = epilogue(mid, None, &dw.epilogue)?;
    let pw_weight = next()?;
    let pw_bias = if a.bias { Some(next()?) } else { None };
    gemm(
        &mid,
        pw_weight,
        pw_bias,
        &GemmAttrs {
            out_channels: a.out_channels,
            groups: 1,
            bias: a.bias,
            epilogue: Epilogue::default(),
            winograd: None,
        },
    )
}
