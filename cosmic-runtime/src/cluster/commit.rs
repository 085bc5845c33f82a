//! Making checkpoints current in batches: every task's persister hands its durable checkpoint
//! to the [`Committer`], which sends whatever has gathered while the previous batch was in
//! flight as one [`Coordinator::commit_checkpoints`](super::Coordinator::commit_checkpoints)
//! call. With 10,000 tasks checkpointing once an interval that is a handful of round trips,
//! not 10,000, and a lone task still commits at once (no timer to wait for).

use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};

use super::coordinator::{CheckpointCommit, CoordinatorError, Fenced};
use super::host::ClusterHost;

/// Why a checkpoint did not become current.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Another host holds a newer token: the task is no longer this host's.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// The coordinator did not answer, or this host's lease ended: the previous checkpoint
    /// stays current.
    #[error("the coordinator did not take the checkpoint: {reason}")]
    NotCommitted {
        /// Why.
        reason: String,
    },
}

type Request = (CheckpointCommit, oneshot::Sender<Result<(), CommitError>>);

pub(crate) struct Committer {
    queue: mpsc::UnboundedSender<Request>,
}

impl Committer {
    pub(crate) fn start(host: Weak<ClusterHost>, batch: usize) -> Committer {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(host, receiver, batch.max(1)));
        Committer { queue }
    }

    /// Makes `commit` current; answers once the coordinator decided.
    pub(crate) async fn commit(&self, commit: CheckpointCommit) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((commit, reply)).is_err() {
            return Err(CommitError::NotCommitted {
                reason: "the host is shutting down".into(),
            });
        }
        answer.await.unwrap_or(Err(CommitError::NotCommitted {
            reason: "the host is shutting down".into(),
        }))
    }
}

async fn run(
    host: Weak<ClusterHost>,
    mut receiver: mpsc::UnboundedReceiver<Request>,
    batch: usize,
) {
    let mut pending = Vec::with_capacity(batch);
    while receiver.recv_many(&mut pending, batch).await > 0 {
        let Some(host) = host.upgrade() else { return };
        let (commits, replies): (Vec<_>, Vec<_>) = pending.drain(..).unzip();
        let verdicts = match host.lease() {
            Ok(lease) => host.coordinator.commit_checkpoints(&lease, &commits).await,
            Err(error) => Err(error),
        };
        match verdicts {
            Ok(verdicts) if verdicts.len() == replies.len() => {
                for (reply, verdict) in replies.into_iter().zip(verdicts) {
                    let _ = reply.send(verdict.map_err(CommitError::from));
                }
            }
            Ok(verdicts) => {
                let reason = format!(
                    "the coordinator gave {} verdicts for {} checkpoints",
                    verdicts.len(),
                    replies.len()
                );
                tracing::error!(%reason, "checkpoint commit");
                for reply in replies {
                    let _ = reply.send(Err(CommitError::NotCommitted {
                        reason: reason.clone(),
                    }));
                }
            }
            Err(error) => {
                if matches!(error, CoordinatorError::LeaseEnded { .. }) {
                    host.lease_ended();
                }
                let reason = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(CommitError::NotCommitted {
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }
}
