//! The giving side of a hand-off: offer, send the image, write the commit record (`moved`),
//! tell the destination. Any failure before the commit record is durable leaves the task
//! here and running; after it, the task is the destination's whatever fails.

use std::time::Duration;

use super::command::{Command, MoveOutcome};
use super::event::{Body, Envelope, HandoffId, ReadBack, Timer, TimerKind, Write, WriteResult};
use super::phase::{LeaveStep, Leaving, Phase};
use super::{not_applicable, Host, StepError};
use crate::task::TaskId;
use crate::transport::protocol::{Refusal, Resolution};

/// How often a source re-offers after settling an older copy of its own that blocked the
/// offer (the destination held it in doubt).
const MAX_SETTLE_TRIES: u8 = 3;

/// The first delay before reading an unclear commit record back again; it doubles with each
/// failed read, up to `READ_BACK_MAX`.
const READ_BACK_RETRY: Duration = Duration::from_millis(10);
const READ_BACK_MAX: Duration = Duration::from_secs(5);

impl Host {
    /// The leaving side of `task` if `handoff` is its current hand-off with `peer`.
    fn leaving(&self, task: TaskId, handoff: HandoffId, peer: &str) -> Result<&Leaving, StepError> {
        let leaving = self.current_leaving(task, handoff)?;
        if leaving.to != peer {
            return Err(StepError::WrongPeer {
                task,
                handoff,
                from: peer.to_owned(),
                peer: leaving.to.clone(),
            });
        }
        Ok(leaving)
    }

    /// The leaving side of `task` if `handoff` is its current hand-off.
    fn current_leaving(&self, task: TaskId, handoff: HandoffId) -> Result<&Leaving, StepError> {
        match &self.entry(task)?.phase {
            Phase::Leaving(leaving) if leaving.handoff == handoff => Ok(leaving),
            _ => Err(StepError::StaleHandoff { task, handoff }),
        }
    }

    /// The leaving side of `task` if it is leaving at all, and at `step` of `handoff`; else
    /// `event` does not apply.
    fn leaving_at(
        &self,
        task: TaskId,
        handoff: HandoffId,
        step: LeaveStep,
        event: &str,
    ) -> Result<&Leaving, StepError> {
        let entry = self.entry(task)?;
        match &entry.phase {
            Phase::Leaving(leaving) if leaving.handoff == handoff && leaving.step == step => {
                Ok(leaving)
            }
            Phase::Leaving(_) => Err(not_applicable(task, &entry.phase, event)),
            _ => Err(StepError::StaleHandoff { task, handoff }),
        }
    }

    fn leaving_mut(&mut self, task: TaskId) -> &mut Leaving {
        match &mut self.entry_mut(task).phase {
            Phase::Leaving(leaving) => leaving,
            // Callers checked the phase in the same transition.
            _ => unreachable!("leaving_mut on a task that is not leaving"),
        }
    }

    pub(super) fn move_requested(
        &mut self,
        task: TaskId,
        handoff: HandoffId,
        to: String,
        size: u64,
    ) -> Result<Vec<Command>, StepError> {
        let entry = self.entry(task)?;
        if entry.phase != Phase::Running {
            return Err(StepError::NotAllowed {
                task,
                what: "move",
                phase: entry.phase.name(),
            });
        }
        if to == self.name() {
            return Err(StepError::NotAllowed {
                task,
                what: "move to its own host",
                phase: entry.phase.name(),
            });
        }
        let epoch = entry.epoch + 1;
        let offer = Command::Send {
            to: to.clone(),
            envelope: Envelope {
                task,
                handoff,
                body: Body::Offer { epoch, size },
            },
        };
        self.entry_mut(task).phase = Phase::Leaving(Leaving {
            handoff,
            to,
            epoch,
            size,
            step: LeaveStep::Offered,
            settle_tries: 0,
            read_tries: 0,
        });
        Ok(vec![
            offer,
            self.step_timer(task, handoff, TimerKind::Offer, 0),
        ])
    }

    pub(super) fn accepted(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
    ) -> Result<Vec<Command>, StepError> {
        let leaving = self.leaving(task, handoff, from)?;
        if leaving.step != LeaveStep::Offered {
            return Err(not_applicable(task, &self.entry(task)?.phase, "Accept"));
        }
        let size = leaving.size;
        self.leaving_mut(task).step = LeaveStep::Transferring;
        Ok(vec![
            Command::Send {
                to: from.to_owned(),
                envelope: Envelope {
                    task,
                    handoff,
                    body: Body::Image,
                },
            },
            self.step_timer(task, handoff, TimerKind::Transfer, size),
        ])
    }

