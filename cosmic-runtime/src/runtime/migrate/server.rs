//! The host's listening side: accepts channels from peers and answers their requests — offers
//! of tasks (the destination's half of the hand-off), resolutions of hand-offs in doubt, and
//! questions about where tasks are.

use std::sync::{Arc, Weak};

use tokio::io::AsyncWrite;
use tracing::Instrument;

use super::arrival::{self, Arrival};
#[cfg(feature = "fault-injection")]
use super::fault::{FaultPoint, GatedWriter, Injected};
use super::{follow, resolve};
use crate::checkpoint::CheckpointKey;
use crate::image::{Encoding, ImageHeader, Isa, RestoreError};
use crate::runtime::RuntimeInner;
use crate::state::Fingerprint;
use crate::task::TaskId;
use crate::transport::protocol::{
    Decision, Offer, OfferAnswer, PrepareAnswer, Refusal, Request, Resolution, StartAnswer,
};
use crate::transport::{ChannelError, SecureChannel, SecureListener};

/// Images up to this size are decoded on the async worker that received them.
const INLINE_DECODE_LIMIT: usize = 256 << 10;

/// How long a peer's connection may sit between conversations before it is closed (peers
/// reconnect when they need to).
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Accepts peers until the runtime is gone.
pub(crate) async fn listen(runtime: Weak<RuntimeInner>, mut listener: SecureListener) {
    loop {
        match listener.accept().await {
            Ok((channel, peer)) => {
                tracing::debug!(peer = %peer.node, addr = %peer.addr, "peer connected");
                tokio::spawn(serve(runtime.clone(), channel));
            }
            Err(error) => {
                tracing::error!(%error, "accepting peers failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers one peer's requests, one conversation at a time, until it hangs up.
async fn serve(runtime: Weak<RuntimeInner>, mut channel: SecureChannel) {
    loop {
        let request = match tokio::time::timeout(
            IDLE_TIMEOUT,
            channel.recv_within::<Request>(super::MAX_CONTROL_SIZE),
        )
        .await
        {
            Err(_) => {
                tracing::debug!(peer = %channel.peer().node, "closing an idle peer connection");
                let _ = channel.close().await;
                return;
            }
            Ok(Ok(request)) => request,
            Ok(Err(error)) => match error {
                ChannelError::Closed { .. } | ChannelError::UnexpectedEof => return,
                error => {
                    tracing::warn!(peer = %channel.peer().node, %error, "ending a peer's connection");
                    return;
                }
            },
        };
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        let result = match request {
            Request::Offer(offer) => {
                let span = tracing::info_span!(
                    "arrival",
                    task = %offer.task,
                    from = %channel.peer().node,
                    epoch = offer.epoch
                );
                receive(&runtime, &mut channel, offer)
                    .instrument(span)
                    .await
            }
            Request::Resolve { task, handoff } => {
                let answer = resolution(&runtime, task, handoff).await;
                channel.send(&answer).await
            }
            Request::Locate { task } => channel.send(&follow::whereabouts(&runtime, task)).await,
            Request::AwaitOutcome { task } => {
                let answer = follow::await_change(&runtime, task).await;
                channel.send(&answer).await
            }
        };
        if let Err(error) = result {
            tracing::warn!(peer = %channel.peer().node, %error, "a conversation with a peer failed");
            return;
        }
    }
}

/// How hand-off `handoff` of `task` ended, from the source's point of view. The order of the
/// checks matters: a hand-off leaves `deciding` only after its commit record is durable (or it
/// aborted for good), so "not deciding and no record" means it never commits.
async fn resolution(runtime: &Arc<RuntimeInner>, task: TaskId, handoff: u64) -> Resolution {
    let Some(node) = &runtime.node else {
        return Resolution::Aborted;
    };
    if node.deciding().contains(&handoff) {
        return Resolution::Pending;
    }
    if node.has_committed(handoff) {
        return Resolution::Committed;
    }
    if let Some(catalog) = &runtime.catalog {
        match catalog.epoch_records(task).await {
            Ok(records) => {
                let committed = records.iter().any(|(_, record)| {
                    matches!(record, crate::checkpoint::EpochRecord::Moved { handoff: h, .. } if *h == handoff)
                });
                if committed {
                    return Resolution::Committed;
                }
            }
            // Cannot tell: let the destination ask again rather than guess.
            Err(error) => {
                tracing::warn!(%task, %error, "cannot read epoch records to resolve a hand-off");
                return Resolution::Pending;
            }
        }
    }
    Resolution::Aborted
}

/// Judges an offer before any byte of the image moves.
fn judge(
    runtime: &Arc<RuntimeInner>,
    offer: &Offer,
) -> Result<crate::runtime::task_types::TaskType, Refusal> {
    let node = runtime.node.as_ref().ok_or_else(|| Refusal::Unavailable {
        reason: "not a host".into(),
    })?;
    if runtime.is_shutting_down() {
        return Err(Refusal::Unavailable {
            reason: "shutting down".into(),
        });
    }
    if Encoding::from_code(offer.encoding) != Some(Encoding::Portable) {
        return Err(Refusal::UnsupportedEncoding {
            encoding: offer.encoding,
        });
    }
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
        encoding: Encoding::Portable,
        isa: Isa::host(),
        type_name: offer.type_name.clone(),
        type_version: offer.version,
        fingerprint: Fingerprint(offer.fingerprint),
        versions: offer.versions.iter().cloned().collect(),
        header_len: 0,
        body_len: 0,
    };
    (kind.check)(&header).map_err(|error| match error {
        RestoreError::VersionTooNew { .. } => Refusal::VersionTooNew {
            type_name: offer.type_name.clone(),
            offered: offer.version,
            known: (kind.version)(),
        },
        other => Refusal::SchemaMismatch {
            type_name: offer.type_name.clone(),
            detail: other.to_string(),
        },
    })?;
    if let Some(shared) = runtime.task(offer.task) {
        let forward = shared.forward();
        let here = forward.is_none() && !shared.status().is_finished();
        let known = forward.map_or(shared.epoch(), |f| f.epoch);
        if here || known >= offer.epoch {
            return Err(Refusal::StaleEpoch {
                offered: offer.epoch,
                known,
            });
        }
    }
    if let Some(arrival) = node.arriving().prepared.get(&offer.task) {
        if arrival.epoch > offer.epoch {
            return Err(Refusal::StaleEpoch {
                offered: offer.epoch,
                known: arrival.epoch,
            });
        }
    }
    Ok(kind)
}

const STILL_LEAVING: &str = "the task is still leaving this host";

/// Judges the offer, then counts it against the capacity and claims the task under one lock,
/// so that concurrent offers cannot overfill the host. One conversation or resolver at a time
/// acts on a task's arrival, and none while a driver of the task still runs here.
fn claim_offer<'a>(
    runtime: &Arc<RuntimeInner>,
    node: &'a super::node::Node,
    offer: &Offer,
) -> Result<(crate::runtime::task_types::TaskType, super::node::Claim<'a>), Refusal> {
    let task = offer.task;
    let kind = judge(runtime, offer)?;
    let mut arrivals = node.arriving();
    let running = runtime.running();
    if arrivals.is_claimed(task) {
        return Err(Refusal::Unavailable {
            reason: "another hand-off of this task is in progress here".into(),
        });
    }
    if running.contains(&task) {
        return Err(Refusal::Unavailable {
            reason: STILL_LEAVING.into(),
        });
    }
    let arriving: std::collections::HashSet<TaskId> =
        arrivals.ids().filter(|id| !running.contains(id)).collect();
    let busy = running.len() + arriving.len();
    drop(running);
    if !arriving.contains(&task) && busy >= node.config.max_tasks {
        return Err(Refusal::NoCapacity { running: busy });
    }
    Ok((kind, node.claim(&mut arrivals, task)))
}

/// The destination's half of a hand-off, from the offer to the start of the task.
async fn receive(
    runtime: &Arc<RuntimeInner>,
    channel: &mut SecureChannel,
    mut offer: Offer,
) -> Result<(), ChannelError> {
    let Some(node) = &runtime.node else {
        return Ok(());
    };
    let task = offer.task;
    let from = channel.peer().node.to_string();
    #[cfg(feature = "fault-injection")]
    if node.fault(FaultPoint::DestAfterOffer).await == Injected::Drop {
        return Err(ChannelError::UnexpectedEof);
    }
    // A task that just left this host may still be tidying up here (retiring its
    // checkpoints, which would delete the returning copy's): give it a moment.
    let leaving_deadline = std::time::Instant::now() + node.config.step_timeout / 2;
    let judged = loop {
        match claim_offer(runtime, node, &offer) {
            Err(Refusal::Unavailable { ref reason })
                if reason == STILL_LEAVING && std::time::Instant::now() < leaving_deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            judged => break judged,
        }
    };
    let (kind, _claim) = match judged {
        Ok(judged) => judged,
        Err(refusal) => {
            tracing::info!(%refusal, "refused an offer");
            return channel.send(&OfferAnswer::Refuse(refusal)).await;
        }
    };
    channel.send(&OfferAnswer::Accept).await?;
    let image = if offer.inline_image.is_empty() {
        receive_image(node, channel, offer.size).await?
    } else if offer.inline_image.len() as u64 == offer.size {
        Ok(bytes::Bytes::from(std::mem::take(&mut offer.inline_image)))
    } else {
        Err(format!(
            "inline image of {} bytes, {} announced",
            offer.inline_image.len(),
            offer.size
        ))
    };
    let image = match image {
        Ok(image) => image,
        Err(reason) => return channel.send(&PrepareAnswer::Failed(reason)).await,
    };

    // Large states take a while to verify and decode: off the async workers. Small ones are
    // decoded here, which saves two thread hand-offs (most of a small move's latency).
    let decode = kind.prepare;
    let decoded = if image.len() <= INLINE_DECODE_LIMIT {
        Ok(decode(&image))
    } else {
        let image = image.clone();
        tokio::task::spawn_blocking(move || decode(&image)).await
    };
    let start = match decoded {
        Ok(Ok((header, start))) if header_matches(&header, &offer) => start,
        Ok(Ok(_)) => {
            let reason = "the image does not match the offer".to_owned();
            return channel.send(&PrepareAnswer::Failed(reason)).await;
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "refused a damaged image");
            let reason = super::error::rejected_image(&error);
            return channel.send(&PrepareAnswer::Failed(reason)).await;
        }
        Err(join) => {
            let reason = format!("decoding the image failed: {join}");
            return channel.send(&PrepareAnswer::Failed(reason)).await;
        }
    };

    let mut arrival = Arrival {
        handoff: offer.handoff,
        epoch: offer.epoch,
        from: from.clone(),
        from_addr: offer.source_addr.clone(),
        type_name: offer.type_name.clone(),
        output_type: offer.output_type.clone(),
        checkpoint: CheckpointKey {
            seq: 0,
            steps: offer.steps,
        },
        start,
    };
    if let Some(catalog) = &runtime.catalog {
        // The copy is the task's newest checkpoint here, numbered after any image of it.
        let recorded = async {
            let newest = catalog.checkpoints(task).await?.last().map_or(0, |k| k.seq);
            arrival.checkpoint.seq = newest + 1;
            catalog
                .put_checkpoint_image(task, arrival.checkpoint, image)
                .await?;
            catalog
                .put_epoch_record(task, offer.epoch, &arrival.prepared_record())
                .await
        }
        .await;
        if let Err(error) = recorded {
            tracing::error!(%error, "could not record the prepared copy");
            let reason = format!("could not record the copy: {error}");
            return channel.send(&PrepareAnswer::Failed(reason)).await;
        }
    } else {
        drop(image);
    }
    // A newer offer replaces an older arrival of the same task: its source aborted that one.
    let replaced = node.arriving().prepared.insert(task, arrival);
    if let Some(replaced) = replaced {
        // An older arrival still in doubt: its source aborted it (a source offers the task
        // again, or the task moved on, only after that). Our prepared record is durable, so
        // its copy, and its record if at another epoch, can go.
        tracing::info!(
            handoff = replaced.handoff,
            "a newer offer replaced an undecided arrival"
        );
        if let Some(catalog) = &runtime.catalog {
            let removed = async {
                if replaced.epoch != offer.epoch {
                    catalog
                        .remove_prepared(task, replaced.epoch, replaced.handoff)
                        .await?;
                }
                catalog.delete_checkpoint(task, replaced.checkpoint).await
            }
            .await;
            if let Err(error) = removed {
                tracing::warn!(%error, "could not remove the replaced copy");
            }
        }
    }
    #[cfg(feature = "fault-injection")]
    if node.fault(FaultPoint::DestAfterPrepare).await == Injected::Drop {
        resolve::spawn(Arc::downgrade(runtime), task, offer.handoff);
        return Err(ChannelError::UnexpectedEof);
    }
    let decision = async {
        channel.send(&PrepareAnswer::Prepared).await?;
        match tokio::time::timeout(
            node.config.step_timeout,
            channel.recv_within::<Decision>(super::MAX_CONTROL_SIZE),
        )
        .await
        {
            Ok(decision) => decision,
            Err(_) => Err(ChannelError::UnexpectedEof),
        }
    }
    .await;
    let decision = match decision {
        Ok(decision) => decision,
        Err(error) => {
            // In doubt: the source may have committed. Ask it until it says.
            tracing::warn!(%error, "lost the source before its decision; resolving");
            resolve::spawn(Arc::downgrade(runtime), task, offer.handoff);
            return Err(error);
        }
    };
    let Some((arrival, _starting)) = node.take_arrival(task, offer.handoff) else {
        // A resolver settled it first (it asked the source after a delay in this
        // conversation): say what became of it.
        if decision == Decision::Commit {
            let answer = if runtime.task(task).is_some_and(|t| t.forward().is_none()) {
                StartAnswer::Started
            } else {
                tracing::error!("commit for an arrival that is gone");
                StartAnswer::Deferred("the prepared copy is no longer here".into())
            };
            return channel.send(&answer).await;
        }
        return Ok(());
    };
    match decision {
        Decision::Abort => {
            arrival::abort(runtime, task, arrival).await;
            Ok(())
        }
        Decision::Commit => {
            #[cfg(feature = "fault-injection")]
            if node.fault(FaultPoint::DestAfterCommit).await == Injected::Drop {
                node.arriving().prepared.insert(task, arrival);
                resolve::spawn(Arc::downgrade(runtime), task, offer.handoff);
                return Err(ChannelError::UnexpectedEof);
            }
            match arrival::commit(runtime, task, arrival).await {
                Ok(_) => {
                    #[cfg(feature = "fault-injection")]
                    if node.fault(FaultPoint::DestAfterStart).await == Injected::Drop {
                        return Err(ChannelError::UnexpectedEof);
                    }
                    channel.send(&StartAnswer::Started).await
                }
                Err((arrival, error)) => {
                    // The source committed; our copy stays prepared, and the resolver
                    // retries recording it.
                    tracing::error!(%error, "could not record the ownership of an arrived task");
                    node.arriving().prepared.insert(task, arrival);
                    resolve::spawn(Arc::downgrade(runtime), task, offer.handoff);
                    channel
                        .send(&StartAnswer::Deferred(error.to_string()))
                        .await
                }
            }
        }
    }
}

/// Receives an image streamed after the offer. The size was checked against our limit in
/// `judge`; the channel checks the announced length against its own before allocating, and
/// the sink refuses anything beyond the offered size. `Err(reason)` is an image that arrived
/// but is not what was offered; a channel error ends the conversation.
async fn receive_image(
    node: &super::node::Node,
    channel: &mut SecureChannel,
    size: u64,
) -> Result<Result<bytes::Bytes, String>, ChannelError> {
    let mut sink = ImageSink::new(size);
    let received = {
        #[cfg(feature = "fault-injection")]
        let mut sink = GatedWriter::new(node, FaultPoint::DestMidTransfer, size, &mut sink);
        tokio::time::timeout(node.config.deadline_for(size), channel.recv_into(&mut sink)).await
    };
    match received {
        Ok(Ok(length)) if length == size => {}
        Ok(Ok(length)) => return Ok(Err(format!("image of {length} bytes, {size} announced"))),
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(ChannelError::UnexpectedEof),
    }
    Ok(Ok(bytes::Bytes::from(sink.buffer)))
}

fn header_matches(header: &ImageHeader, offer: &Offer) -> bool {
    header.type_name == offer.type_name
        && header.type_version == offer.version
        && header.fingerprint.0 == offer.fingerprint
        && header.image_len() == offer.size
}

/// Collects an incoming image into one buffer of the offered size, refusing more.
struct ImageSink {
    buffer: Vec<u8>,
    size: usize,
}

impl ImageSink {
    fn new(size: u64) -> Self {
        let size_usize = usize::try_from(size).unwrap_or(0);
        ImageSink {
            // Within the node's limit, checked before: allocate once.
            buffer: crate::memory::vec_with_capacity(size_usize),
            size: size_usize,
        }
    }
}

impl AsyncWrite for ImageSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let allowed = buf.len();
        if this.buffer.len() + allowed > this.size {
            // More than offered: refuse rather than grow past the size judged acceptable.
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the image is longer than offered",
            )));
        }
        this.buffer.extend_from_slice(&buf[..allowed]);
        std::task::Poll::Ready(Ok(allowed))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
