//! Reading a model: decoding the protobuf, checking the opset, and turning
//! `TensorProto`s (inline or in external data files) into constants.

use super::constant::{Constant, Data};
use super::error::ImportError;
use super::proto::{tensor_proto::DataLocation, tensor_proto::DataType, ModelProto, TensorProto};
use nnc_runtime::limits::tensor_bytes;
use nnc_runtime::MemoryLimit;
use prost::bytes::Bytes;
use prost::Message;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// The oldest default-domain opset nnc imports. Opset 6 removed the
/// `consumed_inputs` attributes of opset 1 and is the form of most legacy
/// exports (PyTorch's and Caffe2's); older models also give Reshape's shape
/// as an attribute, which nnc does not read. The converters branch on the
/// opset where an op's older form differs (attributes that became inputs,
/// legacy broadcasting, `is_test`).
pub const MIN_OPSET: i64 = 6;

/// The newest default-domain opset nnc imports: the newest the onnx
/// package (1.23) writes. From opset 22 on, the ops nnc imports changed only
/// in the element types they accept.
pub const MAX_OPSET: i64 = 28;

/// Decodes a model and returns it with its default-domain opset.
pub fn decode(
    bytes: impl prost::bytes::Buf,
    path: &Path,
) -> Result<(ModelProto, i64), ImportError> {
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| ImportError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version())
        .ok_or_else(|| invalid("the model imports no default-domain (ai.onnx) opset".into()))?;
    if opset < MIN_OPSET {
        return Err(invalid(format!(
            "opset {opset} is older than nnc imports (opsets {MIN_OPSET} to {MAX_OPSET}); convert the model with `onnx.version_converter.convert_version(model, {MIN_OPSET})` or newer"
        )));
    }
    if opset > MAX_OPSET {
        return Err(invalid(format!(
            "opset {opset} is newer than nnc imports (opsets {MIN_OPSET} to {MAX_OPSET})"
        )));
    }
    match &model.graph {
        None => return Err(invalid("the model has no graph".into())),
        // A model computes its outputs; without one there is nothing to
        // compile (and `output` with no values is not `.nn`).
        Some(graph) if graph.output.is_empty() => {
            return Err(invalid("the graph has no outputs".into()))
        }
        Some(_) => {}
    }
    Ok((model, opset))
}

/// Where the external data of a model's tensors is looked up (the model's
/// directory, and only below it), and how much memory a decoded tensor or
/// folded constant may take.
pub struct DataDir {
    pub dir: Option<PathBuf>,
    pub limit: MemoryLimit,
    /// The model file's read-only mapping, when it was mapped (held here
    /// so that it outlives every release of its pages).
    pub mapped: Option<Bytes>,
}

impl DataDir {
    /// Checks that a constant of `dims` with elements of `width` bytes fits
    /// in the memory limit; `what` names it in the error.
    pub fn check(&self, what: &str, dims: &[usize], width: usize) -> Result<(), String> {
        self.limit
            .check(
                || format!("{what} of shape {}", nnc_runtime::format_shape(dims)),
                tensor_bytes(dims, width),
            )
            .map_err(|e| e.to_string())
    }

    /// Gives back the memory of `raw`, a tensor's bytes that were just
    /// decoded, if they lie in the model file's mapping: the decoded copy
    /// is what the compiler reads from now on.
    fn release(&self, raw: &[u8]) {
        let Some(map) = &self.mapped else {
            return;
        };
        let range = map.as_ptr_range();
        if range.start <= raw.as_ptr() && raw.as_ptr_range().end <= range.end {
            // SAFETY: `raw` lies inside `map`, a live read-only shared
            // mapping of the model file (`import_file_with`).
            #[allow(unsafe_code)]
            unsafe {
                nnc_runtime::pages::release_file_pages(raw.as_ptr(), raw.len())
            }
        }
    }
}

/// Checks an inline (not external) tensor as [`tensor_to_constant`] would,
/// without decoding it: its dims, the memory its values would take, its
/// element type and that it holds as many values as its dims say. The
/// importer checks every initializer up front and decodes each only where a
/// node reads it.
pub fn check_inline_tensor(t: &TensorProto, data_dir: &DataDir) -> Result<(), String> {
    let count = checked_count(t, data_dir)?;
    check_values(t, t.raw_data.as_deref(), count)
}

/// The tensor's element count, after checking its dims and that its decoded
/// values fit in the memory limit.
fn checked_count(t: &TensorProto, data_dir: &DataDir) -> Result<usize, String> {
    let name = t.name();
    let dims = tensor_dims(t)?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor `{name}` is too large"))?;
    // Decoded, floats take 4 bytes and integers 8, whatever the file's
    // width; checked before the data is read or decoded.
    let decoded_width = match DataType::try_from(t.data_type.unwrap_or(0)) {
        Ok(DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16) => 4,
        _ => 8,
    };
    data_dir.check(&format!("tensor `{name}`"), &dims, decoded_width)?;
    Ok(count)
}

