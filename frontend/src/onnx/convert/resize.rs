//! Resize and Upsample to `interpolate`. The scales or sizes must be
//! constants (they are folded here), the input `[N, C, H, W]`, and only H
//! and W may change.
//!
//! - Resize from opset 11: `coordinate_transformation_mode` (all but
//!   `tf_crop_and_resize`), `nearest_mode`, modes `nearest` and `linear`;
//!   from opset 18 `axes` and `keep_aspect_ratio_policy` (`antialias` must
//!   be 0). `cubic` is rejected.
//! - Resize at opset 10 and Upsample (opsets 7 to 9) have only scales,
//!   `asymmetric` coordinates and, for nearest sampling, ONNX Runtime's
//!   old rounding: down along a growing axis, up along a shrinking one.
//!
//! The `.nn` call states what ONNX Runtime computes: `scale_factor` when
//! the model gives scales (the output size is `floor(scale * size)` in
//! both), `size` when it gives sizes, and both when
//! `keep_aspect_ratio_policy` makes the scale differ from the ratio of the
//! sizes.

use super::attrs::Attrs;
use super::{axis, int_list, one, Converter, Outputs, Val};
use crate::onnx::constant::Constant;
use crate::onnx::emit;
use crate::onnx::proto::NodeProto;
use std::rc::Rc;

/// What the node resizes to, per dim of the input.
struct Target {
    sizes: [usize; 4],
    scales: [f32; 4],
    /// Given as scales (else as sizes).
    by_scales: bool,
}

/// `interpolate`'s rounding and coordinate attributes for an ONNX node.
struct Sampling {
    bilinear: bool,
    /// ONNX's `coordinate_transformation_mode`, which `.nn` spells alike.
    coordinate: &'static str,
    /// ONNX's `nearest_mode`, likewise (nearest sampling only).
    rounding: &'static str,
}

const COORDINATES: &[&str] = &[
    "asymmetric",
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "tf_half_pixel_for_nn",
    "half_pixel_symmetric",
];

const ROUNDINGS: &[&str] = &["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"];

