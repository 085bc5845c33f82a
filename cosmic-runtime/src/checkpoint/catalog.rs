//! How tasks are laid out in a [`CheckpointStore`]:
//!
//! ```text
//! tasks/<task id>/task                        TaskRecord: type names, written once
//! tasks/<task id>/ckpt/<seq:020>-<steps:020>  an image; the newest K are kept
//! tasks/<task id>/outcome                     Outcome: output, failure or cancellation, written once
//! tasks/<task id>/epoch/<epoch:020>.<kind>     who owns the task since when (see `ownership.rs`)
//! tasks/<task id>/attempts                    tries after panics, resumes without progress (`attempts.rs`)
//! finished/kept/<at>.<task id>                  a finished task whose outcome is kept (`finished.rs`)
//! finished/tombstone/<at>.<task id>             a forgotten task: its id must not run again
//! ```
//! Records are themselves images (checksummed, versioned), so a damaged record is detected
//! like a damaged checkpoint.

use std::sync::Arc;

use bytes::Bytes;

use super::{CheckpointStore, PutMode, StoreError};
use crate::image::{self, CaptureError, RestoreError};
use crate::state::BulkVec;
use crate::task::TaskId;

/// Names one checkpoint of a task: its sequence number and the steps completed when taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointKey {
    /// Increases by one with every checkpoint of the task.
    pub seq: u64,
    /// Steps the task had completed when the image was captured.
    pub steps: u64,
}

/// What a task is, recorded when it is spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task's type (its wire name).
    pub type_name: String,
    /// The output's type.
    pub output_type: String,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished; the output as an image.
    Completed(Bytes),
    /// A step failed with this message.
    Failed(String),
    /// Cancelled.
    Cancelled,
}

impl TaskRecord {
    /// Decodes a task record from the bytes of its image (the value under `tasks/<id>/task`).
    pub fn decode(bytes: &[u8]) -> Result<TaskRecord, RestoreError> {
        let (type_name, output_type) = image::restore::<(String, String)>(bytes)?;
        Ok(TaskRecord {
            type_name,
            output_type,
        })
    }
}

impl Outcome {
    /// Decodes an outcome record from the bytes of its image (the value under
    /// `tasks/<id>/outcome`).
    pub fn decode(bytes: &[u8]) -> Result<Outcome, RestoreError> {
        let (kind, message, output) = image::restore::<(u8, String, BulkVec<u8>)>(bytes)?;
        Ok(match kind {
            OUTCOME_COMPLETED => Outcome::Completed(Bytes::from(output.0)),
            OUTCOME_FAILED => Outcome::Failed(message),
            _ => Outcome::Cancelled,
        })
    }
}

/// Error returned by [`Catalog`] operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record could not be encoded (never written half-made).
    #[error("failed to encode record `{key}`")]
    Encode {
        /// The record's key.
        key: String,
        /// Why.
        #[source]
        source: CaptureError,
    },
    /// A checkpoint was written to the shared store but the coordinator did not make it
    /// current (the task is another host's now, or the coordinator did not answer).
    #[error("checkpoint not made current")]
    NotCommitted(#[source] crate::cluster::CommitError),
    /// A record in the store does not decode.
    #[error("record `{key}` is damaged")]
    Damaged {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        #[source]
        source: RestoreError,
    },
}

/// The layout of tasks in a store; see the module docs.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn CheckpointStore>,
    keep: usize,
}

const OUTCOME_COMPLETED: u8 = 0;
const OUTCOME_FAILED: u8 = 1;
const OUTCOME_CANCELLED: u8 = 2;

