//! `cosmic store ...`: looking into a checkpoint store. `store ls` lists a [`FileStore`]
//! folder's tasks: what each is (its task record), its checkpoints, its epoch records and its
//! outcome. It only reads: it creates nothing and leaves a running host's temporary files
//! alone, so it is safe on the store of a live host (what it shows may be a moment old).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cosmic::checkpoint::{
    CatalogEntry, CheckpointKey, CheckpointStore, EpochRecord, FileStore, Outcome, TaskRecord,
};
use cosmic::task::TaskId;
use serde::Serialize;

use super::inspect::{EpochDetails, OutcomeRecord};
use crate::output::{self, Failure, Format, Report};

/// `cosmic store` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List the tasks a file store folder holds: type, checkpoints (sequence number, steps,
    /// size), epoch records, outcome.
    Ls(LsArgs),
    // More ways to look into (or repair) a store come here, each a variant and a function.
}

/// Arguments of `cosmic store ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// The store's folder (the one given to `FileStore::open`).
    #[arg(value_name = "PATH")]
    path: PathBuf,

    /// Only this task (16 hex digits, as listed).
    #[arg(long, value_name = "ID")]
    task: Option<TaskId>,
}

pub(crate) fn run(command: Command, format: Format) -> Result<(), Failure> {
    match command {
        Command::Ls(args) => ls(args, format),
    }
}

/// What `cosmic store ls` found.
#[derive(Debug, Serialize)]
struct Listing {
    store: PathBuf,
    tasks: Vec<TaskListing>,
}

#[derive(Debug, Serialize)]
struct TaskListing {
    id: String,
    /// The task's type, from its task record (`null` without one: a spawn that never
    /// returned, or a copy still arriving).
    type_name: Option<String>,
    output_type: Option<String>,
    /// Oldest first.
    checkpoints: Vec<Checkpoint>,
    /// Oldest first.
    epochs: Vec<Epoch>,
    /// `null` while the task has not finished here.
    outcome: Option<OutcomeRecord>,
    /// Records that could not be read, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
    /// Keys under the task's folder that are not part of the layout.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    other_keys: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Checkpoint {
    seq: u64,
    steps: u64,
    bytes: u64,
    file: PathBuf,
}

#[derive(Debug, Serialize)]
struct Epoch {
    epoch: u64,
    #[serde(flatten)]
    details: EpochDetails,
}

impl Report for Listing {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let count = self.tasks.len();
        let plural = if count == 1 { "" } else { "s" };
        writeln!(out, "store {}: {count} task{plural}", self.store.display())?;
        for task in &self.tasks {
            writeln!(out)?;
            match (&task.type_name, &task.output_type) {
                (Some(type_name), Some(output_type)) => {
                    writeln!(out, "task {}: {type_name} (output {output_type})", task.id)?
                }
                _ => writeln!(out, "task {}: no task record", task.id)?,
            }
            if task.checkpoints.is_empty() {
                writeln!(out, "  checkpoints  none")?;
            }
            for checkpoint in &task.checkpoints {
                writeln!(
                    out,
                    "  checkpoint   #{} at {} steps, {}",
                    checkpoint.seq,
                    checkpoint.steps,
                    output::size(checkpoint.bytes)
                )?;
            }
            if task.epochs.is_empty() {
                writeln!(out, "  epochs       none (never moved)")?;
            }
            for epoch in &task.epochs {
                writeln!(out, "  epoch {:<6} {}", epoch.epoch, epoch.details)?;
            }
            match &task.outcome {
                Some(outcome) => writeln!(out, "  outcome      {outcome}")?,
                None => writeln!(out, "  outcome      none (not finished here)")?,
            }
            for key in &task.other_keys {
                writeln!(out, "  other file   {key}")?;
            }
            for problem in &task.problems {
                writeln!(out, "  PROBLEM      {problem}")?;
            }
        }
        Ok(())
    }
}

fn ls(args: LsArgs, format: Format) -> Result<(), Failure> {
    let path = &args.path;
    let store = open(path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::because("cannot start the async runtime", &error))?;
    let listing = runtime.block_on(list(store, path, args.task, format))?;
    output::print(&listing, format)?;
    let problems: usize = listing.tasks.iter().map(|task| task.problems.len()).sum();
    if problems > 0 {
        let plural = if problems == 1 { "" } else { "s" };
        return Err(Failure::new(format!(
            "{problems} record{plural} in {} could not be read (see the listing)",
            path.display()
        ))
        .after_report());
    }
    Ok(())
}

/// Opens the store without changing anything in it, with a clear error for a wrong path.
fn open(path: &Path) -> Result<FileStore, Failure> {
    let name = path.display();
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_dir() => {
            return Err(Failure::new(format!(
                "{name} is a file, not a store's folder (for an image, try `cosmic inspect {name}`)"
            )))
        }
        Ok(_) => {}
        Err(error) => return Err(Failure::because(name, &error)),
    }
    FileStore::open_existing(path)
        .map_err(|error| Failure::because(format!("cannot open store {name}"), &error))
}

