//! A bound on how deeply named types nest while decoding, so that hostile bytes describing a
//! deeply recursive value (a tree a million levels deep) get an error instead of overflowing
//! the stack. Every derived `Deserialize` impl enters one level.

use std::cell::Cell;
use std::fmt;

/// The default nesting limit: deep enough for real state, shallow enough for a 2 MiB thread
/// stack in a debug build.
pub const DEFAULT_MAX_DEPTH: u32 = 128;

thread_local! {
    // The levels still allowed on this thread: one counter, so that entering and leaving a
    // level (once per decoded struct, hundreds of thousands of times in a mesh) is a load, a
    // compare and a store, with no second lookup of the limit.
    static REMAINING: Cell<u32> = const { Cell::new(DEFAULT_MAX_DEPTH) };
    // The limit `REMAINING` counts down from, for the error.
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
    #[inline]
    pub fn enter() -> Result<DepthGuard, DepthExceeded> {
        let remaining = REMAINING.with(Cell::get);
        if remaining == 0 {
            return Err(exceeded());
        }
        REMAINING.with(|cell| cell.set(remaining - 1));
        Ok(DepthGuard(()))
    }
}

#[cold]
#[inline(never)]
fn exceeded() -> DepthExceeded {
    EXCEEDED.with(|cell| cell.set(true));
    DepthExceeded {
        limit: MAX_DEPTH.with(Cell::get),
    }
}

impl Drop for DepthGuard {
    #[inline]
    fn drop(&mut self) {
        REMAINING.with(|cell| cell.set(cell.get() + 1));
    }
}

/// Runs `decode` with `limit` as the nesting limit on this thread; the flag is `true` if the
/// limit was hit.
pub fn with_max_depth<R>(limit: u32, decode: impl FnOnce() -> R) -> (R, bool) {
    // Restores both after the decode, even on panic: a decode nested in another (a type's
    // hand-written impl decoding an image) counts afresh and hands back the outer count.
    struct Restore {
        limit: u32,
        remaining: u32,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            MAX_DEPTH.with(|cell| cell.set(self.limit));
            REMAINING.with(|cell| cell.set(self.remaining));
        }
    }
    let _restore = Restore {
        limit: MAX_DEPTH.with(|cell| cell.replace(limit)),
        remaining: REMAINING.with(|cell| cell.replace(limit)),
    };
    EXCEEDED.with(|cell| cell.set(false));
    let result = decode();
    (result, EXCEEDED.with(|cell| cell.replace(false)))
}
