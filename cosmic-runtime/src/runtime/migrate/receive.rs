//! The destination's driver of a hand-off, on the channel the offer came on. What does not
//! depend on the task's history here is judged first (type, versions, schema, encoding,
//! size); the rest is the hand-off machine's to decide (`crate::handoff`, receiving side):
//! this file carries out its commands (answer the offer, take and check the image, record the
//! copy and its ownership, start the task) and feeds back what happened. Commands that outlive
//! the conversation (asking the source after a lost connection, retries) go to `execute.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::arrival::{self, Arrival};
use super::copy_error::CopyError;
#[cfg(feature = "fault-injection")]
use super::fault::{FaultPoint, Injected};
use super::image_sink::{self, Received};
use super::node::Node;
use crate::checkpoint::CheckpointKey;
use crate::handoff::{Body, Command, Envelope, Event, Phase, Timer, TimerKind, Write, WriteResult};
use crate::image::{Encoding, ImageHeader, RestoreError};
use crate::runtime::task_types::TaskType;
use crate::runtime::RuntimeInner;
use crate::state::Fingerprint;
use crate::transport::protocol::{
    Decision, Offer, OfferAnswer, PrepareAnswer, Refusal, StartAnswer,
};
use crate::transport::{ChannelError, SecureChannel};

/// Images up to this size are decoded on the async worker that received them.
const INLINE_DECODE_LIMIT: usize = 256 << 10;

/// The destination's half of a hand-off, from the offer to the start of the task (or to the
/// point where it is in doubt and settled by asking the source).
pub(crate) async fn receive(
    runtime: &Arc<RuntimeInner>,
    channel: &mut SecureChannel,
    mut offer: Offer,
) -> Result<(), ChannelError> {
    let Some(node) = &runtime.node else {
        return Ok(());
    };
    #[cfg(feature = "fault-injection")]
    if node.fault(FaultPoint::DestAfterOffer).await == Injected::Drop {
        return Err(ChannelError::UnexpectedEof);
    }
    let kind = match judge(runtime, node, &offer) {
        Ok(kind) => kind,
        Err(refusal) => {
            tracing::info!(%refusal, "refused an offer");
            return channel.send(&OfferAnswer::Refuse(refusal)).await;
        }
    };
    // A task that just left this host may still be tidying up here (retiring its
    // checkpoints, which would delete the returning copy's): give it a moment. Only then: an
    // offer of a task that runs here is the machine's to refuse at once.
    let leaving_deadline = Instant::now() + node.config.step_timeout / 2;
    while runtime.running().contains(&offer.task)
        && matches!(node.phase(offer.task), Some(Phase::Moved { .. }))
        && Instant::now() < leaving_deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    if runtime.running().contains(&offer.task)
        && matches!(node.phase(offer.task), Some(Phase::Moved { .. }))
    {
        // Its retirement would delete the returning copy's image: not while it runs.
        let refusal = Refusal::Unavailable {
            reason: "the task is still leaving this host".into(),
        };
        return channel.send(&OfferAnswer::Refuse(refusal)).await;
    }
    let from = channel.peer().node.to_string();
    let event = Event::Received {
        from: from.clone(),
        envelope: Envelope {
            task: offer.task,
            handoff: offer.handoff,
            body: Body::Offer {
                epoch: offer.epoch,
                size: offer.size,
            },
        },
    };
    let commands = match node.try_step(event) {
        Ok(commands) => commands,
        Err(error) => {
            let refusal = Refusal::Unavailable {
                reason: error.to_string(),
            };
            return channel.send(&OfferAnswer::Refuse(refusal)).await;
        }
    };
    let inline_image = std::mem::take(&mut offer.inline_image);
    let mut taking = Taking {
        runtime,
        node,
        channel,
        from,
        offer,
        kind,
        inline_image,
        image: None,
        deadline: Instant::now() + node.config.step_timeout,
        awaiting: None,
        error: None,
    };
    taking.run(commands).await
}

