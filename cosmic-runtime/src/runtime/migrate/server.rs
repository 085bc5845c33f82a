//! The host's listening side: accepts channels from peers and answers their requests: offers
//! of tasks (the destination's half of the hand-off, `receive.rs`), questions about hand-offs
//! in doubt (answered by the hand-off machine), questions about where tasks are, and an
//! operator's requests to a cluster member (move a task, drain).

use std::sync::{Arc, Weak};

use tracing::Instrument;

use super::follow;
use super::receive::receive;
use crate::handoff::{Body, Command, Envelope, Event};
use crate::runtime::RuntimeInner;
use crate::task::TaskId;
use crate::transport::protocol::{
    DrainAnswer, MoveAnswer, OfferAnswer, Refusal, Request, Resolution,
};
use crate::transport::{error_chain, ChannelError, SecureChannel, SecureListener};

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
                tracing::error!(error = %crate::ErrorChain(&error), "accepting peers failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers one peer's requests, one conversation at a time, until it hangs up, sits idle too
/// long, or is closed to make room for another.
async fn serve(runtime: Weak<RuntimeInner>, mut channel: SecureChannel) {
    let peer = channel.peer().node.to_string();
    let Some(connections) = runtime
        .upgrade()
        .and_then(|rt| rt.node.as_ref().map(|n| Arc::clone(&n.connections)))
    else {
        return;
    };
    let Some(slot) = connections.admit() else {
        refuse_busy(&runtime, &mut channel, &peer).await;
        return;
    };
    loop {
        slot.set_idle(true);
        let request = tokio::select! {
            received = tokio::time::timeout(
                IDLE_TIMEOUT,
                channel.recv_within::<Request>(super::MAX_CONTROL_SIZE),
            ) => received,
            _ = slot.close.notified() => {
                tracing::debug!(%peer, "closing an idle peer connection to make room");
                return;
            }
        };
        slot.set_idle(false);
        let request = match request {
            Err(_) => {
                tracing::debug!(%peer, "closing an idle peer connection");
                let _ = channel.close().await;
                return;
            }
            Ok(Ok(request)) => request,
            Ok(Err(error)) => match error {
                ChannelError::Closed { .. } | ChannelError::UnexpectedEof => return,
                error => {
                    if let Some(rt) = runtime.upgrade() {
                        if let Some(node) = &rt.node {
                            node.warn_about("ending a peer's connection", &peer, &error);
                        }
                    }
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
                    from = %peer,
                    epoch = offer.epoch
                );
                receive(&runtime, &mut channel, offer)
                    .instrument(span)
                    .await
            }
            Request::Resolve { task, handoff } => {
                let answer = resolution(&runtime, &peer, task, handoff);
                channel.send(&answer).await
            }
            Request::Settle {
                task,
                handoff,
                resolution,
            } => {
                settle(&runtime, &peer, task, handoff, resolution);
                Ok(())
            }
            Request::Adopt => {
                if let Some(cluster) = &runtime.cluster {
                    cluster.wake_scan.notify_one();
                }
                Ok(())
            }
            Request::MoveTask { task, to } => {
                let answer = move_task(&runtime, &peer, task, &to).await;
                channel.send(&answer).await
            }
            Request::Drain { to } => {
                let answer = drain(&runtime, &peer, to.as_deref()).await;
                channel.send(&answer).await
            }
            Request::Locate { task } => channel.send(&follow::whereabouts(&runtime, task)).await,
            Request::AwaitOutcome { task } => {
                let answer = follow::await_change(&runtime, task).await;
                channel.send(&answer).await
            }
        };
        if let Err(error) = result {
            if let Some(node) = &runtime.node {
                node.warn_about("a conversation with a peer failed", &peer, &error);
            }
            return;
        }
    }
}

/// Every served connection is in a conversation: this one gets one answer, `Busy` if it
/// offers a task, and is closed.
async fn refuse_busy(runtime: &Weak<RuntimeInner>, channel: &mut SecureChannel, peer: &str) {
    let Some(rt) = runtime.upgrade() else { return };
    let Some(node) = &rt.node else { return };
    node.warn_about(
        "refused a peer connection: every connection is busy",
        peer,
        &format_args!("{} served", node.connections.len()),
    );
    let request = tokio::time::timeout(
        node.config.step_timeout,
        channel.recv_within::<Request>(super::MAX_CONTROL_SIZE),
    )
    .await;
    if let Ok(Ok(Request::Offer(_))) = request {
        let (arriving, bytes) = node.arriving_load();
        let refusal = Refusal::Busy { arriving, bytes };
        let _ = channel.send(&OfferAnswer::Refuse(refusal)).await;
    }
}

/// How hand-off `handoff` of `task` ended, as this host (its source) knows it: the machine
/// keeps a hand-off `Leaving` until its commit record is durable or it aborted for good, and
/// remembers commits (rebuilt from the `moved` records after a restart).
fn resolution(runtime: &Arc<RuntimeInner>, from: &str, task: TaskId, handoff: u64) -> Resolution {
    let Some(node) = &runtime.node else {
        return Resolution::Aborted;
    };
    let event = Event::Received {
        from: from.to_owned(),
        envelope: Envelope {
            task,
            handoff,
            body: Body::Resolve,
        },
    };
    node.step(event)
        .into_iter()
        .find_map(|command| match command {
            Command::Send {
                envelope:
                    Envelope {
                        body: Body::Resolution(answer),
                        ..
                    },
                ..
            } => Some(answer),
            _ => None,
        })
        .unwrap_or(Resolution::Pending)
}

/// The source of an older hand-off of `task` says, unasked, how it ended (its copy here in
/// doubt blocks the source's newer offer, which follows on this channel).
fn settle(
    runtime: &Arc<RuntimeInner>,
    from: &str,
    task: TaskId,
    handoff: u64,
    resolution: Resolution,
) {
    let Some(node) = &runtime.node else { return };
    let commands = node.step(Event::Received {
        from: from.to_owned(),
        envelope: Envelope {
            task,
            handoff,
            body: Body::Resolution(resolution),
        },
    });
    super::execute::carry_out(runtime, commands);
}

/// Why `peer` may not operate this host, if it may not: it must be a peer the operator trusted
/// (its name was proven by its key in the handshake, against the trust list; checked again
/// here so that operating a host never depends on how the channel was accepted).
fn refuse_operator(runtime: &RuntimeInner, peer: &str) -> Option<String> {
    let node = runtime.node.as_ref()?;
    if node.key.trusted.get(peer).is_none() {
        return Some(format!("`{peer}` is not trusted here"));
    }
    if runtime.cluster.is_none() {
        return Some(format!("`{}` is not a cluster member", runtime.host));
    }
    None
}

/// A trusted peer (an operator's `cosmic migrate`) asks to move `task` to `to`.
async fn move_task(runtime: &Arc<RuntimeInner>, peer: &str, task: TaskId, to: &str) -> MoveAnswer {
    if let Some(reason) = refuse_operator(runtime, peer) {
        return MoveAnswer::Refused(reason);
    }
    tracing::info!(%task, %to, by = %peer, "asked to move a task");
    match crate::runtime::move_task(runtime, task, to, peer).await {
        Ok(()) => MoveAnswer::Moved { to: to.to_owned() },
        Err(error) => MoveAnswer::Refused(error_chain(&error)),
    }
}

/// A trusted peer (an operator's `cosmic drain`) asks this host to drain.
async fn drain(runtime: &Arc<RuntimeInner>, peer: &str, to: Option<&str>) -> DrainAnswer {
    if let Some(reason) = refuse_operator(runtime, peer) {
        return DrainAnswer::Refused(reason);
    }
    let Some(cluster) = &runtime.cluster else {
        return DrainAnswer::Refused("not a cluster member".to_owned());
    };
    tracing::info!(to = ?to, by = %peer, "asked to drain");
    if let Some(to) = to {
        if let Err(error) = crate::cluster::check_destination(cluster, to).await {
            return DrainAnswer::Refused(error_chain(&error));
        }
    }
    let report = crate::cluster::drain(runtime, cluster, to, None).await;
    DrainAnswer::Drained {
        moved: report.moved,
        stayed: report.stayed,
    }
}
