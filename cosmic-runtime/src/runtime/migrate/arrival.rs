//! A task arriving at the destination: a verified, decoded copy held (and, with a store,
//! durably recorded as prepared) until the source decides. Committing starts it; aborting
//! forgets it.

use std::sync::Arc;

use crate::checkpoint::{CatalogError, CheckpointKey, EpochRecord, TaskRecord};
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
    pub(crate) start: StartTask,
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

/// The source committed: record the ownership durably, then run the task.
pub(crate) async fn commit(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    arrival: Arrival,
) -> Result<Arc<TaskShared>, (Arrival, CatalogError)> {
    if let Some(catalog) = &runtime.catalog {
        let record = TaskRecord {
            type_name: arrival.type_name.clone(),
            output_type: arrival.output_type.clone(),
        };
        let recorded = async {
            catalog.create_task(task, &record).await?;
            catalog
                .put_epoch_record(
                    task,
                    arrival.epoch,
                    &EpochRecord::Owner {
                        handoff: arrival.handoff,
                    },
                )
                .await
        }
        .await;
        if let Err(error) = recorded {
            return Err((arrival, error));
        }
    }
    let next_seq = arrival.checkpoint.seq + 1;
    tracing::info!(%task, from = %arrival.from, epoch = arrival.epoch, steps = arrival.checkpoint.steps, "task arrived");
    Ok((arrival.start)(
        runtime,
        task,
        arrival.checkpoint,
        next_seq,
        arrival.epoch,
    ))
}

/// The source kept the task: forget the prepared copy (the record first, so that a crash in
/// between leaves at most an image without a record, which the next start removes).
pub(crate) async fn abort(runtime: &Arc<RuntimeInner>, task: TaskId, arrival: Arrival) {
    let Arrival {
        from,
        epoch,
        checkpoint,
        handoff,
        ..
    } = arrival;
    tracing::info!(%task, %from, epoch, "hand-off aborted; dropping the prepared copy");
    if let Some(catalog) = &runtime.catalog {
        let removed = async {
            catalog.remove_prepared(task, epoch, handoff).await?;
            catalog.delete_checkpoint(task, checkpoint).await
        }
        .await;
        if let Err(error) = removed {
            tracing::warn!(%task, %error, "could not remove an aborted prepared copy; the next start retries");
        }
    }
}
