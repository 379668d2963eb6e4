//! BatchNormalization, InstanceNormalization, GroupNormalization,
//! LayerNormalization and LRN.

use super::attrs::Attrs;
use super::{axis, one, owner_of, Converter, Outputs};
use crate::onnx::constant::broadcast_dims;
use crate::onnx::emit;
use crate::onnx::proto::NodeProto;

impl Converter<'_> {
    /// A per-channel parameter of `c` values.
    fn channel_param(
        &self,
        node: &NodeProto,
        i: usize,
        what: &str,
        c: usize,
    ) -> Result<Vec<f32>, String> {
        let p = self.required_constant(node, i, what)?;
        if p.data.len() != c {
            return Err(format!("{what} has shape {:?}, not [{c}]", p.dims));
        }
        Ok(p.data.to_f32())
    }

    fn channels(shape: &[usize], min_rank: usize) -> Result<usize, String> {
        if shape.len() < min_rank {
            return Err(format!(
                "the input has shape {shape:?}; rank {min_rank} or more is needed"
            ));
        }
        Ok(shape[1])
    }

    /// BatchNormalization with its running statistics. The legacy
    /// attributes: `is_test` (before opset 7) must be 1 and `spatial`
    /// (before opset 9) must be 1, the forms that every later opset has.
    pub(super) fn batch_norm(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let c = Self::channels(&x.1, 2)?;
        let eps = a.float("epsilon", 1e-5)?;
        a.ignore("momentum");
        if self.opset >= 14 && a.int("training_mode", 0)? != 0 {
            return Err(
                "training_mode=1 computes batch statistics; nnc imports inference graphs".into(),
            );
        }
        if self.opset < 7 && a.int("is_test", 0)? == 0 {
            return Err(
                "is_test=0 (the default before opset 7) computes batch statistics; nnc imports inference graphs (is_test=1)"
                    .into(),
            );
        }
        if self.opset < 9 && a.int("spatial", 1)? != 1 {
            return Err("spatial=0 (per-element statistics) is not supported".into());
        }
        let params = ["scale", "B", "input_mean", "input_var"];
        let values = (0..4)
            .map(|i| self.channel_param(node, i + 1, params[i], c))
            .collect::<Result<Vec<_>, String>>()?;
        let target = self.binding(node, owner_of(node.input[1].as_str()));
        for (suffix, v) in ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .zip(values)
        {
            self.weight(&target, suffix, vec![c], v);
        }
        let kw = if eps == 1e-5 {
            vec![]
        } else {
            vec![("eps", emit::float(eps))]
        };
        let y = self.emit(target, "batch_norm", &[x.0], kw, x.1);
        Ok(vec![Some(y), None, None, None, None])
    }

    pub(super) fn instance_norm(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let c = Self::channels(&x.1, 3)?;
        let eps = a.float("epsilon", 1e-5)?;
        let scale = self.channel_param(node, 1, "scale", c)?;
        let bias = self.channel_param(node, 2, "B", c)?;
        let target = self.binding(node, owner_of(node.input[1].as_str()));
        self.weight(&target, "weight", vec![c], scale);
        self.weight(&target, "bias", vec![c], bias);
        let kw = vec![("eps", emit::float(eps)), ("affine", emit::boolean(true))];
        one(self.emit(target, "instance_norm", &[x.0], kw, x.1))
    }

    /// LRN: `local_response_norm` with ONNX's window, which starts
    /// `(size - 1) / 2` channels before the channel normalised; PyTorch's
    /// (the `.nn` default) starts `size / 2` before, one more for even
    /// sizes, so those are written with `before`.
    pub(super) fn lrn(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        Self::channels(&x.1, 3)?;
        let size = a.int("size", 0)?;
        if size < 1 {
            return Err(format!("`size` {size} is not a positive channel count"));
        }
        let mut kw = vec![
            ("size", emit::int(size)),
            ("alpha", emit::float(a.float("alpha", 1e-4)?)),
            ("beta", emit::float(a.float("beta", 0.75)?)),
            ("k", emit::float(a.float("bias", 1.0)?)),
        ];
        if size % 2 == 0 {
            kw.push(("before", emit::int((size - 1) / 2)));
        }
        let target = self.binding(node, None);
        one(self.emit(target, "local_response_norm", &[x.0], kw, x.1))
    }

    /// GroupNormalization: scale and bias are per group in opset 18 (each
    /// repeated over the group's channels here) and per channel from 21.
    pub(super) fn group_norm(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let c = Self::channels(&x.1, 3)?;
        let eps = a.float("epsilon", 1e-5)?;
        a.ignore("stash_type");
        let groups = a.int("num_groups", 0)?;
        if groups < 1 || c % groups as usize != 0 {
            return Err(format!(
                "num_groups {groups} does not divide the {c} channels"
            ));
        }
        let groups = groups as usize;
        let mut params = Vec::new();
        for (i, what) in [(1, "scale"), (2, "bias")] {
            let p = self.required_constant(node, i, what)?.data.to_f32();
            params.push(match p.len() {
                n if n == c => p,
                n if n == groups => p
                    .iter()
                    .flat_map(|&v| std::iter::repeat_n(v, c / groups))
                    .collect(),
                n => {
                    return Err(format!(
                        "{what} has {n} values, neither {c} channels nor {groups} groups"
                    ))
                }
            });
        }
        let target = self.binding(node, owner_of(node.input[1].as_str()));
        let bias = params.pop().unwrap_or_default();
        let scale = params.pop().unwrap_or_default();
        self.weight(&target, "weight", vec![c], scale);
        self.weight(&target, "bias", vec![c], bias);
        let kw = vec![
            ("groups", emit::int(groups as i64)),
            ("eps", emit::float(eps)),
        ];
        one(self.emit(target, "group_norm", &[x.0], kw, x.1))
    }

    /// LayerNormalization over the dims from `axis` on; scale and bias
    /// broadcast to that shape are expanded to it (nnc's weights have the
    /// normalised shape), and a missing bias is zero.
    pub(super) fn layer_norm(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let rank = x.1.len();
        let from = axis(a.int("axis", -1)?, rank, "`axis`")?;
        let eps = a.float("epsilon", 1e-5)?;
        a.ignore("stash_type");
        let normalized = x.1[from..].to_vec();
        let count: usize = normalized.iter().product();
        let expand = |c: &std::rc::Rc<crate::onnx::constant::Constant>,
                      what: &str|
         -> Result<Vec<f32>, String> {
            if broadcast_dims(&c.dims, &normalized).as_deref() != Some(&normalized[..]) {
                return Err(format!(
                    "{what} of shape {:?} does not broadcast to {normalized:?}",
                    c.dims
                ));
            }
            let data = c.data.to_f32();
            // Index the broadcast operand by the trailing dims it has.
            let lead = normalized.len() - c.dims.len();
            Ok((0..count)
                .map(|flat| {
                    let (mut rest, mut offset, mut stride) = (flat, 0, 1);
                    for d in (0..normalized.len()).rev() {
                        let i = rest % normalized[d];
                        rest /= normalized[d];
                        if d >= lead && c.dims[d - lead] != 1 {
                            offset += i * stride;
                        }
                        if d >= lead {
                            stride *= c.dims[d - lead];
                        }
                    }
                    data[offset]
                })
                .collect())
        };
        let scale = expand(&self.required_constant(node, 1, "scale")?, "scale")?;
        let bias = match self.constant(node, 2, "B")? {
            Some(b) => expand(&b, "B")?,
            None => vec![0.0; count],
        };
        let target = self.binding(node, owner_of(node.input[1].as_str()));
        self.weight(&target, "weight", normalized.clone(), scale);
        self.weight(&target, "bias", normalized.clone(), bias);
        let kw = vec![
            ("dims", emit::int((rank - from) as i64)),
            ("eps", emit::float(eps)),
        ];
        let y = self.emit(target, "layer_norm", &[x.0], kw, x.1);
        Ok(vec![Some(y), None, None])
    }
}
