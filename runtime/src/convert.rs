//! Decoding little-endian float buffers of several widths into `f32`.
//!
//! Weights files store raw bytes with no alignment guarantee, so every
//! decoder reads byte chunks instead of reinterpreting the buffer in place.

/// The float encodings nnc converts to `f32` when loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatEncoding {
    /// IEEE binary16.
    F16,
    /// bfloat16: the top 16 bits of an IEEE binary32.
    Bf16,
    /// IEEE binary32.
    F32,
    /// IEEE binary64, rounded to the nearest `f32` (out-of-range values
    /// become infinities).
    F64,
}

impl FloatEncoding {
    /// Bytes per element.
    pub(crate) fn width(self) -> usize {
        match self {
            FloatEncoding::F16 | FloatEncoding::Bf16 => 2,
            FloatEncoding::F32 => 4,
            FloatEncoding::F64 => 8,
        }
    }
}

/// Decodes a little-endian buffer into `f32` values. Trailing bytes that do
/// not make a whole element are ignored; callers check lengths beforehand.
pub(crate) fn decode_le(bytes: &[u8], encoding: FloatEncoding) -> Vec<f32> {
    let chunks = bytes.chunks_exact(encoding.width());
    match encoding {
        FloatEncoding::F16 => chunks.map(|c| f16_to_f32(le_bits(c) as u16)).collect(),
        FloatEncoding::Bf16 => chunks
            .map(|c| f32::from_bits((le_bits(c) as u32) << 16))
            .collect(),
        // The common case, written so that it compiles to a plain copy.
        FloatEncoding::F32 => chunks
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        FloatEncoding::F64 => chunks.map(|c| f64::from_bits(le_bits(c)) as f32).collect(),
    }
}

/// Assembles up to eight little-endian bytes into an integer.
fn le_bits(chunk: &[u8]) -> u64 {
    chunk
        .iter()
        .rev()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte))
}

/// Converts IEEE binary16 bits to `f32`. The conversion is exact: every
/// binary16 value, subnormals included, is representable in binary32.
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x03ff);
    match exponent {
        0 => {
            // Zero or subnormal: the value is mantissa * 2^-24, which is exact
            // in f32 because the mantissa has only 10 bits.
            let magnitude = mantissa as f32 * f32::from_bits(0x3380_0000);
            f32::from_bits(sign | magnitude.to_bits())
        }
        // Infinity or NaN, keeping the NaN payload.
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        // Normal: rebias the exponent from 15 to 127.
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        // The smallest subnormal is 2^-24.
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn decodes_every_width() {
        assert_eq!(
            decode_le(&[0x00, 0x3c, 0x00, 0xc0], FloatEncoding::F16),
            [1.0, -2.0]
        );
        assert_eq!(
            decode_le(&[0x80, 0x3f, 0x00, 0xc0], FloatEncoding::Bf16),
            [1.0, -2.0]
        );
        assert_eq!(
            decode_le(&[0x00, 0x00, 0x80, 0x3f], FloatEncoding::F32),
            [1.0]
        );
        assert_eq!(decode_le(&1.5f64.to_le_bytes(), FloatEncoding::F64), [1.5]);
    }
}
