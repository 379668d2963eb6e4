//! Reading and writing single arrays in numpy's `.npy` format.
//!
//! nnc writes little-endian float32 (`<f4`) arrays in C (row-major) order,
//! which `numpy.load` reads directly. It reads float32 and float64 arrays of
//! either byte order, converting float64 to float32 (rounding to nearest).
//! A 0-d array (`np.save(p, np.float32(1.5))`) becomes a tensor of shape `[]`.
//!
//! Arrays stored in Fortran (column-major) order are rejected, except when
//! the two layouts coincide because at most one dimension is longer than 1.
//! As with `numpy.load`, bytes after the last element are ignored.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use npyz::{NpyFile, NpyHeader, Order, TypeChar, WriterBuilder};

use crate::convert::FloatEncoding;
use crate::error::{IoError, NpyError, TensorError};
use crate::tensor::{checked_numel, Tensor};

/// The six bytes every `.npy` file starts with.
const MAGIC: &[u8] = b"\x93NUMPY";

/// The deepest nesting of brackets a header may have; a float array's is 2
/// (the dict and its shape tuple).
const MAX_HEADER_NESTING: usize = 4;

/// Reads a `.npy` file holding a float32 or float64 array.
pub fn read_npy(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| IoError {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    read_npy_bytes(&bytes, path)
}

/// Parses the bytes of a `.npy` file; `path_for_messages` only names the file
/// in errors.
pub fn read_npy_bytes(bytes: &[u8], path_for_messages: &Path) -> Result<Tensor, NpyError> {
    let path = path_for_messages.to_path_buf();
    let not_npy = |reason: String| NpyError::NotNpy {
        path: path.clone(),
        reason,
    };
    if !bytes.starts_with(MAGIC) {
        return Err(not_npy(
            "it does not start with the magic string `\\x93NUMPY`".to_string(),
        ));
    }
    // npyz's header parser takes time exponential in the nesting of
    // brackets (70 `{` ran for minutes); no header nnc reads nests deeper
    // than a structured dtype's list of tuples of shapes inside the dict.
    if header_nesting(bytes) > MAX_HEADER_NESTING {
        return Err(not_npy(format!(
            "the header nests brackets more than {MAX_HEADER_NESTING} deep"
        )));
    }
    // Reading through a slice advances it, leaving the data section behind.
    let mut data = bytes;
    let header = NpyHeader::from_reader(&mut data).map_err(|e| {
        not_npy(match e.kind() {
            io::ErrorKind::UnexpectedEof => "the header is cut short".to_string(),
            _ => format!("invalid header: {e}"),
        })
    })?;

    let encoding = float_encoding(&header).ok_or_else(|| NpyError::UnsupportedDtype {
        path: path.clone(),
        dtype: dtype_name(&header.dtype()),
    })?;
    let shape = tensor_shape(header.shape()).map_err(|source| NpyError::InvalidShape {
        path: path.clone(),
        source,
    })?;
    if header.order() == Order::Fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(NpyError::FortranOrder { path });
    }
    let overflow = || NpyError::InvalidShape {
        path: path.clone(),
        source: TensorError::Overflow {
            shape: shape.clone(),
        },
    };
    let expected = checked_numel(&shape)
        .and_then(|n| n.checked_mul(encoding.width()))
        .ok_or_else(overflow)?;
    let Some(data) = data.get(..expected) else {
        return Err(NpyError::Truncated {
            path,
            expected,
            found: data.len(),
        });
    };

    let file = NpyFile::with_header(header, data);
    let values = match encoding {
        FloatEncoding::F64 => file
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        _ => file.into_vec::<f32>(),
    }
    .map_err(|e| not_npy(format!("cannot decode the data: {e}")))?;
    Tensor::new(shape, values).map_err(|source| NpyError::InvalidShape { path, source })
}

/// The deepest nesting of `{`, `[` and `(` in the header of `bytes` (or in
/// as much of it as there is), which start with the magic string. Brackets
/// in quotes count too: npyz's parser may read a broken string differently.
/// Version 1 has a 2-byte header length, later versions 4 bytes.
fn header_nesting(bytes: &[u8]) -> usize {
    let (start, len) = match bytes.get(MAGIC.len()) {
        Some(1) => (
            MAGIC.len() + 4,
            bytes
                .get(8..10)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize),
        ),
        _ => (
            MAGIC.len() + 6,
            bytes
                .get(8..12)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
        ),
    };
    let end = start.saturating_add(len.unwrap_or(0)).min(bytes.len());
    let header = bytes.get(start..end).unwrap_or_default();
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &b in header {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Writes a tensor as a little-endian float32 (`<f4`) C-order `.npy` file.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    let io_error = |source| {
        NpyError::Io(IoError {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    };
    let file = std::fs::File::create(path).map_err(io_error)?;
    write_npy_to(BufWriter::new(file), tensor).map_err(io_error)
}

/// Encodes a tensor as `.npy` into any writer.
fn write_npy_to(writer: impl Write, tensor: &Tensor) -> io::Result<()> {
    let type_str = "<f4"
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let mut npy = npyz::WriteOptions::<f32>::new()
        .dtype(npyz::DType::Plain(type_str))
        .shape(&shape)
        .writer(writer)
        .begin_nd()?;
    npy.extend(tensor.data().iter().copied())?;
    npy.finish()
}

/// The float encoding of a header's dtype, if nnc reads it.
fn float_encoding(header: &NpyHeader) -> Option<FloatEncoding> {
    let npyz::DType::Plain(type_str) = header.dtype() else {
        return None;
    };
    if type_str.type_char() != TypeChar::Float {
        return None;
    }
    match type_str.size_field() {
        4 => Some(FloatEncoding::F32),
        8 => Some(FloatEncoding::F64),
        _ => None,
    }
}

/// A dtype as numpy spells it (`<i8`, or a record description).
fn dtype_name(dtype: &npyz::DType) -> String {
    match dtype {
        npyz::DType::Plain(type_str) => type_str.to_string(),
        other => other.descr(),
    }
}

/// Converts a header shape to `usize` dimensions.
fn tensor_shape(dims: &[u64]) -> Result<Vec<usize>, TensorError> {
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    if dims.iter().any(|&d| usize::try_from(d).is_err()) {
        return Err(TensorError::Overflow { shape });
    }
    Ok(shape)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
