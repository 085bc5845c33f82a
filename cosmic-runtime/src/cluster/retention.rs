//! Retention on a cluster: a finished task's entry in the coordinator and its outcome record in
//! the shared store are kept for [`Retention::outcome_ttl`](crate::runtime::Retention::outcome_ttl),
//! then forgotten, as [`Runtime::forget`](crate::runtime::Runtime::forget) does by hand.
//!
//! The coordinator records no time of the end, so each host counts the time to live from when
//! its scan first saw the task finished. An outcome is therefore kept at least its time to live
//! (longer after restarts, which start the count again), never less. The host that wrote the
//! outcome forgets it; so does any host once that writer is no longer a live member, so that
//! the outcomes of a host that died or left are not kept forever. Two hosts forgetting the
//! same task at once is harmless: the second finds it gone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::coordinator::{Member, Owner, TaskEntry};
use super::host::ClusterHost;
use super::layout;
use crate::runtime::RuntimeInner;
use crate::task::TaskId;

/// At most this many tasks are forgotten by one scan; the rest wait for the next.
const FORGETS_PER_SCAN: usize = 64;

/// Forgets the finished tasks whose outcome was kept long enough. `seen` holds, per finished
/// task, when this host's scans first saw it finished (on the host's clock).
pub(crate) async fn expire_outcomes(
    runtime: &Arc<RuntimeInner>,
    host: &ClusterHost,
    members: &[Member],
    tasks: &[TaskEntry],
    seen: &mut BTreeMap<TaskId, Duration>,
) {
    let Some(ttl) = runtime.retention.outcome_ttl_value() else {
        seen.clear();
        return;
    };
    let now = host.now();
    let finished: BTreeMap<TaskId, &str> = tasks
        .iter()
        .filter_map(|entry| match &entry.owner {
            Owner::Finished { outcome } => Some((entry.task, outcome.as_str())),
            _ => None,
        })
        .collect();
    // Seen finished before and no longer in the coordinator: another host forgot it, and the
    // copies here go too.
    let vanished: Vec<TaskId> = seen
        .keys()
        .filter(|task| !finished.contains_key(task))
        .copied()
        .collect();
    for task in vanished {
        seen.remove(&task);
        forget_here(runtime, task);
    }
    for task in finished.keys() {
        seen.entry(*task).or_insert(now);
    }
    let live: HashSet<&str> = members.iter().map(|m| m.record.name.as_str()).collect();
    let due: Vec<(TaskId, &str)> = seen
        .iter()
        .filter(|(_, since)| now.saturating_sub(**since) >= ttl)
        .filter_map(|(task, _)| finished.get(task).map(|outcome| (*task, *outcome)))
        .filter(|(_, outcome)| {
            // The writer forgets; anyone may once the writer is gone. A key of another layout
            // (it should not happen) has no writer to wait for.
            layout::parse(outcome)
                .is_none_or(|key| key.host == host.name || !live.contains(key.host.as_str()))
        })
        .take(FORGETS_PER_SCAN)
        .collect();
    for (task, outcome) in due {
        if let Err(error) = host.coordinator.forget(task).await {
            // Another host may have forgotten it first: then it is gone, which is the point.
            match host.coordinator.task(task).await {
                Ok(None) => {}
                _ => {
                    tracing::warn!(%task, %error, "failed to forget an expired outcome; trying again at the next scan");
                    continue;
                }
            }
        }
        if let Err(error) = host.store.delete(outcome).await {
            tracing::warn!(%task, %error, "failed to remove the outcome record of an expired task");
        }
        seen.remove(&task);
        forget_here(runtime, task);
        tracing::debug!(%task, "forgot a finished task whose outcome outlived its time to live");
    }
}

/// The runtime forgets its copy of a finished task (its handles by id, its in-memory outcome).
fn forget_here(runtime: &RuntimeInner, task: TaskId) {
    runtime.tasks().remove(&task);
}
