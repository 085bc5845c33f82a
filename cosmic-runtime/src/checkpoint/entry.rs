//! What a key of a store names, in the [`Catalog`]'s layout (see `catalog.rs`), and back: for
//! tools that look at a store's keys or files directly (`cosmic store ls`, `cosmic inspect`).

use super::catalog::parse_checkpoint_key;
use super::ownership::epoch_key;
use super::{Catalog, CheckpointKey};
use crate::task::TaskId;

/// One key of a store in the [`Catalog`]'s layout.
///
/// ```
/// use cosmic_runtime::checkpoint::{CatalogEntry, CheckpointKey};
/// use cosmic_runtime::task::TaskId;
///
/// let entry = CatalogEntry::Checkpoint { task: TaskId::from_raw(0xab), key: CheckpointKey { seq: 3, steps: 40 } };
/// let key = entry.key();
/// assert_eq!(key, "tasks/00000000000000ab/ckpt/00000000000000000003-00000000000000000040");
/// assert_eq!(CatalogEntry::parse(&key), Some(entry));
/// assert_eq!(CatalogEntry::parse("tasks/00000000000000ab/other"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogEntry {
    /// `tasks/<id>/task`: what the task is ([`TaskRecord`](super::TaskRecord)).
    TaskRecord {
        /// The task.
        task: TaskId,
    },
    /// `tasks/<id>/ckpt/<seq>-<steps>`: a checkpoint image of the task.
    Checkpoint {
        /// The task.
        task: TaskId,
        /// Which checkpoint.
        key: CheckpointKey,
    },
    /// `tasks/<id>/outcome`: how the task ended ([`Outcome`](super::Outcome)).
    Outcome {
        /// The task.
        task: TaskId,
    },
    /// `tasks/<id>/attempts`: tries after panics and resumes without progress
    /// ([`Attempts`](super::Attempts)).
    Attempts {
        /// The task.
        task: TaskId,
    },
    /// `tasks/<id>/epoch/<epoch>.<kind>`: who owns the task since that epoch
    /// ([`EpochRecord`](super::EpochRecord)).
    Epoch {
        /// The task.
        task: TaskId,
        /// The epoch.
        epoch: u64,
        /// The record's kind: `prepared`, `owner` or `moved`.
        kind: &'static str,
    },
}

impl CatalogEntry {
    /// What `key` names, or `None` for a key outside the layout.
    pub fn parse(key: &str) -> Option<CatalogEntry> {
        let rest = key.strip_prefix("tasks/")?;
        let (task, rest) = rest.split_once('/')?;
        let task: TaskId = task.parse().ok()?;
        if rest == "task" {
            return Some(CatalogEntry::TaskRecord { task });
        }
        if rest == "outcome" {
            return Some(CatalogEntry::Outcome { task });
        }
        if rest == "attempts" {
            return Some(CatalogEntry::Attempts { task });
        }
        if let Some(name) = rest.strip_prefix("ckpt/") {
            let key = parse_checkpoint_key(name)?;
            return Some(CatalogEntry::Checkpoint { task, key });
        }
        let (epoch, kind) = rest.strip_prefix("epoch/")?.split_once('.')?;
        let kind = ["prepared", "owner", "moved"]
            .into_iter()
            .find(|known| *known == kind)?;
        Some(CatalogEntry::Epoch {
            task,
            epoch: epoch.parse().ok()?,
            kind,
        })
    }

    /// The store key of this entry.
    pub fn key(&self) -> String {
        match *self {
            CatalogEntry::TaskRecord { task } => Catalog::task_key(task),
            CatalogEntry::Checkpoint { task, key } => Catalog::checkpoint_key(task, key),
            CatalogEntry::Outcome { task } => Catalog::outcome_key(task),
            CatalogEntry::Attempts { task } => Catalog::attempts_key(task),
            CatalogEntry::Epoch { task, epoch, kind } => epoch_key(task, epoch, kind),
        }
    }

    /// The task the entry belongs to.
    pub fn task(&self) -> TaskId {
        match *self {
            CatalogEntry::TaskRecord { task }
            | CatalogEntry::Checkpoint { task, .. }
            | CatalogEntry::Outcome { task }
            | CatalogEntry::Attempts { task }
            | CatalogEntry::Epoch { task, .. } => task,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_key_parses_back() {
        let task = TaskId(0x0123_4567_89ab_cdef);
        let entries = [
            CatalogEntry::TaskRecord { task },
            CatalogEntry::Outcome { task },
            CatalogEntry::Attempts { task },
            CatalogEntry::Checkpoint {
                task,
                key: CheckpointKey { seq: 7, steps: 700 },
            },
            CatalogEntry::Epoch {
                task,
                epoch: 2,
                kind: "prepared",
            },
            CatalogEntry::Epoch {
                task,
                epoch: 12,
                kind: "moved",
            },
            CatalogEntry::Epoch {
                task,
                epoch: 3,
                kind: "owner",
            },
        ];
        for entry in entries {
            assert_eq!(CatalogEntry::parse(&entry.key()), Some(entry.clone()));
            assert_eq!(entry.task(), task);
        }
        for key in [
            "",
            "tasks/",
            "tasks/0123456789abcdef",
            "tasks/0123456789abcdef/",
            "tasks/xyz/task",
            "tasks/0123456789abcdef/ckpt/1",
            "tasks/0123456789abcdef/epoch/2.unknown",
            "tasks/0123456789abcdef/epoch/two.owner",
            "other/0123456789abcdef/task",
        ] {
            assert_eq!(CatalogEntry::parse(key), None, "{key:?}");
        }
    }
}
