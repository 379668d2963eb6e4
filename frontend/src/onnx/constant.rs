//! Constants known at import time (initializers, `Constant` nodes, and the
//! `Shape -> Gather -> Unsqueeze -> Concat` chains exporters emit to compute
//! a `Reshape` target), and the few ops the importer folds on them.

/// The most elements the importer creates in one constant (1 GiB of
/// `f32`); a folded or generated constant larger than this is an error, so
/// that a small hostile file cannot make the importer allocate without bound.
pub const MAX_CONSTANT: usize = 1 << 28;

/// The element count of `dims`, or `None` when it overflows.
pub fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The values of a constant: floating-point types are read as `f32`,
/// integer and bool types as `i64`.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Data {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The values as `f32` (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as `i64` (floats truncated towards zero).
    pub fn to_i64(&self) -> Vec<i64> {
        match self {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }

    fn pick(&self, indices: &[usize]) -> Data {
        match self {
            Data::F32(v) => Data::F32(indices.iter().map(|&i| v[i]).collect()),
            Data::I64(v) => Data::I64(indices.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// A tensor known at import time.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Constant {
    /// A rank-1 `i64` constant.
    pub fn ints(values: Vec<i64>) -> Constant {
        Constant {
            dims: vec![values.len()],
            data: Data::I64(values),
        }
    }

    /// The same values with other dims (the caller checked the count).
    pub fn reshaped(&self, dims: Vec<usize>) -> Constant {
        Constant {
            dims,
            data: self.data.clone(),
        }
    }

    /// `Transpose` with output dim `i` taken from input dim `perm[i]`.
    pub fn transposed(&self, perm: &[usize]) -> Constant {
        let dims: Vec<usize> = perm.iter().map(|&p| self.dims[p]).collect();
        let strides = strides(&self.dims);
        let order: Vec<usize> = indices(&dims)
            .map(|index| index.iter().zip(perm).map(|(&i, &p)| i * strides[p]).sum())
            .collect();
        Constant {
            dims,
            data: self.data.pick(&order),
        }
    }

    /// `Gather` along `axis` with already normalised indices of shape
    /// `index_dims`.
    pub fn gathered(&self, axis: usize, index: &[usize], index_dims: &[usize]) -> Constant {
        let outer: usize = self.dims[..axis].iter().product();
        let inner: usize = self.dims[axis + 1..].iter().product();
        let size = self.dims[axis];
        let mut order = Vec::new();
        for o in 0..outer {
            for &i in index {
                order.extend((0..inner).map(|k| (o * size + i) * inner + k));
            }
        }
        let mut dims = self.dims[..axis].to_vec();
        dims.extend_from_slice(index_dims);
        dims.extend_from_slice(&self.dims[axis + 1..]);
        Constant {
            dims,
            data: self.data.pick(&order),
        }
    }

    /// The element count of a gather, checked before it is built.
    pub fn gather_size(&self, axis: usize, indices: usize) -> Option<usize> {
        let rest = numel(&self.dims[..axis])?.checked_mul(numel(&self.dims[axis + 1..])?)?;
        rest.checked_mul(indices).filter(|&n| n <= MAX_CONSTANT)
    }

    /// `Concat` of constants of one rank along `axis`; `i64` unless any
    /// part is `f32`. `None` when the parts' dims differ outside `axis`.
    pub fn concatenated(parts: &[&Constant], axis: usize) -> Option<Constant> {
        let first = parts.first()?;
        let fits = |p: &&Constant| {
            p.dims.len() == first.dims.len()
                && (0..p.dims.len()).all(|d| d == axis || p.dims[d] == first.dims[d])
        };
        if axis >= first.dims.len() || !parts.iter().all(fits) {
            return None;
        }
        let outer: usize = first.dims[..axis].iter().product();
        let mut dims = first.dims.clone();
        dims[axis] = parts
            .iter()
            .map(|p| p.dims.get(axis).copied().unwrap_or(0))
            .sum();
        let float = parts.iter().any(|p| matches!(p.data, Data::F32(_)));
        let (mut fs, mut is) = (Vec::new(), Vec::new());
        for o in 0..outer {
            for p in parts {
                let chunk: usize = p.dims[axis..].iter().product();
                if float {
                    fs.extend_from_slice(&p.data.to_f32()[o * chunk..][..chunk]);
                } else {
                    is.extend_from_slice(&p.data.to_i64()[o * chunk..][..chunk]);
                }
            }
        }
        Some(Constant {
            dims,
            data: if float { Data::F32(fs) } else { Data::I64(is) },
        })
    }

    /// An elementwise op on two constants with NumPy broadcasting; `i64`
    /// when both are integers (ONNX integer `Div` truncates).
    pub fn broadcast(
        &self,
        other: &Constant,
        float: impl Fn(f32, f32) -> f32,
        int: impl Fn(i64, i64) -> Option<i64>,
    ) -> Option<Constant> {
        let dims = broadcast_dims(&self.dims, &other.dims)?;
        numel(&dims).filter(|&n| n <= MAX_CONSTANT)?;
        let a = broadcast_index(&self.dims, &dims);
        let b = broadcast_index(&other.dims, &dims);
        let data = match (&self.data, &other.data) {
            (Data::I64(p), Data::I64(q)) => Data::I64(
                a.iter()
                    .zip(&b)
                    .map(|(&i, &j)| int(p[i], q[j]))
                    .collect::<Option<Vec<i64>>>()?,
            ),
            (p, q) => {
                let (p, q) = (p.to_f32(), q.to_f32());
                Data::F32(a.iter().zip(&b).map(|(&i, &j)| float(p[i], q[j])).collect())
            }
        };
        Some(Constant { dims, data })
    }
}

/// Row-major strides.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Every index of `dims` in row-major order.
fn indices(dims: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    let count: usize = dims.iter().product();
    (0..count).map(move |mut flat| {
        let mut index = vec![0; dims.len()];
        for d in (0..dims.len()).rev() {
            index[d] = flat % dims[d];
            flat /= dims[d];
        }
        index
    })
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let p = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let q = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            match (p, q) {
                (p, q) if p == q => Some(p),
                (1, q) => Some(q),
                (p, 1) => Some(p),
                _ => None,
            }
        })
        .collect()
}

/// For each element of the broadcast shape `out`, the flat index of the
/// element of a tensor of shape `dims` it reads.
fn broadcast_index(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let lead = out.len() - dims.len();
    let s = strides(dims);
    indices(out)
        .map(|index| {
            (0..dims.len())
                .map(|d| {
                    if dims[d] == 1 {
                        0
                    } else {
                        index[lead + d] * s[d]
                    }
                })
                .sum()
        })
        .collect()
}
