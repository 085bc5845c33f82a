//! What a store keeps of finished tasks, and for how long (see `runtime/retention.rs` for
//! when): two small index keys, whose names carry all they say, so that a host reads them with
//! one listing at its start and never opens them.
//!
//! ```text
//! finished/kept/<finished at, unix ms:020>.<task id>        the outcome is kept (tasks/<id>/outcome)
//! finished/tombstone/<finished at, unix ms:020>.<task id>   forgotten: its records are gone, and
//!                                                          its id must not run here again
//! ```
//! A task is forgotten in this order: the tombstone, then every key under `tasks/<id>/`, then
//! its `kept` entry; a crash anywhere leaves the tombstone, and the next start finishes the job.

use bytes::Bytes;

use super::{Catalog, CatalogError, PutMode};
use crate::task::TaskId;

const KEPT: &str = "finished/kept/";
const TOMBSTONE: &str = "finished/tombstone/";

/// One entry of the finished-task index: when the task finished (unix ms), and which.
pub type FinishedEntry = (u64, TaskId);

fn key(prefix: &str, (at, task): FinishedEntry) -> String {
    format!("{prefix}{at:020}.{task}")
}

fn parse(name: &str) -> Option<FinishedEntry> {
    let (at, task) = name.split_once('.')?;
    Some((at.parse().ok()?, task.parse().ok()?))
}

impl Catalog {
    async fn index(&self, prefix: &str) -> Result<Vec<FinishedEntry>, CatalogError> {
        let mut entries: Vec<FinishedEntry> = self
            .store()
            .list(prefix)
            .await?
            .iter()
            .filter_map(|key| parse(&key[prefix.len()..]))
            .collect();
        entries.sort();
        Ok(entries)
    }

    /// Notes that `task`'s outcome, recorded at `entry`'s time, is kept.
    pub async fn keep_outcome(&self, entry: FinishedEntry) -> Result<(), CatalogError> {
        let key = key(KEPT, entry);
        self.store()
            .put(&key, Bytes::new(), PutMode::Overwrite)
            .await?;
        Ok(())
    }

    /// Finished tasks whose outcome is kept, oldest first.
    pub async fn kept_outcomes(&self) -> Result<Vec<FinishedEntry>, CatalogError> {
        self.index(KEPT).await
    }

    /// Tombstones of forgotten tasks, oldest first.
    pub async fn tombstones(&self) -> Result<Vec<FinishedEntry>, CatalogError> {
        self.index(TOMBSTONE).await
    }

    /// Forgets a finished task: a tombstone first, then its outcome and every other record,
    /// then the note that its outcome was kept. Repeating it after a crash is harmless.
    pub async fn forget_task(&self, entry: FinishedEntry) -> Result<(), CatalogError> {
        self.store()
            .put(&key(TOMBSTONE, entry), Bytes::new(), PutMode::Overwrite)
            .await?;
        self.remove_task(entry.1).await?;
        self.store().delete(&key(KEPT, entry)).await?;
        Ok(())
    }

    /// Removes a note that an outcome is kept (one whose outcome is gone).
    pub async fn drop_kept(&self, entry: FinishedEntry) -> Result<(), CatalogError> {
        self.store().delete(&key(KEPT, entry)).await?;
        Ok(())
    }

    /// Removes a tombstone: from now on nothing of the task is left in the store.
    pub async fn drop_tombstone(&self, entry: FinishedEntry) -> Result<(), CatalogError> {
        self.store().delete(&key(TOMBSTONE, entry)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::{MemoryStore, Outcome};

    #[tokio::test]
    async fn forgetting_leaves_only_the_tombstone() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), 2);
        let (old, new) = ((5, TaskId(1)), (10, TaskId(2)));
        for entry in [new, old] {
            catalog
                .put_outcome(entry.1, &Outcome::Cancelled)
                .await
                .unwrap();
            catalog.keep_outcome(entry).await.unwrap();
        }
        assert_eq!(catalog.kept_outcomes().await.unwrap(), vec![old, new]);
        catalog.forget_task(old).await.unwrap();
        catalog.forget_task(old).await.unwrap();
        assert_eq!(catalog.kept_outcomes().await.unwrap(), vec![new]);
        assert_eq!(catalog.tombstones().await.unwrap(), vec![old]);
        assert_eq!(catalog.outcome(old.1).await.unwrap(), None);
        assert_eq!(catalog.tasks().await.unwrap(), vec![new.1]);
        catalog.drop_tombstone(old).await.unwrap();
        assert!(catalog.tombstones().await.unwrap().is_empty());
        // Keys that are not entries are ignored.
        catalog
            .store()
            .put("finished/kept/x.y", Bytes::new(), PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(catalog.kept_outcomes().await.unwrap(), vec![new]);
    }
}
