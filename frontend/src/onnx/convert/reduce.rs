//! ReduceMean, ReduceSum, ReduceMax, ReduceMin and GlobalMaxPool: the
//! `.nn` reductions `mean`, `sum`, `amax` and `amin`.

use super::attrs::Attrs;
use super::{axis, int_list, one, Converter, Outputs, Val};
use crate::onnx::emit;
use crate::onnx::proto::NodeProto;

impl Converter<'_> {
    /// A `Reduce*` node as the `.nn` reduction `dsl`. The axes are an
    /// attribute up to the opset that made them an input (`input_from`: 13
    /// for ReduceSum, 18 for the others); no axes reduce every dim, or
    /// none with `noop_with_empty_axes`.
    pub(super) fn reduce(
        &mut self,
        node: &NodeProto,
        a: &mut Attrs<'_>,
        dsl: &str,
        input_from: i64,
    ) -> Outputs {
        let (path, shape) = self.dynamic(node, 0)?;
        let rank = shape.len();
        let keep = a.int("keepdims", 1)? != 0;
        let noop = a.int("noop_with_empty_axes", 0)? != 0;
        let written = if self.opset < input_from {
            a.ints("axes")?
        } else {
            self.constant(node, 1, "the axes")?.map(|c| int_list(&c))
        }
        .unwrap_or_default();
        if written.is_empty() && noop {
            return one(Val::Dyn { path, shape });
        }
        let mut dims = written
            .iter()
            .map(|&x| axis(x, rank, "axis"))
            .collect::<Result<Vec<_>, _>>()?;
        dims.sort_unstable();
        if dims.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("the axes {written:?} repeat a dim"));
        }
        if dims.is_empty() {
            dims = (0..rank).collect();
        }
        let out = shape
            .iter()
            .enumerate()
            .filter_map(|(d, &size)| match (dims.contains(&d), keep) {
                (false, _) => Some(size),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        let mut keywords = vec![("dims", emit::ints(dims.iter().map(|&d| d as i64)))];
        if keep {
            keywords.push(("keepdim", emit::boolean(true)));
        }
        let target = self.binding(node, None);
        one(self.emit(target, dsl, &[path], keywords, out))
    }

    /// GlobalMaxPool: `global_max_pool` on `[N, C, H, W]`, `amax` over
    /// every dim after `C` (kept) on other ranks.
    pub(super) fn global_max_pool(&mut self, node: &NodeProto) -> Outputs {
        let (path, shape) = self.dynamic(node, 0)?;
        if shape.len() < 3 {
            return Err(format!(
                "the input has shape {shape:?}; GlobalMaxPool takes [N, C, D1, ...]"
            ));
        }
        let mut out = shape.clone();
        out[2..].fill(1);
        let target = self.binding(node, None);
        if shape.len() == 4 {
            return one(self.emit(target, "global_max_pool", &[path], vec![], out));
        }
        let keywords = vec![
            ("dims", emit::ints((2..shape.len()).map(|d| d as i64))),
            ("keepdim", emit::boolean(true)),
        ];
        one(self.emit(target, "amax", &[path], keywords, out))
    }
}
