//! Location transparency: every host that gave a task away keeps a forwarding entry (where it
//! went, at which epoch), so a handle on any host it passed through can find it, ask its
//! status, and wait for its outcome, however many moves later (A -> B -> C -> A).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::Outcome;
use crate::runtime::shared::{Forward, TaskShared};
use crate::runtime::{JoinError, RuntimeInner};
use crate::task::{TaskId, TaskStatus};
use crate::transport::protocol::{Request, Whereabouts, WireStatus};

use super::LocateError;

/// The longest chain of forwarding entries followed.
const MAX_HOPS: usize = 64;
/// How long a host holds an `AwaitOutcome` question before answering "still running".
const LONG_POLL: Duration = Duration::from_secs(20);

/// Where a task is, found by following forwarding entries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskLocation {
    /// The host the task is on.
    pub host: String,
    /// Its status there.
    pub status: TaskStatus,
    /// Steps it has completed.
    pub steps: u64,
    /// Its epoch (how many times it moved).
    pub epoch: u64,
    /// The hosts whose forwarding entries were followed, in order.
    pub via: Vec<String>,
}

fn wire_status(shared: &TaskShared) -> WireStatus {
    match shared.status() {
        TaskStatus::Running => WireStatus::Running,
        TaskStatus::Paused => WireStatus::Paused,
        TaskStatus::Completed => match shared.outcome() {
            Some(Outcome::Completed(bytes)) => WireStatus::Completed(bytes.to_vec()),
            _ => WireStatus::Failed("outcome missing".into()),
        },
        TaskStatus::Failed(message) => WireStatus::Failed(message),
        TaskStatus::Cancelled => WireStatus::Cancelled,
        TaskStatus::Stopped => WireStatus::Stopped,
        TaskStatus::Arriving => WireStatus::Arriving,
        // Answered as MovedTo by the callers.
        TaskStatus::Moved(_) => WireStatus::Stopped,
    }
}

fn status_of(wire: &WireStatus) -> TaskStatus {
    match wire {
        WireStatus::Running => TaskStatus::Running,
        WireStatus::Paused => TaskStatus::Paused,
        WireStatus::Completed(_) => TaskStatus::Completed,
        WireStatus::Failed(message) => TaskStatus::Failed(message.clone()),
        WireStatus::Cancelled => TaskStatus::Cancelled,
        WireStatus::Stopped => TaskStatus::Stopped,
        WireStatus::Arriving => TaskStatus::Arriving,
    }
}

/// The outcome a final status carries, if it is final.
fn final_outcome(status: &WireStatus) -> Option<Outcome> {
    match status {
        WireStatus::Completed(bytes) => Some(Outcome::Completed(bytes.clone().into())),
        WireStatus::Failed(message) => Some(Outcome::Failed(message.clone())),
        WireStatus::Cancelled => Some(Outcome::Cancelled),
        _ => None,
    }
}

/// What this host knows about `task` (the answer to [`Request::Locate`]).
pub(crate) fn whereabouts(runtime: &RuntimeInner, task: TaskId) -> Whereabouts {
    // Arrivals first: a task coming back keeps its old forwarding entry until it starts.
    if let Some(node) = &runtime.node {
        if let Some((steps, epoch)) = node.arrival_progress(task) {
            return Whereabouts::Here {
                status: WireStatus::Arriving,
                steps,
                epoch,
            };
        }
    }
    if let Some(shared) = runtime.task(task) {
        return match shared.forward() {
            Some(forward) => Whereabouts::MovedTo {
                host: forward.host,
                addr: forward.addr,
                epoch: forward.epoch,
            },
            None => Whereabouts::Here {
                status: wire_status(&shared),
                steps: shared.steps(),
                epoch: shared.epoch(),
            },
        };
    }
    Whereabouts::Unknown
}

