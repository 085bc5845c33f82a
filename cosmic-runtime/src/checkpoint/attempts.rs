//! The attempts record of a task, `tasks/<id>/attempts`: how often it was tried after a step
//! panicked, and how often it was resumed from the same checkpoint without getting further.
//!
//! The second count is what catches a step that takes its whole process down (`panic =
//! "abort"`, a segfault, an out-of-memory kill): nothing can be caught then, but the host
//! writes the count before resuming the task, so after a few restarts in a row from the same
//! checkpoint it stops resuming it (quarantine) instead of crashing forever.

use super::catalog::encode;
use super::{Catalog, CatalogError, PutMode};
use crate::image;
use crate::task::TaskId;

/// What the store counts of a task's tries; see the module docs. All zero when never written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Tries after a panic so far (0 while no step has panicked; 2 once the task is on its
    /// second try).
    pub tries: u32,
    /// Resumes in a row from checkpoint `resumed_from` (the sequence number), none of which got
    /// as far as a newer checkpoint.
    pub resumes: u32,
    /// The checkpoint those resumes started from.
    pub resumed_from: u64,
}

impl Attempts {
    /// Decodes an attempts record from the bytes of its image.
    pub fn decode(bytes: &[u8]) -> Result<Attempts, image::RestoreError> {
        let (tries, resumes, resumed_from) = image::restore::<(u32, u32, u64)>(bytes)?;
        Ok(Attempts {
            tries,
            resumes,
            resumed_from,
        })
    }

    /// The record as it stands after one more resume from checkpoint `seq`: the count goes on
    /// if the last resume was from the same checkpoint (no progress since), else starts again.
    pub fn resumed(self, seq: u64) -> Attempts {
        let resumes = if self.resumes > 0 && self.resumed_from == seq {
            self.resumes.saturating_add(1)
        } else {
            1
        };
        Attempts {
            resumes,
            resumed_from: seq,
            ..self
        }
    }
}

impl Catalog {
    pub(super) fn attempts_key(task: TaskId) -> String {
        format!("tasks/{task}/attempts")
    }

    /// The attempts record of `task` (all zero if it has none).
    pub async fn attempts(&self, task: TaskId) -> Result<Attempts, CatalogError> {
        let key = Self::attempts_key(task);
        let Some(bytes) = self.store().get(&key).await? else {
            return Ok(Attempts::default());
        };
        Attempts::decode(&bytes).map_err(|source| CatalogError::Damaged { key, source })
    }

    /// Writes the attempts record of `task` durably, replacing the previous one.
    pub async fn put_attempts(
        &self,
        task: TaskId,
        attempts: &Attempts,
    ) -> Result<(), CatalogError> {
        let key = Self::attempts_key(task);
        let bytes = encode(
            &key,
            &(attempts.tries, attempts.resumes, attempts.resumed_from),
        )?;
        self.store().put(&key, bytes, PutMode::Overwrite).await?;
        Ok(())
    }

    /// Removes the attempts record of `task`: a quarantined task is resumed again at the next
    /// start (after its cause was fixed), with fresh counts.
    pub async fn clear_attempts(&self, task: TaskId) -> Result<(), CatalogError> {
        self.store().delete(&Self::attempts_key(task)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStore;
    use std::sync::Arc;

    #[test]
    fn resumes_count_up_from_the_same_checkpoint_and_restart_after_progress() {
        let start = Attempts::default();
        let first = start.resumed(4);
        assert_eq!((first.resumes, first.resumed_from), (1, 4));
        let third = first.resumed(4).resumed(4);
        assert_eq!(third.resumes, 3);
        let progressed = Attempts { tries: 2, ..third }.resumed(5);
        assert_eq!((progressed.tries, progressed.resumes), (2, 1));
        // A record that never counted a resume starts at one even from checkpoint 0.
        assert_eq!(Attempts::default().resumed(0).resumes, 1);
    }

    #[tokio::test]
    async fn the_record_round_trips_and_is_cleared() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), 3);
        let task = TaskId(9);
        assert_eq!(catalog.attempts(task).await.unwrap(), Attempts::default());
        let attempts = Attempts {
            tries: 3,
            resumes: 2,
            resumed_from: 17,
        };
        catalog.put_attempts(task, &attempts).await.unwrap();
        assert_eq!(catalog.attempts(task).await.unwrap(), attempts);
        catalog
            .store()
            .put(
                &Catalog::attempts_key(task),
                bytes::Bytes::from_static(b"junk"),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
        assert!(matches!(
            catalog.attempts(task).await,
            Err(CatalogError::Damaged { .. })
        ));
        catalog.clear_attempts(task).await.unwrap();
        assert_eq!(catalog.attempts(task).await.unwrap(), Attempts::default());
    }
}
