//! How far apart the cores that run a benchmark's threads are, measured as
//! the round trip of a cache line between two threads.
//!
//! Why a benchmark reports it: on this project's 2-vCPU virtual machines
//! (AMD EPYC) the host moves the two virtual CPUs between sharing an L3
//! (a round trip of about 60 ns) and sitting on two dies (about 330 ns),
//! for seconds to minutes at a time, and two-thread latencies move with it:
//! RegNetX-400MF took 4.5-4.7 ms at two threads with the cores close and
//! 6.0-6.3 ms with them apart, ONNX Runtime 4.9-5.1 and 6.0-6.2 (see
//! `bench/README.md`). A two-thread figure means little without it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Round trips per timed batch.
const BATCH: u64 = 200;

/// A median round trip longer than this means the two threads took turns
/// on one CPU (the other was busy): a time slice, not a distance.
const TAKING_TURNS_NS: f64 = 10_000.0;

/// The median round trip, in nanoseconds, of a counter passed from the
/// calling thread to a second thread and back, over batches for about
/// `window`. `None` with a single CPU, or if the second thread did not run
/// beside the caller: it did not answer within the window, or the round
/// trips took more than [`TAKING_TURNS_NS`] (a loaded machine; the suite
/// saw 170-220 us while another process held a core).
pub fn round_trip_ns(window: Duration) -> Option<f64> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    // The caller writes odd values, the echo the even one after each.
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let (counter, stop) = (Arc::clone(&counter), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = counter.load(Ordering::Acquire);
                if v % 2 == 1 && v != last {
                    last = v;
                    counter.store(v + 1, Ordering::Release);
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let start = Instant::now();
    let deadline = start + window;
    let mut batches = Vec::new();
    let mut next = 1u64;
    'timing: while Instant::now() < deadline {
        let t = Instant::now();
        for _ in 0..BATCH {
            counter.store(next, Ordering::Release);
            while counter.load(Ordering::Acquire) != next + 1 {
                if Instant::now() > deadline + window {
                    break 'timing;
                }
                std::hint::spin_loop();
            }
            next += 2;
        }
        batches.push(t.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
    }
    stop.store(true, Ordering::Relaxed);
    // The echo thread only spins on two atomics; it cannot panic.
    let _ = echo.join();
    batches.sort_by(f64::total_cmp);
    batches
        .get(batches.len() / 2)
        .copied()
        .filter(|&ns| ns <= TAKING_TURNS_NS)
}

/// How long each probe of [`around`] takes.
const PROBE: Duration = Duration::from_millis(30);

/// Runs `work` between two probes when `threads > 1`: the round trips
/// before and after it, if both were measured.
pub fn around<T, E>(
    threads: usize,
    work: impl FnOnce() -> Result<T, E>,
) -> Result<(T, Option<[f64; 2]>), E> {
    if threads <= 1 {
        return Ok((work()?, None));
    }
    let before = round_trip_ns(PROBE);
    let done = work()?;
    // A pool's workers spin for a moment after their last task; the probe
    // would share their cores.
    std::thread::sleep(Duration::from_millis(5));
    let after = round_trip_ns(PROBE);
    Ok((done, before.zip(after).map(|(b, a)| [b, a])))
}

/// The line `nnc bench` and `nnc profile` print for [`around`]'s figures.
pub fn describe([before, after]: [f64; 2]) -> String {
    format!(
        "cores {before:.0} ns apart before the runs and {after:.0} ns after (a cache line's round trip between two threads; about 60 ns on cores that share an L3, several hundred across dies)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round trip takes at least the two cache-line transfers' worth of
    /// time (tens of nanoseconds between cores, a few between hardware
    /// threads of one core) and, on an idle machine, well under the
    /// window; a single CPU gives none.
    #[test]
    fn a_round_trip_is_measured_on_several_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ns = round_trip_ns(Duration::from_millis(20));
        if cpus < 2 {
            assert_eq!(ns, None);
        } else if let Some(ns) = ns {
            assert!(ns > 1.0 && ns <= TAKING_TURNS_NS, "{ns} ns");
        }
    }

    /// `around` runs the work once and returns its result (or its error),
    /// probing only with several threads; `describe` names both figures.
    #[test]
    fn around_probes_only_with_several_threads() {
        let mut calls = 0;
        let one: Result<_, ()> = around(1, || {
            calls += 1;
            Ok(7)
        });
        assert_eq!(one, Ok((7, None)));
        let two: Result<_, ()> = around(2, || {
            calls += 1;
            Ok(8)
        });
        assert!(matches!(two, Ok((8, _))), "{two:?}");
        if let Ok((_, Some([b, a]))) = two {
            assert!(b > 1.0 && a > 1.0 && b <= TAKING_TURNS_NS && a <= TAKING_TURNS_NS);
            let line = describe([b, a]);
            assert!(line.contains(&format!("{b:.0} ns apart before")), "{line}");
            assert!(line.contains(&format!("{a:.0} ns after")), "{line}");
        }
        assert_eq!(around(2, || Err::<(), _>("failed")), Err("failed"));
        assert_eq!(calls, 2);
    }
}
