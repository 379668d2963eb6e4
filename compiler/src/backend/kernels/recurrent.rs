//! `rnn` and `lstm`: the whole sequence is one task, with the time loop in
//! compiled code.
//!
//! Per layer, one native GEMM computes the input projections of every step
//! at once, `P = W_ih X + b_ih + b_hh` with one column per (step, sample).
//! Then each step multiplies `Z = W_hh h_{t-1}` (a native GEMM whose
//! operands are fixed scratch buffers) and runs one vectorised pass of gate
//! maths that updates `c` and `h` and writes `h` to the layer's output.
//!
//! The GEMM's rows are weight rows and its columns are contiguous, so the
//! kernel keeps two layouts of a sequence of `features`-sized vectors:
//! - *wide*, `[features, seq * batch]` with column `t * batch + b`: the whole
//!   sequence as one GEMM operand, so the projection is a single product;
//! - *per step*, `[seq, features, batch]`: step `t` is one contiguous
//!   `[features, batch]` block. `h`, `c` and `Z` are such blocks, and gate
//!   `g` of a step's `P` or `Z` is the `hidden * batch` contiguous floats at
//!   `g * hidden * batch`, laid out exactly like `h` and `c`. So the gate pass
//!   runs four lanes at a time over `hidden * batch` floats whatever `hidden`
//!   and `batch` are.
//!
//! Regrouping between the two costs one copy per element, small next to the
//! products. The caller's input is gathered into the wide layout; `h` goes
//! straight to the output when `batch == 1` (both caller layouts then put
//! step `t` at `t * hidden`) and is scattered to it per step otherwise.
//!
//! Scratch, in floats, reserved for this kernel only:
//!
//! | region | shape | holds |
//! |---|---|---|
//! | wide input | `[max(in, hidden), seq * batch]` | the projection's operand `X` |
//! | wide projection | `[G * hidden, seq * batch]` | the projection's result, then an intermediate layer's output `[seq, hidden, batch]` |
//! | projection | `[seq, G * hidden, batch]` | `P` of the current layer, per step |
//! | product | `[G * hidden, batch]` | `Z` of the current step |
//! | h | `[hidden, batch]` | the hidden state |
//! | c | `[hidden, batch]` | the cell state (`lstm` only) |

use super::gemm::constant;
use super::{Consts, Kernel, Operands};
use crate::backend::jit::{Base, Emit};
use crate::backend::native::{micro_kernel, nnc_gemm_task, pack, Epilogue, GemmTask};
use crate::backend::BackendError;
use crate::ir::{RecurrentAttrs, RecurrentOutput, RnnDirection};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};

/// What of `a` this kernel cannot run yet, if anything: it runs forward
/// layers from zero states over full-length sequences and returns the
/// output sequence.
pub fn unsupported(a: &RecurrentAttrs) -> Option<String> {
    if a.direction != RnnDirection::Forward {
        Some(format!("direction={}", a.direction.name()))
    } else if a.initial_state {
        Some("initial states".into())
    } else if !a.lengths.is_empty() {
        Some("per-sample sequence lengths".into())
    } else if a.output != RecurrentOutput::Sequence {
        Some("returning the final states".into())
    } else {
        None
    }
}

