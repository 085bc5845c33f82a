//! The source's driver of a hand-off, run by the task's driver at a safe point while the task
//! is stopped there. The decisions are the hand-off machine's (`crate::handoff`, giving side):
//! this file carries out its commands on one channel to the destination (send the offer, the
//! image, the decision; write and read back the commit record) and feeds back what happened
//! (an answer, a lost connection, a deadline, a write's result), until the machine answers the
//! mover. `Ok` means the commit record is durable: the task is the destination's, and the
//! caller must stop running it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

#[cfg(feature = "fault-injection")]
use super::fault::{FaultPoint, GatedReader, Injected};
use super::node::Node;
use super::{HandoffStep, MigrateError};
use crate::checkpoint::EpochRecord;
use crate::handoff::{
    Body, Command, Event, MoveOutcome, ReadBack, Timer, TimerKind, Write, WriteResult,
};
use crate::image;
use crate::runtime::shared::Forward;
use crate::runtime::RuntimeInner;
use crate::task::TaskId;
use crate::transport::protocol::{
    Decision, Offer, OfferAnswer, PrepareAnswer, Request, StartAnswer, MAX_INLINE_IMAGE,
};
use crate::transport::{ChannelError, SecureChannel};

/// How long an `Abort` may take to go out on a channel whose peer did not answer in time.
const ABORT_PATIENCE: Duration = Duration::from_secs(1);

/// What the driver knows about the task it moves.
pub(crate) struct Moving<'a> {
    pub(crate) task: TaskId,
    pub(crate) output_type: &'a str,
    pub(crate) steps: u64,
    /// Tries after panics so far.
    pub(crate) tries: u32,
    /// The captured image.
    pub(crate) image: &'a mut [u8],
}

/// Moves the task to `host`.
pub(crate) async fn hand_off(
    runtime: &Arc<RuntimeInner>,
    host: &str,
    moving: Moving<'_>,
) -> Result<Forward, MigrateError> {
    let task = moving.task;
    let node = runtime.node.as_ref().ok_or(MigrateError::NotAHost)?;
    if host == runtime.host {
        return Err(MigrateError::SameHost {
            task,
            host: host.to_owned(),
        });
    }
    let addr = node
        .peer_addr(host)
        .ok_or_else(|| MigrateError::UnknownPeer {
            host: host.to_owned(),
        })?;
    // Just captured by the driver: its body is checksummed by the destination.
    let header = image::header_only(moving.image).map_err(|error| MigrateError::Rejected {
        task,
        host: runtime.host.clone(),
        reason: format!("the captured image does not parse: {error}"),
    })?;
    // The machine takes ids as inputs: the driver draws this one.
    let handoff = TaskId::random().0;
    let size = moving.image.len() as u64;
    let commands = node
        .try_step(Event::MoveRequested {
            task,
            handoff,
            to: host.to_owned(),
            size,
        })
        .map_err(|error| MigrateError::Rejected {
            task,
            host: runtime.host.clone(),
            reason: error.to_string(),
        })?;
    let inline = moving.image.len() <= MAX_INLINE_IMAGE;
    // A mid-transfer fault needs the image to travel on its own.
    #[cfg(feature = "fault-injection")]
    let inline = inline && !node.plans(FaultPoint::SourceMidTransfer);
    let offer = Offer {
        task,
        handoff,
        epoch: 0, // set from the machine's offer below
        type_name: header.type_name.clone(),
        output_type: moving.output_type.to_owned(),
        version: header.type_version,
        versions: header.versions.clone().into_iter().collect(),
        fingerprint: header.fingerprint.0,
        encoding: header.encoding.code(),
        size,
        steps: moving.steps,
        source_addr: node.addr.to_string(),
        inline_image: Vec::new(),
        tries: moving.tries,
        writer: header.isa,
        layout: header.layout,
    };
    #[cfg(feature = "fault-injection")]
    if node.fault(FaultPoint::SourceBeforeOffer).await == Injected::Corrupt {
        // Flip a bit of the body: the destination's checksum must catch it.
        let at = header.header_len + (moving.image.len() - header.header_len) / 2;
        moving.image[at] ^= 0x10;
    }
    let mut giving = Giving {
        runtime,
        node,
        addr,
        host,
        task,
        handoff,
        offer,
        inline,
        image: moving.image,
        channel: None,
        reused: false,
        deadline: Instant::now() + node.config.step_timeout,
        step: HandoffStep::Connect,
        awaiting: None,
        error: None,
        forward: None,
        outcome: None,
    };
    giving.run(commands).await
}

