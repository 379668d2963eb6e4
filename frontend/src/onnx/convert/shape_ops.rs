//! Shape ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat,
//! Pad), the ops of shape arithmetic that are folded at import (Shape,
//! Gather, Constant, ConstantOfShape, Cast), and the inputs of Slice (whose
//! conversion, with Gather's of computed tensors, is in `indexing.rs`).

use super::attrs::Attrs;
use super::{axis, constant_out, int_list, one, Converter, Outputs, Val};
use crate::onnx::constant::{numel, Constant, Data, MAX_CONSTANT};
use crate::onnx::emit;
use crate::onnx::proto::{tensor_proto::DataType, NodeProto};
use std::rc::Rc;

impl Converter<'_> {
    /// Gives operand 0 a new shape: folded for constants, no binding when
    /// the shape does not change, else a `reshape` (or `flatten` when that
    /// is what it is).
    pub(super) fn reshaped(&mut self, node: &NodeProto, dims: Vec<usize>) -> Outputs {
        match self.arg(node, 0)?.ok_or("the input is required")? {
            Val::Const(c) => constant_out(c.reshaped(dims)),
            Val::Dyn { path, shape } if shape == dims => one(Val::Dyn { path, shape }),
            Val::Dyn { path, shape } => {
                let target = self.binding(node, None);
                let flattens = shape.len() >= 2 && dims.len() == 2 && dims[0] == shape[0];
                if flattens {
                    one(self.emit(target, "flatten", &[path], vec![], dims))
                } else {
                    let list: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                    one(self.emit(
                        target,
                        "reshape",
                        &[path],
                        vec![("shape", emit::ints(list))],
                        dims,
                    ))
                }
            }
            Val::Poisoned => Err("the input is poisoned".into()),
        }
    }

    pub(super) fn shape_of(&self, node: &NodeProto, i: usize) -> Result<Vec<usize>, String> {
        match self.arg(node, i)? {
            Some(Val::Const(c)) => Ok(c.dims.clone()),
            Some(Val::Dyn { shape, .. }) => Ok(shape),
            _ => Err(format!("input {i} is required")),
        }
    }

    pub(super) fn reshape(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let input = self.shape_of(node, 0)?;
        let spec = int_list(&self.required_constant(node, 1, "the target shape")?);
        let allow_zero = a.int("allowzero", 0)? != 0;
        let count = numel(&input).ok_or("the input shape overflows")?;
        let mut dims = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                0 if !allow_zero => dims.push(
                    *input
                        .get(i)
                        .ok_or("a 0 in the shape has no input dim to copy")?,
                ),
                -1 if infer.is_none() => {
                    infer = Some(i);
                    dims.push(1);
                }
                d if d >= 1 => dims.push(d as usize),
                _ => {
                    return Err(format!(
                        "target shape {spec:?} is not supported (sizes of 0, or more than one -1)"
                    ))
                }
            }
        }
        let known = numel(&dims).ok_or_else(|| format!("target shape {spec:?} overflows"))?;
        if let Some(i) = infer {
            if known == 0 || !count.is_multiple_of(known) {
                return Err(format!("cannot reshape {input:?} to {spec:?}"));
            }
            dims[i] = count / known;
        } else if known != count {
            return Err(format!("cannot reshape {input:?} to {spec:?}"));
        }
        self.reshaped(node, dims)
    }

    pub(super) fn flatten(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let input = self.shape_of(node, 0)?;
        let rank = input.len();
        let raw = a.int("axis", 1)?;
        let at = if raw == rank as i64 {
            rank
        } else {
            axis(raw, rank, "`axis`")?
        };
        let rows: usize = input[..at].iter().product();
        let cols: usize = input[at..].iter().product();
        self.reshaped(node, vec![rows, cols])
    }

    /// Squeeze and Unsqueeze, with axes as an attribute (opset < 13) or a
    /// constant input.
    pub(super) fn squeeze(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let input = self.shape_of(node, 0)?;
        let axes = if self.opset < 13 {
            a.ints("axes")?
        } else {
            self.constant(node, 1, "the axes")?.map(|c| int_list(&c))
        };
        let dims = if node.op_type() == "Squeeze" {
            match axes {
                None => input.iter().copied().filter(|&d| d != 1).collect(),
                Some(axes) => {
                    let axes = axes
                        .iter()
                        .map(|&x| axis(x, input.len(), "axis"))
                        .collect::<Result<Vec<_>, _>>()?;
                    if let Some(&bad) = axes.iter().find(|&&x| input[x] != 1) {
                        return Err(format!(
                            "axis {bad} of {input:?} has size {}, not 1",
                            input[bad]
                        ));
                    }
                    input
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                }
            }
        } else {
            let axes = axes.ok_or("the axes are required")?;
            let rank = input.len() + axes.len();
            let axes = axes
                .iter()
                .map(|&x| axis(x, rank, "axis"))
                .collect::<Result<Vec<_>, _>>()?;
            let mut rest = input.iter();
            (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        Some(1)
                    } else {
                        rest.next().copied()
                    }
                })
                .collect::<Option<Vec<usize>>>()
                .ok_or("repeated axes")?
        };
        self.reshaped(node, dims)
    }

    pub(super) fn transpose(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let input = self.shape_of(node, 0)?;
        let rank = input.len();
        let perm = match a.ints("perm")? {
            Some(p) => p
                .iter()
                .map(|&x| axis(x, rank, "perm entry"))
                .collect::<Result<Vec<_>, _>>()?,
            None => (0..rank).rev().collect(),
        };
        let mut seen = vec![false; rank];
        if perm.len() != rank || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
            return Err(format!(
                "`perm` {perm:?} is not a permutation of {rank} dims"
            ));
        }
        match self.arg(node, 0)?.ok_or("the input is required")? {
            Val::Const(c) => constant_out(c.transposed(&perm)),
            Val::Dyn { path, shape } if perm.iter().enumerate().all(|(i, &p)| i == p) => {
                one(Val::Dyn { path, shape })
            }
            Val::Dyn { path, shape } => {
                let out = perm.iter().map(|&p| shape[p]).collect();
                let target = self.binding(node, None);
                let dims: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                one(self.emit(
                    target,
                    "permute",
                    &[path],
                    vec![("dims", emit::ints(dims))],
                    out,
                ))
            }
            Val::Poisoned => Err("the input is poisoned".into()),
        }
    }

    pub(super) fn concat(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let n = node.input.len();
        let first = self.shape_of(node, 0)?;
        // Required from opset 4 on; only opset 1 had a default.
        let raw = a.optional_int("axis")?.ok_or("`axis` is required")?;
        let dim = axis(raw, first.len(), "`axis`")?;
        let values = (0..n)
            .map(|i| self.arg(node, i))
            .collect::<Result<Vec<_>, _>>()?;
        let consts: Option<Vec<Rc<Constant>>> = values
            .iter()
            .map(|v| match v {
                Some(Val::Const(c)) => Some(c.clone()),
                _ => None,
            })
            .collect();
        if let Some(consts) = consts {
            let refs: Vec<&Constant> = consts.iter().map(|c| c.as_ref()).collect();
            return constant_out(
                Constant::concatenated(&refs, dim).ok_or("nothing to concatenate")?,
            );
        }
        let mut operands = Vec::new();
        let mut shape = first.clone();
        shape[dim] = 0;
        for i in 0..n {
            let (path, s) = self.dynamic(node, i)?;
            if s.len() != first.len() || (0..s.len()).any(|d| d != dim && s[d] != first[d]) {
                return Err(format!(
                    "operand shapes {first:?} and {s:?} differ outside axis {dim}"
                ));
            }
            shape[dim] = shape[dim]
                .checked_add(s[dim])
                .ok_or("the concatenated size overflows")?;
            operands.push(path);
        }
        let target = self.binding(node, None);
        one(self.emit(
            target,
            "concat",
            &operands,
            vec![("dim", emit::int(dim as i64))],
            shape,
        ))
    }

    /// Shape is known at import time, since every shape is static.
    pub(super) fn shape(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let dims = self.shape_of(node, 0)?;
        let rank = dims.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
        let start = clamp(a.int("start", 0)?);
        let end = clamp(a.int("end", rank)?);
        let values = dims
            .get(start..end.max(start))
            .unwrap_or(&[])
            .iter()
            .map(|&d| d as i64)
            .collect();
        constant_out(Constant::ints(values))
    }

    /// Gather of constants is folded; Gather of a computed tensor with one
    /// constant index is `select`, with a list of them `index_select`.
    pub(super) fn gather(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let data_shape = self.shape_of(node, 0)?;
        let dim = axis(a.int("axis", 0)?, data_shape.len(), "`axis`")?;
        let index = self.required_constant(node, 1, "the indices")?;
        let size = data_shape[dim] as i64;
        let positions = int_list(&index)
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + size } else { i };
                if (0..size).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(format!("index {i} is out of range for size {size}"))
                }
            })
            .collect::<Result<Vec<usize>, String>>()?;
        match self.arg(node, 0)?.ok_or("the data is required")? {
            Val::Const(c) => {
                c.gather_size(dim, positions.len())
                    .ok_or("the gathered constant is too large")?;
                constant_out(c.gathered(dim, &positions, &index.dims))
            }
            Val::Dyn { path, shape } if index.dims.is_empty() => {
                let mut out = shape;
                out.remove(dim);
                let target = self.binding(node, None);
                let kw = vec![
                    ("dim", emit::int(dim as i64)),
                    ("index", emit::int(positions[0] as i64)),
                ];
                one(self.emit(target, "select", &[path], kw, out))
            }
            Val::Dyn { path, shape } if index.dims.len() == 1 => {
                self.index_select(node, path, shape, dim, &positions)
            }
            _ => Err(
                "Gather of a computed tensor is supported with indices of rank 0 or 1 only".into(),
            ),
        }
    }

    pub(super) fn constant_node(&mut self, a: &mut Attrs<'_>) -> Outputs {
        if let Some(t) = a.tensor("value", &self.data_dir)? {
            return constant_out(t);
        }
        if a.has("value_float") {
            return constant_out(Constant {
                dims: vec![],
                data: Data::F32(vec![a.float("value_float", 0.0)?]),
            });
        }
        if let Some(v) = a.floats("value_floats")? {
            return constant_out(Constant {
                dims: vec![v.len()],
                data: Data::F32(v),
            });
        }
        if a.has("value_int") {
            return constant_out(Constant {
                dims: vec![],
                data: Data::I64(vec![a.int("value_int", 0)?]),
            });
        }
        if let Some(v) = a.ints("value_ints")? {
            return constant_out(Constant::ints(v));
        }
        Err(
            "only tensor, float and int values are supported (not sparse or string constants)"
                .into(),
        )
    }

    pub(super) fn constant_of_shape(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let dims = int_list(&self.required_constant(node, 0, "the shape")?)
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("negative size {d}")))
            .collect::<Result<Vec<usize>, String>>()?;
        let value = a.tensor("value", &self.data_dir)?.map(|v| v.data);
        let width = match value {
            None | Some(Data::F32(_)) => 4,
            Some(Data::I64(_)) => 8,
        };
        self.data_dir.check("the constant", &dims, width)?;
        let count = numel(&dims)
            .filter(|&n| n <= MAX_CONSTANT)
            .ok_or_else(|| format!("a constant of shape {dims:?} is too large"))?;
        let data = match value {
            None => Data::F32(vec![0.0; count]),
            Some(Data::F32(v)) => Data::F32(vec![v.first().copied().unwrap_or(0.0); count]),
            Some(Data::I64(v)) => Data::I64(vec![v.first().copied().unwrap_or(0); count]),
        };
        constant_out(Constant { dims, data })
    }

    /// Cast of a constant converts it; a cast of a computed float tensor to
    /// float is the identity (nnc computes in float32).
    pub(super) fn cast(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        a.ignore("saturate");
        let to = DataType::try_from(a.int("to", 0)? as i32).unwrap_or(DataType::Undefined);
        let float = matches!(
            to,
            DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16
        );
        match self.arg(node, 0)?.ok_or("the input is required")? {
            Val::Const(c) => {
                let data = if float {
                    Data::F32(c.data.to_f32())
                } else {
                    Data::I64(c.data.to_i64())
                };
                constant_out(Constant {
                    dims: c.dims.clone(),
                    data,
                })
            }
            v @ Val::Dyn { .. } if to == DataType::Float => Ok(vec![Some(v)]),
            _ => Err(format!(
                "a cast of a computed tensor to {} is not supported",
                to.as_str_name()
            )),
        }
    }

    /// Pad with constant pads, value and (opset 18) axes, given as inputs
    /// from opset 11 and as the attributes `pads` and `value` before.
    pub(super) fn pad(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let (path, shape) = self.dynamic(node, 0)?;
        let rank = shape.len();
        let mode = a.string("mode", "constant")?;
        if !matches!(mode.as_str(), "constant" | "reflect" | "edge") {
            return Err(format!(
                "mode \"{mode}\" is not supported (constant, reflect, edge are)"
            ));
        }
        let (raw, value) = if self.opset < 11 {
            let pads = a.ints("pads")?.ok_or("`pads` is required")?;
            (pads, a.float("value", 0.0)?)
        } else {
            let pads = int_list(&self.required_constant(node, 1, "the pads")?);
            let value = self
                .constant(node, 2, "the constant value")?
                .and_then(|c| c.data.to_f32().first().copied())
                .unwrap_or(0.0);
            (pads, value)
        };
        if value.is_nan() {
            return Err("the constant value is NaN".into());
        }
        let axes = match self.constant(node, 3, "the axes")? {
            Some(c) => int_list(&c)
                .iter()
                .map(|&x| axis(x, rank, "axis"))
                .collect::<Result<Vec<_>, _>>()?,
            None => (0..rank).collect(),
        };
        if raw.len() != 2 * axes.len() {
            return Err(format!("{} pads given for {} axes", raw.len(), axes.len()));
        }
        // Negative pads crop.
        let mut pads = vec![0i64; 2 * rank];
        for (i, &ax) in axes.iter().enumerate() {
            pads[ax] = raw[i];
            pads[rank + ax] = raw[axes.len() + i];
        }
        if pads.iter().all(|&p| p == 0) {
            return one(Val::Dyn { path, shape });
        }
        let out = (0..rank)
            .map(|d| {
                let grown = shape[d] as i128 + i128::from(pads[d]) + i128::from(pads[rank + d]);
                usize::try_from(grown).ok().filter(|&g| g >= 1)
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format!("pads {raw:?} leave no elements, or too many"))?;
        let mut kw = vec![("pads", emit::ints(pads.iter().copied()))];
        if mode != "constant" {
            kw.push(("mode", emit::string(&mode)));
        } else if value != 0.0 {
            kw.push(("value", emit::float(value)));
        }
        let target = self.binding(node, None);
        one(self.emit(target, "pad", &[path], kw, out))
    }
}

impl Converter<'_> {
    /// Slice: from opset 10 starts, ends, axes and steps are inputs;
    /// before, the first three are attributes and the steps are 1.
    /// [`Converter::sliced`] converts it.
    pub(super) fn slice(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let (starts, ends, axes, steps) = if self.opset < 10 {
            let starts = a.ints("starts")?.ok_or("`starts` is required")?;
            let ends = a.ints("ends")?.ok_or("`ends` is required")?;
            (starts, ends, a.ints("axes")?, None)
        } else {
            let starts = int_list(&self.required_constant(node, 1, "starts")?);
            let ends = int_list(&self.required_constant(node, 2, "ends")?);
            let axes = self.constant(node, 3, "axes")?.map(|c| int_list(&c));
            let steps = self.constant(node, 4, "steps")?.map(|c| int_list(&c));
            (starts, ends, axes, steps)
        };
        self.sliced(node, &starts, &ends, axes, steps)
    }
}
