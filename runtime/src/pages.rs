//! Memory the kernels and weights live in.

/// The size of a transparent huge page (x86-64 Linux).
pub const HUGE_PAGE: usize = 2 << 20;

/// Floats from `at` to the next 2 MiB boundary (0 if it is on one): where
/// a buffer with that much room starts so that all of it can be on huge
/// pages (the arena, the per-thread scratch).
pub fn floats_to_huge_page(at: *const f32) -> usize {
    let at = at as usize;
    (at.next_multiple_of(HUGE_PAGE) - at) / 4
}

/// Asks Linux to back the untouched, freshly allocated `bytes` at `ptr`
/// with transparent huge pages where it can (the whole 2 MiB pages inside
/// the range). Compiling ResNet-18 writes about 70 MB of transformed and
/// packed weights; with 4 KiB pages most of that time went to page
/// faults. A no-op elsewhere, or when the system refuses.
#[allow(unsafe_code)]
pub fn advise_huge_pages(ptr: *const u8, bytes: usize) {
    // SAFETY: MADV_HUGEPAGE only changes how the kernel backs pages this
    // process owns (the range lies inside the caller's allocation); it
    // never changes their contents.
    #[cfg(target_os = "linux")]
    unsafe {
        advise_whole(ptr as usize, bytes, HUGE_PAGE, libc::MADV_HUGEPAGE)
    };
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// Drops the whole pages inside `bytes` at `ptr` from this process's
/// resident memory (`MADV_DONTNEED`), leaving them in the page cache: an
/// ONNX file's weights, once decoded, would otherwise be counted twice
/// while the model loads (the mapped file and the decoded copy; VGG-19
/// peaked at 1.1 GB for 548 MiB of weights). A no-op outside Linux.
///
/// # Safety
/// The range must lie inside a live read-only `MAP_SHARED` mapping of a
/// file (such as `memmap2::Mmap`): reading a dropped page again faults it
/// back in from the file, unchanged. On private or anonymous memory it
/// would zero the pages.
#[allow(unsafe_code)]
pub unsafe fn release_file_pages(ptr: *const u8, bytes: usize) {
    // SAFETY: whole pages inside the caller's file mapping (see above).
    #[cfg(target_os = "linux")]
    unsafe {
        advise_whole(ptr as usize, bytes, 4096, libc::MADV_DONTNEED)
    };
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// `madvise(advice)` on the whole `unit`-aligned units (a power of two)
/// inside the `bytes` from address `at`, if any; the advice is a hint, its result is not
/// needed.
///
/// # Safety
/// `advice` must be safe for every page of the range (see the callers).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe fn advise_whole(at: usize, bytes: usize, unit: usize, advice: libc::c_int) {
    let start = at.next_multiple_of(unit);
    let end = at.saturating_add(bytes) / unit * unit;
    if end > start {
        // SAFETY: forwarded from the caller.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    /// Released pages of a file mapping read back unchanged (they fault in
    /// again from the file), and the bytes around them are untouched.
    #[test]
    #[allow(unsafe_code)]
    fn released_file_pages_read_back_unchanged() -> std::io::Result<()> {
        let bytes: Vec<u8> = (0..5 * 4096 + 123).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = tempfile::tempfile()?;
        file.write_all(&bytes)?;
        // SAFETY: a read-only map of a file no one else changes.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        assert_eq!(&map[..], &bytes[..]);
        // SAFETY: the range lies inside the live read-only file mapping.
        unsafe { super::release_file_pages(map.as_ptr().add(100), 3 * 4096 + 500) };
        assert_eq!(&map[..], &bytes[..]);
        Ok(())
    }
}
