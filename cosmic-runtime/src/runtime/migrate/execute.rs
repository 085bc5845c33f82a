//! Carrying out the hand-off machine's commands that belong to no conversation: asking a
//! source how a hand-off in doubt ended, timers, retrying an `owner` record, starting a copy
//! whose decision arrived that way, discarding copies. Each runs on its own tokio task and
//! feeds what happened back to the machine, whose answer is carried out the same way.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use super::arrival;
use super::copy_error::AskError;
use crate::handoff::{Body, Command, Envelope, Event, Write};
use crate::runtime::RuntimeInner;
use crate::task::TaskId;
use crate::transport::protocol::{Request, Resolution};

/// Queues a batch of the machine's commands for a conversation's driver, timers first: a
/// batch's timer bounds the work of the same batch (the `Transfer` deadline bounds sending the
/// image it comes with).
pub(crate) fn enqueue(queue: &mut VecDeque<Command>, commands: Vec<Command>) {
    let (timers, rest): (Vec<_>, Vec<_>) = commands
        .into_iter()
        .partition(|c| matches!(c, Command::ArmTimer { .. }));
    queue.extend(timers);
    queue.extend(rest);
}

/// Carries out `commands` in the background.
pub(crate) fn carry_out(runtime: &Arc<RuntimeInner>, commands: Vec<Command>) {
    if commands.is_empty() {
        return;
    }
    let runtime = Arc::downgrade(runtime);
    tokio::spawn(async move {
        for command in commands {
            run(&runtime, command).await;
        }
    });
}

/// Feeds `event` to the machine and carries out its answer in the background.
fn feed(runtime: &Arc<RuntimeInner>, event: Event) {
    if let Some(node) = &runtime.node {
        let commands = node.step(event);
        carry_out(runtime, commands);
    }
}

async fn run(runtime: &Weak<RuntimeInner>, command: Command) {
    let Some(rt) = runtime.upgrade() else { return };
    let Some(node) = &rt.node else { return };
    match command {
        Command::Send {
            to,
            envelope:
                Envelope {
                    task,
                    handoff,
                    body: Body::Resolve,
                },
        } => {
            // The answer, if any, comes back as a message; the machine's timer asks again.
            match ask(&rt, task, handoff, &to).await {
                Ok(answer) => feed(
                    &rt,
                    Event::Received {
                        from: to,
                        envelope: Envelope {
                            task,
                            handoff,
                            body: Body::Resolution(answer),
                        },
                    },
                ),
                Err(error) => {
                    let reason = crate::transport::error_chain(&error);
                    tracing::debug!(%task, from = %to, %reason, "cannot reach the source of a hand-off in doubt yet");
                }
            }
        }
        Command::Send { to, envelope } => {
            // Its conversation is gone; the peer learns the outcome by asking.
            tracing::debug!(%to, ?envelope, "no conversation to send on");
        }
        Command::ArmTimer { timer, after } => {
            drop(rt);
            let runtime = runtime.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                if let Some(rt) = runtime.upgrade() {
                    feed(&rt, Event::TimerFired(timer));
                }
            });
        }
        Command::Write {
            task,
            write: write @ Write::Owner { handoff, .. },
        } => {
            let result = arrival::write_owner(&rt, task, handoff).await;
            feed(
                &rt,
                Event::Wrote {
                    task,
                    write,
                    result,
                },
            );
        }
        Command::StartTask { task, handoff, .. } => {
            tracing::info!(%task, "the source committed the hand-off in doubt");
            arrival::start(&rt, task, handoff);
        }
        Command::DiscardCopy {
            task,
            epoch,
            handoff,
        } => {
            let checkpoint = node
                .copies()
                .remove(&(task, handoff))
                .map(|arrival| arrival.checkpoint);
            // A copy recorded before it was numbered (seq 0) was never stored.
            let checkpoint = checkpoint.filter(|key| key.seq > 0);
            arrival::discard(&rt, task, epoch, handoff, checkpoint).await;
        }
        other => {
            tracing::error!(?other, "a hand-off command with nobody to carry it out");
        }
    }
}

/// Asks the source `from` how hand-off `handoff` of `task` ended, at the address its offer
/// gave and, failing that, at the address configured for a peer of that name. Only an answer
/// from a host that authenticated as `from` counts: any other host would answer Aborted (it
/// never decided).
async fn ask(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    handoff: u64,
    from: &str,
) -> Result<Resolution, AskError> {
    let Some(node) = runtime.node.as_ref() else {
        return Err(AskError::NoAddress {
            source_host: from.to_owned(),
        });
    };
    let offered_at = node
        .copies()
        .get(&(task, handoff))
        .map(|arrival| arrival.from_addr.clone());
    let mut addrs = Vec::new();
    if let Some(addr) = offered_at.and_then(|a| a.parse::<std::net::SocketAddr>().ok()) {
        addrs.push(addr);
    }
    if let Some(addr) = node.peer_addr(from).filter(|a| !addrs.contains(a)) {
        addrs.push(addr);
    }
    let attempts = addrs.len();
    let mut last = AskError::NoAddress {
        source_host: from.to_owned(),
    };
    for addr in addrs {
        match ask_at(node, task, handoff, from, addr).await {
            Ok(answer) => return Ok(answer),
            Err(error) => last = error,
        }
    }
    Err(match attempts {
        0 | 1 => last,
        _ => AskError::Every {
            attempts,
            last: Box::new(last),
        },
    })
}

async fn ask_at(
    node: &super::node::Node,
    task: TaskId,
    handoff: u64,
    from: &str,
    addr: std::net::SocketAddr,
) -> Result<Resolution, AskError> {
    let conversation = async {
        let mut channel = node.fresh_channel(addr).await.map_err(AskError::Connect)?;
        if channel.peer().node.as_str() != from {
            return Err(AskError::WrongHost {
                found: channel.peer().node.to_string(),
                expected: from.to_owned(),
            });
        }
        channel
            .send(&Request::Resolve { task, handoff })
            .await
            .map_err(AskError::Channel)?;
        let answer = channel
            .recv_within::<Resolution>(super::MAX_CONTROL_SIZE)
            .await
            .map_err(AskError::Channel)?;
        let _ = channel.close().await;
        Ok(answer)
    };
    tokio::time::timeout(node.config.step_timeout, conversation)
        .await
        .unwrap_or(Err(AskError::TimedOut))
}
