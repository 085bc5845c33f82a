//! Raw bytes into every decoding entry point: `inspect`, `restore::<State>`,
//! `restore::<V1State>`, `restore_any` and `restore_with_limits` (small and unlimited).
//!
//! Every byte string must give a value or a typed error; never a panic, never an allocation
//! the input does not justify (run with `-malloc_limit_mb`). A restored value must capture
//! again and round-trip to the same bytes. Start it from the seeds in `fuzz/seeds/image_decode`:
//! random bytes almost never get past the magic and the header checksum.
//!
//! The inputs are plain images (any crash file is a reproducer for `replay`), but the mutator
//! re-seals most of them after libFuzzer's own mutation: it recomputes the header checksum,
//! the body checksum and sometimes the body length, so that mutated headers and bodies reach
//! the checks and the decoding behind the CRC-32C, which blind mutation almost never passes.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

#[path = "../common/mod.rs"]
mod common;

use common::Reseal;

fuzz_target!(|data: &[u8]| {
    common::check_all(data);
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let size = fuzzer_mutate(data, size, max_size);
    // One in eight stays as mutated, so that the checksum and length checks keep being fuzzed.
    let how = match seed % 8 {
        0 => Reseal::Nothing,
        1 => Reseal::Header,
        2..=4 => Reseal::Checksums,
        _ => Reseal::Everything,
    };
    common::reseal(&mut data[..size], how);
    size
});
