//! Epoch records: the durable facts that decide which host owns a task after a migration,
//! whatever crashed on the way.
//!
//! A task starts at epoch 0 on the host that spawned it (no record needed). Each hand-off
//! moves it to epoch + 1 and writes, in this order:
//!
//! ```text
//! destination  tasks/<id>/epoch/<e>.prepared   it holds a verified, durable copy (in doubt)
//! source       tasks/<id>/epoch/<e>.moved      the commit point: the task is the destination's
//! destination  tasks/<id>/epoch/<e>.owner      it runs the task
//! ```
//! On start a host reads the records of each task and its newest one decides: `owner` (or no
//! record) means run it; `moved` means keep a forwarding entry; a lone `prepared` means ask the
//! source how the hand-off ended (it answers from its own `moved` record) before doing either.
//! Each record is an image, so a damaged one is detected, and each file is written atomically
//! by the store, so a crash leaves a record whole or absent.

use super::catalog::encode;
use super::{Catalog, CatalogError, CheckpointKey, PutMode};
use crate::image::{self, RestoreError};
use crate::task::TaskId;

/// One durable fact about who owns a task at an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochRecord {
    /// This host holds a verified copy offered by `from`, and waits for its decision.
    Prepared {
        /// The source host.
        from: String,
        /// The source's address.
        from_addr: String,
        /// The hand-off.
        handoff: u64,
        /// The task's type.
        type_name: String,
        /// Its output's type.
        output_type: String,
        /// Where the copy is.
        checkpoint: CheckpointKey,
    },
    /// This host owns the task from this epoch on.
    Owner {
        /// The hand-off that brought it.
        handoff: u64,
    },
    /// This host gave the task to `to` at this epoch.
    Moved {
        /// The destination host.
        to: String,
        /// Its address.
        to_addr: String,
        /// The hand-off.
        handoff: u64,
    },
}

impl EpochRecord {
    /// Decodes an epoch record from the bytes of its image (the value under
    /// `tasks/<id>/epoch/<epoch>.<kind>`).
    pub fn decode(bytes: &[u8]) -> Result<EpochRecord, RestoreError> {
        let stored = image::restore::<Stored>(bytes)?;
        let (code, (a, b, handoff), ((type_name, output_type), (seq, steps))) = stored;
        Ok(match code {
            PREPARED => EpochRecord::Prepared {
                from: a,
                from_addr: b,
                handoff,
                type_name,
                output_type,
                checkpoint: CheckpointKey { seq, steps },
            },
            OWNER => EpochRecord::Owner { handoff },
            _ => EpochRecord::Moved {
                to: a,
                to_addr: b,
                handoff,
            },
        })
    }

    /// The kind of record, as in its key: `prepared`, `owner` or `moved`.
    pub fn kind(&self) -> &'static str {
        match self {
            EpochRecord::Prepared { .. } => "prepared",
            EpochRecord::Owner { .. } => "owner",
            EpochRecord::Moved { .. } => "moved",
        }
    }
}

const PREPARED: u8 = 0;
const OWNER: u8 = 1;
const MOVED: u8 = 2;

/// The record as stored: kind, two names, the hand-off, type names and a checkpoint key.
type Stored = (u8, (String, String, u64), ((String, String), (u64, u64)));

fn epoch_prefix(task: TaskId) -> String {
    format!("tasks/{task}/epoch/")
}

pub(super) fn epoch_key(task: TaskId, epoch: u64, kind: &str) -> String {
    format!("tasks/{task}/epoch/{epoch:020}.{kind}")
}

/// Orders the kinds of one epoch: a decision supersedes the prepared copy.
fn rank(kind: &str) -> Option<u8> {
    match kind {
        "prepared" => Some(0),
        "owner" | "moved" => Some(1),
        _ => None,
    }
}

