//! Dense tensors: a shape and a row-major buffer of `f32`.

use crate::error::TensorError;

/// Element types nnc understands. Only `f32` is computed with today; the enum
/// exists so that every boundary (DSL types, weights files, `.npy` files)
/// names the dtype it saw and can reject the others with a clear message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float, the only dtype nnc computes in.
    F32,
}

impl DType {
    /// Every dtype name nnc accepts, for error messages.
    pub const SUPPORTED: &'static [&'static str] = &["f32"];

    /// Parses a dtype name as written in `.nn` files (`f32`).
    pub fn from_name(name: &str) -> Option<DType> {
        match name {
            "f32" => Some(DType::F32),
            _ => None,
        }
    }

    /// The name used in `.nn` files and IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
        }
    }

    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of elements of a shape, or `None` if it overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Formats a shape the way nnc prints it everywhere: `[1, 3, 224, 224]`.
pub fn format_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// A dense, row-major `f32` tensor.
///
/// Invariant: `data.len()` equals the product of `shape` (1 for a scalar).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor, checking that the buffer length matches the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, TensorError> {
        let expected = checked_numel(&shape).ok_or_else(|| TensorError::Overflow {
            shape: shape.clone(),
        })?;
        if expected != data.len() {
            return Err(TensorError::LengthMismatch {
                shape,
                expected,
                found: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let n = checked_numel(&shape).ok_or_else(|| TensorError::Overflow {
            shape: shape.clone(),
        })?;
        Ok(Tensor {
            shape,
            data: vec![0.0; n],
        })
    }

    /// A tensor with every element equal to `value`.
    pub fn full(shape: Vec<usize>, value: f32) -> Result<Tensor, TensorError> {
        let mut t = Tensor::zeros(shape)?;
        t.data.fill(value);
        Ok(t)
    }

    /// The element type (always `f32` today).
    pub fn dtype(&self) -> DType {
        DType::F32
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The row-major element buffer.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The row-major element buffer, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor and returns its buffer.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a tensor with no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.shape.len()];
        for i in (0..self.shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.shape[i + 1];
        }
        strides
    }

    /// Same data, new shape with the same number of elements.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, self.data)
    }
}
