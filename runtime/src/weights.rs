//! Named weight tensors and the safetensors files that store them.
//!
//! nnc reads the format PyTorch users already have: a `state_dict` saved with
//! `safetensors.torch.save_file` loads unchanged. Tensors may be stored as
//! `F32`, or as `F64`, `F16` or `BF16`, which are converted to `f32` on load.
//! Tensors whose name ends in `.num_batches_tracked` (the `int64` step counter
//! of PyTorch's BatchNorm, which inference never reads) are skipped whatever
//! their dtype. Any other dtype is an error that names the tensor.

use std::collections::{btree_map, BTreeMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::convert::{decode_le, FloatEncoding};
use crate::error::{IoError, WeightError};
use crate::limits::{tensor_bytes, MemoryLimit};
use crate::tensor::Tensor;

/// Named tensors, kept sorted by name so that iteration, saving and error
/// lists are deterministic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightSet(BTreeMap<String, Tensor>);

impl WeightSet {
    /// An empty set.
    pub fn new() -> WeightSet {
        WeightSet(BTreeMap::new())
    }

    /// Adds or replaces a tensor, returning the one it replaced.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.0.insert(name.into(), tensor)
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name)
    }

    /// The tensor called `name`, mutable, if any.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.0.get_mut(name)
    }

    /// Removes and returns the tensor called `name`, if any.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.0.remove(name)
    }

    /// True if a tensor called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The tensors in name order.
    pub fn iter(&self) -> btree_map::Iter<'_, String, Tensor> {
        self.0.iter()
    }

    /// The tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying sorted map.
    pub fn into_inner(self) -> BTreeMap<String, Tensor> {
        self.0
    }
}

impl From<BTreeMap<String, Tensor>> for WeightSet {
    fn from(map: BTreeMap<String, Tensor>) -> WeightSet {
        WeightSet(map)
    }
}

impl FromIterator<(String, Tensor)> for WeightSet {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> WeightSet {
        WeightSet(iter.into_iter().collect())
    }
}

