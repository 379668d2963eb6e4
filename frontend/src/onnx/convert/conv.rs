//! Conv, ConvTranspose, MaxPool, AveragePool and GlobalAveragePool.
//!
//! ONNX pads (explicit or from `auto_pad`) may differ per side, and so may
//! the padding of `conv2d` and the pools (`pad=[top, left, bottom, right]`),
//! so they become the op's own. Only a pool padding more than half its
//! kernel on some side, which nnc's pools reject as PyTorch does, goes into
//! an explicit `pad` before the pool: exact for max pooling (padding with
//! the lowest float), and for average pooling once each output is rescaled
//! to the divisor ONNX uses. `conv_transpose2d` trims the same padding from
//! both ends; the rest of ONNX's pads becomes output padding or a crop.

use super::attrs::Attrs;
use super::{one, owner_of, Converter, Outputs, Val};
use crate::onnx::constant::{Constant, Data};
use crate::onnx::emit;
use crate::onnx::proto::NodeProto;
use std::rc::Rc;

/// The smallest `f32`, which a max pool never picks over a real value; the
/// `.nn` language has no infinity literal.
const LOWEST: f32 = f32::MIN;

/// Per spatial dim: kernel, stride, dilation and the pads before and after.
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    begin: [usize; 2],
    end: [usize; 2],
}

/// The largest kernel, stride, dilation or pad the importer accepts; it
/// keeps the window arithmetic far from overflow.
const MAX_WINDOW: i64 = 1 << 16;

fn positive_pair(
    v: Option<Vec<i64>>,
    default: [usize; 2],
    what: &str,
) -> Result<[usize; 2], String> {
    match v {
        None => Ok(default),
        Some(v) if v.len() == 2 && v.iter().all(|&x| (1..=MAX_WINDOW).contains(&x)) => {
            Ok([v[0] as usize, v[1] as usize])
        }
        Some(v) => Err(format!(
            "`{what}` {v:?} must be two ints from 1 to {MAX_WINDOW} (nnc imports 2-D windows only)"
        )),
    }
}

/// Reads kernel, strides, dilations, pads and auto_pad for a window over
/// `spatial` input dims.
fn window(
    a: &mut Attrs<'_>,
    kernel: Option<[usize; 2]>,
    spatial: [usize; 2],
) -> Result<Window, String> {
    let kernel = match (a.ints("kernel_shape")?, kernel) {
        (Some(k), Some(w)) => {
            let k = positive_pair(Some(k), w, "kernel_shape")?;
            if k != w {
                return Err(format!(
                    "`kernel_shape` {k:?} differs from the weight's kernel {w:?}"
                ));
            }
            k
        }
        (k, Some(w)) => positive_pair(k, w, "kernel_shape")?,
        (Some(k), None) => positive_pair(Some(k), [1, 1], "kernel_shape")?,
        (None, None) => return Err("`kernel_shape` is required".into()),
    };
    let stride = positive_pair(a.ints("strides")?, [1, 1], "strides")?;
    let dilation = positive_pair(a.ints("dilations")?, [1, 1], "dilations")?;
    let auto_pad = a.string("auto_pad", "NOTSET")?;
    let pads = a.ints("pads")?;
    let (mut begin, mut end) = ([0usize; 2], [0usize; 2]);
    match auto_pad.as_str() {
        "NOTSET" => {
            if let Some(p) = pads {
                if p.len() != 4 || p.iter().any(|&x| !(0..=MAX_WINDOW).contains(&x)) {
                    return Err(format!(
                        "`pads` {p:?} must be four ints from 0 to {MAX_WINDOW}"
                    ));
                }
                begin = [p[0] as usize, p[1] as usize];
                end = [p[2] as usize, p[3] as usize];
            }
        }
        "VALID" => {}
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..2 {
                let out = spatial[i].div_ceil(stride[i]);
                let extent = dilation[i] * (kernel[i] - 1) + 1;
                let total = ((out - 1) * stride[i] + extent).saturating_sub(spatial[i]);
                let small = total / 2;
                (begin[i], end[i]) = if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
        }
        other => {
            return Err(format!(
                "`auto_pad` \"{other}\" is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"
            ))
        }
    }
    Ok(Window {
        kernel,
        stride,
        dilation,
        begin,
        end,
    })
}

