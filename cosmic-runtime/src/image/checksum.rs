//! CRC-32C (Castagnoli), the checksum of image headers and bodies.
//!
//! `crc-fast` picks the widest carry-less multiply the CPU has at run time (about 23 GB/s on
//! this project's reference machine, against 10-12 GB/s for the table-driven crates).
//!
//! Large inputs are split into chunks that this thread and helper threads take in turn; the
//! chunks' checksums are then combined in order (`crc-fast` combines two CRCs from their
//! values and the second one's length). A helper that the OS does not get to run in time
//! costs nothing but its start: this thread takes whatever chunks are left.

use std::mem::MaybeUninit;
use std::sync::{Mutex, OnceLock, PoisonError};

use crc_fast::{CrcAlgorithm, Digest};

use crate::memory;

/// Inputs at least this large are shared with helper threads.
pub(crate) const PARALLEL_MIN: usize = 16 << 20;
/// The unit of work handed to a thread.
const CHUNK: usize = 4 << 20;
/// Copies are checksummed in blocks of this size, while the block is still in cache.
pub(crate) const COPY_BLOCK: usize = 256 << 10;
/// At most this many helper threads, besides the calling one (memory bandwidth, not cores,
/// bounds a copy beyond a few threads).
const MAX_HELPERS: usize = 3;

/// CRC-32C of `bytes`.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    if bytes.len() < PARALLEL_MIN || helpers() == 0 {
        return crc_fast::crc32_iscsi(bytes);
    }
    let chunks = bytes.chunks(CHUNK);
    in_parallel(chunks, |chunk| {
        let mut crc = Crc32c::new();
        crc.update(chunk);
        crc
    })
    .finish()
}

/// How [`copy_and_checksum`] writes the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Pages just faulted in (zeroed by the kernel through the cache): plain stores.
    Fresh,
    /// Memory written before and long out of cache (a reused buffer): streaming stores, which
    /// do not read each destination line before overwriting it.
    Reused,
}

/// Copies `src` into `dst` (of the same length) and returns the CRC-32C of the copied bytes,
/// computed block by block while each block is in cache; large copies are shared with helper
/// threads.
pub(crate) fn copy_and_checksum(
    dst: &mut [MaybeUninit<u8>],
    src: &[u8],
    destination: Destination,
) -> Crc32c {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_and_checksum needs equal lengths"
    );
    if src.len() < PARALLEL_MIN || helpers() == 0 {
        return copy_blocks(dst, src, destination);
    }
    let chunks = dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK));
    in_parallel(chunks, |(dst, src)| copy_blocks(dst, src, destination))
}

fn copy_blocks(dst: &mut [MaybeUninit<u8>], src: &[u8], destination: Destination) -> Crc32c {
    let mut crc = Crc32c::new();
    for (dst, src) in dst.chunks_mut(COPY_BLOCK).zip(src.chunks(COPY_BLOCK)) {
        match destination {
            Destination::Fresh => {
                // SAFETY: `dst` and `src` have the same length (equal-sized chunks of
                // equal-length slices) and cannot overlap: `dst` is exclusively borrowed.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        dst.as_mut_ptr().cast::<u8>(),
                        src.len(),
                    );
                }
            }
            Destination::Reused => memory::copy_streaming(dst, src),
        }
        // The source block was just read, so it is in cache; it equals what was written.
        crc.update(src);
    }
    crc
}

/// How many helper threads large checksums may use.
fn helpers() -> usize {
    static HELPERS: OnceLock<usize> = OnceLock::new();
    *HELPERS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .min(MAX_HELPERS)
    })
}

/// Runs `work` on every item, on this thread and on helper threads, and combines the items'
/// checksums in the items' order.
fn in_parallel<I>(items: I, work: impl Fn(I::Item) -> Crc32c + Sync) -> Crc32c
where
    I: Iterator + Send,
    I::Item: Send,
{
    let queue = Mutex::new(items.enumerate());
    let run = || {
        let mut done = Vec::new();
        loop {
            let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
            match next {
                Some((index, item)) => done.push((index, work(item))),
                None => return done,
            }
        }
    };
    let mut done = std::thread::scope(|scope| {
        let helpers: Vec<_> = (0..helpers())
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, run).ok())
            .collect();
        let mut done = run();
        for helper in helpers {
            match helper.join() {
                Ok(theirs) => done.extend(theirs),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    done.sort_unstable_by_key(|(index, _)| *index);
    let mut total = Crc32c::new();
    for (_, crc) in &done {
        total.combine(crc);
    }
    total
}

/// An incremental CRC-32C.
pub(crate) struct Crc32c(Digest);

impl Crc32c {
    pub(crate) fn new() -> Self {
        Crc32c(Digest::new(CrcAlgorithm::Crc32Iscsi))
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Appends the bytes that `other` has seen, as if they had been passed to `update`.
    pub(crate) fn combine(&mut self, other: &Crc32c) {
        self.0.combine(&other.0);
    }

    pub(crate) fn finish(&self) -> u32 {
        // CRC-32 values fit in the low 32 bits of the digest's u64.
        self.0.finalize() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
    }

    #[test]
    fn known_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn combining_matches_one_pass() {
        let data = bytes(100_003);
        for split in [0, 1, 4096, 65_536, 100_003] {
            let (a, b) = data.split_at(split);
            let mut first = Crc32c::new();
            first.update(a);
            let mut second = Crc32c::new();
            second.update(b);
            first.combine(&second);
            assert_eq!(
                first.finish(),
                crc_fast::crc32_iscsi(&data),
                "split at {split}"
            );
        }
    }

    #[test]
    fn large_inputs_checksum_as_one_pass() {
        // Over the parallel threshold and not a multiple of the chunk or block size.
        let data = bytes(PARALLEL_MIN + CHUNK + 12_345);
        let expected = crc_fast::crc32_iscsi(&data);
        assert_eq!(crc32c(&data), expected);
        for destination in [Destination::Fresh, Destination::Reused] {
            let mut dst = vec![MaybeUninit::new(0u8); data.len()];
            let crc = copy_and_checksum(&mut dst, &data, destination).finish();
            assert_eq!(crc, expected);
            // SAFETY: every byte was initialised (by `vec!`, then by the copy).
            let copied: Vec<u8> = dst
                .iter()
                .map(|byte| unsafe { byte.assume_init() })
                .collect();
            assert!(copied == data);
        }
    }

    #[test]
    fn small_copies_checksum_as_one_pass() {
        for len in [0, 1, COPY_BLOCK - 1, COPY_BLOCK, 3 * COPY_BLOCK + 7] {
            let data = bytes(len);
            for destination in [Destination::Fresh, Destination::Reused] {
                let mut dst = vec![MaybeUninit::new(0u8); len];
                let crc = copy_and_checksum(&mut dst, &data, destination).finish();
                assert_eq!(crc, crc_fast::crc32_iscsi(&data), "length {len}");
                // SAFETY: every byte was initialised (by `vec!`, then by the copy).
                let copied: Vec<u8> = dst
                    .iter()
                    .map(|byte| unsafe { byte.assume_init() })
                    .collect();
                assert!(copied == data);
            }
        }
    }
}
