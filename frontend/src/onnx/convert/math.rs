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

    /// Sum, Max, Min and Mean of any number of operands with broadcasting:
    /// a chain of the binary `.nn` op `dsl` (`add`, `maximum`, `minimum`),
    /// then for Mean a `mul` by `1/n`.
    pub(super) fn variadic(
        &mut self,
        node: &NodeProto,
        a: &mut Attrs<'_>,
        dsl: &str,
        mean: bool,
    ) -> Outputs {
        let n = node.input.len();
        if n == 0 {
            return Err("it needs at least one input".into());
        }
        if n == 2 && !mean {
            return self.binary(node, a, dsl);
        }
        let base = self.binding(node, None);
        let mut acc = self.dynamic(node, 0)?;
        for i in 1..n {
            let x = self.dynamic(node, i)?;
            let shape = broadcast_dims(&acc.1, &x.1)
                .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", acc.1, x.1))?;
            let target = if i == n - 1 && !mean {
                base.clone()
            } else {
                self.helper(&base, &format!("{dsl}{i}"))
            };
            self.emit(target.clone(), dsl, &[acc.0, x.0], vec![], shape.clone());
            acc = (target, shape);
        }
        if mean {
            // Of the result's rank at most, so that it broadcasts to the
            // result's shape (a scalar's included).
            let scale = Constant {
                dims: vec![1; acc.1.len().min(1)],
                data: Data::F32(vec![1.0 / n as f32]),
            };
            let name = format!("{base}.mean_scale");
            let scale = self.materialize(&name, &scale);
            return one(self.emit(base, "mul", &[acc.0, scale], vec![], acc.1));
        }
        if n == 1 {
            return one(self.emit(base, "identity", &[acc.0], vec![], acc.1));
        }
        one(Val::Dyn {
            path: acc.0,
            shape: acc.1,
        })
    }

    /// Pow: `pow(x, exponent=c)` for a constant scalar exponent, else
    /// `pow(a, b)` with broadcasting; both constant: folded.
    pub(super) fn pow(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        if let (Some(Val::Const(p)), Some(Val::Const(q))) = (self.arg(node, 0)?, self.arg(node, 1)?)
        {
            let folded = p.broadcast(&q, f32::powf, |x, y| {
                u32::try_from(y).ok().and_then(|y| x.checked_pow(y))
            });
            return constant_out(folded.ok_or("the constant operands do not broadcast")?);
        }
        // A constant scalar exponent is the unary `pow`, which the compiled
        // code specialises (repeated products for integers); any other
        // exponent the elementwise `pow(a, b)`.
        // An exponent of higher rank than the base adds dims to the result,
        // which only the broadcasting form gives.
        let base_rank = match self.arg(node, 0)? {
            Some(Val::Dyn { shape, .. }) => shape.len(),
            _ => 0,
        };
        let value = match self.arg(node, 1)? {
            Some(Val::Const(c)) if c.dims.len() <= base_rank => match c.data.to_f32().as_slice() {
                [v] => Some(*v),
                _ => None,
            },
            _ => None,
        };
        let Some(value) = value else {
            return self.binary(node, a, "pow");
        };
        let x = self.dynamic(node, 0)?;
        let target = self.binding(node, None);
        one(self.emit(
            target,
            "pow",
            &[x.0],
            vec![("exponent", emit::float(value))],
            x.1,
        ))
    }

    /// PRelu with a constant slope of one value, or one per channel (dim
    /// 1): `prelu(x, num_parameters=C)` owning the slope as its weight.
    pub(super) fn prelu(&mut self, node: &NodeProto) -> Outputs {
        let x = self.dynamic(node, 0)?;
        let slope = self.required_constant(node, 1, "the slope")?;
        let values = slope.data.to_f32();
        let channels = x.1.get(1).copied().unwrap_or(1);
        // Aligned at the right of x, the slope may vary only along dim 1.
        // Before opset 7 a one-dim slope is per channel whatever x's rank
        // (Caffe's convention, which PyTorch's opset 6 exports rely on).
        let legacy = self.opset < 7 && slope.dims.len() == 1;
        let lead = if legacy {
            Some(1)
        } else {
            x.1.len().checked_sub(slope.dims.len())
        };
        let per_channel = lead.is_some_and(|lead| {
            slope
                .dims
                .iter()
                .enumerate()
                .all(|(i, &d)| d == 1 || (lead + i == 1 && d == channels))
        });
        if values.len() != 1 && !(per_channel && values.len() == channels) {
            return Err(format!(
                "the slope of shape {:?} is neither one value nor one per channel of {:?}",
                slope.dims, x.1
            ));
        }
        let owner = node
            .input
            .get(1)
            .and_then(|n| owner_of(n))
            .map(str::to_string);
        let target = self.binding(node, owner.as_deref());
        self.weight(&target, "weight", vec![values.len()], values.clone());
        one(self.emit(
            target,
            "prelu",
            &[x.0],
            vec![("num_parameters", emit::int(values.len() as i64))],
            x.1,
        ))
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

    /// Clip with bounds as constant inputs (from opset 11) or attributes
    /// (before); `[0, 6]` is `relu6` and `[0, inf)` is `relu`. A missing
    /// bound is written as the largest finite float, since the language has
    /// no infinity.
    pub(super) fn clip(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
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
        let (min, max) = if self.opset < 11 {
            (a.optional_float("min")?, a.optional_float("max")?)
        } else {
            (
                bound(self.constant(node, 1, "the bound min")?, "min")?,
                bound(self.constant(node, 2, "the bound max")?, "max")?,
            )
        };
        let target = self.binding(node, None);
        let val = match (min, max) {
            (Some(lo), Some(hi)) if lo == 0.0 && hi == 6.0 => {
                self.emit(target, "relu6", &[x.0], vec![], x.1)
            }
            (Some(0.0), None) => self.emit(target, "relu", &[x.0], vec![], x.1),
            (lo, hi) => {
                let hi = hi.unwrap_or(f32::MAX).min(f32::MAX);
                // ONNX Runtime computes `min(max(x, min), max)`: with
                // `min > max` every element is `max`, which `clip` (whose
                // bounds must be ordered) gives with both bounds at `max`.
                let lo = lo.unwrap_or(f32::MIN).max(f32::MIN).min(hi);
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
    /// `dsl`: folded when both operands are constants. Before opset 7 only
    /// B broadcasts, to A's shape (see `legacy_operand`).
    pub(super) fn binary(&mut self, node: &NodeProto, a: &mut Attrs<'_>, dsl: &str) -> Outputs {
        let legacy = if self.opset < 7 {
            Some((a.int("broadcast", 0)? != 0, a.optional_int("axis")?))
        } else {
            None
        };
        // The bias add of a MatMul that became a `linear` with that bias.
        if let Some(matmul) = node.output.first().and_then(|o| self.absorbed_add.get(o)) {
            let v = self.value(matmul);
            if let (Some((broadcast, axis)), Some(Val::Dyn { shape, .. })) = (legacy, &v) {
                // The bias is a vector of the last dim: legacy broadcasting
                // agrees with NumPy's when it matches the last dims.
                let last = shape.len() as i64 - 1;
                if !broadcast || axis.is_some_and(|x| x != last && x != -1) {
                    return Err(format!(
                        "the bias [{}] does not broadcast to {shape:?} with `broadcast` {} and `axis` {axis:?}",
                        shape.last().copied().unwrap_or(0),
                        u8::from(broadcast)
                    ));
                }
            }
            return Ok(vec![v]);
        }
        let l = self.arg(node, 0)?.ok_or("A is required")?;
        let mut r = self.arg(node, 1)?.ok_or("B is required")?;
        if let Some((broadcast, axis)) = legacy {
            r = self.legacy_operand(node, &l, r, broadcast, axis)?;
        }
        if let (Val::Const(p), Val::Const(q)) = (&l, &r) {
            let folded = match dsl {
                "add" => p.broadcast(q, |x, y| x + y, |x, y| x.checked_add(y)),
                "sub" => p.broadcast(q, |x, y| x - y, |x, y| x.checked_sub(y)),
                "mul" => p.broadcast(q, |x, y| x * y, |x, y| x.checked_mul(y)),
                "div" => p.broadcast(q, |x, y| x / y, |x, y| x.checked_div(y)),
                "maximum" => p.broadcast(q, f32::max, |x, y| Some(x.max(y))),
                "minimum" => p.broadcast(q, f32::min, |x, y| Some(x.min(y))),
                "pow" => p.broadcast(q, f32::powf, |x, y| {
                    u32::try_from(y).ok().and_then(|y| x.checked_pow(y))
                }),
                other => return Err(format!("nnc cannot fold `{other}` of two constants")),
            };
            return constant_out(folded.ok_or(
                "the constant operands do not broadcast, or the integer arithmetic fails",
            )?);
        }
        let a = self.bound(&node.input[0], l).ok_or("input 0 is required")?;
        let b = self.bound(&node.input[1], r).ok_or("input 1 is required")?;
        let shape = broadcast_dims(&a.1, &b.1)
            .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", a.1, b.1))?;
        let target = self.binding(node, None);
        one(self.emit(target, dsl, &[a.0, b.0], vec![], shape))
    }

    /// B of an opset 6 Add, Sub, Mul or Div, reshaped so that NumPy
    /// broadcasting gives the legacy result. Without `broadcast` the shapes
    /// must be equal; with it, B has one element or its dims are A's from
    /// `axis` on (by default A's last dims), and gains trailing unit dims.
    /// A reshaped constant stays a constant only when A is one too (to be
    /// folded); otherwise it is written as a `constant` of its own.
    fn legacy_operand(
        &mut self,
        node: &NodeProto,
        l: &Val,
        r: Val,
        broadcast: bool,
        axis: Option<i64>,
    ) -> Result<Val, String> {
        let shape_of = |v: &Val| match v {
            Val::Const(c) => Ok(c.dims.clone()),
            Val::Dyn { shape, .. } => Ok(shape.clone()),
            Val::Poisoned => Err("an operand is poisoned".to_string()),
        };
        let (a, b) = (shape_of(l)?, shape_of(&r)?);
        if !broadcast {
            return if a == b {
                Ok(r)
            } else {
                Err(format!(
                    "A {a:?} and B {b:?} differ, and `broadcast` is 0 (before opset 7 it must be 1 to broadcast)"
                ))
            };
        }
        let start = match axis {
            _ if b.iter().product::<usize>() == 1 && b.len() <= a.len() => a.len() - b.len(),
            Some(x) => super::axis(x, a.len(), "`axis`")?,
            None => a
                .len()
                .checked_sub(b.len())
                .ok_or_else(|| format!("B {b:?} has more dims than A {a:?}"))?,
        };
        let fits = start + b.len() <= a.len()
            && b.iter()
                .zip(&a[start..])
                .all(|(&bd, &ad)| bd == ad || bd == 1);
        if !fits {
            return Err(format!(
                "B {b:?} does not match the dims of A {a:?} from axis {start}"
            ));
        }
        let mut dims = b.clone();
        dims.resize(a.len() - start, 1);
        if dims == b {
            return Ok(r);
        }
        let name = format!("{}.broadcast", node.input[1]);
        Ok(match r {
            Val::Const(c) if matches!(l, Val::Const(_)) => Val::Const(Rc::new(c.reshaped(dims))),
            Val::Const(c) => {
                let path = self.materialize(&name, &c.reshaped(dims.clone()));
                Val::Dyn { path, shape: dims }
            }
            Val::Dyn { path, .. } => {
                let target = self.named(&name, "broadcast");
                self.emit(
                    target,
                    "reshape",
                    &[path],
                    vec![("shape", dims_expr(&dims))],
                    dims,
                )
            }
            Val::Poisoned => return Err("B is poisoned".into()),
        })
    }

    /// Gemm `alpha * A' * B' + beta * C`. With a constant `B` it is a
    /// `linear` whose weight is `alpha * B'` (transposed to `[N, K]`) and
    /// whose bias is `beta * C` when `C` is a vector; otherwise a `matmul`
    /// with scaling and addition around it. Before opset 11 `C` is
    /// required; before opset 7 it broadcasts only with `broadcast=1`.
    pub(super) fn gemm(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let alpha = a.float("alpha", 1.0)?;
        let beta = a.float("beta", 1.0)?;
        let trans_a = a.int("transA", 0)? != 0;
        let trans_b = a.int("transB", 0)? != 0;
        let c_broadcasts = self.opset >= 7 || a.int("broadcast", 0)? != 0;
        if self.opset < 11 && self.arg(node, 2)?.is_none() {
            return Err("C is required before opset 11".into());
        }
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
        if !c_broadcasts {
            let dims = |v: &Option<Val>| match v {
                Some(Val::Const(c)) => Some(c.dims.clone()),
                Some(Val::Dyn { shape, .. }) => Some(shape.clone()),
                _ => None,
            };
            let n =
                dims(&self.arg(node, 1)?).and_then(|b| b.get(if trans_b { 0 } else { 1 }).copied());
            let c_dims = dims(&c);
            let result = n.map(|n| vec![m, n]);
            if result.is_none() || c_dims != result {
                return Err(format!(
                    "C has shape {:?}, not the result's {:?}, and `broadcast` is 0 (before opset 7 it must be 1 to broadcast)",
                    c_dims.unwrap_or_default(),
                    result.unwrap_or_default()
                ));
            }
        }
        if let Some(Val::Const(b)) = self.arg(node, 1)? {
            let [r0, r1] = b.dims[..] else {
                return Err(format!("B has shape {:?}; Gemm takes matrices", b.dims));
            };
            let (bk, n) = if trans_b { (r1, r0) } else { (r0, r1) };
            if bk != k {
                return Err(format!("A' is [{m}, {k}] but B' is [{bk}, {n}]"));
            }
            // nnc's linear weight is [out, in] = B' transposed.
            let data = self.take_f32(b);
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
                match bias.and_then(|name| match self.value(&name) {
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
    /// model reads like its source. Its mask output is not computed. The
    /// ratio is an attribute before opset 12; before opset 7, `is_test=1`
    /// marks the inference form.
    pub(super) fn dropout(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let x = self.dynamic(node, 0)?;
        a.ignore("seed");
        if self.opset < 7 && a.int("is_test", 0)? == 0 {
            return Err(
                "is_test=0 (the default before opset 7) drops elements at random; nnc imports inference graphs (is_test=1)"
                    .into(),
            );
        }
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
