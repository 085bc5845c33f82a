//! The scan: every interval (or at once when a peer says it moved a task here), a host reads
//! the cluster's members and tasks from the coordinator and acts on what concerns it:
//! - trust and addresses: members whose published key an operator trusted become peers;
//! - its own tasks: one the coordinator names it owner of but that does not run here was moved
//!   here, and starts; one that runs here but has a newer owner is fenced;
//! - orphans: tasks whose owner is gone are spread over the live hosts by load
//!   ([`assign_orphans`](super::balance::assign_orphans)), and this host takes over its share;
//!   an orphan left by its assigned host for a few scans is open to any host that can run it;
//! - balance: if it is busier than the cluster's mean by the configured margin, it moves
//!   tasks to the least loaded hosts ([`plan_moves`](super::balance::plan_moves));
//! - retention: finished tasks kept past their time to live are forgotten
//!   ([`expire_outcomes`](super::retention::expire_outcomes)).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::adopt;
use super::balance::{plan_moves, Movable};
use super::coordinator::CoordinatorError;
use super::decide::{decide, Action, Running, ScanInput};
use super::host::{ClusterEventKind, ClusterHost};
use crate::runtime::RuntimeInner;
use crate::task::{TaskId, TaskStatus};

/// Scans until the runtime is gone or shuts down.
pub(crate) async fn run(host: Arc<ClusterHost>, runtime: Weak<RuntimeInner>) {
    let interval = host.config.scan_interval();
    let mut orphaned_since = BTreeMap::new();
    let mut finished_since = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = host.wake_scan.notified() => {}
        }
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        if runtime.is_shutting_down() && host.draining.load(Ordering::SeqCst) {
            // Leaving: takes nothing new.
            continue;
        }
        if !host.lease_holds() {
            continue;
        }
        if let Err(error) = scan(&runtime, &host, &mut orphaned_since, &mut finished_since).await {
            tracing::warn!(host = %host.name, %error, "cluster scan failed");
        }
    }
}

async fn scan(
    runtime: &Arc<RuntimeInner>,
    host: &ClusterHost,
    orphaned_since: &mut BTreeMap<TaskId, Duration>,
    finished_since: &mut BTreeMap<TaskId, Duration>,
) -> Result<(), CoordinatorError> {
    let lease = host.lease()?;
    let members = host.coordinator.members().await?;
    let trusted = host.coordinator.trusted().await?;
    if let Some(node) = &runtime.node {
        node.learn_members(&host.name, &members, &trusted);
    }
    // Only members an operator trusted (by the key they publish) take part in decisions:
    // joining alone gives a host no task.
    let members = super::peers::trusted_members(members, &trusted);
    let trusted_here = members.iter().any(|m| m.record.name == host.name);
    if !trusted_here {
        if let Some(node) = &runtime.node {
            node.warn_about(
                "this host is not trusted by the cluster's operator (`cosmic host add NAME KEY`): it takes no task",
                &host.name,
                &node.key.host_key.public_key(),
            );
        }
    }
    let tasks = host.coordinator.tasks().await?;
    let draining = host.draining.load(Ordering::SeqCst) || runtime.is_shutting_down();
    let running: HashMap<TaskId, Running> = host
        .owned()
        .iter()
        .map(|(task, owned)| {
            (
                *task,
                Running {
                    token: owned.token(),
                    fenced: owned.is_fenced() || owned.is_ending(),
                },
            )
        })
        .collect();
    let excluded = host
        .unrunnable
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let input = ScanInput {
        me: &host.name,
        incarnation: lease.incarnation,
        // An untrusted host takes nothing new.
        draining: draining || !trusted_here,
        running: &running,
        excluded: &excluded,
        // Left by its assigned host for three scans: anyone who can may take it.
        grace: host.config.scan_interval() * 3,
        now: host.now(),
    };
    for action in decide(&input, &members, &tasks, orphaned_since) {
        match action {
            Action::Arrive(entry) => adopt::arrive(runtime, host, &entry).await,
            Action::Fence(task) => {
                if let Some(owned) = host.owned_task(task) {
                    tracing::warn!(%task, "the task has a newer owner: stopping it here");
                    owned.fence();
                    host.event(task, ClusterEventKind::Fenced);
                }
            }
            Action::TakeOver(entry) => adopt::take_over(runtime, host, &entry).await,
        }
    }
    if !draining {
        balance(runtime, host, &members);
    }
    super::retention::expire_outcomes(runtime, host, &members, &tasks, finished_since).await;
    Ok(())
}