/// The keys of one task, sorted by what they are.
#[derive(Default)]
struct TaskKeys {
    record: bool,
    outcome: bool,
    checkpoints: Vec<CheckpointKey>,
    /// Epoch, then prepared before the decisions, as the catalog orders them.
    epochs: Vec<(u64, u8, &'static str)>,
    other: Vec<String>,
}

async fn list(
    store: FileStore,
    path: &Path,
    only: Option<TaskId>,
    format: Format,
) -> Result<Listing, Failure> {
    let name = path.display();
    // One walk of the store; then only the records are read, task by task.
    let prefix = match only {
        Some(task) => format!("tasks/{task}/"),
        None => "tasks/".to_owned(),
    };
    let keys = store
        .list(&prefix)
        .await
        .map_err(|error| Failure::because(format!("cannot list store {name}"), &error))?;
    let mut tasks: BTreeMap<TaskId, TaskKeys> = BTreeMap::new();
    for key in keys {
        match CatalogEntry::parse(&key) {
            Some(entry) => {
                let found = tasks.entry(entry.task()).or_default();
                match entry {
                    CatalogEntry::TaskRecord { .. } => found.record = true,
                    CatalogEntry::Outcome { .. } => found.outcome = true,
                    CatalogEntry::Checkpoint { key, .. } => found.checkpoints.push(key),
                    CatalogEntry::Epoch { epoch, kind, .. } => {
                        let order = if kind == "prepared" { 0 } else { 1 };
                        found.epochs.push((epoch, order, kind));
                    }
                    _ => found.other.push(key),
                }
            }
            None => {
                // A key in a task's folder outside the layout; anything else is not a task's.
                let task = key
                    .strip_prefix("tasks/")
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|id| id.parse::<TaskId>().ok());
                if let Some(task) = task {
                    tasks.entry(task).or_default().other.push(key);
                }
            }
        }
    }
    if let Some(task) = only {
        if !tasks.contains_key(&task) {
            return Err(Failure::new(format!("no task {task} in store {name}")));
        }
    }

    let bar = output::progress_bar(
        tasks.len() as u64,
        format,
        "reading tasks {pos}/{len} {wide_bar} {eta}",
    );
    let mut listed = Vec::with_capacity(tasks.len());
    for (task, keys) in tasks {
        listed.push(list_task(&store, task, keys).await);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Listing {
        store: path.to_path_buf(),
        tasks: listed,
    })
}

/// The record under `entry`'s key, decoded by `decode`; `None` if it is gone (pruned by a
/// running host since the listing). An error names the record.
async fn read_record<R, E: std::error::Error>(
    store: &FileStore,
    entry: CatalogEntry,
    decode: impl FnOnce(&[u8]) -> Result<R, E>,
) -> Result<Option<R>, String> {
    let key = entry.key();
    let damaged = |error: &dyn std::error::Error| {
        format!("record `{key}` is damaged: {}", output::chain(error))
    };
    match store.get(&key).await {
        Ok(Some(bytes)) => decode(&bytes).map(Some).map_err(|error| damaged(&error)),
        Ok(None) => Ok(None),
        Err(error) => Err(format!("record `{key}`: {}", output::chain(&error))),
    }
}

async fn list_task(store: &FileStore, task: TaskId, mut keys: TaskKeys) -> TaskListing {
    let mut listing = TaskListing {
        id: task.to_string(),
        type_name: None,
        output_type: None,
        checkpoints: Vec::new(),
        epochs: Vec::new(),
        outcome: None,
        problems: Vec::new(),
        other_keys: keys.other,
    };
    if keys.record {
        match read_record(store, CatalogEntry::TaskRecord { task }, TaskRecord::decode).await {
            Ok(Some(record)) => {
                listing.type_name = Some(record.type_name);
                listing.output_type = Some(record.output_type);
            }
            Ok(None) => {}
            Err(problem) => listing.problems.push(problem),
        }
    }
    keys.checkpoints.sort();
    for key in keys.checkpoints {
        let entry_key = CatalogEntry::Checkpoint { task, key }.key();
        let Ok(file) = store.path_of_key(&entry_key) else {
            continue;
        };
        match std::fs::metadata(&file) {
            Ok(metadata) => listing.checkpoints.push(Checkpoint {
                seq: key.seq,
                steps: key.steps,
                bytes: metadata.len(),
                file,
            }),
            // Pruned by a running host since the listing.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                listing
                    .problems
                    .push(format!("{}: {}", file.display(), output::chain(&error)))
            }
        }
    }
    keys.epochs.sort();
    for (epoch, _, kind) in keys.epochs {
        let entry = CatalogEntry::Epoch { task, epoch, kind };
        match read_record(store, entry, EpochRecord::decode).await {
            Ok(Some(record)) => listing.epochs.push(Epoch {
                epoch,
                details: EpochDetails::of(&record),
            }),
            Ok(None) => {}
            Err(problem) => listing.problems.push(problem),
        }
    }
    if keys.outcome {
        match read_record(store, CatalogEntry::Outcome { task }, Outcome::decode).await {
            Ok(outcome) => listing.outcome = outcome.as_ref().map(OutcomeRecord::of),
            Err(problem) => listing.problems.push(problem),
        }
    }
    listing
}
