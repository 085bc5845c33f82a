//! The receiving side of a hand-off: judge the offer against what this host knows of the
//! task, take the image, make the copy durable (`prepared`), and run the task once the
//! source has committed (`owner`), asking the source if the decision did not arrive.

use std::time::Duration;

use super::command::Command;
use super::event::{Body, Envelope, HandoffId, Timer, TimerKind, WriteResult};
use super::phase::{ArriveStep, Arriving, Phase, Prior};
use super::{not_applicable, Entry, Host, StepError, Write};
use crate::task::TaskId;
use crate::transport::protocol::{Refusal, Resolution};

/// How long before writing an `owner` record again after its write failed; it doubles with
/// each failure, up to the config's `resolve_max`.
const OWNER_RETRY: Duration = Duration::from_millis(50);

impl Host {
    /// The arriving side of `task` if `handoff` is its current hand-off from `peer`.
    fn arrival(
        &self,
        task: TaskId,
        handoff: HandoffId,
        peer: &str,
    ) -> Result<&Arriving, StepError> {
        let arriving = self.current_arrival(task, handoff)?;
        if arriving.from != peer {
            return Err(StepError::WrongPeer {
                task,
                handoff,
                from: peer.to_owned(),
                peer: arriving.from.clone(),
            });
        }
        Ok(arriving)
    }

    /// The arriving side of `task` if `handoff` is its current hand-off.
    fn current_arrival(&self, task: TaskId, handoff: HandoffId) -> Result<&Arriving, StepError> {
        match &self.entry(task)?.phase {
            Phase::Arriving(arriving) if arriving.handoff == handoff => Ok(arriving),
            _ => Err(StepError::StaleHandoff { task, handoff }),
        }
    }

    /// The arriving side of `task` if it is arriving at all, and at `step` of `handoff`; else
    /// `event` does not apply.
    fn arriving_at(
        &self,
        task: TaskId,
        handoff: HandoffId,
        step: ArriveStep,
        event: &str,
    ) -> Result<&Arriving, StepError> {
        let entry = self.entry(task)?;
        match &entry.phase {
            Phase::Arriving(arriving) if arriving.handoff == handoff && arriving.step == step => {
                Ok(arriving)
            }
            Phase::Arriving(_) => Err(not_applicable(task, &entry.phase, event)),
            _ => Err(StepError::StaleHandoff { task, handoff }),
        }
    }

    fn arrival_mut(&mut self, task: TaskId) -> &mut Arriving {
        match &mut self.entry_mut(task).phase {
            Phase::Arriving(arriving) => arriving,
            // Callers checked the phase in the same transition.
            _ => unreachable!("arrival_mut on a task that is not arriving"),
        }
    }