/// Judges what does not depend on the task's history here, before any byte of the image
/// moves: the machine judges the rest (epochs, tombstones, copies in doubt, capacity).
fn judge(runtime: &Arc<RuntimeInner>, node: &Node, offer: &Offer) -> Result<TaskType, Refusal> {
    if runtime.is_shutting_down() {
        return Err(Refusal::Unavailable {
            reason: "shutting down".into(),
        });
    }
    let encoding = Encoding::from_code(offer.encoding).ok_or(Refusal::UnsupportedEncoding {
        encoding: offer.encoding,
    })?;
    if offer.size > node.config.max_image_size {
        return Err(Refusal::TooLarge {
            size: offer.size,
            limit: node.config.max_image_size,
        });
    }
    let kind = runtime
        .types
        .get(&offer.type_name)
        .ok_or_else(|| Refusal::UnknownType {
            type_name: offer.type_name.clone(),
        })?;
    let header = ImageHeader {
        encoding,
        isa: offer.writer,
        type_name: offer.type_name.clone(),
        type_version: offer.version,
        fingerprint: Fingerprint(offer.fingerprint),
        versions: offer.versions.iter().cloned().collect(),
        layout: offer.layout,
        header_len: 0,
        body_len: 0,
    };
    (kind.check)(&header).map_err(|error| match error {
        RestoreError::VersionTooNew { .. } => Refusal::VersionTooNew {
            type_name: offer.type_name.clone(),
            offered: offer.version,
            known: (kind.version)(),
        },
        RestoreError::NativeMismatch { mismatch, .. } => Refusal::NativeMismatch {
            reason: mismatch.to_string(),
        },
        other => Refusal::SchemaMismatch {
            type_name: offer.type_name.clone(),
            detail: crate::ErrorChain(&other).to_string(),
        },
    })?;
    Ok(kind)
}

fn header_matches(header: &ImageHeader, offer: &Offer) -> bool {
    header.type_name == offer.type_name
        && header.encoding.code() == offer.encoding
        && header.isa == offer.writer
        && header.layout == offer.layout
        && header.type_version == offer.version
        && header.fingerprint.0 == offer.fingerprint
        && header.image_len() == offer.size
}

/// What the destination waits for from the source next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Image,
    Decision,
}

/// One hand-off's conversation, from the destination's side.
struct Taking<'a> {
    runtime: &'a Arc<RuntimeInner>,
    node: &'a Node,
    channel: &'a mut SecureChannel,
    from: String,
    offer: Offer,
    kind: TaskType,
    inline_image: Vec<u8>,
    /// The verified image, until it is recorded.
    image: Option<bytes::Bytes>,
    /// The deadline of the step in progress (the machine's `Image` or `Decision` timer).
    deadline: Instant,
    awaiting: Option<Awaiting>,
    /// A channel failure that ended the conversation.
    error: Option<ChannelError>,
}

