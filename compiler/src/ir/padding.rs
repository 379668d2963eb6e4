//! The padding of a 2-D window op (`conv2d`, the pools and their lowered
//! forms), which may differ per side: an exporter's `auto_pad=SAME_*` or
//! a `pad` before the op then folds into the op instead of costing a
//! copy.

use std::fmt;

/// Rows above and below the input and columns left and right of it that a
/// window op reads as padding (zero, or `-inf` for `max_pool2d`).
///
/// Kernels that walk output positions use only `begin`, as the offset of
/// output `(0, 0)`'s window; the output shape already accounts for `end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Padding {
    /// `[top, left]`: before the first row and the first column.
    pub begin: [usize; 2],
    /// `[bottom, right]`: after the last row and the last column.
    pub end: [usize; 2],
}

impl Padding {
    /// No padding.
    pub const ZERO: Padding = Padding {
        begin: [0, 0],
        end: [0, 0],
    };

    /// `[h, w]` on both sides of each axis, PyTorch's `padding=(h, w)`.
    pub fn symmetric(pad: [usize; 2]) -> Padding {
        Padding {
            begin: pad,
            end: pad,
        }
    }

    /// From the sides in the `.nn` order `[top, left, bottom, right]`
    /// (ONNX's `pads` order for two spatial dims).
    pub fn from_sides([top, left, bottom, right]: [usize; 4]) -> Padding {
        Padding {
            begin: [top, left],
            end: [bottom, right],
        }
    }

    /// `[top, left, bottom, right]`.
    pub fn sides(self) -> [usize; 4] {
        [self.begin[0], self.begin[1], self.end[0], self.end[1]]
    }

    /// Whether every side is zero.
    pub fn is_zero(self) -> bool {
        self == Padding::ZERO
    }

    /// Whether each axis has the same padding on both of its sides.
    pub fn is_symmetric(self) -> bool {
        self.begin == self.end
    }

    /// The larger side of `axis` (0 = height, 1 = width).
    pub fn largest(self, axis: usize) -> usize {
        self.begin[axis].max(self.end[axis])
    }

    /// Each side plus the same side of `other` (`None` on overflow).
    pub fn checked_add(self, other: Padding) -> Option<Padding> {
        let mut sides = self.sides();
        for (s, o) in sides.iter_mut().zip(other.sides()) {
            *s = s.checked_add(o)?;
        }
        Some(Padding::from_sides(sides))
    }
}

/// `[h, w]` when symmetric (as IR dumps printed the padding before it could
/// differ per side), `[top, left, bottom, right]` otherwise: both are what
/// `pad=` accepts in a `.nn` file.
impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_symmetric() {
            write!(f, "[{}, {}]", self.begin[0], self.begin[1])
        } else {
            let [t, l, b, r] = self.sides();
            write!(f, "[{t}, {l}, {b}, {r}]")
        }
    }
}