    /// Judges an offer against what this host knows of the task (the driver has already
    /// judged what does not depend on it: type, versions, schema, size limit).
    pub(super) fn offered(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
        epoch: u64,
        size: u64,
    ) -> Result<Vec<Command>, StepError> {
        let refuse = |refusal| {
            Ok(vec![Command::Send {
                to: from.to_owned(),
                envelope: Envelope {
                    task,
                    handoff,
                    body: Body::Refuse(refusal),
                },
            }])
        };
        if from == self.name() {
            return refuse(Refusal::Unavailable {
                reason: "an offer from this very host".into(),
            });
        }
        let prior = match self.entry(task).ok() {
            None => None,
            Some(entry) => match &entry.phase {
                Phase::Running | Phase::Leaving(_) => {
                    return refuse(Refusal::StaleEpoch {
                        offered: epoch,
                        known: entry.epoch,
                    })
                }
                Phase::Finished => return refuse(Refusal::Finished),
                Phase::Quarantined => {
                    return refuse(Refusal::Unavailable {
                        reason: "its records on this host are unreadable".into(),
                    })
                }
                Phase::Moved { .. } if epoch <= entry.epoch => {
                    return refuse(Refusal::StaleEpoch {
                        offered: epoch,
                        known: entry.epoch,
                    })
                }
                Phase::Moved { to, handoff: h } => Some(Prior {
                    epoch: entry.epoch,
                    to: to.clone(),
                    handoff: *h,
                }),
                Phase::Arriving(arriving)
                    if arriving.handoff == handoff && arriving.from == from =>
                {
                    return Err(not_applicable(task, &entry.phase, "a repeated Offer"));
                }
                Phase::Arriving(arriving) => {
                    // A prepared copy is never replaced by another offer: it waits for its
                    // own source's decision. That source, if it offers again, first tells us
                    // how the older hand-off ended.
                    if arriving.from != from {
                        return refuse(Refusal::Unavailable {
                            reason: format!(
                                "a copy of this task from `{}` is in doubt here",
                                arriving.from
                            ),
                        });
                    }
                    return match arriving.step {
                        ArriveStep::Prepared | ArriveStep::InDoubt => refuse(Refusal::Settling {
                            handoff: arriving.handoff,
                        }),
                        _ => refuse(Refusal::Unavailable {
                            reason: "another hand-off of this task is in progress here".into(),
                        }),
                    };
                }
            },
        };
        let occupied = self.occupied();
        if occupied >= self.config().max_tasks {
            return refuse(Refusal::NoCapacity { running: occupied });
        }
        let (arriving, bytes) = self.arriving();
        if arriving >= self.config().max_arriving
            || bytes.saturating_add(size) > self.config().max_arriving_bytes
        {
            return refuse(Refusal::Busy { arriving, bytes });
        }
        let entry_epoch = prior.as_ref().map_or(0, |p| p.epoch);
        let commits = self
            .entry(task)
            .map(|e| e.commits.clone())
            .unwrap_or_default();
        self.insert(
            task,
            Entry {
                phase: Phase::Arriving(Arriving {
                    handoff,
                    from: from.to_owned(),
                    epoch,
                    size,
                    step: ArriveStep::Receiving,
                    prior,
                    backoff_ms: 0,
                    owner_tries: 0,
                }),
                epoch: entry_epoch,
                commits,
            },
        );
        Ok(vec![
            Command::Send {
                to: from.to_owned(),
                envelope: Envelope {
                    task,
                    handoff,
                    body: Body::Accept,
                },
            },
            self.timer_cmd(
                task,
                handoff,
                TimerKind::Image,
                self.config().deadline_for(size),
            ),
        ])
    }

    pub(super) fn image_checked(
        &mut self,
        task: TaskId,
        handoff: HandoffId,
        result: Result<(), String>,
    ) -> Result<Vec<Command>, StepError> {
        let arriving = self.arriving_at(task, handoff, ArriveStep::Receiving, "ImageChecked")?;
        let from = arriving.from.clone();
        match result {
            Ok(()) => {
                let write = Write::Prepared {
                    epoch: arriving.epoch,
                    handoff,
                    from: from.clone(),
                };
                self.arrival_mut(task).step = ArriveStep::Recording;
                #[cfg(feature = "sim-mutants")]
                if super::mutants::active(super::mutants::Mutant::PreparedEarly) {
                    let early = Command::Send {
                        to: from,
                        envelope: Envelope {
                            task,
                            handoff,
                            body: Body::Prepared,
                        },
                    };
                    return Ok(vec![early, Command::Write { task, write }]);
                }
                Ok(vec![Command::Write { task, write }])
            }
            Err(reason) => {
                self.back_to_prior(task);
                Ok(vec![Command::Send {
                    to: from,
                    envelope: Envelope {
                        task,
                        handoff,
                        body: Body::PrepareFailed(reason),
                    },
                }])
            }
        }
    }

