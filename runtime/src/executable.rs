//! The contract between compiled code and the runtime: an [`Executable`] is
//! an ordered list of kernel calls over one arena.
//!
//! A kernel is machine code with the signature of [`KernelFn`]: it reads and
//! writes `f32` buffers at fixed offsets of the arena it is given, reads
//! constants (weights) at fixed addresses the executable keeps alive, and
//! does tasks `begin..end` of its `tasks`. Different tasks of one kernel
//! write disjoint memory, so the runtime may hand task ranges to different
//! threads. Inputs are checked against the model's types before any kernel
//! runs; every run gets its own arena, so one executable can run on several
//! threads at once.

use crate::denormals::FlushDenormals;
use crate::limits::{try_zeroed, LimitError};
use crate::pages::{floats_to_huge_page, HUGE_PAGE};
use crate::pool::{Pool, Session};
use crate::{format_shape, Tensor, TensorError};
use std::any::Any;
use std::fmt;
use std::time::{Duration, Instant};

/// A compiled kernel: `kernel(arena, begin, end)` does tasks `begin..end`.
///
/// # Safety
/// Callable only with an arena of at least the executable's
/// [`Executable::arena_len`] floats whose inputs are filled in, and with
/// `begin <= end <= tasks`.
pub type KernelFn = unsafe extern "C" fn(arena: *mut f32, begin: usize, end: usize);

/// One kernel call of an executable.
pub struct Step {
    /// The layer it computes (the node's binding path), for profiles.
    pub name: String,
    pub kernel: KernelFn,
    /// How many independent tasks the kernel splits into (at least 1).
    pub tasks: usize,
    /// Whether the step is worth handing to other threads; a small one
    /// runs on the calling thread, which is cheaper than waking the pool.
    pub parallel: bool,
}

/// Where a model input or output lives in the arena.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    pub name: String,
    /// Offset in floats.
    pub offset: usize,
    pub shape: Vec<usize>,
}

impl Binding {
    /// Element count.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for an empty tensor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a run was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RunError {
    #[error("the model takes {expected} input{}, found {found}", if *.expected == 1 { "" } else { "s" })]
    InputCount { expected: usize, found: usize },
    #[error("input `{name}` must have shape {} but has shape {}", format_shape(.expected), format_shape(.found))]
    InputShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("input `{name}` has {found} elements but its shape {} needs {expected}", format_shape(.shape))]
    InputLength {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    #[error("the model has {expected} output{}, found {found} output buffers", if *.expected == 1 { "" } else { "s" })]
    OutputCount { expected: usize, found: usize },
    #[error("output `{name}` has {expected} elements, but its buffer has {found}")]
    OutputLength {
        name: String,
        expected: usize,
        found: usize,
    },
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error("cannot start a thread pool: {0}")]
    Threads(String),
    /// The arena or an output could not be allocated.
    #[error(transparent)]
    Memory(#[from] LimitError),
}

/// The arena pointer, shared by the tasks of one kernel call.
#[derive(Clone, Copy)]
struct ArenaPtr(*mut f32);

