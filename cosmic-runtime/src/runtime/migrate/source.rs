//! The source's half of a hand-off, run by the task's driver at a safe point while the task
//! is stopped there:
//!
//! 1. offer the task (what it is, its size, its next epoch) and wait for the answer;
//! 2. stream the image; wait until the destination holds a verified, durable copy;
//! 3. write the commit record (`moved`, durable): from here on the task is the destination's;
//! 4. tell the destination to run it, and wait for it to say it does.
//!
//! Any failure before step 3 leaves the task here, running on; the destination, if it
//! prepared, learns that the hand-off aborted (told so, or by asking later). After step 3 the
//! move stands whatever fails: the destination runs the task once it hears the decision, from
//! us or, after a crash, by asking us.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "fault-injection")]
use super::fault::{FaultPoint, GatedReader, Injected};
use super::node::Node;
use super::{HandoffStep, MigrateError};
use crate::checkpoint::EpochRecord;
use crate::image;
use crate::runtime::shared::Forward;
use crate::runtime::RuntimeInner;
use crate::task::TaskId;
use crate::transport::protocol::{
    Decision, Offer, OfferAnswer, PrepareAnswer, Request, StartAnswer, MAX_INLINE_IMAGE,
};
use crate::transport::{ChannelError, SecureChannel};

/// What the driver knows about the task it moves.
pub(crate) struct Moving<'a> {
    pub(crate) task: TaskId,
    pub(crate) output_type: &'a str,
    pub(crate) epoch: u64,
    pub(crate) steps: u64,
    /// The captured image.
    pub(crate) image: &'a mut [u8],
}

/// Removes the hand-off from the undecided set when it ends, however it ends; after the
/// commit record if there is one (see `server::resolution`).
struct Deciding<'a> {
    node: &'a Node,
    handoff: u64,
}

impl Drop for Deciding<'_> {
    fn drop(&mut self) {
        self.node.deciding().remove(&self.handoff);
    }
}

/// Moves the task to `host`. `Ok` means the commit record is durable: the task is the
/// destination's, and the caller must stop running it.
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
    let handoff = crate::task::TaskId::random().0;
    // Small images travel inside the offer (a round trip less), unless a transfer fault is to
    // be injected.
    let send_inline = moving.image.len() <= MAX_INLINE_IMAGE;
    #[cfg(feature = "fault-injection")]
    let send_inline = send_inline && !node.plans(FaultPoint::SourceMidTransfer);
    let offer = Offer {
        task,
        handoff,
        epoch: moving.epoch + 1,
        type_name: header.type_name.clone(),
        output_type: moving.output_type.to_owned(),
        version: header.type_version,
        versions: header.versions.clone().into_iter().collect(),
        fingerprint: header.fingerprint.0,
        encoding: header.encoding.code(),
        size: moving.image.len() as u64,
        steps: moving.steps,
        source_addr: node.addr.to_string(),
        inline_image: if send_inline {
            moving.image.to_vec()
        } else {
            Vec::new()
        },
    };
    node.deciding().insert(handoff);
    let _deciding = Deciding { node, handoff };
    let fail = Failure {
        task,
        host,
        timeout: node.config.step_timeout,
    };

    #[cfg(feature = "fault-injection")]
    if node.fault(FaultPoint::SourceBeforeOffer).await == Injected::Corrupt {
        // Flip a bit of the body: the destination's checksum must catch it.
        let at = header.header_len + (moving.image.len() - header.header_len) / 2;
        moving.image[at] ^= 0x10;
    }
    let (mut channel, answer) = offer_to(node, addr, &offer, &fail).await?;
    if let OfferAnswer::Refuse(reason) = answer {
        node.park(addr, channel);
        return Err(MigrateError::Refused {
            task,
            host: host.to_owned(),
            reason,
        });
    }

    let size = moving.image.len() as u64;
    let inline = !offer.inline_image.is_empty();
    let send = async {
        if inline {
            return Ok(());
        }
        #[cfg(feature = "fault-injection")]
        if node.plans(FaultPoint::SourceMidTransfer) {
            let reader = GatedReader::new(node, FaultPoint::SourceMidTransfer, moving.image);
            let sent = channel.send_from(size, reader).await;
            return sent.map_err(|e| fail.channel(HandoffStep::Transfer, e));
        }
        let sent = channel.send_bytes(moving.image).await;
        sent.map_err(|e| fail.channel(HandoffStep::Transfer, e))
    };
    fail.within(HandoffStep::Transfer, node.config.deadline_for(size), send)
        .await?;
    let prepared = fail
        .within(
            HandoffStep::Prepare,
            node.config.deadline_for(size),
            async {
                channel
                    .recv_within::<PrepareAnswer>(super::MAX_CONTROL_SIZE)
                    .await
                    .map_err(|e| fail.channel(HandoffStep::Prepare, e))
            },
        )
        .await?;
    if let PrepareAnswer::Failed(reason) = prepared {
        node.park(addr, channel);
        return Err(MigrateError::Rejected {
            task,
            host: host.to_owned(),
            reason,
        });
    }
    #[cfg(feature = "fault-injection")]
    if node.fault(FaultPoint::SourceAfterPrepared).await == Injected::Drop {
        return Err(fail.injected(HandoffStep::Prepare));
    }

    // The commit point.
    let forward = Forward {
        host: host.to_owned(),
        addr: addr.to_string(),
        epoch: offer.epoch,
        handoff,
    };
    if let Some(catalog) = &runtime.catalog {
        let record = EpochRecord::Moved {
            to: forward.host.clone(),
            to_addr: forward.addr.clone(),
            handoff,
        };
        if let Err(error) = catalog.put_epoch_record(task, offer.epoch, &record).await {
            // A failed write may still have left the record (a store can fail after making
            // it visible): the record, not the error, decides. Until the store can say, the
            // task stays stopped here and the hand-off stays undecided.
            tracing::error!(%error, "the commit record's write failed; checking whether it landed");
            if !commit_record_landed(catalog, task, offer.epoch, &record).await {
                let _ = channel.send(&Decision::Abort).await;
                return Err(MigrateError::Store {
                    task,
                    host: host.to_owned(),
                    source: Arc::new(error),
                });
            }
            tracing::warn!(%task, "the commit record landed despite the error; the move stands");
        }
    }
    node.committed(handoff);
    tracing::info!(%task, to = %host, epoch = offer.epoch, "committed the move");
    #[cfg(feature = "fault-injection")]
    if node.fault(FaultPoint::SourceAfterCommit).await == Injected::Drop {
        return Ok(forward);
    }
    // From here the move stands; the destination resolves with us if this part fails.
    let started = async {
        channel.send(&Decision::Commit).await?;
        channel
            .recv_within::<StartAnswer>(super::MAX_CONTROL_SIZE)
            .await
    };
    match tokio::time::timeout(node.config.step_timeout, started).await {
        Ok(Ok(StartAnswer::Started)) => node.park(addr, channel),
        Ok(Ok(StartAnswer::Deferred(reason))) => {
            tracing::warn!(%task, to = %host, %reason, "the destination will start the task later");
            node.park(addr, channel);
        }
        Ok(Err(error)) => {
            tracing::warn!(%task, to = %host, %error, "no start confirmation; the destination resolves the move with us");
        }
        Err(_) => {
            tracing::warn!(%task, to = %host, "no start confirmation in time; the destination resolves the move with us");
        }
    }
    Ok(forward)
}

