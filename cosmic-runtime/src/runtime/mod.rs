//! The [`Runtime`]: spawns tasks, drives them step by step, checkpoints them at safe points,
//! and on start resumes every unfinished task found in its store.

mod builder;
mod driver;
mod error;
mod handle;
// Internal: public for the integration tests and benches only, hidden from the docs.
#[doc(hidden)]
pub mod migrate;
mod recovery;
mod recovery_error;
pub(crate) mod retention;
mod retry;
mod shared;
mod stats;
mod step_guard;
mod task_types;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use builder::Builder;
pub use error::{BuildError, ControlError, ForgetError, HandleError, JoinError, SpawnError};
pub use handle::TaskHandle;
pub use migrate::{CopyError, DrainReport, HandoffStep, LocateError, MigrateError, TaskLocation};
pub use recovery_error::{CheckpointUnusable, RecoveryError};
pub use retention::Retention;
pub use retry::RetryPolicy;
pub use stats::RuntimeStats;

use crate::checkpoint::{Catalog, CheckpointKey, Clock, Policy, TaskRecord};
use crate::image;
use crate::state::Migratable;
use crate::task::{Task, TaskId, TaskStatus};
pub(crate) use shared::Control;
use shared::TaskShared;
use stats::StatsCounters;
use task_types::TaskTypes;

/// What the runtime found in its store when it started.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Unfinished tasks resumed from a checkpoint, with the checkpoint used.
    pub resumed: Vec<(TaskId, CheckpointKey)>,
    /// Finished tasks whose outcome is available through [`Runtime::handle`].
    pub finished: Vec<TaskId>,
    /// Tasks that could not be resumed, and why (print the cause with
    /// [`ErrorChain`](crate::ErrorChain)). Each is also logged (`warn` or `error`), and
    /// [`Runtime::handle`] answers for it with [`HandleError::NotResumed`].
    pub failed: Vec<(TaskId, RecoveryError)>,
    /// Tasks not resumed because they were resumed from the same checkpoint too many times in
    /// a row without getting further (their step brought the host down; see
    /// [`Builder::quarantine_after`]), and why.
    pub quarantined: Vec<(TaskId, String)>,
    /// Tasks that had moved to another host (kept as forwarding entries), with the host.
    pub moved: Vec<(TaskId, String)>,
    /// Tasks that were arriving from a peer when the host stopped; the host asks the source
    /// how the hand-off ended and runs them if it committed.
    pub in_doubt: Vec<TaskId>,
}

/// Runs tasks. Built with [`Runtime::builder`]; cheap to clone (clones share the runtime).
///
/// ```
/// # use cosmic_runtime::runtime::Runtime;
/// # use cosmic_runtime::checkpoint::{MemoryStore, Policy};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rt = Runtime::builder()
///     .host("alpha")
///     .store(MemoryStore::new())
///     .checkpoint(Policy::every_steps(10))
///     .build()
///     .await?;
/// assert_eq!(rt.host(), "alpha");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) host: String,
    pub(crate) catalog: Option<Catalog>,
    policy: Policy,
    clock: Arc<dyn Clock>,
    verify_every: Option<u64>,
    retry: RetryPolicy,
    /// How long a step may run before it is reported (`Builder::slow_step_warning`).
    slow_step: Option<std::time::Duration>,
    quarantine_after: u32,
    pub(crate) types: TaskTypes,
    pub(crate) node: Option<migrate::node::Node>,
    /// Membership of a cluster, with a coordinator (`Builder::cluster`).
    pub(crate) cluster: Option<Arc<crate::cluster::ClusterHost>>,
    /// Steps completed by every task here (the load the host publishes).
    steps_total: std::sync::atomic::AtomicU64,
    tasks: Mutex<HashMap<TaskId, Arc<TaskShared>>>,
    running: Mutex<std::collections::HashSet<TaskId>>,
    /// Tasks that may have an attempts record in the store (resumed, retried or arrived with
    /// tries): their end removes it; the others' ends need not ask the store.
    with_attempts: Mutex<std::collections::HashSet<TaskId>>,
    stats: Arc<StatsCounters>,
    shutting_down: AtomicBool,
    recovery: Mutex<Recovery>,
    /// How long finished tasks' records are kept, and what the store's index says of them.
    pub(crate) retention: Retention,
    ledger: Mutex<retention::Ledger>,
}