/// `rnn` (`lstm == false`) or `lstm`.
pub fn build(
    a: &RecurrentAttrs,
    lstm: bool,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let fail = |what: String| BackendError::Codegen(format!("{}: {what}", op_name(lstm)));
    let x = ops
        .inputs
        .first()
        .ok_or_else(|| fail("the input is missing".into()))?;
    let dims = Dims::of(a, lstm, &x.shape)
        .ok_or_else(|| fail(format!("cannot run on an input of shape {:?}", x.shape)))?;
    let per_layer = if a.bias { 4 } else { 2 };
    if ops.inputs.len() != 1 + per_layer * dims.layers {
        return Err(fail(format!(
            "expected {} operands, found {}",
            1 + per_layer * dims.layers,
            ops.inputs.len()
        )));
    }
    let scratch = ops
        .scratch
        .ok_or_else(|| fail("no scratch space was planned".into()))?;
    let regions = Regions::of(&dims, scratch);
    let (rows, hidden, batch) = (dims.rows(), dims.hidden, dims.batch);

    let mut layers = Vec::with_capacity(dims.layers);
    for l in 0..dims.layers {
        let first = 1 + l * per_layer;
        let features = if l == 0 { dims.input } else { hidden };
        let weight = |i: usize, name: &str, len: usize| -> Result<&[f32], BackendError> {
            let v = constant(&ops, first + i, &format!("{name}_l{l}"))?;
            if v.len() == len {
                Ok(v)
            } else {
                Err(fail(format!(
                    "{name}_l{l} has {} values, expected {len}",
                    v.len()
                )))
            }
        };
        let weight_ih = weight(0, "weight_ih", rows * features)?;
        let weight_hh = weight(1, "weight_hh", rows * hidden)?;
        // Both biases are per row, so they fold into one projection bias.
        let bias = if a.bias {
            let (b_ih, b_hh) = (weight(2, "bias_ih", rows)?, weight(3, "bias_hh", rows)?);
            Some(b_ih.iter().zip(b_hh).map(|(p, q)| p + q).collect())
        } else {
            None
        };
        let columns = dims.columns();
        let projection = GemmTask {
            packed: pack(weight_ih, 1, rows, features)?,
            m: rows,
            k: features,
            n: columns,
            groups: 1,
            products: 1,
            b: regions.wide_input,
            b_stride: 0,
            ldb: columns,
            c: regions.wide_projection,
            c_stride: 0,
            ldc: columns,
            epilogue: Epilogue {
                bias,
                residual: None,
                activation: None,
            },
            m_block: rows,
            n_block: columns,
        };
        let recurrent = GemmTask {
            packed: pack(weight_hh, 1, rows, hidden)?,
            m: rows,
            k: hidden,
            n: batch,
            groups: 1,
            products: 1,
            b: regions.h,
            b_stride: 0,
            ldb: batch,
            c: regions.product,
            c_stride: 0,
            ldc: batch,
            epilogue: Epilogue {
                bias: None,
                residual: None,
                activation: None,
            },
            m_block: rows,
            n_block: batch,
        };
        layers.push(LayerCode {
            projection_tasks: projection.tasks(),
            projection: consts.gemm(projection)?,
            recurrent_tasks: recurrent.tasks(),
            recurrent: consts.gemm(recurrent)?,
            first: l == 0,
            last: l + 1 == dims.layers,
        });
    }

    let (x_base, out) = (x.base, ops.out.base);
    Ok(Kernel {
        optimize: true,
        tasks: 1,
        micro_kernel: Some(micro_kernel().name().into()),
        body: Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, _| {
                gather_input(e, &dims, x_base, regions.wide_input)?;
                for layer in &layers {
                    run_layer(e, &dims, &regions, layer, out)?;
                }
                Ok(())
            })
        }),
    })
}

/// Arena scratch the kernel needs.
pub fn scratch_len(a: &RecurrentAttrs, lstm: bool, inputs: &[&[usize]], _out: &[usize]) -> usize {
    inputs
        .first()
        .and_then(|x| Dims::of(a, lstm, x))
        .map_or(0, |d| Regions::of(&d, Base::Arena(0)).len)
}

fn op_name(lstm: bool) -> &'static str {
    if lstm {
        "lstm"
    } else {
        "rnn"
    }
}

/// The sizes the kernel is specialised for.
#[derive(Clone, Copy, Debug)]
struct Dims {
    seq: usize,
    batch: usize,
    /// Features of the input sequence.
    input: usize,
    hidden: usize,
    layers: usize,
    lstm: bool,
    batch_first: bool,
}

impl Dims {
    fn of(a: &RecurrentAttrs, lstm: bool, x: &[usize]) -> Option<Dims> {
        let [d0, d1, input] = *x else { return None };
        let (seq, batch) = if a.batch_first { (d1, d0) } else { (d0, d1) };
        Some(Dims {
            seq,
            batch,
            input,
            hidden: a.hidden,
            layers: a.layers,
            lstm,
            batch_first: a.batch_first,
        })
    }

    /// Columns of the wide layout: one per step and sample.
    fn columns(&self) -> usize {
        self.seq * self.batch
    }

    /// Rows of the weight matrices: one block of `hidden` per gate.
    fn rows(&self) -> usize {
        let gates = if self.lstm { 4 } else { 1 };
        gates * self.hidden
    }

    /// The row of step `t`, sample `b` in the caller's layout.
    fn caller_row(&self, e: &mut Emit, t: Value, b: Value) -> Value {
        if self.batch_first {
            let r = e.mul_imm(b, self.seq);
            e.add(r, t)
        } else {
            let r = e.mul_imm(t, self.batch);
            e.add(r, b)
        }
    }
}

/// Where each scratch region starts (see the module documentation).
#[derive(Clone, Copy, Debug)]
struct Regions {
    wide_input: Base,
    wide_projection: Base,
    projection: Base,
    product: Base,
    h: Base,
    c: Base,
    /// Floats in all.
    len: usize,
}

