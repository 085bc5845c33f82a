//! Leaving the cluster on purpose (a SIGTERM: a spot-instance notice, a pod termination):
//! stop taking tasks, move every task to the other hosts (spread by load) within a deadline,
//! checkpoint whatever could not leave in time and make it current, then end the lease at
//! once, so the others take over what stayed without waiting for the lease to run out. The
//! first half is a drain (`drain.rs`) with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::host::ClusterHost;
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
    let drained = super::drain::drain(runtime, host, None, Some(deadline)).await;
    let mut report = LeaveReport {
        moved: drained.moved,
        ..LeaveReport::default()
    };
    // What stays is stopped with a last checkpoint, made current before the lease ends.
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
    if let Some(lease) = host.give_up_lease() {
        if let Err(error) = host.coordinator.leave(&lease).await {
            tracing::warn!(host = %host.name, %error, "failed to end the lease; the others take over when it runs out");
        }
    }
    report.elapsed = started.elapsed();
    tracing::info!(host = %host.name, moved = report.moved.len(), left_behind = report.left_behind.len(), elapsed = ?report.elapsed, "left the cluster");
    report
}