fn tensor_dims(t: &TensorProto) -> Result<Vec<usize>, String> {
    t.dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("tensor `{}` has a negative dim {d}", t.name()))
        })
        .collect()
}

/// Checks that the tensor's element type is one nnc reads and that its
/// values (`raw` bytes, or the typed field its type uses) number `count`.
fn check_values(t: &TensorProto, raw: Option<&[u8]>, count: usize) -> Result<(), String> {
    let name = t.name();
    let dtype = DataType::try_from(t.data_type.unwrap_or(0)).unwrap_or(DataType::Undefined);
    let (width, typed) = match dtype {
        DataType::Float => (4, t.float_data.len()),
        DataType::Double => (8, t.double_data.len()),
        DataType::Int64 => (8, t.int64_data.len()),
        DataType::Int32 => (4, t.int32_data.len()),
        DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16 => {
            (2, t.int32_data.len())
        }
        DataType::Int8 | DataType::Uint8 | DataType::Bool => (1, t.int32_data.len()),
        other => {
            return Err(format!(
                "tensor `{name}` has element type {}, which nnc does not read",
                other.as_str_name()
            ))
        }
    };
    let len = match raw {
        Some(b) if !b.len().is_multiple_of(width) => {
            return Err(format!(
                "tensor `{name}` has {} raw bytes, not a multiple of its element size {width}",
                b.len()
            ))
        }
        Some(b) => b.len() / width,
        None => typed,
    };
    if len != count {
        return Err(format!(
            "tensor `{name}` has {len} values for dims {:?} ({count} elements)",
            t.dims
        ));
    }
    Ok(())
}

/// Converts a tensor to a constant: `float`, `double` and `float16` become
/// `f32`; integer and bool types become `i64`.
pub fn tensor_to_constant(t: &TensorProto, data_dir: &DataDir) -> Result<Constant, String> {
    let name = t.name();
    let count = checked_count(t, data_dir)?;
    let external;
    let raw: Option<&[u8]> = if t.data_location() == DataLocation::External {
        external = read_external(t, data_dir)?;
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    check_values(t, raw, count)?;
    let dims = tensor_dims(t)?;
    let dtype = DataType::try_from(t.data_type.unwrap_or(0)).unwrap_or(DataType::Undefined);
    let data = match dtype {
        DataType::Float => Data::F32(match raw {
            Some(b) => {
                // Most of a model's weights: decoded into memory on 2 MiB
                // pages where the system allows (VGG-19's 548 MB in 4 KiB
                // page faults took longer than decoding them).
                let mut v: Vec<f32> = Vec::with_capacity(count);
                nnc_runtime::pages::advise_huge_pages(v.as_ptr().cast(), 4 * count);
                // In parts, each part's mapped pages given back as soon
                // as it is decoded, so that a large tensor is not resident
                // twice (VGG-19's first `linear` weight is 392 MiB).
                for part in b.chunks(8 << 20) {
                    v.extend(le_chunks::<4>(part, name)?.map(f32::from_le_bytes));
                    data_dir.release(part);
                }
                v
            }
            None => t.float_data.clone(),
        }),
        DataType::Double => Data::F32(match raw {
            Some(b) => le_chunks::<8>(b, name)?
                .map(|c| f64::from_le_bytes(c) as f32)
                .collect(),
            None => t.double_data.iter().map(|&v| v as f32).collect(),
        }),
        DataType::Float16 => Data::F32(match raw {
            Some(b) => le_chunks::<2>(b, name)?
                .map(|c| f16_to_f32(u16::from_le_bytes(c)))
                .collect(),
            None => t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect(),
        }),
        DataType::Bfloat16 => Data::F32(match raw {
            Some(b) => le_chunks::<2>(b, name)?
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes(c)) << 16))
                .collect(),
            None => t
                .int32_data
                .iter()
                .map(|&v| f32::from_bits((v as u32) << 16))
                .collect(),
        }),
        DataType::Int64 => Data::I64(match raw {
            Some(b) => le_chunks::<8>(b, name)?.map(i64::from_le_bytes).collect(),
            None => t.int64_data.clone(),
        }),
        DataType::Int32 => Data::I64(match raw {
            Some(b) => le_chunks::<4>(b, name)?
                .map(|c| i64::from(i32::from_le_bytes(c)))
                .collect(),
            None => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
        }),
        DataType::Int8 | DataType::Int16 | DataType::Uint8 | DataType::Uint16 | DataType::Bool => {
            let signed = matches!(dtype, DataType::Int8 | DataType::Int16);
            let width = if matches!(dtype, DataType::Int16 | DataType::Uint16) {
                2
            } else {
                1
            };
            Data::I64(match raw {
                Some(b) if width == 1 => b
                    .iter()
                    .map(|&v| {
                        if signed {
                            i64::from(v as i8)
                        } else {
                            i64::from(v)
                        }
                    })
                    .collect(),
                Some(b) => le_chunks::<2>(b, name)?
                    .map(|c| {
                        let v = u16::from_le_bytes(c);
                        if signed {
                            i64::from(v as i16)
                        } else {
                            i64::from(v)
                        }
                    })
                    .collect(),
                None => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
            })
        }
        other => {
            return Err(format!(
                "tensor `{name}` has element type {}, which nnc does not read",
                other.as_str_name()
            ))
        }
    };
    debug_assert_eq!(data.len(), count, "check_values counted them");
    Ok(Constant { dims, data })
}

