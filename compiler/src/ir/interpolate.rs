//! `interpolate`: resizing the last two dims of `[N, C, H, W]` by nearest
//! or bilinear sampling, with the coordinate transforms of ONNX `Resize`
//! (which cover PyTorch's `F.interpolate` and what exporters write).
//!
//! Along each of the two axes, output index `o` is mapped back to a
//! coordinate in the input by [`InterpolateAttrs::source_coordinate`], in
//! `f32` with ONNX Runtime's order of operations, so that nearest sampling
//! picks the same pixel ONNX Runtime does even where the coordinate lands
//! exactly between two. The interpreter and the compiled kernel both read
//! the coordinate from here; each rounds or weights it on its own.

/// How an output index maps back to a coordinate in the input (ONNX's
/// `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinateTransform {
    /// `o / scale`.
    Asymmetric,
    /// `(o + 0.5) / scale - 0.5`: pixel centres line up.
    HalfPixel,
    /// `half_pixel`, except that an output of length 1 reads coordinate 0.
    PytorchHalfPixel,
    /// `o * (in - 1) / (out - 1)`: the corner pixels line up (0 when
    /// `out = 1`).
    AlignCorners,
    /// `(o + 0.5) / scale`.
    TfHalfPixelForNn,
    /// `half_pixel` shifted so that the sampled span is centred on the
    /// input when the output size was rounded (ONNX opset 19).
    HalfPixelSymmetric,
}

impl CoordinateTransform {
    /// Every transform, in the order the docs list them.
    pub const ALL: [CoordinateTransform; 6] = [
        CoordinateTransform::Asymmetric,
        CoordinateTransform::HalfPixel,
        CoordinateTransform::PytorchHalfPixel,
        CoordinateTransform::AlignCorners,
        CoordinateTransform::TfHalfPixelForNn,
        CoordinateTransform::HalfPixelSymmetric,
    ];

    /// The spelling in `.nn` files and IR dumps (ONNX's).
    pub fn name(self) -> &'static str {
        match self {
            CoordinateTransform::Asymmetric => "asymmetric",
            CoordinateTransform::HalfPixel => "half_pixel",
            CoordinateTransform::PytorchHalfPixel => "pytorch_half_pixel",
            CoordinateTransform::AlignCorners => "align_corners",
            CoordinateTransform::TfHalfPixelForNn => "tf_half_pixel_for_nn",
            CoordinateTransform::HalfPixelSymmetric => "half_pixel_symmetric",
        }
    }

    /// The transform called `name`.
    pub fn from_name(name: &str) -> Option<CoordinateTransform> {
        CoordinateTransform::ALL
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// How nearest sampling rounds a coordinate to an input index (ONNX's
/// `nearest_mode`). The index is then clamped to the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRounding {
    /// To the nearest integer, halves down.
    RoundPreferFloor,
    /// To the nearest integer, halves away from zero.
    RoundPreferCeil,
    Floor,
    Ceil,
}

impl NearestRounding {
    /// Every rounding, in the order the docs list them.
    pub const ALL: [NearestRounding; 4] = [
        NearestRounding::RoundPreferFloor,
        NearestRounding::RoundPreferCeil,
        NearestRounding::Floor,
        NearestRounding::Ceil,
    ];

    /// The spelling in `.nn` files and IR dumps (ONNX's).
    pub fn name(self) -> &'static str {
        match self {
            NearestRounding::RoundPreferFloor => "round_prefer_floor",
            NearestRounding::RoundPreferCeil => "round_prefer_ceil",
            NearestRounding::Floor => "floor",
            NearestRounding::Ceil => "ceil",
        }
    }

    /// The rounding called `name`.
    pub fn from_name(name: &str) -> Option<NearestRounding> {
        NearestRounding::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// How `interpolate` samples the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpolateMode {
    /// The input pixel at the rounded coordinate.
    Nearest(NearestRounding),
    /// The two nearest pixels along each axis, weighted by distance.
    Bilinear,
}

impl InterpolateMode {
    /// The spelling of `mode=` in `.nn` files and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            InterpolateMode::Nearest(_) => "nearest",
            InterpolateMode::Bilinear => "bilinear",
        }
    }
}

/// `interpolate`: `x [N, C, H, W]` to `[N, C, size[0], size[1]]`; along
/// axis `i` (0 for H, 1 for W), output index `o` samples the input at
/// [`InterpolateAttrs::source_coordinate`].
#[derive(Clone, Debug, PartialEq)]
pub struct InterpolateAttrs {
    /// The output's `[H, W]`, each at least 1.
    pub size: [usize; 2],
    /// The scale the coordinate transforms divide by, positive and finite:
    /// the `scale_factor` as written, or `size / input size` in `f32` when
    /// only `size` is. ONNX divides by the given scale, not by the ratio of
    /// the sizes (which `floor` has rounded), so both are kept.
    pub scale: [f32; 2],
    pub mode: InterpolateMode,
    pub coordinate: CoordinateTransform,
}