/// The conv output size along one dim with pads `begin` and `end`.
fn out_size(input: usize, w: &Window, i: usize, ceil: bool) -> Result<usize, String> {
    let padded = input + w.begin[i] + w.end[i];
    let extent = w.dilation[i] * (w.kernel[i] - 1) + 1;
    if padded < extent {
        return Err(format!(
            "the window {extent} is larger than the padded input {padded}"
        ));
    }
    let steps = padded - extent;
    let mut out = if ceil {
        steps.div_ceil(w.stride[i])
    } else {
        steps / w.stride[i]
    } + 1;
    // PyTorch's and ONNX Runtime's rule: the last window starts inside the
    // input or the left padding.
    if ceil && (out - 1) * w.stride[i] >= input + w.begin[i] {
        out -= 1;
    }
    Ok(out)
}

/// Per output position of an average pool over the explicitly padded
/// input: the window's area (clipped to the padded input, as nnc divides)
/// over its number of real input elements (as ONNX divides without
/// `count_include_pad`).
fn exclude_pad_factor(
    w: &Window,
    spatial: [usize; 2],
    out: [usize; 2],
) -> Result<Vec<f32>, String> {
    let per_dim = |i: usize| -> Result<Vec<f32>, String> {
        let padded = spatial[i] + w.begin[i] + w.end[i];
        (0..out[i])
            .map(|o| {
                let start = o * w.stride[i];
                let end = (start + w.kernel[i]).min(padded);
                let real = (start..end)
                    .filter(|&p| p >= w.begin[i] && p < w.begin[i] + spatial[i])
                    .count();
                if real == 0 {
                    return Err("a window covers only padding".to_string());
                }
                Ok((end - start) as f32 / real as f32)
            })
            .collect()
    };
    let (rows, cols) = (per_dim(0)?, per_dim(1)?);
    Ok(rows
        .iter()
        .flat_map(|r| cols.iter().map(move |c| r * c))
        .collect())
}

/// The `pad` argument of a window: `None` without padding, `[h, w]` (or
/// one int) when each axis pads both sides equally, else `[top, left,
/// bottom, right]`.
fn padding_arg(w: &Window) -> Option<crate::ast::Expr> {
    if w.begin == w.end {
        (w.begin != [0, 0]).then(|| emit::pair(w.begin))
    } else {
        let sides = [w.begin[0], w.begin[1], w.end[0], w.end[1]];
        Some(emit::ints(sides.map(|p| p as i64)))
    }
}

fn spatial_of(shape: &[usize]) -> Result<[usize; 2], String> {
    match shape {
        [_, _, h, w] => Ok([*h, *w]),
        _ => Err(format!(
            "the input has shape {shape:?}; nnc imports 2-D (rank-4 NCHW) windows only"
        )),
    }
}

