//! Moving tasks between hosts. The protocol's decisions are the hand-off machine's
//! (`crate::handoff`, held by `node.rs`); the files here are its drivers: `source.rs` on the
//! giving side, `receive.rs` on the receiving side (reached through `server.rs`, which also
//! answers questions about hand-offs in doubt), `execute.rs` for what outlives a conversation
//! (asking a source after a lost connection, retries), `arrival.rs` for the store work on an
//! arriving copy. Also here: the durable epoch records' use, following moved tasks
//! (`follow.rs`) and draining a host (`drain` below).
//!
//! The promise: a task is never running on two hosts, and never lost. The source stops the
//! task at a safe point and only gives it up (its `moved` record, the commit point) once the
//! destination holds a verified copy durably (`prepared`); the destination only runs it once
//! the source has given it up. Every failure before the commit point leaves the task with the
//! source; every failure after it leaves it with the destination, which learns of the commit
//! from the source's record if the message itself was lost.

mod arrival;
mod connections;
mod copy_error;
mod error;
mod execute;
#[cfg(feature = "fault-injection")]
pub(crate) mod fault;
pub(crate) mod follow;
mod image_sink;
pub(crate) mod node;
mod receive;
pub(crate) mod server;
pub(crate) mod source;

use std::sync::Arc;

pub use error::{HandoffStep, LocateError, MigrateError};
#[cfg(feature = "fault-injection")]
pub use fault::{FaultAction, FaultPlan, FaultPoint};
pub use follow::TaskLocation;

pub(crate) use arrival::{Arrival, StartTask};
pub use copy_error::CopyError;
pub(crate) use execute::carry_out;

use super::shared::Control;
use super::RuntimeInner;
use crate::task::{TaskId, TaskStatus};

/// The largest protocol message other than an image or an output (an offer is well under
/// 1 KiB plus its version table): a peer announcing more is cut off before anything is
/// allocated.
pub(crate) const MAX_CONTROL_SIZE: u64 = 1 << 20;

/// What a drain ([`Runtime::migrate_to`](super::Runtime::migrate_to)) did with each task.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DrainReport {
    /// Tasks now on the destination (or, for a task that asked to move itself while the
    /// drain ran, on the host it asked for).
    pub moved: Vec<TaskId>,
    /// Tasks that stayed here, and why (refused by the destination, or a failure on the way).
    pub stayed: Vec<(TaskId, MigrateError)>,
    /// Tasks that ended while the drain was asking them to move.
    pub ended: Vec<TaskId>,
}

/// Moves every running or paused task of `runtime` to `host`, a bounded number at a time.
pub(crate) async fn drain(
    runtime: &Arc<RuntimeInner>,
    host: &str,
) -> Result<DrainReport, MigrateError> {
    let node = runtime.node.as_ref().ok_or(MigrateError::NotAHost)?;
    if node.peer_addr(host).is_none() {
        return Err(MigrateError::UnknownPeer {
            host: host.to_owned(),
        });
    }
    let movable: Vec<_> = runtime
        .tasks()
        .values()
        .filter(|shared| matches!(shared.status(), TaskStatus::Running | TaskStatus::Paused))
        .cloned()
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(
        node.config.drain_concurrency.max(1),
    ));
    let mut moves = tokio::task::JoinSet::new();
    for shared in movable {
        let limit = Arc::clone(&limit);
        let host = host.to_owned();
        moves.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let (reply, answer) = tokio::sync::oneshot::channel();
            let result = if shared.send(Control::Migrate { to: host, reply }) {
                answer
                    .await
                    .unwrap_or(Err(MigrateError::Finished { task: shared.id }))
            } else {
                Err(MigrateError::Finished { task: shared.id })
            };
            // A task that moved itself meanwhile (a step's request) is not "ended".
            let moved_away = shared.forward().is_some();
            (shared.id, result, moved_away)
        });
    }
    let mut report = DrainReport::default();
    while let Some(joined) = moves.join_next().await {
        let (task, result, moved_away) = match joined {
            Ok(joined) => joined,
            Err(error) => {
                tracing::error!(error = %crate::ErrorChain(&error), "a move of the drain ended abnormally");
                continue;
            }
        };
        match result {
            Ok(()) => report.moved.push(task),
            Err(MigrateError::Finished { .. }) if moved_away => report.moved.push(task),
            Err(MigrateError::Finished { .. }) => report.ended.push(task),
            Err(error) => report.stayed.push((task, error)),
        }
    }
    report.moved.sort();
    report.ended.sort();
    report.stayed.sort_by_key(|(task, _)| *task);
    Ok(report)
}