impl Converter<'_> {
    pub(super) fn resize(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        if self.opset < 11 {
            return self.resize_by_scales(node, a);
        }
        let (path, shape) = self.dynamic(node, 0)?;
        let bilinear = linear_mode(a)?;
        let coordinate = a.string("coordinate_transformation_mode", "half_pixel")?;
        let coordinate = find(COORDINATES, &coordinate).ok_or_else(|| {
            format!(
                "coordinate_transformation_mode \"{coordinate}\" is not supported (nnc has {})",
                COORDINATES.join(", ")
            )
        })?;
        let rounding = a.string("nearest_mode", "round_prefer_floor")?;
        let rounding = find(ROUNDINGS, &rounding)
            .ok_or_else(|| format!("nearest_mode \"{rounding}\" is not supported"))?;
        // Read by cubic sampling and `tf_crop_and_resize` only, which are
        // rejected; the roi input likewise.
        a.ignore("cubic_coeff_a");
        a.ignore("extrapolation_value");
        if a.int("exclude_outside", 0)? != 0 {
            return Err(
                "exclude_outside=1 is for cubic sampling, which nnc does not support".into(),
            );
        }
        if a.int("antialias", 0)? != 0 {
            return Err("antialias=1 is not supported".into());
        }
        let rank = shape.len();
        let axes = match a.ints("axes")? {
            None => (0..rank).collect(),
            Some(axes) => {
                let axes = axes
                    .iter()
                    .map(|&x| axis(x, rank, "axis"))
                    .collect::<Result<Vec<_>, _>>()?;
                if (1..axes.len()).any(|i| axes[..i].contains(&axes[i])) {
                    return Err(format!("axes {axes:?} repeat an axis"));
                }
                axes
            }
        };
        let policy = a.string("keep_aspect_ratio_policy", "stretch")?;
        let shape4 = image(&shape)?;
        let scales = self.nonempty(node, 2, "the scales")?;
        let sizes = self.nonempty(node, 3, "the sizes")?;
        let target = match (scales, sizes) {
            (Some(_), Some(_)) => return Err("both scales and sizes are given".into()),
            (None, None) => return Err("neither scales nor sizes is given".into()),
            (Some(scales), None) => by_scales(shape4, &spread(&scales.data.to_f32(), &axes, 1.0)?)?,
            (None, Some(sizes)) => {
                let sizes = int_list(&sizes);
                let sizes = spread(&sizes, &axes, -1)?;
                by_sizes(shape4, &sizes, &axes, &policy)?
            }
        };
        let sampling = Sampling {
            bilinear,
            coordinate,
            rounding,
        };
        self.interpolate(node, path, shape4, &target, &sampling)
    }

    pub(super) fn upsample(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        if self.opset >= 10 {
            return Err("Upsample is deprecated from opset 10 on; exporters write Resize".into());
        }
        self.resize_by_scales(node, a)
    }

    /// Resize at opset 10 and Upsample: scales only (an attribute before
    /// opset 9, the second input from it), asymmetric coordinates.
    fn resize_by_scales(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let (path, shape) = self.dynamic(node, 0)?;
        let bilinear = linear_mode(a)?;
        let scales = if self.opset < 9 {
            a.floats("scales")?
                .ok_or("the scales attribute is required")?
        } else {
            self.required_constant(node, 1, "the scales")?.data.to_f32()
        };
        let shape4 = image(&shape)?;
        let all = (0..shape.len()).collect::<Vec<_>>();
        let scales = spread(&scales, &all, 1.0)?;
        if node.op_type() == "Upsample" && scales.iter().any(|&s| s < 1.0) {
            return Err(format!("Upsample scales {scales:?} must be at least 1"));
        }
        let target = by_scales(shape4, &scales)?;
        // ONNX Runtime's rounding before `nearest_mode` existed: truncation
        // (the coordinate is not negative) where the axis grows, ceil where
        // it shrinks; an axis of scale 1 is copied either way.
        let grows = target.scales[2..].iter().any(|&s| s > 1.0);
        let shrinks = target.scales[2..].iter().any(|&s| s < 1.0);
        let rounding = match (grows, shrinks) {
            (true, true) if !bilinear => {
                return Err(format!(
                    "nearest sampling with scales {scales:?} rounds down along the growing axis and up along the shrinking one; nnc rounds both axes one way"
                ))
            }
            (_, true) => "ceil",
            _ => "floor",
        };
        let sampling = Sampling {
            bilinear,
            coordinate: "asymmetric",
            rounding,
        };
        self.interpolate(node, path, shape4, &target, &sampling)
    }

    /// Operand `i` as a constant, `None` when absent or empty (exporters
    /// write an empty `scales` beside `sizes`).
    fn nonempty(
        &self,
        node: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Option<Rc<Constant>>, String> {
        Ok(self.constant(node, i, what)?.filter(|c| c.data.len() > 0))
    }

    /// Writes the `interpolate` call, or nothing when H and W are kept.
    fn interpolate(
        &mut self,
        node: &NodeProto,
        path: String,
        shape: [usize; 4],
        t: &Target,
        s: &Sampling,
    ) -> Outputs {
        for d in 0..2 {
            // A dim of 1 reads its one element at any scale.
            if t.sizes[d] != shape[d] || (t.scales[d] != 1.0 && shape[d] != 1) {
                return Err(format!(
                    "only H and W (the last two dims) can be resized; the {} change dim {d} of {:?}",
                    if t.by_scales { "scales" } else { "sizes" },
                    shape
                ));
            }
        }
        let size = [t.sizes[2], t.sizes[3]];
        let scale = [t.scales[2], t.scales[3]];
        if size == [shape[2], shape[3]] && scale == [1.0, 1.0] {
            return one(Val::Dyn {
                path,
                shape: shape.to_vec(),
            });
        }
        let ratio = [0, 1].map(|i| size[i] as f32 / shape[2 + i] as f32);
        let mut kw = Vec::new();
        if !t.by_scales {
            kw.push(("size", emit::pair(size)));
        }
        if t.by_scales || scale != ratio {
            kw.push(("scale_factor", emit::float_pair(scale)));
        }
        let default = if s.bilinear {
            kw.push(("mode", emit::string("bilinear")));
            "pytorch_half_pixel"
        } else {
            "asymmetric"
        };
        if s.coordinate != default {
            kw.push(("coordinate", emit::string(s.coordinate)));
        }
        if !s.bilinear && s.rounding != "floor" {
            kw.push(("nearest", emit::string(s.rounding)));
        }
        let out = vec![shape[0], shape[1], size[0], size[1]];
        let target = self.binding(node, None);
        one(self.emit(target, "interpolate", &[path], kw, out))
    }
}

