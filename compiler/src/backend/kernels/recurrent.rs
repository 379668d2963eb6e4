//! `rnn`, `lstm` and `gru`: the whole sequence is one task, with the time
//! loop in compiled code.
//!
//! The layers run one after the other and, within a layer, the directions
//! (forward, then reverse). Per layer and direction, one native GEMM
//! computes the input projections of every step at once, `P = W_ih X + b`
//! with one column per (step, sample). Then each step multiplies
//! `Z = W_hh h_{t-1}` (a native GEMM whose operands are fixed scratch
//! buffers) and runs one vectorised pass of gate maths that updates `c` and
//! `h` and writes `h` to the layer's output. A reverse direction runs the
//! same loop with steps `seq - 1` down to 0.
//!
//! With one sample there are no GEMMs and no regrouping: each step is one
//! call of the native cell step ([`nnc_cell_step`], `backend/cell/`), which
//! reads the input per step (the caller's, or a copy of the previous
//! layer's output), computes the input projections a chunk of steps ahead
//! into the projection region (their FMAs hide behind the recurrent
//! product's wait on `W_hh`), and then the product and the gate maths.
//! What follows describes the GEMM path of larger batches; the handling of
//! states, outputs and lengths is the same for both.
//!
//! The biases fold where the reference adds them: `rnn` and `lstm` add both
//! to `P`; `gru` adds `b_ih` and the `r`, `z` rows of `b_hh` to `P`, and the
//! `n` rows of `b_hh` to `Z`, because its candidate gates only the recurrent
//! part: `n = tanh(P_n + r * Z_n)`.
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
//! products. The caller's input is gathered into the wide layout. An
//! intermediate layer writes each direction's `h` into its rows of the
//! per-step layer output `[seq, D * hidden, batch]`, regrouped to the wide
//! input of the next layer once both directions ran. The last layer writes
//! `h` straight to the output when `batch == 1` (both caller layouts then
//! put step `t` at `t * D * hidden`) and scatters it per step otherwise.
//!
//! Initial states (`h0`, `c0`, `[layers * D, batch, hidden]`) are transposed
//! into `h` and `c` before a direction runs; without them `h` and `c` start
//! at zero and, for `rnn` and `lstm`, step 0 skips the recurrent product.
//! With `output="h_n"` (or `"c_n"`) each direction's final `h` (or `c`) is
//! transposed into its slot of the output after its last step, and the last
//! layer writes no sequence.
//!
//! Per-sample `lengths` are known when compiling, so only the samples
//! shorter than the sequence cost anything: at a step `t >= length` such a
//! sample's `h` (and `c`) columns are saved before the gate pass and
//! restored after it, and its outputs at `t` are zeroed. The step loop is
//! unchanged, so a reverse direction leaves the sample's states alone until
//! `t = length - 1` and then runs it down to step 0, and the states after
//! the loop are those after each sample's last real step. `h` then starts
//! at zero explicitly, as the saved columns of step 0 are read.
//!
//! Scratch, in floats, reserved for this kernel only (`D` directions):
//!
//! | region | shape | holds |
//! |---|---|---|
//! | wide input | `[max(in, D * hidden), seq * batch]` | the projection's operand `X` (batch 1: a copy of the previous layer's output, `[seq, D * hidden]`) |
//! | wide projection | `[G * hidden, seq * batch]` | the projection's result (batch above 1 only) |
//! | projection | `[seq, G * hidden, batch]` | `P` of the current layer and direction, per step |
//! | product | `[G * hidden, batch]` | `Z` of the current step (batch above 1 only) |
//! | h | `[hidden, batch]` | the hidden state |
//! | c | `[hidden, batch]` | the cell state (`lstm` only) |
//! | layer output | `[seq, D * hidden, batch]` | an intermediate layer's output (more than one layer only) |
//! | saved h | `[hidden, batch]` | the `h` of samples past their length (with `lengths` only) |
//! | saved c | `[hidden, batch]` | the `c` of samples past their length (`lstm` with `lengths` only) |
//! | previous | `[hidden]` | the cell step's copy of `h_{t-1}` (batch 1 only) |

