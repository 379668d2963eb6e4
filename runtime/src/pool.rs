//! The thread pool that runs a kernel's tasks: the calling thread and
//! `threads - 1` workers. Each thread first takes its own share of a
//! kernel's tasks, the same share every time, then helps with the shares
//! of threads that have fallen behind.
//!
//! Why not rayon: two things rayon cannot be told cost MobileNetV2 at two
//! threads most of its gap to ONNX Runtime (see `bench/README.md`).
//! - **Which core does which task.** Work stealing hands a task to
//!   whichever thread is free, so a layer's rows often go to the core that
//!   did not write the previous layer's rows, and moving a layer's data
//!   between the cores costs about 28 µs. Here thread `t` starts with the
//!   `t`-th share of a kernel's tasks, so consecutive layers split the same
//!   way find their input in their own core's cache; on a quiet machine
//!   every thread finishes its own share and little is taken.
//! - **Waking a sleeping thread.** An idle rayon worker sleeps after a few
//!   microseconds, and waking it in this VM takes tens of microseconds (an
//!   idle virtual CPU has to be rescheduled by the host). Here workers wait
//!   actively for [`SPIN`] after their last task before sleeping, which
//!   covers the gap between steps and between back-to-back runs; they
//!   never wait longer than that, so an idle pool costs no CPU.
//!
//! Under load (other processes, or more threads than cores) a thread can
//! be descheduled at any moment for a whole time slice. Nothing here waits
//! for a thread that has not started: a share is claimed in chunks, so the
//! threads that are running take the rest of a descheduled thread's share,
//! and a worker that arrives after every task of a step has been claimed
//! skips the step. Waiting threads spin only for [`HOT`] and then yield
//! their core, so a descheduled thread (or another process) can use it.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::executable::RunError;

/// How long a worker waits actively for the next kernel before it sleeps.
const SPIN: Duration = Duration::from_millis(1);

/// How long a waiting thread spins before it starts yielding its core.
/// Longer than the usual gap between two steps on a quiet machine, where
/// yielding costs only a system call; on a loaded one, a core spun on is
/// taken from a thread that could use it.
const HOT: Duration = Duration::from_micros(20);

/// Chunks a share is claimed in. More chunks leave more of a descheduled
/// thread's share to the others; each chunk is one more call of the kernel.
const CHUNKS: usize = 4;

/// The most threads a pool can have (the width of the running-worker count
/// in [`JobState`]).
const MAX_THREADS: usize = RUNNING as usize;

/// A pool of threads that runs the tasks of one kernel at a time.
pub struct Pool {
    threads: usize,
    /// `None` with one thread: every kernel runs on the caller's thread.
    workers: Option<Workers>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl Pool {
    /// A pool of `threads` threads, the caller's included (0 means one per
    /// core). With one thread every kernel runs on the caller's thread.
    /// More threads than cores work, but only take turns on the cores.
    pub fn new(threads: usize) -> Result<Pool, RunError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        if threads > MAX_THREADS {
            return Err(RunError::Threads(format!(
                "{threads} threads asked for, at most {MAX_THREADS} supported"
            )));
        }
        let workers = if threads > 1 {
            Some(Workers::start(threads)?)
        } else {
            None
        };
        Ok(Pool { threads, workers })
    }

    /// The number of threads kernels are split across.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Gives the calling thread the pool for a run: one run at a time uses
    /// the workers; a second caller waits for the first to finish.
    pub(crate) fn session(&self) -> Session<'_> {
        Session {
            workers: self.workers.as_ref().map(|w| {
                (
                    w,
                    w.run_lock
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner()),
                )
            }),
        }
    }
}

/// The pool held by one run (see [`Pool::session`]).
pub(crate) struct Session<'a> {
    workers: Option<(&'a Workers, MutexGuard<'a, ()>)>,
}

impl Session<'_> {
    /// Calls `task(begin, end)` over disjoint ranges covering `0..tasks`,
    /// each task exactly once, and returns when all are done. Thread `t`
    /// starts with its share `tasks * t / n .. tasks * (t + 1) / n` (the
    /// calling thread is thread 0) and then takes what is left of the
    /// others'. `task` must be safe to call with different ranges at once
    /// from different threads.
    ///
    /// If `task` panics, on any thread, the panic is raised again here once
    /// every thread has left the job (some tasks may not have run), and the
    /// pool stays usable for the next job.
    pub(crate) fn run(&self, tasks: usize, task: &(dyn Fn(usize, usize) + Sync)) {
        match &self.workers {
            Some((workers, _)) if tasks > 1 => workers.run(tasks, task),
            _ => task(0, tasks),
        }
    }
}

/// The worker threads and what they share with the caller.
struct Workers {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    /// Held for a whole run, so concurrent runs take turns.
    run_lock: Mutex<()>,
}

