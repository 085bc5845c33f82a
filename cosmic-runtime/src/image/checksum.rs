//! CRC-32C (Castagnoli), the checksum of image headers and bodies.
//!
//! `crc-fast` picks the widest carry-less multiply the CPU has at run time (about 23 GB/s on
//! this project's reference machine, against 10-12 GB/s for the table-driven crates).
//!
//! Checksumming a copy costs little when each block is checksummed right after it is copied,
//! while it is in cache: the copy waits on memory, the checksum on arithmetic. Helper threads
//! were measured and left out: on a 2-core machine they halved a fresh capture when the other
//! core was idle, but a busy machine made a repeated capture 1.3-1.6x slower with them.

use std::mem::MaybeUninit;

use crc_fast::{CrcAlgorithm, Digest};

use crate::memory;

/// Copies are checksummed in blocks of this size, while the block is still in cache.
pub(crate) const COPY_BLOCK: usize = 256 << 10;

/// CRC-32C of `bytes`.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(bytes)
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

/// Copies `src` into `dst` (of the same length) and adds the copied bytes to `crc`, block by
/// block while each block is in cache.
pub(crate) fn copy_and_checksum(
    dst: &mut [MaybeUninit<u8>],
    src: &[u8],
    destination: Destination,
    crc: &mut Crc32c,
) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_and_checksum needs equal lengths"
    );
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
    fn copies_checksum_as_one_pass() {
        for len in [0, 1, COPY_BLOCK - 1, COPY_BLOCK, 3 * COPY_BLOCK + 7] {
            let data = bytes(len);
            for destination in [Destination::Fresh, Destination::Reused] {
                let mut crc = Crc32c::new();
                crc.update(b"header");
                let mut dst = vec![MaybeUninit::new(0u8); len];
                copy_and_checksum(&mut dst, &data, destination, &mut crc);
                let mut whole = b"header".to_vec();
                whole.extend_from_slice(&data);
                assert_eq!(crc.finish(), crc32c(&whole), "length {len}");
                // SAFETY: every byte was initialised (by `vec!`, then by the copy).
                let copied: Vec<u8> = dst
                    .iter()
                    .map(|byte| unsafe { byte.assume_init() })
                    .collect();
                assert!(copied == data, "length {len}");
            }
        }
    }
}