impl ArenaPtr {
    /// The pointer. Closures call this rather than read the field, so they
    /// capture the whole (`Sync`) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the tasks of one kernel (or input copy) write disjoint parts of
// the arena (the contract of `KernelFn`), and the arena outlives the run
// that shares it.
#[allow(unsafe_code)]
unsafe impl Send for ArenaPtr {}
// SAFETY: as for `Send`: sharing the pointer lets tasks on other threads
// write their own disjoint parts of the arena, never the same floats.
#[allow(unsafe_code)]
unsafe impl Sync for ArenaPtr {}

/// A compiled model, ready to run.
pub struct Executable {
    steps: Vec<Step>,
    arena_len: usize,
    inputs: Vec<Binding>,
    outputs: Vec<Binding>,
    /// JIT code and constant data the kernels point into.
    _keep_alive: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for Executable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executable")
            .field("steps", &self.steps.len())
            .field("arena_len", &self.arena_len)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl Executable {
    /// Assembles an executable.
    ///
    /// # Safety
    /// Every step's kernel must honour the [`KernelFn`] contract for an
    /// arena of `arena_len` floats: it touches only memory inside the arena
    /// and inside `keep_alive`, tasks write disjoint memory, and the inputs
    /// and outputs lie inside the arena.
    #[allow(unsafe_code)]
    pub unsafe fn new(
        steps: Vec<Step>,
        arena_len: usize,
        inputs: Vec<Binding>,
        outputs: Vec<Binding>,
        keep_alive: Box<dyn Any + Send + Sync>,
    ) -> Executable {
        // The part of the contract the runtime can see: every input and
        // output lies inside the arena (`copy_input` and the output copies
        // rely on it).
        debug_assert!(
            inputs.iter().chain(&outputs).all(|b| b
                .offset
                .checked_add(b.len())
                .is_some_and(|end| end <= arena_len)),
            "a model input or output lies outside the arena of {arena_len} floats"
        );
        Executable {
            steps,
            arena_len,
            inputs,
            outputs,
            _keep_alive: keep_alive,
        }
    }

    /// The arena size in floats.
    pub fn arena_len(&self) -> usize {
        self.arena_len
    }

    /// The kernel calls, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The model inputs, in order.
    pub fn inputs(&self) -> &[Binding] {
        &self.inputs
    }

    /// The model outputs, in order.
    pub fn outputs(&self) -> &[Binding] {
        &self.outputs
    }

    /// Checks `inputs` against the model's input types.
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), RunError> {
        if inputs.len() != self.inputs.len() {
            return Err(RunError::InputCount {
                expected: self.inputs.len(),
                found: inputs.len(),
            });
        }
        for (binding, t) in self.inputs.iter().zip(inputs) {
            if t.shape() != binding.shape.as_slice() {
                return Err(RunError::InputShape {
                    name: binding.name.clone(),
                    expected: binding.shape.clone(),
                    found: t.shape().to_vec(),
                });
            }
            if t.len() != binding.len() {
                return Err(RunError::InputLength {
                    name: binding.name.clone(),
                    shape: binding.shape.clone(),
                    expected: binding.len(),
                    found: t.len(),
                });
            }
        }
        Ok(())
    }

    /// A zeroed arena for [`Executable::run_in`], or an error if the
    /// allocator refuses it (never an abort). An arena of 2 MiB or more
    /// comes with up to 4 MiB more, room for the run to start it on a
    /// 2 MiB boundary and end it on one, so that all of it can be on huge
    /// pages.
    pub fn arena(&self) -> Result<Vec<f32>, RunError> {
        let floats = self.arena_len;
        let page = HUGE_PAGE / 4;
        let len = if floats >= page {
            floats.next_multiple_of(page) + page
        } else {
            floats
        };
        Ok(try_zeroed(len, || "the arena".into())?)
    }

    /// Where in `arena` the executable's arena starts: at its first 2 MiB
    /// boundary when the vector has room for the whole arena after it
    /// (one from [`Executable::arena`] has), else at 0. From a boundary,
    /// the allocator's advice to back the arena with huge pages covers all
    /// of it; from wherever `malloc` put it, the pages at both ends stayed
    /// 4 KiB ones, and RegNetX's 112x112 layers (whose tiles touch 46
    /// pages: 32 input rows and 14 output rows 50 KB apart) ran 15-35%
    /// slower there: the first 1x1 conv 0.487 -> 0.326 ms, the grouped conv
    /// after it 0.421 -> 0.362 (nnc profile, three alternating runs, AMD
    /// EPYC Zen 4).
    fn arena_start(&self, arena: &[f32]) -> usize {
        let skew = floats_to_huge_page(arena.as_ptr());
        if skew > 0 && arena.len() >= skew + self.arena_len {
            skew
        } else {
            0
        }
    }

    /// Runs the model on `inputs`; validates them first.
    pub fn run(&self, inputs: &[Tensor], pool: &Pool) -> Result<Vec<Tensor>, RunError> {
        self.check_inputs(inputs)?;
        let mut arena = self.arena()?;
        self.run_in(&mut arena, inputs, pool)
    }

    /// Runs the model in a caller-provided arena (reused across runs to
    /// avoid allocating); validates the inputs and the arena size first.
    pub fn run_in(
        &self,
        arena: &mut Vec<f32>,
        inputs: &[Tensor],
        pool: &Pool,
    ) -> Result<Vec<Tensor>, RunError> {
        self.run_timed(arena, inputs, pool, None)
    }

    /// [`Executable::run_in`] that also records when each step started and
    /// ended, relative to the start of the run, into `spans` (one entry per
    /// step), for profiles.
    pub fn run_timed(
        &self,
        arena: &mut Vec<f32>,
        inputs: &[Tensor],
        pool: &Pool,
        spans: Option<&mut Vec<(Duration, Duration)>>,
    ) -> Result<Vec<Tensor>, RunError> {
        self.check_inputs(inputs)?;
        let data: Vec<&[f32]> = inputs.iter().map(Tensor::data).collect();
        let arena = self.execute(arena, &data, pool, spans)?;
        self.outputs
            .iter()
            .map(|b| {
                Ok(Tensor::new(
                    b.shape.clone(),
                    arena[b.offset..b.offset + b.len()].to_vec(),
                )?)
            })
            .collect()
    }

