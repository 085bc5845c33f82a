//! The hand-off protocol as data: the states of every task on one host and the transitions
//! that move a task between hosts, with no I/O. No tokio, no sockets, no files, no clock and
//! no randomness in here: [`Event`]s go in (a message arrived, a record is durable, a write
//! failed, a timer fired, a peer is unreachable), [`Command`]s come out (send this, write that,
//! start the task, arm a timer, answer the caller), and the async drivers in
//! `runtime/migrate/` carry them out and feed back what happened. [`Host::recover`] builds the
//! machine again from the durable records after a restart.
//!
//! One [`Host`] owns the [`Phase`] of every task it knows: running, leaving (the giving side of
//! a hand-off), moved (a forwarding entry), arriving (the receiving side) or finished (a
//! tombstone). The promise it keeps, checked by the deterministic simulation in
//! `tests/simulation.rs` after every event of hundreds of thousands of schedules: a task's
//! live state is on at most one host; a committed move is never lost; epochs never go back;
//! a finished task never runs again; once the network heals, every hand-off settles.
//!
//! ```text
//! source                                  destination
//! Running --MoveRequested--> Offered  --Offer-->  (judged) Receiving
//!         Accept <--                                      <-- Accept
//!         Offered --Accept--> Transferring --Image--> ImageChecked: Recording
//!                                            write copy + prepared record, durable: Prepared
//!         Transferring --Prepared--> Committing           <-- Prepared
//!         write `moved` (the commit point), durable: Moved  --Commit--> Committing
//!                                            write `owner`, durable: Running  --Started-->
//! ```
//! A failure before the commit record leaves the task on the source (`ResumeTask`); after
//! it, on the destination, which asks the source (`Resolve`) if it did not hear the decision.
//! The state table in `docs/architecture.md` lists every transition; a test keeps it true.

mod command;
mod destination;
mod event;
#[cfg(feature = "sim-mutants")]
pub mod mutants;
mod phase;
mod recovery;
mod source;
pub mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

pub use command::{Command, MoveOutcome};
pub use event::{Body, Envelope, Event, HandoffId, ReadBack, Timer, TimerKind, Write, WriteResult};
pub use phase::{ArriveStep, Arriving, LeaveStep, Leaving, Phase, Prior};
pub use recovery::{Recovered, StoredRecord, StoredTask};

use crate::task::TaskId;

/// The settings the machine decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long one step of a hand-off may wait for the peer (plus time for the image).
    pub step_timeout: Duration,
    /// The most tasks here (running, leaving or arriving); offers beyond are refused.
    pub max_tasks: usize,
    /// The most copies arriving here at once (being received, or prepared and in doubt).
    pub max_arriving: usize,
    /// The most bytes of copies arriving here at once.
    pub max_arriving_bytes: u64,
    /// The first delay before asking a source again about a hand-off in doubt; it doubles up
    /// to `resolve_max`.
    pub resolve_min: Duration,
    /// The longest delay between two questions about a hand-off in doubt.
    pub resolve_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            step_timeout: Duration::from_secs(10),
            max_tasks: 10_000,
            max_arriving: 64,
            max_arriving_bytes: 4 << 30,
            resolve_min: Duration::from_millis(20),
            resolve_max: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// A step's deadline when `bytes` travel or are processed in it: the fixed timeout plus
    /// 20 ms per MiB (50 MiB/s, far below any real link and decoder).
    pub fn deadline_for(&self, bytes: u64) -> Duration {
        self.step_timeout
            .saturating_add(Duration::from_millis((bytes >> 20).saturating_mul(20)))
    }
}

