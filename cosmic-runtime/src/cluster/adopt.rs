//! Starting a task that became this host's: taken over from a host that is gone, or moved
//! here by another host. Either way it resumes from the checkpoint the coordinator says is
//! current, after this host has checked that it can: the type is registered here and the
//! checkpoint reads and decodes. A host that cannot says so, leaves it (or gives it back,
//! orphaned) and is left out of its next assignment.

use std::sync::Arc;

use bytes::Bytes;

use super::coordinator::{CheckpointRef, CoordinatorError, Owner, TaskEntry};
use super::host::{ClusterEventKind, ClusterHost};
use crate::checkpoint::CheckpointKey;
use crate::runtime::migrate::StartTask;
use crate::runtime::RuntimeInner;
use crate::task::TaskId;

/// Why this host cannot run a task it was given or could take over.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CannotRun {
    /// The task's type was not registered with this runtime.
    #[error("its type `{type_name}` is not registered on `{host}` (Builder::register)")]
    Unregistered { type_name: String, host: String },
    /// The checkpoint the coordinator names is not in the store.
    #[error("its checkpoint `{key}` is missing from the store")]
    Missing { key: String },
    /// The store failed to read the checkpoint.
    #[error("its checkpoint `{key}` cannot be read")]
    Unreadable {
        key: String,
        source: crate::checkpoint::StoreError,
    },
    /// The checkpoint was read but does not restore here.
    #[error("its checkpoint `{key}` does not decode")]
    Undecodable {
        key: String,
        source: crate::image::RestoreError,
    },
}

/// What `entry`'s task starts with here, or why this host cannot run it.
fn cannot_run(
    runtime: &Arc<RuntimeInner>,
    host: &ClusterHost,
    entry: &TaskEntry,
    checkpoint: &CheckpointRef,
    bytes: Option<Bytes>,
) -> Result<StartTask, CannotRun> {
    let Some(task_type) = runtime.types.get(&entry.type_name) else {
        return Err(CannotRun::Unregistered {
            type_name: entry.type_name.clone(),
            host: host.name.clone(),
        });
    };
    let Some(bytes) = bytes else {
        return Err(CannotRun::Missing {
            key: checkpoint.key.clone(),
        });
    };
    (task_type.prepare)(&bytes)
        .map(|(_, start)| start)
        .map_err(|source| CannotRun::Undecodable {
            key: checkpoint.key.clone(),
            source,
        })
}

async fn read(host: &ClusterHost, checkpoint: &CheckpointRef) -> Result<Option<Bytes>, CannotRun> {
    host.store
        .get(&checkpoint.key)
        .await
        .map_err(|source| CannotRun::Unreadable {
            key: checkpoint.key.clone(),
            source,
        })
}

