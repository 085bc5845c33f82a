//! The messages hosts exchange on a [`SecureChannel`](super::SecureChannel), encoded with
//! postcard. Every conversation starts with a [`Request`]; what follows depends on it:
//!
//! ```text
//! hand-off (source -> destination)        resolution (destination -> source, in doubt)
//!   Request::Offer        ->                Request::Resolve   ->
//!                         <- OfferAnswer                       <- Resolution
//!   image (one message)   ->   (unless small: then it came inside the offer)
//!                         <- PrepareAnswer  (durable copy held, or why not)
//!   [source: commit record durable]       following a task (anyone -> a host)
//!   Decision              ->                Request::Locate       -> <- Whereabouts
//!                         <- StartAnswer    Request::AwaitOutcome -> <- Whereabouts (when
//!                                                                      it ends or moves)
//! operating a cluster member (an operator's `cosmic migrate` / `cosmic drain` -> the owner)
//!   Request::MoveTask  -> <- MoveAnswer       Request::Drain  -> <- DrainAnswer
//! ```
//! A channel carries one conversation at a time and may carry many in turn (connections to
//! peers are reused). Enums are append-only: postcard encodes variants by index, so a new
//! variant goes last and [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) changes with any change.

use serde::{Deserialize, Serialize};

use crate::task::TaskId;

/// The first message of every conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A source offers a task; the image follows if the offer is accepted.
    Offer(Offer),
    /// A destination holding a prepared copy asks the source how hand-off `handoff` ended.
    Resolve {
        /// The task.
        task: TaskId,
        /// The hand-off, as named in its offer.
        handoff: u64,
    },
    /// Where is the task, and how is it doing?
    Locate {
        /// The task.
        task: TaskId,
    },
    /// Answer when the task ends here or moves away (a long poll).
    AwaitOutcome {
        /// The task.
        task: TaskId,
    },
    /// The source of an older hand-off says how it ended, unasked, because a copy of it in
    /// doubt at the destination blocks the source's newer offer (`Refusal::Settling`). No
    /// answer; the newer offer follows.
    Settle {
        /// The task.
        task: TaskId,
        /// The older hand-off.
        handoff: u64,
        /// How it ended.
        resolution: Resolution,
    },
    /// A cluster peer made this host the owner of a task (a move through the coordinator):
    /// scan the coordinator now rather than at the next interval. No answer.
    Adopt,
    /// Move one of the tasks this host owns to cluster member `to` (an operator's
    /// `cosmic migrate`: only the owner holds the task's token, so only it can move it).
    /// Answered with a [`MoveAnswer`] once the move is decided.
    MoveTask {
        /// The task.
        task: TaskId,
        /// The destination member.
        to: String,
    },
    /// Take no new tasks and move every task away, to `to` or spread by load over the other
    /// trusted live members; stay a member (an operator's `cosmic drain`). Answered with a
    /// [`DrainAnswer`] once every move is decided.
    Drain {
        /// The one destination, if any.
        to: Option<String>,
    },
}

/// The answer to [`Request::MoveTask`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveAnswer {
    /// The task is `to`'s now.
    Moved {
        /// The destination.
        to: String,
    },
    /// The task did not move (and runs on where it was, if it runs), for this reason.
    Refused(String),
}

/// The answer to [`Request::Drain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrainAnswer {
    /// Every move was decided: these tasks moved (with their destination), these stayed (with
    /// why). The host takes no new task from now on.
    Drained {
        /// Tasks moved, and where.
        moved: Vec<(TaskId, String)>,
        /// Tasks still here, and why.
        stayed: Vec<(TaskId, String)>,
    },
    /// Nothing was done, for this reason (not a cluster member, an unknown destination).
    Refused(String),
}

