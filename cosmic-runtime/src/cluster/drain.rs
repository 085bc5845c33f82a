//! Draining a member: it takes no new task from now on (it says so in its member record, so
//! the others stop choosing it), and every task it owns moves away, to one named member or
//! spread by load over the other trusted live members ([`assign_orphans`]). The host stays a
//! member: an operator's `cosmic drain HOST` ([`Runtime::drain_cluster`]), before maintenance.
//! Leaving (`leave.rs`) is a drain with a deadline, then a last checkpoint of what stayed and
//! the end of the lease. Also here: moving one task on an operator's request
//! ([`Runtime::move_task`], `cosmic migrate TASK HOST`).
//!
//! [`Runtime::drain_cluster`]: crate::runtime::Runtime::drain_cluster
//! [`Runtime::move_task`]: crate::runtime::Runtime::move_task

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::balance::{assign_orphans, Orphan};
use super::coordinator::{Member, Owner};
use super::host::{ClusterEventKind, ClusterHost};
use crate::runtime::{Control, MigrateError, RuntimeInner};
use crate::task::{TaskId, TaskStatus};

/// What a drain ([`Runtime::drain_cluster`](crate::runtime::Runtime::drain_cluster)) did.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct ClusterDrainReport {
    /// Tasks moved to other members, and where.
    pub moved: Vec<(TaskId, String)>,
    /// Tasks still here, and why (no member could take them, or the move failed).
    pub stayed: Vec<(TaskId, String)>,
    /// How long the drain took.
    pub elapsed: Duration,
}

/// The other trusted live members that take tasks (not draining), or only `to` among them.
async fn destinations(host: &ClusterHost, to: Option<&str>) -> Result<Vec<Member>, String> {
    let members = host
        .coordinator
        .members()
        .await
        .map_err(|error| format!("cannot list the members: {error}"))?;
    let trusted = host
        .coordinator
        .trusted()
        .await
        .map_err(|error| format!("cannot list the trusted keys: {error}"))?;
    Ok(super::peers::trusted_members(members, &trusted)
        .into_iter()
        .filter(|m| m.record.name != host.name && !m.record.draining)
        .filter(|m| to.is_none_or(|to| m.record.name == to))
        .collect())
}

/// Checks that `to` can take tasks from `host`: another trusted live member, not draining.
pub(crate) async fn check_destination(host: &ClusterHost, to: &str) -> Result<(), MigrateError> {
    let refuse = |reason: String| MigrateError::NoDestination {
        host: to.to_owned(),
        reason,
    };
    if to == host.name {
        return Err(refuse("it is the host being drained".to_owned()));
    }
    match destinations(host, Some(to)).await {
        Ok(found) if !found.is_empty() => Ok(()),
        Ok(_) => Err(refuse(
            "not a live member the operator trusted, or it is draining".to_owned(),
        )),
        Err(error) => Err(refuse(error)),
    }
}

