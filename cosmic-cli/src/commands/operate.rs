//! `cosmic migrate TASK HOST` and `cosmic drain HOST [--to HOST]`: only a task's owner holds
//! its token, so the operator asks the owner (found through the coordinator) over a secure
//! channel, as a peer the hosts trust (`--as`, default `operator`), and the owner moves it.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use cosmic::cluster::Owner;
use cosmic::task::TaskId;
use cosmic::transport::{self, ChannelError, DrainAnswer, MoveAnswer};
use serde::Serialize;

use super::cluster::{self, OperatorArgs, Snapshot};
use crate::output::{self, Failure, Format, Report};

/// Arguments of `cosmic migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// The task (16 hex digits, as `cosmic status` lists it).
    #[arg(value_name = "TASK")]
    task: TaskId,

    /// The member to move it to.
    #[arg(value_name = "HOST")]
    host: String,

    #[command(flatten)]
    operator: OperatorArgs,
}

/// Arguments of `cosmic drain`.
#[derive(Debug, clap::Args)]
pub(crate) struct DrainArgs {
    /// The member to empty. It stays a member and takes no new tasks until it restarts.
    #[arg(value_name = "HOST")]
    host: String,

    /// Move every task to this member (default: spread by load over the trusted live ones).
    #[arg(long, value_name = "HOST")]
    to: Option<String>,

    #[command(flatten)]
    operator: OperatorArgs,
}

/// What `cosmic migrate` did.
#[derive(Debug, Serialize)]
struct Moved {
    task: String,
    from: String,
    to: String,
    /// The task's token once the coordinator shows the new owner (null if it did not within a
    /// few seconds; the move happened all the same).
    token: Option<u64>,
}

impl Report for Moved {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "moved task {} from `{}` to `{}`",
            self.task, self.from, self.to
        )
    }
}

/// What `cosmic drain` did.
#[derive(Debug, Serialize)]
struct Drained {
    host: String,
    moved: Vec<MovedTask>,
    stayed: Vec<StayedTask>,
    elapsed_secs: f64,
}

#[derive(Debug, Serialize)]
struct MovedTask {
    task: String,
    to: String,
}

#[derive(Debug, Serialize)]
struct StayedTask {
    task: String,
    reason: String,
}

impl Report for Drained {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "drained `{}` in {:.1}s: {} moved, {} stayed; it takes no new tasks until it restarts",
            self.host,
            self.elapsed_secs,
            self.moved.len(),
            self.stayed.len()
        )?;
        for moved in &self.moved {
            writeln!(out, "  {} -> {}", moved.task, moved.to)?;
        }
        for stayed in &self.stayed {
            writeln!(out, "  {} STAYED: {}", stayed.task, stayed.reason)?;
        }
        Ok(())
    }
}

/// Waits for a request's answer, within the operator's timeout.
async fn ask<A>(
    request: impl std::future::Future<Output = Result<A, ChannelError>>,
    host: &str,
    timeout: Duration,
) -> Result<A, Failure> {
    match tokio::time::timeout(timeout, request).await {
        Ok(answer) => answer
            .map_err(|error| Failure::because(format!("talking to `{host}`"), &error)),
        Err(_) => Err(Failure::new(format!(
            "`{host}` did not answer within {}s (it goes on; `cosmic status` shows where things are)",
            timeout.as_secs()
        ))),
    }
}

