//! Leaving the cluster on purpose (a SIGTERM: a spot-instance notice, a pod termination):
//! stop taking tasks, move every task to the other hosts (spread by load) within a deadline,
//! checkpoint whatever could not leave in time and make it current, then end the lease at
//! once, so the others take over what stayed without waiting for the lease to run out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::balance::{assign_orphans, Orphan};
use super::host::{ClusterEventKind, ClusterHost};
use crate::runtime::{Control, RuntimeInner};
use crate::task::{TaskId, TaskStatus};

/// What [`Runtime::leave`](crate::runtime::Runtime::leave) did.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct LeaveReport {
    /// Tasks moved to other hosts, and where.
    pub moved: Vec<(TaskId, String)>,
    /// Tasks that could not move in time (or had nowhere to go): checkpointed here, and taken
    /// over by the others once the lease ended.
    pub left_behind: Vec<TaskId>,
    /// How long leaving took.
    pub elapsed: Duration,
}

pub(crate) async fn leave(
    runtime: &Arc<RuntimeInner>,
    host: &Arc<ClusterHost>,
    deadline: Duration,
) -> LeaveReport {
    let started = Instant::now();
    let mut report = LeaveReport::default();
    host.draining.store(true, Ordering::SeqCst);
    // Publish it now: the others stop choosing this host.
    if let (Ok(lease), Some(record)) = (host.lease(), host.member_record(runtime)) {
        if let Err(error) = host.coordinator.keep_alive(&lease, &record).await {
            tracing::warn!(host = %host.name, %error, "failed to announce that this host is leaving");
        }
    }
    let members: Vec<_> = match host.coordinator.members().await {
        Ok(members) => members
            .into_iter()
            .filter(|m| m.record.name != host.name && !m.record.draining)
            .collect(),
        Err(error) => {
            tracing::warn!(host = %host.name, %error, "cannot list the other hosts; leaving every task to be taken over");
            Vec::new()
        }
    };
    let tasks: Vec<Orphan> = host
        .owned()
        .iter()
        .filter(|(_, owned)| !owned.is_fenced())
        .map(|(task, owned)| Orphan {
            task: *task,
            type_name: owned.type_name.clone(),
        })
        .collect();
    let assignment = assign_orphans(&members, &tasks, &Default::default());
    let mut moves = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(
        host.config.balance.max_in_flight.max(16),
    ));
    for (task, to) in assignment {
        let Some(shared) = runtime.task(task) else {
            continue;
        };
        let limit = Arc::clone(&limit);
        moves.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let (reply, answer) = tokio::sync::oneshot::channel();
            if !shared.send(Control::Migrate {
                to: to.clone(),
                reply,
            }) {
                return (task, to, false);
            }
            (task, to.clone(), matches!(answer.await, Ok(Ok(()))))
        });
    }
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, moves.join_next()).await {
            Ok(Some(Ok((task, to, true)))) => {
                host.event(task, ClusterEventKind::Drained { to: to.clone() });
                report.moved.push((task, to));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(host = %host.name, ?deadline, "the leave deadline passed; checkpointing what is left");
                break;
            }
        }
    }
    // Moves still running finish or fail at their own pace; what stays is stopped with a
    // last checkpoint, made current before the lease ends.
    let staying: Vec<_> = runtime
        .tasks()
        .values()
        .filter(|shared| matches!(shared.status(), TaskStatus::Running | TaskStatus::Paused))
        .cloned()
        .collect();
    let mut stops = Vec::new();
    for shared in staying {
        let (done, wait) = tokio::sync::oneshot::channel();
        if shared.send(Control::Shutdown(done)) {
            report.left_behind.push(shared.id);
            stops.push(wait);
        }
    }
    for wait in stops {
        let _ = wait.await;
    }
    moves.abort_all();
    if let Some(lease) = host.give_up_lease() {
        if let Err(error) = host.coordinator.leave(&lease).await {
            tracing::warn!(host = %host.name, %error, "failed to end the lease; the others take over when it runs out");
        }
    }
    report.elapsed = started.elapsed();
    tracing::info!(host = %host.name, moved = report.moved.len(), left_behind = report.left_behind.len(), elapsed = ?report.elapsed, "left the cluster");
    report
}
