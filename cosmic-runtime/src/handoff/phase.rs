//! Where each task stands on one host: running, leaving, gone, arriving, or finished. One
//! value per task, owned by the machine: the whole state of a hand-off lives here.

use super::event::HandoffId;

/// A task's phase on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The task runs here.
    Running,
    /// The task is stopped here at a safe point, being handed to another host.
    Leaving(Leaving),
    /// The task moved to `to` (the commit record is durable); this host forwards to it.
    Moved {
        /// The destination.
        to: String,
        /// The hand-off that moved it.
        handoff: HandoffId,
    },
    /// A copy of the task is arriving here.
    Arriving(Arriving),
    /// The task's outcome is recorded: it never runs again (a tombstone).
    Finished,
    /// The task's records here could not be read at the last start: this host cannot tell
    /// what it did with the task, so it neither runs it nor answers for it (`Resolve` gets
    /// `Pending`, offers are refused) until an operator repairs the store and restarts it.
    Quarantined,
}

/// The giving side of a hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaving {
    /// The hand-off.
    pub handoff: HandoffId,
    /// The destination.
    pub to: String,
    /// The epoch the task will have there.
    pub epoch: u64,
    /// The image's size.
    pub size: u64,
    /// How far it got.
    pub step: LeaveStep,
    /// Offers refused because an older copy of ours was still in doubt there.
    pub settle_tries: u8,
    /// Reads of the commit record back that failed (each retry waits twice as long).
    pub read_tries: u32,
}

/// The steps of the giving side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveStep {
    /// The offer is out; waiting for `Accept` or `Refuse`.
    Offered,
    /// The image is out; waiting for `Prepared`.
    Transferring,
    /// The commit record is being written.
    Committing,
    /// Its write reported an error; reading it back decides.
    CheckingCommit,
}

/// The receiving side of a hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arriving {
    /// The hand-off.
    pub handoff: HandoffId,
    /// The source (an authenticated host name).
    pub from: String,
    /// The epoch offered.
    pub epoch: u64,
    /// The image's size.
    pub size: u64,
    /// How far it got.
    pub step: ArriveStep,
    /// What the task was here before the offer (nothing, or gone elsewhere): it is that
    /// again if the hand-off aborts.
    pub prior: Option<Prior>,
    /// The timer's current delay while in doubt (backs off).
    pub backoff_ms: u64,
    /// Writes of the `owner` record that failed (each retry waits twice as long).
    pub owner_tries: u32,
}

/// What an arriving task was here before its copy arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    /// Its epoch then.
    pub epoch: u64,
    /// Where it had gone.
    pub to: String,
    /// The hand-off that took it.
    pub handoff: HandoffId,
}

/// The steps of the receiving side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArriveStep {
    /// Accepted; the image is on its way.
    Receiving,
    /// The image is verified; its copy and `prepared` record are being written.
    Recording,
    /// `Prepared` is sent; waiting for the decision on the conversation.
    Prepared,
    /// The conversation ended before the decision: asking the source.
    InDoubt,
    /// Committed by the source; the `owner` record is being written.
    Committing,
    /// The `owner` record's write failed; retrying.
    CommitRetry,
}

impl Phase {
    /// A short name, as in the state table.
    pub fn name(&self) -> String {
        match self {
            Phase::Running => "Running".into(),
            Phase::Leaving(l) => format!("Leaving/{:?}", l.step),
            Phase::Moved { .. } => "Moved".into(),
            Phase::Arriving(a) => format!("Arriving/{:?}", a.step),
            Phase::Finished => "Finished".into(),
            Phase::Quarantined => "Quarantined".into(),
        }
    }

    /// Whether the task's live state is on this host (running, or stopped while leaving).
    pub fn holds_live_state(&self) -> bool {
        matches!(self, Phase::Running | Phase::Leaving(_))
    }
}