impl Catalog {
    /// Writes an epoch record durably. `prepared` records may be replaced (a new offer for
    /// the same epoch after an aborted one); decisions are written once.
    pub async fn put_epoch_record(
        &self,
        task: TaskId,
        epoch: u64,
        record: &EpochRecord,
    ) -> Result<(), CatalogError> {
        let key = epoch_key(task, epoch, record.kind());
        let stored: Stored = match record.clone() {
            EpochRecord::Prepared {
                from,
                from_addr,
                handoff,
                type_name,
                output_type,
                checkpoint,
            } => (
                PREPARED,
                (from, from_addr, handoff),
                ((type_name, output_type), (checkpoint.seq, checkpoint.steps)),
            ),
            EpochRecord::Owner { handoff } => (
                OWNER,
                (String::new(), String::new(), handoff),
                Default::default(),
            ),
            EpochRecord::Moved {
                to,
                to_addr,
                handoff,
            } => (MOVED, (to, to_addr, handoff), Default::default()),
        };
        let bytes = encode(&key, &stored)?;
        let mode = match record {
            EpochRecord::Prepared { .. } => PutMode::Overwrite,
            _ => PutMode::Create,
        };
        match self.store().put(&key, bytes, mode).await {
            Ok(()) => Ok(()),
            // A retry of the same decision after an unclear failure.
            Err(super::StoreError::AlreadyExists { .. })
                if self
                    .epoch_record(task, epoch, record.kind())
                    .await?
                    .as_ref()
                    == Some(record) =>
            {
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The record of `kind` ("prepared", "owner" or "moved") at `epoch`, if written.
    pub async fn epoch_record(
        &self,
        task: TaskId,
        epoch: u64,
        kind: &str,
    ) -> Result<Option<EpochRecord>, CatalogError> {
        let key = epoch_key(task, epoch, kind);
        let Some(bytes) = self.store().get(&key).await? else {
            return Ok(None);
        };
        EpochRecord::decode(&bytes)
            .map(Some)
            .map_err(|source| CatalogError::Damaged { key, source })
    }

    /// Removes the `prepared` record at `epoch` if it is still hand-off `handoff`'s (a newer
    /// offer at the same epoch replaces the record under the same key).
    pub async fn remove_prepared(
        &self,
        task: TaskId,
        epoch: u64,
        handoff: u64,
    ) -> Result<(), CatalogError> {
        match self.epoch_record(task, epoch, "prepared").await? {
            Some(EpochRecord::Prepared { handoff: h, .. }) if h == handoff => {
                self.store()
                    .delete(&epoch_key(task, epoch, "prepared"))
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Every epoch record of `task`, oldest first (by epoch, then prepared before decisions).
    pub async fn epoch_records(
        &self,
        task: TaskId,
    ) -> Result<Vec<(u64, EpochRecord)>, CatalogError> {
        let prefix = epoch_prefix(task);
        let mut names: Vec<(u64, u8, String)> = self
            .store()
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|key| {
                let (epoch, kind) = key[prefix.len()..].split_once('.')?;
                Some((epoch.parse().ok()?, rank(kind)?, kind.to_owned()))
            })
            .collect();
        names.sort();
        let mut records = Vec::with_capacity(names.len());
        for (epoch, _, kind) in names {
            if let Some(record) = self.epoch_record(task, epoch, &kind).await? {
                records.push((epoch, record));
            }
        }
        Ok(records)
    }

    /// The record that decides who owns `task` now (the newest), if there is any.
    pub async fn ownership(
        &self,
        task: TaskId,
    ) -> Result<Option<(u64, EpochRecord)>, CatalogError> {
        Ok(self.epoch_records(task).await?.pop())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::MemoryStore;

    #[tokio::test]
    async fn the_newest_record_decides() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), 2);
        let task = TaskId(5);
        assert_eq!(catalog.ownership(task).await.unwrap(), None);
        let moved = EpochRecord::Moved {
            to: "beta".into(),
            to_addr: "127.0.0.1:2".into(),
            handoff: 1,
        };
        catalog.put_epoch_record(task, 1, &moved).await.unwrap();
        // Written twice (a retry) is fine; a different decision is refused.
        catalog.put_epoch_record(task, 1, &moved).await.unwrap();
        let other = EpochRecord::Moved {
            to: "gamma".into(),
            to_addr: "127.0.0.1:3".into(),
            handoff: 2,
        };
        assert!(catalog.put_epoch_record(task, 1, &other).await.is_err());
        let prepared = EpochRecord::Prepared {
            from: "gamma".into(),
            from_addr: "127.0.0.1:3".into(),
            handoff: 3,
            type_name: "T".into(),
            output_type: "u64".into(),
            checkpoint: CheckpointKey { seq: 4, steps: 40 },
        };
        catalog.put_epoch_record(task, 3, &prepared).await.unwrap();
        assert_eq!(catalog.ownership(task).await.unwrap(), Some((3, prepared)));
        let owner = EpochRecord::Owner { handoff: 3 };
        catalog.put_epoch_record(task, 3, &owner).await.unwrap();
        assert_eq!(catalog.ownership(task).await.unwrap(), Some((3, owner)));
        assert_eq!(catalog.epoch_records(task).await.unwrap().len(), 3);
        // Epochs sort as numbers, not as text.
        catalog
            .put_epoch_record(task, 10, &EpochRecord::Owner { handoff: 9 })
            .await
            .unwrap();
        assert_eq!(catalog.ownership(task).await.unwrap().unwrap().0, 10);
    }

    #[tokio::test]
    async fn an_aborted_prepare_falls_back_to_the_older_record() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), 2);
        let task = TaskId(6);
        let moved = EpochRecord::Moved {
            to: "beta".into(),
            to_addr: "b".into(),
            handoff: 1,
        };
        catalog.put_epoch_record(task, 1, &moved).await.unwrap();
        let prepared = EpochRecord::Prepared {
            from: "gamma".into(),
            from_addr: "g".into(),
            handoff: 2,
            type_name: "T".into(),
            output_type: "u64".into(),
            checkpoint: CheckpointKey { seq: 1, steps: 1 },
        };
        catalog.put_epoch_record(task, 3, &prepared).await.unwrap();
        // Another hand-off's removal leaves it; its own removes it.
        catalog.remove_prepared(task, 3, 99).await.unwrap();
        assert_eq!(catalog.ownership(task).await.unwrap().unwrap().0, 3);
        catalog.remove_prepared(task, 3, 2).await.unwrap();
        assert_eq!(catalog.ownership(task).await.unwrap(), Some((1, moved)));
    }
}