impl Regions {
    fn of(d: &Dims, scratch: Base) -> Regions {
        let features = if d.layers > 1 {
            d.input.max(d.hidden)
        } else {
            d.input
        };
        let sizes = [
            features * d.columns(),
            d.rows() * d.columns(),
            d.rows() * d.columns(),
            d.rows() * d.batch,
            d.hidden * d.batch,
            if d.lstm { d.hidden * d.batch } else { 0 },
        ];
        let mut starts = [scratch; 6];
        let mut len = 0;
        for (start, size) in starts.iter_mut().zip(sizes) {
            *start = scratch.offset(len);
            len += size;
        }
        let [wide_input, wide_projection, projection, product, h, c] = starts;
        Regions {
            wide_input,
            wide_projection,
            projection,
            product,
            h,
            c,
            len,
        }
    }
}

/// One layer's GEMMs (addresses of descriptors the model keeps alive).
struct LayerCode {
    projection: usize,
    projection_tasks: usize,
    recurrent: usize,
    recurrent_tasks: usize,
    /// The first layer reads the op's input; the others the previous
    /// layer's output.
    first: bool,
    /// The last layer writes the op's output; the others the wide
    /// projection region, which is free once `P` is regrouped.
    last: bool,
}

/// Runs every task of the GEMM at `task` in order.
fn call_gemm(e: &mut Emit, task: usize, tasks: usize) -> Result<(), BackendError> {
    let f = nnc_gemm_task as *const () as usize;
    e.for_n(0, tasks, 1, |e, t| {
        let task = e.i(task);
        let arena = e.arena;
        e.call_native(f, &[task, arena, t]);
        Ok(())
    })
}

/// Stores zeros over `len` floats at `base`.
fn zero(e: &mut Emit, base: Base, len: usize) -> Result<(), BackendError> {
    e.vectorized(len, |e, ty, i| {
        let p = e.addr(base, i);
        let z = e.f(ty, 0.0);
        e.store(z, p, 0);
        Ok(())
    })
}

/// Copies the caller's input into the wide layout `[in, seq * batch]`.
fn gather_input(e: &mut Emit, d: &Dims, x: Base, wide: Base) -> Result<(), BackendError> {
    let d = *d;
    e.for_n(0, d.seq, 1, |e, t| {
        e.for_n(0, d.batch, 1, |e, b| {
            let row = d.caller_row(e, t, b);
            let start = e.mul_imm(row, d.input);
            let from = e.addr(x, start);
            let step = e.mul_imm(t, d.batch);
            let column = e.add(step, b);
            let to = e.addr(wide, column);
            e.for_n(0, d.input, 1, |e, k| {
                let p = e.addr_of(from, k);
                let v = e.load(types::F32, p, 0);
                let strided = e.mul_imm(k, d.columns());
                let q = e.addr_of(to, strided);
                e.store(v, q, 0);
                Ok(())
            })
        })
    })
}

/// Which way [`regroup`] copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToPerStep,
    ToWide,
}

/// Copies a sequence of `rows`-sized vectors between the wide layout
/// `[rows, seq * batch]` and the per-step layout `[seq, rows, batch]`. Both
/// hold the `batch` samples of one step and row contiguously.
fn regroup(
    e: &mut Emit,
    d: &Dims,
    rows: usize,
    wide: Base,
    per_step: Base,
    direction: Direction,
) -> Result<(), BackendError> {
    let d = *d;
    e.for_n(0, d.seq, 1, |e, t| {
        let column = e.mul_imm(t, d.batch);
        let wide_t = e.addr(wide, column);
        let block = e.mul_imm(t, rows * d.batch);
        let per_step_t = e.addr(per_step, block);
        e.for_n(0, rows, 1, |e, r| {
            let offset = e.mul_imm(r, d.columns());
            let w = e.addr_of(wide_t, offset);
            let offset = e.mul_imm(r, d.batch);
            let s = e.addr_of(per_step_t, offset);
            match direction {
                Direction::ToPerStep => copy(e, w, s, d.batch),
                Direction::ToWide => copy(e, s, w, d.batch),
            }
        })
    })
}

/// Copies `len` contiguous floats; short runs (the batch, often 1) are
/// unrolled.
fn copy(e: &mut Emit, from: Value, to: Value, len: usize) -> Result<(), BackendError> {
    if len <= 8 {
        for i in 0..len {
            let v = e.load(types::F32, from, i);
            e.store(v, to, i);
        }
        return Ok(());
    }
    e.vectorized(len, |e, ty, i| {
        let p = e.addr_of(from, i);
        let v = e.load(ty, p, 0);
        let q = e.addr_of(to, i);
        e.store(v, q, 0);
        Ok(())
    })
}

