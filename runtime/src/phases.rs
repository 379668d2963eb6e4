//! Work in phases shared by the tasks of one kernel: phase `k + 1` starts
//! only once every part of phase `k` is done, as the steps of a recurrent
//! layer whose rows are split across threads (each step reads the whole
//! `h` of the step before).
//!
//! Every task of the kernel is a participant and owns one part of every
//! phase. A participant does its own part, then waits for the others; an
//! owner that is late (descheduled, or not started, as when the pool has
//! fewer threads than the kernel has tasks) has its part taken by a
//! participant that is waiting, at once if the owner also missed the
//! phase before, else after [`GRACE`]. So nothing waits for a thread that
//! is not running, and a pool of one thread runs every part of every
//! phase in its first task. A part is claimed with one compare-and-swap,
//! so each is done exactly once.
//!
//! The state is `1 + 2 * parts` words of memory that every participant
//! shares (the kernel's arena scratch, so that concurrent runs of one
//! model do not share it), zeroed before the first participant starts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a participant waits for a part's owner that kept up with the
/// phase before, before doing the part itself. A quiet core reaches the
/// next phase within a microsecond or two of the others; taking its part
/// any sooner would move its share of the weights to the other core.
const GRACE: Duration = Duration::from_micros(20);

/// How long a waiting participant spins before it yields its core between
/// checks (as the pool's waits).
const HOT: Duration = Duration::from_micros(20);

/// The shared state of one run of a phased kernel (see the module docs).
pub struct Phases<'a> {
    /// Parts of every phase done so far, over all phases.
    done: &'a AtomicU32,
    /// Per part: the first phase whose part nobody has claimed yet.
    next: &'a [AtomicU32],
    /// Per part: one past the last phase its owner did itself (0 before
    /// the owner started).
    kept_up: &'a [AtomicU32],
}

impl<'a> Phases<'a> {
    /// Words of state for `parts` parts.
    pub const fn words(parts: usize) -> usize {
        1 + 2 * parts
    }

    /// The state in `words`, which must be [`Phases::words`] long.
    ///
    /// # Panics
    /// If `words` has another length.
    pub fn new(words: &'a [AtomicU32]) -> Phases<'a> {
        assert!(words.len() % 2 == 1, "{} words of phase state", words.len());
        let parts = (words.len() - 1) / 2;
        Phases {
            done: &words[0],
            next: &words[1..1 + parts],
            kept_up: &words[1 + parts..],
        }
    }

    /// The state at `at`.
    ///
    /// # Safety
    /// `at` is valid for [`Phases::words`]`(parts)` `u32`s, aligned to 4,
    /// for `'a`; they were zeroed before any participant of this run
    /// started (with a happens-before edge, as between two pool steps),
    /// and are accessed only through this type until the run ends.
    #[allow(unsafe_code)]
    pub unsafe fn from_ptr(at: *mut u32, parts: usize) -> Phases<'a> {
        // SAFETY: per the caller; `AtomicU32` has the layout of `u32`.
        let words =
            unsafe { std::slice::from_raw_parts(at.cast::<AtomicU32>(), Phases::words(parts)) };
        Phases::new(words)
    }

    /// Parts per phase.
    pub fn parts(&self) -> usize {
        self.next.len()
    }

    /// Runs participant `me` through phases `0..phases`: `work(part,
    /// phase)` is called for its own part of each phase and for any part
    /// it takes over, never before every part of the phase before is
    /// done, and returns once every part of every phase is done.
    pub fn run(&self, me: usize, phases: usize, mut work: impl FnMut(usize, usize)) {
        let parts = self.parts();
        if me >= parts {
            return;
        }
        // Each phase ends with every part done (the wait below), so the
        // next one can start at once.
        for phase in 0..phases {
            if self.claim(me, phase) {
                work(me, phase);
                self.kept_up[me].store(phase as u32 + 1, Ordering::Relaxed);
                self.done.fetch_add(1, Ordering::AcqRel);
            }
            let finished = ((phase + 1) * parts) as u32;
            self.wait(finished, |patient| {
                for part in (0..parts).filter(|&p| p != me) {
                    // The owner missed the phase before, or is past its
                    // grace: take its part.
                    let behind = (self.kept_up[part].load(Ordering::Relaxed) as usize) < phase;
                    if (behind || !patient) && self.claim(part, phase) {
                        work(part, phase);
                        self.done.fetch_add(1, Ordering::AcqRel);
                    }
                }
            });
        }
    }

    /// Claims `part` of `phase`: true for exactly one caller.
    fn claim(&self, part: usize, phase: usize) -> bool {
        let phase = phase as u32;
        self.next[part]
            .compare_exchange(phase, phase + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Waits until `target` parts are done, calling `help(patient)` between
    /// checks (`patient` until [`GRACE`] has passed); spins for [`HOT`],
    /// then yields the core between checks.
    fn wait(&self, target: u32, mut help: impl FnMut(bool)) {
        let start = Instant::now();
        let (mut spins, mut patient, mut hot) = (0u32, true, true);
        while self.done.load(Ordering::Acquire) < target {
            help(patient);
            spins = spins.wrapping_add(1);
            // Reading the clock costs about as much as 30 spins.
            if spins.is_multiple_of(64) {
                let waited = start.elapsed();
                patient = waited <= GRACE;
                hot = waited <= HOT;
            }
            if hot {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn state(parts: usize) -> Vec<AtomicU32> {
        (0..Phases::words(parts))
            .map(|_| AtomicU32::new(0))
            .collect()
    }

    /// Every part of every phase runs exactly once, and only after every
    /// part of the phase before, whether the participants run at once or
    /// one after the other.
    #[test]
    fn each_part_runs_once_after_the_phase_before() {
        const PHASES: usize = 200;
        for (parts, threads) in [(1, 1), (2, 2), (3, 3), (4, 2), (2, 1), (3, 8)] {
            let words = state(parts);
            let phases = Phases::new(&words);
            let runs: Vec<AtomicUsize> = (0..parts * PHASES).map(|_| AtomicUsize::new(0)).collect();
            let check = |part: usize, phase: usize| {
                if phase > 0 {
                    for p in 0..parts {
                        assert_eq!(
                            runs[(phase - 1) * parts + p].load(Ordering::Relaxed),
                            1,
                            "phase {phase} part {part} started before part {p} of the phase before"
                        );
                    }
                }
                runs[phase * parts + part].fetch_add(1, Ordering::Relaxed);
            };
            // Participants beyond the threads run after the others, on
            // the same threads.
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (phases, check) = (&phases, &check);
                    s.spawn(move || {
                        for me in (t..parts.max(threads)).step_by(threads) {
                            phases.run(me, PHASES, check);
                        }
                    });
                }
            });
            for (i, r) in runs.iter().enumerate() {
                assert_eq!(
                    r.load(Ordering::Relaxed),
                    1,
                    "part {} of phase {}",
                    i % parts,
                    i / parts
                );
            }
        }
    }

    /// A participant that never arrives has every part taken by the others.
    #[test]
    fn a_missing_participant_is_covered() {
        let words = state(2);
        let phases = Phases::new(&words);
        let count = AtomicUsize::new(0);
        phases.run(0, 10, |_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 20);
        // Arriving afterwards, the owner finds its parts done.
        phases.run(1, 10, |_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 20);
    }
}