impl InterpolateAttrs {
    /// The coordinate in an input of length `input` that output index `o`
    /// along `axis` samples, before rounding or clamping. A scale of
    /// exactly 1 maps every index to itself, whatever the transform (ONNX
    /// Runtime skips the transform there, which matters for
    /// `tf_half_pixel_for_nn`).
    pub fn source_coordinate(&self, axis: usize, o: usize, input: usize) -> f32 {
        let (scale, out) = (self.scale[axis], self.size[axis]);
        let x = o as f32;
        if scale == 1.0 {
            return x;
        }
        match self.coordinate {
            CoordinateTransform::Asymmetric => x / scale,
            CoordinateTransform::HalfPixel => (x + 0.5) / scale - 0.5,
            CoordinateTransform::PytorchHalfPixel if out > 1 => (x + 0.5) / scale - 0.5,
            CoordinateTransform::PytorchHalfPixel => 0.0,
            CoordinateTransform::AlignCorners if out > 1 => {
                x * (input as f32 - 1.0) / (out as f32 - 1.0)
            }
            CoordinateTransform::AlignCorners => 0.0,
            CoordinateTransform::TfHalfPixelForNn => (x + 0.5) / scale,
            CoordinateTransform::HalfPixelSymmetric => {
                // ONNX Runtime's mix of f32 and f64, step by step.
                let output_width = scale * input as f32;
                let adjustment = out as f32 / output_width;
                let center = input as f32 / 2.0;
                let offset = center * (1.0 - adjustment);
                (f64::from(offset) + (f64::from(x) + 0.5) / f64::from(scale) - 0.5) as f32
            }
        }
    }
}

/// The output length of an axis of length `input` resized by `scale`:
/// `floor(scale * input)` with the product rounded to `f32` first (ONNX
/// Runtime's), or `None` when that is not a finite length of at least 1.
pub fn scaled_length(scale: f32, input: usize) -> Option<usize> {
    let product = scale * input as f32;
    (product.is_finite() && product >= 1.0).then(|| product.floor() as usize)
}

/// The scale of an axis resized from `input` to `output`: `output / input`
/// in `f32`, as ONNX Runtime derives it from `sizes`.
pub fn length_ratio(output: usize, input: usize) -> f32 {
    output as f32 / input.max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(coordinate: CoordinateTransform, size: usize, scale: f32) -> InterpolateAttrs {
        InterpolateAttrs {
            size: [size, size],
            scale: [scale, scale],
            mode: InterpolateMode::Bilinear,
            coordinate,
        }
    }

    /// Each transform at hand-computed points: input 4, output 8 (scale
    /// 2), index 3.
    #[test]
    fn coordinates_follow_the_documented_formulas() {
        let at = |c, size, scale, o, input| attrs(c, size, scale).source_coordinate(0, o, input);
        assert_eq!(at(CoordinateTransform::Asymmetric, 8, 2.0, 3, 4), 1.5);
        assert_eq!(at(CoordinateTransform::HalfPixel, 8, 2.0, 3, 4), 1.25);
        assert_eq!(
            at(CoordinateTransform::PytorchHalfPixel, 8, 2.0, 3, 4),
            1.25
        );
        assert_eq!(
            at(CoordinateTransform::TfHalfPixelForNn, 8, 2.0, 3, 4),
            1.75
        );
        // 3 * (4 - 1) / (8 - 1) = 9/7.
        assert_eq!(
            at(CoordinateTransform::AlignCorners, 8, 2.0, 3, 4),
            9.0 / 7.0
        );
        // A full-size output: half_pixel_symmetric is half_pixel.
        assert_eq!(
            at(CoordinateTransform::HalfPixelSymmetric, 8, 2.0, 3, 4),
            1.25
        );
        // Output 1 of input 4 at scale 0.25: half_pixel reads 1.5, the
        // PyTorch and align-corners forms read 0.
        assert_eq!(at(CoordinateTransform::HalfPixel, 1, 0.25, 0, 4), 1.5);
        assert_eq!(
            at(CoordinateTransform::PytorchHalfPixel, 1, 0.25, 0, 4),
            0.0
        );
        assert_eq!(at(CoordinateTransform::AlignCorners, 1, 0.25, 0, 4), 0.0);
        // Input 5 scaled by 0.5 gives 2 outputs (floor 2.5): the symmetric
        // form shifts half_pixel's (0.5, 2.5) by 5/2 * (1 - 2/2.5) = 0.5.
        let symmetric = |o| at(CoordinateTransform::HalfPixelSymmetric, 2, 0.5, o, 5);
        assert!((symmetric(0) - 1.0).abs() < 1e-6, "{}", symmetric(0));
        assert!((symmetric(1) - 3.0).abs() < 1e-6, "{}", symmetric(1));
        // Scale 1 is the identity, even for tf_half_pixel_for_nn.
        assert_eq!(at(CoordinateTransform::TfHalfPixelForNn, 4, 1.0, 2, 4), 2.0);
    }

    #[test]
    fn lengths_round_the_product_to_f32_then_down() {
        assert_eq!(scaled_length(2.0, 5), Some(10));
        assert_eq!(scaled_length(1.7, 5), Some(8));
        // 0.7f32 is just below 0.7, but 10 * 0.7f32 rounds to 7.0 in f32.
        assert_eq!(scaled_length(0.7, 10), Some(7));
        assert_eq!(scaled_length(0.1, 5), None);
        assert_eq!(scaled_length(f32::MAX, 5), None);
        assert_eq!(length_ratio(3, 4), 0.75);
    }

    #[test]
    fn names_round_trip() {
        for c in CoordinateTransform::ALL {
            assert_eq!(CoordinateTransform::from_name(c.name()), Some(c));
        }
        for r in NearestRounding::ALL {
            assert_eq!(NearestRounding::from_name(r.name()), Some(r));
        }
    }
}