/// Whether the `mode` attribute asks for linear sampling (else nearest).
fn linear_mode(a: &mut Attrs<'_>) -> Result<bool, String> {
    match a.string("mode", "nearest")?.as_str() {
        "nearest" => Ok(false),
        "linear" => Ok(true),
        other => Err(format!(
            "mode \"{other}\" is not supported (nearest and linear are)"
        )),
    }
}

fn find(names: &[&'static str], name: &str) -> Option<&'static str> {
    names.iter().copied().find(|n| *n == name)
}

/// The input as `[N, C, H, W]`.
fn image(shape: &[usize]) -> Result<[usize; 4], String> {
    match *shape {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(format!(
            "only [N, C, H, W] inputs can be resized, not {shape:?}"
        )),
    }
}

/// One value per dim from one per axis in `axes`; `fill` elsewhere.
fn spread<T: Copy>(values: &[T], axes: &[usize], fill: T) -> Result<[T; 4], String> {
    if values.len() != axes.len() {
        return Err(format!(
            "{} scales or sizes given for {} axes",
            values.len(),
            axes.len()
        ));
    }
    let mut all = [fill; 4];
    for (&v, &ax) in values.iter().zip(axes) {
        match all.get_mut(ax) {
            Some(slot) => *slot = v,
            None => return Err(format!("axis {ax} is out of range")),
        }
    }
    Ok(all)
}

/// Sizes from scales as ONNX Runtime computes them: `floor` of the product
/// rounded to `f32`.
fn by_scales(shape: [usize; 4], scales: &[f32; 4]) -> Result<Target, String> {
    let mut sizes = [0; 4];
    for d in 0..4 {
        let product = scales[d] * shape[d] as f32;
        if !(scales[d] > 0.0 && product.is_finite() && product >= 1.0) {
            return Err(format!(
                "scale {} of dim {d} (size {}) gives no output elements, or too many",
                scales[d], shape[d]
            ));
        }
        sizes[d] = product.floor() as usize;
    }
    Ok(Target {
        sizes,
        scales: *scales,
        by_scales: true,
    })
}

/// Scales from sizes (`size / input` in `f32`), with
/// `keep_aspect_ratio_policy` applied over `axes` as ONNX Runtime does:
/// one scale for them all, the smallest (`not_larger`) or largest
/// (`not_smaller`), and sizes rounded from it. `-1` marks a size to keep.
fn by_sizes(
    shape: [usize; 4],
    sizes: &[i64; 4],
    axes: &[usize],
    policy: &str,
) -> Result<Target, String> {
    let mut out = [0; 4];
    let mut scales = [1.0f32; 4];
    for d in 0..4 {
        out[d] = match sizes[d] {
            -1 => shape[d],
            s if s >= 1 => s as usize,
            s => return Err(format!("size {s} of dim {d} is not positive")),
        };
        scales[d] = out[d] as f32 / shape[d] as f32;
    }
    let pick = match policy {
        "stretch" => None,
        "not_larger" => Some(f32::min as fn(f32, f32) -> f32),
        "not_smaller" => Some(f32::max as fn(f32, f32) -> f32),
        other => {
            return Err(format!(
                "keep_aspect_ratio_policy \"{other}\" is not supported"
            ))
        }
    };
    if let Some(pick) = pick {
        let scale = axes
            .iter()
            .map(|&ax| scales[ax])
            .reduce(pick)
            .ok_or("keep_aspect_ratio_policy needs at least one axis")?;
        for d in 0..4 {
            if axes.contains(&d) {
                scales[d] = scale;
                out[d] = (scale * shape[d] as f32).round() as usize;
            } else {
                scales[d] = 1.0;
                out[d] = shape[d];
            }
        }
    }
    if out.contains(&0) {
        return Err(format!("the sizes {out:?} have a zero dim"));
    }
    Ok(Target {
        sizes: out,
        scales,
        by_scales: false,
    })
}
