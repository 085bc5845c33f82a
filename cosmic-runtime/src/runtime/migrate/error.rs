//! Errors of migrations and of following tasks across hosts.

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::CatalogError;
use crate::image::CaptureError;
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

/// Error returned by a migration. Every variant but [`MigrateError::Finished`] and
/// [`MigrateError::Moved`] means the task was not moved and keeps running where it was (paused
/// tasks stay paused).
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
    /// The task has ended.
    #[error("task {task} has ended")]
    Finished {
        /// The task.
        task: TaskId,
    },
    /// The task moved away from this host and runs on `host` now (as far as it could be
    /// followed): move it from there.
    #[error("task {task} is no longer here: it moved to `{host}`, so move it from there")]
    Moved {
        /// The task.
        task: TaskId,
        /// Where it is now.
        host: String,
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
    /// The channel to the peer could not be opened: it could not be reached, or the secure
    /// handshake failed (a peer that holds another cluster key refuses it).
    #[error("{}", connect_failed(host, *task, source))]
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

/// What [`MigrateError::Connect`] says: a handshake the peer refused (most likely another
/// cluster key) must not read as a network failure.
fn connect_failed(host: &str, task: TaskId, source: &ConnectError) -> String {
    use crate::transport::HandshakeError;
    match source.handshake_error() {
        None => format!("failed to reach `{host}` to move task {task}"),
        Some(HandshakeError::AuthenticationFailed { .. } | HandshakeError::PeerClosed { .. }) => {
            format!(
                "`{host}` refused the secure handshake for moving task {task}: the two hosts' cluster keys may differ"
            )
        }
        Some(_) => format!("the secure handshake with `{host}` failed while moving task {task}"),
    }
}