/// What a source says about a task it wants to move. Everything the destination needs to
/// decide before a byte of the image moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The task.
    pub task: TaskId,
    /// Names this hand-off (random); the durable records on both sides carry it.
    pub handoff: u64,
    /// The epoch the task will have on the destination: one more than on the source. A
    /// destination that has seen this task at this epoch or a later one refuses.
    pub epoch: u64,
    /// The task's type (wire name).
    pub type_name: String,
    /// Its output's type.
    pub output_type: String,
    /// The version of the task's type in the image.
    pub version: u32,
    /// The version of every named type in the image.
    pub versions: Vec<(String, u32)>,
    /// The image's schema fingerprint.
    pub fingerprint: u64,
    /// The image's encoding (its code in the image header).
    pub encoding: u8,
    /// The image's length in bytes.
    pub size: u64,
    /// Steps the task has completed.
    pub steps: u64,
    /// The source's address for peers, so that the destination can reach it to resolve a
    /// hand-off in doubt.
    pub source_addr: String,
    /// The image itself when it is small (at most [`MAX_INLINE_IMAGE`] bytes), saving a round
    /// trip; empty when it follows as its own message after [`OfferAnswer::Accept`].
    pub inline_image: Vec<u8>,
    /// Tries the task has had after panicking steps (0 if none panicked): the count of its
    /// retry policy goes with it (`checkpoint::Attempts`).
    pub tries: u32,
    /// Who wrote the image (its header's descriptor): a native image is only taken by a host
    /// of the same kind and build.
    pub writer: crate::image::Isa,
    /// The image's layout fingerprint (native images; 0 in portable ones).
    pub layout: u64,
}

/// The largest image sent inside its offer.
pub const MAX_INLINE_IMAGE: usize = 64 << 10;

/// The destination's answer to an [`Offer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferAnswer {
    /// Send the image.
    Accept,
    /// Not here; the task stays where it is.
    Refuse(Refusal),
}

/// Why a destination refuses a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The destination has no task type of that name registered.
    #[error("task type `{type_name}` is not registered there")]
    UnknownType {
        /// The type.
        type_name: String,
    },
    /// The image is of a newer version than the destination's code knows.
    #[error("`{type_name}` version {offered} is newer than the version {known} it knows")]
    VersionTooNew {
        /// The type.
        type_name: String,
        /// The image's version.
        offered: u32,
        /// The destination's version.
        known: u32,
    },
    /// The image's schema does not match the destination's code for the same versions.
    #[error("schema of `{type_name}` differs: {detail}")]
    SchemaMismatch {
        /// The type.
        type_name: String,
        /// What differs (fingerprints or versions).
        detail: String,
    },
    /// The destination does not read this encoding.
    #[error("image encoding {encoding} is not supported there")]
    UnsupportedEncoding {
        /// The encoding's code.
        encoding: u8,
    },
    /// The image is larger than the destination accepts.
    #[error("image of {size} bytes exceeds its limit of {limit} bytes")]
    TooLarge {
        /// The offered size.
        size: u64,
        /// The destination's limit.
        limit: u64,
    },
    /// The destination runs as many tasks as it is configured to.
    #[error("no capacity: it runs {running} tasks, its limit")]
    NoCapacity {
        /// Tasks running there.
        running: usize,
    },
    /// The destination has seen this task at this epoch or a later one.
    #[error("it knows this task at epoch {known}, not older than the offered {offered}")]
    StaleEpoch {
        /// The offered epoch.
        offered: u64,
        /// The epoch it knows.
        known: u64,
    },
    /// The destination is shutting down or cannot record the task.
    #[error("it cannot take tasks: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// An older copy of this task from the same source is in doubt there: the source says
    /// how hand-off `handoff` ended, then offers again.
    #[error("an older copy of the task (hand-off {handoff:016x}) is still being settled there")]
    Settling {
        /// The older hand-off.
        handoff: u64,
    },
    /// The task finished there: a finished task never runs again.
    #[error("the task has finished there; a finished task never runs again")]
    Finished,
    /// Too many copies are arriving there at once (count and bytes now); try later.
    #[error("busy: {arriving} copies ({bytes} bytes) are arriving there")]
    Busy {
        /// Copies arriving now.
        arriving: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// A native image whose writer differs from the destination (architecture, byte order,
    /// pointer width, build or layout): offer a portable one.
    #[error("it cannot read this native image: {reason}")]
    NativeMismatch {
        /// The first difference.
        reason: String,
    },
}

