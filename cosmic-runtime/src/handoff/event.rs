//! What goes into the hand-off machine: events from the application, the network, the store
//! and the clock. Ids and times come in here; the machine never makes them up.

use crate::task::TaskId;
use crate::transport::protocol::{Refusal, Resolution};

/// A hand-off's id, chosen by the source (the driver supplies it; the machine never draws
/// random numbers).
pub type HandoffId = u64;

/// A message between two hosts' machines, about one hand-off of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The task the message is about.
    pub task: TaskId,
    /// The hand-off it belongs to.
    pub handoff: HandoffId,
    /// What it says.
    pub body: Body,
}

/// What a message says. The real drivers carry these as `transport::protocol` messages on one
/// channel per conversation; the simulation delivers them one by one, in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Source → destination: take the task at `epoch`; its image is `size` bytes.
    Offer {
        /// The epoch the task will have at the destination.
        epoch: u64,
        /// The image's size.
        size: u64,
    },
    /// Destination → source: the offer is accepted; send the image.
    Accept,
    /// Destination → source: the offer is refused.
    Refuse(Refusal),
    /// Source → destination: the image (the real driver streams it; the destination's driver
    /// verifies and decodes it before telling its machine [`Event::ImageChecked`]).
    Image,
    /// Destination → source: a verified copy is durable here.
    Prepared,
    /// Destination → source: the copy could not be verified or recorded.
    PrepareFailed(String),
    /// Source → destination: the move is committed; run the task.
    Commit,
    /// Source → destination: the move is aborted; drop the copy.
    Abort,
    /// Destination → source: the task runs here.
    Started,
    /// Destination → source: the commit is known, the task starts later (a write failed).
    Deferred,
    /// Destination → source: how did this hand-off end?
    Resolve,
    /// Source → destination: how it ended (an answer to `Resolve`, or unasked, to settle a
    /// copy in doubt that blocks a newer offer).
    Resolution(Resolution),
}

/// A durable record a machine asks its driver to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Destination: the verified copy and its `prepared` record.
    Prepared {
        /// The epoch of the arriving task.
        epoch: u64,
        /// The hand-off.
        handoff: HandoffId,
        /// The source.
        from: String,
    },
    /// Destination: the `owner` record (the task runs here from `epoch`).
    Owner {
        /// The epoch.
        epoch: u64,
        /// The hand-off that brought it.
        handoff: HandoffId,
    },
    /// Source: the `moved` record, the commit point.
    Moved {
        /// The destination's epoch.
        epoch: u64,
        /// The hand-off.
        handoff: HandoffId,
        /// The destination.
        to: String,
    },
}

/// How a write ended, as far as the driver can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// The record is durable.
    Durable,
    /// The store reported an error. The record may or may not have landed.
    Failed,
}

/// What reading a `moved` record back found (after its write reported an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// The record is there, and it is this hand-off's.
    Landed,
    /// No record (or another hand-off's): the write did not land.
    Absent,
    /// The store could not say.
    Failed,
}

/// A timer the machine armed; it comes back as [`Event::TimerFired`]. Arming a timer again
/// (same task, hand-off and kind) replaces the one armed before: drivers keep one deadline per
/// timer, and the simulation checks the machine under that contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// The task.
    pub task: TaskId,
    /// The hand-off.
    pub handoff: HandoffId,
    /// What it is for.
    pub kind: TimerKind,
}

/// What a timer is for. Each step that waits has a kind of its own, so that a timer armed
/// for an earlier step can never cut a later one short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// Source: the destination did not answer the offer in time.
    Offer,
    /// Source: the destination did not hold a verified copy in time (the image's deadline).
    Transfer,
    /// Source: read the commit record back again.
    ReadBack,
    /// Destination: the image did not arrive in time.
    Image,
    /// Destination: the source's decision did not arrive in time.
    Decision,
    /// Destination: ask the source again how a hand-off in doubt ended.
    Resolve,
    /// Destination: write the `owner` record again.
    OwnerRetry,
}

/// One input to a host's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The application spawned `task` here (epoch 0).
    Spawned {
        /// The task.
        task: TaskId,
    },
    /// `task`'s outcome is durable here: it never runs again, anywhere.
    Finished {
        /// The task.
        task: TaskId,
    },
    /// The driver stopped `task` at a safe point and captured an image of `size` bytes; move
    /// it to `to` as hand-off `handoff`.
    MoveRequested {
        /// The task.
        task: TaskId,
        /// A fresh id for this hand-off.
        handoff: HandoffId,
        /// The destination.
        to: String,
        /// The image's size.
        size: u64,
    },
    /// A message arrived from `from` (an authenticated host name).
    Received {
        /// The sender.
        from: String,
        /// The message.
        envelope: Envelope,
    },
    /// The conversation of a hand-off with `peer` ended before its end (connection lost,
    /// peer unreachable).
    PeerLost {
        /// The peer.
        peer: String,
        /// The task.
        task: TaskId,
        /// The hand-off.
        handoff: HandoffId,
    },
    /// Destination: the arrived image was verified and decoded (`Ok`), or not (`Err(why)`).
    ImageChecked {
        /// The task.
        task: TaskId,
        /// The hand-off.
        handoff: HandoffId,
        /// Whether it is usable.
        result: Result<(), String>,
    },
    /// A write the machine asked for ended.
    Wrote {
        /// The task.
        task: TaskId,
        /// The record.
        write: Write,
        /// How.
        result: WriteResult,
    },
    /// Source: the commit record was read back.
    ReadBack {
        /// The task.
        task: TaskId,
        /// The hand-off.
        handoff: HandoffId,
        /// What was found.
        result: ReadBack,
    },
    /// A timer fired.
    TimerFired(Timer),
}

impl Event {
    /// The task the event is about (every event is about exactly one).
    pub fn task(&self) -> TaskId {
        match self {
            Event::Spawned { task }
            | Event::Finished { task }
            | Event::MoveRequested { task, .. }
            | Event::PeerLost { task, .. }
            | Event::ImageChecked { task, .. }
            | Event::Wrote { task, .. }
            | Event::ReadBack { task, .. } => *task,
            Event::Received { envelope, .. } => envelope.task,
            Event::TimerFired(timer) => timer.task,
        }
    }
}