use super::gemm::constant;
use super::{Consts, Kernel, Operands};
pub use crate::backend::cell::Cell;
use crate::backend::cell::{CellWeights, PackedCell, Sequence};
use crate::backend::jit::{Base, Emit};
use crate::backend::native::{
    micro_kernel, nnc_cell_step, nnc_gemm_task, pack, Epilogue, GemmTask,
};
use crate::backend::BackendError;
use crate::ir::{RecurrentAttrs, RecurrentOutput};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};

/// `rnn` or `lstm`.
fn cell_of(lstm: bool) -> Cell {
    if lstm {
        Cell::Lstm
    } else {
        Cell::Rnn
    }
}

/// `rnn` (`lstm == false`) or `lstm`.
pub fn build(
    a: &RecurrentAttrs,
    lstm: bool,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    build_cell(a, cell_of(lstm), ops, consts)
}

/// `gru`.
pub fn build_gru(
    a: &RecurrentAttrs,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    build_cell(a, Cell::Gru, ops, consts)
}

/// The kernel of `cell`.
pub fn build_cell(
    a: &RecurrentAttrs,
    cell: Cell,
    ops: Operands<'_>,
    consts: &mut Consts,
) -> Result<Kernel, BackendError> {
    let fail = |what: String| BackendError::Codegen(format!("{}: {what}", cell.name()));
    let x = ops
        .inputs
        .first()
        .ok_or_else(|| fail("the input is missing".into()))?;
    let dims = Dims::of(a, cell, &x.shape)
        .ok_or_else(|| fail(format!("cannot run on an input of shape {:?}", x.shape)))?;
    let lengths = &a.lengths;
    if !lengths.is_empty()
        && (lengths.len() != dims.batch || lengths.iter().any(|&l| l == 0 || l > dims.seq))
    {
        return Err(fail(format!(
            "lengths {lengths:?} do not fit {} sequences of {} steps",
            dims.batch, dims.seq
        )));
    }
    if a.output == RecurrentOutput::CellState && cell != Cell::Lstm {
        return Err(fail("only `lstm` has a cell state".into()));
    }
    let states = a.state_operands(cell.gates());
    let per_unit = if a.bias { 4 } else { 2 };
    let units = dims.layers * dims.dirs;
    if ops.inputs.len() != 1 + states + per_unit * units {
        return Err(fail(format!(
            "expected {} operands, found {}",
            1 + states + per_unit * units,
            ops.inputs.len()
        )));
    }
    let state_shape = [units, dims.batch, dims.hidden];
    let mut state_bases = [None, None];
    for (i, s) in ops.inputs[1..1 + states].iter().enumerate() {
        if s.shape != state_shape {
            return Err(fail(format!(
                "{} has shape {:?}, expected {state_shape:?}",
                ["h0", "c0"][i],
                s.shape
            )));
        }
        state_bases[i] = Some(s.base);
    }
    let [h0, c0] = state_bases;
    let scratch = ops
        .scratch
        .ok_or_else(|| fail("no scratch space was planned".into()))?;
    let regions = Regions::of(&dims, scratch);
    let (rows, hidden, batch) = (dims.rows(), dims.hidden, dims.batch);

    let mut code = Vec::with_capacity(units);
    // What `nnc compile` and `nnc profile` report as the micro-kernel.
    let mut kernel_name = micro_kernel().name();
    for unit in 0..units {
        let (l, dir) = (unit / dims.dirs, unit % dims.dirs);
        let suffix = a.direction.suffixes()[dir];
        let first = 1 + states + unit * per_unit;
        let features = dims.features(l);
        let weight = |i: usize, name: &str, len: usize| -> Result<&[f32], BackendError> {
            let name = format!("{name}_l{l}{suffix}");
            let v = constant(&ops, first + i, &name)?;
            if v.len() == len {
                Ok(v)
            } else {
                Err(fail(format!(
                    "{name} has {} values, expected {len}",
                    v.len()
                )))
            }
        };
        let weight_ih = weight(0, "weight_ih", rows * features)?;
        let weight_hh = weight(1, "weight_hh", rows * hidden)?;
        // Per row: the projection's bias, and for `gru` the recurrent
        // product's (the `n` rows of `b_hh`).
        let (bias, recurrent_bias) = if a.bias {
            let (b_ih, b_hh) = (weight(2, "bias_ih", rows)?, weight(3, "bias_hh", rows)?);
            let folded = 2 * hidden;
            let p: Vec<f32> = b_ih
                .iter()
                .zip(b_hh)
                .enumerate()
                .map(|(r, (p, q))| {
                    if cell == Cell::Gru && r >= folded {
                        *p
                    } else {
                        p + q
                    }
                })
                .collect();
            let z = (cell == Cell::Gru).then(|| {
                let mut z = vec![0.0; rows];
                z[folded..].copy_from_slice(&b_hh[folded..]);
                z
            });
            (Some(p), z)
        } else {
            (None, None)
        };
        let recurrent = if dims.native_step() {
            // One sample: the native cell step, the projections, product
            // and gate maths fused.
            let n_bias = recurrent_bias.as_ref().map(|z| &z[2 * hidden..]);
            let sequence = Sequence {
                steps: dims.seq,
                reverse: !suffix.is_empty(),
                zero_start: dims.skip_first(),
            };
            let weights = CellWeights {
                input: weight_ih,
                recurrent: weight_hh,
                bias: bias.as_deref(),
                recurrent_bias: n_bias,
            };
            let packed =
                PackedCell::pack(micro_kernel(), cell, hidden, features, sequence, weights)
                    .ok_or_else(|| fail("cannot pack the weights".into()))?;
            kernel_name = packed.name();
            Recurrent::Cell(consts.cell(packed))
        } else {
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
            let task = GemmTask {
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
                    bias: recurrent_bias,
                    residual: None,
                    activation: None,
                },
                m_block: rows,
                n_block: batch,
            };
            Recurrent::Gemm {
                projection_tasks: projection.tasks(),
                projection: consts.gemm(projection)?,
                tasks: task.tasks(),
                task: consts.gemm(task)?,
            }
        };
        code.push(UnitCode {
            recurrent,
            unit,
            dir,
            reverse: !suffix.is_empty(),
            last: l + 1 == dims.layers,
        });
    }

    let (x_base, out) = (x.base, ops.out.base);
    // The samples that stop early, with their lengths.
    let short = lengths
        .iter()
        .enumerate()
        .filter(|&(_, &l)| l < dims.seq)
        .map(|(b, &l)| (b, l))
        .collect();
    let io = Io { out, h0, c0, short };
    Ok(Kernel {
        optimize: true,
        tasks: 1,
        micro_kernel: Some(kernel_name.into()),
        body: Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, _| {
                if !dims.native_step() {
                    gather_input(e, &dims, x_base, regions.wide_input)?;
                }
                for unit in &code {
                    if unit.dir == 0 && unit.unit > 0 && dims.native_step() {
                        // The cell steps read the previous layer's output
                        // per step, from a copy: this layer writes its own
                        // output over the original.
                        let len = dims.seq * dims.dirs * dims.hidden;
                        let (from, to) = (e.base(regions.sequence), e.base(regions.wide_input));
                        copy(e, from, to, len)?;
                    } else if unit.dir == 0 && unit.unit > 0 {
                        // The previous layer left its output per step in
                        // the layer output region.
                        regroup(
                            e,
                            &dims,
                            dims.dirs * dims.hidden,
                            regions.wide_input,
                            regions.sequence,
                            Direction::ToWide,
                        )?;
                    }
                    let x = if unit.unit < dims.dirs {
                        x_base
                    } else {
                        regions.wide_input
                    };
                    run_unit(e, &dims, &regions, unit, &io, x)?;
                }
                Ok(())
            })
        }),
    })
}