/// Waits (up to a long poll) until `task` ends, moves or stops here, then says where it is.
pub(crate) async fn await_change(runtime: &Arc<RuntimeInner>, task: TaskId) -> Whereabouts {
    if let Some(shared) = runtime.task(task) {
        let mut status = shared.subscribe();
        let _ = tokio::time::timeout(
            LONG_POLL,
            status.wait_for(|s| {
                s.is_finished() || matches!(s, TaskStatus::Moved(_) | TaskStatus::Stopped)
            }),
        )
        .await;
    }
    whereabouts(runtime, task)
}

/// Asks the host at `addr` one question about `task`.
async fn ask(
    runtime: &RuntimeInner,
    addr: &str,
    request: Request,
    deadline: Duration,
) -> Result<Whereabouts, String> {
    let node = runtime.node.as_ref().ok_or("this runtime is not a host")?;
    let addr: std::net::SocketAddr = addr.parse().map_err(|_| format!("bad address `{addr}`"))?;
    let conversation = async {
        let mut retried = false;
        loop {
            let (mut channel, reused) = node
                .channel(addr)
                .await
                .map_err(|e| crate::ErrorChain(&e).to_string())?;
            let exchange = async {
                channel.send(&request).await?;
                channel.recv::<Whereabouts>().await
            };
            match exchange.await {
                Ok(answer) => {
                    node.park(addr, channel);
                    return Ok(answer);
                }
                // An idle channel the peer closed meanwhile (it restarted, or timed us out).
                Err(_) if reused && !retried => {
                    node.forget_idle(addr);
                    retried = true;
                }
                Err(error) => return Err(crate::ErrorChain(&error).to_string()),
            }
        }
    };
    match tokio::time::timeout(deadline, conversation).await {
        Ok(Err(reason)) => {
            // A reused channel may be dead (the peer restarted): start afresh next time.
            node.forget_idle(addr);
            Err(reason)
        }
        Ok(answer) => answer,
        Err(_) => {
            node.forget_idle(addr);
            Err(format!("no answer within {deadline:?}"))
        }
    }
}

/// Finds `task`, starting from this host's entry for it.
pub(crate) async fn locate(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
) -> Result<TaskLocation, LocateError> {
    // What this host knows, arrivals first (a task coming back keeps its old forwarding
    // entry here until it starts).
    let local = |via: Vec<String>| -> Option<Result<TaskLocation, Forward>> {
        match whereabouts(runtime, task) {
            Whereabouts::Here {
                status,
                steps,
                epoch,
            } => Some(Ok(TaskLocation {
                host: runtime.host.clone(),
                status: match runtime.task(task) {
                    Some(shared) if shared.forward().is_none() => shared.status(),
                    _ => status_of(&status),
                },
                steps,
                epoch,
                via,
            })),
            Whereabouts::MovedTo { host, addr, epoch } => Some(Err(Forward {
                host,
                addr,
                epoch,
                handoff: 0,
            })),
            Whereabouts::Unknown => None,
        }
    };
    let mut via = Vec::new();
    let mut next = match local(Vec::new()) {
        Some(Ok(location)) => return Ok(location),
        Some(Err(forward)) => forward,
        None => {
            return Err(LocateError::Unknown {
                task,
                host: runtime.host.clone(),
            })
        }
    };
    let node = runtime.node.as_ref().ok_or(LocateError::NotAHost)?;
    via.push(runtime.host.clone());
    for _ in 0..MAX_HOPS {
        if next.host == runtime.host {
            match local(via.clone()) {
                Some(Ok(location)) => return Ok(location),
                Some(Err(forward)) => {
                    via.push(next.host.clone());
                    next = forward;
                    continue;
                }
                None => {
                    return Err(LocateError::Unknown {
                        task,
                        host: next.host,
                    })
                }
            }
        }
        let answer = ask(
            runtime,
            &next.addr,
            Request::Locate { task },
            node.config.step_timeout,
        )
        .await
        .map_err(|reason| LocateError::Unreachable {
            task,
            host: next.host.clone(),
            addr: next.addr.clone(),
            reason,
        })?;
        match answer {
            Whereabouts::Here {
                status,
                steps,
                epoch,
            } => {
                if let Some(outcome) = final_outcome(&status) {
                    crate::runtime::retention::learned(runtime, task, &outcome).await;
                }
                return Ok(TaskLocation {
                    host: next.host,
                    status: status_of(&status),
                    steps,
                    epoch,
                    via,
                });
            }
            Whereabouts::MovedTo { host, addr, epoch } => {
                via.push(next.host.clone());
                next = Forward {
                    host,
                    addr,
                    epoch,
                    handoff: 0,
                };
            }
            Whereabouts::Unknown => {
                return Err(LocateError::Unknown {
                    task,
                    host: next.host,
                })
            }
        }
    }
    Err(LocateError::TooManyHops {
        task,
        hops: MAX_HOPS,
    })
}

