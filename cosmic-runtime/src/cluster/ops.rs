//! What a task's driver does differently in a cluster: its checkpoints go to write-once keys of
//! the shared store and become current through the coordinator; its end is recorded by the
//! coordinator's `finish`; a move is the coordinator's `transfer`, after which the destination
//! resumes from the checkpoint the move made current.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::commit::CommitError;
use super::coordinator::{CheckpointCommit, CheckpointRef, CoordinatorError, Owner};
use super::host::{ClusterHost, OwnedTask};
use super::layout;
use crate::checkpoint::{encode_outcome, CatalogError, CheckpointKey, Outcome, PutMode};
use crate::image;
use crate::runtime::{RuntimeInner, SpawnError};
use crate::state::Migratable;
use crate::task::{Task, TaskId};

/// How a cluster move ended, for the driver.
pub(crate) enum MoveResult {
    /// The task is `to`'s now (at its address).
    Moved { to: String, addr: String },
    /// The move did not happen; the task runs on here.
    Failed(CoordinatorError),
    /// The task is no longer this host's (fenced, or the coordinator's answer was lost and
    /// ownership must be read again): the driver stops; the next scan resumes it here if it is
    /// still ours.
    Lost(CoordinatorError),
}

impl ClusterHost {
    /// Records a new task: its first checkpoint, then its entry in the coordinator (owned
    /// here). A crash between the two leaves an image no entry points to, collected with the
    /// task's other leftovers.
    pub(crate) async fn spawn<T: Task>(&self, task: &T, id: TaskId) -> Result<(), SpawnError> {
        // From the moment its entry may be in the coordinator until it is in `owned`, a scan
        // must not take it for a task moved here (and start a second copy).
        struct Spawning<'a>(&'a ClusterHost, TaskId);
        impl Drop for Spawning<'_> {
            fn drop(&mut self) {
                self.0.spawning().remove(&self.1);
            }
        }
        self.spawning().insert(id);
        let _spawning = Spawning(self, id);
        self.record_spawn(task, id).await
    }

    async fn record_spawn<T: Task>(&self, task: &T, id: TaskId) -> Result<(), SpawnError> {
        let coordinator_error = |source| SpawnError::Coordinator {
            task: id,
            source: Arc::new(source),
        };
        let lease = self.lease().map_err(coordinator_error)?;
        let bytes =
            image::capture(task).map_err(|source| SpawnError::Capture { task: id, source })?;
        let key = layout::checkpoint_key(id, &self.name, lease.incarnation, self.next_seq(), 0);
        self.store
            .put(&key, Bytes::from(bytes), PutMode::Overwrite)
            .await
            .map_err(|source| SpawnError::Store {
                task: id,
                source: Arc::new(CatalogError::Store(source)),
            })?;
        let first = CheckpointRef { key, steps: 0 };
        let type_name = T::type_name();
        let token = self
            .coordinator
            .create(
                &lease,
                id,
                &type_name,
                &T::Output::type_name(),
                first.clone(),
            )
            .await
            .map_err(coordinator_error)?;
        // The lease may have ended while the coordinator worked: then the new task is an
        // orphan under an ended incarnation, taken over by another host (or this one once it
        // has joined again), and must not also start here.
        if self
            .own_under(&lease, id, type_name.into_owned(), token, &first, false)
            .is_none()
        {
            return Err(coordinator_error(CoordinatorError::LeaseEnded {
                host: lease.host.clone(),
                incarnation: lease.incarnation,
            }));
        }
        Ok(())
    }

    /// A sequence number never used before by this host's incarnation.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// Writes a checkpoint image of `task` and makes it current. Called by the task's
    /// persister, one write at a time per task.
    pub(crate) async fn persist(
        &self,
        task: TaskId,
        owned: &OwnedTask,
        key: CheckpointKey,
        image: Bytes,
    ) -> Result<(), CatalogError> {
        let lease = self.lease().map_err(|error| {
            CatalogError::NotCommitted(CommitError::NotCommitted {
                reason: error.to_string(),
            })
        })?;
        let store_key = layout::checkpoint_key(
            task,
            &self.name,
            lease.incarnation,
            self.next_seq(),
            key.steps,
        );
        self.store
            .put(&store_key, image, PutMode::Overwrite)
            .await?;
        let commit = CheckpointCommit {
            task,
            token: owned.token(),
            checkpoint: CheckpointRef {
                key: store_key.clone(),
                steps: key.steps,
            },
        };
        match self.committer.commit(commit).await {
            Ok(()) => {
                for old in owned.committed(store_key, self.keep) {
                    if let Err(error) = self.store.delete(&old).await {
                        tracing::warn!(%task, key = %old, %error, "failed to collect an old checkpoint");
                    }
                }
                Ok(())
            }
            Err(CommitError::Fenced(fenced)) => {
                owned.fence();
                // Never current, never will be: collect it now.
                let _ = self.store.delete(&store_key).await;
                Err(CatalogError::NotCommitted(CommitError::Fenced(fenced)))
            }
            // Whether it became current is unknown: it stays until the owner collects the
            // task's leftovers.
            Err(error) => Err(CatalogError::NotCommitted(error)),
        }
    }

    /// Records the end of `task` once and for all. Returns false if the task turned out not to
    /// be this host's any more (another host runs it and will record its end).
    pub(crate) async fn finish(&self, task: TaskId, owned: &OwnedTask, outcome: &Outcome) -> bool {
        owned.set_ending(true);
        let mut delay = Duration::from_millis(10);
        loop {
            let lease = match self.lease() {
                Ok(lease) => lease,
                Err(error) => {
                    tracing::warn!(%task, %error, "cannot record the end: the lease does not hold; the task will be taken over from its last checkpoint");
                    return false;
                }
            };
            let key = layout::outcome_key(task, &self.name, lease.incarnation);
            let result = async {
                let bytes = encode_outcome(&key, outcome)?;
                self.store.put(&key, bytes, PutMode::Overwrite).await?;
                Ok::<_, CatalogError>(())
            }
            .await;
            if let Err(error) = result {
                tracing::error!(%task, %error, "failed to write the outcome; retrying");
            } else {
                match self
                    .coordinator
                    .finish(&lease, task, owned.token(), &key)
                    .await
                {
                    Ok(()) => {
                        self.collect(task, Some(&key)).await;
                        return true;
                    }
                    Err(CoordinatorError::Fenced(fenced)) => {
                        tracing::warn!(%task, %fenced, "the task ended here but is no longer ours; its owner records the end");
                        owned.fence();
                        let _ = self.store.delete(&key).await;
                        return false;
                    }
                    Err(error @ CoordinatorError::LeaseEnded { .. }) => {
                        tracing::warn!(%task, %error, "cannot record the end");
                        self.lease_ended();
                        return false;
                    }
                    Err(error) => {
                        tracing::error!(%task, %error, "failed to record the end; retrying");
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Moves `task` to `to`: its image (captured at this safe point) becomes current in the
    /// same transaction that makes `to` the owner.
    pub(crate) async fn transfer(
        &self,
        runtime: &Arc<RuntimeInner>,
        task: TaskId,
        owned: &OwnedTask,
        to: &str,
        image: Bytes,
        steps: u64,
    ) -> MoveResult {
        let lease = match self.lease() {
            Ok(lease) => lease,
            Err(error) => return MoveResult::Failed(error),
        };
        let members = match self.coordinator.members().await {
            Ok(members) => members,
            Err(error) => return MoveResult::Failed(error),
        };
        let trusted = match self.coordinator.trusted().await {
            Ok(trusted) => trusted,
            Err(error) => return MoveResult::Failed(error),
        };
        let members = super::peers::trusted_members(members, &trusted);
        let Some(member) = members
            .iter()
            .find(|m| m.record.name == to && !m.record.draining)
        else {
            return MoveResult::Failed(CoordinatorError::NoSuchMember {
                host: to.to_owned(),
            });
        };
        if !member.record.types.contains(&owned.type_name) {
            return MoveResult::Failed(CoordinatorError::Invalid {
                what: "destination",
                reason: format!(
                    "`{to}` cannot run tasks of type `{}` (not registered there)",
                    owned.type_name
                ),
            });
        }
        let addr = member.record.addr.clone();
        let key =
            layout::checkpoint_key(task, &self.name, lease.incarnation, self.next_seq(), steps);
        if let Err(error) = self.store.put(&key, image, PutMode::Overwrite).await {
            return MoveResult::Failed(CoordinatorError::Unavailable {
                what: format!("writing the image of task {task} to the store"),
                source: Box::new(error),
            });
        }
        let checkpoint = CheckpointRef {
            key: key.clone(),
            steps,
        };
        // From here the coordinator may name `to` before this host hears back: its own scan
        // must not take that for a newer owner to fence.
        owned.set_ending(true);
        let result = self
            .transfer_committed(runtime, task, owned, to, &lease, checkpoint, key, addr)
            .await;
        if !matches!(result, MoveResult::Moved { .. }) {
            owned.set_ending(false);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn transfer_committed(
        &self,
        runtime: &Arc<RuntimeInner>,
        task: TaskId,
        owned: &OwnedTask,
        to: &str,
        lease: &super::Lease,
        checkpoint: CheckpointRef,
        key: String,
        addr: String,
    ) -> MoveResult {
        match self
            .coordinator
            .transfer(lease, task, owned.token(), to, checkpoint)
            .await
        {
            Ok(_) => {
                self.nudge(runtime, to);
                MoveResult::Moved {
                    to: to.to_owned(),
                    addr,
                }
            }
            Err(error @ CoordinatorError::Fenced(_)) => {
                owned.fence();
                let _ = self.store.delete(&key).await;
                MoveResult::Lost(error)
            }
            Err(error @ CoordinatorError::Unavailable { .. }) => {
                // The transfer may have happened: read ownership again.
                match self.coordinator.task(task).await {
                    Ok(Some(entry)) if entry.token == owned.token() => {
                        let _ = self.store.delete(&key).await;
                        MoveResult::Failed(error)
                    }
                    Ok(Some(entry)) if matches!(&entry.owner, Owner::Host { host, .. } if host == to) =>
                    {
                        self.nudge(runtime, to);
                        MoveResult::Moved {
                            to: to.to_owned(),
                            addr,
                        }
                    }
                    _ => {
                        owned.fence();
                        MoveResult::Lost(error)
                    }
                }
            }
            Err(error) => {
                let _ = self.store.delete(&key).await;
                MoveResult::Failed(error)
            }
        }
    }

    /// Tells `to` that a task is now its own, so it need not wait for its next scan.
    fn nudge(&self, runtime: &Arc<RuntimeInner>, to: &str) {
        if let Some(node) = &runtime.node {
            node.nudge(runtime, to);
        }
    }

    /// Removes what the store holds for `task` apart from `keep` (the current checkpoint, or
    /// the outcome): checkpoints of earlier owners and late writes of hosts that lost it.
    pub(crate) async fn collect(&self, task: TaskId, keep: Option<&str>) {
        let keys = match self.store.list(&layout::task_prefix(task)).await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%task, %error, "failed to list a task's leftovers");
                return;
            }
        };
        for key in keys {
            if Some(key.as_str()) != keep {
                if let Err(error) = self.store.delete(&key).await {
                    tracing::warn!(%task, %key, %error, "failed to collect a leftover");
                }
            }
        }
    }
}
