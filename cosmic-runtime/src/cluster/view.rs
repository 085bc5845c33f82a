//! [`ClusterView`]: the cluster as an operator or a client program sees it, read from the
//! coordinator and the shared store without being a member: who is alive and how loaded, every
//! task with its owner, token and current checkpoint, and the outcome of finished tasks.
//! `cosmic status` prints it; the quickstart checks its results through it.

use std::sync::Arc;

use super::coordinator::{Coordinator, CoordinatorError, Member, Owner, TaskEntry};
use crate::checkpoint::{decode_outcome, CatalogError, CheckpointStore, Outcome};
use crate::image::{self, RestoreError};
use crate::state::Migratable;
use crate::task::TaskId;

/// A read-only view of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    coordinator: Arc<dyn Coordinator>,
    store: Arc<dyn CheckpointStore>,
}

/// Why a view could not tell something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The coordinator did not answer.
    #[error("failed to read the coordinator")]
    Coordinator(#[from] CoordinatorError),
    /// The shared store did not answer, or holds a damaged record.
    #[error("failed to read the shared store")]
    Store(#[from] CatalogError),
    /// The task's output is not of the type asked for.
    #[error("task {task}'s output does not decode as the type asked for")]
    Output {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: RestoreError,
    },
}

impl ClusterView {
    /// A view through `coordinator` and the shared `store`.
    pub fn new(coordinator: Arc<dyn Coordinator>, store: Arc<dyn CheckpointStore>) -> ClusterView {
        ClusterView { coordinator, store }
    }

    /// The live members.
    pub async fn members(&self) -> Result<Vec<Member>, ViewError> {
        Ok(self.coordinator.members().await?)
    }

    /// Every task the coordinator knows.
    pub async fn tasks(&self) -> Result<Vec<TaskEntry>, ViewError> {
        Ok(self.coordinator.tasks().await?)
    }

    /// The outcome of `task` if it finished (None while it runs, or if unknown).
    pub async fn outcome(&self, task: TaskId) -> Result<Option<Outcome>, ViewError> {
        let Some(entry) = self.coordinator.task(task).await? else {
            return Ok(None);
        };
        let Owner::Finished { outcome } = &entry.owner else {
            return Ok(None);
        };
        let bytes = self.store.get(outcome).await.map_err(CatalogError::Store)?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        Ok(Some(decode_outcome(outcome, &bytes)?))
    }

    /// The output of `task` if it completed, decoded as `O`; None while it runs (or if it
    /// failed or was cancelled: see [`outcome`](Self::outcome)).
    pub async fn output<O: Migratable>(&self, task: TaskId) -> Result<Option<O>, ViewError> {
        match self.outcome(task).await? {
            Some(Outcome::Completed(bytes)) => image::restore(&bytes)
                .map(Some)
                .map_err(|source| ViewError::Output { task, source }),
            _ => Ok(None),
        }
    }
}
