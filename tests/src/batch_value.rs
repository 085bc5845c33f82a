//! The values of the batch crash test (`crash_child batches`, `tests/checkpoint_crash.rs`): one
//! per (generation, task), of a few KiB and a length that varies by task, so that a torn or
//! mixed-up file never equals the value of any generation.

/// Key of task `task`'s value in the store.
pub fn batch_key(task: u64) -> String {
    format!("batch/{task:04}/image")
}

/// The value of `task` written in `generation`: both numbers, then bytes derived from them.
pub fn batch_value(generation: u64, task: u64) -> Vec<u8> {
    let len = 4096 + (task as usize * 37) % 512;
    let mut value = Vec::with_capacity(16 + len);
    value.extend_from_slice(&generation.to_le_bytes());
    value.extend_from_slice(&task.to_le_bytes());
    let mut z = generation
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(task);
    value.extend((0..len).map(|_| {
        // splitmix64
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (x ^ (x >> 31)) as u8
    }));
    value
}

/// The generation a stored value belongs to, if it is exactly the value of that generation
/// for `task` (whole, not torn, not another task's).
pub fn batch_generation(task: u64, value: &[u8]) -> Option<u64> {
    let generation = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    (batch_value(generation, task) == value).then_some(generation)
}
