//! Memory planning: one arena for every intermediate value of a model.
//!
//! Each buffer lives from the step that writes it to the last step that
//! reads it (model inputs from the start, outputs to the end). Buffers whose
//! lifetimes do not overlap may share memory; offsets are chosen greedily,
//! largest buffer first, at the lowest offset that does not overlap any
//! already placed buffer alive at the same time. The result is compared
//! with two figures: the naive sum of all buffers and the lower bound, the
//! largest total of simultaneously live buffers.

/// A buffer to place: its size in floats and the steps it is live in
/// (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub len: usize,
    pub first: usize,
    pub last: usize,
}

/// The placement of every buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Offset in floats of each buffer, in the order given.
    pub offsets: Vec<usize>,
    /// Arena size in floats.
    pub arena_len: usize,
    /// Sum of all buffer sizes.
    pub naive_len: usize,
    /// Largest total size of buffers live at one step.
    pub lower_bound: usize,
}

/// Buffers start at multiples of this many floats (64 bytes, a cache line).
pub const ALIGN: usize = 16;

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places `buffers` in one arena.
pub fn place(buffers: &[Interval]) -> Placement {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    // Largest first; ties by start, then index, so the plan is deterministic.
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].len), buffers[i].first, i));
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut arena_len = 0;
    for i in order {
        let b = buffers[i];
        let size = round_up(b.len.max(1));
        // Occupied ranges of buffers alive at the same time, by offset.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .map(|&j| &buffers[j])
            .zip(placed.iter())
            .filter(|(o, _)| o.first <= b.last && b.first <= o.last)
            .map(|(o, &j)| (offsets[j], offsets[j] + round_up(o.len.max(1))))
            .collect();
        busy.sort_unstable();
        let mut offset = 0;
        for (start, end) in busy {
            if offset + size <= start {
                break;
            }
            offset = offset.max(end);
        }
        offsets[i] = offset;
        arena_len = arena_len.max(offset + size);
        placed.push(i);
    }
    let naive_len = buffers.iter().map(|b| round_up(b.len.max(1))).sum();
    let steps = buffers.iter().map(|b| b.last + 1).max().unwrap_or(0);
    let lower_bound = (0..steps)
        .map(|s| {
            buffers
                .iter()
                .filter(|b| b.first <= s && s <= b.last)
                .map(|b| round_up(b.len.max(1)))
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    Placement {
        offsets,
        arena_len,
        naive_len,
        lower_bound,
    }
}

/// Asks Linux to back the untouched, freshly allocated `bytes` at `ptr`
/// with transparent huge pages where it can (the whole 2 MiB pages inside
/// the range). Compiling ResNet-18 writes about 70 MB of transformed and
/// packed weights; with 4 KiB pages most of that time went to page
/// faults. A no-op elsewhere, or when the system refuses.
#[allow(unsafe_code)]
pub fn advise_huge_pages(ptr: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize).saturating_add(bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: madvise only changes how the kernel backs pages this
            // process owns (the range lies inside the caller's allocation);
            // it never changes their contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}
