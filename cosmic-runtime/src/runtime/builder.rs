//! [`Builder`]: configures and starts a [`Runtime`].

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::shared::TaskShared;
use super::stats::StatsCounters;
use super::task_types::TaskTypes;
use super::{BuildError, Recovery, Runtime, RuntimeInner};
use crate::checkpoint::{Catalog, CheckpointStore, Clock, Policy, SystemClock};
use crate::task::Task;

/// Configures a [`Runtime`], like `tokio::runtime::Builder`.
#[derive(Debug)]
pub struct Builder {
    host: String,
    store: Option<Arc<dyn CheckpointStore>>,
    policy: Policy,
    keep: usize,
    clock: Arc<dyn Clock>,
    verify_every: Option<u64>,
    types: Vec<fn(&TaskTypes)>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            host: "local".to_owned(),
            store: None,
            policy: Policy::default(),
            keep: 3,
            clock: Arc::new(SystemClock::default()),
            verify_every: None,
            types: Vec::new(),
        }
    }

    /// The name of this host (in logs, and later to other hosts).
    pub fn host(mut self, name: impl Into<String>) -> Self {
        self.host = name.into();
        self
    }

    /// Where checkpoints go. Without a store nothing survives the process.
    pub fn store(mut self, store: impl CheckpointStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// When tasks are checkpointed (default: every second).
    pub fn checkpoint(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How many checkpoints of each task the store keeps (default 3, at least 1). Older ones
    /// are the fallback when the newest is damaged.
    pub fn keep_checkpoints(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// The clock the checkpoint schedule reads (for tests; default: the system's monotonic clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Test mode: at every `every_steps`-th safe point, round-trip each task through its image
    /// and continue with the restored copy, as a migration would. State that does not survive a
    /// move (a skipped field that mattered, a cache that is not rebuilt) then shows up in
    /// ordinary tests.
    pub fn verify_migration(mut self, every_steps: u64) -> Self {
        self.verify_every = Some(every_steps.max(1));
        self
    }

    /// Declares a task type that may be found in the store, so it can be resumed on start.
    /// (Types spawned on the runtime are registered anyway.)
    pub fn register<T: Task>(mut self) -> Self {
        self.types.push(|types| types.register::<T>());
        self
    }

    /// Starts the runtime on the current tokio runtime, and resumes every unfinished task in
    /// the store from its newest checkpoint that decodes (older ones are the fallback, with a
    /// warning). Finished tasks' outcomes stay available through [`Runtime::handle`].
    pub async fn build(self) -> Result<Runtime, BuildError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::NoTokioRuntime);
        }
        let types = TaskTypes::default();
        for register in &self.types {
            register(&types);
        }
        let inner = Arc::new(RuntimeInner {
            catalog: self.store.map(|store| Catalog::new(store, self.keep)),
            stats: Arc::new(StatsCounters::new(Arc::clone(&self.clock))),
            host: self.host,
            policy: self.policy,
            clock: self.clock,
            verify_every: self.verify_every,
            types,
            tasks: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            recovery: Mutex::new(Recovery::default()),
        });
        if let Some(catalog) = inner.catalog.clone() {
            let recovery = recover(&inner, &catalog).await?;
            *inner.recovery.lock().unwrap_or_else(|p| p.into_inner()) = recovery;
        }
        Ok(Runtime { inner })
    }
}

async fn recover(inner: &Arc<RuntimeInner>, catalog: &Catalog) -> Result<Recovery, BuildError> {
    let mut recovery = Recovery::default();
    for task in catalog.tasks().await.map_err(BuildError::Recovery)? {
        let record = match catalog.task_record(task).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                // An image without a record: a spawn that never returned. Nobody holds its id.
                tracing::info!(%task, "removing the leftovers of an unfinished spawn");
                if let Err(error) = catalog.remove_task(task).await {
                    tracing::warn!(%task, %error, "could not remove an unfinished spawn");
                }
                continue;
            }
            Err(error) => {
                tracing::error!(%task, %error, "task record is unreadable");
                recovery.failed.push((task, error.to_string()));
                continue;
            }
        };
        match catalog.outcome(task).await {
            Ok(Some(outcome)) => {
                // Finished: a crash may have come between the outcome and the retirement.
                if let Err(error) = catalog.retire_checkpoints(task).await {
                    tracing::warn!(%task, %error, "could not retire the checkpoints of a finished task");
                }
                let shared = TaskShared::finished(task, record.output_type, outcome);
                inner.tasks().insert(task, shared);
                recovery.finished.push(task);
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                recovery.failed.push((task, error.to_string()));
                continue;
            }
        }
        let Some(task_type) = inner.types.get(&record.type_name) else {
            let reason = format!(
                "task type `{}` is not registered with this runtime (Builder::register)",
                record.type_name
            );
            tracing::error!(%task, "{reason}");
            recovery.failed.push((task, reason));
            continue;
        };
        let checkpoints = match catalog.checkpoints(task).await {
            Ok(checkpoints) => checkpoints,
            Err(error) => {
                recovery.failed.push((task, error.to_string()));
                continue;
            }
        };
        let next_seq = checkpoints.last().map_or(0, |newest| newest.seq) + 1;
        let mut problems = Vec::new();
        let mut resumed = None;
        for key in checkpoints.into_iter().rev() {
            let result = match catalog.checkpoint(task, key).await {
                Ok(Some(bytes)) => (task_type.resume)(inner, task, &bytes, key, next_seq)
                    .map_err(|e| e.to_string()),
                Ok(None) => Err("removed while reading".to_owned()),
                Err(error) => Err(error.to_string()),
            };
            match result {
                Ok(()) => {
                    resumed = Some(key);
                    break;
                }
                Err(reason) => {
                    tracing::warn!(%task, seq = key.seq, %reason, "checkpoint unusable; trying an older one");
                    problems.push(format!("checkpoint {}: {reason}", key.seq));
                }
            }
        }
        match resumed {
            Some(key) => {
                tracing::info!(%task, seq = key.seq, steps = key.steps, "resumed");
                recovery.resumed.push((task, key));
            }
            None => {
                let reason = if problems.is_empty() {
                    "no checkpoint in the store".to_owned()
                } else {
                    problems.join("; ")
                };
                tracing::error!(%task, %reason, "task cannot be resumed");
                recovery.failed.push((task, reason));
            }
        }
    }
    Ok(recovery)
}