/// Why the machine did not take an event. The machine is unchanged when it says so; drivers
/// log these (they are normal for late, duplicated or forged messages) and go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The event is about a task this host does not know.
    #[error("task {task} is not known on this host")]
    UnknownTask {
        /// The task.
        task: TaskId,
    },
    /// The event does not apply to the task's phase (a late or duplicated message, a timer of
    /// a hand-off that has moved on).
    #[error("{event} does not apply to task {task} in phase {phase}")]
    NotApplicable {
        /// The task.
        task: TaskId,
        /// Its phase.
        phase: String,
        /// The event, in short.
        event: String,
    },
    /// A message about a hand-off came from a host that is not its peer.
    #[error("`{from}` is not the peer of hand-off {handoff:016x} of task {task} (`{peer}` is)")]
    WrongPeer {
        /// The task.
        task: TaskId,
        /// The hand-off.
        handoff: HandoffId,
        /// Who sent it.
        from: String,
        /// Who should have.
        peer: String,
    },
    /// A message or event names a hand-off that is not the task's current one.
    #[error("hand-off {handoff:016x} is not the current hand-off of task {task}")]
    StaleHandoff {
        /// The task.
        task: TaskId,
        /// The hand-off named.
        handoff: HandoffId,
    },
    /// The application asked for something the task's phase does not allow (moving a task
    /// that is not running here, moving it to this very host).
    #[error("task {task} cannot {what} in phase {phase}")]
    NotAllowed {
        /// The task.
        task: TaskId,
        /// What was asked.
        what: &'static str,
        /// Its phase.
        phase: String,
    },
}

/// What one host knows of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) phase: Phase,
    /// The task's epoch as this host last settled it: the epoch it runs at here, or the one
    /// it moved to. Never goes back.
    pub(crate) epoch: u64,
    /// The newest hand-offs this host committed as the source, `(epoch, handoff, to)`: they
    /// answer `Resolve` (the `moved` records say the same after a restart).
    pub(crate) commits: Vec<(u64, HandoffId, String)>,
}

/// How many commits per task a host keeps answering from. A destination can only be in doubt
/// about the newest move of a task (the task cannot move on from it before it settles).
const REMEMBERED_COMMITS: usize = 4;

/// One host's hand-off machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    name: String,
    config: Config,
    tasks: BTreeMap<TaskId, Entry>,
    /// What the tasks' phases count against the bounds, kept as phases change.
    load: Load,
}

/// What tasks count against a host's bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Load {
    /// Running, leaving or arriving (`max_tasks`).
    occupied: usize,
    /// Copies arriving (`max_arriving`).
    arriving: usize,
    /// Their bytes (`max_arriving_bytes`).
    arriving_bytes: u64,
}

impl Load {
    /// What one task in `phase` counts.
    fn of(phase: Option<&Phase>) -> Load {
        match phase {
            Some(Phase::Running | Phase::Leaving(_)) => Load {
                occupied: 1,
                ..Load::default()
            },
            Some(Phase::Arriving(a)) => Load {
                occupied: 1,
                arriving: 1,
                arriving_bytes: a.size,
            },
            _ => Load::default(),
        }
    }

    fn with(self, other: Load) -> Load {
        Load {
            occupied: self.occupied + other.occupied,
            arriving: self.arriving + other.arriving,
            arriving_bytes: self.arriving_bytes.saturating_add(other.arriving_bytes),
        }
    }

    fn without(self, other: Load) -> Load {
        Load {
            occupied: self.occupied.saturating_sub(other.occupied),
            arriving: self.arriving.saturating_sub(other.arriving),
            arriving_bytes: self.arriving_bytes.saturating_sub(other.arriving_bytes),
        }
    }
}

impl Host {
    /// A host that knows no task yet.
    pub fn new(name: impl Into<String>, config: Config) -> Host {
        Host {
            name: name.into(),
            config,
            tasks: BTreeMap::new(),
            load: Load::default(),
        }
    }

    /// This host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The phase of `task` here, if this host knows it.
    pub fn phase(&self, task: TaskId) -> Option<&Phase> {
        self.tasks.get(&task).map(|e| &e.phase)
    }

    /// The epoch of `task` as this host last settled it.
    pub fn epoch(&self, task: TaskId) -> Option<u64> {
        self.tasks.get(&task).map(|e| e.epoch)
    }