/// The current job and its progress.
struct Shared {
    /// Which job is current, whether workers may still join it, and how
    /// many are running it.
    state: JobState,
    /// The job: the address of a `&(dyn Fn(usize, usize) + Sync)` on the
    /// publisher's stack, and the task count. Written before the job is
    /// opened (release) and read by a worker after it joins (acquire); the
    /// publisher returns only after closing the job and seeing every
    /// worker that joined leave.
    job: AtomicUsize,
    tasks: AtomicUsize,
    /// Where each thread's share of the current job stands.
    shares: Shares,
    /// Workers asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    /// The first panic a worker caught in the current job's task, raised
    /// again on the caller's thread when the job ends.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Workers {
    fn start(threads: usize) -> Result<Workers, RunError> {
        let shared = Arc::new(Shared {
            state: JobState::new(),
            job: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            shares: Shares::new(threads),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let mut workers = Workers {
            shared: Arc::clone(&shared),
            handles: Vec::with_capacity(threads - 1),
            run_lock: Mutex::new(()),
        };
        for index in 1..threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("nnc-worker-{index}"))
                .spawn(move || {
                    // The workers run only nnc's kernels: denormals flushed
                    // for their lifetime (see `denormals.rs`).
                    let _flush = crate::denormals::FlushDenormals::on();
                    shared.work(index)
                })
                .map_err(|e| RunError::Threads(e.to_string()))?;
            // On an early return, `Drop` stops the workers started so far.
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// Publishes the job, runs the caller's share and whatever is left of
    /// the others, then waits for the workers still running a chunk. The
    /// caller holds `run_lock`, so the previous job is closed and has no
    /// workers left.
    fn run(&self, tasks: usize, task: &(dyn Fn(usize, usize) + Sync)) {
        let s = &*self.shared;
        s.job.store(
            &task as *const &(dyn Fn(usize, usize) + Sync) as usize,
            Ordering::Relaxed,
        );
        s.tasks.store(tasks, Ordering::Relaxed);
        s.shares.reset(tasks);
        // SeqCst pairs with the sleeper's SeqCst increment of `sleepers`
        // and load of the state: either it sees the new job or we see it
        // asleep and wake it.
        s.state.open(s.state.current() + 1);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|poison| poison.into_inner());
            s.wake.notify_all();
        }
        // A panic in the caller's share must not unwind past the wait
        // below: workers may still be calling `task`, which lives on this
        // stack frame.
        let mine = catch_unwind(AssertUnwindSafe(|| s.shares.work(0, tasks, task)));
        // Every chunk is claimed (or the caller gave up): a worker arriving
        // now has nothing to do, so it may not join (it would read `job`
        // after we return).
        s.state.close();
        // Acquire: the workers' writes happen before they leave. `task` (on
        // this stack frame) must outlive their use of it.
        wait_until(|| s.state.running() == 0, None);
        let theirs = s
            .panic
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            resume_unwind(payload);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.state.stop();
        {
            let _guard = s.lock.lock().unwrap_or_else(|poison| poison.into_inner());
            s.wake.notify_all();
        }
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Shared {
    /// A worker's loop: wait for a job, join it if it is still open, run
    /// its share and then the rest, leave, repeat.
    #[allow(unsafe_code)]
    fn work(&self, index: usize) {
        let mut seen = 0;
        loop {
            seen = self.wait(seen);
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if !self.state.join(seen) {
                // Every task was claimed before we got here.
                continue;
            }
            let tasks = self.tasks.load(Ordering::Relaxed);
            // SAFETY: `job` holds the address of the publisher's `&dyn Fn`
            // (`Workers::run`), stored before the job we joined was
            // opened; the publisher waits for every worker that joined to
            // leave before that reference goes out of scope.
            let task = unsafe {
                *(self.job.load(Ordering::Relaxed) as *const &(dyn Fn(usize, usize) + Sync))
            };
            // A panicking task must neither kill this worker (the pool would
            // lose a thread) nor skip `leave` (the caller would wait for
            // ever): the panic is handed to the caller instead.
            if let Err(payload) =
                catch_unwind(AssertUnwindSafe(|| self.shares.work(index, tasks, task)))
            {
                let mut first = self
                    .panic
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                first.get_or_insert(payload);
            }
            self.state.leave();
        }
    }

    /// Waits for a job other than `seen` and returns its number: spins,
    /// then yields, for [`SPIN`] in all, then sleeps.
    fn wait(&self, seen: u64) -> u64 {
        let mut job = seen;
        let published = wait_until(
            || {
                job = self.state.current();
                job != seen
            },
            Some(SPIN),
        );
        if published {
            return job;
        }
        let mut guard = self
            .lock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let job = loop {
            let job = self.state.current_seq_cst();
            if job != seen {
                break job;
            }
            guard = self
                .wake
                .wait(guard)
                .unwrap_or_else(|poison| poison.into_inner());
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        job
    }
}

/// Waits until `done()` holds, or `limit` has passed; returns whether it
/// holds. Spins for [`HOT`], then yields the core between checks: on a
/// quiet machine a yield returns at once, on a loaded one it lets another
/// thread run, perhaps the one being waited for.
fn wait_until(mut done: impl FnMut() -> bool, limit: Option<Duration>) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    let mut hot = true;
    loop {
        if done() {
            return true;
        }
        spins = spins.wrapping_add(1);
        if hot {
            std::hint::spin_loop();
            // Reading the clock costs about as much as 30 spins.
            if spins.is_multiple_of(64) && start.elapsed() > HOT {
                hot = false;
            }
        } else {
            std::thread::yield_now();
            if limit.is_some_and(|limit| spins.is_multiple_of(16) && start.elapsed() > limit) {
                return false;
            }
        }
    }
}

/// The state of the current job in one word, so that joining can check
/// the job and whether it is open in one atomic step: the job's number
/// (bits 17 and up), whether it is closed to workers (bit 16), and how
/// many workers are running it (bits 0-15).
struct JobState(AtomicU64);

/// The running-worker count's bits.
const RUNNING: u64 = (1 << 16) - 1;
const CLOSED: u64 = 1 << 16;
const NUMBER_SHIFT: u32 = 17;

impl JobState {
    /// Job 0, which is closed: workers wait for job 1.
    fn new() -> JobState {
        JobState(AtomicU64::new(CLOSED))
    }

    /// The current job's number (acquire: its parameters are visible).
    fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire) >> NUMBER_SHIFT
    }

