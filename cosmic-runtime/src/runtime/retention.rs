//! Retention: how long the store keeps what a finished task leaves, so that it does not grow
//! forever. A finished task's outcome (and task record) is kept for [`Retention::outcome_ttl`]
//! or until the program forgets it ([`Runtime::forget`](super::Runtime::forget)); then only a
//! tombstone is left, which keeps its id from running here again (a stale copy in the store
//! or offered by a peer is refused), itself bounded by count and age. A forwarding entry of a
//! task that moved away is replaced by a tombstone once this host learns that the task
//! finished (a handle here joins or locates it, or the sweep asks): the outcome is recorded
//! once, where the task ended. A sweep at start and then periodically does this, a bounded
//! amount each time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::ForgetError;
use super::RuntimeInner;
use crate::checkpoint::{Catalog, FinishedEntry, Outcome};
use crate::task::{TaskId, TaskStatus};

/// At most this many records are removed by one sweep; the rest wait for the next.
const SWEEP_BATCH: usize = 256;
/// At most this many forwarding entries are asked about by one sweep.
const PROBES_PER_SWEEP: usize = 16;

/// How long finished tasks' records are kept; see [`Builder::retention`](super::Builder::retention).
///
/// ```
/// use std::time::Duration;
/// use cosmic_runtime::runtime::Retention;
///
/// let retention = Retention::default()
///     .outcome_ttl(Duration::from_secs(3600))
///     .tombstones(10_000, Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(retention.outcome_ttl_value(), Some(Duration::from_secs(3600)));
/// assert_eq!(Retention::default().tombstone_max_count(), 100_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    outcome_ttl: Option<Duration>,
    tombstone_max_count: usize,
    tombstone_max_age: Duration,
    sweep_interval: Duration,
}