impl Converter<'_> {
    /// Pads `x` explicitly by all of the window's pads, filling with
    /// `value`; returns the padded binding and its shape.
    fn pad_explicitly(
        &mut self,
        base: &str,
        x: (String, Vec<usize>),
        w: &Window,
        value: f32,
    ) -> (String, Vec<usize>) {
        if w.begin == [0, 0] && w.end == [0, 0] {
            return x;
        }
        let (path, mut shape) = x;
        let pads = [0, 0, w.begin[0], w.begin[1], 0, 0, w.end[0], w.end[1]];
        shape[2] += w.begin[0] + w.end[0];
        shape[3] += w.begin[1] + w.end[1];
        let mut kw = vec![("pads", emit::ints(pads.map(|p| p as i64)))];
        if value != 0.0 {
            kw.push(("value", emit::float(value)));
        }
        let target = self.helper(base, "pad");
        self.emit(target.clone(), "pad", &[path], kw, shape.clone());
        (target, shape)
    }

    pub(super) fn conv(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let weight = self.required_constant(node, 1, "the weight W")?;
        let bias = self.constant(node, 2, "the bias B")?;
        let [m, cg, kh, kw] = weight.dims[..] else {
            return Err(format!(
                "the weight has shape {:?}; nnc imports 2-D convolutions only",
                weight.dims
            ));
        };
        let spatial = spatial_of(&x.1)?;
        let groups = a.int("group", 1)?;
        let w = window(a, Some([kh, kw]), spatial)?;
        if groups < 1 || x.1[1] % groups as usize != 0 || x.1[1] / groups as usize != cg {
            return Err(format!(
                "`group` {groups} does not fit {} input channels and a weight of shape {:?}",
                x.1[1], weight.dims
            ));
        }
        let owner = owner_of(node.input[1].as_str()).map(str::to_string);
        let target = self.binding(node, owner.as_deref());
        let mut shape = vec![x.1[0], m, 0, 0];
        for i in 0..2 {
            shape[2 + i] = out_size(spatial[i], &w, i, false)?;
        }
        let mut kw_args = vec![
            ("out", emit::int(m as i64)),
            ("kernel", emit::pair([kh, kw])),
        ];
        if w.stride != [1, 1] {
            kw_args.push(("stride", emit::pair(w.stride)));
        }
        if let Some(pad) = padding_arg(&w) {
            kw_args.push(("pad", pad));
        }
        if w.dilation != [1, 1] {
            kw_args.push(("dilation", emit::pair(w.dilation)));
        }
        if groups != 1 {
            kw_args.push(("groups", emit::int(groups)));
        }
        if bias.is_none() {
            kw_args.push(("bias", emit::boolean(false)));
        }
        let dims = weight.dims.clone();
        let values = self.take_f32(weight);
        self.weight(&target, "weight", dims, values);
        if let Some(b) = bias {
            if b.dims != [m] {
                return Err(format!("the bias has shape {:?}, not [{m}]", b.dims));
            }
            self.weight(&target, "bias", vec![m], b.data.to_f32());
        }
        one(self.emit(target, "conv2d", &[x.0], kw_args, shape))
    }

    pub(super) fn conv_transpose(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let weight = self.required_constant(node, 1, "the weight W")?;
        let bias = self.constant(node, 2, "the bias B")?;
        let [c, mg, kh, kw] = weight.dims[..] else {
            return Err(format!(
                "the weight has shape {:?}; nnc imports 2-D transposed convolutions only",
                weight.dims
            ));
        };
        let spatial = spatial_of(&x.1)?;
        if x.1[1] != c {
            return Err(format!(
                "the weight has {} input channels but the input {}",
                c, x.1[1]
            ));
        }
        let groups = a.int("group", 1)?;
        if groups < 1 || c % groups as usize != 0 {
            return Err(format!(
                "`group` {groups} does not divide the {c} input channels"
            ));
        }
        let m = mg * groups as usize;
        let output_padding = match a.ints("output_padding")? {
            None => [0, 0],
            Some(p) if p.len() == 2 && p.iter().all(|&v| (0..=MAX_WINDOW).contains(&v)) => {
                [p[0] as usize, p[1] as usize]
            }
            Some(p) => {
                return Err(format!(
                    "`output_padding` {p:?} must be two non-negative ints"
                ))
            }
        };
        let output_shape = a.ints("output_shape")?;
        // `auto_pad` SAME_* for ConvTranspose means an output of input*stride;
        // read it first and handle the padding here, not as for a conv.
        let auto_pad = a.string("auto_pad", "NOTSET")?;
        let mut w = window(a, Some([kh, kw]), spatial)?;
        let target_size = match (&output_shape, auto_pad.as_str()) {
            (Some(s), _) => {
                let s = &s[s.len().saturating_sub(2)..];
                if s.len() != 2 || s.iter().any(|&v| !(1..=1 << 40).contains(&v)) {
                    return Err(format!(
                        "`output_shape` {output_shape:?} must end in two positive sizes"
                    ));
                }
                Some([s[0] as usize, s[1] as usize])
            }
            (None, "SAME_UPPER" | "SAME_LOWER") => {
                Some([spatial[0] * w.stride[0], spatial[1] * w.stride[1]])
            }
            (None, "NOTSET") => None,
            (None, "VALID") => {
                w.begin = [0, 0];
                w.end = [0, 0];
                None
            }
            (None, other) => return Err(format!("`auto_pad` \"{other}\" is not supported")),
        };
        if let Some(size) = target_size {
            for i in 0..2 {
                let full = w.stride[i] * (spatial[i] - 1)
                    + output_padding[i]
                    + w.dilation[i] * (w.kernel[i] - 1)
                    + 1;
                let total = full.checked_sub(size[i]).ok_or_else(|| {
                    format!(
                        "`output_shape` {} is larger than the full output {full}",
                        size[i]
                    )
                })?;
                let small = total / 2;
                (w.begin[i], w.end[i]) = if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
        }
        // nnc trims `pad` from both ends, then adds `output_padding` at the
        // end. Fewer pads at the end than at the start become more output
        // padding while that stays below the stride; otherwise the conv
        // trims the smaller pad and a crop (a `pad` with negative pads)
        // after it trims the rest.
        let (mut pad, mut extra) = ([0usize; 2], [0usize; 2]);
        let (mut crop_begin, mut crop_end) = ([0usize; 2], [0usize; 2]);
        for i in 0..2 {
            let (b, e) = (w.begin[i], w.end[i]);
            let limit = w.stride[i].max(w.dilation[i]);
            if output_padding[i] >= limit {
                return Err(format!(
                    "output_padding {} must be smaller than stride or dilation",
                    output_padding[i]
                ));
            }
            if e <= b && output_padding[i] + b - e < limit {
                (pad[i], extra[i]) = (b, output_padding[i] + b - e);
            } else {
                pad[i] = b.min(e);
                extra[i] = output_padding[i];
                (crop_begin[i], crop_end[i]) = (b - pad[i], e - pad[i]);
            }
        }
        let mut shape = vec![x.1[0], m, 0, 0];
        for i in 0..2 {
            let full =
                w.stride[i] * (spatial[i] - 1) + w.dilation[i] * (w.kernel[i] - 1) + 1 + extra[i];
            shape[2 + i] = full
                .checked_sub(2 * pad[i] + crop_begin[i] + crop_end[i])
                .filter(|&s| s >= 1)
                .ok_or_else(|| "the pads leave no output".to_string())?
                + crop_begin[i]
                + crop_end[i];
        }
        let owner = owner_of(node.input[1].as_str()).map(str::to_string);
        let target = self.binding(node, owner.as_deref());
        let mut kw_args = vec![
            ("out", emit::int(m as i64)),
            ("kernel", emit::pair([kh, kw])),
        ];
        if w.stride != [1, 1] {
            kw_args.push(("stride", emit::pair(w.stride)));
        }
        if pad != [0, 0] {
            kw_args.push(("pad", emit::pair(pad)));
        }
        if extra != [0, 0] {
            kw_args.push(("output_padding", emit::pair(extra)));
        }
        if w.dilation != [1, 1] {
            kw_args.push(("dilation", emit::pair(w.dilation)));
        }
        if groups != 1 {
            kw_args.push(("groups", emit::int(groups)));
        }
        if bias.is_none() {
            kw_args.push(("bias", emit::boolean(false)));
        }
        let dims = weight.dims.clone();
        let values = self.take_f32(weight);
        self.weight(&target, "weight", dims, values);
        if let Some(b) = bias {
            if b.dims != [m] {
                return Err(format!("the bias has shape {:?}, not [{m}]", b.dims));
            }
            self.weight(&target, "bias", vec![m], b.data.to_f32());
        }
        let y = self.emit(
            target.clone(),
            "conv_transpose2d",
            &[x.0],
            kw_args,
            shape.clone(),
        );
        if crop_begin == [0, 0] && crop_end == [0, 0] {
            return one(y);
        }
        let negative = |v: usize| -(v as i64);
        let pads = [
            0,
            0,
            negative(crop_begin[0]),
            negative(crop_begin[1]),
            0,
            0,
            negative(crop_end[0]),
            negative(crop_end[1]),
        ];
        shape[2] -= crop_begin[0] + crop_end[0];
        shape[3] -= crop_begin[1] + crop_end[1];
        let cropped = self.helper(&target, "crop");
        one(self.emit(
            cropped,
            "pad",
            &[target],
            vec![("pads", emit::ints(pads))],
            shape,
        ))
    }

    pub(super) fn pool(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let max = node.op_type() == "MaxPool";
        // Attributes that later versions added, with the opset of each;
        // before it the attribute is not part of the op (ONNX Runtime
        // rejects it too) and the default holds.
        let added: &[(&str, i64)] = if max {
            &[("storage_order", 8), ("ceil_mode", 10), ("dilations", 10)]
        } else {
            &[
                ("count_include_pad", 7),
                ("ceil_mode", 10),
                ("dilations", 19),
            ]
        };
        for &(name, since) in added {
            if self.opset < since && a.has(name) {
                return Err(format!(
                    "attribute `{name}` is not part of {} before opset {since}",
                    node.op_type()
                ));
            }
        }
        let x = self.dynamic(node, 0)?;
        let spatial = spatial_of(&x.1)?;
        let w = window(a, None, spatial)?;
        let ceil = a.int("ceil_mode", 0)? != 0;
        let count_include_pad = if max {
            false
        } else {
            a.int("count_include_pad", 0)? != 0
        };
        if max {
            // Only the Indices output depends on it, and nnc computes none.
            a.ignore("storage_order");
        } else if w.dilation != [1, 1] {
            return Err("average pooling with dilations is not supported".into());
        }
        let target = self.binding(node, None);
        // The output size ONNX Runtime computes, with the pads as given.
        let mut expected = [0usize; 2];
        for (i, e) in expected.iter_mut().enumerate() {
            *e = out_size(spatial[i], &w, i, ceil)?;
        }
        let callee = if max { "max_pool2d" } else { "avg_pool2d" };
        // nnc's pools share ONNX's output size (with ceil_mode, a last
        // window starting in the end padding is dropped) and both of its
        // divisors, but take at most half the kernel on each side.
        let fits = (0..2).all(|i| w.begin[i].max(w.end[i]) <= w.kernel[i] / 2);
        let mut kw_args = vec![("kernel", emit::pair(w.kernel))];
        if w.stride != w.kernel {
            kw_args.push(("stride", emit::pair(w.stride)));
        }
        if let Some(pad) = padding_arg(&w).filter(|_| fits) {
            kw_args.push(("pad", pad));
        }
        if max && w.dilation != [1, 1] {
            kw_args.push(("dilation", emit::pair(w.dilation)));
        }
        if ceil {
            kw_args.push(("ceil_mode", emit::boolean(true)));
        }
        if fits {
            if !max && !count_include_pad {
                kw_args.push(("count_include_pad", emit::boolean(false)));
            }
            let out = vec![x.1[0], x.1[1], expected[0], expected[1]];
            return one(self.emit(target, callee, &[x.0], kw_args, out));
        }
        // Pads past half the kernel: pool the explicitly padded input, then
        // crop the windows that the padding, now input, lets ceil_mode keep.
        // Average pooling that excludes padding counts the padding (zeros)
        // and rescales each output by its window's area over its count of
        // real elements, a constant of the output position.
        let rescale = !max && !count_include_pad;
        let x = self.pad_explicitly(&target, x, &w, if max { LOWEST } else { 0.0 });
        let unpadded = Window {
            begin: [0, 0],
            end: [0, 0],
            ..w
        };
        let mut shape = x.1.clone();
        for i in 0..2 {
            shape[2 + i] = out_size(x.1[2 + i], &unpadded, i, ceil)?;
        }
        let crop = [
            shape[2] - expected[0].min(shape[2]),
            shape[3] - expected[1].min(shape[3]),
        ];
        let cropping = crop != [0, 0];
        let mut stage = if cropping || rescale {
            self.helper(&target, "pool")
        } else {
            target.clone()
        };
        self.emit(stage.clone(), callee, &[x.0], kw_args, shape.clone());
        let out = vec![shape[0], shape[1], expected[0], expected[1]];
        if cropping {
            let pads = [0, 0, 0, 0, 0, 0, -(crop[0] as i64), -(crop[1] as i64)];
            let name = if rescale {
                self.helper(&target, "crop")
            } else {
                target.clone()
            };
            self.emit(
                name.clone(),
                "pad",
                &[stage],
                vec![("pads", emit::ints(pads))],
                out.clone(),
            );
            stage = name;
        }
        if rescale {
            let factor = exclude_pad_factor(&w, spatial, expected)?;
            let c = Constant {
                dims: vec![1, 1, expected[0], expected[1]],
                data: Data::F32(factor),
            };
            let scale = self.materialize(&format!("{target}.count_scale"), &c);
            self.emit(target.clone(), "mul", &[stage, scale], vec![], out.clone());
            stage = target;
        }
        Ok(vec![
            Some(Val::Dyn {
                path: stage,
                shape: out,
            }),
            None,
        ])
    }

    pub(super) fn global_avg_pool(&mut self, node: &NodeProto) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let [n, c, _, _] = x.1[..] else {
            return Err(format!(
                "the input has shape {:?}; nnc imports rank-4 (NCHW) global pooling only",
                x.1
            ));
        };
        let target = self.binding(node, None);
        one(self.emit(target, "global_avg_pool", &[x.0], vec![], vec![n, c, 1, 1]))
    }
}