    pub(super) fn prepared_written(
        &mut self,
        task: TaskId,
        epoch: u64,
        handoff: HandoffId,
        result: WriteResult,
    ) -> Result<Vec<Command>, StepError> {
        let current = match self.entry(task).map(|e| &e.phase) {
            Ok(Phase::Arriving(a)) => a.handoff == handoff && a.step == ArriveStep::Recording,
            _ => false,
        };
        if !current {
            // The hand-off was given up while its copy was being written (aborted, timed
            // out): whatever landed goes.
            return Ok(vec![Command::DiscardCopy {
                task,
                epoch,
                handoff,
            }]);
        }
        let from = self.arrival_mut(task).from.clone();
        let send = |body| Command::Send {
            to: from.clone(),
            envelope: Envelope {
                task,
                handoff,
                body,
            },
        };
        match result {
            WriteResult::Durable => {
                self.arrival_mut(task).step = ArriveStep::Prepared;
                let timer = self.timer_cmd(
                    task,
                    handoff,
                    TimerKind::Decision,
                    self.config().step_timeout,
                );
                Ok(vec![send(Body::Prepared), timer])
            }
            WriteResult::Failed => {
                self.back_to_prior(task);
                Ok(vec![
                    Command::DiscardCopy {
                        task,
                        epoch,
                        handoff,
                    },
                    send(Body::PrepareFailed("could not record the copy".into())),
                ])
            }
        }
    }

    /// `Commit` or `Abort` from the source.
    pub(super) fn decided(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
        commit: bool,
    ) -> Result<Vec<Command>, StepError> {
        let arriving = self.arrival(task, handoff, from)?;
        let step = arriving.step;
        let epoch = arriving.epoch;
        if commit {
            if !matches!(step, ArriveStep::Prepared | ArriveStep::InDoubt) {
                return Err(not_applicable(task, &self.entry(task)?.phase, "Commit"));
            }
            self.arrival_mut(task).step = ArriveStep::Committing;
            return Ok(vec![Command::Write {
                task,
                write: Write::Owner { epoch, handoff },
            }]);
        }
        match step {
            ArriveStep::Receiving | ArriveStep::Prepared | ArriveStep::InDoubt => {
                self.back_to_prior(task);
                let mut commands = Vec::new();
                if step != ArriveStep::Receiving {
                    commands.push(Command::DiscardCopy {
                        task,
                        epoch,
                        handoff,
                    });
                }
                Ok(commands)
            }
            // The copy is being written: `prepared_written` discards it when it lands.
            ArriveStep::Recording => {
                self.back_to_prior(task);
                Ok(Vec::new())
            }
            ArriveStep::Committing | ArriveStep::CommitRetry => {
                Err(not_applicable(task, &self.entry(task)?.phase, "Abort"))
            }
        }
    }

    /// The source says how a hand-off ended (asked, or unasked before a newer offer).
    pub(super) fn resolution(
        &mut self,
        from: &str,
        task: TaskId,
        handoff: HandoffId,
        answer: Resolution,
    ) -> Result<Vec<Command>, StepError> {
        let arriving = self.arrival(task, handoff, from)?;
        if !matches!(arriving.step, ArriveStep::Prepared | ArriveStep::InDoubt) {
            return Err(not_applicable(task, &self.entry(task)?.phase, "Resolution"));
        }
        match answer {
            Resolution::Committed => self.decided(from, task, handoff, true),
            Resolution::Aborted => self.decided(from, task, handoff, false),
            // Still deciding: the resolve timer asks again.
            Resolution::Pending => Ok(Vec::new()),
        }
    }

    pub(super) fn arrival_peer_lost(
        &mut self,
        peer: &str,
        task: TaskId,
        handoff: HandoffId,
    ) -> Result<Vec<Command>, StepError> {
        let step = self.arrival(task, handoff, peer)?.step;
        match step {
            ArriveStep::Receiving => {
                self.back_to_prior(task);
                Ok(Vec::new())
            }
            ArriveStep::Prepared => Ok(self.start_resolving(task)),
            // Writes in flight, or already asking: they go on without the conversation.
            ArriveStep::Recording
            | ArriveStep::InDoubt
            | ArriveStep::Committing
            | ArriveStep::CommitRetry => Ok(Vec::new()),
        }
    }

