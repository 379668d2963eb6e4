//! One-to-one elementwise ops, Clip, binary arithmetic, Gemm, MatMul,
//! Softmax and LogSoftmax, Dropout and Identity.

use super::attrs::Attrs;
use super::{axis, constant_out, one, owner_of, Converter, Outputs, Val};
use crate::onnx::constant::{broadcast_dims, Constant, Data};
use crate::onnx::emit;
use crate::onnx::proto::NodeProto;
use std::rc::Rc;

/// A shape as a list attribute.
fn dims_expr(dims: &[usize]) -> crate::ast::Expr {
    emit::ints(dims.iter().map(|&d| d as i64))
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

impl Converter<'_> {
    /// An op of one operand that maps onto the `.nn` op `dsl`, with its
    /// float attributes renamed (`(onnx, .nn, default)`).
    pub(super) fn unary(
        &mut self,
        node: &NodeProto,
        a: &mut Attrs<'_>,
        dsl: &str,
        renames: &[(&str, &'static str, f32)],
    ) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let mut keywords = Vec::new();
        for &(onnx, name, default) in renames {
            keywords.push((name, emit::float(a.float(onnx, default)?)));
        }
        let target = self.binding(node, None);
        one(self.emit(target, dsl, &[x.0], keywords, x.1))
    }

    /// Selu: `.nn`'s `selu` has PyTorch's fixed constants, which are
    /// ONNX's defaults; other values are refused.
    pub(super) fn selu(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        const ALPHA: f32 = 1.673_263_2;
        const GAMMA: f32 = 1.050_701;
        let alpha = a.float("alpha", ALPHA)?;
        let gamma = a.float("gamma", GAMMA)?;
        let close = |v: f32, w: f32| (v - w).abs() <= 1e-6 * w;
        if !close(alpha, ALPHA) || !close(gamma, GAMMA) {
            return Err(format!(
                "Selu with alpha={alpha} and gamma={gamma}: nnc has only the standard \
                 constants ({ALPHA}, {GAMMA})"
            ));
        }
        self.unary(node, a, "selu", &[])
    }

    /// Gelu (opset 20), exact or with `approximate="tanh"`.
    pub(super) fn gelu(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let approximate = a.string("approximate", "none")?;
        let x = self.dynamic(node, 0)?;
        let keywords = match approximate.as_str() {
            "none" => vec![],
            "tanh" => vec![("approximate", emit::string("tanh"))],
            other => return Err(format!("Gelu approximate=\"{other}\" is not supported")),
        };
        let target = self.binding(node, None);
        one(self.emit(target, "gelu", &[x.0], keywords, x.1))
    }

    /// Clip with bounds as constant inputs;
    /// `[0, 6]` is `relu6` and `[0, inf)` is `relu`. A missing bound is
    /// written as the largest finite float, since the language has no
    /// infinity.
    pub(super) fn clip(&mut self, node: &NodeProto) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let bound = |c: Option<Rc<Constant>>, what: &str| -> Result<Option<f32>, String> {
            match c {
                None => Ok(None),
                Some(c) if c.data.to_f32().iter().any(|v| v.is_nan()) => {
                    Err(format!("`{what}` is NaN"))
                }
                Some(c) if c.data.len() == 1 => Ok(c.data.to_f32().first().copied()),
                Some(_) => Err(format!("`{what}` must be a scalar")),
            }
        };
        // From opset 11 (the oldest nnc imports) the bounds are inputs.
        let min = bound(self.constant(node, 1, "the bound min")?, "min")?;
        let max = bound(self.constant(node, 2, "the bound max")?, "max")?;
        let target = self.binding(node, None);
        let val = match (min, max) {
            (Some(lo), Some(hi)) if lo == 0.0 && hi == 6.0 => {
                self.emit(target, "relu6", &[x.0], vec![], x.1)
            }
            (Some(0.0), None) => self.emit(target, "relu", &[x.0], vec![], x.1),
            (lo, hi) => {
                let lo = lo.unwrap_or(f32::MIN).max(f32::MIN);
                let hi = hi.unwrap_or(f32::MAX).min(f32::MAX);
                self.emit(
                    target,
                    "clip",
                    &[x.0],
                    vec![("min", emit::float(lo)), ("max", emit::float(hi))],
                    x.1,
                )
            }
        };
        one(val)
    }

    /// An op of two operands with broadcasting that maps onto the `.nn` op
    /// `dsl`: folded when both operands are constants.
    pub(super) fn binary(&mut self, node: &NodeProto, dsl: &str) -> Outputs {
        // The bias add of a MatMul that became a `linear` with that bias.
        if let Some(matmul) = node.output.first().and_then(|o| self.absorbed_add.get(o)) {
            let v = self.values.get(matmul).cloned();
            return Ok(vec![v]);
        }
        let (l, r) = (self.arg(node, 0)?, self.arg(node, 1)?);
        if let (Some(Val::Const(p)), Some(Val::Const(q))) = (&l, &r) {
            let folded = match dsl {
                "add" => p.broadcast(q, |x, y| x + y, |x, y| x.checked_add(y)),
                "sub" => p.broadcast(q, |x, y| x - y, |x, y| x.checked_sub(y)),
                "mul" => p.broadcast(q, |x, y| x * y, |x, y| x.checked_mul(y)),
                "div" => p.broadcast(q, |x, y| x / y, |x, y| x.checked_div(y)),
                other => return Err(format!("nnc cannot fold `{other}` of two constants")),
            };
            return constant_out(folded.ok_or(
                "the constant operands do not broadcast, or the integer arithmetic fails",
            )?);
        }
        let a = self.dynamic(node, 0)?;
        let b = self.dynamic(node, 1)?;
        let shape = broadcast_dims(&a.1, &b.1)
            .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", a.1, b.1))?;
        let target = self.binding(node, None);
        one(self.emit(target, dsl, &[a.0, b.0], vec![], shape))
    }

    /// Gemm `alpha * A' * B' + beta * C`. With a constant `B` it is a
    /// `linear` whose weight is `alpha * B'` (transposed to `[N, K]`) and
    /// whose bias is `beta * C` when `C` is a vector; otherwise a `matmul`
    /// with scaling and addition around it.
    pub(super) fn gemm(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let alpha = a.float("alpha", 1.0)?;
        let beta = a.float("beta", 1.0)?;
        let trans_a = a.int("transA", 0)? != 0;
        let trans_b = a.int("transB", 0)? != 0;
        let mut x = self.dynamic(node, 0)?;
        if x.1.len() != 2 {
            return Err(format!("A has shape {:?}; Gemm takes matrices", x.1));
        }
        let base = self.binding(node, None);
        if trans_a {
            let shape = vec![x.1[1], x.1[0]];
            let t = self.helper(&base, "transpose_a");
            self.emit(
                t.clone(),
                "permute",
                &[x.0],
                vec![("dims", emit::ints([1, 0]))],
                shape.clone(),
            );
            x = (t, shape);
        }
        let (m, k) = (x.1[0], x.1[1]);
        let c = self.arg(node, 2)?;
        if let Some(Val::Const(b)) = self.arg(node, 1)? {
            let [r0, r1] = b.dims[..] else {
                return Err(format!("B has shape {:?}; Gemm takes matrices", b.dims));
            };
            let (bk, n) = if trans_b { (r1, r0) } else { (r0, r1) };
            if bk != k {
                return Err(format!("A' is [{m}, {k}] but B' is [{bk}, {n}]"));
            }
            // nnc's linear weight is [out, in] = B' transposed.
            let data = b.data.to_f32();
            let mut weight = if trans_b {
                data
            } else {
                transpose(&data, k, n)
            };
            if alpha != 1.0 {
                weight.iter_mut().for_each(|w| *w *= alpha);
            }
            let bias = match &c {
                Some(Val::Const(c))
                    if c.data.len() == n
                        && c.dims.last().is_none_or(|&d| d == n)
                        && c.dims.len() <= 2
                        && (c.dims.len() < 2 || c.dims[0] == 1) =>
                {
                    Some(c.data.to_f32())
                }
                Some(Val::Const(c)) if c.data.len() == 1 => Some(vec![c.data.to_f32()[0]; n]),
                _ => None,
            };
            let owner = owner_of(node.input[1].as_str()).map(str::to_string);
            let target = self.names_for_linear(&base, owner.as_deref());
            let mut kw = vec![("out", emit::int(n as i64))];
            self.weight(&target, "weight", vec![n, k], weight);
            let fused_bias = bias.is_some();
            match bias {
                Some(mut b) => {
                    b.iter_mut().for_each(|v| *v *= beta);
                    self.weight(&target, "bias", vec![n], b);
                }
                None => kw.push(("bias", emit::boolean(false))),
            }
            let y = self.emit(target.clone(), "linear", &[x.0], kw, vec![m, n]);
            return match (c, fused_bias) {
                (None, _) | (_, true) => one(y),
                (Some(_), false) => self.add_scaled_c(node, &base, y, beta, vec![m, n]),
            };
        }
        let mut b = self.dynamic(node, 1)?;
        if b.1.len() != 2 {
            return Err(format!("B has shape {:?}; Gemm takes matrices", b.1));
        }
        if trans_b {
            let shape = vec![b.1[1], b.1[0]];
            let t = self.helper(&base, "transpose_b");
            self.emit(
                t.clone(),
                "permute",
                &[b.0],
                vec![("dims", emit::ints([1, 0]))],
                shape.clone(),
            );
            b = (t, shape);
        }
        if b.1[0] != k {
            return Err(format!("A' is [{m}, {k}] but B' is {:?}", b.1));
        }
        let n = b.1[1];
        let mut y = self.emit(base.clone(), "matmul", &[x.0, b.0], vec![], vec![m, n]);
        if alpha != 1.0 {
            let scale = self.materialize(
                &format!("{base}.alpha"),
                &Constant {
                    dims: vec![],
                    data: Data::F32(vec![alpha]),
                },
            );
            let t = self.helper(&base, "scaled");
            if let Val::Dyn { path, .. } = y {
                y = self.emit(t, "mul", &[path, scale], vec![], vec![m, n]);
            }
        }
        match c {
            None => one(y),
            Some(_) => self.add_scaled_c(node, &base, y, beta, vec![m, n]),
        }
    }

    /// The binding for a Gemm's `linear`: the weights' module path when the
    /// initializer names one, else the node's binding.
    fn names_for_linear(&mut self, base: &str, owner: Option<&str>) -> String {
        match owner {
            Some(o) => self.named(o, "linear"),
            None => base.to_string(),
        }
    }

    /// Adds `beta * C` to a Gemm result.
    fn add_scaled_c(
        &mut self,
        node: &NodeProto,
        base: &str,
        y: Val,
        beta: f32,
        shape: Vec<usize>,
    ) -> Outputs {
        let Val::Dyn { path: y, .. } = y else {
            return Err("internal: Gemm result is not a binding".into());
        };
        let c = match self.arg(node, 2)? {
            Some(Val::Const(c)) if beta != 1.0 => {
                let scaled = Constant {
                    dims: c.dims.clone(),
                    data: Data::F32(c.data.to_f32().iter().map(|v| v * beta).collect()),
                };
                self.materialize(&format!("{}.scaled", node.input[2]), &scaled)
            }
            _ => {
                let (c, c_shape) = self.dynamic(node, 2)?;
                if beta == 1.0 {
                    c
                } else {
                    let scale = Constant {
                        dims: vec![],
                        data: Data::F32(vec![beta]),
                    };
                    let scale = self.materialize(&format!("{base}.beta"), &scale);
                    let t = self.helper(base, "scaled_c");
                    self.emit(t.clone(), "mul", &[c, scale], vec![], c_shape);
                    t
                }
            }
        };
        let t = self.helper(base, "plus_c");
        one(self.emit(t, "add", &[y, c], vec![], shape))
    }

    /// MatMul: a `linear` when `B` is a constant matrix or vector (with the
    /// bias of a following Add, see `find_linear_biases`), else `matmul`.
    /// A vector operand is a matrix of one row (`A`) or one column (`B`)
    /// whose unit dim is dropped from the result, as in NumPy.
    pub(super) fn matmul(&mut self, node: &NodeProto) -> Outputs {
        let (mut x, mut x_shape) = self.dynamic(node, 0)?;
        if x_shape.is_empty() {
            return Err("A is a scalar; MatMul takes vectors and matrices".into());
        }
        let a_vector = x_shape.len() == 1;
        let base = self.binding(node, None);
        if a_vector {
            x_shape.insert(0, 1);
            let t = self.helper(&base, "row");
            self.emit(
                t.clone(),
                "reshape",
                &[x],
                vec![("shape", dims_expr(&x_shape))],
                x_shape.clone(),
            );
            x = t;
        }
        let k = x_shape[x_shape.len() - 1];
        let b = self.arg(node, 1)?.ok_or("B is required")?;
        let b_dims = match &b {
            Val::Const(c) => c.dims.clone(),
            Val::Dyn { shape, .. } => shape.clone(),
            Val::Poisoned => return Err("B is poisoned".into()),
        };
        let b_vector = b_dims.len() == 1;
        let b_rows = match b_dims.len() {
            0 => None,
            1 => Some(b_dims[0]),
            r => Some(b_dims[r - 2]),
        };
        if b_rows != Some(k) {
            return Err(format!("A {x_shape:?} and B {b_dims:?} do not multiply"));
        }
        let (result, mut shape) = match b {
            Val::Const(c) if b_dims.len() <= 2 => {
                let n = if b_vector { 1 } else { b_dims[1] };
                // A bias folded in from the following Add names the binding
                // when the weight's name does not (`fc.bias` makes `fc`).
                let bias = self.matmul_bias.get(&node.output[0]).cloned();
                let owner = owner_of(node.input[1].as_str())
                    .or_else(|| bias.as_deref().and_then(|b| b.strip_suffix(".bias")))
                    .map(str::to_string);
                let target = match owner {
                    _ if a_vector || b_vector => self.helper(&base, "linear"),
                    Some(o) => self.named(&o, "linear"),
                    None => base.clone(),
                };
                self.weight(
                    &target,
                    "weight",
                    vec![n, k],
                    transpose(&c.data.to_f32(), k, n),
                );
                let mut kw = vec![("out", emit::int(n as i64))];
                match bias.and_then(|name| match self.values.get(&name) {
                    Some(Val::Const(c)) => Some(c.data.to_f32()),
                    _ => None,
                }) {
                    Some(values) => self.weight(&target, "bias", vec![n], values),
                    None => kw.push(("bias", emit::boolean(false))),
                }
                let mut shape = x_shape.clone();
                if let Some(last) = shape.last_mut() {
                    *last = n;
                }
                self.emit(target.clone(), "linear", &[x], kw, shape.clone());
                (target, shape)
            }
            _ => {
                let (mut b_path, mut b_shape) = self.dynamic(node, 1)?;
                if b_vector {
                    b_shape.push(1);
                    let t = self.helper(&base, "column");
                    self.emit(
                        t.clone(),
                        "reshape",
                        &[b_path],
                        vec![("shape", dims_expr(&b_shape))],
                        b_shape.clone(),
                    );
                    b_path = t;
                }
                let (ra, rb) = (x_shape.len(), b_shape.len());
                let mut shape =
                    broadcast_dims(&x_shape[..ra - 2], &b_shape[..rb - 2]).ok_or_else(|| {
                        format!("the batch dims of {x_shape:?} and {b_shape:?} do not broadcast")
                    })?;
                shape.extend([x_shape[ra - 2], b_shape[rb - 1]]);
                let t = if a_vector || b_vector {
                    self.helper(&base, "matmul")
                } else {
                    base.clone()
                };
                self.emit(t.clone(), "matmul", &[x, b_path], vec![], shape.clone());
                (t, shape)
            }
        };
        if !a_vector && !b_vector {
            return one(Val::Dyn {
                path: result,
                shape,
            });
        }
        // Drop the unit dims the vectors were given.
        // `shape` is `[..., m, n]`: drop `m` for a vector A, `n` for a vector B.
        if a_vector {
            let m = shape.len() - 2;
            shape.remove(m);
        }
        if b_vector {
            shape.pop();
        }
        one(self.emit(
            base,
            "reshape",
            &[result],
            vec![("shape", dims_expr(&shape))],
            shape,
        ))
    }

    /// Softmax and LogSoftmax, as the `.nn` op `dsl`. Before opset 13 they
    /// normalise over all dims from `axis` on, flattened (the input coerced
    /// to 2-D at `axis`), which is a reshape around the op over one dim.
    pub(super) fn softmax(&mut self, node: &NodeProto, a: &mut Attrs<'_>, dsl: &str) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let rank = x.1.len();
        let legacy = self.opset < 13;
        let dim = axis(a.int("axis", if legacy { 1 } else { -1 })?, rank, "`axis`")?;
        let target = self.binding(node, None);
        if !legacy || dim + 1 == rank {
            return one(self.emit(
                target,
                dsl,
                &[x.0],
                vec![("dim", emit::int(dim as i64))],
                x.1,
            ));
        }
        let rows: usize = x.1[..dim].iter().product();
        let cols: usize = x.1[dim..].iter().product();
        let flat = self.helper(&target, "flat");
        let normalised = self.helper(&target, dsl);
        self.emit(
            flat.clone(),
            "reshape",
            &[x.0],
            vec![("shape", emit::ints([rows as i64, cols as i64]))],
            vec![rows, cols],
        );
        self.emit(
            normalised.clone(),
            dsl,
            &[flat],
            vec![("dim", emit::int(1))],
            vec![rows, cols],
        );
        let dims: Vec<i64> = x.1.iter().map(|&d| d as i64).collect();
        one(self.emit(
            target,
            "reshape",
            &[normalised],
            vec![("shape", emit::ints(dims))],
            x.1,
        ))
    }

    /// Dropout is the identity at inference; it is kept as `dropout` so the
    /// model reads like its source. Its mask output is not computed.
    pub(super) fn dropout(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        a.ignore("seed");
        let ratio = if self.opset < 12 {
            a.float("ratio", 0.5)?
        } else {
            match self.constant(node, 1, "the ratio")? {
                Some(c) => c.data.to_f32().first().copied().unwrap_or(0.5),
                None => 0.5,
            }
        };
        if let Some(t) = self.constant(node, 2, "training_mode")? {
            if t.data.to_i64().first().is_some_and(|&v| v != 0) {
                return Err("training_mode is true; nnc imports inference graphs".into());
            }
        }
        let target = self.binding(node, None);
        let val = if (0.0..1.0).contains(&ratio) {
            self.emit(
                target,
                "dropout",
                &[x.0],
                vec![("p", emit::float(ratio))],
                x.1,
            )
        } else {
            self.emit(target, "identity", &[x.0], vec![], x.1)
        };
        Ok(vec![Some(val), None])
    }

    /// Identity passes its value through; no binding is made.
    pub(super) fn identity(&mut self, node: &NodeProto) -> Outputs {
        let v = self.arg(node, 0)?.ok_or("the input is required")?;
        Ok(vec![Some(v)])
    }
}