impl Converter<'_> {
    /// A 1-D window op (`[N, C, L]` input) as the 2-D op over
    /// `[N, C, 1, L]`: the input is reshaped, a weight `[.., .., k]` read as
    /// `[.., .., 1, k]`, the attributes lifted, and the result reshaped back.
    pub(super) fn window_1d(
        &mut self,
        node: &NodeProto,
        a: &mut Attrs<'_>,
        convert: fn(&mut Self, &NodeProto, &mut Attrs<'_>) -> Outputs,
    ) -> Outputs {
        let Some(Val::Dyn { path, shape }) = self.arg(node, 0)? else {
            return convert(self, node, a);
        };
        let [n, c, l] = shape[..] else {
            return convert(self, node, a);
        };
        let base = self.binding(node, None);
        let lifted = self.helper(&base, "as_2d");
        let dims = [n as i64, c as i64, 1, l as i64];
        let x = self.emit(
            lifted,
            "reshape",
            &[path],
            vec![("shape", emit::ints(dims))],
            vec![n, c, 1, l],
        );
        // Stand the lifted input and weight in for the originals while the
        // 2-D converter runs.
        let mut saved = Vec::new();
        saved.push((
            node.input[0].clone(),
            self.values.insert(node.input[0].clone(), x),
        ));
        if let Some(Some(Val::Const(w))) = node.input.get(1).map(|i| self.value(i)) {
            let mut dims = w.dims.clone();
            if dims.len() == 3 {
                dims.insert(2, 1);
                let lifted = Val::Const(Rc::new(w.reshaped(dims)));
                saved.push((
                    node.input[1].clone(),
                    self.values.insert(node.input[1].clone(), lifted),
                ));
            }
        }
        a.lift_1d();
        let result = convert(self, node, a);
        for (name, old) in saved.into_iter().rev() {
            match old {
                Some(v) => self.values.insert(name, v),
                None => self.values.remove(&name),
            };
        }
        let mut outs = result?;
        if let Some(Some(Val::Dyn { path, shape })) = outs.first().cloned() {
            let [n, m, _, l] = shape[..] else {
                return Err(format!("internal: a 2-D window result of shape {shape:?}"));
            };
            let dims = [n as i64, m as i64, l as i64];
            let y = self.emit(
                base,
                "reshape",
                &[path],
                vec![("shape", emit::ints(dims))],
                vec![n, m, l],
            );
            outs[0] = Some(y);
        }
        Ok(outs)
    }
}