pub(crate) fn migrate(args: MigrateArgs, format: Format) -> Result<(), Failure> {
    let operator = args.operator.load()?;
    let task = args.task;
    let moved = cluster::tokio()?.block_on(async {
        let coordinator = args.operator.coordinator.open().await?;
        let snapshot = Snapshot::read(&*coordinator).await?;
        let entry = snapshot
            .tasks
            .iter()
            .find(|entry| entry.task == task)
            .ok_or_else(|| {
                Failure::new(format!(
                    "unknown task {task}: the coordinator does not know it"
                ))
            })?;
        let owner = match &entry.owner {
            Owner::Host { host, .. } => host.clone(),
            Owner::Orphaned => {
                return Err(Failure::new(format!(
                    "task {task} is orphaned (its owner is gone): a live member takes it over shortly; try again then"
                )))
            }
            Owner::Finished { .. } => {
                return Err(Failure::new(format!("task {task} has finished")))
            }
        };
        snapshot.trusted_member(&args.host)?;
        if owner == args.host {
            return Err(Failure::new(format!(
                "task {task} already runs on `{owner}`"
            )));
        }
        operator.check_trusted(&snapshot)?;
        let source = snapshot.trusted_member(&owner).map_err(|failure| {
            Failure::new(format!("task {task}'s owner cannot be asked: {failure}"))
        })?;
        let mut channel = operator.connect(&snapshot, source).await?;
        let request = transport::request_move(&mut channel, task, &args.host);
        match ask(request, &owner, operator.timeout).await? {
            MoveAnswer::Moved { to } => {
                let _ = channel.close().await;
                let token = confirm(&*coordinator, task, &to).await;
                Ok(Moved {
                    task: task.to_string(),
                    from: owner,
                    to,
                    token,
                })
            }
            MoveAnswer::Refused(reason) => Err(Failure::new(format!(
                "`{owner}` did not move task {task} to `{}`: {reason}",
                args.host
            ))),
        }
    })?;
    output::print(&moved, format)
}

/// Waits (a few seconds at most) for the coordinator to show `to` as the owner; its token.
async fn confirm(
    coordinator: &dyn cosmic::cluster::Coordinator,
    task: TaskId,
    to: &str,
) -> Option<u64> {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(Some(entry)) = coordinator.task(task).await {
            if matches!(&entry.owner, Owner::Host { host, .. } if host == to) {
                return Some(entry.token.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

pub(crate) fn drain(args: DrainArgs, format: Format) -> Result<(), Failure> {
    let operator = args.operator.load()?;
    let host = args.host.clone();
    let drained = cluster::tokio()?.block_on(async {
        let coordinator = args.operator.coordinator.open().await?;
        let snapshot = Snapshot::read(&*coordinator).await?;
        let member = snapshot.trusted_member(&host)?;
        if let Some(to) = &args.to {
            if *to == host {
                return Err(Failure::new(format!(
                    "--to names `{to}`, the host being drained"
                )));
            }
            let destination = snapshot.trusted_member(to)?;
            if destination.record.draining {
                return Err(Failure::new(format!(
                    "`{to}` is draining: it takes no tasks"
                )));
            }
        }
        operator.check_trusted(&snapshot)?;
        let owned_by = |tasks: &[cosmic::cluster::TaskEntry]| {
            tasks
                .iter()
                .filter(|e| matches!(&e.owner, Owner::Host { host: h, .. } if *h == host))
                .count() as u64
        };
        let total = owned_by(&snapshot.tasks);
        let mut channel = operator.connect(&snapshot, member).await?;
        let started = Instant::now();
        let bar = output::progress_bar(
            total,
            format,
            "draining {pos}/{len} tasks moved {wide_bar} {elapsed}",
        );
        let request = transport::request_drain(&mut channel, args.to.as_deref());
        let answer = ask(request, &host, operator.timeout);
        tokio::pin!(answer);
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        let answer = loop {
            tokio::select! {
                answer = &mut answer => break answer,
                _ = poll.tick() => {
                    if let Ok(tasks) = coordinator.tasks().await {
                        bar.set_position(total.saturating_sub(owned_by(&tasks)));
                    }
                }
            }
        };
        bar.finish_and_clear();
        match answer? {
            DrainAnswer::Drained { moved, stayed } => Ok(Drained {
                host: host.clone(),
                moved: moved
                    .into_iter()
                    .map(|(task, to)| MovedTask {
                        task: task.to_string(),
                        to,
                    })
                    .collect(),
                stayed: stayed
                    .into_iter()
                    .map(|(task, reason)| StayedTask {
                        task: task.to_string(),
                        reason,
                    })
                    .collect(),
                elapsed_secs: started.elapsed().as_secs_f64(),
            }),
            DrainAnswer::Refused(reason) => {
                Err(Failure::new(format!("`{host}` did not drain: {reason}")))
            }
        }
    })?;
    output::print(&drained, format)?;
    if !drained.stayed.is_empty() {
        return Err(
            Failure::new(format!("{} tasks stayed on `{host}`", drained.stayed.len()))
                .after_report(),
        );
    }
    Ok(())
}