impl std::fmt::Debug for RuntimeInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("host", &self.host)
            .field("policy", &self.policy)
            .field("store", &self.catalog.as_ref().map(Catalog::store))
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with the defaults: host "local", no store, [`Policy::default`].
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The name of this host.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Starts `task`. Returns once its first checkpoint (and its record) is durable in the
    /// store, so from then on a crash cannot lose it; without a store, at once.
    pub async fn spawn<T: Task>(&self, task: T) -> Result<TaskHandle<T::Output>, SpawnError> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(SpawnError::ShutDown);
        }
        self.inner.types.register::<T>();
        let id = TaskId::random();
        let first = CheckpointKey { seq: 0, steps: 0 };
        if let Some(cluster) = &self.inner.cluster {
            cluster.spawn(&task, id).await?;
            let shared = driver::start(&self.inner, id, task, first, first.seq + 1, 0, false);
            return Ok(TaskHandle::new(shared, Arc::downgrade(&self.inner)));
        }
        if let (Some(catalog), true) = (&self.inner.catalog, self.inner.policy != Policy::Never) {
            let started = std::time::Instant::now();
            let bytes =
                image::capture(&task).map_err(|source| SpawnError::Capture { task: id, source })?;
            self.inner.stats.captured(started.elapsed());
            let size = bytes.len();
            let store_error = |source| SpawnError::Store {
                task: id,
                source: Arc::new(source),
            };
            // The image first, then the record: a record always has an image behind it, and an
            // image without a record is a spawn that never returned, removed at the next start.
            catalog
                .put_checkpoint(id, first, bytes.into())
                .await
                .map_err(store_error)?;
            self.inner.stats.written(size);
            catalog
                .create_task(
                    id,
                    &TaskRecord {
                        type_name: T::type_name().into_owned(),
                        output_type: T::Output::type_name().into_owned(),
                    },
                )
                .await
                .map_err(store_error)?;
        }
        if let Some(node) = &self.inner.node {
            node.step(crate::handoff::Event::Spawned { task: id });
        }
        let shared = driver::start(&self.inner, id, task, first, first.seq + 1, 0, false);
        Ok(TaskHandle::new(shared, Arc::downgrade(&self.inner)))
    }

    /// A handle to a task of this runtime (running, or finished and recorded in the store),
    /// typed by its output.
    pub fn handle<O: Migratable>(&self, task: TaskId) -> Result<TaskHandle<O>, HandleError> {
        let Some(shared) = self.inner.task(task) else {
            return Err(self.not_found(task));
        };
        let requested = O::type_name();
        if shared.output_type != requested {
            return Err(HandleError::OutputType {
                task,
                requested: requested.into_owned(),
                actual: shared.output_type.clone(),
            });
        }
        Ok(TaskHandle::new(shared, Arc::downgrade(&self.inner)))
    }

    /// The program is done with `task`, which finished here: its outcome and records are
    /// removed from the store now, rather than when [`Retention`] says, and its handles here
    /// no longer find it. A tombstone keeps its id from running here again (see
    /// [`Retention::tombstones`]). Refused for a task that has not finished or moved away.
    pub async fn forget(&self, task: TaskId) -> Result<(), ForgetError> {
        retention::forget(&self.inner, task).await
    }

    /// Why `task` has no entry here: it is in the store but was not resumed, or it is unknown.
    fn not_found(&self, task: TaskId) -> HandleError {
        let recovery = self
            .inner
            .recovery
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match recovery.failed.iter().find(|(failed, _)| *failed == task) {
            Some((_, RecoveryError::UnregisteredType { type_name })) => {
                HandleError::UnregisteredType {
                    task,
                    type_name: type_name.clone(),
                }
            }
            Some((_, error)) => HandleError::NotResumed {
                task,
                source: error.clone(),
            },
            None => HandleError::NotFound { task },
        }
    }

    /// Every task this runtime knows, with its status.
    pub fn tasks(&self) -> Vec<(TaskId, TaskStatus)> {
        let mut tasks: Vec<_> = self
            .inner
            .tasks()
            .values()
            .map(|shared| (shared.id, shared.status()))
            .collect();
        tasks.sort_by_key(|(id, _)| *id);
        tasks
    }

    /// What the runtime found in its store when it started.
    pub fn recovery(&self) -> Recovery {
        self.inner
            .recovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A snapshot of the runtime's counters.
    pub fn stats(&self) -> RuntimeStats {
        let tasks: Vec<TaskStatus> = self.inner.tasks().values().map(|t| t.status()).collect();
        self.inner.stats.snapshot(&tasks, self.inner.clock.now())
    }

    /// The address this host listens on for peers (None unless built with `listen`).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.node.as_ref().map(|node| node.addr)
    }

    /// This host's public key (None unless built with `listen`): what its peers must trust
    /// it by ([`Builder::trust_peer`], [`trust_peer`](Self::trust_peer)).
    pub fn public_key(&self) -> Option<crate::transport::PublicKey> {
        self.inner
            .node
            .as_ref()
            .map(|node| node.key.host_key.public_key())
    }

    /// Trusts `key` as the public key of host `name` from now on (replacing any key trusted for
    /// it before), for connections in both directions: the runtime's counterpart of
    /// [`Builder::trust_peer`].
    pub fn trust_peer(
        &self,
        name: crate::transport::NodeName,
        key: crate::transport::PublicKey,
    ) -> Result<(), MigrateError> {
        let node = self.inner.node.as_ref().ok_or(MigrateError::NotAHost)?;
        node.key.trusted.trust(name, key);
        Ok(())
    }

    /// Adds (or changes) a peer this host can move tasks to.
    pub fn add_peer(
        &self,
        name: impl Into<String>,
        addr: std::net::SocketAddr,
    ) -> Result<(), MigrateError> {
        let node = self.inner.node.as_ref().ok_or(MigrateError::NotAHost)?;
        node.add_peer(name.into(), addr);
        Ok(())
    }

    /// Drains this host: moves every running or paused task to `host`, a few at a time, and
    /// reports what happened to each. Tasks the peer refuses, or that fail to move, keep
    /// running here. Fails as a whole only if `host` is not a known peer.
    pub async fn migrate_to(&self, host: &str) -> Result<DrainReport, MigrateError> {
        migrate::drain(&self.inner, host).await
    }

    /// Finds a task this host knows (running here, finished here, or moved away), following
    /// forwarding entries from host to host.
    pub async fn locate(&self, task: TaskId) -> Result<TaskLocation, LocateError> {
        migrate::follow::locate(&self.inner, task).await
    }

    /// Leaves the cluster (a host told to stop: SIGTERM, a spot-instance notice): takes no new
    /// tasks, moves its tasks to the other hosts within `deadline`, checkpoints whatever could
    /// not leave in time, and ends its lease at once so the others take those over without
    /// waiting for it to run out. The runtime is shut down afterwards.
    pub async fn leave(
        &self,
        deadline: std::time::Duration,
    ) -> Result<crate::cluster::LeaveReport, MigrateError> {
        let cluster = self
            .inner
            .cluster
            .as_ref()
            .ok_or(MigrateError::NotInCluster)?;
        let report = crate::cluster::leave(&self.inner, cluster, deadline).await;
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        Ok(report)
    }

    /// Drains this cluster member and keeps it a member (before maintenance: `cosmic drain`):
    /// it takes no new task from now on (published at once, so the others stop choosing it),
    /// and every task it owns moves to `to`, or, with `None`, is spread by load over the other
    /// trusted live members. Returns once every move is decided; tasks that could not move
    /// run on here, and the report says why. The host stays draining until it restarts.
    /// Refused if `to` is not a trusted live member taking tasks.
    pub async fn drain_cluster(
        &self,
        to: Option<&str>,
    ) -> Result<crate::cluster::ClusterDrainReport, MigrateError> {
        let cluster = self
            .inner
            .cluster
            .as_ref()
            .ok_or(MigrateError::NotInCluster)?;
        if let Some(to) = to {
            crate::cluster::check_destination(cluster, to).await?;
        }
        Ok(crate::cluster::drain(&self.inner, cluster, to, None).await)
    }

    /// Moves `task`, which this cluster member owns, to member `to` (`cosmic migrate`):
    /// returns once the move is decided. [`MigrateError::NotHere`] says where the coordinator
    /// says the task is if it is not here.
    pub async fn move_task(&self, task: TaskId, to: &str) -> Result<(), MigrateError> {
        move_task(&self.inner, task, to, &self.inner.host).await
    }

    /// What the cluster did with tasks on this host: moves made by the balancer or a leave,
    /// takeovers, arrivals, tasks fenced or given up. Empty outside a cluster.
    pub fn cluster_events(&self) -> Vec<crate::cluster::ClusterEvent> {
        self.inner
            .cluster
            .as_ref()
            .map(|cluster| cluster.events())
            .unwrap_or_default()
    }

    /// Pins a task to this host (or unpins it): the balancer leaves pinned tasks alone. A
    /// leave or an explicit move still moves them.
    pub fn pin(&self, task: TaskId, pinned: bool) -> Result<(), HandleError> {
        let owned = self
            .inner
            .cluster
            .as_ref()
            .and_then(|cluster| cluster.owned_task(task))
            .ok_or(HandleError::NotFound { task })?;
        owned.set_pinned(pinned);
        Ok(())
    }

    /// Stops every task at its next safe point, takes a last checkpoint of each (with a
    /// store), and waits until they are durable. Tasks resume at the next start on the store.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let running: Vec<Arc<TaskShared>> = self.inner.tasks().values().cloned().collect();
        let mut waits = Vec::new();
        for shared in running {
            let (done, wait) = tokio::sync::oneshot::channel();
            if shared.send(Control::Shutdown(done)) {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
        if let Some(cluster) = &self.inner.cluster {
            // The last checkpoints are current: end the lease now, so that the other hosts
            // take the tasks over without waiting for it to run out.
            if let Some(lease) = cluster.give_up_lease() {
                if let Err(error) = cluster.coordinator.leave(&lease).await {
                    tracing::warn!(host = %cluster.name, error = %crate::ErrorChain(&error), "failed to end the lease at shutdown");
                }
            }
        }
    }
}

