//! Where a cluster's tasks live in a shared store (a folder every host reaches, or an S3
//! bucket).
//!
//! ```text
//! cluster/tasks/<task>/<host>/<incarnation>/ckpt-<seq>-<steps>.<kind>   a checkpoint image
//! cluster/tasks/<task>/<host>/<incarnation>/outcome                      the outcome record
//! ```
//!
//! Every key names its writer: the host and the incarnation of its lease (new at every start,
//! so a restarted host never writes a key its earlier life wrote), and a sequence number that
//! the writer never reuses. So a key is written once and never overwritten: the store needs no
//! conditional writes, which object stores do not reliably offer, and a write that lands late
//! (from a host paused past its lease) cannot replace anything. Which checkpoint is current
//! is the coordinator's to say ([`TaskEntry::current`](super::TaskEntry)); everything else
//! under a task is collected by its owner (older checkpoints beyond the configured count,
//! writes of hosts that lost the task), and all of it once the task is forgotten.
//!
//! `<kind>` is `portable` today; a native checkpoint kind (machine-specific, see the design)
//! gets its own suffix, and a host of another kind resumes from the newest portable one.
//!
//! The per-host layout of [`Catalog`](crate::checkpoint::Catalog) (`tasks/<task>/...`) is for
//! a host's own store without a coordinator; both can share a store, as their prefixes differ.

use crate::task::TaskId;

/// The prefix of everything the cluster keeps in the shared store.
pub const ROOT: &str = "cluster/tasks/";

/// The checkpoint kind every host can read.
pub const PORTABLE: &str = "portable";

/// Everything kept for `task`.
pub fn task_prefix(task: TaskId) -> String {
    format!("{ROOT}{task}/")
}

/// Everything `host`'s lease `incarnation` wrote for `task`.
pub fn writer_prefix(task: TaskId, host: &str, incarnation: u64) -> String {
    format!("{ROOT}{task}/{host}/{incarnation:020}/")
}

/// A checkpoint image of `task` written by `host`'s `incarnation`, its `seq`-th, after
/// `steps` steps.
pub fn checkpoint_key(task: TaskId, host: &str, incarnation: u64, seq: u64, steps: u64) -> String {
    format!(
        "{}ckpt-{seq:020}-{steps:020}.{PORTABLE}",
        writer_prefix(task, host, incarnation)
    )
}

/// The outcome record of `task` written by `host`'s `incarnation`.
pub fn outcome_key(task: TaskId, host: &str, incarnation: u64) -> String {
    format!("{}outcome", writer_prefix(task, host, incarnation))
}

/// A key of this layout, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// The task.
    pub task: TaskId,
    /// The writer.
    pub host: String,
    /// The writer's incarnation.
    pub incarnation: u64,
    /// What it is.
    pub item: Item,
}

/// What a key of this layout holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A checkpoint image.
    Checkpoint {
        /// The writer's sequence number.
        seq: u64,
        /// Steps done.
        steps: u64,
        /// Its kind (`portable`).
        kind: String,
    },
    /// An outcome record.
    Outcome,
}

/// Parses a key of this layout (None for anything else).
pub fn parse(key: &str) -> Option<ParsedKey> {
    let rest = key.strip_prefix(ROOT)?;
    let mut parts = rest.split('/');
    let task = parts.next()?.parse().ok()?;
    let host = parts.next()?.to_owned();
    let incarnation = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let item = if name == "outcome" {
        Item::Outcome
    } else {
        let (stem, kind) = name.strip_prefix("ckpt-")?.split_once('.')?;
        let (seq, steps) = stem.split_once('-')?;
        Item::Checkpoint {
            seq: seq.parse().ok()?,
            steps: steps.parse().ok()?,
            kind: kind.to_owned(),
        }
    };
    Some(ParsedKey {
        task,
        host,
        incarnation,
        item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_and_are_valid_store_keys() {
        let task = TaskId(0xfeed);
        let key = checkpoint_key(task, "alpha", 7, 3, 120);
        assert_eq!(
            parse(&key),
            Some(ParsedKey {
                task,
                host: "alpha".into(),
                incarnation: 7,
                item: Item::Checkpoint {
                    seq: 3,
                    steps: 120,
                    kind: PORTABLE.into()
                },
            })
        );
        let outcome = outcome_key(task, "beta-2", 1);
        assert_eq!(parse(&outcome).map(|p| p.item), Some(Item::Outcome));
        for key in [key, outcome] {
            crate::checkpoint::validate_key(&key).expect("a valid store key");
            assert!(key.starts_with(&task_prefix(task)));
        }
        assert_eq!(parse("tasks/00000000000000ff/task"), None);
        assert_eq!(parse(&format!("{ROOT}zz/alpha/1/outcome")), None);
    }

    #[test]
    fn a_writer_sorts_its_checkpoints_by_sequence() {
        let task = TaskId(1);
        let older = checkpoint_key(task, "a", 1, 9, 90);
        let newer = checkpoint_key(task, "a", 1, 10, 100);
        assert!(older < newer);
    }
}
