//! Reductions: one closed class, as the elementwise classes are. Each
//! [`Reduction`] is a DSL op of the same name (`mean`, `sum`, `amax`,
//! `amin`, PyTorch's), and `global_max_pool` is `amax` over `H, W`; all
//! are `Op::Reduce`, so the printer, shape inference, the interpreter and
//! the kernel each have one arm for the class and one `match` on the
//! function inside it.

/// What a reduction computes over the elements it reduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The sum divided by the number of elements reduced.
    Mean,
    Sum,
    /// The maximum; a NaN among the elements makes the result NaN
    /// (`torch.amax`).
    Max,
    /// The minimum; NaN as for `Max`.
    Min,
}

impl Reduction {
    /// Every reduction.
    pub const ALL: [Reduction; 4] = [
        Reduction::Mean,
        Reduction::Sum,
        Reduction::Max,
        Reduction::Min,
    ];

    /// The name used in `.nn` files and IR dumps (PyTorch's).
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::Max => "amax",
            Reduction::Min => "amin",
        }
    }

    /// The reduction called `name`.
    pub fn from_name(name: &str) -> Option<Reduction> {
        Reduction::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The value a reduction starts from: the identity of its combining
    /// operation (`-inf` for the maximum).
    pub fn identity(self) -> f32 {
        match self {
            Reduction::Mean | Reduction::Sum => 0.0,
            Reduction::Max => f32::NEG_INFINITY,
            Reduction::Min => f32::INFINITY,
        }
    }
}

/// `Op::Reduce`: reduces the `dims` of its operand with `function`. The
/// dims are stored resolved: sorted, distinct and each below the operand's
/// rank (a call without `dims` reduces every dim). With `keepdim` the
/// reduced dims stay as dims of size 1, otherwise they are removed.
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceAttrs {
    pub function: Reduction,
    pub dims: Vec<usize>,
    pub keepdim: bool,
}

impl ReduceAttrs {
    /// The output shape for an operand of shape `shape` (whose rank the
    /// dims must fit; shape inference checks that first).
    pub fn output_shape(&self, shape: &[usize]) -> Vec<usize> {
        shape
            .iter()
            .enumerate()
            .filter_map(|(d, &size)| match (self.dims.contains(&d), self.keepdim) {
                (false, _) => Some(size),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect()
    }

    /// How many operand elements each output element combines.
    pub fn count(&self, shape: &[usize]) -> usize {
        self.dims
            .iter()
            .map(|&d| shape.get(d).copied().unwrap_or(1))
            .product()
    }
}
