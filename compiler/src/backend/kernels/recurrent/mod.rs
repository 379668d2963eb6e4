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
//! call of the native cell step (`nnc_cell_step`, `nnc_runtime::kernels::cell`), which
//! reads the input per step (the caller's, or a copy of the previous
//! layer's output), computes the input projections a chunk of steps ahead
//! into the projection region (their FMAs hide behind the recurrent
//! product's wait on `W_hh`), and then the product and the gate maths.
//! On several threads, such a layer (one layer and direction, returning
//! the sequence) instead runs each step in one part per
//! thread, each part a share of the hidden units (and of `W_hh`'s rows),
//! the parts of a step waiting for the whole step before it
//! ([`Dims::row_parts`], `PackedCell::run_part`).
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
use super::{ConstPtr, Consts, Kernel, Operands};
use crate::backend::jit::Emit;
use crate::backend::BackendError;
use crate::ir::{RecurrentAttrs, RecurrentOutput};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
pub use nnc_runtime::kernels::cell::Cell;
use nnc_runtime::kernels::cell::{CellWeights, PackedCell, Sequence};
use nnc_runtime::kernels::entry;
use nnc_runtime::kernels::gemm;
use nnc_runtime::kernels::tasks::{pack, Epilogue, GemmTask};
use nnc_runtime::kernels::Base;
use nnc_runtime::Phases;

mod time_loop;

use time_loop::{copy, gather_input, load_state, regroup, run_unit, zero, Direction};