impl RuntimeInner {
    pub(crate) fn tasks(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<TaskShared>>> {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn ledger(&self) -> MutexGuard<'_, retention::Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn task(&self, task: TaskId) -> Option<Arc<TaskShared>> {
        self.tasks().get(&task).cloned()
    }

    /// Counts a step done by some task here.
    pub(crate) fn step_done(&self) {
        self.steps_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes that `task` may have an attempts record in the store.
    pub(crate) fn mark_attempts(&self, task: TaskId) {
        self.with_attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(task);
    }

    /// Whether `task` may have an attempts record.
    pub(crate) fn has_attempts_mark(&self, task: TaskId) -> bool {
        self.with_attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&task)
    }

    /// Whether `task` may have an attempts record (forgetting it).
    pub(crate) fn take_attempts_mark(&self, task: TaskId) -> bool {
        self.with_attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&task)
    }

    /// Steps done by every task here since the start.
    pub(crate) fn total_steps(&self) -> u64 {
        self.steps_total.load(Ordering::Relaxed)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The tasks whose driver runs here (running or paused), kept up to date by the drivers
    /// so that capacity checks need not walk every task the runtime knows.
    pub(crate) fn running(&self) -> MutexGuard<'_, std::collections::HashSet<TaskId>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`Runtime::move_task`], on behalf of `by` (this host, or the peer that asked).
pub(crate) async fn move_task(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    to: &str,
    by: &str,
) -> Result<(), MigrateError> {
    let cluster = runtime.cluster.as_ref().ok_or(MigrateError::NotInCluster)?;
    crate::cluster::move_task(runtime, cluster, task, to, by).await
}
