//! Allocation of large buffers the way this kind of machine likes them.
//!
//! Touching fresh memory costs a page fault per 4 KiB page, which dominates copying hundreds of
//! MiB of state. Asking the kernel for transparent huge pages on a large allocation before it
//! is first touched cuts those faults by up to 512x (THP runs in `madvise` mode here).

/// Below this size a buffer is left to the allocator as it is.
const HUGE_PAGE_THRESHOLD: usize = 8 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// A vector with room for `capacity` elements, backed by huge pages where the OS offers them.
pub(crate) fn vec_with_capacity<T>(capacity: usize) -> Vec<T> {
    let mut vec = Vec::with_capacity(capacity);
    advise_huge_pages(vec.as_mut_ptr() as *mut u8, vec.capacity() * size_of::<T>());
    vec
}

/// Asks for huge pages on the whole 2 MiB pages inside `[start, start + len)`; a hint only.
pub(crate) fn advise_huge_pages(start: *mut u8, len: usize) {
    if len < HUGE_PAGE_THRESHOLD {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let first = (start as usize).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let end = (start as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > first {
            // SAFETY: madvise only changes how the kernel backs pages of our own allocation;
            // MADV_HUGEPAGE never changes their contents. A failure is harmless and ignored.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
}