/// Waits for the outcome of a task that moved away, following it wherever it goes. Hosts that
/// cannot be reached (restarting) are asked again for up to six step timeouts in a row.
pub(crate) async fn await_outcome(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    first: Forward,
) -> Result<Outcome, JoinError> {
    let node = runtime.node.as_ref().ok_or(JoinError::ShutDown { task })?;
    let patience = node.config.step_timeout.saturating_mul(6);
    let mut next = first;
    let mut failing_since: Option<Instant> = None;
    let mut hops = 0;
    loop {
        if next.host == runtime.host {
            // Arriving back here: wait for it to start (or for its hand-off to abort).
            if runtime
                .node
                .as_ref()
                .is_some_and(|node| node.is_arriving(task))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let Some(shared) = runtime.task(task) else {
                return Err(JoinError::Unreachable {
                    task,
                    host: next.host,
                    reason: "this host no longer knows the task".into(),
                });
            };
            let mut status = shared.subscribe();
            let ended = status
                .wait_for(|s| {
                    s.is_finished() || matches!(s, TaskStatus::Moved(_) | TaskStatus::Stopped)
                })
                .await
                .map(|s| s.clone());
            match ended {
                Ok(TaskStatus::Moved(_)) => {
                    if let Some(forward) = shared.forward() {
                        next = forward;
                        hops += 1;
                        continue;
                    }
                }
                Ok(TaskStatus::Stopped) | Err(_) => return Err(JoinError::ShutDown { task }),
                Ok(_) => {}
            }
            return shared.outcome().ok_or(JoinError::ShutDown { task });
        }
        if hops > MAX_HOPS {
            return Err(JoinError::Unreachable {
                task,
                host: next.host,
                reason: format!("more than {MAX_HOPS} forwarding hops"),
            });
        }
        let answer = ask(
            runtime,
            &next.addr,
            Request::AwaitOutcome { task },
            LONG_POLL.saturating_add(node.config.step_timeout),
        )
        .await;
        match answer {
            Ok(Whereabouts::Here { status, .. }) => {
                failing_since = None;
                if let Some(outcome) = final_outcome(&status) {
                    crate::runtime::retention::learned(runtime, task, &outcome).await;
                    return Ok(outcome);
                }
                // Running (the long poll expired), stopped by a restart that will resume it,
                // or still arriving: ask again.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Whereabouts::MovedTo { host, addr, epoch }) => {
                failing_since = None;
                hops += 1;
                next = Forward {
                    host,
                    addr,
                    epoch,
                    handoff: 0,
                };
            }
            Ok(Whereabouts::Unknown) => {
                return Err(JoinError::Unreachable {
                    task,
                    host: next.host,
                    reason: "that host does not know the task".into(),
                })
            }
            Err(reason) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > patience {
                    return Err(JoinError::Unreachable {
                        task,
                        host: next.host,
                        reason,
                    });
                }
                tracing::debug!(%task, host = %next.host, %reason, "waiting for a host to answer");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
