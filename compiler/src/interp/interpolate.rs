//! `interpolate` on `[N, C, H, W]`: every output pixel computed on its own
//! from its two source coordinates, as ONNX Runtime's `Resize` does.

use nnc_runtime::Tensor;

use super::check::{dims4, positive_pair};
use super::error::{operands, InterpError};
use crate::ir::{InterpolateAttrs, InterpolateMode, NearestRounding};

/// `interpolate`: output pixel `(oy, ox)` samples the input at the source
/// coordinates of `oy` along H and `ox` along W.
///
/// - Nearest: each coordinate is rounded by the mode's rule and clamped to
///   the input.
/// - Bilinear: each coordinate is clamped to `[0, len - 1]`; with `i` its
///   integer part and `d` its distance from `i`, the pixels `i` and
///   `min(i + 1, len - 1)` get the weights `1 - d` and `d` (both `1/2`
///   when they are the same pixel, the last). The pixel is the sum of the
///   four products of the row and column weights.
pub fn interpolate(x: &Tensor, a: &InterpolateAttrs) -> Result<Tensor, InterpError> {
    const OP: &str = "interpolate";
    let [n, c, h, w] = dims4(OP, "input", x)?;
    positive_pair(OP, "output size", a.size)?;
    positive_pair(OP, "input size", [h, w])?;
    if let Some(bad) = a.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(operands(
            OP,
            format!("scale {bad:?} is not a positive number"),
        ));
    }
    let [oh, ow] = a.size;
    let mut out = Tensor::zeros(vec![n, c, oh, ow])?;
    for (p, plane) in out.data_mut().chunks_exact_mut(oh * ow).enumerate() {
        let input = &x.data()[p * h * w..][..h * w];
        for oy in 0..oh {
            let cy = a.source_coordinate(0, oy, h);
            for ox in 0..ow {
                let cx = a.source_coordinate(1, ox, w);
                plane[oy * ow + ox] = match a.mode {
                    InterpolateMode::Nearest(rounding) => {
                        input[nearest(rounding, cy, h) * w + nearest(rounding, cx, w)]
                    }
                    InterpolateMode::Bilinear => {
                        let [(y1, wy1), (y2, wy2)] = linear(cy, h);
                        let [(x1, wx1), (x2, wx2)] = linear(cx, w);
                        let at = |y: usize, x: usize| f64::from(input[y * w + x]);
                        let sum = f64::from(wy1 * wx1) * at(y1, x1)
                            + f64::from(wy1 * wx2) * at(y1, x2)
                            + f64::from(wy2 * wx1) * at(y2, x1)
                            + f64::from(wy2 * wx2) * at(y2, x2);
                        sum as f32
                    }
                };
            }
        }
    }
    Ok(out)
}

/// The index nearest sampling reads for coordinate `x` in an axis of
/// `len`: rounded by `rounding` (ONNX Runtime's rules, halves compared in
/// `f32`), then clamped into the axis.
fn nearest(rounding: NearestRounding, x: f32, len: usize) -> usize {
    let rounded = match rounding {
        NearestRounding::RoundPreferFloor if x == x.trunc() + 0.5 => x.floor(),
        NearestRounding::RoundPreferFloor | NearestRounding::RoundPreferCeil => x.round(),
        NearestRounding::Floor => x.floor(),
        NearestRounding::Ceil => x.ceil(),
    };
    if rounded >= (len - 1) as f32 {
        len - 1
    } else if rounded > 0.0 {
        rounded as usize
    } else {
        0
    }
}

/// The two pixels bilinear sampling reads for coordinate `x` in an axis
/// of `len`, each with its weight, computed in `f32` as ONNX Runtime does.
fn linear(x: f32, len: usize) -> [(usize, f32); 2] {
    let last = (len - 1) as f32;
    let x = x.clamp(0.0, last);
    let low = (x as usize).min(len - 1);
    let high = (low + 1).min(len - 1);
    if low == high {
        return [(low, 0.5), (high, 0.5)];
    }
    // The weight of a pixel is the distance to the other one.
    [
        (low, (x - high as f32).abs()),
        (high, (x - low as f32).abs()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_rules_at_halves() {
        use NearestRounding::*;
        assert_eq!(nearest(RoundPreferFloor, 1.5, 4), 1);
        assert_eq!(nearest(RoundPreferCeil, 1.5, 4), 2);
        assert_eq!(nearest(RoundPreferFloor, 1.6, 4), 2);
        assert_eq!(nearest(Floor, 1.9, 4), 1);
        assert_eq!(nearest(Ceil, 1.1, 4), 2);
        // Clamped at both ends.
        assert_eq!(nearest(RoundPreferCeil, -0.5, 4), 0);
        assert_eq!(nearest(Ceil, 3.2, 4), 3);
    }

    #[test]
    fn linear_taps_weigh_by_distance_and_clamp() {
        assert_eq!(linear(1.25, 4), [(1, 0.75), (2, 0.25)]);
        assert_eq!(linear(-0.25, 4), [(0, 1.0), (1, 0.0)]);
        assert_eq!(linear(3.5, 4), [(3, 0.5), (3, 0.5)]);
    }
}