fn exclude(host: &ClusterHost, task: TaskId, reason: &CannotRun, entry: &TaskEntry) {
    let reason = crate::ErrorChain(reason).to_string();
    tracing::warn!(%task, r#type = %entry.type_name, %reason, "cannot run this task here; leaving it to another host");
    host.unrunnable
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(task)
        .or_default()
        .push(host.name.clone());
    host.event(task, ClusterEventKind::Released { reason });
}

/// Starts a task moved here, if the lease it was moved to is still this host's.
fn start(
    runtime: &Arc<RuntimeInner>,
    host: &ClusterHost,
    entry: &TaskEntry,
    token: super::Token,
    checkpoint: &CheckpointRef,
    start: StartTask,
    kind: ClusterEventKind,
) {
    let Ok(lease) = host.lease() else { return };
    let ours = matches!(&entry.owner, Owner::Host { incarnation, .. } if *incarnation == lease.incarnation);
    if !ours
        || host
            .own_under(
                &lease,
                entry.task,
                entry.type_name.clone(),
                token,
                checkpoint,
                true,
            )
            .is_none()
    {
        return;
    }
    host.event(entry.task, kind);
    let from = CheckpointKey {
        seq: 0,
        steps: checkpoint.steps,
    };
    start(runtime, entry.task, from, 1, 0);
}

/// Takes over an orphaned task, if this host can run it and wins the coordinator's race.
pub(crate) async fn take_over(runtime: &Arc<RuntimeInner>, host: &ClusterHost, entry: &TaskEntry) {
    let task = entry.task;
    let bytes = match read(host, &entry.current).await {
        Ok(bytes) => bytes,
        Err(reason) => return exclude(host, task, &reason, entry),
    };
    if let Err(reason) = cannot_run(runtime, host, entry, &entry.current, bytes.clone()) {
        return exclude(host, task, &reason, entry);
    }
    let Ok(lease) = host.lease() else { return };
    let (token, current) = match host.coordinator.take_over(&lease, task, entry.token).await {
        Ok(won) => won,
        Err(CoordinatorError::NotOrphaned { .. } | CoordinatorError::Fenced(_)) => return,
        Err(error) => {
            tracing::warn!(%task, %error, "take over failed");
            return;
        }
    };
    // The current checkpoint may have changed between the read and the take over.
    let bytes = if current.key == entry.current.key {
        bytes
    } else {
        match read(host, &current).await {
            Ok(bytes) => bytes,
            Err(reason) => return give_back(runtime, host, entry, token, &reason).await,
        }
    };
    let starter = match cannot_run(runtime, host, entry, &current, bytes) {
        Ok(starter) => starter,
        Err(reason) => return give_back(runtime, host, entry, token, &reason).await,
    };
    let from = match &entry.owner {
        Owner::Host { host, .. } => Some(host.clone()),
        _ => None,
    };
    // The lease may have ended while the coordinator worked: then the takeover is not ours.
    if host
        .own_under(&lease, task, entry.type_name.clone(), token, &current, true)
        .is_none()
    {
        tracing::warn!(%task, %token, incarnation = lease.incarnation, "took over the task under a lease that ended meanwhile: not starting it; it is an orphan again");
        return;
    }
    tracing::info!(%task, r#type = %entry.type_name, steps = current.steps, ?from, %token, "took over an orphaned task");
    host.event(
        task,
        ClusterEventKind::TookOver {
            from,
            steps: current.steps,
        },
    );
    let from = CheckpointKey {
        seq: 0,
        steps: current.steps,
    };
    starter(runtime, task, from, 1, 0);
    host.collect(task, Some(&current.key)).await;
}

/// Starts a task another host moved here (the coordinator already names this host).
pub(crate) async fn arrive(runtime: &Arc<RuntimeInner>, host: &ClusterHost, entry: &TaskEntry) {
    // A task being spawned here is already in the coordinator but not yet among the tasks
    // this host runs: not an arrival. `spawning` is read first: a spawn puts the task among
    // those it runs before it takes it out of `spawning`.
    if host.spawning().contains(&entry.task) || host.owned_task(entry.task).is_some() {
        return;
    }
    // The scan read the coordinator before it read what runs here: a task that moved away
    // (or ended, or was lost) in between looks moved here too, and starting it would run it
    // on two hosts at once. Read it again now that it is known not to run here: it is ours
    // to start only if its entry did not change.
    match host.coordinator.task(entry.task).await {
        Ok(Some(now)) if now.token == entry.token && now.owner == entry.owner => {}
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(task = %entry.task, %error, "cannot read the task again; leaving its start to the next scan");
            return;
        }
    }
    let bytes = match read(host, &entry.current).await {
        Ok(bytes) => bytes,
        Err(reason) => return give_back(runtime, host, entry, entry.token, &reason).await,
    };
    match cannot_run(runtime, host, entry, &entry.current, bytes) {
        Ok(starter) => {
            tracing::info!(task = %entry.task, steps = entry.current.steps, token = %entry.token, "a task moved here; resuming it");
            start(
                runtime,
                host,
                entry,
                entry.token,
                &entry.current,
                starter,
                ClusterEventKind::Arrived {
                    steps: entry.current.steps,
                },
            );
        }
        Err(reason) => give_back(runtime, host, entry, entry.token, &reason).await,
    }
}

/// Orphans a task this host owns but cannot run, so another host takes it over.
async fn give_back(
    _runtime: &Arc<RuntimeInner>,
    host: &ClusterHost,
    entry: &TaskEntry,
    token: super::Token,
    reason: &CannotRun,
) {
    exclude(host, entry.task, reason, entry);
    let Ok(lease) = host.lease() else { return };
    if let Err(error) = host.coordinator.release(&lease, entry.task, token).await {
        tracing::warn!(task = %entry.task, %error, "failed to give the task back");
    }
}