/// Arena scratch the kernel needs.
pub fn scratch_len(a: &RecurrentAttrs, lstm: bool, inputs: &[&[usize]], out: &[usize]) -> usize {
    scratch_len_cell(a, cell_of(lstm), inputs, out)
}

/// Arena scratch the `gru` kernel needs.
pub fn scratch_len_gru(a: &RecurrentAttrs, inputs: &[&[usize]], out: &[usize]) -> usize {
    scratch_len_cell(a, Cell::Gru, inputs, out)
}

/// Arena scratch the kernel of `cell` needs.
pub fn scratch_len_cell(
    a: &RecurrentAttrs,
    cell: Cell,
    inputs: &[&[usize]],
    _out: &[usize],
) -> usize {
    inputs
        .first()
        .and_then(|x| Dims::of(a, cell, x))
        .map_or(0, |d| Regions::of(&d, Base::Arena(0)).len)
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
    /// Directions per layer, `D`.
    dirs: usize,
    cell: Cell,
    batch_first: bool,
    /// Whether `h0` (and `c0`) are operands.
    initial_state: bool,
    /// Whether some samples may stop early (`lengths` is given).
    masked: bool,
    output: RecurrentOutput,
}

impl Dims {
    fn of(a: &RecurrentAttrs, cell: Cell, x: &[usize]) -> Option<Dims> {
        let [d0, d1, input] = *x else { return None };
        let (seq, batch) = if a.batch_first { (d1, d0) } else { (d0, d1) };
        Some(Dims {
            seq,
            batch,
            input,
            hidden: a.hidden,
            layers: a.layers,
            dirs: a.direction.count(),
            cell,
            batch_first: a.batch_first,
            initial_state: a.initial_state,
            masked: !a.lengths.is_empty(),
            output: a.output,
        })
    }

