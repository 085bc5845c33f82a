//! Writing a task's checkpoints off the task's path: at most one write in flight per task, and
//! a newer capture supersedes one still queued (its waiters are answered by the newer one,
//! which holds later state; the host's [`StoreMeter`] counts it, as work thrown away).
//!
//! Writes of many tasks share the store's cost of durability there: a `FileStore` writes the
//! puts that arrive together as one batch (group commit, see `group_commit.rs`). Every write is
//! timed on the [`StoreMeter`], which bounds the adaptive interval by what the store absorbs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use super::{Catalog, CatalogError, CheckpointKey, StoreMeter};
use crate::cluster::{ClusterHost, OwnedTask};
use crate::task::TaskId;

/// Answer to a waiter: the checkpoint that made its request durable.
pub(crate) type PersistResult = Result<CheckpointKey, Arc<CatalogError>>;

/// A captured image waiting to be written.
pub(crate) struct PersistRequest {
    pub(crate) key: CheckpointKey,
    pub(crate) image: Vec<u8>,
    pub(crate) waiters: Vec<oneshot::Sender<PersistResult>>,
}

/// Written-out capture buffers kept for reuse: two, so that back-to-back checkpoints find one
/// free while the other is being written.
const SPARE_BUFFERS: usize = 2;

#[derive(Default)]
struct Slot {
    queued: Option<PersistRequest>,
    writing: bool,
    closed: bool,
}

/// Called after every write with the key, its size and what happened.
pub(crate) type WriteObserver =
    Arc<dyn Fn(TaskId, CheckpointKey, usize, &PersistResult) + Send + Sync>;

/// The write queue of one task; see the module docs.
/// Where a task's checkpoints go: its host's own store, or a cluster's shared store (made
/// current through the coordinator).
pub(crate) enum Target {
    Catalog(Catalog),
    Cluster(Arc<ClusterHost>, Arc<OwnedTask>),
}

pub(crate) struct Persister {
    task: TaskId,
    target: Target,
    slot: Mutex<Slot>,
    spare: Mutex<Vec<Vec<u8>>>,
    wake: Notify,
    idle: Notify,
    observer: WriteObserver,
    meter: Arc<StoreMeter>,
}

impl Persister {
    /// Starts the writer of `task`'s checkpoints on the current tokio runtime.
    pub(crate) fn start(
        task: TaskId,
        target: Target,
        observer: WriteObserver,
        meter: Arc<StoreMeter>,
    ) -> Arc<Persister> {
        let persister = Arc::new(Persister {
            task,
            target,
            slot: Mutex::new(Slot::default()),
            spare: Mutex::new(Vec::new()),
            wake: Notify::new(),
            idle: Notify::new(),
            observer,
            meter,
        });
        tokio::spawn(Arc::clone(&persister).run());
        persister
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an image, replacing (and inheriting the waiters of) one not yet being written.
    pub(crate) fn submit(&self, mut request: PersistRequest) {
        let mut slot = self.slot();
        if let Some(superseded) = slot.queued.take() {
            request.waiters.extend(superseded.waiters);
            self.meter.superseded();
        }
        slot.queued = Some(request);
        drop(slot);
        self.wake.notify_one();
    }

    /// A buffer whose image has been written, for the next capture to reuse.
    pub(crate) fn take_spare(&self) -> Option<Vec<u8>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Waits until nothing is queued or being written.
    pub(crate) async fn flush(&self) {
        loop {
            let idle = self.idle.notified();
            {
                let slot = self.slot();
                if slot.queued.is_none() && !slot.writing {
                    return;
                }
            }
            idle.await;
        }
    }

    /// Writes what is queued, then stops the writer.
    pub(crate) async fn close(&self) {
        self.flush().await;
        self.slot().closed = true;
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        // This task counts among the store's writers while its writer runs.
        let _writer = self.meter.writer();
        loop {
            let wake = self.wake.notified();
            let next = {
                let mut slot = self.slot();
                let next = slot.queued.take();
                slot.writing = next.is_some();
                if next.is_none() && slot.closed {
                    return;
                }
                next
            };
            let Some(request) = next else {
                self.idle.notify_waiters();
                wake.await;
                continue;
            };
            let started = Instant::now();
            let size = request.image.len();
            let image = Bytes::from(request.image);
            self.meter.write_started();
            let result = match &self.target {
                Target::Catalog(catalog) => {
                    catalog
                        .put_checkpoint_image(self.task, request.key, image.clone())
                        .await
                }
                Target::Cluster(host, owned) => {
                    host.persist(self.task, owned, request.key, image.clone())
                        .await
                }
            }
            .map(|()| request.key)
            .map_err(Arc::new);
            self.meter.write_finished();
            // The store has let go of its copy: keep the buffer for a later capture.
            if let Ok(buffer) = image.try_into_mut() {
                let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
                if spare.len() < SPARE_BUFFERS {
                    spare.push(Vec::from(buffer));
                }
            }
            match &result {
                Ok(key) => {
                    tracing::debug!(task = %self.task, seq = key.seq, bytes = size, elapsed = ?started.elapsed(), "checkpoint durable")
                }
                Err(error) => {
                    tracing::warn!(task = %self.task, seq = request.key.seq, error = %crate::ErrorChain(&error), "checkpoint write failed; the previous checkpoint is kept")
                }
            }
            (self.observer)(self.task, request.key, size, &result);
            for waiter in request.waiters {
                let _ = waiter.send(result.clone());
            }
            // Pruning comes after the answer: the new image is durable, and deleting a large
            // old one waits on the file system for as long as writing it did.
            if let (Ok(_), Target::Catalog(catalog)) = (&result, &self.target) {
                if let Err(error) = catalog.prune_checkpoints(self.task).await {
                    tracing::warn!(task = %self.task, error = %crate::ErrorChain(&error), "failed to remove old checkpoints");
                }
            }
            self.slot().writing = false;
            self.idle.notify_waiters();
        }
    }
}