/// `W_hh` bytes from which a layer's steps are split across threads (see
/// [`Dims::row_parts`]). At 2 threads on an AMD EPYC (Zen 3), an LSTM with
/// 128 hidden units (256 KiB) over 32 steps went from 0.23 to 0.13 ms
/// split, and a language model's 512 (4 MiB) from 5.4 to 2.8 ms a layer.
const SPLIT_RECURRENT_BYTES: usize = 1 << 17;

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
    let isa = ops.kernel;
    let mut kernel_name = isa.name();
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
            let packed = PackedCell::pack(isa, cell, hidden, features, sequence, weights)
                .ok_or_else(|| fail("cannot pack the weights".into()))?;
            kernel_name = packed.name();
            Recurrent::Cell(consts.keep(packed))
        } else {
            let columns = dims.columns();
            let projection = GemmTask {
                packed: pack(isa, weight_ih, 1, rows, features)?,
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
                    activation: gemm::Activation::None,
                },
                m_block: rows,
                n_block: columns,
                b_panels: false,
            };
            // Resetting first, the step's product covers the `r` and `z`
            // rows only; the `n` rows multiply `r * h_{t-1}` afterwards.
            let (product_rows, reset) = if dims.reset_first() {
                let n_rows = &weight_hh[2 * hidden * hidden..];
                let task = GemmTask {
                    packed: pack(isa, n_rows, 1, hidden, hidden)?,
                    m: hidden,
                    k: hidden,
                    n: batch,
                    groups: 1,
                    products: 1,
                    b: regions.reset_h,
                    b_stride: 0,
                    ldb: batch,
                    c: regions.product.offset(2 * hidden * batch),
                    c_stride: 0,
                    ldc: batch,
                    epilogue: Epilogue {
                        bias: recurrent_bias.as_ref().map(|z| z[2 * hidden..].to_vec()),
                        residual: None,
                        activation: gemm::Activation::None,
                    },
                    m_block: hidden,
                    n_block: batch,
                    b_panels: false,
                };
                (2 * hidden, Some((task.tasks(), consts.keep(task))))
            } else {
                (rows, None)
            };
            let task = GemmTask {
                packed: pack(
                    isa,
                    &weight_hh[..product_rows * hidden],
                    1,
                    product_rows,
                    hidden,
                )?,
                m: product_rows,
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
                    bias: recurrent_bias.filter(|_| reset.is_none()),
                    residual: None,
                    activation: gemm::Activation::None,
                },
                m_block: product_rows,
                n_block: batch,
                b_panels: false,
            };
            Recurrent::Gemm {
                projection_tasks: projection.tasks(),
                projection: consts.keep(projection),
                tasks: task.tasks(),
                task: consts.keep(task),
                reset: reset.map(|(tasks, task)| (task, tasks)),
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
    let parts = dims.row_parts(ops.threads);
    if parts > 1 {
        let [UnitCode {
            recurrent: Recurrent::Cell(cell),
            ..
        }] = code[..]
        else {
            return Err(fail("a split layer is one cell".into()));
        };
        return Ok(split_steps(
            &dims,
            &regions,
            cell,
            parts,
            x_base,
            &io,
            kernel_name,
        ));
    }
    if dims.parallel_directions(ops.threads) {
        let regions = [regions, regions.second_direction(&dims)];
        let mut kernel = Kernel::jit(
            dims.dirs,
            Box::new(move |e: &mut Emit| {
                e.for_tasks(|e, task| {
                    for unit in &code {
                        let mine = e.b.ins().icmp_imm_u(IntCC::Equal, task, unit.dir as i64);
                        e.if_then(mine, |e| {
                            run_unit(e, &dims, &regions[unit.dir], unit, &io, x_base)
                        })?;
                    }
                    Ok(())
                })
            }),
        );
        kernel.micro_kernel = Some(kernel_name.into());
        return Ok(kernel);
    }
    Ok(Kernel {
        optimize: true,
        then: None,
        before: None,
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

/// The kernel of a layer whose steps are split across `parts` tasks by
/// hidden units ([`Dims::row_parts`], [`nnc_cell_part`]): a first step
/// clears the phases' state and sets the states (`h_{-1}` and, for
/// `lstm`, `c`: the initial states or zeros), then each task runs its
/// part of every step.
fn split_steps(
    d: &Dims,
    r: &Regions,
    cell: ConstPtr,
    parts: usize,
    x: Base,
    io: &Io,
    kernel_name: &str,
) -> Kernel {
    let (d, r, sync) = (*d, *r, r.end);
    let (out, h0, c0) = (io.out, io.h0, io.c0);
    let mut kernel = Kernel::jit(
        parts,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, task| {
                let args = [
                    e.ptr(cell),
                    e.base(sync),
                    task,
                    e.i(parts),
                    e.base(x),
                    e.base(r.projection),
                    e.base(r.h),
                    e.base(r.previous),
                    e.base(r.c),
                    e.base(out),
                    e.i(d.hidden),
                ];
                e.call(&entry::CELL_PART, &args)?;
                Ok(())
            })
        }),
    );
    kernel.micro_kernel = Some(kernel_name.into());
    kernel.before = Some(Box::new(Kernel::jit(
        1,
        Box::new(move |e: &mut Emit| {
            e.for_tasks(|e, _| {
                zero(e, sync, Phases::words(parts))?;
                match h0 {
                    Some(h0) => load_state(e, &d, h0, 0, r.h)?,
                    None => zero(e, r.h, d.hidden)?,
                }
                if d.cell == Cell::Lstm {
                    match c0 {
                        Some(c0) => load_state(e, &d, c0, 0, r.c)?,
                        None => zero(e, r.c, d.hidden)?,
                    }
                }
                Ok(())
            })
        }),
    )));
    kernel
}

/// Arena scratch the kernel needs.
pub fn scratch_len(
    a: &RecurrentAttrs,
    lstm: bool,
    inputs: &[&[usize]],
    out: &[usize],
    threads: usize,
) -> usize {
    scratch_len_cell(a, cell_of(lstm), inputs, out, threads)
}

/// Arena scratch the `gru` kernel needs.
pub fn scratch_len_gru(
    a: &RecurrentAttrs,
    inputs: &[&[usize]],
    out: &[usize],
    threads: usize,
) -> usize {
    scratch_len_cell(a, Cell::Gru, inputs, out, threads)
}

