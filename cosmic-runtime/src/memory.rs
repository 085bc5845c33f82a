//! Allocation of large buffers the way this kind of machine likes them.
//!
//! Touching fresh memory costs a page fault per 4 KiB page, which dominates copying hundreds of
//! MiB of state. Asking the kernel for transparent huge pages on a large allocation before it
//! is first touched cuts those faults by up to 512x (THP runs in `madvise` mode here).

use std::mem::MaybeUninit;

/// Below this size a buffer is left to the allocator as it is.
const HUGE_PAGE_THRESHOLD: usize = 8 << 20;

/// A vector with room for `capacity` elements, backed by huge pages where the OS offers them.
pub(crate) fn vec_with_capacity<T>(capacity: usize) -> Vec<T> {
    let mut vec = Vec::with_capacity(capacity);
    advise_huge_pages(vec.as_mut_ptr() as *mut u8, vec.capacity() * size_of::<T>());
    vec
}

/// Reads a whole file into a buffer sized from its length up front (on huge pages when
/// large): `fs::read` lets its buffer's pages fault in 4 KiB at a time, which for a GiB image
/// costs more than the read itself.
pub(crate) fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    // The length is a hint: the file may change meanwhile, and `read_to_end` reads it all.
    let len = file.metadata().map_or(0, |meta| meta.len()) as usize;
    let mut bytes = vec_with_capacity(len.saturating_add(1));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Makes room in `vec` for `additional` more bytes, keeping a large buffer on huge pages: a
/// small buffer that becomes large moves to a new huge-page allocation (a copy of what it
/// holds, under the threshold); a large one is reallocated, which the allocator does by
/// remapping its pages, without a copy or new page faults.
pub(crate) fn reserve_exact(vec: &mut Vec<u8>, additional: usize) {
    let wanted = vec.len() + additional;
    if vec.capacity() >= wanted {
        return;
    }
    if wanted >= HUGE_PAGE_THRESHOLD && vec.capacity() < HUGE_PAGE_THRESHOLD {
        let mut grown = vec_with_capacity(wanted);
        grown.extend_from_slice(vec);
        *vec = grown;
    } else {
        vec.reserve_exact(additional);
        advise_huge_pages(vec.as_mut_ptr(), vec.capacity());
    }
}

/// Asks for huge pages on the pages of `[start, start + len)`; a hint only.
///
/// The range is widened to whole pages rather than narrowed to whole huge pages, so that a
/// large allocation (a mapping of its own) keeps one set of flags from end to end: a mapping
/// whose middle alone was advised is split in three, and the allocator's `realloc` then can no
/// longer remap it and copies it instead. The kernel uses huge pages for the aligned 2 MiB
/// ranges inside.
pub(crate) fn advise_huge_pages(start: *mut u8, len: usize) {
    if len < HUGE_PAGE_THRESHOLD {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let page = page_size();
        let first = start as usize / page * page;
        let end = (start as usize + len).div_ceil(page) * page;
        // SAFETY: MADV_HUGEPAGE only changes how the kernel backs the pages of the range
        // (ours, and at the edges the allocator's or a neighbouring allocation's), never their
        // contents. A failure is harmless and ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

/// The size of a page of memory.
#[cfg(target_os = "linux")]
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|&size| size > 0)
            .unwrap_or(4096)
    })
}

/// Copies `src` into `dst` (of the same length) with stores that bypass the cache where the
/// CPU has them (x86-64), for copies into memory that is already mapped but not in cache: a
/// normal store first reads each line of the destination from memory, which makes a large
/// copy move half as many bytes again. Not for fresh pages: the kernel has just zeroed them
/// through the cache.
pub(crate) fn copy_streaming(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_streaming needs equal lengths");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the lengths are equal and `dst`, exclusively borrowed, cannot overlap `src`.
        unsafe { stream_x86_64(dst.as_mut_ptr().cast::<u8>(), src.as_ptr(), src.len()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: as above.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len())
        };
    }
}

/// Copies `len` bytes with SSE2 (part of x86-64 itself) non-temporal stores.
///
/// # Safety
/// `src` must be valid for `len` bytes of reads, `dst` for `len` bytes of writes, and the two
/// ranges must not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn stream_x86_64(dst: *mut u8, src: *const u8, len: usize) {
    use std::arch::x86_64::_mm_sfence;
    const PAGE: usize = 4096;
    /// Pages copied side by side, a line of each in turn (as glibc's large copies do): several
    /// sequential streams keep the memory busier than one, about 1.2x faster here.
    const STREAMS: usize = 4;
    // Bytes up to the first cache-line boundary of `dst`, so that the streaming stores are
    // aligned (which they must be) and fill whole lines.
    let head = (dst as usize).wrapping_neg() % LINE;
    if len < head + LINE {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    // SAFETY: every access below is within the first `len` bytes of `src` and `dst`, which the
    // caller guarantees valid and disjoint; every `dst + at` passed to `stream_line` is 64-byte
    // aligned (`head` aligns it, and every step is a multiple of 64).
    unsafe {
        std::ptr::copy_nonoverlapping(src, dst, head);
        let mut at = head;
        while at + STREAMS * PAGE <= len {
            let mut offset = 0;
            while offset < PAGE {
                for stream in 0..STREAMS {
                    let from = at + stream * PAGE + offset;
                    stream_line(dst.add(from), src.add(from));
                }
                offset += LINE;
            }
            at += STREAMS * PAGE;
        }
        while at + LINE <= len {
            stream_line(dst.add(at), src.add(at));
            at += LINE;
        }
        std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), len - at);
        // Streaming stores are weakly ordered: make them visible before anything that follows
        // (another thread may read the bytes once this one says it is done).
        _mm_sfence();
    }
}

#[cfg(target_arch = "x86_64")]
const LINE: usize = 64;

/// Copies one 64-byte line with streaming stores.
///
/// # Safety
/// `src` must be valid for 64 bytes of reads, `dst` for 64 bytes of writes and 16-byte aligned;
/// the ranges must not overlap.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stream_line(dst: *mut u8, src: *const u8) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    // SAFETY: the caller's contract.
    unsafe {
        let s = src.cast::<__m128i>();
        let d = dst.cast::<__m128i>();
        let a = _mm_loadu_si128(s);
        let b = _mm_loadu_si128(s.add(1));
        let c = _mm_loadu_si128(s.add(2));
        let e = _mm_loadu_si128(s.add(3));
        _mm_stream_si128(d, a);
        _mm_stream_si128(d.add(1), b);
        _mm_stream_si128(d.add(2), c);
        _mm_stream_si128(d.add(3), e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_copy_copies_every_byte_at_every_alignment() {
        let src: Vec<u8> = (0..40_100u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for offset in 0..70 {
            for len in [
                0, 1, 63, 64, 65, 127, 128, 129, 1000, 16_384, 16_447, 40_000,
            ] {
                let mut dst = vec![MaybeUninit::new(0xAAu8); offset + len + 70];
                copy_streaming(&mut dst[offset..offset + len], &src[3..3 + len]);
                // SAFETY: all bytes were initialised by `vec!`.
                let out: Vec<u8> = dst.iter().map(|b| unsafe { b.assume_init() }).collect();
                assert!(out[..offset].iter().all(|&b| b == 0xAA));
                assert_eq!(&out[offset..offset + len], &src[3..3 + len]);
                assert!(out[offset + len..].iter().all(|&b| b == 0xAA));
            }
        }
    }
}
