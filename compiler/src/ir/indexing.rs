//! The indexing ops: every output element is one element of the operand,
//! found dim by dim from the output index alone. `slice` takes every
//! `step`-th index of a range, `index_select` the indices of a list,
//! `repeat` tiles the operand, `expand` broadcasts it.
//!
//! They are one class, one `Op` variant (`Op::Indexing(Indexing)`), as the
//! elementwise classes are: the backend compiles all four with one copy
//! kernel that maps each output dim to an input index
//! (`backend/kernels/indexing.rs`), while the interpreter keeps a plain
//! loop per op as the oracle. Attributes are stored resolved against the
//! operand's shape: no negative indices, starts clamped, `-1` sizes filled.

/// One dim of a `slice`: `size` indices `start, start + step, ...`, all
/// inside the operand's dim. A negative `step` walks backwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceDim {
    pub dim: usize,
    pub start: usize,
    pub step: i64,
    pub size: usize,
}

/// `slice`: the dims listed (each at most once) are sliced, the others kept
/// whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceAttrs {
    pub dims: Vec<SliceDim>,
}

/// `index_select`: the operand's slices at `index` (in that order, repeats
/// allowed) along `dim`; the dim keeps its place with `index.len()`
/// entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSelectAttrs {
    pub dim: usize,
    pub index: Vec<usize>,
}

/// `repeat`: dim `d` of the output is the operand tiled `repeats[d]` times
/// (PyTorch's `Tensor.repeat`, ONNX's `Tile`). With more repeats than the
/// operand has dims, the operand counts as having leading dims of size 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepeatAttrs {
    pub repeats: Vec<usize>,
}

/// `expand`: the operand broadcast to `shape` (NumPy's rules, aligned at the
/// last dim: each operand dim is 1 or equal to the output's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpandAttrs {
    pub shape: Vec<usize>,
}

/// An indexing op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Indexing {
    Slice(SliceAttrs),
    IndexSelect(IndexSelectAttrs),
    Repeat(RepeatAttrs),
    Expand(ExpandAttrs),
}

impl Indexing {
    /// The names of the class's ops in `.nn` files, in the order of the
    /// variants.
    pub const NAMES: [&'static str; 4] = ["slice", "index_select", "repeat", "expand"];

    /// The name used in `.nn` files and IR dumps (PyTorch's).
    pub fn name(&self) -> &'static str {
        match self {
            Indexing::Slice(_) => Indexing::NAMES[0],
            Indexing::IndexSelect(_) => Indexing::NAMES[1],
            Indexing::Repeat(_) => Indexing::NAMES[2],
            Indexing::Expand(_) => Indexing::NAMES[3],
        }
    }

    /// Attributes as `name=value` pairs for the printer. A slice prints its
    /// resolved form: the first index and the number of indices per dim.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        fn list<T: ToString>(v: impl Iterator<Item = T>) -> String {
            let items: Vec<String> = v.map(|d| d.to_string()).collect();
            format!("[{}]", items.join(", "))
        }
        match self {
            Indexing::Slice(a) => vec![
                ("dims", list(a.dims.iter().map(|s| s.dim))),
                ("starts", list(a.dims.iter().map(|s| s.start))),
                ("steps", list(a.dims.iter().map(|s| s.step))),
                ("sizes", list(a.dims.iter().map(|s| s.size))),
            ],
            Indexing::IndexSelect(a) => {
                vec![("dim", a.dim.to_string()), ("index", list(a.index.iter()))]
            }
            Indexing::Repeat(a) => vec![("repeats", list(a.repeats.iter()))],
            Indexing::Expand(a) => vec![("shape", list(a.shape.iter()))],
        }
    }

    /// Whether the op, applied to an operand of shape `input`, keeps every
    /// element in its row-major place: the output is then a reshape of the
    /// operand (a whole-dim slice, an `index_select` of `0..n` in order,
    /// repeats of 1, an expand that only adds leading dims of size 1).
    pub fn keeps_order(&self, input: &[usize]) -> bool {
        match self {
            Indexing::Slice(a) => a.dims.iter().all(|s| {
                let whole = input.get(s.dim) == Some(&s.size);
                whole && (s.size == 1 || (s.start == 0 && s.step == 1))
            }),
            Indexing::IndexSelect(a) => {
                input.get(a.dim) == Some(&a.index.len())
                    && a.index.iter().enumerate().all(|(i, &j)| i == j)
            }
            Indexing::Repeat(a) => a.repeats.iter().all(|&r| r == 1),
            // Broadcasting never reorders; it only adds copies, and with
            // equal element counts there are none.
            Indexing::Expand(a) => {
                nnc_runtime::checked_numel(&a.shape) == nnc_runtime::checked_numel(input)
            }
        }
    }
}