impl Taking<'_> {
    async fn run(&mut self, commands: Vec<Command>) -> Result<(), ChannelError> {
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
            if let Some(event) = self.await_source(awaiting).await {
                super::execute::enqueue(&mut queue, self.node.step(event));
            }
        }
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn execute(&mut self, command: Command) -> Option<Event> {
        let task = self.offer.task;
        match command {
            Command::Send { to, envelope } if to == self.from && self.error.is_none() => {
                self.send(envelope).await
            }
            Command::ArmTimer { timer, after }
                if matches!(timer.kind, TimerKind::Image | TimerKind::Decision) =>
            {
                self.deadline = Instant::now() + after;
                None
            }
            Command::Write {
                write: write @ Write::Prepared { .. },
                ..
            } => Some(self.record_prepared(write).await),
            Command::Write {
                write: write @ Write::Owner { handoff, .. },
                ..
            } => {
                let result = arrival::write_owner(self.runtime, task, handoff).await;
                Some(Event::Wrote {
                    task,
                    write,
                    result,
                })
            }
            Command::StartTask { handoff, .. } => {
                arrival::start(self.runtime, task, handoff);
                #[cfg(feature = "fault-injection")]
                if self.node.fault(FaultPoint::DestAfterStart).await == Injected::Drop {
                    self.error = Some(ChannelError::UnexpectedEof);
                }
                None
            }
            other => {
                super::execute::carry_out(self.runtime, vec![other]);
                None
            }
        }
    }

    async fn send(&mut self, envelope: Envelope) -> Option<Event> {
        let sent = match envelope.body {
            Body::Accept => {
                let sent = self.channel.send(&OfferAnswer::Accept).await;
                self.awaiting = Some(Awaiting::Image);
                sent
            }
            Body::Refuse(refusal) => {
                tracing::info!(%refusal, "refused an offer");
                self.channel.send(&OfferAnswer::Refuse(refusal)).await
            }
            Body::Prepared => {
                #[cfg(feature = "fault-injection")]
                if self.node.fault(FaultPoint::DestAfterPrepare).await == Injected::Drop {
                    self.error = Some(ChannelError::UnexpectedEof);
                    return Some(self.peer_lost());
                }
                let sent = self.channel.send(&PrepareAnswer::Prepared).await;
                self.awaiting = Some(Awaiting::Decision);
                sent
            }
            Body::PrepareFailed(reason) => self.channel.send(&PrepareAnswer::Failed(reason)).await,
            Body::Started => self.channel.send(&StartAnswer::Started).await,
            Body::Deferred => {
                let reason = "its ownership could not be recorded yet; it starts once it is";
                self.channel
                    .send(&StartAnswer::Deferred(reason.into()))
                    .await
            }
            other => {
                tracing::error!(?other, "the receiving side has no such message to send");
                Ok(())
            }
        };
        match sent {
            Ok(()) => None,
            Err(error) => {
                self.awaiting = None;
                self.error = Some(error);
                Some(self.peer_lost())
            }
        }
    }

    /// Waits for the source, as an event for the machine.
    async fn await_source(&mut self, awaiting: Awaiting) -> Option<Event> {
        match awaiting {
            Awaiting::Image => self.take_image().await,
            Awaiting::Decision => {
                let received = tokio::time::timeout_at(
                    self.deadline,
                    self.channel
                        .recv_within::<Decision>(super::MAX_CONTROL_SIZE),
                )
                .await;
                match received {
                    Ok(Ok(decision)) => {
                        #[cfg(feature = "fault-injection")]
                        if decision == Decision::Commit
                            && self.node.fault(FaultPoint::DestAfterCommit).await == Injected::Drop
                        {
                            self.error = Some(ChannelError::UnexpectedEof);
                            return Some(self.peer_lost());
                        }
                        let body = match decision {
                            Decision::Commit => Body::Commit,
                            Decision::Abort => Body::Abort,
                        };
                        Some(self.received(body))
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(error = %crate::ErrorChain(&error), "lost the source before its decision; resolving");
                        self.error = Some(error);
                        Some(self.peer_lost())
                    }
                    Err(_) => {
                        tracing::warn!("no decision from the source in time; resolving");
                        // A late decision must not be read as the next request: this
                        // channel's conversation is over.
                        self.error = Some(ChannelError::UnexpectedEof);
                        Some(self.timer_fired(TimerKind::Decision))
                    }
                }
            }
        }
    }

    /// Takes the image (inside the offer, or streamed after it), verifies and decodes it.
    async fn take_image(&mut self) -> Option<Event> {
        let (task, handoff, size) = (self.offer.task, self.offer.handoff, self.offer.size);
        let image = if self.inline_image.is_empty() {
            match image_sink::receive(self.node, self.channel, size, self.deadline).await {
                Ok(Received::Image(image)) => Ok(image),
                Ok(Received::Wrong { received }) => Err(CopyError::WrongLength {
                    received,
                    announced: size,
                }
                .to_string()),
                Ok(Received::TooSlow(cut)) => {
                    tracing::warn!(reason = %cut, "cut off a slow transfer");
                    self.error = Some(ChannelError::UnexpectedEof);
                    return Some(self.timer_fired(TimerKind::Image));
                }
                Err(error) => {
                    self.error = Some(error);
                    return Some(self.peer_lost());
                }
            }
        } else if self.inline_image.len() as u64 == size {
            Ok(bytes::Bytes::from(std::mem::take(&mut self.inline_image)))
        } else {
            Err(CopyError::WrongLength {
                received: self.inline_image.len() as u64,
                announced: size,
            }
            .to_string())
        };
        let result = match image {
            Ok(image) => self
                .check(image)
                .await
                .map_err(|error| crate::ErrorChain(&error).to_string()),
            Err(reason) => Err(reason),
        };
        Some(Event::ImageChecked {
            task,
            handoff,
            result,
        })
    }

    /// Verifies and decodes the image; keeps the decoded copy for `StartTask`.
    async fn check(&mut self, image: bytes::Bytes) -> Result<(), CopyError> {
        // Large states take a while to verify and decode: off the async workers. Small ones
        // are decoded here, which saves two thread hand-offs (most of a small move's latency).
        let decode = self.kind.prepare;
        let decoded = if image.len() <= INLINE_DECODE_LIMIT {
            Ok(decode(&image))
        } else {
            let image = image.clone();
            tokio::task::spawn_blocking(move || decode(&image)).await
        };
        let start = match decoded {
            Ok(Ok((header, start))) if header_matches(&header, &self.offer) => start,
            Ok(Ok(_)) => return Err(CopyError::NotAsOffered),
            Ok(Err(error)) => {
                tracing::warn!(error = %crate::ErrorChain(&error), "refused a damaged image");
                return Err(CopyError::Undecodable(Arc::new(error)));
            }
            Err(_) => return Err(CopyError::DecodeAborted),
        };
        let arrival = Arrival {
            handoff: self.offer.handoff,
            epoch: self.offer.epoch,
            from: self.from.clone(),
            from_addr: self.offer.source_addr.clone(),
            type_name: self.offer.type_name.clone(),
            output_type: self.offer.output_type.clone(),
            checkpoint: CheckpointKey {
                seq: 0,
                steps: self.offer.steps,
            },
            start: Ok(start),
        };
        self.node
            .copies()
            .insert((self.offer.task, self.offer.handoff), arrival);
        self.image = Some(image);
        Ok(())
    }

    async fn record_prepared(&mut self, write: Write) -> Event {
        let (task, handoff) = (self.offer.task, self.offer.handoff);
        let image = self.image.take().unwrap_or_default();
        let taken = self.node.copies().remove(&(task, handoff));
        let result = match taken {
            Some(mut arrival) => {
                let mut recorded =
                    arrival::record_prepared(self.runtime, task, &mut arrival, image).await;
                if let (Ok(()), Some(catalog), true) =
                    (&recorded, &self.runtime.catalog, self.offer.tries > 0)
                {
                    // The task's count of tries after panics continues here. Written with the
                    // copy: if the hand-off aborts, the next start removes it with the copy.
                    let attempts = crate::checkpoint::Attempts {
                        tries: self.offer.tries,
                        ..Default::default()
                    };
                    self.runtime.mark_attempts(task);
                    recorded = catalog.put_attempts(task, &attempts).await;
                }
                self.node.copies().insert((task, handoff), arrival);
                match recorded {
                    Ok(()) => WriteResult::Durable,
                    Err(error) => {
                        tracing::error!(error = %crate::ErrorChain(&error), "could not record the prepared copy");
                        WriteResult::Failed
                    }
                }
            }
            None => WriteResult::Failed,
        };
        Event::Wrote {
            task,
            write,
            result,
        }
    }

    fn received(&self, body: Body) -> Event {
        Event::Received {
            from: self.from.clone(),
            envelope: Envelope {
                task: self.offer.task,
                handoff: self.offer.handoff,
                body,
            },
        }
    }

    fn peer_lost(&self) -> Event {
        Event::PeerLost {
            peer: self.from.clone(),
            task: self.offer.task,
            handoff: self.offer.handoff,
        }
    }

    fn timer_fired(&self, kind: TimerKind) -> Event {
        Event::TimerFired(Timer {
            task: self.offer.task,
            handoff: self.offer.handoff,
            kind,
        })
    }
}
