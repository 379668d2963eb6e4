//! Indexing ops: the general conversion of Slice (for constants and
//! computed tensors alike), Split, Gather of a computed tensor by a list of
//! indices, Tile and Expand. Computed tensors become `slice`,
//! `index_select`, `repeat` and `expand`; constants are folded; ops that
//! move nothing become nothing (or a `reshape`).

use super::attrs::Attrs;
use super::{axis, constant_out, int_list, one, Converter, Outputs, Val};
use crate::onnx::constant::{broadcast_dims, numel, Constant, MAX_CONSTANT};
use crate::onnx::emit;
use crate::onnx::proto::NodeProto;
use std::rc::Rc;

/// The indices one sliced axis keeps: `count` of them, from `first` by
/// `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Range {
    first: usize,
    count: usize,
    step: i64,
}

impl Range {
    /// The indices, in order.
    fn indices(self) -> Vec<usize> {
        (0..self.count)
            .map(|i| (self.first as i64 + i as i64 * self.step) as usize)
            .collect()
    }
}

/// The indices ONNX's Slice takes from an axis of `size`: negative starts
/// and ends count from the end, then both are clamped to the axis (the end
/// of a negative step to `-1`, so that it runs through index 0). The `.nn`
/// `slice` resolves its attributes by the same rule, in the compiler's
/// `lower/ops/indexing.rs`.
fn slice_range(size: usize, start: i64, end: i64, step: i64) -> Range {
    let n = size as i128;
    let resolve = |v: i64| {
        let v = i128::from(v);
        if v < 0 {
            v + n
        } else {
            v
        }
    };
    let wide = i128::from(step);
    let (first, count) = if wide > 0 {
        let (s, e) = (resolve(start).clamp(0, n), resolve(end).clamp(0, n));
        (s, if e > s { (e - s - 1) / wide + 1 } else { 0 })
    } else {
        let (s, e) = (
            resolve(start).clamp(0, n - 1),
            resolve(end).clamp(-1, n - 1),
        );
        (s, if s > e { (s - e - 1) / -wide + 1 } else { 0 })
    };
    Range {
        first: first.max(0) as usize,
        count: count as usize,
        step,
    }
}

/// `c` with only the given indices of each listed axis.
fn pick(c: &Constant, picks: &[(usize, Vec<usize>)]) -> Result<Constant, String> {
    let mut c = c.clone();
    for (axis, index) in picks {
        c.gather_size(*axis, index.len())
            .ok_or("the result is too large to fold")?;
        c = c.gathered(*axis, index, &[index.len()]);
    }
    Ok(c)
}

