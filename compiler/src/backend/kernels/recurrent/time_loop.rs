//! The time loop of the recurrent kernels: the per-step code that
//! [`super::build_cell`] emits for each layer and direction (the cell
//! step's call or the GEMM and gate pass), the regrouping between the wide
//! and per-step layouts, and the handling of states, outputs and lengths.
//! See the parent module for the layouts.

use super::*;

/// Runs every task of the GEMM at `task` in order.
fn call_gemm(e: &mut Emit, task: ConstPtr, tasks: usize) -> Result<(), BackendError> {
    e.for_n(0, tasks, 1, |e, t| {
        let task = e.ptr(task);
        let arena = e.arena;
        e.call(&entry::GEMM_TASK, &[task, arena, t])?;
        Ok(())
    })
}

/// Stores zeros over `len` floats at `base`.
pub(super) fn zero(e: &mut Emit, base: Base, len: usize) -> Result<(), BackendError> {
    e.vectorized(len, |e, ty, i| {
        let p = e.addr(base, i);
        let z = e.f(ty, 0.0);
        e.store(z, p, 0);
        Ok(())
    })
}

/// Copies the caller's input into the wide layout `[in, seq * batch]`.
pub(super) fn gather_input(
    e: &mut Emit,
    d: &Dims,
    x: Base,
    wide: Base,
) -> Result<(), BackendError> {
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
pub(super) enum Direction {
    ToPerStep,
    ToWide,
}

/// Copies a sequence of `rows`-sized vectors between the wide layout
/// `[rows, seq * batch]` and the per-step layout `[seq, rows, batch]`. Both
/// hold the `batch` samples of one step and row contiguously.
pub(super) fn regroup(
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
pub(super) fn copy(e: &mut Emit, from: Value, to: Value, len: usize) -> Result<(), BackendError> {
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
pub(super) fn run_unit(
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
            Recurrent::Gemm {
                task, tasks, reset, ..
            } => {
                call_gemm(e, task, tasks)?;
                if let Some((reset, reset_tasks)) = reset {
                    reset_pass(e, &d, &r, t)?;
                    call_gemm(e, reset, reset_tasks)?;
                }
            }
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
                    e.ptr(cell),
                    step,
                    e.base(x),
                    e.base(r.projection),
                    e.base(r.h),
                    e.base(r.c),
                    e.base(r.previous),
                    out,
                ];
                e.call(&entry::CELL_STEP, &args)?;
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

/// The `n` rows' operand of a `gru` that resets first: `r * h_{t-1}` with
/// `r = sigmoid(P_r + Z_r)`, over all `hidden * batch` states.
fn reset_pass(e: &mut Emit, d: &Dims, r: &Regions, t: Value) -> Result<(), BackendError> {
    let len = d.hidden * d.batch;
    let start = e.mul_imm(t, d.rows() * d.batch);
    let projection = e.addr(r.projection, start);
    let product = e.base(r.product);
    let h = e.base(r.h);
    let reset_h = e.base(r.reset_h);
    e.vectorized(len, |e, ty, q| {
        let p = e.addr_of(projection, q);
        let p = e.load(ty, p, 0);
        let z = e.addr_of(product, q);
        let z = e.load(ty, z, 0);
        let pre = e.b.ins().fadd(p, z);
        let gate = e.gate_sigmoid(ty, pre);
        let h_at = e.addr_of(h, q);
        let h_old = e.load(ty, h_at, 0);
        let v = e.b.ins().fmul(gate, h_old);
        let at = e.addr_of(reset_h, q);
        e.store(v, at, 0);
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
                let i = e.gate_sigmoid(ty, i);
                let f = gate(e, 1);
                let f = e.gate_sigmoid(ty, f);
                let g = gate(e, 2);
                let g = e.tanh(ty, g);
                let o = gate(e, 3);
                let o = e.gate_sigmoid(ty, o);
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
                let rg = e.gate_sigmoid(ty, rg);
                let zg = gate(e, 1);
                let zg = e.gate_sigmoid(ty, zg);
                let (p, z) = parts(e, 2);
                // Resetting first, `Z_n` already is `W_hn (r * h) + b_hn`.
                let gated = if d.linear_before_reset {
                    e.b.ins().fmul(rg, z)
                } else {
                    z
                };
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
pub(super) fn load_state(
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