    /// Runs the model on inputs and outputs given as bare slices (the C
    /// API's), in a caller-provided arena: each input must have exactly
    /// its binding's element count, and each output slice receives its
    /// output.
    pub fn run_slices(
        &self,
        arena: &mut Vec<f32>,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        pool: &Pool,
    ) -> Result<(), RunError> {
        if inputs.len() != self.inputs.len() {
            return Err(RunError::InputCount {
                expected: self.inputs.len(),
                found: inputs.len(),
            });
        }
        if outputs.len() != self.outputs.len() {
            return Err(RunError::OutputCount {
                expected: self.outputs.len(),
                found: outputs.len(),
            });
        }
        for (b, data) in self.inputs.iter().zip(inputs) {
            if data.len() != b.len() {
                return Err(RunError::InputLength {
                    name: b.name.clone(),
                    shape: b.shape.clone(),
                    expected: b.len(),
                    found: data.len(),
                });
            }
        }
        for (b, out) in self.outputs.iter().zip(outputs.iter()) {
            if out.len() != b.len() {
                return Err(RunError::OutputLength {
                    name: b.name.clone(),
                    expected: b.len(),
                    found: out.len(),
                });
            }
        }
        let arena = self.execute(arena, inputs, pool, None)?;
        for (b, out) in self.outputs.iter().zip(outputs.iter_mut()) {
            out.copy_from_slice(&arena[b.offset..b.offset + b.len()]);
        }
        Ok(())
    }

    /// Copies `inputs` (each exactly its binding's length: checked by the
    /// callers) into the arena, replacing it with a new one
    /// ([`Executable::arena`]) if it is too small, and runs every step.
    /// Returns the arena as the kernels saw it, from
    /// [`Executable::arena_start`].
    fn execute<'a>(
        &self,
        arena: &'a mut Vec<f32>,
        inputs: &[&[f32]],
        pool: &Pool,
        mut spans: Option<&mut Vec<(Duration, Duration)>>,
    ) -> Result<&'a [f32], RunError> {
        if arena.len() < self.arena_len {
            *arena = self.arena()?;
        }
        let first = self.arena_start(arena);
        let arena = &mut arena[first..];
        let base = ArenaPtr(arena.as_mut_ptr());
        // Denormals flushed on this thread for the run (the workers keep
        // them flushed; see `denormals.rs`).
        let _flush = FlushDenormals::on();
        let session = pool.session();
        for (binding, data) in self.inputs.iter().zip(inputs) {
            copy_input(&session, base, binding, data);
        }
        let start = Instant::now();
        if let Some(spans) = spans.as_deref_mut() {
            spans.clear();
        }
        for step in &self.steps {
            let begin = start.elapsed();
            self.run_step(step, base, &session);
            if let Some(spans) = spans.as_deref_mut() {
                spans.push((begin, start.elapsed()));
            }
        }
        Ok(arena)
    }

    /// Runs one step, splitting its tasks across the pool.
    #[allow(unsafe_code)]
    fn run_step(&self, step: &Step, arena: ArenaPtr, session: &Session<'_>) {
        let tasks = step.tasks.max(1);
        let task = |begin: usize, end: usize| {
            debug_assert!(
                begin <= end && end <= tasks,
                "tasks {begin}..{end} of {tasks}"
            );
            // SAFETY: the arena has `arena_len` floats with the inputs
            // filled in (checked by `execute`'s callers), every range the pool
            // passes lies within `0..tasks` (checked above in debug
            // builds), and `Executable::new`'s caller guaranteed the kernel
            // contract (tasks write disjoint memory).
            unsafe { (step.kernel)(arena.get(), begin, end) }
        };
        if step.parallel {
            session.run(tasks, &task);
        } else {
            task(0, tasks);
        }
    }
}

/// Inputs of at least this many floats (256 KiB) are copied by every
/// thread of the pool.
const SPLIT_COPY_FLOATS: usize = 1 << 16;