impl Converter<'_> {
    /// Slice of input 0 by ONNX's lists (the inputs from opset 10, the
    /// attributes before): `axes` default to `0..starts.len()` and `steps`
    /// to 1. A constant (shape arithmetic such as `x.shape[2:]`) is folded;
    /// a computed tensor becomes a `slice` of the axes that change, or
    /// nothing when none do.
    pub(super) fn sliced(
        &mut self,
        node: &NodeProto,
        starts: &[i64],
        ends: &[i64],
        axes: Option<Vec<i64>>,
        steps: Option<Vec<i64>>,
    ) -> Outputs {
        let data = self.arg(node, 0)?.ok_or("the data is required")?;
        let shape = match &data {
            Val::Const(c) => c.dims.clone(),
            Val::Dyn { shape, .. } => shape.clone(),
            Val::Poisoned => return Err("the data is poisoned".into()),
        };
        let rank = shape.len();
        let n = starts.len();
        let axes = match axes {
            Some(list) => list
                .iter()
                .map(|&a| axis(a, rank, "axis"))
                .collect::<Result<Vec<_>, _>>()?,
            // Without axes, the starts are for the first dims; found by the
            // `onnx_import` fuzz target, more starts than dims indexed past
            // the shape.
            None if n > rank => {
                return Err(format!("{n} starts for data of rank {rank}"));
            }
            None => (0..n).collect(),
        };
        let steps = steps.unwrap_or_else(|| vec![1; n]);
        if ends.len() != n || axes.len() != n || steps.len() != n {
            return Err("starts, ends, axes and steps differ in length".into());
        }
        let mut ranges: Vec<Option<Range>> = vec![None; rank];
        for i in 0..n {
            if steps[i] == 0 {
                return Err("a step of 0".into());
            }
            if ranges[axes[i]].is_some() {
                return Err(format!("axis {} is sliced twice", axes[i]));
            }
            ranges[axes[i]] = Some(slice_range(shape[axes[i]], starts[i], ends[i], steps[i]));
        }
        let (path, shape) = match data {
            Val::Const(c) => {
                let picks: Vec<(usize, Vec<usize>)> = ranges
                    .iter()
                    .enumerate()
                    .filter_map(|(d, r)| Some((d, r.as_ref()?.indices())))
                    .collect();
                return constant_out(pick(&c, &picks)?);
            }
            Val::Dyn { path, shape } => (path, shape),
            Val::Poisoned => return Err("the data is poisoned".into()),
        };
        let mut out = shape.clone();
        let mut kw: [Vec<i64>; 4] = Default::default();
        for i in 0..n {
            let (d, size) = (axes[i], shape[axes[i]]);
            let Some(range) = ranges[d] else { continue };
            if range.count == 0 {
                return Err(format!(
                    "the slice of axis {d} is empty, and nnc has no empty tensors"
                ));
            }
            out[d] = range.count;
            if range.count == size && (size == 1 || range.step == 1) {
                continue; // The whole axis, in order.
            }
            // Starts and ends beyond the axis mean the same clamped to
            // `-(size + 1)..=size`, and stay small enough to print.
            let bound = size as i64;
            let [dims, starts_kw, ends_kw, steps_kw] = &mut kw;
            dims.push(d as i64);
            starts_kw.push(starts[i].clamp(-bound - 1, bound));
            ends_kw.push(ends[i].clamp(-bound - 1, bound));
            steps_kw.push(steps[i]);
        }
        let [dims, starts_kw, ends_kw, steps_kw] = kw;
        if dims.is_empty() {
            return one(Val::Dyn { path, shape });
        }
        let mut keywords = Vec::new();
        if dims.iter().enumerate().any(|(i, &d)| d != i as i64) {
            keywords.push(("dims", emit::ints(dims)));
        }
        keywords.push(("starts", emit::ints(starts_kw)));
        keywords.push(("ends", emit::ints(ends_kw)));
        if steps_kw.iter().any(|&s| s != 1) {
            keywords.push(("steps", emit::ints(steps_kw)));
        }
        let target = self.binding(node, None);
        one(self.emit(target, "slice", &[path], keywords, out))
    }

    /// Split into consecutive parts along `axis`: of the sizes `split` (an
    /// attribute before opset 13, an input from 13), else `num_outputs`
    /// parts (opset 18) of `ceil(size / num_outputs)` with a smaller last
    /// one, else equal parts, one per output. Each used output is a `slice`.
    pub(super) fn split(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let shape = self.shape_of(node, 0)?;
        let dim = axis(a.int("axis", 0)?, shape.len(), "`axis`")?;
        let size = shape[dim];
        let parts = node.output.len();
        let split = if self.opset < 13 {
            a.ints("split")?
        } else {
            self.constant(node, 1, "the split sizes")?
                .map(|c| int_list(&c))
        };
        let num_outputs = if self.opset >= 18 && a.has("num_outputs") {
            Some(a.int("num_outputs", 0)?)
        } else {
            None
        };
        let sizes: Vec<usize> = match (split, num_outputs) {
            (Some(split), _) => split
                .iter()
                .map(|&s| usize::try_from(s).ok().filter(|&s| s >= 1))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    format!(
                        "split sizes {split:?} include an empty part, and nnc has no empty tensors"
                    )
                })?,
            (None, Some(k)) => {
                let k = usize::try_from(k)
                    .ok()
                    .filter(|&k| k >= 1 && k <= size)
                    .ok_or_else(|| format!("{k} outputs for an axis of size {size}"))?;
                let chunk = size.div_ceil(k);
                let last = size
                    .checked_sub(chunk * (k - 1))
                    .filter(|&l| l >= 1)
                    .ok_or_else(|| format!("{size} cannot be split into {k} parts of {chunk}"))?;
                let mut sizes = vec![chunk; k - 1];
                sizes.push(last);
                sizes
            }
            (None, None) if parts >= 1 && size.is_multiple_of(parts) => {
                vec![size / parts; parts]
            }
            (None, None) => {
                return Err(format!(
                    "an axis of size {size} cannot be split into {parts} equal parts"
                ))
            }
        };
        if sizes.len() != parts || sizes.iter().sum::<usize>() != size {
            return Err(format!(
                "split sizes {sizes:?} do not cut an axis of size {size} into {parts} parts"
            ));
        }
        let data = self.arg(node, 0)?.ok_or("the input is required")?;
        let mut outputs = Vec::with_capacity(parts);
        let mut first = 0;
        for (out, &count) in node.output.iter().zip(&sizes) {
            let range = (first, first + count);
            first += count;
            if out.is_empty() || !self.used.contains(out.as_str()) {
                outputs.push(None);
                continue;
            }
            let value = match &data {
                Val::Const(c) => {
                    let index: Vec<usize> = (range.0..range.1).collect();
                    Val::Const(Rc::new(pick(c, &[(dim, index)])?))
                }
                Val::Dyn { .. } if count == size => data.clone(),
                Val::Dyn { path, shape } => {
                    let mut part = shape.clone();
                    part[dim] = count;
                    let target = self.named(out, "split");
                    let keywords = vec![
                        ("dims", emit::ints([dim as i64])),
                        ("starts", emit::ints([range.0 as i64])),
                        ("ends", emit::ints([range.1 as i64])),
                    ];
                    self.emit(target, "slice", std::slice::from_ref(path), keywords, part)
                }
                Val::Poisoned => return Err("the input is poisoned".into()),
            };
            outputs.push(Some(value));
        }
        Ok(outputs)
    }

    /// Gather of a computed tensor by a list of constant indices (already
    /// checked and made non-negative) along `dim`: an `index_select`, or
    /// nothing when it takes every index in order.
    pub(super) fn index_select(
        &mut self,
        node: &NodeProto,
        path: String,
        shape: Vec<usize>,
        dim: usize,
        index: &[usize],
    ) -> Outputs {
        if index.is_empty() {
            return Err(
                "Gather by no indices gives an empty tensor, which nnc does not have".into(),
            );
        }
        if index.len() == shape[dim] && index.iter().enumerate().all(|(i, &j)| i == j) {
            return one(Val::Dyn { path, shape });
        }
        let mut out = shape;
        out[dim] = index.len();
        let target = self.binding(node, None);
        let keywords = vec![
            ("dim", emit::int(dim as i64)),
            ("index", emit::ints(index.iter().map(|&i| i as i64))),
        ];
        one(self.emit(target, "index_select", &[path], keywords, out))
    }

    /// Tile by constant repeats, one per axis: a `repeat`.
    pub(super) fn tile(&mut self, node: &NodeProto) -> Outputs {
        let repeats = int_list(&self.required_constant(node, 1, "the repeats")?);
        let data = self.arg(node, 0)?.ok_or("the input is required")?;
        let shape = match &data {
            Val::Const(c) => c.dims.clone(),
            Val::Dyn { shape, .. } => shape.clone(),
            Val::Poisoned => return Err("the input is poisoned".into()),
        };
        if repeats.len() != shape.len() {
            return Err(format!(
                "{} repeats for {} axes",
                repeats.len(),
                shape.len()
            ));
        }
        if let Some(r) = repeats.iter().find(|&&r| r < 1) {
            return Err(format!(
                "a repeat count of {r} gives an empty tensor, which nnc does not have"
            ));
        }
        let out = shape
            .iter()
            .zip(&repeats)
            .map(|(&n, &r)| n.checked_mul(r as usize))
            .collect::<Option<Vec<usize>>>()
            .filter(|out| numel(out).is_some())
            .ok_or("the tiled shape overflows")?;
        match data {
            Val::Const(c) => {
                // The index lists below are as long as the result's dims:
                // check its size before building them.
                self.data_dir.check("the tiled constant", &out, 8)?;
                numel(&out)
                    .filter(|&n| n <= MAX_CONSTANT)
                    .ok_or("the tiled constant is too large")?;
                let picks: Vec<(usize, Vec<usize>)> = (0..shape.len())
                    .filter(|&d| out[d] != shape[d])
                    .map(|d| (d, (0..out[d]).map(|i| i % shape[d]).collect()))
                    .collect();
                constant_out(pick(&c, &picks)?)
            }
            Val::Dyn { path, shape } if out == shape => one(Val::Dyn { path, shape }),
            Val::Dyn { path, .. } => {
                let target = self.binding(node, None);
                let keywords = vec![("repeats", emit::ints(repeats))];
                one(self.emit(target, "repeat", &[path], keywords, out))
            }
            Val::Poisoned => Err("the input is poisoned".into()),
        }
    }

    /// Expand to a constant shape, NumPy broadcasting both ways: an
    /// `expand` to the broadcast shape, or a `reshape` when only leading
    /// dims of size 1 are added.
    pub(super) fn expand(&mut self, node: &NodeProto) -> Outputs {
        let target = int_list(&self.required_constant(node, 1, "the shape")?);
        let target = target
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d >= 1))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format!("target shape {target:?} has sizes below 1"))?;
        let shape = self.shape_of(node, 0)?;
        let out = broadcast_dims(&shape, &target)
            .filter(|out| numel(out).is_some_and(|n| n <= super::MAX_ELEMENTS))
            .ok_or_else(|| format!("{shape:?} cannot be broadcast to {target:?}"))?;
        if numel(&out) == numel(&shape) {
            return self.reshaped(node, out);
        }
        match self.arg(node, 0)?.ok_or("the input is required")? {
            Val::Const(c) => {
                let lead = out.len() - shape.len();
                let mut aligned = vec![1; lead];
                aligned.extend_from_slice(&shape);
                self.data_dir.check("the expanded constant", &out, 8)?;
                numel(&out)
                    .filter(|&n| n <= MAX_CONSTANT)
                    .ok_or("the expanded constant is too large")?;
                let picks: Vec<(usize, Vec<usize>)> = (0..out.len())
                    .filter(|&d| aligned[d] != out[d])
                    .map(|d| (d, vec![0; out[d]]))
                    .collect();
                constant_out(pick(&c.reshaped(aligned), &picks)?)
            }
            Val::Dyn { path, .. } => {
                let target = self.binding(node, None);
                let keywords = vec![("shape", emit::ints(out.iter().map(|&d| d as i64)))];
                one(self.emit(target, "expand", &[path], keywords, out))
            }
            Val::Poisoned => Err("the input is poisoned".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{slice_range, Range};

    fn range(first: usize, count: usize, step: i64) -> Range {
        Range { first, count, step }
    }

    /// ONNX's clamping, as ONNX Runtime computes it.
    #[test]
    fn slice_ranges_clamp_like_onnx() {
        assert_eq!(slice_range(5, 1, 4, 1), range(1, 3, 1));
        assert_eq!(slice_range(5, -2, i64::MAX, 1), range(3, 2, 1));
        assert_eq!(slice_range(5, -1, i64::MIN, -1), range(4, 5, -1));
        assert_eq!(slice_range(5, 10, -10, -2), range(4, 3, -2));
        assert_eq!(slice_range(5, 3, 1, 1).count, 0);
        assert_eq!(slice_range(5, 0, 5, i64::MAX), range(0, 1, i64::MAX));
        assert_eq!(range(4, 3, -2).indices(), vec![4, 2, 0]);
    }
}
