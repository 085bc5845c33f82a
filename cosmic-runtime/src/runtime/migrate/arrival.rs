//! A task arriving at the destination: a verified, decoded copy held (and, with a store,
//! durably recorded as prepared) until the source decides, and the store work the hand-off
//! machine asks for on it: record it, record its ownership, start it, discard it.

use std::sync::Arc;

use super::CopyError;
use crate::checkpoint::{CatalogError, CheckpointKey, EpochRecord, TaskRecord};
use crate::handoff::WriteResult;
use crate::runtime::shared::TaskShared;
use crate::runtime::RuntimeInner;
use crate::task::TaskId;

/// Starts the decoded task: (runtime, id, checkpoint it came as, next sequence number, epoch).
pub(crate) type StartTask =
    Box<dyn FnOnce(&Arc<RuntimeInner>, TaskId, CheckpointKey, u64, u64) -> Arc<TaskShared> + Send>;

pub(crate) struct Arrival {
    pub(crate) handoff: u64,
    pub(crate) epoch: u64,
    pub(crate) from: String,
    pub(crate) from_addr: String,
    pub(crate) type_name: String,
    pub(crate) output_type: String,
    /// Where the copy is in the store (with a store), and the steps it has completed.
    pub(crate) checkpoint: CheckpointKey,
    /// Runs the decoded copy; `Err(why)` when it could not be decoded here (recovered after a
    /// restart with its type unregistered or its image damaged): its ownership can still be
    /// recorded if the source committed, and a later start resumes it once it decodes.
    pub(crate) start: Result<StartTask, CopyError>,
}

impl Arrival {
    /// The prepared record that makes this arrival survive a crash.
    pub(crate) fn prepared_record(&self) -> EpochRecord {
        EpochRecord::Prepared {
            from: self.from.clone(),
            from_addr: self.from_addr.clone(),
            handoff: self.handoff,
            type_name: self.type_name.clone(),
            output_type: self.output_type.clone(),
            checkpoint: self.checkpoint,
        }
    }
}

/// Stores the verified image as the task's newest checkpoint (numbered after any image of it
/// here), then the `prepared` record. Returns where the copy went.
pub(crate) async fn record_prepared(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    arrival: &mut Arrival,
    image: bytes::Bytes,
) -> Result<(), CatalogError> {
    let Some(catalog) = &runtime.catalog else {
        return Ok(());
    };
    let _serial = match &runtime.node {
        Some(node) => Some(node.lock_task_store(task).await),
        None => None,
    };
    let newest = catalog.checkpoints(task).await?.last().map_or(0, |k| k.seq);
    arrival.checkpoint.seq = newest + 1;
    catalog
        .put_checkpoint_image(task, arrival.checkpoint, image)
        .await?;
    catalog
        .put_epoch_record(task, arrival.epoch, &arrival.prepared_record())
        .await
}

/// What recording an arrived task's ownership needs (an `Arrival` holds its decoded state,
/// which need not be `Sync`, so it is not borrowed across the writes).
pub(crate) struct Ownership {
    record: TaskRecord,
    epoch: u64,
    handoff: u64,
}

impl Arrival {
    /// What recording its ownership needs.
    pub(crate) fn ownership(&self) -> Ownership {
        Ownership {
            record: TaskRecord {
                type_name: self.type_name.clone(),
                output_type: self.output_type.clone(),
            },
            epoch: self.epoch,
            handoff: self.handoff,
        }
    }
}

/// The source committed: record the task and its ownership here durably.
pub(crate) async fn record_owner(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    ownership: Ownership,
) -> Result<(), CatalogError> {
    let Some(catalog) = &runtime.catalog else {
        return Ok(());
    };
    catalog.create_task(task, &ownership.record).await?;
    catalog
        .put_epoch_record(
            task,
            ownership.epoch,
            &EpochRecord::Owner {
                handoff: ownership.handoff,
            },
        )
        .await
}

/// Records the ownership of the copy of hand-off `handoff` (the machine's `write owner`).
pub(crate) async fn write_owner(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    handoff: u64,
) -> WriteResult {
    let Some(node) = &runtime.node else {
        return WriteResult::Failed;
    };
    let ownership = node.copies().get(&(task, handoff)).map(Arrival::ownership);
    let recorded = match ownership {
        Some(ownership) => record_owner(runtime, task, ownership)
            .await
            .map_err(|e| crate::ErrorChain(&e).to_string()),
        None => Err(CopyError::Missing.to_string()),
    };
    match recorded {
        Ok(()) => WriteResult::Durable,
        Err(error) => {
            tracing::error!(%task, %error, "could not record the ownership of an arrived task; retrying");
            WriteResult::Failed
        }
    }
}

/// Runs the arrived copy of hand-off `handoff` (its ownership is recorded: the machine's
/// `start task`). The copy stays listed until its driver runs, so the task never looks
/// unknown while it starts; the copies' lock is not held while it starts (other hand-offs use
/// it all the time).
pub(crate) fn start(runtime: &Arc<RuntimeInner>, task: TaskId, handoff: u64) {
    let Some(node) = &runtime.node else { return };
    let taken = node.copies().get_mut(&(task, handoff)).map(|arrival| {
        let start = std::mem::replace(&mut arrival.start, Err(CopyError::Started));
        (
            start,
            arrival.checkpoint,
            arrival.epoch,
            arrival.from.clone(),
        )
    });
    let Some((start, checkpoint, epoch, from)) = taken else {
        tracing::error!(%task, "the machine started a copy that is not here");
        return;
    };
    match start {
        Ok(start) => {
            tracing::info!(%task, %from, epoch, steps = checkpoint.steps, "task arrived");
            start(runtime, task, checkpoint, checkpoint.seq + 1, epoch);
        }
        Err(reason) => {
            tracing::error!(%task, %reason, "the task is ours now but cannot run here; it resumes from its copy at a start that can decode it");
        }
    }
    node.copies().remove(&(task, handoff));
}

/// Forgets a copy that will not run: its `prepared` record first (if still this hand-off's),
/// then its image, so that a crash in between leaves at most an image without a record, which
/// the next start removes.
pub(crate) async fn discard(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    epoch: u64,
    handoff: u64,
    checkpoint: Option<CheckpointKey>,
) {
    tracing::info!(%task, epoch, "hand-off aborted; dropping the copy");
    let Some(catalog) = &runtime.catalog else {
        return;
    };
    let _serial = match &runtime.node {
        Some(node) => Some(node.lock_task_store(task).await),
        None => None,
    };
    let removed = async {
        // The record says where its copy is, when the copy is not in memory.
        let checkpoint = match checkpoint {
            Some(checkpoint) => Some(checkpoint),
            None => match catalog.epoch_record(task, epoch, "prepared").await? {
                Some(EpochRecord::Prepared {
                    handoff: h,
                    checkpoint,
                    ..
                }) if h == handoff => Some(checkpoint),
                _ => None,
            },
        };
        catalog.remove_prepared(task, epoch, handoff).await?;
        if let Some(checkpoint) = checkpoint {
            catalog.delete_checkpoint(task, checkpoint).await?;
        }
        Ok::<_, CatalogError>(())
    }
    .await;
    if let Err(error) = removed {
        tracing::warn!(%task, error = %crate::ErrorChain(&error), "could not remove an aborted copy; the next start retries");
    }
}