/// Arena scratch the kernel of `cell` needs.
pub fn scratch_len_cell(
    a: &RecurrentAttrs,
    cell: Cell,
    inputs: &[&[usize]],
    _out: &[usize],
    threads: usize,
) -> usize {
    inputs
        .first()
        .and_then(|x| Dims::of(a, cell, x))
        .map_or(0, |d| {
            let regions = Regions::of(&d, Base::Arena(0));
            match d.row_parts(threads) {
                // The phases' state past the regions.
                parts if parts > 1 => regions.len + Phases::words(parts),
                _ if d.parallel_directions(threads) => regions.second_direction(&d).len,
                _ => regions.len,
            }
        })
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
    /// `gru` only: see [`RecurrentAttrs::linear_before_reset`].
    linear_before_reset: bool,
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
            linear_before_reset: a.linear_before_reset,
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
    /// GEMM and the JIT's gate pass. The cell step computes a block's gates
    /// from one product, so a `gru` whose reset gate comes before the `n`
    /// rows' product (which then waits for every unit's reset gate) takes
    /// the GEMM path at any batch.
    fn native_step(&self) -> bool {
        self.batch == 1 && !self.reset_first()
    }

    /// Whether the two directions run at once, one task each: with the
    /// native cell step, which keeps a direction's whole time loop on one
    /// thread, a bidirectional layer otherwise leaves the second core idle
    /// (CRNN's GRUs). One layer only (as ONNX has them): a later layer
    /// reads both directions of the one before, which would need the
    /// tasks to wait for each other.
    fn parallel_directions(&self, threads: usize) -> bool {
        self.native_step() && self.dirs == 2 && self.layers == 1 && !self.masked && threads > 1
    }

    /// How many tasks split each step by hidden units (see
    /// [`PackedCell::run_part`]): one per thread for a single layer and
    /// direction of one sample whose `W_hh` is large enough that a step's
    /// product outweighs the tasks waiting for each other at its end (a
    /// microsecond or two), else 1. Each core then streams its share of
    /// `W_hh`, from its own L2 where the share fits. The layer returns the
    /// sequence (what exported language models do; final-state outputs
    /// are not split yet).
    fn row_parts(&self, threads: usize) -> usize {
        let recurrent_bytes = 4 * self.rows() * self.hidden;
        if threads > 1
            && self.native_step()
            && self.dirs == 1
            && self.layers == 1
            && !self.masked
            && self.output == RecurrentOutput::Sequence
            && recurrent_bytes >= SPLIT_RECURRENT_BYTES
        {
            // No more parts than cores: every step waits for all of them,
            // and with `--threads 8` on 2 cores eight parts made the
            // language model 1.85x slower than two threads (1.25x at 4).
            threads.min(cores())
        } else {
            1
        }
    }

    /// A `gru` without `linear_before_reset`: each step multiplies the `r`
    /// and `z` rows of `W_hh` by `h_{t-1}`, then the `n` rows by `r * h_{t-1}`.
    fn reset_first(&self) -> bool {
        self.cell == Cell::Gru && !self.linear_before_reset
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

/// The cores this process may run on (1 if unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    /// `r * h_{t-1}`, the `n` rows' operand (`gru` resetting first only).
    reset_h: Base,
    /// Floats in all.
    len: usize,
    /// Just past the last region: where a second direction's own regions
    /// go (see [`Regions::second_direction`]).
    end: Base,
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
            if d.reset_first() {
                d.hidden * d.batch
            } else {
                0
            },
        ];
        let mut starts = [scratch; 11];
        let mut len = 0;
        for (start, size) in starts.iter_mut().zip(sizes) {
            *start = scratch.offset(len);
            len += size;
        }
        let [wide_input, wide_projection, projection, product, h, c, sequence, saved_h, saved_c, previous, reset_h] =
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
            reset_h,
            len,
            end: scratch.offset(len),
        }
    }

    /// The regions of the second direction when both run at once: its own
    /// projections, `h`, `c` and the cell step's `h_{t-1}` past
    /// [`Regions::end`], the layers' input and output shared.
    fn second_direction(&self, d: &Dims) -> Regions {
        let projection = self.end;
        let h = projection.offset(d.rows() * d.columns());
        let c = h.offset(d.hidden);
        let c_len = if d.cell == Cell::Lstm { d.hidden } else { 0 };
        let previous = c.offset(c_len);
        let own = d.rows() * d.columns() + d.hidden + c_len + d.hidden;
        Regions {
            projection,
            h,
            c,
            previous,
            len: self.len + own,
            end: self.end.offset(own),
            ..*self
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
        projection: ConstPtr,
        projection_tasks: usize,
        task: ConstPtr,
        tasks: usize,
        /// A `gru` resetting first: the `n` rows' product of `r * h_{t-1}`
        /// (task address and count), after the gate pass that computes `r`.
        reset: Option<(ConstPtr, usize)>,
    },
    /// Batch 1: [`nnc_cell_step`] per step, which computes the
    /// projections (ahead), the product and the gate maths.
    Cell(ConstPtr),
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
