//! Why a task found in the store at start could not be resumed ([`Recovery::failed`]).
//!
//! [`Recovery::failed`]: super::Recovery::failed

use std::sync::Arc;

use super::migrate::CopyError;
use crate::checkpoint::CatalogError;
use crate::image::RestoreError;

/// Why the runtime could not resume a task it found in its store. The cause, if any, is
/// [`source`](std::error::Error::source); print the whole chain with
/// [`ErrorChain`](crate::ErrorChain).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The task's records could not be read; it is quarantined here until the store is
    /// repaired (and the runtime restarted).
    #[error("its records in the store could not be read; it is quarantined here")]
    Unreadable(#[source] Arc<CatalogError>),
    /// The store has the task's checkpoints or outcome but not its task record.
    #[error("its task record is missing from the store")]
    MissingRecord,
    /// The task's type was not registered with this runtime, so its checkpoints cannot be
    /// decoded. Register it with [`Builder::register`](super::Builder::register) and restart.
    #[error("task type `{type_name}` is not registered with this runtime; add `.register::<{type_name}>()` to the builder and restart")]
    UnregisteredType {
        /// The type's wire name.
        type_name: String,
    },
    /// The list of the task's checkpoints could not be read.
    #[error("its checkpoints could not be listed")]
    CheckpointsUnlisted(#[source] Arc<CatalogError>),
    /// The store has no checkpoint of the task.
    #[error("the store has no checkpoint of it")]
    NoCheckpoint,
    /// None of the task's checkpoints restores; the cause is the newest one's problem.
    #[error("none of its {} checkpoints restores", 1 + older.len())]
    NoUsableCheckpoint {
        /// Why the newest checkpoint is unusable.
        #[source]
        newest: CheckpointUnusable,
        /// Why each older one is unusable, newest first.
        older: Vec<CheckpointUnusable>,
    },
    /// A copy arriving from a peer was in doubt, and this runtime does not listen, so it
    /// cannot ask the peer how the hand-off ended.
    #[error("it was arriving from `{from}` and is in doubt; build the runtime with `listen` to settle it")]
    InDoubtNotAHost {
        /// The host it came from.
        from: String,
    },
    /// A copy arriving from a peer (held until its source says how the hand-off ended)
    /// cannot run here.
    #[error("its copy arriving from `{from}` cannot run here")]
    ArrivingCopy {
        /// The host it came from.
        from: String,
        /// Why.
        #[source]
        source: CopyError,
    },
}

impl RecoveryError {
    /// No checkpoint to resume from: none at all, or why each failed, newest first.
    pub(crate) fn no_checkpoint(problems: Vec<CheckpointUnusable>) -> RecoveryError {
        let mut problems = problems.into_iter();
        match problems.next() {
            None => RecoveryError::NoCheckpoint,
            Some(newest) => RecoveryError::NoUsableCheckpoint {
                newest,
                older: problems.collect(),
            },
        }
    }
}

/// Why one checkpoint of a task could not be resumed from.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointUnusable {
    /// The image does not verify or decode.
    #[error("checkpoint {seq} does not restore")]
    Restore {
        /// The checkpoint's sequence number.
        seq: u64,
        /// Why.
        #[source]
        source: Arc<RestoreError>,
    },
    /// The store could not give the image.
    #[error("checkpoint {seq} could not be read")]
    Unreadable {
        /// The checkpoint's sequence number.
        seq: u64,
        /// Why.
        #[source]
        source: Arc<CatalogError>,
    },
    /// The image went away between the listing and the read.
    #[error("checkpoint {seq} was removed while it was read")]
    Removed {
        /// The checkpoint's sequence number.
        seq: u64,
    },
}
