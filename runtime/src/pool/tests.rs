//! The pool's tests: the claiming and joining protocol driven step by step
//! from one thread, then whole pools.

use super::*;
use std::sync::atomic::AtomicUsize;

/// Runs a job over `tasks` tasks on `pool` that counts how often each task
/// ran.
fn counts(pool: &Pool, tasks: usize) -> Vec<usize> {
    let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
    pool.session().run(tasks, &|begin, end| {
        for count in &counts[begin..end] {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    counts.into_iter().map(AtomicUsize::into_inner).collect()
}

/// Simulated threads claiming chunks in an order drawn from `seed`, each
/// as [`Shares::work`] does (its own share, then the others'). Returns how
/// often each task was claimed.
fn interleaved_claims(threads: usize, tasks: usize, seed: u64) -> Vec<usize> {
    let shares = Shares::new(threads);
    shares.reset(tasks);
    let mut counts = vec![0; tasks];
    // How many shares each thread has finished with.
    let mut done = vec![0; threads];
    let mut state = seed;
    while done.iter().any(|&k| k < threads) {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let me = (state >> 33) as usize % threads;
        if done[me] == threads {
            continue;
        }
        match shares.claim((me + done[me]) % threads, tasks) {
            Some((begin, end)) => {
                for count in &mut counts[begin..end] {
                    *count += 1;
                }
            }
            None => done[me] += 1,
        }
    }
    counts
}

#[test]
fn interleaved_claims_cover_every_task_exactly_once() {
    for threads in 1..=5 {
        for tasks in [0, 1, 2, 3, 5, 8, 13, 64, 100] {
            for seed in 0..20 {
                let counts = interleaved_claims(threads, tasks, seed);
                assert_eq!(
                    counts,
                    vec![1; tasks],
                    "{threads} threads, {tasks} tasks, seed {seed}"
                );
            }
        }
    }
}

/// The ranges `shares.work(me, tasks, ..)` calls its task with, in order.
fn ranges_worked(shares: &Shares, me: usize, tasks: usize) -> Vec<(usize, usize)> {
    let ranges = Mutex::new(Vec::new());
    shares.work(me, tasks, &|begin, end| {
        ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((begin, end))
    });
    ranges.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn a_thread_alone_does_its_own_share_first_then_the_others() {
    let shares = Shares::new(3);
    shares.reset(30);
    let tasks: Vec<usize> = ranges_worked(&shares, 1, 30)
        .into_iter()
        .flat_map(|(b, e)| b..e)
        .collect();
    let expected: Vec<usize> = (10..30).chain(0..10).collect();
    assert_eq!(tasks, expected);
}

#[test]
fn a_stalled_chunk_leaves_the_rest_of_its_share_to_the_others() {
    let tasks = 64;
    let shares = Shares::new(2);
    shares.reset(tasks);
    // The worker claims the first chunk of its share and is descheduled.
    assert_eq!(shares.claim(1, tasks), Some((32, 40)));
    let mut done = vec![0; tasks];
    for (begin, end) in ranges_worked(&shares, 0, tasks) {
        for d in &mut done[begin..end] {
            *d += 1;
        }
    }
    let mut expected = vec![1; tasks];
    expected[32..40].fill(0);
    assert_eq!(done, expected);
}

#[test]
fn workers_join_only_the_current_open_job() {
    let state = JobState::new();
    // Job 0 is closed from the start.
    assert!(!state.join(0));
    state.open(1);
    assert!(state.join(1));
    assert!(state.join(1));
    assert_eq!(state.running(), 2);
    state.close();
    // A worker that arrives once every task is claimed stays out.
    assert!(!state.join(1));
    state.leave();
    state.leave();
    assert_eq!(state.running(), 0);
    state.open(2);
    // A worker still looking at job 1 cannot join job 2 by mistake.
    assert!(!state.join(1));
    assert!(state.join(2));
    assert_eq!((state.current(), state.running()), (2, 1));
}

#[test]
fn every_task_runs_exactly_once() -> Result<(), RunError> {
    // Up to more threads than this machine (or any test runner) has cores.
    for threads in 1..=9 {
        let pool = Pool::new(threads)?;
        for tasks in [0, 1, 2, 3, 7, 8, 9, 64, 1000] {
            for _ in 0..20 {
                assert_eq!(
                    counts(&pool, tasks),
                    vec![1; tasks],
                    "{threads} threads, {tasks} tasks"
                );
            }
        }
    }
    Ok(())
}

/// How long the stalled worker in the next test waits before calling the
/// pool deadlocked. Not a performance bound: the caller releases it as
/// soon as it has done the other tasks, so on a working pool this only
/// bounds how long a hang takes to become a failure.
const DEADLOCK: Duration = Duration::from_secs(120);

#[test]
fn the_caller_finishes_a_stalled_workers_share() -> Result<(), RunError> {
    let (threads, tasks) = (2, 64);
    let pool = Pool::new(threads)?;
    let caller = std::thread::current().id();
    // Tasks done so far, and whether the worker has started its first
    // chunk; the condvar signals both.
    let progress = Mutex::new((0usize, false));
    let changed = Condvar::new();
    let by_caller = AtomicUsize::new(0);
    let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
    let first_call = [AtomicBool::new(true), AtomicBool::new(true)];
    let timed_out = AtomicBool::new(false);
    pool.session().run(tasks, &|begin, end| {
        let on_caller = std::thread::current().id() == caller;
        let first = first_call[usize::from(!on_caller)].swap(false, Ordering::Relaxed);
        let lock = || progress.lock().unwrap_or_else(|p| p.into_inner());
        if first && on_caller {
            // Hold the caller until the worker has a chunk, so that the
            // worker surely takes part.
            let guard = lock();
            let (guard, timeout) = changed
                .wait_timeout_while(guard, DEADLOCK, |p| !p.1)
                .unwrap_or_else(|p| p.into_inner());
            drop(guard);
            timed_out.fetch_or(timeout.timed_out(), Ordering::Relaxed);
        } else if first {
            // The worker stalls in its first chunk until every other task
            // is done: the rest of its share must be taken by the caller.
            let mut guard = lock();
            guard.1 = true;
            changed.notify_all();
            let (guard, timeout) = changed
                .wait_timeout_while(guard, DEADLOCK, |p| p.0 < tasks - (end - begin))
                .unwrap_or_else(|p| p.into_inner());
            drop(guard);
            timed_out.fetch_or(timeout.timed_out(), Ordering::Relaxed);
        }
        for count in &counts[begin..end] {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if on_caller {
            by_caller.fetch_add(end - begin, Ordering::Relaxed);
        }
        lock().0 += end - begin;
        changed.notify_all();
    });
    assert!(!timed_out.load(Ordering::Relaxed), "deadlocked");
    let counts: Vec<usize> = counts.into_iter().map(AtomicUsize::into_inner).collect();
    assert_eq!(counts, vec![1; tasks]);
    // The caller's own share is half; it did more.
    assert!(by_caller.load(Ordering::Relaxed) > tasks / 2);
    Ok(())
}

#[test]
fn sleeping_workers_wake_for_the_next_job() -> Result<(), RunError> {
    let pool = Pool::new(2)?;
    assert_eq!(counts(&pool, 5), vec![1; 5]);
    // Long enough for the worker to stop waiting actively and sleep.
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

#[test]
fn too_many_threads_is_an_error() {
    assert!(matches!(
        Pool::new(MAX_THREADS + 1),
        Err(RunError::Threads(_))
    ));
}

/// A job whose task panics at task `bad`, on whichever thread runs it.
fn panicking_job(pool: &Pool, tasks: usize, bad: usize) -> std::thread::Result<()> {
    catch_unwind(AssertUnwindSafe(|| {
        pool.session().run(tasks, &|begin, end| {
            if (begin..end).contains(&bad) {
                #[allow(clippy::panic)]
                {
                    panic!("task {bad} fails on purpose");
                }
            }
        })
    }))
}

#[test]
fn a_panicking_task_reaches_the_caller_and_leaves_the_pool_usable() -> Result<(), RunError> {
    for threads in [1, 2, 3] {
        let pool = Pool::new(threads)?;
        for round in 0..30 {
            // The first task is in the caller's own share, the last in the
            // last worker's; either may run on any thread.
            let bad = if round % 2 == 0 { 0 } else { 63 };
            let result = panicking_job(&pool, 64, bad);
            let message = result
                .err()
                .and_then(|p| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            assert_eq!(
                message,
                format!("task {bad} fails on purpose"),
                "{threads} threads"
            );
            // The pool still runs every task once, and its workers are
            // alive: they take part in the next job.
            assert_eq!(counts(&pool, 100), vec![1; 100], "{threads} threads");
            if threads > 1 {
                assert!(a_worker_takes_part(&pool), "{threads} threads");
            }
        }
    }
    Ok(())
}

/// Whether a worker runs a task of a job whose caller, if it runs the
/// first task, waits there (up to [`DEADLOCK`]) for one to. A worker may
/// take the first task itself (idle threads take over other shares), which
/// counts: it took part. (Returning whether the caller saw help made this
/// fail now and then on a loaded machine, when a worker ran task 0.)
fn a_worker_takes_part(pool: &Pool) -> bool {
    let caller = std::thread::current().id();
    let helped = AtomicBool::new(false);
    pool.session().run(64, &|begin, end| {
        if std::thread::current().id() != caller {
            helped.store(true, Ordering::Release);
        } else if begin == 0 && begin < end {
            let start = Instant::now();
            while !helped.load(Ordering::Acquire) && start.elapsed() < DEADLOCK {
                std::thread::yield_now();
            }
        }
    });
    helped.load(Ordering::Acquire)
}
