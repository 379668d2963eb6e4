//! The `interpolate` builder: the output by `size`, `scale_factor` or both,
//! the sampling `mode`, and the coordinate transform and nearest rounding,
//! whose defaults are PyTorch's: nearest is `asymmetric` with `floor`,
//! bilinear `pytorch_half_pixel`, or `align_corners` with
//! `align_corners=true`.

use super::{AttrKind, AttrReader};
use crate::ir::interpolate::{length_ratio, scaled_length};
use crate::ir::{
    CoordinateTransform, InterpolateAttrs, InterpolateMode, NearestRounding, Op, TensorType,
};
use crate::lower::value::Value;
use nnc_frontend::Diagnostic;

const AXES: [&str; 2] = ["height", "width"];

/// Builds `interpolate` on `x` (its type, when known).
pub(super) fn build(r: &mut AttrReader<'_>, x: Option<&TensorType>) -> Op {
    let given = |r: &AttrReader<'_>, name: &str| r.args.iter().any(|a| a.name == name);
    let size_given = given(r, "size");
    let size = r.pair("size", Some([1, 1]), 1);
    let scale_given = given(r, "scale_factor");
    let scale = scale_pair(r);
    let bilinear = r.choice("mode", &["nearest", "bilinear"], "nearest") == "bilinear";

    let align_given = given(r, "align_corners");
    let align_corners = r.bool("align_corners", false);
    let coordinate_given = given(r, "coordinate");
    let default = match (bilinear, align_corners) {
        (false, _) => CoordinateTransform::Asymmetric,
        (true, false) => CoordinateTransform::PytorchHalfPixel,
        (true, true) => CoordinateTransform::AlignCorners,
    };
    let names = CoordinateTransform::ALL.map(CoordinateTransform::name);
    let coordinate = CoordinateTransform::from_name(r.choice("coordinate", &names, default.name()))
        .unwrap_or(default);
    if align_given && !bilinear {
        let span = r.span_of("align_corners");
        r.errors.push(
            Diagnostic::error("`align_corners` is only for `mode=\"bilinear\"`")
                .with_primary(span, "nearest sampling has no corners to align")
                .with_help("remove it; `coordinate=` chooses how nearest sampling maps pixels"),
        );
    } else if align_given && coordinate_given {
        let span = r.span_of("align_corners");
        r.errors.push(
            Diagnostic::error("`interpolate` takes `align_corners` or `coordinate`, not both")
                .with_primary(span, "conflicts with `coordinate`")
                .with_secondary(r.span_of("coordinate"), "the coordinate transform")
                .with_help("`align_corners=true` is `coordinate=\"align_corners\"`"),
        );
    }

    let rounding_given = given(r, "nearest");
    let names = NearestRounding::ALL.map(NearestRounding::name);
    let rounding = NearestRounding::from_name(r.choice("nearest", &names, "floor"))
        .unwrap_or(NearestRounding::Floor);
    if rounding_given && bilinear {
        let span = r.span_of("nearest");
        r.errors.push(
            Diagnostic::error("`nearest` rounding is only for `mode=\"nearest\"`")
                .with_primary(span, "bilinear sampling does not round")
                .with_help("remove it, or sample with `mode=\"nearest\"`"),
        );
    }
    let mode = if bilinear {
        InterpolateMode::Bilinear
    } else {
        InterpolateMode::Nearest(rounding)
    };

    if !size_given && !scale_given {
        // Listed as required so that the op's signature asks for it; `size`
        // would do as well.
        r.missing.push("scale_factor");
        r.errors.push(
            Diagnostic::error("`interpolate` needs `size` or `scale_factor`")
                .with_primary(r.call_span, "no output size")
                .with_help("add `scale_factor=2` to double H and W, or `size=[h, w]`"),
        );
    }
    // Shape inference reports an input that is not [N, C, H, W]; until
    // then any size will do.
    let input = x
        .filter(|x| x.rank() == 4)
        .map(|x| [x.shape[2], x.shape[3]]);
    let (size, scale) = match (input, size_given, scale) {
        (Some(input), false, Some(scale)) => (scaled_size(r, scale, input), scale),
        (Some(input), true, None) => (size, [0, 1].map(|i| length_ratio(size[i], input[i]))),
        (_, _, Some(scale)) => (size, scale),
        (_, _, None) => (size, [1.0, 1.0]),
    };
    Op::Interpolate(InterpolateAttrs {
        size,
        scale,
        mode,
        coordinate,
    })
}

/// `scale_factor`: a positive number for both axes or a list of two.
fn scale_pair(r: &mut AttrReader<'_>) -> Option<[f32; 2]> {
    let arg = r.get("scale_factor", AttrKind::Scales)?;
    let number = |v: &Value| match v {
        Value::Float(f) => Some(*f as f32),
        Value::Int(i) => Some(*i as f32),
        _ => None,
    };
    let pair = match &arg.value {
        Value::List(items) => match items.as_slice() {
            [h, w] => number(h).zip(number(w)).map(|(h, w)| [h, w]),
            _ => None,
        },
        v => number(v).map(|s| [s, s]),
    };
    match pair {
        None => {
            r.type_error(arg, "a number or a list of 2 numbers");
            None
        }
        Some(p) if p.iter().all(|s| s.is_finite() && *s > 0.0) => Some(p),
        Some(_) => {
            r.range_error(arg, "positive");
            None
        }
    }
}

/// The output size `scale` gives an `input` of `[H, W]`, or `[1, 1]` with an
/// error at `scale_factor` when an axis would be empty or too long.
fn scaled_size(r: &mut AttrReader<'_>, scale: [f32; 2], input: [usize; 2]) -> [usize; 2] {
    let mut size = [1, 1];
    for i in 0..2 {
        match scaled_length(scale[i], input[i]) {
            Some(len) => size[i] = len,
            None => {
                let (axis, s, len) = (AXES[i], scale[i], input[i]);
                let product = s * len as f32;
                let (message, label) = if product.is_finite() {
                    (
                        format!("`interpolate` scale_factor {s:?} leaves an input {axis} of {len} with no output {axis}"),
                        format!("floor({s:?} * {len}) is 0"),
                    )
                } else {
                    (
                        format!(
                            "`interpolate` scale_factor {s:?} makes the output {axis} too large"
                        ),
                        format!("{s:?} * {len} overflows"),
                    )
                };
                let span = r.span_of("scale_factor");
                r.errors
                    .push(Diagnostic::error(message).with_primary(span, label));
            }
        }
    }
    size
}