    pub(super) fn arrival_timer(&mut self, timer: Timer) -> Result<Vec<Command>, StepError> {
        let Timer {
            task,
            handoff,
            kind,
        } = timer;
        let arriving = self.current_arrival(task, handoff)?;
        match (kind, arriving.step) {
            (TimerKind::Image, ArriveStep::Receiving) => {
                // The image did not arrive in time (a stalled or vanished sender).
                self.back_to_prior(task);
                Ok(Vec::new())
            }
            (TimerKind::Decision, ArriveStep::Prepared) => Ok(self.start_resolving(task)),
            (TimerKind::Resolve, ArriveStep::InDoubt) => Ok(self.ask_source(task)),
            (TimerKind::OwnerRetry, ArriveStep::CommitRetry) => {
                let epoch = arriving.epoch;
                self.arrival_mut(task).step = ArriveStep::Committing;
                Ok(vec![Command::Write {
                    task,
                    write: Write::Owner { epoch, handoff },
                }])
            }
            _ => Err(not_applicable(
                task,
                &self.entry(task)?.phase,
                "a stale timer",
            )),
        }
    }

    pub(super) fn owner_written(
        &mut self,
        task: TaskId,
        handoff: HandoffId,
        result: WriteResult,
    ) -> Result<Vec<Command>, StepError> {
        let arriving = self.arriving_at(task, handoff, ArriveStep::Committing, "Wrote(owner)")?;
        let (from, epoch) = (arriving.from.clone(), arriving.epoch);
        match result {
            WriteResult::Durable => {
                let entry = self.entry_mut(task);
                entry.phase = Phase::Running;
                entry.epoch = epoch;
                Ok(vec![
                    Command::StartTask {
                        task,
                        handoff,
                        epoch,
                    },
                    Command::Send {
                        to: from,
                        envelope: Envelope {
                            task,
                            handoff,
                            body: Body::Started,
                        },
                    },
                ])
            }
            WriteResult::Failed => {
                // The source committed: the copy stays until the record is written.
                let max = self.config().resolve_max;
                let arriving = self.arrival_mut(task);
                arriving.step = ArriveStep::CommitRetry;
                let delay = super::source::backoff(OWNER_RETRY, arriving.owner_tries, max);
                arriving.owner_tries = arriving.owner_tries.saturating_add(1);
                Ok(vec![
                    Command::Send {
                        to: from,
                        envelope: Envelope {
                            task,
                            handoff,
                            body: Body::Deferred,
                        },
                    },
                    self.timer_cmd(task, handoff, TimerKind::OwnerRetry, delay),
                ])
            }
        }
    }

    /// The decision did not arrive (the conversation ended, or the host restarted with the
    /// copy in doubt): ask the source until it says.
    pub(super) fn start_resolving(&mut self, task: TaskId) -> Vec<Command> {
        let min = self.config().resolve_min.as_millis() as u64;
        let arriving = self.arrival_mut(task);
        arriving.step = ArriveStep::InDoubt;
        arriving.backoff_ms = min.max(1);
        self.ask_source(task)
    }

    fn ask_source(&mut self, task: TaskId) -> Vec<Command> {
        let max = self.config().resolve_max.as_millis() as u64;
        let arriving = self.arrival_mut(task);
        let (from, handoff, delay) = (arriving.from.clone(), arriving.handoff, arriving.backoff_ms);
        arriving.backoff_ms = delay.saturating_mul(2).min(max.max(1));
        vec![
            Command::Send {
                to: from,
                envelope: Envelope {
                    task,
                    handoff,
                    body: Body::Resolve,
                },
            },
            self.timer_cmd(
                task,
                handoff,
                TimerKind::Resolve,
                Duration::from_millis(delay),
            ),
        ]
    }

    /// The hand-off aborted: the task is what it was here before the offer.
    fn back_to_prior(&mut self, task: TaskId) {
        let prior = self.arrival_mut(task).prior.take();
        match prior {
            None => self.remove(task),
            Some(Prior { epoch, to, handoff }) => {
                let entry = self.entry_mut(task);
                entry.phase = Phase::Moved { to, handoff };
                entry.epoch = epoch;
            }
        }
    }

    fn timer_cmd(
        &self,
        task: TaskId,
        handoff: HandoffId,
        kind: TimerKind,
        after: Duration,
    ) -> Command {
        Command::ArmTimer {
            timer: Timer {
                task,
                handoff,
                kind,
            },
            after,
        }
    }
}
