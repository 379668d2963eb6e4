//! Builders of the indexing ops (`slice`, `index_select`, `repeat`,
//! `expand`): their attributes are resolved against the operand's shape
//! here, where each error can point at the attribute that causes it.

use super::{dim_error, AttrReader};
use crate::ir::{
    ExpandAttrs, IndexSelectAttrs, Indexing, RepeatAttrs, SliceAttrs, SliceDim, TensorType,
};
use crate::shape::resolve_dim;
use nnc_frontend::Diagnostic;

/// Builds the indexing op `name` on an operand of type `x` (`None` when the
/// call has no operand, which `check_arity` reports). Every attribute is
/// read before the first error returns, so that unknown attributes are
/// still found.
pub(super) fn build(
    name: &str,
    r: &mut AttrReader<'_>,
    x: Option<&TensorType>,
) -> Option<Indexing> {
    match name {
        "slice" => slice(r, x).map(Indexing::Slice),
        "index_select" => index_select(r, x).map(Indexing::IndexSelect),
        "repeat" => repeat(r, x).map(Indexing::Repeat),
        "expand" => expand(r, x).map(Indexing::Expand),
        _ => {
            r.errors.push(
                Diagnostic::error(format!("internal error: the op `{name}` has no builder"))
                    .with_primary(r.call_span, "this op"),
            );
            None
        }
    }
}

/// The first index and the number of indices that ONNX's `Slice` (and
/// Python's slicing, for positive steps) takes from a dim of `size`:
/// negative `start` and `end` count from the end, then both are clamped to
/// the dim (to `-1..size` for the end of a negative step, so that it can
/// run through index 0). `step` is not 0.
pub fn slice_range(size: usize, start: i64, end: i64, step: i64) -> (usize, usize) {
    let n = size as i128;
    let resolve = |v: i64| {
        let v = i128::from(v);
        if v < 0 {
            v + n
        } else {
            v
        }
    };
    let step = i128::from(step);
    let (first, count) = if step > 0 {
        let (s, e) = (resolve(start).clamp(0, n), resolve(end).clamp(0, n));
        (s, if e > s { (e - s - 1) / step + 1 } else { 0 })
    } else {
        let (s, e) = (
            resolve(start).clamp(0, n - 1),
            resolve(end).clamp(-1, n - 1),
        );
        (s, if s > e { (s - e - 1) / -step + 1 } else { 0 })
    };
    (first.max(0) as usize, count as usize)
}

/// A required list-of-ints attribute.
fn required_ints(r: &mut AttrReader<'_>, name: &'static str, example: &str) -> Option<Vec<i64>> {
    let value = r.ints(name);
    if value.is_none() && !r.args.iter().any(|a| a.name == name) {
        r.missing(name, example);
    }
    value
}

/// Reports an error at the value of the attribute `attr`.
fn error(r: &mut AttrReader<'_>, attr: &str, message: String, label: String, help: &str) {
    let span = r.span_of(attr);
    let mut d = Diagnostic::error(message).with_primary(span, label);
    if !help.is_empty() {
        d = d.with_help(help);
    }
    r.errors.push(d);
}