/// Copies a model input into the arena. Each thread copies the part the
/// first layer's share of that thread will read (for an image, its rows
/// of every plane, as convolutions split their output rows), so that the
/// input does not have to move to the other core's cache afterwards.
#[allow(unsafe_code)]
fn copy_input(session: &Session<'_>, arena: ArenaPtr, binding: &Binding, data: &[f32]) {
    let shape = &binding.shape;
    // Rows of width `w` in `planes` planes of `h` rows.
    let (h, w) = match shape.len() {
        0 | 1 => (1, data.len()),
        r => (shape[r - 2], shape[r - 1]),
    };
    let plane = h * w;
    if plane == 0 {
        return;
    }
    // A small input is copied by the caller alone: waking a sleeping
    // worker costs more than the copy.
    let tasks = if data.len() >= SPLIT_COPY_FLOATS {
        h
    } else {
        1
    };
    let dst = ArenaPtr(arena.get().wrapping_add(binding.offset));
    session.run(tasks, &|begin, end| {
        let (begin, end) = (begin * h / tasks, end * h / tasks);
        for (i, src) in data.chunks_exact(plane).enumerate() {
            let rows = &src[begin * w..end * w];
            // SAFETY: the binding lies inside the arena (`Executable::new`'s
            // contract) and has `data.len()` floats (checked by
            // `execute`'s callers); tasks copy disjoint rows.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    rows.as_ptr(),
                    dst.get().add(i * plane + begin * w),
                    rows.len(),
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Floats in the test model's input (and output): more than
    /// `SPLIT_COPY_FLOATS`, so every thread copies a share of it.
    const SHAPE: [usize; 4] = [1, 2, 300, 120];
    const LEN: usize = 2 * 300 * 120;
    const _: () = assert!(LEN >= SPLIT_COPY_FLOATS);

    /// Task `t` copies row `t` of the arena's first `LEN` floats (the
    /// input) to the next `LEN` (the output), in 600 tasks of 120 floats.
    ///
    /// # Safety
    /// A [`KernelFn`]: `arena` has `2 * LEN` floats and `end <= 600`.
    #[allow(unsafe_code)]
    unsafe extern "C" fn copy_rows(arena: *mut f32, begin: usize, end: usize) {
        for t in begin..end {
            // SAFETY: the test's arena has `2 * LEN` floats and `t < 600`.
            unsafe {
                std::ptr::copy_nonoverlapping(arena.add(t * 120), arena.add(LEN + t * 120), 120)
            };
        }
    }

    #[allow(unsafe_code)]
    fn identity() -> Executable {
        let binding = |name: &str, offset| Binding {
            name: name.into(),
            offset,
            shape: SHAPE.to_vec(),
        };
        let step = Step {
            name: "copy".into(),
            kernel: copy_rows,
            tasks: 600,
            parallel: true,
        };
        // SAFETY: `copy_rows` touches only the arena's first `2 * LEN`
        // floats, and its tasks write disjoint rows.
        unsafe {
            Executable::new(
                vec![step],
                2 * LEN,
                vec![binding("x", 0)],
                vec![binding("y", LEN)],
                Box::new(()),
            )
        }
    }

    #[test]
    fn slices_of_the_wrong_length_or_count_are_refused_before_running() -> Result<(), RunError> {
        let exe = identity();
        let pool = Pool::new(1)?;
        let mut arena = Vec::new();
        let x: Vec<f32> = (0..LEN).map(|i| i as f32).collect();
        let mut y = vec![0.0; LEN];
        let short = &x[..LEN - 1];
        let err = exe.run_slices(&mut arena, &[short], &mut [&mut y], &pool);
        assert!(matches!(err, Err(RunError::InputLength { found, .. }) if found == LEN - 1));
        let err = exe.run_slices(&mut arena, &[&x], &mut [], &pool);
        assert_eq!(
            err,
            Err(RunError::OutputCount {
                expected: 1,
                found: 0
            })
        );
        let err = exe.run_slices(&mut arena, &[&x], &mut [&mut y[..3]], &pool);
        assert!(matches!(err, Err(RunError::OutputLength { found: 3, .. })));
        assert!(arena.is_empty(), "nothing ran");
        exe.run_slices(&mut arena, &[&x], &mut [&mut y], &pool)?;
        assert_eq!(y, x);
        Ok(())
    }

    #[test]
    fn a_large_input_reaches_the_arena_whole_on_any_number_of_threads() -> Result<(), RunError> {
        let exe = identity();
        let data: Vec<f32> = (0..LEN).map(|i| i as f32).collect();
        let x = Tensor::new(SHAPE.to_vec(), data.clone())?;
        for threads in 1..=3 {
            let pool = Pool::new(threads)?;
            let mut arena = vec![f32::NAN; 2 * LEN];
            for _ in 0..3 {
                let y = exe.run_in(&mut arena, std::slice::from_ref(&x), &pool)?;
                assert_eq!(y[0].data(), data.as_slice(), "{threads} threads");
            }
        }
        Ok(())
    }
}