    /// [`JobState::current`] in the single total order of SeqCst
    /// operations, for the sleep handshake.
    fn current_seq_cst(&self) -> u64 {
        self.0.load(Ordering::SeqCst) >> NUMBER_SHIFT
    }

    /// Opens job `number` with no workers. Only the caller holding the run
    /// lock opens and closes jobs, and only once the previous job is
    /// closed with no workers left.
    fn open(&self, number: u64) {
        self.0.store(number << NUMBER_SHIFT, Ordering::SeqCst);
    }

    /// Joins job `number` if it is current and open; a joined worker must
    /// [`JobState::leave`].
    fn join(&self, number: u64) -> bool {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            if word >> NUMBER_SHIFT != number || word & CLOSED != 0 {
                return false;
            }
            // The count cannot overflow: at most `MAX_THREADS - 1` workers.
            match self
                .0
                .compare_exchange_weak(word, word + 1, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// Leaves the joined job (release: the worker's writes are visible to
    /// whoever sees it gone).
    fn leave(&self) {
        self.0.fetch_sub(1, Ordering::Release);
    }

    /// Closes the current job to workers that have not joined yet.
    fn close(&self) {
        self.0.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Workers running the current job.
    fn running(&self) -> u64 {
        self.0.load(Ordering::Acquire) & RUNNING
    }

    /// Publishes a closed job that no worker joins, so that every worker
    /// wakes and sees `stop`.
    fn stop(&self) {
        self.0.fetch_add(1 << NUMBER_SHIFT, Ordering::SeqCst);
    }
}

/// Where each thread's share of the current job stands: the next task of
/// share `t` not yet claimed by any thread.
struct Shares(Box<[NextTask]>);

/// One share's next unclaimed task, alone on its cache lines (the adjacent
/// line prefetcher fetches pairs), since its owner claims from it often.
#[repr(align(128))]
struct NextTask(AtomicUsize);

impl Shares {
    fn new(threads: usize) -> Shares {
        Shares(
            (0..threads)
                .map(|_| NextTask(AtomicUsize::new(0)))
                .collect(),
        )
    }

    /// Share `t` of `0..tasks`.
    fn bounds(&self, t: usize, tasks: usize) -> (usize, usize) {
        let n = self.0.len();
        (tasks * t / n, tasks * (t + 1) / n)
    }

    /// Makes every share of `0..tasks` unclaimed. Published to the workers
    /// by opening the job.
    fn reset(&self, tasks: usize) {
        for (t, next) in self.0.iter().enumerate() {
            next.0.store(self.bounds(t, tasks).0, Ordering::Relaxed);
        }
    }

    /// Claims the next chunk of share `t`, if any is left.
    fn claim(&self, t: usize, tasks: usize) -> Option<(usize, usize)> {
        let (begin, end) = self.bounds(t, tasks);
        let next = &self.0.get(t)?.0;
        // Reading first leaves an exhausted share's line unwritten, so the
        // threads that check it do not take it from each other.
        if next.load(Ordering::Relaxed) >= end {
            return None;
        }
        let chunk = (end - begin).div_ceil(CHUNKS);
        let first = next.fetch_add(chunk, Ordering::Relaxed);
        (first < end).then(|| (first, (first + chunk).min(end)))
    }

    /// Thread `me`'s part of a job: its own share, then what is left of
    /// the others', starting with the next thread's (so that thieves
    /// spread out).
    fn work(&self, me: usize, tasks: usize, task: &(dyn Fn(usize, usize) + Sync)) {
        let n = self.0.len();
        for k in 0..n {
            let t = (me + k) % n;
            while let Some((begin, end)) = self.claim(t, tasks) {
                task(begin, end);
            }
        }
    }
}

#[cfg(test)]
mod tests;