    pub(super) fn refused(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
        refusal: Refusal,
    ) -> Result<Vec<Command>, StepError> {
        let leaving = self.leaving(task, handoff, from)?;
        if leaving.step != LeaveStep::Offered {
            return Err(not_applicable(task, &self.entry(task)?.phase, "Refuse"));
        }
        if let Refusal::Settling { handoff: older } = refusal {
            if leaving.settle_tries < MAX_SETTLE_TRIES && older != handoff {
                // An older copy of ours is in doubt there and blocks the offer: say how that
                // hand-off ended (we know: it is not this one, so it aborted unless we
                // committed it), then offer again.
                let (epoch, size) = (leaving.epoch, leaving.size);
                let answer = self.resolution_of(task, older, from);
                self.leaving_mut(task).settle_tries += 1;
                let send = |body| Command::Send {
                    to: from.to_owned(),
                    envelope: Envelope {
                        task,
                        handoff: older,
                        body,
                    },
                };
                let mut commands = vec![send(Body::Resolution(answer))];
                commands.push(Command::Send {
                    to: from.to_owned(),
                    envelope: Envelope {
                        task,
                        handoff,
                        body: Body::Offer { epoch, size },
                    },
                });
                commands.push(self.step_timer(task, handoff, TimerKind::Offer, 0));
                return Ok(commands);
            }
        }
        Ok(self.keep_task(task, handoff, None, MoveOutcome::Refused(refusal)))
    }

    pub(super) fn prepared(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
    ) -> Result<Vec<Command>, StepError> {
        let leaving = self.leaving(task, handoff, from)?;
        if leaving.step != LeaveStep::Transferring {
            return Err(not_applicable(task, &self.entry(task)?.phase, "Prepared"));
        }
        let write = Write::Moved {
            epoch: leaving.epoch,
            handoff,
            to: leaving.to.clone(),
        };
        self.leaving_mut(task).step = LeaveStep::Committing;
        Ok(vec![Command::Write { task, write }])
    }

    pub(super) fn prepare_failed(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
        reason: String,
    ) -> Result<Vec<Command>, StepError> {
        let leaving = self.leaving(task, handoff, from)?;
        if !matches!(leaving.step, LeaveStep::Offered | LeaveStep::Transferring) {
            return Err(not_applicable(
                task,
                &self.entry(task)?.phase,
                "PrepareFailed",
            ));
        }
        Ok(self.keep_task(task, handoff, None, MoveOutcome::Rejected(reason)))
    }

    /// `Started` or `Deferred` after the commit: nothing left to do (the destination settles
    /// on its own from here).
    pub(super) fn confirmed(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
    ) -> Result<Vec<Command>, StepError> {
        let entry = self.entry(task)?;
        match &entry.phase {
            Phase::Moved { to, handoff: h } if *h == handoff && to == from => Ok(Vec::new()),
            Phase::Moved { .. } => Err(StepError::StaleHandoff { task, handoff }),
            phase => Err(not_applicable(task, phase, "Started or Deferred")),
        }
    }

    /// A destination asks how `handoff` ended.
    pub(super) fn resolve_asked(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
    ) -> Result<Vec<Command>, StepError> {
        let answer = self.resolution_of(task, handoff, from);
        Ok(vec![Command::Send {
            to: from.to_owned(),
            envelope: Envelope {
                task,
                handoff,
                body: Body::Resolution(answer),
            },
        }])
    }

    /// How `handoff` of `task` ended, as this host (its source) knows it. A hand-off stays
    /// `Leaving` until its commit record is durable or it aborted for good, and commits are
    /// remembered (and rebuilt from `moved` records after a restart): so "not leaving, not
    /// committed" means it never commits.
    pub(crate) fn resolution_of(
        &self,
        task: TaskId,
        handoff: HandoffId,
        asker: &str,
    ) -> Resolution {
        let Ok(entry) = self.entry(task) else {
            return Resolution::Aborted;
        };
        if entry.phase == Phase::Quarantined {
            // Its records are unreadable here: it may have committed.
            return Resolution::Pending;
        }
        if let Phase::Leaving(leaving) = &entry.phase {
            if leaving.handoff == handoff && leaving.to == asker {
                return Resolution::Pending;
            }
        }
        #[cfg(feature = "sim-mutants")]
        let forgotten;
        #[cfg(feature = "sim-mutants")]
        let entry = if super::mutants::active(super::mutants::Mutant::ForgetCommits) {
            forgotten = super::Entry {
                commits: Vec::new(),
                ..entry.clone()
            };
            &forgotten
        } else {
            entry
        };
        let committed = entry
            .commits
            .iter()
            .any(|(_, h, to)| *h == handoff && to == asker);
        if committed {
            Resolution::Committed
        } else {
            Resolution::Aborted
        }
    }

    pub(super) fn source_peer_lost(
        &mut self,
        peer: &str,
        task: TaskId,
        handoff: HandoffId,
    ) -> Result<Vec<Command>, StepError> {
        let leaving = self.leaving(task, handoff, peer)?;
        match leaving.step {
            LeaveStep::Offered | LeaveStep::Transferring => Ok(self.keep_task(
                task,
                handoff,
                Some(peer.to_owned()),
                MoveOutcome::Failed(format!("lost the connection to `{peer}`")),
            )),
            // The decision is the store's now; the destination asks us if it must.
            LeaveStep::Committing | LeaveStep::CheckingCommit => Ok(Vec::new()),
        }
    }