/// Marks `host` draining (published at once) and moves its tasks away: to `to`, or spread by
/// load. Waits for every move to be decided, or until `deadline`: moves still running then
/// are reported as stayed.
pub(crate) async fn drain(
    runtime: &Arc<RuntimeInner>,
    host: &Arc<ClusterHost>,
    to: Option<&str>,
    deadline: Option<Duration>,
) -> ClusterDrainReport {
    let started = Instant::now();
    let mut report = ClusterDrainReport::default();
    host.draining.store(true, Ordering::SeqCst);
    // Publish it now: the others stop choosing this host.
    if let (Ok(lease), Some(record)) = (host.lease(), host.member_record(runtime)) {
        if let Err(error) = host.coordinator.keep_alive(&lease, &record).await {
            tracing::warn!(host = %host.name, %error, "failed to announce that this host is draining");
        }
    }
    let (members, no_members) = match destinations(host, to).await {
        Ok(members) => (members, None),
        Err(error) => {
            tracing::warn!(host = %host.name, %error, "cannot choose destinations; every task stays");
            (Vec::new(), Some(error))
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
    for orphan in &tasks {
        if assignment.contains_key(&orphan.task) {
            continue;
        }
        let why = match (&no_members, to) {
            (Some(error), _) => error.clone(),
            (None, Some(to)) => format!(
                "`{to}` cannot take it (not a trusted live member taking tasks, or `{}` is not registered there)",
                orphan.type_name
            ),
            (None, None) => format!(
                "no other trusted live member can run `{}`",
                orphan.type_name
            ),
        };
        report.stayed.push((orphan.task, why));
    }
    let mut moves = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(
        host.config.balance.max_in_flight.max(16),
    ));
    let mut pending = std::collections::BTreeSet::new();
    for (task, to) in assignment {
        let Some(shared) = runtime.task(task) else {
            continue;
        };
        pending.insert(task);
        let limit = Arc::clone(&limit);
        moves.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let (reply, answer) = tokio::sync::oneshot::channel();
            if !shared.send(Control::Migrate {
                to: to.clone(),
                reply,
            }) {
                return (task, to, Err("it ended before it could move".to_owned()));
            }
            let result = match answer.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(crate::transport::error_chain(&error)),
                Err(_) => Err("it ended before it could move".to_owned()),
            };
            (task, to, result)
        });
    }
    let until = deadline.map(|deadline| tokio::time::Instant::now() + deadline);
    loop {
        let next = match until {
            Some(until) => match tokio::time::timeout_at(until, moves.join_next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(host = %host.name, ?deadline, "the drain deadline passed");
                    break;
                }
            },
            None => moves.join_next().await,
        };
        match next {
            Some(Ok((task, to, Ok(())))) => {
                pending.remove(&task);
                host.event(task, ClusterEventKind::Drained { to: to.clone() });
                report.moved.push((task, to));
            }
            Some(Ok((task, _, Err(why)))) => {
                pending.remove(&task);
                report.stayed.push((task, why));
            }
            Some(Err(error)) => tracing::error!(%error, "a move of the drain ended abnormally"),
            None => break,
        }
    }
    // Moves still running finish or fail at their own pace; the caller reads what stayed.
    moves.abort_all();
    for task in pending {
        report
            .stayed
            .push((task, "still moving when the deadline passed".to_owned()));
    }
    report.moved.sort();
    report.stayed.sort_by_key(|(task, _)| *task);
    report.elapsed = started.elapsed();
    tracing::info!(host = %host.name, moved = report.moved.len(), stayed = report.stayed.len(), elapsed = ?report.elapsed, "drained");
    report
}

/// Moves `task`, which this host must own and run, to `to`, on `by`'s request.
pub(crate) async fn move_task(
    runtime: &Arc<RuntimeInner>,
    host: &Arc<ClusterHost>,
    task: TaskId,
    to: &str,
    by: &str,
) -> Result<(), MigrateError> {
    if to == host.name {
        return Err(MigrateError::SameHost {
            task,
            host: to.to_owned(),
        });
    }
    let running = runtime
        .task(task)
        .filter(|shared| matches!(shared.status(), TaskStatus::Running | TaskStatus::Paused));
    let (Some(shared), Some(_)) = (running, host.owned_task(task)) else {
        return Err(MigrateError::NotHere {
            task,
            host: host.name.clone(),
            owner: whereabouts(host, task).await,
        });
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if !shared.send(Control::Migrate {
        to: to.to_owned(),
        reply,
    }) {
        return Err(MigrateError::Finished { task });
    }
    answer
        .await
        .unwrap_or(Err(MigrateError::Finished { task }))?;
    tracing::info!(%task, %to, %by, "moved a task on request");
    host.event(
        task,
        ClusterEventKind::Requested {
            to: to.to_owned(),
            by: by.to_owned(),
        },
    );
    Ok(())
}

/// What the coordinator says of `task`, in words.
async fn whereabouts(host: &ClusterHost, task: TaskId) -> String {
    match host.coordinator.task(task).await {
        Ok(None) => "the coordinator does not know this task".to_owned(),
        Ok(Some(entry)) => match entry.owner {
            Owner::Host { host: owner, .. } if owner == host.name => {
                "the coordinator names this host its owner, but it does not run here (yet)"
                    .to_owned()
            }
            Owner::Host { host: owner, .. } => format!("the coordinator says `{owner}` owns it"),
            Owner::Orphaned => {
                "it is orphaned (its owner is gone); a live member takes it over shortly".to_owned()
            }
            Owner::Finished { .. } => "it has finished".to_owned(),
        },
        Err(error) => format!("it does not run here, and the coordinator did not answer: {error}"),
    }
}