/// Starts the moves the balancer plans for this host.
fn balance(runtime: &Arc<RuntimeInner>, host: &ClusterHost, members: &[super::Member]) {
    let config = &host.config.balance;
    if !config.enabled {
        return;
    }
    // Loads as they will be once the moves under way land: this host's own fresh, minus the
    // tasks leaving it; the receivers' as published, plus what was sent to them since (a
    // receiver publishes at each renewal, and the scan reads it after).
    let settle = host.config.lease_ttl / 3 + host.config.scan_interval() * 2;
    let (leaving, sent): (Vec<TaskId>, Vec<String>) = {
        let mut recent = host.recent_moves.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, (_, done)| done.is_none_or(|at| at.elapsed() < settle));
        (
            recent
                .iter()
                .filter(|(_, (_, done))| done.is_none())
                .map(|(task, _)| *task)
                .collect(),
            recent.values().map(|(to, _)| to.clone()).collect(),
        )
    };
    let mut members = members.to_vec();
    for member in &mut members {
        if member.record.name == host.name {
            let running = runtime.running().len() as u32;
            member.record.load.runnable = running.saturating_sub(leaving.len() as u32);
            member.record.load.capacity = host.config.capacity;
        } else {
            let arriving = sent.iter().filter(|to| **to == member.record.name).count();
            member.record.load.runnable += arriving as u32;
        }
    }
    let mine: Vec<Movable> = {
        let owned = host.owned();
        let tasks = runtime.tasks();
        owned
            .iter()
            .filter(|(id, task)| {
                !task.is_fenced()
                    && !leaving.contains(id)
                    && tasks
                        .get(id)
                        .is_some_and(|shared| shared.status() == TaskStatus::Running)
            })
            .map(|(id, task)| Movable {
                task: *id,
                type_name: task.type_name.clone(),
                pinned: task.pinned(),
                since_arrival: task.arrived.map(|at| at.elapsed()),
            })
            .collect()
    };
    let in_flight = host.moves_in_flight.load(Ordering::SeqCst);
    let moves = {
        let mut active = host.balancing.lock().unwrap_or_else(|p| p.into_inner());
        plan_moves(&host.name, &members, &mine, in_flight, &mut active, config)
    };
    for planned in moves {
        let Some(shared) = runtime.task(planned.task) else {
            continue;
        };
        tracing::info!(task = %planned.task, to = %planned.to, reason = %planned.reason, "balancing: moving a task");
        host.moves_in_flight.fetch_add(1, Ordering::SeqCst);
        host.recent_moves
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(planned.task, (planned.to.clone(), None));
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = shared.send(crate::runtime::Control::Migrate {
            to: planned.to.clone(),
            reply,
        });
        let host_ref = runtime.cluster.clone();
        tokio::spawn(async move {
            let result = if sent { answer.await.ok() } else { None };
            if let Some(host) = host_ref {
                host.moves_in_flight.fetch_sub(1, Ordering::SeqCst);
                {
                    let mut recent = host.recent_moves.lock().unwrap_or_else(|p| p.into_inner());
                    if matches!(result, Some(Ok(()))) {
                        if let Some(entry) = recent.get_mut(&planned.task) {
                            entry.1 = Some(std::time::Instant::now());
                        }
                    } else {
                        recent.remove(&planned.task);
                    }
                }
                match result {
                    Some(Ok(())) => host.event(
                        planned.task,
                        ClusterEventKind::Balanced {
                            to: planned.to,
                            reason: planned.reason,
                        },
                    ),
                    Some(Err(error)) => {
                        tracing::info!(task = %planned.task, to = %planned.to, %error, "balancing move did not happen")
                    }
                    None => {}
                }
            }
        });
    }
}
