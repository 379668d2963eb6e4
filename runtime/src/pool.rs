//! The thread pool that runs a kernel's tasks: the calling thread and
//! `threads - 1` workers, each always taking the same share of every
//! kernel's tasks.
//!
//! Why not rayon: two things rayon cannot be told cost MobileNetV2 at two
//! threads most of its gap to ONNX Runtime (see `bench/README.md`).
//! - **Which core does which task.** Work stealing hands a task to
//!   whichever thread is free, so a layer's rows often go to the core that
//!   did not write the previous layer's rows, and moving a layer's data
//!   between the cores costs about 28 µs. Here thread `t` always takes the
//!   `t`-th share of a kernel's tasks, so consecutive layers split the same
//!   way find their input in their own core's cache.
//! - **Waking a sleeping thread.** An idle rayon worker sleeps after a few
//!   microseconds, and waking it in this VM takes tens of microseconds (an
//!   idle virtual CPU has to be rescheduled by the host). Here workers spin
//!   for [`SPIN`] after their last task before sleeping, which covers the
//!   gap between steps and between back-to-back runs; they never spin
//!   longer than that, so an idle pool costs no CPU.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::executable::RunError;

/// How long a worker spins waiting for the next kernel before it sleeps.
const SPIN: Duration = Duration::from_millis(1);

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
    pub fn new(threads: usize) -> Result<Pool, RunError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
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
    /// Calls `task(begin, end)` over `0..tasks`, split into one contiguous
    /// share per thread (thread `t` takes `tasks * t / n .. tasks * (t + 1)
    /// / n`), and returns when all are done. The calling thread takes the
    /// first share. `task` must be safe to call with different ranges at
    /// once from different threads.
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

/// The current job, published by bumping `epoch`.
struct Shared {
    /// Counts published jobs; a worker runs a job when it sees a new value.
    epoch: AtomicU64,
    /// The job: the address of a `&(dyn Fn(usize, usize) + Sync)` on the
    /// publisher's stack, and the task count. Written before `epoch` is
    /// bumped (release) and read after a worker sees the new epoch
    /// (acquire); the publisher returns only when every worker is done.
    job: AtomicUsize,
    tasks: AtomicUsize,
    /// Threads in the pool, the caller's included.
    threads: usize,
    /// Workers still running the current job.
    pending: AtomicUsize,
    /// Workers asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Workers {
    fn start(threads: usize) -> Result<Workers, RunError> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            threads,
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
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
                .spawn(move || shared.work(index))
                .map_err(|e| RunError::Threads(e.to_string()))?;
            // On an early return, `Drop` stops the workers started so far.
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// Publishes the job, runs the caller's share, waits for the workers.
    /// The caller holds `run_lock`.
    fn run(&self, tasks: usize, task: &(dyn Fn(usize, usize) + Sync)) {
        let s = &*self.shared;
        s.job.store(
            &task as *const &(dyn Fn(usize, usize) + Sync) as usize,
            Ordering::Relaxed,
        );
        s.tasks.store(tasks, Ordering::Relaxed);
        s.pending.store(s.threads - 1, Ordering::Relaxed);
        // SeqCst pairs with the sleeper's SeqCst increment of `sleepers`
        // and load of `epoch`: either it sees the new epoch or we see it
        // asleep and wake it.
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|poison| poison.into_inner());
            s.wake.notify_all();
        }
        let (begin, end) = s.share(0, tasks);
        if begin < end {
            task(begin, end);
        }
        // Acquire: the workers' writes happen before their release
        // decrement. `task` (on this stack frame) must outlive their use.
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) > 0 {
            spins = spins.saturating_add(1);
            if spins < 1 << 16 {
                std::hint::spin_loop();
            } else {
                // A worker was descheduled; let it have this core.
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
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
    /// Thread `t`'s share of `0..tasks`.
    fn share(&self, t: usize, tasks: usize) -> (usize, usize) {
        (tasks * t / self.threads, tasks * (t + 1) / self.threads)
    }

    /// A worker's loop: wait for a job, run its share, report, repeat.
    #[allow(unsafe_code)]
    fn work(&self, index: usize) {
        let mut seen = 0;
        loop {
            seen = self.wait(seen);
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let tasks = self.tasks.load(Ordering::Relaxed);
            let (begin, end) = self.share(index, tasks);
            if begin < end {
                // SAFETY: `job` holds the address of the publisher's
                // `&dyn Fn` (`Workers::run`), stored before the epoch we
                // saw was bumped; the publisher waits for `pending` before
                // that reference goes out of scope.
                let task = unsafe {
                    *(self.job.load(Ordering::Relaxed) as *const &(dyn Fn(usize, usize) + Sync))
                };
                task(begin, end);
            }
            self.pending.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits for an epoch other than `seen` and returns it: spins for
    /// [`SPIN`], then sleeps.
    fn wait(&self, seen: u64) -> u64 {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch != seen {
                return epoch;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
                break;
            }
        }
        let mut guard = self
            .lock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let epoch = loop {
            let epoch = self.epoch.load(Ordering::SeqCst);
            if epoch != seen {
                break epoch;
            }
            guard = self
                .wake
                .wait(guard)
                .unwrap_or_else(|poison| poison.into_inner());
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a job over `tasks` tasks on `pool` that counts how often each
    /// task ran.
    fn counts(pool: &Pool, tasks: usize) -> Vec<usize> {
        let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
        pool.session().run(tasks, &|begin, end| {
            for count in &counts[begin..end] {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        counts.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn every_task_runs_exactly_once() -> Result<(), RunError> {
        for threads in 1..=3 {
            let pool = Pool::new(threads)?;
            for tasks in [1, 2, 3, 7, 64] {
                assert_eq!(
                    counts(&pool, tasks),
                    vec![1; tasks],
                    "{threads} threads, {tasks} tasks"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn sleeping_workers_wake_for_the_next_job() -> Result<(), RunError> {
        let pool = Pool::new(2)?;
        assert_eq!(counts(&pool, 5), vec![1; 5]);
        // Long enough for the worker to stop spinning and sleep.
        std::thread::sleep(SPIN * 20);
        assert_eq!(counts(&pool, 5), vec![1; 5]);
        Ok(())
    }

    #[test]
    fn concurrent_runs_on_one_pool_take_turns() -> Result<(), RunError> {
        let pool = Pool::new(2)?;
        std::thread::scope(|scope| {
            let runs: Vec<_> = (0..4)
                .map(|i| {
                    scope.spawn({
                        let pool = &pool;
                        move || (0..50).all(|_| counts(pool, 9 + i) == vec![1; 9 + i])
                    })
                })
                .collect();
            for run in runs {
                assert_eq!(run.join().ok(), Some(true));
            }
        });
        Ok(())
    }
}
