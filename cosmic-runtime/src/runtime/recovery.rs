//! Recovery on start: read what the store says of every task, let the hand-off machine decide
//! what each one is now (`handoff::Host::recover`: running here, moved away, arriving in doubt,
//! finished), then do it: resume from the newest checkpoint that decodes, keep a forwarding
//! entry, hold a copy in doubt and ask its source, or keep the outcome. Returns the commands
//! that settle the copies in doubt, carried out once the host listens.

use std::collections::HashMap;
use std::sync::Arc;

use super::migrate::{Arrival, CopyError};
use super::recovery_error::{CheckpointUnusable, RecoveryError};
use super::shared::{Forward, TaskShared};
use super::{BuildError, Recovery, RuntimeInner};
use crate::checkpoint::{Attempts, Catalog, EpochRecord, Outcome, TaskRecord};
use crate::handoff::{self, Command, Recovered, StoredRecord, StoredTask};
use crate::task::TaskId;

/// What the store says of one task.
struct Found {
    records: Vec<(u64, EpochRecord)>,
    record: Option<TaskRecord>,
    outcome: Option<Outcome>,
    /// The copy of the newest `prepared` record, read once: its size counts against the
    /// bound on copies arriving, and it is decoded from these bytes.
    prepared_copy: Option<Result<bytes::Bytes, CopyError>>,
}

