//! Memory the kernels and weights live in.

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