/// One layer over the whole sequence.
fn run_layer(
    e: &mut Emit,
    d: &Dims,
    r: &Regions,
    layer: &LayerCode,
    out: Base,
) -> Result<(), BackendError> {
    let (d, r) = (*d, *r);
    if !layer.first {
        // The previous layer left its output per step in the wide
        // projection region.
        regroup(
            e,
            &d,
            d.hidden,
            r.wide_input,
            r.wide_projection,
            Direction::ToWide,
        )?;
    }
    call_gemm(e, layer.projection, layer.projection_tasks)?;
    regroup(
        e,
        &d,
        d.rows(),
        r.wide_projection,
        r.projection,
        Direction::ToPerStep,
    )?;
    // The states start at zero. Step 0 skips the recurrent product
    // (`W_hh · 0`), so `Z` starts at zero too and `h` needs no clearing.
    zero(e, r.product, d.rows() * d.batch)?;
    if d.lstm {
        zero(e, r.c, d.hidden * d.batch)?;
    }
    // Where the gate pass also writes `h`, and how far apart steps are.
    let sequence_out = if !layer.last {
        Some((r.wide_projection, d.hidden * d.batch))
    } else if d.batch == 1 {
        // Both caller layouts put step `t` of the only sample at `t * hidden`.
        Some((out, d.hidden))
    } else {
        None
    };
    e.for_n(0, d.seq, 1, |e, t| {
        let later = e.b.ins().icmp_imm_u(IntCC::NotEqual, t, 0);
        e.if_then(later, |e| {
            call_gemm(e, layer.recurrent, layer.recurrent_tasks)
        })?;
        let dest = sequence_out.map(|(base, step)| {
            let start = e.mul_imm(t, step);
            e.addr(base, start)
        });
        gate_pass(e, &d, &r, t, dest)?;
        if sequence_out.is_none() {
            scatter_output(e, &d, r.h, t, out)?;
        }
        Ok(())
    })
}

/// The cell update of step `t` over all `hidden * batch` states, four lanes
/// at a time: reads `P_t` and `Z`, updates `c` and `h`, and also stores `h`
/// at `dest` when given.
fn gate_pass(
    e: &mut Emit,
    d: &Dims,
    r: &Regions,
    t: Value,
    dest: Option<Value>,
) -> Result<(), BackendError> {
    let len = d.hidden * d.batch;
    let start = e.mul_imm(t, d.rows() * d.batch);
    let projection = e.addr(r.projection, start);
    let product = e.base(r.product);
    let h = e.base(r.h);
    let c = e.base(r.c);
    let lstm = d.lstm;
    e.vectorized(len, |e, ty, q| {
        // The pre-activation of gate `g`: `P_t + Z`, rows `g * hidden..`.
        let gate = |e: &mut Emit, g: usize| -> Value {
            let p = e.addr_of(projection, q);
            let p = e.load(ty, p, g * len);
            let z = e.addr_of(product, q);
            let z = e.load(ty, z, g * len);
            e.b.ins().fadd(p, z)
        };
        let h_new = if lstm {
            let i = gate(e, 0);
            let i = e.sigmoid(ty, i);
            let f = gate(e, 1);
            let f = e.sigmoid(ty, f);
            let g = gate(e, 2);
            let g = e.tanh(ty, g);
            let o = gate(e, 3);
            let o = e.sigmoid(ty, o);
            let c_at = e.addr_of(c, q);
            let c_old = e.load(ty, c_at, 0);
            let kept = e.b.ins().fmul(f, c_old);
            let fresh = e.b.ins().fmul(i, g);
            let c_new = e.b.ins().fadd(kept, fresh);
            e.store(c_new, c_at, 0);
            let squashed = e.tanh(ty, c_new);
            e.b.ins().fmul(o, squashed)
        } else {
            let z = gate(e, 0);
            e.tanh(ty, z)
        };
        let h_at = e.addr_of(h, q);
        e.store(h_new, h_at, 0);
        if let Some(dest) = dest {
            let p = e.addr_of(dest, q);
            e.store(h_new, p, 0);
        }
        Ok(())
    })
}

/// Copies `h [hidden, batch]` to step `t` of the caller's output layout,
/// where each sample's states are contiguous.
fn scatter_output(
    e: &mut Emit,
    d: &Dims,
    h: Base,
    t: Value,
    out: Base,
) -> Result<(), BackendError> {
    let d = *d;
    e.for_n(0, d.batch, 1, |e, b| {
        let row = d.caller_row(e, t, b);
        let start = e.mul_imm(row, d.hidden);
        let to = e.addr(out, start);
        let from = e.addr(h, b);
        e.for_n(0, d.hidden, 1, |e, j| {
            let strided = e.mul_imm(j, d.batch);
            let p = e.addr_of(from, strided);
            let v = e.load(types::F32, p, 0);
            let q = e.addr_of(to, j);
            e.store(v, q, 0);
            Ok(())
        })
    })
}
