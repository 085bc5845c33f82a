//! A bound on how deeply named types nest while decoding, so that hostile bytes describing a
//! deeply recursive value (a tree a million levels deep) get an error instead of overflowing
//! the stack. Every derived `Deserialize` impl enters one level.

use std::cell::Cell;
use std::fmt;

/// The default nesting limit: deep enough for real state, shallow enough for a 2 MiB thread
/// stack in a debug build.
pub const DEFAULT_MAX_DEPTH: u32 = 128;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static MAX_DEPTH: Cell<u32> = const { Cell::new(DEFAULT_MAX_DEPTH) };
    // Set when a guard was refused: serde formats may drop the error's message, so the image
    // reader asks here why a decode failed.
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

/// Decoding went deeper than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthExceeded {
    /// The limit in force.
    pub limit: u32,
}

impl fmt::Display for DepthExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "named types nest more than {} levels deep", self.limit)
    }
}

impl std::error::Error for DepthExceeded {}

/// One level of nesting, left when dropped.
#[derive(Debug)]
pub struct DepthGuard(());

impl DepthGuard {
    /// Enters a level, or fails if that would exceed the limit.
    pub fn enter() -> Result<DepthGuard, DepthExceeded> {
        let depth = DEPTH.with(Cell::get) + 1;
        let limit = MAX_DEPTH.with(Cell::get);
        if depth > limit {
            EXCEEDED.with(|cell| cell.set(true));
            return Err(DepthExceeded { limit });
        }
        DEPTH.with(|cell| cell.set(depth));
        Ok(DepthGuard(()))
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|cell| cell.set(cell.get().saturating_sub(1)));
    }
}

/// Runs `decode` with `limit` as the nesting limit on this thread; the flag is `true` if the
/// limit was hit.
pub fn with_max_depth<R>(limit: u32, decode: impl FnOnce() -> R) -> (R, bool) {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            MAX_DEPTH.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(MAX_DEPTH.with(|cell| cell.replace(limit)));
    EXCEEDED.with(|cell| cell.set(false));
    let result = decode();
    (result, EXCEEDED.with(|cell| cell.replace(false)))
}
