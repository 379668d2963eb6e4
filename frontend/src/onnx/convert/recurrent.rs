//! LSTM, RNN and GRU: one ONNX node is one layer of nnc's `lstm`, `rnn` or
//! `gru`, with PyTorch's weight layout.
//!
//! ONNX stacks the gates of `W`, `R` and `B` as i, o, f, c (LSTM) and z, r,
//! h (GRU); nnc, like PyTorch, as i, f, g, o and r, z, n, so the row blocks
//! are reordered. nnc's output is `[seq, batch, directions*hidden]` (the
//! directions side by side, as PyTorch's); ONNX's `Y` is `[seq, directions,
//! batch, hidden]`, which is a reshape and a permute of it, and `Y_h` is the
//! last step of each direction, which is a `select` of it.

use super::attrs::Attrs;
use super::{Converter, Outputs, Val};
use crate::onnx::constant::{numel, Constant, Data, MAX_CONSTANT};
use crate::onnx::emit;
use crate::onnx::proto::NodeProto;

/// One ONNX recurrent node as nnc ops see it: weights in ONNX layout (one
/// slice per direction), the gate order to convert them to, and the
/// operands and attributes every op emitted for the node shares.
struct RecurrentSpec<'a> {
    callee: &'a str,
    order: &'a [usize],
    direction: &'a str,
    rows: usize,
    features: usize,
    hidden: usize,
    w: Vec<f32>,
    r: Vec<f32>,
    b: Option<Vec<f32>>,
    operands: Vec<String>,
    keywords: Vec<(&'static str, crate::ast::Expr)>,
}

/// Reorders the `gates` row blocks of a `[gates*hidden, cols]` matrix (or
/// vector, `cols` = 1): block `i` of the result is block `order[i]` of `data`.
fn reorder(data: &[f32], order: &[usize], hidden: usize, cols: usize) -> Vec<f32> {
    let block = hidden * cols;
    order
        .iter()
        .flat_map(|&g| data[g * block..][..block].iter().copied())
        .collect()
}