/// A list as written: `[0, -1]`.
fn format_list(v: &[i64]) -> String {
    let items: Vec<String> = v.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// `1 end`, `2 ends`: a count of the entries of a list attribute.
fn entries(count: usize, attr: &str) -> String {
    match count {
        1 => format!("1 {}", attr.trim_end_matches('s')),
        _ => format!("{count} {attr}"),
    }
}

const PER_DIM: &str = "`dims`, `starts`, `ends` and `steps` list one entry per sliced dim";

fn slice(r: &mut AttrReader<'_>, x: Option<&TensorType>) -> Option<SliceAttrs> {
    let starts = required_ints(r, "starts", "[0]");
    let ends = required_ints(r, "ends", "[2]");
    let dims = r.ints("dims");
    let steps = r.ints("steps");
    let (starts, ends, x) = (starts?, ends?, x?);
    let n = starts.len();
    for (attr, len) in [
        ("ends", Some(ends.len())),
        ("dims", dims.as_ref().map(Vec::len)),
        ("steps", steps.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.filter(|&len| len != n) {
            let message = format!(
                "`slice` has {} but {}",
                entries(n, "starts"),
                entries(len, attr)
            );
            error(
                r,
                attr,
                message,
                format!("expected {}", entries(n, attr)),
                PER_DIM,
            );
            return None;
        }
    }
    let dims = match dims {
        Some(dims) => {
            let mut resolved = Vec::with_capacity(n);
            for &d in &dims {
                match resolve_dim("slice", d, x.rank()) {
                    Ok(d) => resolved.push(d),
                    Err(e) => {
                        dim_error(r, "dims", e.message, e.label);
                        return None;
                    }
                }
            }
            if let Some(d) = (0..n).find(|&i| resolved[..i].contains(&resolved[i])) {
                let message = format!("`slice` lists dim {} twice", resolved[d]);
                error(
                    r,
                    "dims",
                    message,
                    "repeated dim".into(),
                    "slice each dim once",
                );
                return None;
            }
            resolved
        }
        None if n > x.rank() => {
            let message = format!("`slice` has {n} starts for the {} dims of {x}", x.rank());
            let label = format!("at most {} starts", x.rank());
            let help = "without `dims`, the starts are for dims 0, 1, ...";
            error(r, "starts", message, label, help);
            return None;
        }
        None => (0..n).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if steps.contains(&0) {
        let message = "`slice` steps must not be 0".to_string();
        error(r, "steps", message, "step of 0".into(), "");
        return None;
    }
    let mut sliced = Vec::with_capacity(n);
    for i in 0..n {
        let (dim, step) = (dims[i], steps[i]);
        let size = x.shape[dim];
        let (start, count) = slice_range(size, starts[i], ends[i], step);
        if count == 0 {
            let message = format!(
                "`slice` takes nothing from dim {dim} of {x}: start {}, end {}, step {step}",
                starts[i], ends[i]
            );
            let help = "a positive step needs an end after the start, a negative step an end before it; negative starts and ends count from the end";
            error(r, "ends", message, "empty slice".into(), help);
            return None;
        }
        sliced.push(SliceDim {
            dim,
            start,
            step,
            size: count,
        });
    }
    Some(SliceAttrs { dims: sliced })
}

fn index_select(r: &mut AttrReader<'_>, x: Option<&TensorType>) -> Option<IndexSelectAttrs> {
    let dim = r.int("dim");
    if dim.is_none() && !r.args.iter().any(|a| a.name == "dim") {
        r.missing("dim", "0");
    }
    let index = required_ints(r, "index", "[0, 2]");
    let (dim, index, x) = (dim?, index?, x?);
    let dim = match resolve_dim("index_select", dim, x.rank()) {
        Ok(d) => d,
        Err(e) => {
            dim_error(r, "dim", e.message, e.label);
            return None;
        }
    };
    if index.is_empty() {
        let message = "`index_select` needs at least one index".to_string();
        error(r, "index", message, "no indices".into(), "");
        return None;
    }
    let size = x.shape[dim] as i64;
    let mut resolved = Vec::with_capacity(index.len());
    for &i in &index {
        let j = if i < 0 { i + size } else { i };
        if !(0..size).contains(&j) {
            let message =
                format!("`index_select` index {i} is out of range for a dim of size {size}");
            let label = format!("indices must be in {}..{size}", -size);
            let help =
                "indices count from 0; a negative index counts from the end, -1 being the last";
            error(r, "index", message, label, help);
            return None;
        }
        resolved.push(j as usize);
    }
    Some(IndexSelectAttrs {
        dim,
        index: resolved,
    })
}

fn repeat(r: &mut AttrReader<'_>, x: Option<&TensorType>) -> Option<RepeatAttrs> {
    let repeats = required_ints(r, "repeats", "[1, 2]");
    let (repeats, x) = (repeats?, x?);
    if repeats.len() < x.rank() {
        let message = format!(
            "`repeat` needs a count for each of the {} dims of {x}, found {}",
            x.rank(),
            format_list(&repeats)
        );
        let label = format!("at least {} counts", x.rank());
        let help = "counts align with the last dims; extra counts in front add leading dims, as in `Tensor.repeat`";
        error(r, "repeats", message, label, help);
        return None;
    }
    if repeats.iter().any(|&c| c < 1) {
        let message = format!(
            "`repeat` counts must be at least 1, found {}",
            format_list(&repeats)
        );
        error(r, "repeats", message, "count below 1".into(), "");
        return None;
    }
    Some(RepeatAttrs {
        repeats: repeats.iter().map(|&c| c as usize).collect(),
    })
}

fn expand(r: &mut AttrReader<'_>, x: Option<&TensorType>) -> Option<ExpandAttrs> {
    let shape = required_ints(r, "shape", "[2, -1]");
    let (spec, x) = (shape?, x?);
    let Some(lead) = spec.len().checked_sub(x.rank()) else {
        let message = format!("`expand` to {} has fewer dims than {x}", format_list(&spec));
        let label = format!("at least {} sizes", x.rank());
        let help = "list every dim of the result; -1 keeps a dim's size";
        error(r, "shape", message, label, help);
        return None;
    };
    let mut shape = Vec::with_capacity(spec.len());
    for (d, &s) in spec.iter().enumerate() {
        let size = d.checked_sub(lead).map(|i| x.shape[i]);
        match (s, size) {
            (-1, Some(size)) => shape.push(size),
            (-1, None) => {
                let message = format!("`expand` cannot keep the size of new dim {d}");
                let label = "-1 only keeps a dim the input has".to_string();
                let help = "give new leading dims a size";
                error(r, "shape", message, label, help);
                return None;
            }
            (s, _) if s < 1 => {
                let message = format!("`expand` sizes must be at least 1, or -1, found {s}");
                error(r, "shape", message, "size below 1".into(), "");
                return None;
            }
            (s, Some(size)) if size != 1 && size as i64 != s => {
                let message = format!(
                    "`expand` cannot change dim {} of {x} from {size} to {s}",
                    d - lead
                );
                let help = "only dims of size 1 grow; -1 or the dim's own size keeps it";
                error(
                    r,
                    "shape",
                    message,
                    "only dims of size 1 expand".into(),
                    help,
                );
                return None;
            }
            (s, _) => shape.push(s as usize),
        }
    }
    Some(ExpandAttrs { shape })
}

#[cfg(test)]
mod tests {
    use super::slice_range;

    /// ONNX's clamping: negative indices count from the end, out-of-range
    /// ones clamp, and a negative step's end clamps to -1 (through 0).
    #[test]
    fn slice_ranges_clamp_like_onnx() {
        assert_eq!(slice_range(5, 1, 4, 1), (1, 3));
        assert_eq!(slice_range(5, 0, 5, 2), (0, 3));
        assert_eq!(slice_range(5, -2, i64::MAX, 1), (3, 2));
        assert_eq!(slice_range(5, i64::MIN, -1, 1), (0, 4));
        assert_eq!(slice_range(5, -1, i64::MIN, -1), (4, 5));
        assert_eq!(slice_range(5, 10, -10, -2), (4, 3));
        assert_eq!(slice_range(5, 4, 1, -3), (4, 1));
        assert_eq!(slice_range(5, 3, 1, 1), (3, 0));
        assert_eq!(slice_range(5, 1, 3, -1), (1, 0));
        assert_eq!(slice_range(5, 0, 5, i64::MAX), (0, 1));
        assert_eq!(slice_range(5, 4, -6, i64::MIN), (4, 1));
    }
}