impl Default for Retention {
    /// Outcomes for 7 days; at most 100,000 tombstones, none older than 30 days; a sweep
    /// every minute.
    fn default() -> Self {
        Retention {
            outcome_ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            tombstone_max_count: 100_000,
            tombstone_max_age: Duration::from_secs(30 * 24 * 3600),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl Retention {
    /// Keeps a finished task's outcome this long after it finished, then forgets the task.
    pub fn outcome_ttl(mut self, ttl: Duration) -> Self {
        self.outcome_ttl = Some(ttl);
        self
    }

    /// Keeps outcomes until the program forgets them ([`Runtime::forget`](super::Runtime::forget)).
    pub fn keep_outcomes_until_forgotten(mut self) -> Self {
        self.outcome_ttl = None;
        self
    }

    /// Keeps at most `max_count` tombstones (the oldest go first), none older than `max_age`
    /// (counted from the task's end). Past them a forgotten task's id is no longer refused.
    pub fn tombstones(mut self, max_count: usize, max_age: Duration) -> Self {
        self.tombstone_max_count = max_count;
        self.tombstone_max_age = max_age;
        self
    }

    /// How often the sweep runs after the one at start (default every minute; at least 1 ms).
    pub fn sweep_every(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The outcome's time to live (`None`: until forgotten).
    pub fn outcome_ttl_value(&self) -> Option<Duration> {
        self.outcome_ttl
    }

    /// The most tombstones kept.
    pub fn tombstone_max_count(&self) -> usize {
        self.tombstone_max_count
    }

    /// How often the sweep runs.
    pub fn sweep_interval(&self) -> Duration {
        self.sweep_interval
    }

    /// The oldest a tombstone may be.
    pub fn tombstone_max_age(&self) -> Duration {
        self.tombstone_max_age
    }
}

/// What the runtime knows of the store's finished-task index (read once at start).
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    kept: BTreeSet<FinishedEntry>,
    kept_at: HashMap<TaskId, u64>,
    tombstones: BTreeSet<FinishedEntry>,
    /// The last forwarding entry a sweep asked about (they are asked in id order).
    probed: Option<TaskId>,
}

impl Ledger {
    pub(crate) fn keep(&mut self, entry: FinishedEntry) {
        if let Some(old) = self.kept_at.insert(entry.1, entry.0) {
            self.kept.remove(&(old, entry.1));
        }
        self.kept.insert(entry);
    }

    fn forgotten(&mut self, entry: FinishedEntry) {
        self.kept.remove(&entry);
        self.kept_at.remove(&entry.1);
        self.tombstones.insert(entry);
    }

    pub(crate) fn set_tombstones(&mut self, tombstones: impl IntoIterator<Item = FinishedEntry>) {
        self.tombstones = tombstones.into_iter().collect();
    }

    pub(crate) fn is_kept(&self, task: TaskId) -> bool {
        self.kept_at.contains_key(&task)
    }
}

/// Now, in milliseconds since the Unix epoch (wall time: it must mean the same after a restart).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A task's outcome is durable: note from when it is kept.
pub(crate) async fn finished(runtime: &RuntimeInner, catalog: &Catalog, task: TaskId) {
    let entry = (now_ms(), task);
    // Without the note the outcome is still there; the next start writes the note again.
    if let Err(error) = catalog.keep_outcome(entry).await {
        tracing::warn!(%task, %error, "failed to note the outcome for retention");
    }
    runtime.ledger().keep(entry);
}

/// [`Runtime::forget`](super::Runtime::forget).
pub(crate) async fn forget(runtime: &RuntimeInner, task: TaskId) -> Result<(), ForgetError> {
    let shared = runtime.task(task).ok_or(ForgetError::NotFound { task })?;
    if let Some(forward) = shared.forward() {
        return Err(ForgetError::Moved {
            task,
            host: forward.host,
        });
    }
    if !shared.status().is_finished() || shared.outcome().is_none() {
        return Err(ForgetError::NotFinished { task });
    }
    if let Some(cluster) = &runtime.cluster {
        // The coordinator's entry names the outcome record in the shared store: read it
        // before the entry goes, remove the record after (a crash in between leaves it
        // behind, unnamed).
        let coordinator_error = |source| ForgetError::Coordinator {
            task,
            source: Arc::new(source),
        };
        let outcome = match cluster.coordinator.task(task).await {
            Ok(Some(entry)) => match entry.owner {
                crate::cluster::Owner::Finished { outcome } => Some(outcome),
                _ => None,
            },
            Ok(None) => None,
            Err(source) => return Err(coordinator_error(source)),
        };
        cluster
            .coordinator
            .forget(task)
            .await
            .map_err(coordinator_error)?;
        if let Some(key) = outcome {
            if let Err(error) = cluster.store.delete(&key).await {
                tracing::warn!(%task, %error, "failed to remove the outcome record of a forgotten task");
            }
        }
    }
    if let Some(catalog) = &runtime.catalog {
        let at = runtime.ledger().kept_at.get(&task).copied();
        let entry = (at.unwrap_or_else(now_ms), task);
        forget_entry(runtime, catalog, entry)
            .await
            .map_err(|source| ForgetError::Store {
                task,
                source: Arc::new(source),
            })?;
    } else {
        runtime.tasks().remove(&task);
    }
    Ok(())
}

async fn forget_entry(
    runtime: &RuntimeInner,
    catalog: &Catalog,
    entry: FinishedEntry,
) -> Result<(), crate::checkpoint::CatalogError> {
    catalog.forget_task(entry).await?;
    runtime.ledger().forgotten(entry);
    runtime.tasks().remove(&entry.1);
    tracing::debug!(task = %entry.1, "forgot a finished task; its tombstone is kept");
    Ok(())
}

/// This host learned that `task`, which it had given away, ended with `outcome`: its
/// forwarding records go, leaving a tombstone (the outcome is recorded once, where the task
/// ended). Handles here keep the outcome in memory until the tombstone goes.
pub(crate) async fn learned(runtime: &RuntimeInner, task: TaskId, outcome: &Outcome) {
    let Some(shared) = runtime.task(task) else {
        return;
    };
    if shared.forward().is_none() {
        return;
    }
    if let Some(catalog) = &runtime.catalog {
        let entry = (now_ms(), task);
        if let Err(error) = catalog.forget_task(entry).await {
            tracing::warn!(%task, %error, "failed to remove the forwarding records of a finished task; trying again when next learned");
            return;
        }
        runtime.ledger().forgotten(entry);
    }
    if let Some(node) = &runtime.node {
        node.learned_finished(task);
    }
    shared.learned(outcome.clone());
    tracing::debug!(%task, "a task that moved away finished; its forwarding entry is collected");
}

/// One sweep: forgets outcomes past their time, removes tombstones beyond the bounds, and
/// (with `probe`) asks after a few forwarding entries. Bounded work; what is left waits for
/// the next one. The sweep at start does not probe: peers that are down would hold up the
/// start by a step timeout each.
pub(crate) async fn sweep(runtime: &Arc<RuntimeInner>, probe: bool) {
    let Some(catalog) = runtime.catalog.clone() else {
        return;
    };
    let retention = runtime.retention.clone();
    let mut budget = SWEEP_BATCH;
    if let Some(ttl) = retention.outcome_ttl {
        let deadline = now_ms().saturating_sub(ms(ttl));
        while budget > 0 {
            let next = runtime.ledger().kept.first().copied();
            let Some(entry) = next.filter(|(at, _)| *at <= deadline) else {
                break;
            };
            budget -= 1;
            if let Err(error) = forget_entry(runtime, &catalog, entry).await {
                tracing::warn!(task = %entry.1, %error, "failed to forget an expired outcome; trying again at the next sweep");
                break;
            }
        }
    }
    let oldest = now_ms().saturating_sub(ms(retention.tombstone_max_age));
    while budget > 0 {
        let next = {
            let ledger = runtime.ledger();
            let over = ledger.tombstones.len() > retention.tombstone_max_count;
            ledger
                .tombstones
                .first()
                .copied()
                .filter(|(at, _)| over || *at <= oldest)
        };
        let Some(entry) = next else {
            break;
        };
        budget -= 1;
        if let Err(error) = catalog.drop_tombstone(entry).await {
            tracing::warn!(task = %entry.1, %error, "failed to remove a tombstone; trying again at the next sweep");
            break;
        }
        runtime.ledger().tombstones.remove(&entry);
        if let Some(node) = &runtime.node {
            node.forget_finished(entry.1);
        }
        // A task learned finished elsewhere is still known here, in memory, until now.
        let mut tasks = runtime.tasks();
        if tasks
            .get(&entry.1)
            .is_some_and(|shared| shared.status().is_finished())
        {
            tasks.remove(&entry.1);
        }
    }
    if probe {
        probe_forwarding_entries(runtime).await;
    }
}

/// Asks where a few tasks that moved away are now, in id order from where the last sweep
/// stopped: locating a task that finished collects its forwarding entry here.
async fn probe_forwarding_entries(runtime: &Arc<RuntimeInner>) {
    if runtime.node.is_none() {
        return;
    }
    let after = runtime.ledger().probed;
    let mut moved: Vec<TaskId> = runtime
        .tasks()
        .values()
        .filter(|shared| matches!(shared.status(), TaskStatus::Moved(_)))
        .map(|shared| shared.id)
        .collect();
    moved.sort();
    let start = after.map_or(0, |after| moved.partition_point(|id| *id <= after));
    let batch: Vec<TaskId> = moved[start..]
        .iter()
        .chain(moved[..start].iter())
        .take(PROBES_PER_SWEEP)
        .copied()
        .collect();
    for task in batch {
        runtime.ledger().probed = Some(task);
        if let Err(error) = super::migrate::follow::locate(runtime, task).await {
            tracing::debug!(%task, %error, "could not locate a task that moved away");
        }
    }
}

/// Sweeps every [`Retention::sweep_every`] until the runtime is gone or shuts down.
pub(crate) async fn sweep_loop(runtime: Weak<RuntimeInner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        if runtime.is_shutting_down() {
            return;
        }
        sweep(&runtime, true).await;
    }
}