impl Converter<'_> {
    pub(super) fn recurrent(&mut self, node: &NodeProto, a: &mut Attrs<'_>) -> Outputs {
        let op = node.op_type();
        let (callee, gates, order, defaults): (&str, usize, &[usize], &[&str]) = match op {
            "LSTM" => ("lstm", 4, &[0, 2, 3, 1], &["Sigmoid", "Tanh", "Tanh"]),
            "GRU" => ("gru", 3, &[1, 0, 2], &["Sigmoid", "Tanh"]),
            _ => ("rnn", 1, &[0], &["Tanh"]),
        };
        let hidden = usize::try_from(a.int("hidden_size", 0)?).unwrap_or(0);
        if !(1..=1 << 20).contains(&hidden) {
            return Err("`hidden_size` is required and must be from 1 to 2^20".into());
        }
        let direction = a.string("direction", "forward")?;
        let dirs = match direction.as_str() {
            "forward" | "reverse" => 1,
            "bidirectional" => 2,
            other => {
                return Err(format!(
                    "direction \"{other}\" is not one of forward, reverse, bidirectional"
                ))
            }
        };
        if let Some(acts) = a.strings("activations")? {
            let expected: Vec<&str> = defaults
                .iter()
                .copied()
                .cycle()
                .take(defaults.len() * dirs)
                .collect();
            if acts.iter().map(String::as_str).ne(expected.iter().copied()) {
                return Err(format!("activations {acts:?} differ from the default {expected:?}, the only ones nnc computes"));
            }
        }
        a.ignore("activation_alpha");
        a.ignore("activation_beta");
        // Before opset 7, `output_sequence=0` only made Y optional; nnc
        // computes Y when it is used either way.
        if self.opset < 7 {
            a.ignore("output_sequence");
        }
        if a.has("clip") {
            return Err("cell clipping (`clip`) is not supported".into());
        }
        if op == "LSTM" && a.int("input_forget", 0)? != 0 {
            return Err("input_forget=1 (coupled input and forget gates) is not supported".into());
        }
        // ONNX's default resets `h` before the `n` rows' product; PyTorch's
        // GRU (linear_before_reset=1) scales the product instead.
        let reset_first = op == "GRU" && a.int("linear_before_reset", 0)? == 0;
        let batch_first = a.int("layout", 0)? != 0;
        let (x, xs) = self.dynamic(node, 0)?;
        let [d0, d1, features] = xs[..] else {
            return Err(format!("X has shape {xs:?}; a rank-3 sequence is needed"));
        };
        let (seq, batch) = if batch_first { (d1, d0) } else { (d0, d1) };
        if seq == 0 || batch == 0 {
            return Err(format!(
                "X has shape {xs:?}; an empty sequence or batch is not supported"
            ));
        }
        let rows = gates * hidden;
        let w = self.required_constant(node, 1, "the input weights W")?;
        let r = self.required_constant(node, 2, "the recurrent weights R")?;
        let b = self.constant(node, 3, "the biases B")?;
        if w.dims != [dirs, rows, features] || r.dims != [dirs, rows, hidden] {
            return Err(format!(
                "W {:?} or R {:?} do not fit {dirs} directions, hidden {hidden}, input {features}",
                w.dims, r.dims
            ));
        }
        if let Some(b) = &b {
            if b.dims != [dirs, 2 * rows] {
                return Err(format!(
                    "B has shape {:?}, not [{dirs}, {}]",
                    b.dims,
                    2 * rows
                ));
            }
        }
        // Lengths are an attribute of nnc's op, so they must be constants;
        // all full is the same as none.
        let mut lengths = Vec::new();
        if let Some(lens) = self.constant(node, 4, "sequence_lens")? {
            let values = lens.data.to_i64();
            if values.len() != batch || values.iter().any(|&l| l < 1 || l > seq as i64) {
                return Err(format!(
                    "sequence_lens {values:?} do not fit {batch} sequences of {seq} steps"
                ));
            }
            if values.iter().any(|&l| l != seq as i64) {
                lengths = values;
            }
        }
        if op == "LSTM" {
            if let Some(p) = self.constant(node, 7, "the peephole weights P")? {
                if p.data.to_f32().iter().any(|&v| v != 0.0) {
                    return Err("peephole weights (P) are not supported".into());
                }
            }
        }
        let target = self.binding(node, None);
        // Initial states: omitted when absent or all zero.
        let state_count = if op == "LSTM" { 2 } else { 1 };
        let mut states = Vec::new();
        let mut any_state = false;
        for s in 0..state_count {
            let i = 5 + s;
            let zero = match self.arg(node, i)? {
                None => true,
                Some(Val::Const(c)) => c.data.to_f32().iter().all(|&v| v == 0.0),
                Some(_) => false,
            };
            any_state |= !zero;
            states.push((i, zero));
        }
        let mut operands = vec![x];
        if any_state {
            for (i, zero) in states {
                let state = if zero {
                    let dims = vec![dirs, batch, hidden];
                    let count = numel(&dims)
                        .filter(|&n| n <= MAX_CONSTANT)
                        .ok_or("the initial state is too large")?;
                    self.data_dir.check("the initial state", &dims, 4)?;
                    let c = Constant {
                        dims,
                        data: Data::F32(vec![0.0; count]),
                    };
                    self.materialize(&format!("{target}.initial_state_{}", i - 5), &c)
                } else {
                    let (path, shape) = self.dynamic(node, i)?;
                    // With layout=1 ONNX states are [batch, dirs, hidden].
                    let expected = if batch_first {
                        [batch, dirs, hidden]
                    } else {
                        [dirs, batch, hidden]
                    };
                    if shape != expected {
                        return Err(format!("initial state {shape:?} is not {expected:?}"));
                    }
                    if batch_first {
                        let t = self.helper(&target, "state");
                        self.emit(
                            t.clone(),
                            "permute",
                            &[path],
                            vec![("dims", emit::ints([1, 0, 2]))],
                            vec![shape[1], shape[0], shape[2]],
                        );
                        t
                    } else {
                        path
                    }
                };
                operands.push(state);
            }
        }
        let mut kw = vec![("hidden", emit::int(hidden as i64))];
        if b.is_none() {
            kw.push(("bias", emit::boolean(false)));
        }
        if batch_first {
            kw.push(("batch_first", emit::boolean(true)));
        }
        if direction != "forward" {
            kw.push(("direction", emit::string(&direction)));
        }
        if !lengths.is_empty() {
            kw.push(("lengths", emit::ints(lengths.iter().copied())));
        }
        if reset_first {
            kw.push(("linear_before_reset", emit::boolean(false)));
        }
        let spec = RecurrentSpec {
            callee,
            order,
            direction: &direction,
            rows,
            features,
            hidden,
            w: w.data.to_f32(),
            r: r.data.to_f32(),
            b: b.as_ref().map(|b| b.data.to_f32()),
            operands,
            keywords: kw,
        };
        let used: Vec<bool> = (0..3)
            .map(|i| {
                node.output
                    .get(i)
                    .is_some_and(|o| !o.is_empty() && self.used.contains(o.as_str()))
            })
            .collect();
        let state = |batch_first: bool| {
            if batch_first {
                vec![batch, dirs, hidden]
            } else {
                vec![dirs, batch, hidden]
            }
        };
        // The sequence op computes Y, and Y_h too when every sequence is
        // full (it is then a step of Y). Otherwise Y_h and Y_c come from
        // ops returning the final states, which own their own copy of the
        // weights; the first op emitted takes the node's name.
        let mut first = Some(target.clone());
        let mut name_for =
            |c: &mut Self, which: &str| first.take().unwrap_or_else(|| c.helper(&target, which));
        let mut y_out = None;
        let mut h_out = None;
        let mut sequence = None;
        if used[0] {
            let name = name_for(self, "sequence");
            let shape = if batch_first {
                vec![batch, seq, dirs * hidden]
            } else {
                vec![seq, batch, dirs * hidden]
            };
            self.emit_recurrent(&spec, &name, None, shape);
            y_out = Some(self.onnx_y(&target, &name, seq, batch, dirs, hidden, batch_first));
            sequence = Some(name);
        }
        if used[1] {
            h_out = Some(match (&sequence, lengths.is_empty()) {
                (Some(y), true) => self.onnx_y_h(
                    &target,
                    y,
                    seq,
                    batch,
                    dirs,
                    hidden,
                    batch_first,
                    &direction,
                ),
                _ => {
                    let name = name_for(self, "h_n");
                    self.final_state(
                        &spec,
                        &name,
                        "h_n",
                        [dirs, batch, hidden],
                        batch_first,
                        state(batch_first),
                    )
                }
            });
        }
        let c_out = if used[2] && op == "LSTM" {
            let name = name_for(self, "c_n");
            Some(self.final_state(
                &spec,
                &name,
                "c_n",
                [dirs, batch, hidden],
                batch_first,
                state(batch_first),
            ))
        } else {
            None
        };
        Ok(vec![y_out, h_out, c_out])
    }

    /// Writes the weights of one recurrent op under `target` and emits it,
    /// returning the sequence (`output` = `None`) or a final state.
    fn emit_recurrent(
        &mut self,
        spec: &RecurrentSpec<'_>,
        target: &str,
        output: Option<&str>,
        shape: Vec<usize>,
    ) -> Val {
        let suffixes: &[&str] = match spec.direction {
            "forward" => &[""],
            "reverse" => &["_reverse"],
            _ => &["", "_reverse"],
        };
        let (rows, features, hidden) = (spec.rows, spec.features, spec.hidden);
        for (d, suffix) in suffixes.iter().enumerate() {
            let w_d = &spec.w[d * rows * features..][..rows * features];
            let r_d = &spec.r[d * rows * hidden..][..rows * hidden];
            self.weight(
                target,
                &format!("weight_ih_l0{suffix}"),
                vec![rows, features],
                reorder(w_d, spec.order, hidden, features),
            );
            self.weight(
                target,
                &format!("weight_hh_l0{suffix}"),
                vec![rows, hidden],
                reorder(r_d, spec.order, hidden, hidden),
            );
            if let Some(bd) = &spec.b {
                let b_d = &bd[d * 2 * rows..][..2 * rows];
                self.weight(
                    target,
                    &format!("bias_ih_l0{suffix}"),
                    vec![rows],
                    reorder(&b_d[..rows], spec.order, hidden, 1),
                );
                self.weight(
                    target,
                    &format!("bias_hh_l0{suffix}"),
                    vec![rows],
                    reorder(&b_d[rows..], spec.order, hidden, 1),
                );
            }
        }
        let mut kw = spec.keywords.clone();
        if let Some(o) = output {
            kw.push(("output", emit::string(o)));
        }
        self.emit(target.to_string(), spec.callee, &spec.operands, kw, shape)
    }

    /// ONNX's `Y_h` or `Y_c` from an op returning the final state
    /// `[dirs, batch, hidden]` (permuted to `[batch, dirs, hidden]` with
    /// layout=1).
    fn final_state(
        &mut self,
        spec: &RecurrentSpec<'_>,
        target: &str,
        which: &str,
        shape: [usize; 3],
        batch_first: bool,
        onnx_shape: Vec<usize>,
    ) -> Val {
        let v = self.emit_recurrent(spec, target, Some(which), shape.to_vec());
        if !batch_first {
            return v;
        }
        let t = self.helper(target, "onnx");
        self.emit(
            t,
            "permute",
            &[target.to_string()],
            vec![("dims", emit::ints([1, 0, 2]))],
            onnx_shape,
        )
    }

    /// ONNX's `Y`: `[seq, dirs, batch, hidden]`, or `[batch, seq, dirs,
    /// hidden]` with layout=1, from nnc's `[seq, batch, dirs*hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn onnx_y(
        &mut self,
        base: &str,
        y: &str,
        seq: usize,
        batch: usize,
        dirs: usize,
        hidden: usize,
        batch_first: bool,
    ) -> Val {
        let split = self.helper(base, "y");
        if batch_first {
            let shape = vec![batch, seq, dirs, hidden];
            let dims = shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
            return self.emit(
                split,
                "reshape",
                &[y.to_string()],
                vec![("shape", emit::ints(dims))],
                shape,
            );
        }
        if dirs == 1 {
            // With one direction the permute would only move a unit dim.
            let shape = vec![seq, 1, batch, hidden];
            let dims = shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
            return self.emit(
                split,
                "reshape",
                &[y.to_string()],
                vec![("shape", emit::ints(dims))],
                shape,
            );
        }
        let four = [seq as i64, batch as i64, dirs as i64, hidden as i64];
        self.emit(
            split.clone(),
            "reshape",
            &[y.to_string()],
            vec![("shape", emit::ints(four))],
            vec![seq, batch, dirs, hidden],
        );
        let t = self.helper(base, "y_onnx");
        self.emit(
            t,
            "permute",
            &[split],
            vec![("dims", emit::ints([0, 2, 1, 3]))],
            vec![seq, dirs, batch, hidden],
        )
    }

    /// ONNX's `Y_h`: the hidden state after each direction's last step
    /// (step `seq-1` forward, step 0 in reverse), `[dirs, batch, hidden]`
    /// (`[batch, dirs, hidden]` with layout=1).
    #[allow(clippy::too_many_arguments)]
    fn onnx_y_h(
        &mut self,
        base: &str,
        y: &str,
        seq: usize,
        batch: usize,
        dirs: usize,
        hidden: usize,
        batch_first: bool,
        direction: &str,
    ) -> Val {
        let time_dim = if batch_first { 1 } else { 0 };
        let mut parts = Vec::new();
        for d in 0..dirs {
            let reverse = direction == "reverse" || d == 1;
            let step = if reverse { 0 } else { seq - 1 };
            let at = self.helper(base, &format!("h_step{d}"));
            self.emit(
                at.clone(),
                "select",
                &[y.to_string()],
                vec![
                    ("dim", emit::int(time_dim)),
                    ("index", emit::int(step as i64)),
                ],
                vec![batch, dirs * hidden],
            );
            let mut part = at;
            if dirs > 1 {
                let split = self.helper(base, &format!("h_split{d}"));
                self.emit(
                    split.clone(),
                    "reshape",
                    &[part],
                    vec![(
                        "shape",
                        emit::ints([batch as i64, dirs as i64, hidden as i64]),
                    )],
                    vec![batch, dirs, hidden],
                );
                let one_dir = self.helper(base, &format!("h_dir{d}"));
                self.emit(
                    one_dir.clone(),
                    "select",
                    &[split],
                    vec![("dim", emit::int(1)), ("index", emit::int(d as i64))],
                    vec![batch, hidden],
                );
                part = one_dir;
            }
            let (shape, dims) = if batch_first {
                (vec![batch, 1, hidden], [batch as i64, 1, hidden as i64])
            } else {
                (vec![1, batch, hidden], [1, batch as i64, hidden as i64])
            };
            let shaped = self.helper(base, &format!("h_{d}"));
            self.emit(
                shaped.clone(),
                "reshape",
                &[part],
                vec![("shape", emit::ints(dims))],
                shape,
            );
            parts.push(shaped);
        }
        let (shape, dim) = if batch_first {
            (vec![batch, dirs, hidden], 1)
        } else {
            (vec![dirs, batch, hidden], 0)
        };
        if parts.len() == 1 {
            return Val::Dyn {
                path: parts.remove(0),
                shape,
            };
        }
        let h = self.helper(base, "h_n");
        self.emit(h, "concat", &parts, vec![("dim", emit::int(dim))], shape)
    }
}