/// The destination's answer once it has the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrepareAnswer {
    /// The image is verified, decoded, and durably recorded as prepared: the destination can
    /// run the task once told to, even after a crash.
    Prepared,
    /// The image was refused (it does not verify or decode) or could not be recorded.
    Failed(String),
}

/// The source's decision, sent after [`PrepareAnswer::Prepared`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// The source's commit record is durable: the task is the destination's; run it.
    Commit,
    /// The source keeps the task; forget the prepared copy.
    Abort,
}

/// The destination's answer to [`Decision::Commit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartAnswer {
    /// The task runs at the destination.
    Started,
    /// The destination could not record its ownership yet; it will resume the task from its
    /// prepared copy (and its record of the source's commit) when it can.
    Deferred(String),
}

/// The source's answer to [`Request::Resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    /// The source committed: the task belongs to the destination.
    Committed,
    /// The source did not commit and never will: the destination drops its copy.
    Aborted,
    /// The hand-off is still in progress; ask again.
    Pending,
}

/// A task's status, as one host reports it to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireStatus {
    /// Running steps.
    Running,
    /// Paused at a safe point.
    Paused,
    /// Completed; its output is an image of the output type.
    Completed(Vec<u8>),
    /// A step failed with this message.
    Failed(String),
    /// Cancelled.
    Cancelled,
    /// Stopped by a shutdown of that host.
    Stopped,
    /// The host holds a prepared copy and waits for the source's decision.
    Arriving,
}

/// The answer to [`Request::Locate`] and [`Request::AwaitOutcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Whereabouts {
    /// The task is on the answering host.
    Here {
        /// Its status.
        status: WireStatus,
        /// Steps completed.
        steps: u64,
        /// Its epoch.
        epoch: u64,
    },
    /// The task moved on from the answering host.
    MovedTo {
        /// The host it moved to.
        host: String,
        /// That host's address.
        addr: String,
        /// The epoch it moved at.
        epoch: u64,
    },
    /// The answering host does not know the task.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_postcard() {
        let offer = Request::Offer(Offer {
            task: TaskId(7),
            handoff: 9,
            epoch: 2,
            type_name: "T".into(),
            output_type: "u64".into(),
            version: 3,
            versions: vec![("T".into(), 3)],
            fingerprint: 0xfeed,
            encoding: 0,
            size: 1 << 40,
            steps: 11,
            source_addr: "127.0.0.1:1".into(),
            inline_image: vec![1, 2, 3],
            tries: 2,
            writer: crate::image::Isa::host(),
            layout: 0x1a,
        });
        let bytes = postcard::to_stdvec(&offer).unwrap();
        assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), offer);
        // Appended variants keep the indexes of the older ones.
        for request in [
            Request::MoveTask {
                task: TaskId(3),
                to: "beta".into(),
            },
            Request::Drain { to: None },
        ] {
            let bytes = postcard::to_stdvec(&request).unwrap();
            assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), request);
        }
        assert_eq!(postcard::to_stdvec(&Request::Adopt).unwrap(), [5]);
        let refusal = OfferAnswer::Refuse(Refusal::NoCapacity { running: 4 });
        let bytes = postcard::to_stdvec(&refusal).unwrap();
        assert_eq!(
            postcard::from_bytes::<OfferAnswer>(&bytes).unwrap(),
            refusal
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[9],
            &[0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1],
        ] {
            assert!(postcard::from_bytes::<Request>(bytes).is_err());
        }
    }
}