    /// Every task this host knows, with its phase and epoch, in id order.
    pub fn tasks(&self) -> impl Iterator<Item = (TaskId, &Phase, u64)> + '_ {
        self.tasks.iter().map(|(id, e)| (*id, &e.phase, e.epoch))
    }

    /// How many tasks count against `max_tasks`: running, leaving or arriving here.
    pub fn occupied(&self) -> usize {
        self.load.occupied
    }

    /// Copies arriving here now, and their bytes.
    pub fn arriving(&self) -> (usize, u64) {
        (self.load.arriving, self.load.arriving_bytes)
    }

    /// Forgets `task` (a finished task whose tombstone retention expired).
    pub fn forget(&mut self, task: TaskId) {
        if matches!(self.phase(task), Some(Phase::Finished)) {
            self.tasks.remove(&task);
        }
    }

    /// This host learned that `task`, which it gave away, finished: its forwarding entry
    /// becomes a tombstone (the commits it remembers still answer a late question).
    pub fn learned_finished(&mut self, task: TaskId) {
        if let Some(entry) = self.tasks.get_mut(&task) {
            if matches!(entry.phase, Phase::Moved { .. }) {
                entry.phase = Phase::Finished;
            }
        }
    }

    /// Takes one event; returns what to do, or why the event does not apply (then nothing
    /// changed).
    pub fn step(&mut self, event: Event) -> Result<Vec<Command>, StepError> {
        // Every event is about one task: the load is kept by the change of that task's phase
        // (a scan of every task the host knows would make each offer cost O(tasks)).
        let task = event.task();
        let before = Load::of(self.phase(task));
        let result = self.dispatch(event);
        let after = Load::of(self.phase(task));
        self.load = self.load.without(before).with(after);
        result
    }

    /// The load counted from scratch (after recovery, and to check the kept one in tests).
    pub(crate) fn recount(&self) -> Load {
        self.tasks.values().fold(Load::default(), |load, e| {
            load.with(Load::of(Some(&e.phase)))
        })
    }

    pub(crate) fn set_load(&mut self, load: Load) {
        self.load = load;
    }

    fn dispatch(&mut self, event: Event) -> Result<Vec<Command>, StepError> {
        match event {
            Event::Spawned { task } => self.spawned(task),
            Event::Finished { task } => self.finished(task),
            Event::MoveRequested {
                task,
                handoff,
                to,
                size,
            } => self.move_requested(task, handoff, to, size),
            Event::Received { from, envelope } => self.received(from, envelope),
            Event::PeerLost {
                peer,
                task,
                handoff,
            } => self.peer_lost(&peer, task, handoff),
            Event::ImageChecked {
                task,
                handoff,
                result,
            } => self.image_checked(task, handoff, result),
            Event::Wrote {
                task,
                write,
                result,
            } => self.wrote(task, write, result),
            Event::ReadBack {
                task,
                handoff,
                result,
            } => self.read_back(task, handoff, result),
            Event::TimerFired(timer) => self.timer_fired(timer),
        }
    }

    fn spawned(&mut self, task: TaskId) -> Result<Vec<Command>, StepError> {
        if let Some(entry) = self.tasks.get(&task) {
            return Err(not_applicable(task, &entry.phase, "Spawned"));
        }
        self.tasks.insert(
            task,
            Entry {
                phase: Phase::Running,
                epoch: 0,
                commits: Vec::new(),
            },
        );
        Ok(Vec::new())
    }

    fn finished(&mut self, task: TaskId) -> Result<Vec<Command>, StepError> {
        let entry = self.entry(task)?;
        if entry.phase != Phase::Running {
            return Err(not_applicable(task, &entry.phase, "Finished"));
        }
        self.entry_mut(task).phase = Phase::Finished;
        Ok(Vec::new())
    }

    fn received(&mut self, from: String, envelope: Envelope) -> Result<Vec<Command>, StepError> {
        let Envelope {
            task,
            handoff,
            body,
        } = envelope;
        match body {
            // The giving side hears these.
            Body::Accept => self.accepted(&from, task, handoff),
            Body::Refuse(refusal) => self.refused(&from, task, handoff, refusal),
            Body::Prepared => self.prepared(&from, task, handoff),
            Body::PrepareFailed(reason) => self.prepare_failed(&from, task, handoff, reason),
            Body::Started | Body::Deferred => self.confirmed(&from, task, handoff),
            Body::Resolve => self.resolve_asked(&from, task, handoff),
            // The receiving side hears these.
            Body::Offer { epoch, size } => self.offered(&from, task, handoff, epoch, size),
            Body::Commit => self.decided(&from, task, handoff, true),
            Body::Abort => self.decided(&from, task, handoff, false),
            Body::Resolution(answer) => self.resolution(&from, task, handoff, answer),
            Body::Image => Err(StepError::NotApplicable {
                task,
                phase: self.phase_name(task),
                event: "Image (the driver checks images and reports ImageChecked)".into(),
            }),
        }
    }

    fn peer_lost(
        &mut self,
        peer: &str,
        task: TaskId,
        handoff: HandoffId,
    ) -> Result<Vec<Command>, StepError> {
        match self.phase(task) {
            Some(Phase::Leaving(_)) => self.source_peer_lost(peer, task, handoff),
            Some(Phase::Arriving(_)) => self.arrival_peer_lost(peer, task, handoff),
            _ => Err(not_applicable(task, &self.entry(task)?.phase, "PeerLost")),
        }
    }

    fn wrote(
        &mut self,
        task: TaskId,
        write: Write,
        result: WriteResult,
    ) -> Result<Vec<Command>, StepError> {
        match write {
            Write::Moved { handoff, .. } => self.commit_written(task, handoff, result),
            Write::Prepared { epoch, handoff, .. } => {
                self.prepared_written(task, epoch, handoff, result)
            }
            Write::Owner { handoff, .. } => self.owner_written(task, handoff, result),
        }
    }

    fn timer_fired(&mut self, timer: Timer) -> Result<Vec<Command>, StepError> {
        match timer.kind {
            TimerKind::Offer | TimerKind::Transfer | TimerKind::ReadBack => {
                self.source_timer(timer)
            }
            TimerKind::Image | TimerKind::Decision | TimerKind::Resolve | TimerKind::OwnerRetry => {
                self.arrival_timer(timer)
            }
        }
    }

    pub(crate) fn entry(&self, task: TaskId) -> Result<&Entry, StepError> {
        self.tasks.get(&task).ok_or(StepError::UnknownTask { task })
    }

    /// The entry of a task known to exist (checked by the caller in the same transition).
    pub(crate) fn entry_mut(&mut self, task: TaskId) -> &mut Entry {
        self.tasks.entry(task).or_insert_with(|| Entry {
            phase: Phase::Finished,
            epoch: 0,
            commits: Vec::new(),
        })
    }

    pub(crate) fn insert(&mut self, task: TaskId, entry: Entry) {
        self.tasks.insert(task, entry);
    }

    pub(crate) fn remove(&mut self, task: TaskId) {
        self.tasks.remove(&task);
    }

    pub(crate) fn phase_name(&self, task: TaskId) -> String {
        self.phase(task)
            .map_or_else(|| "Unknown".into(), Phase::name)
    }

    pub(crate) fn remember_commit(
        &mut self,
        task: TaskId,
        epoch: u64,
        handoff: HandoffId,
        to: &str,
    ) {
        let commits = &mut self.entry_mut(task).commits;
        commits.push((epoch, handoff, to.to_owned()));
        if commits.len() > REMEMBERED_COMMITS {
            commits.remove(0);
        }
    }
}

/// The error for an event that does not apply to a task's phase.
pub(crate) fn not_applicable(task: TaskId, phase: &Phase, event: &str) -> StepError {
    StepError::NotApplicable {
        task,
        phase: phase.name(),
        event: event.into(),
    }
}
