//! `cosmic status`: the cluster as its coordinator sees it: the live members (address,
//! incarnation, key and whether an operator trusted it, load, draining), and every task (type,
//! owner, token, current checkpoint; with `--store`, the age of that checkpoint).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use cosmic::checkpoint::FileStore;
use cosmic::cluster::Owner;
use serde::Serialize;

use super::cluster::{self, CoordinatorArgs, Snapshot};
use crate::output::{self, Failure, Format, Report};

/// Arguments of `cosmic status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    coordinator: CoordinatorArgs,

    /// The shared store's folder (a `FileStore`): shows how old each task's current
    /// checkpoint is.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Status {
    hosts: Vec<Host>,
    /// Names trusted by an operator that are not live members (operators, hosts that are
    /// down).
    trusted_absent: Vec<String>,
    tasks: Vec<Task>,
}

#[derive(Debug, Serialize)]
struct Host {
    name: String,
    addr: String,
    incarnation: u64,
    public_key: String,
    /// Whether its published key is the one an operator trusted for its name.
    trusted: bool,
    runnable: u32,
    capacity: u32,
    steps_per_sec: f64,
    cpu: f64,
    draining: bool,
    types: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Task {
    id: String,
    type_name: String,
    owner: TaskOwner,
    token: u64,
    checkpoint: Checkpoint,
}

#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum TaskOwner {
    Owned {
        host: String,
        incarnation: u64,
        /// Whether that incarnation is a live member (if not, the task is orphaned soon).
        live: bool,
    },
    Orphaned,
    Finished {
        outcome: String,
    },
}

#[derive(Debug, Serialize)]
struct Checkpoint {
    key: String,
    steps: u64,
    /// Seconds since it was written (with `--store`, when the file is there).
    age_secs: Option<f64>,
}

impl Report for Status {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "hosts: {} live", self.hosts.len())?;
        let mut rows = vec![[
            "NAME",
            "ADDRESS",
            "INC",
            "TRUST",
            "LOAD",
            "STEPS/S",
            "CPU",
            "STATE",
            "PUBLIC KEY",
        ]
        .map(String::from)
        .to_vec()];
        for host in &self.hosts {
            rows.push(vec![
                host.name.clone(),
                host.addr.clone(),
                host.incarnation.to_string(),
                if host.trusted {
                    "trusted"
                } else {
                    "NOT TRUSTED"
                }
                .to_owned(),
                format!("{}/{}", host.runnable, host.capacity),
                format!("{:.1}", host.steps_per_sec),
                format!("{:.2}", host.cpu),
                if host.draining { "draining" } else { "-" }.to_owned(),
                host.public_key.clone(),
            ]);
        }
        table(out, &rows)?;
        if !self.trusted_absent.is_empty() {
            writeln!(
                out,
                "trusted, not members: {}",
                self.trusted_absent.join(", ")
            )?;
        }
        writeln!(out)?;
        writeln!(out, "tasks: {}", self.tasks.len())?;
        let mut rows = vec![[
            "ID",
            "TYPE",
            "OWNER",
            "TOKEN",
            "STEPS",
            "CKPT AGE",
            "CHECKPOINT",
        ]
        .map(String::from)
        .to_vec()];
        for task in &self.tasks {
            let owner = match &task.owner {
                TaskOwner::Owned {
                    host, live: true, ..
                } => host.clone(),
                TaskOwner::Owned { host, .. } => format!("{host} (gone)"),
                TaskOwner::Orphaned => "orphaned".to_owned(),
                TaskOwner::Finished { .. } => "finished".to_owned(),
            };
            rows.push(vec![
                task.id.clone(),
                task.type_name.clone(),
                owner,
                task.token.to_string(),
                task.checkpoint.steps.to_string(),
                task.checkpoint
                    .age_secs
                    .map_or("-".to_owned(), |age| format!("{age:.1}s")),
                task.checkpoint.key.clone(),
            ]);
        }
        table(out, &rows)
    }
}

/// Rows in columns, two spaces apart, indented by two.
fn table(out: &mut dyn Write, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(" ");
        for (cell, width) in row.iter().zip(&widths) {
            line.push(' ');
            line.push_str(cell);
            line.push_str(&" ".repeat(width - cell.chars().count() + 1));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub(crate) fn run(args: Args, format: Format) -> Result<(), Failure> {
    let store = match &args.store {
        Some(path) => Some(FileStore::open_existing(path).map_err(|error| {
            Failure::because(format!("cannot open the store {}", path.display()), &error)
        })?),
        None => None,
    };
    let snapshot = cluster::tokio()?.block_on(async {
        let coordinator = args.coordinator.open().await?;
        Snapshot::read(&*coordinator).await
    })?;
    let now = SystemTime::now();
    let age = |key: &str| {
        let path = store.as_ref()?.path_of_key(key).ok()?;
        let modified = std::fs::metadata(path).ok()?.modified().ok()?;
        Some(
            now.duration_since(modified)
                .unwrap_or_default()
                .as_secs_f64(),
        )
    };
    let status = Status {
        hosts: snapshot
            .members
            .iter()
            .map(|member| {
                let record = &member.record;
                Host {
                    name: record.name.clone(),
                    addr: record.addr.clone(),
                    incarnation: member.incarnation,
                    public_key: record.public_key.to_string(),
                    trusted: snapshot.is_trusted(member),
                    runnable: record.load.runnable,
                    capacity: record.load.capacity,
                    steps_per_sec: record.load.steps_per_sec,
                    cpu: record.load.cpu,
                    draining: record.draining,
                    types: record.types.clone(),
                }
            })
            .collect(),
        trusted_absent: snapshot
            .trusted
            .iter()
            .filter(|(name, _)| !snapshot.members.iter().any(|m| m.record.name == *name))
            .map(|(name, _)| name.clone())
            .collect(),
        tasks: snapshot
            .tasks
            .iter()
            .map(|entry| Task {
                id: entry.task.to_string(),
                type_name: entry.type_name.clone(),
                owner: match &entry.owner {
                    Owner::Host { host, incarnation } => TaskOwner::Owned {
                        host: host.clone(),
                        incarnation: *incarnation,
                        live: snapshot
                            .members
                            .iter()
                            .any(|m| m.record.name == *host && m.incarnation == *incarnation),
                    },
                    Owner::Orphaned => TaskOwner::Orphaned,
                    Owner::Finished { outcome } => TaskOwner::Finished {
                        outcome: outcome.clone(),
                    },
                },
                token: entry.token.0,
                checkpoint: Checkpoint {
                    key: entry.current.key.clone(),
                    steps: entry.current.steps,
                    age_secs: age(&entry.current.key),
                },
            })
            .collect(),
    };
    output::print(&status, format)
}
