//! Rebuilding a host's machine from its durable records after a restart. The newest epoch
//! record of a task decides: `owner` (or none) means it runs here; `moved` means it went
//! away; a lone `prepared` means a copy in doubt, settled by asking its source; an outcome
//! means it finished (a tombstone). A hand-off that was leaving has no record of its own:
//! without a `moved` record it never committed, so the task runs here again.

use super::command::Command;
use super::event::HandoffId;
use super::phase::{ArriveStep, Arriving, Phase, Prior};
use super::{Config, Entry, Host};
use crate::task::TaskId;

/// One durable epoch record, as the machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRecord {
    /// A verified copy from `from` is durable here.
    Prepared {
        /// The hand-off.
        handoff: HandoffId,
        /// The source.
        from: String,
        /// The copy's size.
        size: u64,
    },
    /// The task runs here from this epoch.
    Owner {
        /// The hand-off that brought it.
        handoff: HandoffId,
    },
    /// The task moved to `to` at this epoch.
    Moved {
        /// The hand-off.
        handoff: HandoffId,
        /// The destination.
        to: String,
    },
}

impl StoredRecord {
    /// Orders the records of one epoch: a decision supersedes the prepared copy.
    fn rank(&self) -> u8 {
        match self {
            StoredRecord::Prepared { .. } => 0,
            StoredRecord::Owner { .. } | StoredRecord::Moved { .. } => 1,
        }
    }
}

/// What a host's store holds about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTask {
    /// The task.
    pub task: TaskId,
    /// Its epoch records, `(epoch, record)`, in any order.
    pub records: Vec<(u64, StoredRecord)>,
    /// Whether its outcome is recorded.
    pub finished: bool,
}

/// What recovery made of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// It runs here at `epoch` (resume it from its newest checkpoint).
    Run {
        /// Its epoch.
        epoch: u64,
    },
    /// It moved away: keep a forwarding entry.
    Forward {
        /// The epoch it moved to.
        epoch: u64,
        /// Where.
        to: String,
        /// The hand-off.
        handoff: HandoffId,
    },
    /// A copy of it is in doubt here: hold it, and ask `from`.
    InDoubt {
        /// The offered epoch.
        epoch: u64,
        /// The source.
        from: String,
        /// The hand-off.
        handoff: HandoffId,
    },
    /// It finished.
    Finished,
}

impl Host {
    /// The machine of a host that restarted with these records, what became of each task,
    /// and the commands that settle the copies in doubt (ask their sources).
    pub fn recover(
        name: impl Into<String>,
        config: Config,
        stored: impl IntoIterator<Item = StoredTask>,
    ) -> (Host, Vec<(TaskId, Recovered)>, Vec<Command>) {
        let mut host = Host::new(name, config);
        let mut recovered = Vec::new();
        let mut commands = Vec::new();
        for StoredTask {
            task,
            mut records,
            finished,
        } in stored
        {
            records.sort_by_key(|(epoch, record)| (*epoch, record.rank()));
            let commits: Vec<(u64, HandoffId, String)> = records
                .iter()
                .filter_map(|(epoch, record)| match record {
                    StoredRecord::Moved { handoff, to } => Some((*epoch, *handoff, to.clone())),
                    _ => None,
                })
                .collect();
            let commits =
                commits[commits.len().saturating_sub(super::REMEMBERED_COMMITS)..].to_vec();
            let (phase, epoch, verdict) = if finished {
                let epoch = records.last().map_or(0, |(e, _)| *e);
                (Phase::Finished, epoch, Recovered::Finished)
            } else {
                match records.pop() {
                    None => (Phase::Running, 0, Recovered::Run { epoch: 0 }),
                    Some((epoch, StoredRecord::Owner { .. })) => {
                        (Phase::Running, epoch, Recovered::Run { epoch })
                    }
                    Some((epoch, StoredRecord::Moved { handoff, to })) => (
                        Phase::Moved {
                            to: to.clone(),
                            handoff,
                        },
                        epoch,
                        Recovered::Forward { epoch, to, handoff },
                    ),
                    Some((
                        epoch,
                        StoredRecord::Prepared {
                            handoff,
                            from,
                            size,
                        },
                    )) => {
                        // What the task was here before: gone elsewhere, or nothing. Prepared
                        // records of older hand-offs that aborted may be left below (their
                        // removal is best effort): they say nothing about that.
                        let below = records
                            .into_iter()
                            .rev()
                            .find(|(_, r)| !matches!(r, StoredRecord::Prepared { .. }));
                        let prior = match below {
                            Some((e, StoredRecord::Moved { handoff, to })) => Some(Prior {
                                epoch: e,
                                to,
                                handoff,
                            }),
                            _ => None,
                        };
                        let settled = prior.as_ref().map_or(0, |p| p.epoch);
                        let phase = Phase::Arriving(Arriving {
                            handoff,
                            from: from.clone(),
                            epoch,
                            size,
                            step: ArriveStep::Prepared,
                            prior,
                            backoff_ms: 0,
                            owner_tries: 0,
                        });
                        (
                            phase,
                            settled,
                            Recovered::InDoubt {
                                epoch,
                                from,
                                handoff,
                            },
                        )
                    }
                }
            };
            host.insert(
                task,
                Entry {
                    phase,
                    epoch,
                    commits,
                },
            );
            if matches!(verdict, Recovered::InDoubt { .. }) {
                commands.extend(host.start_resolving(task));
            }
            recovered.push((task, verdict));
        }
        host.set_load(host.recount());
        (host, recovered, commands)
    }

    /// Marks `task` as one whose records this host could not read at its start (a damaged or
    /// unreadable key): it cannot say whether it moved the task away, so it must not answer
    /// `Aborted` about it, nor take offers of it.
    pub fn quarantine(&mut self, task: TaskId) {
        self.insert(
            task,
            Entry {
                phase: Phase::Quarantined,
                epoch: 0,
                commits: Vec::new(),
            },
        );
        self.set_load(self.recount());
    }
}