impl IntoIterator for WeightSet {
    type Item = (String, Tensor);
    type IntoIter = btree_map::IntoIter<String, Tensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a WeightSet {
    type Item = (&'a String, &'a Tensor);
    type IntoIter = btree_map::Iter<'a, String, Tensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The suffix of PyTorch BatchNorm's step counter, which loading skips.
const SKIPPED_SUFFIX: &str = "num_batches_tracked";

/// True for tensors that loading drops silently (see the module doc).
fn is_skipped(name: &str) -> bool {
    name == SKIPPED_SUFFIX
        || name
            .strip_suffix(SKIPPED_SUFFIX)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// Reads a safetensors file, within the machine's available memory.
pub fn load_safetensors(path: &Path) -> Result<WeightSet, WeightError> {
    load_safetensors_within(path, MemoryLimit::default())
}

/// Reads a safetensors file whose tensors, one by one and together, take
/// at most `limit` once decoded to `f32`; a larger one is refused before
/// it is decoded.
pub fn load_safetensors_within(path: &Path, limit: MemoryLimit) -> Result<WeightSet, WeightError> {
    let io = |source| IoError {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Mapping the file instead of reading it saves a copy of every weight
    // (and the page faults of a buffer as large as the file).
    // SAFETY: the map is read-only and dropped before this function
    // returns; the tensors are decoded into owned memory. Another process
    // truncating the file meanwhile is outside what nnc can guard against
    // (as for any program that maps its inputs).
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    load_safetensors_bytes_within(&map, path, limit)
}

/// Parses the bytes of a safetensors file; `path_for_messages` only names the
/// file in errors.
pub fn load_safetensors_bytes(
    bytes: &[u8],
    path_for_messages: &Path,
) -> Result<WeightSet, WeightError> {
    load_safetensors_bytes_within(bytes, path_for_messages, MemoryLimit::default())
}

/// [`load_safetensors_bytes`] with the tensors' decoded sizes checked
/// against `limit`, one by one and in total.
pub fn load_safetensors_bytes_within(
    bytes: &[u8],
    path_for_messages: &Path,
    limit: MemoryLimit,
) -> Result<WeightSet, WeightError> {
    let path = path_for_messages;
    let file = SafeTensors::deserialize(bytes).map_err(|e| classify_parse_error(bytes, path, e))?;
    let mut weights = WeightSet::new();
    let mut total: u128 = 0;
    // In name order, so that the first error (and the running total's) is
    // the same on every run: the header's order is a hash map's.
    let mut views: Vec<_> = file.iter().collect();
    views.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (name, view) in views {
        if is_skipped(name) {
            continue;
        }
        let bytes = tensor_bytes(view.shape(), 4);
        limit.check(
            || {
                format!(
                    "tensor `{name}` of shape {}",
                    crate::format_shape(view.shape())
                )
            },
            bytes,
        )?;
        total = total.saturating_add(bytes);
        limit.check(|| format!("the weights in `{}`", path.display()), total)?;
        let encoding =
            float_encoding(view.dtype()).ok_or_else(|| WeightError::UnsupportedDtype {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: view.dtype().to_string().to_lowercase(),
            })?;
        let data = decode_le(view.data(), encoding);
        let tensor = Tensor::new(view.shape().to_vec(), data).map_err(|source| {
            WeightError::InvalidTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                source,
            }
        })?;
        weights.insert(name, tensor);
    }
    Ok(weights)
}

/// Writes `weights` as a safetensors file of `F32` tensors.
pub fn save_safetensors(path: &Path, weights: &WeightSet) -> Result<(), WeightError> {
    let bytes = to_safetensors_bytes(weights)?;
    std::fs::write(path, bytes).map_err(|source| {
        WeightError::Io(IoError {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Encodes `weights` as the bytes of a safetensors file of `F32` tensors.
pub fn to_safetensors_bytes(weights: &WeightSet) -> Result<Vec<u8>, WeightError> {
    let encode_error = |e: SafeTensorError| WeightError::Encode {
        reason: e.to_string(),
    };
    let buffers: Vec<(&str, &[usize], Vec<u8>)> = weights
        .iter()
        .map(|(name, t)| {
            let bytes = t.data().iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.as_str(), t.shape(), bytes)
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.to_vec(), bytes).map(|view| (*name, view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(encode_error)?;
    safetensors::serialize(views, None).map_err(encode_error)
}

/// Compares weights against the tensors a model expects and returns every
/// problem: missing tensors, unexpected tensors and shape mismatches, sorted
/// by tensor name, at most one per name. The list is empty when the weights
/// fit. If `expected` names a tensor twice, the first shape is used.
pub fn check_weights(expected: &[(String, Vec<usize>)], weights: &WeightSet) -> Vec<WeightError> {
    let mut wanted: BTreeMap<&str, &[usize]> = BTreeMap::new();
    for (name, shape) in expected {
        wanted.entry(name.as_str()).or_insert(shape.as_slice());
    }
    let mut names: Vec<&str> = wanted.keys().copied().chain(weights.names()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| match (wanted.get(name), weights.get(name)) {
            (Some(&shape), None) => Some(WeightError::MissingTensor {
                name: name.to_string(),
                expected: shape.to_vec(),
            }),
            (None, Some(tensor)) => Some(WeightError::UnexpectedTensor {
                name: name.to_string(),
                shape: tensor.shape().to_vec(),
            }),
            (Some(&shape), Some(tensor)) if shape != tensor.shape() => {
                Some(WeightError::ShapeMismatch {
                    name: name.to_string(),
                    expected: shape.to_vec(),
                    found: tensor.shape().to_vec(),
                })
            }
            _ => None,
        })
        .collect()
}

/// The encoding nnc converts from, or `None` for unsupported dtypes.
fn float_encoding(dtype: Dtype) -> Option<FloatEncoding> {
    match dtype {
        Dtype::F16 => Some(FloatEncoding::F16),
        Dtype::BF16 => Some(FloatEncoding::Bf16),
        Dtype::F32 => Some(FloatEncoding::F32),
        Dtype::F64 => Some(FloatEncoding::F64),
        _ => None,
    }
}

/// Bytes of the little-endian header length that starts every safetensors file.
const LENGTH_PREFIX: usize = 8;

/// Turns a safetensors parse error into a truncation error when the file
/// is a safetensors file whose end is missing, and into a not-safetensors
/// error otherwise.
fn classify_parse_error(bytes: &[u8], path: &Path, error: SafeTensorError) -> WeightError {
    let truncated = |expected: usize| WeightError::Truncated {
        path: path.to_path_buf(),
        expected,
        found: bytes.len(),
    };
    let not_safetensors = |reason: String| WeightError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    match error {
        SafeTensorError::HeaderTooSmall => not_safetensors(format!(
            "the file is {} bytes long, shorter than the {LENGTH_PREFIX}-byte header length",
            bytes.len()
        )),
        // The header runs past the end of the file. If what is there starts
        // like a safetensors header, the file was cut inside its header.
        SafeTensorError::InvalidHeaderLength => match header_end(bytes) {
            Some(end) if end > bytes.len() && bytes.get(LENGTH_PREFIX) == Some(&b'{') => {
                truncated(end)
            }
            _ => not_safetensors(error.to_string()),
        },
        // The header parsed but the data section has the wrong length.
        SafeTensorError::MetadataIncompleteBuffer => {
            let expected = header_end(bytes).and_then(|end| {
                let header = std::str::from_utf8(bytes.get(LENGTH_PREFIX..end)?).ok()?;
                end.checked_add(declared_data_len(header)?)
            });
            match expected {
                Some(expected) if expected > bytes.len() => truncated(expected),
                Some(expected) => not_safetensors(format!(
                    "{} unexpected bytes follow the last tensor",
                    bytes.len() - expected
                )),
                None => not_safetensors(error.to_string()),
            }
        }
        other => not_safetensors(other.to_string()),
    }
}

/// The offset where the JSON header ends, read from the length prefix.
fn header_end(bytes: &[u8]) -> Option<usize> {
    let prefix = bytes.get(..LENGTH_PREFIX)?;
    let length = prefix
        .iter()
        .rev()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
    usize::try_from(length).ok()?.checked_add(LENGTH_PREFIX)
}

/// The data length a header declares: the largest end offset among its
/// tensors' `"data_offsets": [begin, end]`. This only runs on files the
/// safetensors crate already rejected, to tell truncation from corruption.
fn declared_data_len(header: &str) -> Option<usize> {
    let json: serde_json::Value = serde_json::from_str(header).ok()?;
    let ends = json
        .as_object()?
        .values()
        .filter_map(|tensor| tensor.get("data_offsets")?.get(1)?.as_u64());
    usize::try_from(ends.max().unwrap_or(0)).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