/// Whether the commit record `record` is in the store, asking until the store answers.
async fn commit_record_landed(
    catalog: &crate::checkpoint::Catalog,
    task: TaskId,
    epoch: u64,
    record: &EpochRecord,
) -> bool {
    let mut delay = Duration::from_millis(10);
    loop {
        match catalog.epoch_record(task, epoch, "moved").await {
            Ok(found) => return found.as_ref() == Some(record),
            Err(error) => {
                tracing::error!(%task, %error, "cannot read the commit record yet; the task waits");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Sends the offer and reads the answer. A reused channel that turns out closed by the peer
/// (it restarted) is replaced by a fresh one, once: nothing of this hand-off reached anyone.
async fn offer_to(
    node: &Node,
    addr: SocketAddr,
    offer: &Offer,
    fail: &Failure<'_>,
) -> Result<(SecureChannel, OfferAnswer), MigrateError> {
    let request = Request::Offer(offer.clone());
    let mut retried = false;
    loop {
        let (mut channel, reused) = fail
            .within(
                HandoffStep::Connect,
                node.channel.handshake_timeout,
                async {
                    node.channel(addr)
                        .await
                        .map_err(|source| MigrateError::Connect {
                            task: fail.task,
                            host: fail.host.to_owned(),
                            source: Arc::new(source),
                        })
                },
            )
            .await?;
        let exchange = async {
            channel.send(&request).await?;
            channel
                .recv_within::<OfferAnswer>(super::MAX_CONTROL_SIZE)
                .await
        };
        match tokio::time::timeout(fail.timeout, exchange).await {
            Ok(Ok(answer)) => return Ok((channel, answer)),
            Ok(Err(error)) if reused && !retried && is_stale(&error) => {
                node.forget_idle(addr);
                retried = true;
            }
            Ok(Err(error)) => return Err(fail.channel(HandoffStep::Offer, error)),
            Err(_) => return Err(fail.timed_out(HandoffStep::Offer, fail.timeout)),
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

/// Builds the errors of one hand-off.
struct Failure<'a> {
    task: TaskId,
    host: &'a str,
    timeout: Duration,
}

impl Failure<'_> {
    fn channel(&self, step: HandoffStep, source: ChannelError) -> MigrateError {
        MigrateError::Channel {
            task: self.task,
            host: self.host.to_owned(),
            step,
            source: Arc::new(source),
        }
    }

    fn timed_out(&self, step: HandoffStep, after: Duration) -> MigrateError {
        MigrateError::Timeout {
            task: self.task,
            host: self.host.to_owned(),
            step,
            after,
        }
    }

    #[cfg(feature = "fault-injection")]
    fn injected(&self, step: HandoffStep) -> MigrateError {
        MigrateError::Injected {
            task: self.task,
            step,
        }
    }

    async fn within<T>(
        &self,
        step: HandoffStep,
        after: Duration,
        work: impl std::future::Future<Output = Result<T, MigrateError>>,
    ) -> Result<T, MigrateError> {
        tokio::time::timeout(after, work)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(step, after)))
    }
}