impl Catalog {
    /// A catalog over `store` that keeps the newest `keep` checkpoints of each task.
    pub fn new(store: Arc<dyn CheckpointStore>, keep: usize) -> Self {
        Catalog {
            store,
            keep: keep.max(1),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    pub(super) fn task_key(task: TaskId) -> String {
        format!("tasks/{task}/task")
    }

    pub(super) fn outcome_key(task: TaskId) -> String {
        format!("tasks/{task}/outcome")
    }

    fn checkpoint_prefix(task: TaskId) -> String {
        format!("tasks/{task}/ckpt/")
    }

    pub(super) fn checkpoint_key(task: TaskId, key: CheckpointKey) -> String {
        format!("tasks/{task}/ckpt/{:020}-{:020}", key.seq, key.steps)
    }

    /// Records what `task` is. Written once, after its first checkpoint is durable.
    pub async fn create_task(&self, task: TaskId, record: &TaskRecord) -> Result<(), CatalogError> {
        let bytes = encode(
            &Self::task_key(task),
            &(record.type_name.clone(), record.output_type.clone()),
        )?;
        match self
            .store
            .put(&Self::task_key(task), bytes, PutMode::Create)
            .await
        {
            Ok(()) => Ok(()),
            // A task that comes back to a host it lived on, or a retry after an unclear
            // failure, finds its own record.
            Err(StoreError::AlreadyExists { .. })
                if self.task_record(task).await?.as_ref() == Some(record) =>
            {
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// What `task` is, if it was recorded.
    pub async fn task_record(&self, task: TaskId) -> Result<Option<TaskRecord>, CatalogError> {
        let key = Self::task_key(task);
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        TaskRecord::decode(&bytes)
            .map(Some)
            .map_err(|source| CatalogError::Damaged { key, source })
    }

    /// Stores a checkpoint image of `task`, then removes checkpoints beyond the newest K.
    /// Older images are only removed once the new one is durable.
    pub async fn put_checkpoint(
        &self,
        task: TaskId,
        key: CheckpointKey,
        image: Bytes,
    ) -> Result<(), CatalogError> {
        self.put_checkpoint_image(task, key, image).await?;
        self.prune_checkpoints(task).await
    }

    /// Stores a checkpoint image of `task`, durably, without pruning older ones.
    pub async fn put_checkpoint_image(
        &self,
        task: TaskId,
        key: CheckpointKey,
        image: Bytes,
    ) -> Result<(), CatalogError> {
        self.store
            .put(&Self::checkpoint_key(task, key), image, PutMode::Overwrite)
            .await?;
        Ok(())
    }

    /// Removes the checkpoints of `task` beyond the newest K.
    pub async fn prune_checkpoints(&self, task: TaskId) -> Result<(), CatalogError> {
        let existing = self.checkpoints(task).await?;
        let surplus = existing.len().saturating_sub(self.keep);
        for old in existing.into_iter().take(surplus) {
            self.store.delete(&Self::checkpoint_key(task, old)).await?;
        }
        Ok(())
    }

    /// The checkpoints of `task`, oldest first. Keys that do not parse are ignored.
    pub async fn checkpoints(&self, task: TaskId) -> Result<Vec<CheckpointKey>, CatalogError> {
        let prefix = Self::checkpoint_prefix(task);
        let mut keys: Vec<CheckpointKey> = self
            .store
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|key| parse_checkpoint_key(&key[prefix.len()..]))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// The image of one checkpoint, if it is still there.
    pub async fn checkpoint(
        &self,
        task: TaskId,
        key: CheckpointKey,
    ) -> Result<Option<Bytes>, CatalogError> {
        Ok(self.store.get(&Self::checkpoint_key(task, key)).await?)
    }

    /// Removes one checkpoint image.
    pub async fn delete_checkpoint(
        &self,
        task: TaskId,
        key: CheckpointKey,
    ) -> Result<(), CatalogError> {
        self.store.delete(&Self::checkpoint_key(task, key)).await?;
        Ok(())
    }

    /// Records how `task` ended (once: a second, different outcome is refused by the store).
    pub async fn put_outcome(&self, task: TaskId, outcome: &Outcome) -> Result<(), CatalogError> {
        let key = Self::outcome_key(task);
        let bytes = encode_outcome(&key, outcome)?;
        match self.store.put(&key, bytes, PutMode::Create).await {
            Ok(()) => Ok(()),
            // The same outcome written twice (a retry after an unclear failure) is fine.
            Err(StoreError::AlreadyExists { .. })
                if self.outcome(task).await?.as_ref() == Some(outcome) =>
            {
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// How `task` ended, if it has.
    pub async fn outcome(&self, task: TaskId) -> Result<Option<Outcome>, CatalogError> {
        let key = Self::outcome_key(task);
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        decode_outcome(&key, &bytes).map(Some)
    }

    /// Removes every checkpoint of a finished task.
    pub async fn retire_checkpoints(&self, task: TaskId) -> Result<(), CatalogError> {
        for key in self.checkpoints(task).await? {
            self.store.delete(&Self::checkpoint_key(task, key)).await?;
        }
        Ok(())
    }

    /// Removes everything of `task` (a spawn that never completed).
    pub async fn remove_task(&self, task: TaskId) -> Result<(), CatalogError> {
        for key in self.store.list(&format!("tasks/{task}/")).await? {
            self.store.delete(&key).await?;
        }
        Ok(())
    }

    /// Every task with anything in the store.
    pub async fn tasks(&self) -> Result<Vec<TaskId>, CatalogError> {
        let mut tasks: Vec<TaskId> = self
            .store
            .list("tasks/")
            .await?
            .iter()
            .filter_map(|key| key.strip_prefix("tasks/")?.split('/').next()?.parse().ok())
            .collect();
        tasks.dedup();
        Ok(tasks)
    }
}

pub(super) fn encode<T: crate::state::Migratable>(
    key: &str,
    record: &T,
) -> Result<Bytes, CatalogError> {
    image::capture(record)
        .map(Bytes::from)
        .map_err(|source| CatalogError::Encode {
            key: key.to_owned(),
            source,
        })
}

/// An outcome record as stored (an image of (kind, failure message, output image)).
pub(crate) fn encode_outcome(key: &str, outcome: &Outcome) -> Result<Bytes, CatalogError> {
    let record = match outcome {
        Outcome::Completed(output) => (OUTCOME_COMPLETED, String::new(), BulkVec(output.to_vec())),
        Outcome::Failed(message) => (OUTCOME_FAILED, message.clone(), BulkVec(Vec::new())),
        Outcome::Cancelled => (OUTCOME_CANCELLED, String::new(), BulkVec(Vec::new())),
    };
    encode(key, &record)
}

/// Reads an outcome record written by [`encode_outcome`].
pub(crate) fn decode_outcome(key: &str, bytes: &[u8]) -> Result<Outcome, CatalogError> {
    Outcome::decode(bytes).map_err(|source| CatalogError::Damaged {
        key: key.to_owned(),
        source,
    })
}

pub(super) fn parse_checkpoint_key(name: &str) -> Option<CheckpointKey> {
    let (seq, steps) = name.split_once('-')?;
    Some(CheckpointKey {
        seq: seq.parse().ok()?,
        steps: steps.parse().ok()?,
    })
}