    /// Columns of the wide layout: one per step and sample.
    fn columns(&self) -> usize {
        self.seq * self.batch
    }

    /// Rows of the weight matrices: one block of `hidden` per gate.
    fn rows(&self) -> usize {
        self.cell.gates() * self.hidden
    }

    /// Whether steps run [`nnc_cell_step`] (one sample) rather than a
    /// GEMM and the JIT's gate pass.
    fn native_step(&self) -> bool {
        self.batch == 1
    }

    /// Whether step 0 skips the recurrent product: `rnn` and `lstm` from
    /// zero states (`gru` reads `h_{t-1}` outside the product too).
    fn skip_first(&self) -> bool {
        !self.initial_state && self.cell != Cell::Gru
    }

    /// Input features of layer `l`.
    fn features(&self, l: usize) -> usize {
        if l == 0 {
            self.input
        } else {
            self.dirs * self.hidden
        }
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
    sequence: Base,
    /// The `h` and `c` of the samples a step leaves alone.
    saved_h: Base,
    saved_c: Base,
    /// The native cell step's copy of `h_{t-1}` (batch 1 only).
    previous: Base,
    /// Floats in all.
    len: usize,
}

impl Regions {
    fn of(d: &Dims, scratch: Base) -> Regions {
        let (features, sequence) = if d.layers > 1 {
            (
                d.input.max(d.dirs * d.hidden),
                d.dirs * d.hidden * d.columns(),
            )
        } else {
            (d.input, 0)
        };
        // The cell steps read the first layer's input where the caller
        // left it and a later layer's from a copy in the wide input, and
        // compute the projections per step themselves.
        let (wide_input, wide_projection) = if d.native_step() {
            (sequence, 0)
        } else {
            (features * d.columns(), d.rows() * d.columns())
        };
        let sizes = [
            wide_input,
            wide_projection,
            d.rows() * d.columns(),
            if d.native_step() {
                0
            } else {
                d.rows() * d.batch
            },
            d.hidden * d.batch,
            if d.cell == Cell::Lstm {
                d.hidden * d.batch
            } else {
                0
            },
            sequence,
            if d.masked { d.hidden * d.batch } else { 0 },
            if d.masked && d.cell == Cell::Lstm {
                d.hidden * d.batch
            } else {
                0
            },
            if d.native_step() { d.hidden } else { 0 },
        ];
        let mut starts = [scratch; 10];
        let mut len = 0;
        for (start, size) in starts.iter_mut().zip(sizes) {
            *start = scratch.offset(len);
            len += size;
        }
        let [wide_input, wide_projection, projection, product, h, c, sequence, saved_h, saved_c, previous] =
            starts;
        Regions {
            wide_input,
            wide_projection,
            projection,
            product,
            h,
            c,
            sequence,
            saved_h,
            saved_c,
            previous,
            len,
        }
    }
}

/// How a layer and direction computes (addresses of descriptors the model
/// keeps alive).
#[derive(Clone, Copy)]
enum Recurrent {
    /// The projection GEMM of all steps into the wide projection, then per
    /// step the recurrent GEMM into the product region and the JIT's gate
    /// pass.
    Gemm {
        projection: usize,
        projection_tasks: usize,
        task: usize,
        tasks: usize,
    },
    /// Batch 1: [`nnc_cell_step`] per step, which computes the
    /// projections (ahead), the product and the gate maths.
    Cell(usize),
}

/// One layer and direction.
struct UnitCode {
    recurrent: Recurrent,
    /// Index in `h_n` order: `layer * D + dir`.
    unit: usize,
    dir: usize,
    reverse: bool,
    /// The last layer writes the op's output; the others the layer output
    /// region.
    last: bool,
}

/// The op's output and initial-state operands, and which samples stop
/// early.
struct Io {
    out: Base,
    h0: Option<Base>,
    c0: Option<Base>,
    /// `(sample, length)` of each sample shorter than the sequence.
    short: Vec<(usize, usize)>,
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

/// One layer in one direction over the whole sequence; the cell steps
/// (batch 1) read the layer's input per step at `x`.
fn run_unit(
    e: &mut Emit,
    d: &Dims,
    r: &Regions,
    unit: &UnitCode,
    io: &Io,
    x: Base,
) -> Result<(), BackendError> {
    let (d, r) = (*d, *r);
    let state = d.hidden * d.batch;
    if let Recurrent::Gemm {
        projection,
        projection_tasks,
        ..
    } = unit.recurrent
    {
        call_gemm(e, projection, projection_tasks)?;
        regroup(
            e,
            &d,
            d.rows(),
            r.wide_projection,
            r.projection,
            Direction::ToPerStep,
        )?;
    }
    match io.h0 {
        Some(h0) => load_state(e, &d, h0, unit.unit, r.h)?,
        // `gru` reads `h_{t-1}` outside the product too, and a sample that
        // starts late keeps `h` through its first steps.
        None if d.cell == Cell::Gru || !io.short.is_empty() => zero(e, r.h, state)?,
        None => {}
    }
    if d.cell == Cell::Lstm {
        match io.c0 {
            Some(c0) => load_state(e, &d, c0, unit.unit, r.c)?,
            None => zero(e, r.c, state)?,
        }
    }
    // From zero states, step 0 of `rnn` and `lstm` skips the recurrent
    // product (`W_hh · 0`), so `Z` starts at zero and `h` needs no clearing.
    let skip_first = d.skip_first();
    if skip_first && !d.native_step() {
        zero(e, r.product, d.rows() * d.batch)?;
    }
    let width = d.dirs * d.hidden;
    let sequence = d.output == RecurrentOutput::Sequence;
    // Where the gate pass also writes `h`: the first float of step 0 and
    // how far apart steps are.
    let sequence_out = if !unit.last {
        Some((r.sequence.offset(unit.dir * state), width * d.batch))
    } else if sequence && d.batch == 1 {
        // Both caller layouts put step `t` of the only sample at
        // `t * width`.
        Some((io.out.offset(unit.dir * d.hidden), width))
    } else {
        None
    };
    let scatter = unit.last && sequence && sequence_out.is_none();
    e.for_n(0, d.seq, 1, |e, step| {
        let t = if unit.reverse {
            let last = e.i(d.seq - 1);
            e.b.ins().isub(last, step)
        } else {
            step
        };
        let dest = sequence_out.map(|(base, stride)| {
            let start = e.mul_imm(t, stride);
            e.addr(base, start)
        });
        match unit.recurrent {
            Recurrent::Gemm { task, tasks, .. } if skip_first => {
                let later = e.b.ins().icmp_imm_u(IntCC::NotEqual, step, 0);
                e.if_then(later, |e| call_gemm(e, task, tasks))?;
            }
            Recurrent::Gemm { task, tasks, .. } => call_gemm(e, task, tasks)?,
            Recurrent::Cell(_) => {}
        }
        let direction_out = io.out.offset(unit.dir * d.hidden);
        // A sample past its length keeps its states and outputs zeros.
        let past = |e: &mut Emit, length: usize| {
            e.b.ins()
                .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, t, length as i64)
        };
        for &(b, length) in &io.short {
            let c = past(e, length);
            e.if_then(c, |e| save_sample(e, &d, &r, b, true))?;
        }
        match unit.recurrent {
            Recurrent::Gemm { .. } => gate_pass(e, &d, &r, t, dest)?,
            Recurrent::Cell(cell) => {
                let out = match dest {
                    Some(dest) => dest,
                    None => e.i(0),
                };
                let args = [
                    e.i(cell),
                    step,
                    e.base(x),
                    e.base(r.projection),
                    e.base(r.h),
                    e.base(r.c),
                    e.base(r.previous),
                    out,
                ];
                e.call_native(nnc_cell_step as *const () as usize, &args);
            }
        }
        for &(b, length) in &io.short {
            let c = past(e, length);
            e.if_then(c, |e| {
                save_sample(e, &d, &r, b, false)?;
                if let Some(dest) = dest {
                    // `dest` holds `h` as `[hidden, batch]`.
                    let from = e.i(b);
                    let at = e.addr_of(dest, from);
                    zero_strided(e, at, d.hidden, d.batch)
                } else {
                    Ok(())
                }
            })?;
        }
        if scatter {
            scatter_output(e, &d, r.h, t, direction_out)?;
            for &(b, length) in &io.short {
                let c = past(e, length);
                e.if_then(c, |e| {
                    let b = e.i(b);
                    let row = d.caller_row(e, t, b);
                    let start = e.mul_imm(row, width);
                    let at = e.addr(direction_out, start);
                    zero_strided(e, at, d.hidden, 1)
                })?;
            }
        }
        Ok(())
    })?;
    match d.output {
        RecurrentOutput::Sequence => Ok(()),
        RecurrentOutput::HiddenState => store_state(e, &d, r.h, unit.unit, io.out),
        RecurrentOutput::CellState => store_state(e, &d, r.c, unit.unit, io.out),
    }
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
    let cell = d.cell;
    e.vectorized(len, |e, ty, q| {
        // Gate `g` of `P_t` and of `Z`, rows `g * hidden..`.
        let parts = |e: &mut Emit, g: usize| -> (Value, Value) {
            let p = e.addr_of(projection, q);
            let p = e.load(ty, p, g * len);
            let z = e.addr_of(product, q);
            let z = e.load(ty, z, g * len);
            (p, z)
        };
        // The pre-activation of gate `g`: `P_t + Z`.
        let gate = |e: &mut Emit, g: usize| -> Value {
            let (p, z) = parts(e, g);
            e.b.ins().fadd(p, z)
        };
        let h_at = e.addr_of(h, q);
        let h_new = match cell {
            Cell::Lstm => {
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
            }
            Cell::Gru => {
                let rg = gate(e, 0);
                let rg = e.sigmoid(ty, rg);
                let zg = gate(e, 1);
                let zg = e.sigmoid(ty, zg);
                let (p, z) = parts(e, 2);
                let gated = e.b.ins().fmul(rg, z);
                let n = e.b.ins().fadd(p, gated);
                let n = e.tanh(ty, n);
                // `(1 - z) * n + z * h_{t-1}`, as the reference rounds it.
                let one = e.f(ty, 1.0);
                let keep = e.b.ins().fsub(one, zg);
                let fresh = e.b.ins().fmul(keep, n);
                let h_old = e.load(ty, h_at, 0);
                let kept = e.b.ins().fmul(zg, h_old);
                e.b.ins().fadd(fresh, kept)
            }
            Cell::Rnn => {
                let z = gate(e, 0);
                e.tanh(ty, z)
            }
        };
        e.store(h_new, h_at, 0);
        if let Some(dest) = dest {
            let p = e.addr_of(dest, q);
            e.store(h_new, p, 0);
        }
        Ok(())
    })
}

/// Copies sample `b`'s `h` (and `c`) into the saved states when `save`,
/// else back.
fn save_sample(
    e: &mut Emit,
    d: &Dims,
    r: &Regions,
    b: usize,
    save: bool,
) -> Result<(), BackendError> {
    let mut pairs = vec![(r.h, r.saved_h)];
    if d.cell == Cell::Lstm {
        pairs.push((r.c, r.saved_c));
    }
    for (state, saved) in pairs {
        let (state, saved) = (state.offset(b), saved.offset(b));
        let (from, to) = if save { (state, saved) } else { (saved, state) };
        let (from, to) = (e.base(from), e.base(to));
        e.for_n(0, d.hidden, 1, |e, j| {
            let strided = e.mul_imm(j, d.batch);
            let p = e.addr_of(from, strided);
            let v = e.load(types::F32, p, 0);
            let q = e.addr_of(to, strided);
            e.store(v, q, 0);
            Ok(())
        })?;
    }
    Ok(())
}

/// Stores zeros over `len` floats `stride` apart from `at`.
fn zero_strided(e: &mut Emit, at: Value, len: usize, stride: usize) -> Result<(), BackendError> {
    e.for_n(0, len, 1, |e, j| {
        let strided = e.mul_imm(j, stride);
        let p = e.addr_of(at, strided);
        let z = e.f(types::F32, 0.0);
        e.store(z, p, 0);
        Ok(())
    })
}

/// Copies `h [hidden, batch]` to step `t` of the caller's output layout,
/// where each sample's states are contiguous, `D * hidden` apart; `out` is
/// where this direction's features start.
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
        let start = e.mul_imm(row, d.dirs * d.hidden);
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

/// Copies slot `unit` of a state tensor `[layers * D, batch, hidden]` at
/// `states` into the state block `[hidden, batch]` at `to`.
fn load_state(
    e: &mut Emit,
    d: &Dims,
    states: Base,
    unit: usize,
    to: Base,
) -> Result<(), BackendError> {
    transpose_state(e, d, states.offset(unit * d.batch * d.hidden), to, true)
}

/// Copies the state block `[hidden, batch]` at `from` into slot `unit` of
/// the output `[layers * D, batch, hidden]` at `out`.
fn store_state(
    e: &mut Emit,
    d: &Dims,
    from: Base,
    unit: usize,
    out: Base,
) -> Result<(), BackendError> {
    transpose_state(e, d, out.offset(unit * d.batch * d.hidden), from, false)
}

/// Copies between a caller's `[batch, hidden]` block and a state block
/// `[hidden, batch]`, into the state block when `inward`.
fn transpose_state(
    e: &mut Emit,
    d: &Dims,
    caller: Base,
    block: Base,
    inward: bool,
) -> Result<(), BackendError> {
    let d = *d;
    e.for_n(0, d.batch, 1, |e, b| {
        let start = e.mul_imm(b, d.hidden);
        let caller_b = e.addr(caller, start);
        let block_b = e.addr(block, b);
        e.for_n(0, d.hidden, 1, |e, j| {
            let p = e.addr_of(caller_b, j);
            let strided = e.mul_imm(j, d.batch);
            let q = e.addr_of(block_b, strided);
            let (from, to) = if inward { (p, q) } else { (q, p) };
            let v = e.load(types::F32, from, 0);
            e.store(v, to, 0);
            Ok(())
        })
    })
}