/// What the source waits for from the destination next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Offer,
    Prepare,
    Start,
}

/// One hand-off's conversation, from the source's side.
struct Giving<'a> {
    runtime: &'a Arc<RuntimeInner>,
    node: &'a Node,
    addr: SocketAddr,
    host: &'a str,
    task: TaskId,
    handoff: u64,
    offer: Offer,
    inline: bool,
    image: &'a mut [u8],
    channel: Option<SecureChannel>,
    /// Whether the channel was an idle one reused (it may have been closed by the peer).
    reused: bool,
    /// The deadline of the step in progress (the machine's `Offer` or `Transfer` timer).
    deadline: Instant,
    step: HandoffStep,
    awaiting: Option<Awaiting>,
    /// The failure behind the machine's `Failed` / `NotRecorded` answer, for the caller.
    error: Option<MigrateError>,
    forward: Option<Forward>,
    outcome: Option<MoveOutcome>,
}

impl Giving<'_> {
    async fn run(&mut self, commands: Vec<Command>) -> Result<Forward, MigrateError> {
        let mut queue = VecDeque::new();
        super::execute::enqueue(&mut queue, commands);
        loop {
            while let Some(command) = queue.pop_front() {
                if let Some(event) = self.execute(command).await {
                    super::execute::enqueue(&mut queue, self.node.step(event));
                }
            }
            let Some(awaiting) = self.awaiting.take() else {
                break;
            };
            if let Some(event) = self.await_answer(awaiting).await {
                super::execute::enqueue(&mut queue, self.node.step(event));
            }
        }
        // A conversation that ended cleanly leaves its channel for the next one.
        if let Some(channel) = self.channel.take() {
            self.node.park(self.addr, channel);
        }
        self.finish()
    }

    /// Carries out one command; returns the event it produced at once, if any.
    async fn execute(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Send { envelope, .. } => self.send(envelope.handoff, envelope.body).await,
            Command::ArmTimer { timer, after } => match timer.kind {
                TimerKind::ReadBack => {
                    tokio::time::sleep(after).await;
                    Some(Event::TimerFired(timer))
                }
                // The step's deadline: the awaited answer must come before it.
                _ => {
                    self.deadline = Instant::now() + after;
                    None
                }
            },
            Command::Write { write, .. } => Some(self.write_commit(write).await),
            Command::ReadMoved { epoch, handoff, .. } => {
                Some(self.read_commit(epoch, handoff).await)
            }
            Command::HandOver {
                to, epoch, handoff, ..
            } => {
                let addr = self.addr.to_string();
                self.forward = Some(Forward {
                    host: to,
                    addr,
                    epoch,
                    handoff,
                });
                None
            }
            Command::Answer { outcome, .. } => {
                self.outcome = Some(outcome);
                None
            }
            // The driver runs the task on when `hand_off` fails.
            Command::ResumeTask { .. } => None,
            other => {
                super::execute::carry_out(self.runtime, vec![other]);
                None
            }
        }
    }

    async fn send(&mut self, handoff: u64, body: Body) -> Option<Event> {
        match body {
            Body::Offer { epoch, .. } => {
                self.offer.epoch = epoch;
                self.step = HandoffStep::Offer;
                self.send_offer().await
            }
            Body::Image => {
                self.step = HandoffStep::Transfer;
                self.send_image().await
            }
            Body::Resolution(resolution) => {
                // Settling an older copy of ours that blocks this offer.
                let request = Request::Settle {
                    task: self.task,
                    handoff,
                    resolution,
                };
                let Some(channel) = self.channel.as_mut() else {
                    return Some(self.peer_lost());
                };
                match channel.send(&request).await {
                    Ok(()) => None,
                    Err(error) => Some(self.lost(HandoffStep::Offer, error)),
                }
            }
            Body::Commit => {
                #[cfg(feature = "fault-injection")]
                if self.node.fault(FaultPoint::SourceAfterCommit).await == Injected::Drop {
                    self.channel = None;
                    return None;
                }
                let channel = self.channel.as_mut()?;
                match channel.send(&Decision::Commit).await {
                    Ok(()) => {
                        self.deadline = Instant::now() + self.node.config.step_timeout;
                        self.awaiting = Some(Awaiting::Start);
                    }
                    Err(error) => {
                        tracing::warn!(task = %self.task, to = %self.host, error = %crate::ErrorChain(&error), "could not send the commit; the destination resolves the move with us");
                        self.channel = None;
                    }
                }
                None
            }
            Body::Abort => {
                // Best effort, and briefly (the peer may be stalled): a destination that misses
                // it asks us later. The conversation is over either way.
                if let Some(mut channel) = self.channel.take() {
                    let _ =
                        tokio::time::timeout(ABORT_PATIENCE, channel.send(&Decision::Abort)).await;
                }
                None
            }
            other => {
                tracing::error!(?other, "the giving side has no such message to send");
                None
            }
        }
    }

    /// Sends the offer (with a small image inside) and waits for its answer next. A reused
    /// channel that turns out closed by the peer (it restarted) is replaced by a fresh one,
    /// once: nothing of this hand-off reached anyone.
    async fn send_offer(&mut self) -> Option<Event> {
        self.offer.inline_image = if self.inline {
            self.image.to_vec()
        } else {
            Vec::new()
        };
        let request = Request::Offer(self.offer.clone());
        let mut retried = false;
        loop {
            if self.channel.is_none() {
                let connect = tokio::time::timeout(
                    self.node.channel.handshake_timeout,
                    self.node.channel(self.addr),
                )
                .await;
                match connect {
                    Ok(Ok((channel, reused))) => {
                        // Names are proven in the handshake: the host there must be the one
                        // this move is for, or the task would go to another.
                        let reached = channel.peer().node.to_string();
                        if reached != self.host {
                            self.error = Some(MigrateError::Rejected {
                                task: self.task,
                                host: self.host.to_owned(),
                                reason: format!(
                                    "the host at {} is `{reached}`, not `{}`",
                                    self.addr, self.host
                                ),
                            });
                            return Some(self.peer_lost());
                        }
                        self.channel = Some(channel);
                        self.reused = reused;
                    }
                    Ok(Err(source)) => {
                        self.error = Some(MigrateError::Connect {
                            task: self.task,
                            host: self.host.to_owned(),
                            source: Arc::new(source),
                        });
                        return Some(self.peer_lost());
                    }
                    Err(_) => {
                        let after = self.node.channel.handshake_timeout;
                        self.error = Some(self.timed_out(HandoffStep::Connect, after));
                        return Some(self.peer_lost());
                    }
                }
            }
            let channel = self.channel.as_mut()?;
            let sent = tokio::time::timeout_at(self.deadline, channel.send(&request)).await;
            match sent {
                Ok(Ok(())) => {
                    self.offer.inline_image = Vec::new();
                    self.awaiting = Some(Awaiting::Offer);
                    return None;
                }
                Ok(Err(error)) if self.reused && !retried && is_stale(&error) => {
                    self.node.forget_idle(self.addr);
                    self.channel = None;
                    retried = true;
                }
                Ok(Err(error)) => return Some(self.lost(HandoffStep::Offer, error)),
                Err(_) => return Some(self.timer_fired(HandoffStep::Offer)),
            }
        }
    }

    async fn send_image(&mut self) -> Option<Event> {
        if self.inline {
            self.awaiting = Some(Awaiting::Prepare);
            return None;
        }
        let channel = self.channel.as_mut()?;
        let image: &[u8] = self.image;
        #[cfg(feature = "fault-injection")]
        let sent = if self.node.plans(FaultPoint::SourceMidTransfer) {
            let reader = GatedReader::new(self.node, FaultPoint::SourceMidTransfer, image);
            tokio::time::timeout_at(self.deadline, channel.send_from(image.len() as u64, reader))
                .await
        } else {
            tokio::time::timeout_at(self.deadline, channel.send_bytes(image)).await
        };
        #[cfg(not(feature = "fault-injection"))]
        let sent = tokio::time::timeout_at(self.deadline, channel.send_bytes(image)).await;
        match sent {
            Ok(Ok(())) => {
                self.awaiting = Some(Awaiting::Prepare);
                None
            }
            Ok(Err(error)) => Some(self.lost(HandoffStep::Transfer, error)),
            Err(_) => Some(self.timer_fired(HandoffStep::Transfer)),
        }
    }

    /// Waits for the destination's answer, as an event for the machine.
    async fn await_answer(&mut self, awaiting: Awaiting) -> Option<Event> {
        let channel = self.channel.as_mut()?;
        let answer = match awaiting {
            Awaiting::Offer => {
                let received = tokio::time::timeout_at(
                    self.deadline,
                    channel.recv_within::<OfferAnswer>(super::MAX_CONTROL_SIZE),
                )
                .await;
                match received {
                    Ok(Ok(OfferAnswer::Accept)) => Body::Accept,
                    Ok(Ok(OfferAnswer::Refuse(refusal))) => Body::Refuse(refusal),
                    Ok(Err(error)) => return Some(self.lost(HandoffStep::Offer, error)),
                    Err(_) => return Some(self.timer_fired(HandoffStep::Offer)),
                }
            }
            Awaiting::Prepare => {
                self.step = HandoffStep::Prepare;
                let received = tokio::time::timeout_at(
                    self.deadline,
                    channel.recv_within::<PrepareAnswer>(super::MAX_CONTROL_SIZE),
                )
                .await;
                match received {
                    Ok(Ok(PrepareAnswer::Prepared)) => {
                        #[cfg(feature = "fault-injection")]
                        if self.node.fault(FaultPoint::SourceAfterPrepared).await == Injected::Drop
                        {
                            self.error = Some(MigrateError::Injected {
                                task: self.task,
                                step: HandoffStep::Prepare,
                            });
                            return Some(self.peer_lost());
                        }
                        Body::Prepared
                    }
                    Ok(Ok(PrepareAnswer::Failed(reason))) => Body::PrepareFailed(reason),
                    Ok(Err(error)) => return Some(self.lost(HandoffStep::Prepare, error)),
                    Err(_) => return Some(self.timer_fired(HandoffStep::Prepare)),
                }
            }
            Awaiting::Start => {
                let received = tokio::time::timeout_at(
                    self.deadline,
                    channel.recv_within::<StartAnswer>(super::MAX_CONTROL_SIZE),
                )
                .await;
                let (task, to) = (self.task, self.host);
                match received {
                    Ok(Ok(StartAnswer::Started)) => Body::Started,
                    Ok(Ok(StartAnswer::Deferred(reason))) => {
                        tracing::warn!(%task, %to, %reason, "the destination will start the task later");
                        Body::Deferred
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%task, %to, error = %crate::ErrorChain(&error), "no start confirmation; the destination resolves the move with us");
                        self.channel = None;
                        return None;
                    }
                    Err(_) => {
                        tracing::warn!(%task, %to, "no start confirmation in time; the destination resolves the move with us");
                        self.channel = None;
                        return None;
                    }
                }
            }
        };
        Some(self.received(answer))
    }

    /// Writes the commit record. A failed write may still have left the record (a store can
    /// fail after making it visible): the machine then has it read back.
    async fn write_commit(&mut self, write: Write) -> Event {
        let result = match (&self.runtime.catalog, &write) {
            (Some(catalog), Write::Moved { epoch, handoff, to }) => {
                self.step = HandoffStep::Commit;
                let record = EpochRecord::Moved {
                    to: to.clone(),
                    to_addr: self.addr.to_string(),
                    handoff: *handoff,
                };
                match catalog.put_epoch_record(self.task, *epoch, &record).await {
                    Ok(()) => WriteResult::Durable,
                    Err(error) => {
                        tracing::error!(task = %self.task, error = %crate::ErrorChain(&error), "the commit record's write failed; checking whether it landed");
                        self.error = Some(MigrateError::Store {
                            task: self.task,
                            host: self.host.to_owned(),
                            source: Arc::new(error),
                        });
                        WriteResult::Failed
                    }
                }
            }
            // Without a store, nothing outlives the process: the decision is in memory.
            (None, _) => WriteResult::Durable,
            (Some(_), other) => {
                tracing::error!(?other, "the giving side writes no such record");
                WriteResult::Failed
            }
        };
        Event::Wrote {
            task: self.task,
            write,
            result,
        }
    }

    async fn read_commit(&mut self, epoch: u64, handoff: u64) -> Event {
        let result = match &self.runtime.catalog {
            None => ReadBack::Absent,
            Some(catalog) => match catalog.epoch_record(self.task, epoch, "moved").await {
                Ok(Some(EpochRecord::Moved { handoff: h, .. })) if h == handoff => ReadBack::Landed,
                Ok(_) => ReadBack::Absent,
                Err(error) => {
                    tracing::error!(task = %self.task, error = %crate::ErrorChain(&error), "cannot read the commit record yet; the task waits");
                    ReadBack::Failed
                }
            },
        };
        if result == ReadBack::Landed {
            tracing::warn!(task = %self.task, "the commit record landed despite the error; the move stands");
        }
        Event::ReadBack {
            task: self.task,
            handoff,
            result,
        }
    }

    fn received(&self, body: Body) -> Event {
        Event::Received {
            from: self.host.to_owned(),
            envelope: crate::handoff::Envelope {
                task: self.task,
                handoff: self.handoff,
                body,
            },
        }
    }

    fn lost(&mut self, step: HandoffStep, source: ChannelError) -> Event {
        self.error = Some(MigrateError::Channel {
            task: self.task,
            host: self.host.to_owned(),
            step,
            source: Arc::new(source),
        });
        self.peer_lost()
    }

    fn peer_lost(&mut self) -> Event {
        self.channel = None;
        Event::PeerLost {
            peer: self.host.to_owned(),
            task: self.task,
            handoff: self.handoff,
        }
    }

    fn timer_fired(&mut self, step: HandoffStep) -> Event {
        let after = self.node.config.step_timeout;
        self.error = Some(self.timed_out(step, after));
        // The channel stays for the `Abort` the machine sends next (then it is dropped).
        let kind = match step {
            HandoffStep::Connect | HandoffStep::Offer => TimerKind::Offer,
            _ => TimerKind::Transfer,
        };
        Event::TimerFired(Timer {
            task: self.task,
            handoff: self.handoff,
            kind,
        })
    }

    fn timed_out(&self, step: HandoffStep, after: Duration) -> MigrateError {
        MigrateError::Timeout {
            task: self.task,
            host: self.host.to_owned(),
            step,
            after,
        }
    }

    /// The machine's answer to the mover, as the caller's result.
    fn finish(&mut self) -> Result<Forward, MigrateError> {
        let (task, host) = (self.task, self.host.to_owned());
        match self.outcome.take() {
            Some(MoveOutcome::Moved) => {
                tracing::info!(%task, to = %host, "committed the move");
                self.forward.take().ok_or(MigrateError::Rejected {
                    task,
                    host,
                    reason: "committed without a forwarding entry".into(),
                })
            }
            Some(MoveOutcome::Refused(reason)) => Err(MigrateError::Refused { task, host, reason }),
            Some(MoveOutcome::Rejected(reason)) => {
                Err(MigrateError::Rejected { task, host, reason })
            }
            Some(MoveOutcome::Failed(reason)) => Err(self
                .error
                .take()
                .unwrap_or(MigrateError::Rejected { task, host, reason })),
            Some(MoveOutcome::NotRecorded) | None => {
                Err(self.error.take().unwrap_or(MigrateError::Rejected {
                    task,
                    host,
                    reason: "the hand-off ended without a decision".into(),
                }))
            }
        }
    }
}

/// A reused channel the peer closed while it sat idle.
fn is_stale(error: &ChannelError) -> bool {
    matches!(
        error,
        ChannelError::Closed { .. } | ChannelError::UnexpectedEof | ChannelError::Io { .. }
    )
}
