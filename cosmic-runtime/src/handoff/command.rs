//! What comes out of the hand-off machine: the work its driver carries out, then reports
//! back as events.

use std::time::Duration;

use super::event::{Envelope, HandoffId, Timer, Write};
use crate::task::TaskId;
use crate::transport::protocol::Refusal;

/// One thing for a driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send a message to `to`.
    Send {
        /// The peer.
        to: String,
        /// The message.
        envelope: Envelope,
    },
    /// Write a record durably; report [`Event::Wrote`](super::Event::Wrote).
    Write {
        /// The task.
        task: TaskId,
        /// The record.
        write: Write,
    },
    /// Read the `moved` record of hand-off `handoff` back; report
    /// [`Event::ReadBack`](super::Event::ReadBack).
    ReadMoved {
        /// The task.
        task: TaskId,
        /// The destination's epoch.
        epoch: u64,
        /// The hand-off.
        handoff: HandoffId,
    },
    /// Destination: remove the `prepared` record of `handoff` at `epoch` (if still that
    /// hand-off's) and its copy. Best effort: the next start removes leftovers.
    DiscardCopy {
        /// The task.
        task: TaskId,
        /// The epoch of the record.
        epoch: u64,
        /// The hand-off.
        handoff: HandoffId,
    },
    /// Destination: run the arrived copy of `handoff` at `epoch`.
    StartTask {
        /// The task.
        task: TaskId,
        /// The hand-off that brought it.
        handoff: HandoffId,
        /// Its epoch here.
        epoch: u64,
    },
    /// Source: the hand-off did not happen; the task runs on here.
    ResumeTask {
        /// The task.
        task: TaskId,
    },
    /// Source: the move is committed; the task is `to`'s now. Keep a forwarding entry and
    /// retire the task's images here.
    HandOver {
        /// The task.
        task: TaskId,
        /// The destination.
        to: String,
        /// The destination's epoch.
        epoch: u64,
        /// The hand-off.
        handoff: HandoffId,
    },
    /// Source: answer whoever asked for the move.
    Answer {
        /// The task.
        task: TaskId,
        /// The hand-off.
        handoff: HandoffId,
        /// How it ended.
        outcome: MoveOutcome,
    },
    /// Arm a timer; it comes back as [`Event::TimerFired`](super::Event::TimerFired) unless
    /// the machine has moved on (then it is ignored). Drivers arm a batch's timers before
    /// carrying out its other commands: a timer bounds the work of its batch.
    ArmTimer {
        /// The timer.
        timer: Timer,
        /// When.
        after: Duration,
    },
}

/// How a move ended, for the caller of `migrate_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOutcome {
    /// The commit record is durable: the task is the destination's.
    Moved,
    /// The destination refused the offer; the task stays.
    Refused(Refusal),
    /// The destination could not take the copy; the task stays.
    Rejected(String),
    /// The destination did not answer in time, or the connection was lost; the task stays.
    Failed(String),
    /// The commit record could not be written; the task stays.
    NotRecorded,
}
