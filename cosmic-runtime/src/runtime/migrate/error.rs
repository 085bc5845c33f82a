//! Errors of migrations and of following tasks across hosts.

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::CatalogError;
use crate::image::{CaptureError, RestoreError};
use crate::task::TaskId;
use crate::transport::protocol::Refusal;
use crate::transport::{ChannelError, ConnectError};

/// The step of a hand-off where something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandoffStep {
    /// Opening the channel to the peer.
    Connect,
    /// Sending the offer and waiting for the answer.
    Offer,
    /// Streaming the image.
    Transfer,
    /// Waiting for the peer to verify and record its copy.
    Prepare,
    /// Writing our commit record.
    Commit,
}

impl std::fmt::Display for HandoffStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandoffStep::Connect => "connect",
            HandoffStep::Offer => "offer",
            HandoffStep::Transfer => "transfer",
            HandoffStep::Prepare => "prepare",
            HandoffStep::Commit => "commit",
        })
    }
}

/// Error returned by a migration. Every variant but [`MigrateError::Finished`] means the task
/// was not moved and keeps running where it was (paused tasks stay paused).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The runtime was built without `listen` and `cluster_key`: it is not a host.
    #[error("this runtime is not a host (build it with `listen` and `cluster_key`)")]
    NotAHost,
    /// Leaving needs a cluster (`Builder::cluster`).
    #[error("this runtime is not a member of a cluster (build it with `Builder::cluster`)")]
    NotInCluster,
    /// The cluster's coordinator refused the move or did not answer: the task stays here
    /// (unless the error is `Fenced`: then it is another host's, and stops here).
    #[error("the coordinator did not move task {task} to `{host}`")]
    Coordinator {
        /// The task.
        task: TaskId,
        /// The destination.
        host: String,
        /// Why.
        #[source]
        source: Arc<crate::cluster::CoordinatorError>,
    },
    /// No peer of that name is configured.
    #[error("no peer named `{host}` (add it with `Builder::peer` or `Runtime::add_peer`)")]
    UnknownPeer {
        /// The name asked for.
        host: String,
    },
    /// The destination is this host.
    #[error("task {task} already runs on `{host}`")]
    SameHost {
        /// The task.
        task: TaskId,
        /// This host.
        host: String,
    },
    /// A drain's destination cannot take tasks.
    #[error("cannot move tasks to `{host}`: {reason}")]
    NoDestination {
        /// The destination asked for.
        host: String,
        /// Why not.
        reason: String,
    },
    /// A move was asked of a host that does not own the task (`cosmic migrate` reached a
    /// host the task has left); `owner` says what the coordinator says of it.
    #[error("task {task} is not on `{host}`: {owner}")]
    NotHere {
        /// The task.
        task: TaskId,
        /// The host asked.
        host: String,
        /// Where the coordinator says it is, in words.
        owner: String,
    },
    /// The task has ended or moved away already.
    #[error("task {task} is not running here (it ended or moved)")]
    Finished {
        /// The task.
        task: TaskId,
    },
    /// The runtime is shutting down.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The state could not be captured.
    #[error("failed to capture task {task} for the move")]
    Capture {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<CaptureError>,
    },
    /// The channel to the peer could not be opened.
    #[error("failed to reach `{host}` to move task {task}")]
    Connect {
        /// The task.
        task: TaskId,
        /// The peer.
        host: String,
        /// Why.
        #[source]
        source: Arc<ConnectError>,
    },
    /// The peer refused the task.
    #[error("`{host}` refused task {task}: {reason}")]
    Refused {
        /// The task.
        task: TaskId,
        /// The peer.
        host: String,
        /// Why.
        reason: Refusal,
    },
    /// The channel failed during the hand-off.
    #[error("the connection to `{host}` failed during the {step} step of moving task {task}")]
    Channel {
        /// The task.
        task: TaskId,
        /// The peer.
        host: String,
        /// Where.
        step: HandoffStep,
        /// Why.
        #[source]
        source: Arc<ChannelError>,
    },
    /// The peer did not answer in time.
    #[error(
        "`{host}` did not answer within {after:?} during the {step} step of moving task {task}"
    )]
    Timeout {
        /// The task.
        task: TaskId,
        /// The peer.
        host: String,
        /// Where.
        step: HandoffStep,
        /// The deadline.
        after: Duration,
    },
    /// The peer received the image but could not verify or record it.
    #[error("`{host}` could not take the image of task {task}: {reason}")]
    Rejected {
        /// The task.
        task: TaskId,
        /// The peer.
        host: String,
        /// Its reason.
        reason: String,
    },
    /// Our commit record could not be written; the peer was told to abort.
    #[error("failed to record the move of task {task} to `{host}`")]
    Store {
        /// The task.
        task: TaskId,
        /// The peer.
        host: String,
        /// Why.
        #[source]
        source: Arc<CatalogError>,
    },
    /// A fault was injected (fault tests only: the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    #[error("injected fault: dropped the connection during the {step} step of moving task {task}")]
    Injected {
        /// The task.
        task: TaskId,
        /// Where.
        step: HandoffStep,
    },
}

impl MigrateError {
    /// Whether the destination refused the task (as opposed to a failure on the way).
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            MigrateError::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Error returned by following a task across hosts ([`TaskHandle::locate`]).
///
/// [`TaskHandle::locate`]: crate::runtime::TaskHandle::locate
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LocateError {
    /// A host on the way could not be reached.
    #[error("failed to ask `{host}` ({addr}) about task {task}")]
    Unreachable {
        /// The task.
        task: TaskId,
        /// The host.
        host: String,
        /// Its address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A host on the way does not know the task.
    #[error("`{host}` does not know task {task}")]
    Unknown {
        /// The task.
        task: TaskId,
        /// The host.
        host: String,
    },
    /// The chain of forwarding entries is longer than any real one.
    #[error("task {task}: gave up after {hops} forwarding hops")]
    TooManyHops {
        /// The task.
        task: TaskId,
        /// Hops followed.
        hops: usize,
    },
    /// This runtime is not a host, so it cannot ask others.
    #[error("this runtime is not a host")]
    NotAHost,
}

/// Error returned when the image a destination received does not restore.
pub(crate) fn rejected_image(error: &RestoreError) -> String {
    format!("the image does not restore: {error}")
}
