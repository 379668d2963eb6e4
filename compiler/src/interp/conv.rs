//! `conv2d` and `conv_transpose2d` as direct loops.
//!
//! Both walk the kernel taps in the outer loops and do a strided
//! multiply-add over one output (or input) row in the innermost loop, so the
//! index arithmetic happens once per row instead of once per element. The
//! transposed convolution is written as the scatter-add adjoint of `conv2d`:
//! every input element adds `x * w` into the output positions that `conv2d`
//! with the same weight would have read it from.

use nnc_runtime::{format_shape, Tensor};

use super::check::{dims4, positive_pair, presence, shape_is, valid_range, Window};
use super::error::{operands, InterpError};
use crate::ir::{Conv2dAttrs, ConvTranspose2dAttrs, Padding};

/// `conv2d`: `x [N, C_in, H, W]`, `weight [out, C_in/groups, kh, kw]`,
/// optional `bias [out]`, zero padding; output `[N, out, H_out, W_out]`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    a: &Conv2dAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "conv2d";
    let [n, c_in, h, w] = dims4(OP, "input", x)?;
    let [c_out, in_per_group, kh, kw] = dims4(OP, "weight", weight)?;
    positive_pair(OP, "stride", a.stride)?;
    positive_pair(OP, "dilation", a.dilation)?;
    positive_pair(OP, "kernel", [kh, kw])?;
    check_groups(OP, a.groups, c_in, c_out)?;
    if in_per_group * a.groups != c_in {
        return Err(operands(
            OP,
            format!(
                "the weight has {in_per_group} input channels per group but the input has \
                 {c_in} channels split into groups={}",
                a.groups
            ),
        ));
    }
    if a.out_channels != c_out || a.kernel != [kh, kw] {
        return Err(operands(
            OP,
            format!(
                "the weight shape {} does not match out_channels={} and kernel=[{}, {}]",
                format_shape(weight.shape()),
                a.out_channels,
                a.kernel[0],
                a.kernel[1]
            ),
        ));
    }
    presence(OP, "bias", a.bias, bias.is_some())?;
    if let Some(b) = bias {
        shape_is(OP, "bias", b, &[c_out])?;
    }
    let wy = Window::axis(0, a.kernel, a.stride, a.padding, a.dilation);
    let wx = Window::axis(1, a.kernel, a.stride, a.padding, a.dilation);
    let oh = wy.out_len(OP, "height", h, false)?;
    let ow = wx.out_len(OP, "width", w, false)?;

    let mut out = Tensor::zeros(vec![n, c_out, oh, ow])?;
    let xd = x.data();
    let wd = weight.data();
    let out_per_group = c_out / a.groups;
    for (plane_index, plane) in out.data_mut().chunks_exact_mut(oh * ow).enumerate() {
        let (b, oc) = (plane_index / c_out, plane_index % c_out);
        let g = oc / out_per_group;
        if let Some(bias) = bias {
            plane.fill(bias.data()[oc]);
        }
        for icg in 0..in_per_group {
            let ic = g * in_per_group + icg;
            let in_plane = &xd[(b * c_in + ic) * h * w..][..h * w];
            let taps = &wd[(oc * in_per_group + icg) * kh * kw..][..kh * kw];
            for ky in 0..kh {
                let rows = valid_range(oh, h, wy.stride, ky * wy.dilation, wy.pad);
                for kx in 0..kw {
                    let cols = valid_range(ow, w, wx.stride, kx * wx.dilation, wx.pad);
                    if cols.is_empty() {
                        continue;
                    }
                    let tap = taps[ky * kw + kx];
                    let ix0 = cols.start * wx.stride + kx * wx.dilation - wx.pad;
                    for oy in rows.clone() {
                        let iy = oy * wy.stride + ky * wy.dilation - wy.pad;
                        let in_row = &in_plane[iy * w..(iy + 1) * w];
                        let out_row = &mut plane[oy * ow..(oy + 1) * ow];
                        gather_axpy(&mut out_row[cols.clone()], tap, &in_row[ix0..], wx.stride);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `conv_transpose2d`: `x [N, C_in, H, W]`, `weight [C_in, out/groups, kh,
/// kw]`, optional `bias [out]`; output `[N, out, H_out, W_out]` with
/// `H_out = (H-1)*stride - 2*pad + dilation*(kh-1) + output_padding + 1`.
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    a: &ConvTranspose2dAttrs,
) -> Result<Tensor, InterpError> {
    const OP: &str = "conv_transpose2d";
    let [n, c_in, h, w] = dims4(OP, "input", x)?;
    let [w_in, out_per_group, kh, kw] = dims4(OP, "weight", weight)?;
    positive_pair(OP, "stride", a.stride)?;
    positive_pair(OP, "dilation", a.dilation)?;
    positive_pair(OP, "kernel", [kh, kw])?;
    let c_out = out_per_group * a.groups;
    check_groups(OP, a.groups, c_in, c_out)?;
    if w_in != c_in {
        return Err(operands(
            OP,
            format!("the weight is for {w_in} input channels but the input has {c_in}"),
        ));
    }
    if a.out_channels != c_out || a.kernel != [kh, kw] {
        return Err(operands(
            OP,
            format!(
                "the weight shape {} with groups={} does not match out_channels={} and kernel=[{}, {}]",
                format_shape(weight.shape()),
                a.groups,
                a.out_channels,
                a.kernel[0],
                a.kernel[1]
            ),
        ));
    }
    for i in 0..2 {
        if a.output_padding[i] >= a.stride[i] && a.output_padding[i] >= a.dilation[i] {
            return Err(operands(
                OP,
                format!(
                    "output_padding {} must be smaller than either stride {} or dilation {}",
                    a.output_padding[i], a.stride[i], a.dilation[i]
                ),
            ));
        }
    }
    presence(OP, "bias", a.bias, bias.is_some())?;
    if let Some(b) = bias {
        shape_is(OP, "bias", b, &[c_out])?;
    }
    // The transposed conv trims the same padding from both ends.
    let padding = Padding::symmetric(a.padding);
    let wy = Window::axis(0, a.kernel, a.stride, padding, a.dilation);
    let wx = Window::axis(1, a.kernel, a.stride, padding, a.dilation);
    let oh = transposed_len("height", h, wy, a.output_padding[0])?;
    let ow = transposed_len("width", w, wx, a.output_padding[1])?;

    let mut out = Tensor::zeros(vec![n, c_out, oh, ow])?;
    let xd = x.data();
    let wd = weight.data();
    let in_per_group = c_in / a.groups;
    for (plane_index, plane) in out.data_mut().chunks_exact_mut(oh * ow).enumerate() {
        let (b, oc) = (plane_index / c_out, plane_index % c_out);
        let (g, ocg) = (oc / out_per_group, oc % out_per_group);
        if let Some(bias) = bias {
            plane.fill(bias.data()[oc]);
        }
        for icg in 0..in_per_group {
            let ic = g * in_per_group + icg;
            let in_plane = &xd[(b * c_in + ic) * h * w..][..h * w];
            let taps = &wd[(ic * out_per_group + ocg) * kh * kw..][..kh * kw];
            for ky in 0..kh {
                // Input rows `iy` whose tap `ky` lands on output row `oy`.
                let rows = valid_range(h, oh, wy.stride, ky * wy.dilation, wy.pad);
                for kx in 0..kw {
                    let cols = valid_range(w, ow, wx.stride, kx * wx.dilation, wx.pad);
                    if cols.is_empty() {
                        continue;
                    }
                    let tap = taps[ky * kw + kx];
                    let ox0 = cols.start * wx.stride + kx * wx.dilation - wx.pad;
                    for iy in rows.clone() {
                        let oy = iy * wy.stride + ky * wy.dilation - wy.pad;
                        let in_row = &in_plane[iy * w..(iy + 1) * w];
                        let out_row = &mut plane[oy * ow..(oy + 1) * ow];
                        scatter_axpy(&mut out_row[ox0..], tap, &in_row[cols.clone()], wx.stride);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `out[i] += tap * input[i * stride]` for every `i` of `out`: one kernel
/// tap applied along an output row of `conv2d`. The unit-stride case is
/// split out because it vectorises.
fn gather_axpy(out: &mut [f32], tap: f32, input: &[f32], stride: usize) {
    if stride == 1 {
        for (o, &v) in out.iter_mut().zip(input) {
            *o += tap * v;
        }
    } else {
        for (o, &v) in out.iter_mut().zip(input.iter().step_by(stride)) {
            *o += tap * v;
        }
    }
}

/// `out[i * stride] += tap * input[i]` for every `i` of `input`: one kernel
/// tap of `conv_transpose2d` scattered along an output row.
fn scatter_axpy(out: &mut [f32], tap: f32, input: &[f32], stride: usize) {
    if stride == 1 {
        for (o, &v) in out.iter_mut().zip(input) {
            *o += tap * v;
        }
    } else {
        for (o, &v) in out.iter_mut().step_by(stride).zip(input) {
            *o += tap * v;
        }
    }
}

/// Checks that `groups` is positive and divides both channel counts.
fn check_groups(
    op: &'static str,
    groups: usize,
    c_in: usize,
    c_out: usize,
) -> Result<(), InterpError> {
    if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
        return Err(operands(
            op,
            format!(
                "groups={groups} must be positive and divide both the {c_in} input and the \
                 {c_out} output channels"
            ),
        ));
    }
    Ok(())
}

/// Output length of a transposed convolution along one axis.
fn transposed_len(
    axis: &str,
    len: usize,
    win: Window,
    output_padding: usize,
) -> Result<usize, InterpError> {
    const OP: &str = "conv_transpose2d";
    let full = len
        .checked_sub(1)
        .and_then(|l| l.checked_mul(win.stride))
        .and_then(|l| l.checked_add((win.kernel - 1).checked_mul(win.dilation)?))
        .and_then(|l| l.checked_add(output_padding.checked_add(1)?))
        .ok_or_else(|| {
            operands(
                OP,
                format!("the input {axis} {len} gives no valid output {axis}"),
            )
        })?;
    let cut = win.pad.saturating_mul(2);
    if full <= cut {
        return Err(operands(
            OP,
            format!(
                "the padding {} removes the whole output {axis} {full}",
                win.pad
            ),
        ));
    }
    Ok(full - cut)
}