/// Splits little-endian bytes into `N`-byte chunks.
fn le_chunks<'b, const N: usize>(
    bytes: &'b [u8],
    name: &str,
) -> Result<impl Iterator<Item = [u8; N]> + 'b, String> {
    if !bytes.len().is_multiple_of(N) {
        return Err(format!(
            "tensor `{name}` has {} raw bytes, not a multiple of its element size {N}",
            bytes.len()
        ));
    }
    Ok(bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    }))
}

/// IEEE half precision to single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise the fraction.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Reads the bytes of a tensor stored in an external file: `location`
/// (relative to the model's directory, never outside it), `offset` and
/// `length`.
fn read_external(t: &TensorProto, data_dir: &DataDir) -> Result<Vec<u8>, String> {
    let name = t.name();
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key() == key)
            .map(|e| e.value().to_string())
    };
    let location = entry("location")
        .ok_or_else(|| format!("tensor `{name}` is external but names no `location`"))?;
    let relative = Path::new(&location);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "tensor `{name}`: external data location `{location}` must be a relative path below the model's directory"
        ));
    }
    let dir = data_dir.dir.as_ref().ok_or_else(|| {
        format!("tensor `{name}` has external data, but the model was not read from a file")
    })?;
    let path = dir.join(relative);
    let number = |key: &str| -> Result<Option<u64>, String> {
        entry(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    format!("tensor `{name}`: external data {key} `{v}` is not a number")
                })
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    // Read only this tensor's range: one file often holds every tensor.
    let io = |e: std::io::Error| {
        format!(
            "tensor `{name}`: cannot read external data `{}`: {e}",
            path.display()
        )
    };
    let mut file = std::fs::File::open(&path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let length = length.unwrap_or_else(|| size.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(format!(
            "tensor `{name}`: external data `{}` has {size} bytes, fewer than offset {offset} plus length {length}",
            path.display()
        ));
    }
    let mut bytes =
        vec![0u8; usize::try_from(length).map_err(|_| format!("tensor `{name}` is too large"))?];
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    file.read_exact(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// The static shape of a graph input, which must be of a floating-point
/// type (computed in float32); symbolic dims take their sizes from `dims`.
pub fn input_shape(
    input: &super::proto::ValueInfoProto,
    dims: &std::collections::BTreeMap<String, usize>,
) -> Result<Vec<usize>, String> {
    use super::proto::tensor_shape_proto::dimension::Value;
    use super::proto::type_proto::Value as Type;
    let Some(Type::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("the input is not a tensor".into());
    };
    // nnc computes in float32: a double or half-precision input is read as
    // float32 (as its initializers are converted at import). Integer
    // inputs are refused: integer division and overflow would differ.
    let float = [
        DataType::Float,
        DataType::Double,
        DataType::Float16,
        DataType::Bfloat16,
    ];
    if !float.iter().any(|&d| t.elem_type() == d as i32) {
        let name = DataType::try_from(t.elem_type())
            .map(|d| d.as_str_name())
            .unwrap_or("an unknown type");
        return Err(format!(
            "the input has element type {name}; nnc computes in float32"
        ));
    }
    let Some(shape) = &t.shape else {
        return Err("the input has no shape; nnc compiles static shapes".into());
    };
    shape
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(Value::DimValue(v)) if *v >= 1 => Ok(*v as usize),
            Some(Value::DimParam(p)) => match dims.get(p) {
                Some(&size) if size >= 1 => Ok(size),
                _ => Err(format!(
                    "dim {i} is the symbol `{p}`; nnc compiles static shapes: give its size with `nnc import --dim {p}=SIZE`"
                )),
            },
            _ => Err(format!("dim {i} has no static size; nnc compiles static shapes")),
        })
        .collect()
}
