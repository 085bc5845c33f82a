//! Deliberately broken transitions, compiled only with the `sim-mutants` feature (which no
//! crate enables: never in a normal build), to show that the simulation catches them: `scripts/sim-mutants.sh` runs the simulation against each one and fails if
//! any goes unnoticed. The simulation picks one with [`set`] before it runs.

use std::sync::atomic::{AtomicU8, Ordering};

/// A broken transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mutant {
    /// The machine as it should be.
    None = 0,
    /// The destination answers `Prepared` before its copy is durable.
    PreparedEarly = 1,
    /// The source takes a failed commit-record write as not written, without reading it back.
    NoReadBack = 2,
    /// The source forgets its commits when asked how a hand-off ended.
    ForgetCommits = 3,
}

impl Mutant {
    /// Every mutant, by name.
    pub const ALL: [(&'static str, Mutant); 3] = [
        ("prepared-early", Mutant::PreparedEarly),
        ("no-read-back", Mutant::NoReadBack),
        ("forget-commits", Mutant::ForgetCommits),
    ];
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Makes `mutant` the active one, for the whole process.
pub fn set(mutant: Mutant) {
    ACTIVE.store(mutant as u8, Ordering::Relaxed);
}

/// Whether `mutant` is active.
pub(crate) fn active(mutant: Mutant) -> bool {
    ACTIVE.load(Ordering::Relaxed) == mutant as u8
}