pub(super) async fn recover(
    inner: &Arc<RuntimeInner>,
    catalog: &Catalog,
) -> Result<(Recovery, Vec<Command>), BuildError> {
    let mut recovery = Recovery::default();
    let mut found = HashMap::new();
    let mut stored = Vec::new();
    let mut unreadable = Vec::new();
    let kept = catalog
        .kept_outcomes()
        .await
        .map_err(BuildError::Recovery)?;
    let tombstones = catalog.tombstones().await.map_err(BuildError::Recovery)?;
    let forgotten: std::collections::HashSet<TaskId> =
        tombstones.iter().map(|(_, task)| *task).collect();
    for task in catalog.tasks().await.map_err(BuildError::Recovery)? {
        if forgotten.contains(&task) {
            // A forget that a crash interrupted, or a stale copy of a task that finished: its
            // id must not run again while the tombstone lives.
            tracing::info!(%task, "removing the records of a forgotten task");
            if let Err(error) = catalog.remove_task(task).await {
                tracing::warn!(%task, %error, "could not remove the records of a forgotten task");
            }
            continue;
        }
        let read = async {
            let records = catalog.epoch_records(task).await?;
            let prepared_copy = match records.last() {
                Some((_, EpochRecord::Prepared { checkpoint, .. })) => {
                    Some(match catalog.checkpoint(task, *checkpoint).await {
                        Ok(Some(bytes)) => Ok(bytes),
                        Ok(None) => Err(CopyError::Missing),
                        Err(error) => Err(CopyError::Unreadable(Arc::new(error))),
                    })
                }
                _ => None,
            };
            Ok::<_, crate::checkpoint::CatalogError>(Found {
                records,
                record: catalog.task_record(task).await?,
                outcome: catalog.outcome(task).await?,
                prepared_copy,
            })
        };
        let task_found = match read.await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%task, error = %crate::ErrorChain(&error), "the task's records are unreadable; it is quarantined here until the store is repaired");
                recovery
                    .failed
                    .push((task, RecoveryError::Unreadable(Arc::new(error))));
                unreadable.push(task);
                continue;
            }
        };
        if task_found.records.is_empty()
            && task_found.record.is_none()
            && task_found.outcome.is_none()
        {
            // An image without a record: a spawn that never returned. Nobody holds its id.
            tracing::info!(%task, "removing the leftovers of an unfinished spawn");
            if let Err(error) = catalog.remove_task(task).await {
                tracing::warn!(%task, error = %crate::ErrorChain(&error), "could not remove an unfinished spawn");
            }
            continue;
        }
        stored.push(StoredTask {
            task,
            records: task_found
                .records
                .iter()
                .map(|(epoch, record)| {
                    let size = match (&task_found.prepared_copy, record) {
                        (Some(Ok(bytes)), EpochRecord::Prepared { .. }) => bytes.len() as u64,
                        _ => 0,
                    };
                    (*epoch, stored_record(record, size))
                })
                .collect(),
            finished: task_found.outcome.is_some(),
        });
        found.insert(task, task_found);
    }
    // Tombstones: the machine refuses offers of these ids.
    stored.extend(forgotten.iter().map(|&task| StoredTask {
        task,
        records: Vec::new(),
        finished: true,
    }));
    let (name, config) = match &inner.node {
        Some(node) => (node.name.to_string(), node.config.machine()),
        None => (inner.host.clone(), handoff::Config::default()),
    };
    let (mut machine, verdicts, commands) = handoff::Host::recover(name, config, stored);
    for task in unreadable {
        machine.quarantine(task);
    }
    for (task, verdict) in verdicts {
        let Some(task_found) = found.remove(&task) else {
            continue;
        };
        match verdict {
            Recovered::Finished => finished(inner, catalog, task, task_found, &mut recovery).await,
            Recovered::Forward { epoch, to, handoff } => {
                let to_addr = task_found
                    .records
                    .iter()
                    .find_map(|(e, record)| match record {
                        EpochRecord::Moved {
                            to_addr,
                            handoff: h,
                            ..
                        } if *e == epoch && *h == handoff => Some(to_addr.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let forward = Forward {
                    host: to,
                    addr: to_addr,
                    epoch,
                    handoff,
                };
                let output_type = task_found.record.map(|r| r.output_type);
                recover_forward(inner, catalog, task, forward, output_type, &mut recovery).await;
            }
            Recovered::InDoubt { epoch, .. } => {
                let prepared = task_found
                    .records
                    .into_iter()
                    .rev()
                    .find_map(|(e, record)| {
                        (e == epoch && matches!(record, EpochRecord::Prepared { .. }))
                            .then_some(record)
                    });
                let copy = task_found.prepared_copy.unwrap_or(Err(CopyError::Missing));
                if let Some(prepared) = prepared {
                    recover_arrival(inner, task, epoch, prepared, copy, &mut recovery);
                }
            }
            Recovered::Run { epoch } => {
                resume(
                    inner,
                    catalog,
                    task,
                    epoch,
                    task_found.record,
                    &mut recovery,
                )
                .await;
            }
        }
    }
    if let Some(node) = &inner.node {
        node.set_machine(machine);
    }
    recover_retention(inner, catalog, &recovery, kept, tombstones).await;
    Ok((recovery, commands))
}

/// Rebuilds the retention ledger from the store's index, and mends it: a finished task
/// without a note (a crash right after its outcome) is kept from now; a note whose task was
/// forgotten (a crash in the middle of forgetting) or is gone is removed.
async fn recover_retention(
    inner: &Arc<RuntimeInner>,
    catalog: &Catalog,
    recovery: &Recovery,
    kept: Vec<crate::checkpoint::FinishedEntry>,
    tombstones: Vec<crate::checkpoint::FinishedEntry>,
) {
    let finished: std::collections::HashSet<TaskId> = recovery.finished.iter().copied().collect();
    for entry in kept {
        if finished.contains(&entry.1) && !inner.ledger().is_kept(entry.1) {
            inner.ledger().keep(entry);
        } else if let Err(error) = catalog.drop_kept(entry).await {
            tracing::warn!(task = %entry.1, %error, "could not remove a stale retention note");
        }
    }
    for &task in &recovery.finished {
        if !inner.ledger().is_kept(task) {
            super::retention::finished(inner, catalog, task).await;
        }
    }
    inner.ledger().set_tombstones(tombstones);
}

/// An epoch record as the machine needs it (`size`: a prepared copy's bytes).
fn stored_record(record: &EpochRecord, size: u64) -> StoredRecord {
    match record {
        EpochRecord::Prepared { from, handoff, .. } => StoredRecord::Prepared {
            handoff: *handoff,
            from: from.clone(),
            size,
        },
        EpochRecord::Owner { handoff } => StoredRecord::Owner { handoff: *handoff },
        EpochRecord::Moved { to, handoff, .. } => StoredRecord::Moved {
            handoff: *handoff,
            to: to.clone(),
        },
    }
}

/// Finished: keep the outcome available; a crash may have come between the outcome and the
/// retirement of the checkpoints.
async fn finished(
    inner: &Arc<RuntimeInner>,
    catalog: &Catalog,
    task: TaskId,
    found: Found,
    recovery: &mut Recovery,
) {
    let (Some(record), Some(outcome)) = (found.record, found.outcome) else {
        recovery.failed.push((task, RecoveryError::MissingRecord));
        return;
    };
    if let Err(error) = catalog.retire_checkpoints(task).await {
        tracing::warn!(%task, error = %crate::ErrorChain(&error), "could not retire the checkpoints of a finished task");
    }
    if let Err(error) = catalog.clear_attempts(task).await {
        tracing::warn!(%task, %error, "could not remove the attempts record of a finished task");
    }
    let shared = TaskShared::finished(task, record.output_type, outcome);
    inner.tasks().insert(task, shared);
    recovery.finished.push(task);
}

/// Runs here: resume from the newest checkpoint that decodes, falling back to older ones.
async fn resume(
    inner: &Arc<RuntimeInner>,
    catalog: &Catalog,
    task: TaskId,
    epoch: u64,
    record: Option<TaskRecord>,
    recovery: &mut Recovery,
) {
    let Some(record) = record else {
        recovery.failed.push((task, RecoveryError::MissingRecord));
        return;
    };
    let Some(task_type) = inner.types.get(&record.type_name) else {
        let error = RecoveryError::UnregisteredType {
            type_name: record.type_name,
        };
        tracing::warn!(%task, "cannot resume: {error}");
        recovery.failed.push((task, error));
        return;
    };
    let checkpoints = match catalog.checkpoints(task).await {
        Ok(checkpoints) => checkpoints,
        Err(error) => {
            let error = RecoveryError::CheckpointsUnlisted(Arc::new(error));
            tracing::error!(%task, error = %crate::ErrorChain(&error), "task cannot be resumed");
            recovery.failed.push((task, error));
            return;
        }
    };
    let next_seq = checkpoints.last().map_or(0, |newest| newest.seq) + 1;
    let mut problems = Vec::new();
    for key in checkpoints.into_iter().rev() {
        let seq = key.seq;
        let decoded = match catalog.checkpoint(task, key).await {
            Ok(Some(bytes)) => {
                (task_type.prepare)(&bytes).map_err(|source| CheckpointUnusable::Restore {
                    seq,
                    source: Arc::new(source),
                })
            }
            Ok(None) => Err(CheckpointUnusable::Removed { seq }),
            Err(source) => Err(CheckpointUnusable::Unreadable {
                seq,
                source: Arc::new(source),
            }),
        };
        match decoded {
            Ok((_, start)) => {
                // Counted once the checkpoint is known to decode, right before the task runs.
                if !count_resume(inner, catalog, task, &record, key.seq, recovery).await {
                    return;
                }
                start(inner, task, key, next_seq, epoch);
                tracing::info!(%task, seq = key.seq, steps = key.steps, "resumed");
                recovery.resumed.push((task, key));
                return;
            }
            Err(problem) => {
                tracing::warn!(%task, seq, reason = %crate::ErrorChain(&problem), "checkpoint unusable; trying an older one");
                problems.push(problem);
            }
        }
    }
    let error = RecoveryError::no_checkpoint(problems);
    tracing::error!(%task, error = %crate::ErrorChain(&error), "task cannot be resumed");
    recovery.failed.push((task, error));
}

/// Counts one more resume of `task` from checkpoint `seq`, durably, before it runs: a step
/// that takes the whole process down cannot be caught, but it cannot make the host resume it
/// forever either. Returns false (and reports the task quarantined) once the task was resumed
/// from this same checkpoint `quarantine_after` times in a row already.
async fn count_resume(
    inner: &Arc<RuntimeInner>,
    catalog: &Catalog,
    task: TaskId,
    record: &TaskRecord,
    seq: u64,
    recovery: &mut Recovery,
) -> bool {
    let attempts = match catalog.attempts(task).await {
        Ok(attempts) => attempts,
        Err(error) => {
            // Counting from zero again is the lesser harm: the record is rewritten below.
            tracing::warn!(%task, %error, "the attempts record is unreadable; counting resumes afresh");
            Attempts::default()
        }
    };
    let limit = inner.quarantine_after;
    if attempts.resumes >= limit && attempts.resumed_from == seq {
        let reason = format!(
            "quarantined: resumed {} times in a row from checkpoint {seq} without reaching a newer \
             one (a step brings the host down?); not resumed again until its attempts record \
             is cleared",
            attempts.resumes
        );
        tracing::error!(%task, resumes = attempts.resumes, seq, "{reason}");
        // Its handle answers with the reason; nothing is recorded as its end, so it can be
        // released once the cause is fixed.
        let shared = TaskShared::finished(
            task,
            record.output_type.clone(),
            Outcome::Failed(reason.clone()),
        );
        inner.tasks().insert(task, shared);
        recovery.quarantined.push((task, reason));
        return false;
    }
    inner.mark_attempts(task);
    if let Err(error) = catalog.put_attempts(task, &attempts.resumed(seq)).await {
        // Without the count a crashing task could loop; but a store that refuses a write now
        // refuses its checkpoints too, and the task at least gets its chance.
        tracing::error!(%task, %error, "failed to count the resume; resuming anyway");
    }
    true
}

/// A task that moved away: keep a forwarding entry, drop leftover images.
async fn recover_forward(
    inner: &Arc<RuntimeInner>,
    catalog: &Catalog,
    task: TaskId,
    forward: Forward,
    output_type: Option<String>,
    recovery: &mut Recovery,
) {
    // A crash between the commit record and the retirement leaves images behind.
    if let Err(error) = catalog.retire_checkpoints(task).await {
        tracing::warn!(%task, error = %crate::ErrorChain(&error), "could not retire the checkpoints of a moved task");
    }
    // Without it the forwarding entry still answers peers; only typed handles here cannot
    // be made.
    let output_type = output_type.unwrap_or_default();
    tracing::info!(%task, to = %forward.host, epoch = forward.epoch, "task moved away; keeping a forwarding entry");
    recovery.moved.push((task, forward.host.clone()));
    inner
        .tasks()
        .insert(task, TaskShared::moved(task, output_type, forward));
}

/// A task that was arriving when the host stopped: hold the prepared copy again (the machine
/// asks the source how the hand-off ended once the host listens).
fn recover_arrival(
    inner: &Arc<RuntimeInner>,
    task: TaskId,
    epoch: u64,
    prepared: EpochRecord,
    copy: Result<bytes::Bytes, CopyError>,
    recovery: &mut Recovery,
) {
    let EpochRecord::Prepared {
        from,
        from_addr,
        handoff,
        type_name,
        output_type,
        checkpoint,
    } = prepared
    else {
        return;
    };
    let Some(node) = &inner.node else {
        let error = RecoveryError::InDoubtNotAHost { from };
        tracing::error!(%task, "{error}");
        recovery.failed.push((task, error));
        return;
    };
    let start = match inner.types.get(&type_name) {
        None => Err(CopyError::UnknownType {
            type_name: type_name.clone(),
        }),
        Some(task_type) => copy.and_then(|bytes| {
            (task_type.prepare)(&bytes)
                .map(|(_, start)| start)
                .map_err(|error| CopyError::Undecodable(Arc::new(error)))
        }),
    };
    if let Err(reason) = &start {
        // Still held: if its source committed, the ownership is recorded here and a start
        // that can decode the copy resumes it; if not, it is discarded.
        let error = RecoveryError::ArrivingCopy {
            from: from.clone(),
            source: reason.clone(),
        };
        tracing::error!(%task, error = %crate::ErrorChain(&error), "a prepared copy cannot run here");
        recovery.failed.push((task, error));
    }
    tracing::info!(%task, %from, epoch, "a hand-off was in doubt; asking the source");
    recovery.in_doubt.push(task);
    node.copies().insert(
        (task, handoff),
        Arrival {
            handoff,
            epoch,
            from,
            from_addr,
            type_name,
            output_type,
            checkpoint,
            start,
        },
    );
}