    pub(super) fn source_timer(&mut self, timer: Timer) -> Result<Vec<Command>, StepError> {
        let Timer {
            task,
            handoff,
            kind,
        } = timer;
        let leaving = self.current_leaving(task, handoff)?;
        match (kind, leaving.step) {
            (TimerKind::Offer, LeaveStep::Offered)
            | (TimerKind::Transfer, LeaveStep::Transferring) => {
                let to = leaving.to.clone();
                let what = if leaving.step == LeaveStep::Offered {
                    "the offer"
                } else {
                    "the copy"
                };
                let outcome = MoveOutcome::Failed(format!("`{to}` did not answer {what} in time"));
                Ok(self.keep_task(task, handoff, Some(to), outcome))
            }
            (TimerKind::ReadBack, LeaveStep::CheckingCommit) => Ok(vec![Command::ReadMoved {
                task,
                epoch: leaving.epoch,
                handoff,
            }]),
            _ => Err(not_applicable(
                task,
                &self.entry(task)?.phase,
                "a stale timer",
            )),
        }
    }

    pub(super) fn commit_written(
        &mut self,
        task: TaskId,
        handoff: HandoffId,
        result: WriteResult,
    ) -> Result<Vec<Command>, StepError> {
        let leaving = self.leaving_at(task, handoff, LeaveStep::Committing, "Wrote(moved)")?;
        match result {
            WriteResult::Durable => Ok(self.committed(task)),
            #[cfg(feature = "sim-mutants")]
            WriteResult::Failed if super::mutants::active(super::mutants::Mutant::NoReadBack) => {
                let to = leaving.to.clone();
                Ok(self.keep_task(task, handoff, Some(to), MoveOutcome::NotRecorded))
            }
            WriteResult::Failed => {
                // A store can fail after making a record visible: the record, not the error,
                // decides. Until the store can say, the task stays stopped here.
                let epoch = leaving.epoch;
                self.leaving_mut(task).step = LeaveStep::CheckingCommit;
                Ok(vec![Command::ReadMoved {
                    task,
                    epoch,
                    handoff,
                }])
            }
        }
    }

    pub(super) fn read_back(
        &mut self,
        task: TaskId,
        handoff: HandoffId,
        result: ReadBack,
    ) -> Result<Vec<Command>, StepError> {
        let leaving = self.leaving_at(task, handoff, LeaveStep::CheckingCommit, "ReadBack")?;
        match result {
            ReadBack::Landed => Ok(self.committed(task)),
            ReadBack::Absent => {
                let to = leaving.to.clone();
                Ok(self.keep_task(task, handoff, Some(to), MoveOutcome::NotRecorded))
            }
            ReadBack::Failed => {
                let tries = leaving.read_tries;
                self.leaving_mut(task).read_tries = tries.saturating_add(1);
                Ok(vec![Command::ArmTimer {
                    timer: Timer {
                        task,
                        handoff,
                        kind: TimerKind::ReadBack,
                    },
                    after: backoff(READ_BACK_RETRY, tries, READ_BACK_MAX),
                }])
            }
        }
    }

    /// The commit record is durable: the task is the destination's.
    fn committed(&mut self, task: TaskId) -> Vec<Command> {
        let leaving = self.leaving_mut(task).clone();
        let Leaving {
            handoff, to, epoch, ..
        } = leaving;
        self.remember_commit(task, epoch, handoff, &to);
        let entry = self.entry_mut(task);
        entry.epoch = epoch;
        entry.phase = Phase::Moved {
            to: to.clone(),
            handoff,
        };
        vec![
            Command::HandOver {
                task,
                to: to.clone(),
                epoch,
                handoff,
            },
            Command::Answer {
                task,
                handoff,
                outcome: MoveOutcome::Moved,
            },
            Command::Send {
                to,
                envelope: Envelope {
                    task,
                    handoff,
                    body: Body::Commit,
                },
            },
        ]
    }

    /// The hand-off failed before its commit record: the task runs on here. `tell` is the
    /// destination to send `Abort` to, when it may hold a copy.
    fn keep_task(
        &mut self,
        task: TaskId,
        handoff: HandoffId,
        tell: Option<String>,
        outcome: MoveOutcome,
    ) -> Vec<Command> {
        self.entry_mut(task).phase = Phase::Running;
        let mut commands = Vec::new();
        if let Some(to) = tell {
            commands.push(Command::Send {
                to,
                envelope: Envelope {
                    task,
                    handoff,
                    body: Body::Abort,
                },
            });
        }
        commands.push(Command::ResumeTask { task });
        commands.push(Command::Answer {
            task,
            handoff,
            outcome,
        });
        commands
    }

    fn step_timer(&self, task: TaskId, handoff: HandoffId, kind: TimerKind, bytes: u64) -> Command {
        Command::ArmTimer {
            timer: Timer {
                task,
                handoff,
                kind,
            },
            after: self.config().deadline_for(bytes),
        }
    }
}

/// `first` doubled `tries` times, at most `max`.
pub(super) fn backoff(first: Duration, tries: u32, max: Duration) -> Duration {
    first
        .saturating_mul(1u32.checked_shl(tries.min(31)).unwrap_or(u32::MAX))
        .min(max)
}
