//! Errors of the runtime's operations, one enum per kind of operation.

use std::sync::Arc;

use crate::checkpoint::CatalogError;
use crate::image::{CaptureError, RestoreError};
use crate::task::TaskId;
use crate::transport::{HostKeyError, ListenError, NodeNameError};

/// Error returned by [`Builder::build`](super::Builder::build).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No tokio runtime is running: build the runtime from within one.
    #[error("cosmic's runtime must be built inside a tokio runtime")]
    NoTokioRuntime,
    /// The checkpoint policy cannot be used (an adaptive policy with a zero mean time between
    /// failures).
    #[error("invalid checkpoint policy")]
    Policy(#[source] crate::checkpoint::PolicyError),
    /// The store could not be listed while looking for tasks to resume.
    #[error("failed to read the checkpoint store while resuming tasks")]
    Recovery(#[source] CatalogError),
    /// `listen` was given without `cluster_key`.
    #[error("a host (`listen`) needs a cluster key (`cluster_key`)")]
    NoClusterKey,
    /// `cluster` was given without what a cluster member needs.
    #[error("a cluster member needs {missing}")]
    ClusterSetup {
        /// What is missing.
        missing: &'static str,
    },
    /// The host could not join the cluster in time.
    #[error("failed to join the cluster within {waited:?}")]
    Join {
        /// How long it tried.
        waited: std::time::Duration,
    },
    /// The host's name cannot be a node name.
    #[error("the host name cannot name a node")]
    HostName(#[source] NodeNameError),
    /// A trusted peer's name cannot name a node.
    #[error("a trusted peer's name cannot name a node")]
    PeerName(#[source] NodeNameError),
    /// No host key was given and none could be made.
    #[error("failed to make a key pair for this host")]
    HostKey(#[source] HostKeyError),
    /// An address is not `ip:port`.
    #[error("`{addr}` is not an address (ip:port)")]
    Address {
        /// The text given.
        addr: String,
    },
    /// The listening socket could not be opened.
    #[error("failed to listen for peers")]
    Listen(#[source] ListenError),
    /// With [`Builder::require_registered_types`](super::Builder::require_registered_types):
    /// the store holds tasks of types this runtime was not told about.
    #[error("the store holds tasks of types not registered with this runtime: {}; register each with `Builder::register` (tasks: {})", list_types(.tasks), .tasks.len())]
    UnregisteredTypes {
        /// Each task that could not be resumed, with its type's wire name.
        tasks: Vec<(TaskId, String)>,
    },
}

/// The distinct type names of `tasks`, quoted and sorted.
fn list_types(tasks: &[(TaskId, String)]) -> String {
    let names: std::collections::BTreeSet<&str> =
        tasks.iter().map(|(_, name)| name.as_str()).collect();
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Error returned by [`Runtime::spawn`](super::Runtime::spawn).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The initial image could not be captured.
    #[error("failed to capture the initial image of task {task}")]
    Capture {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: CaptureError,
    },
    /// The initial checkpoint or the task record could not be written.
    #[error("failed to record new task {task} in the checkpoint store")]
    Store {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<CatalogError>,
    },
    /// The runtime is shutting down.
    #[error("the runtime is shut down")]
    ShutDown,
    /// The cluster's coordinator did not record the new task, or this host's lease does not
    /// hold. With `LeaseEnded` after the task was recorded (the lease ran out while the
    /// coordinator worked), the task exists in the cluster as an orphan under `task`: another
    /// host takes it over (see `ClusterView` to follow it); it does not run here.
    #[error("the coordinator did not record new task {task}")]
    Coordinator {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<crate::cluster::CoordinatorError>,
    },
}

/// Error returned by [`TaskHandle::join`](super::TaskHandle::join).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A step returned an error.
    #[error("task {task} failed: {message}")]
    Failed {
        /// The task.
        task: TaskId,
        /// The step's error message.
        message: String,
    },
    /// A step panicked (and no retry was left): the task failed with the panic's message.
    #[error("task {task} failed: a step panicked: {message}")]
    Panicked {
        /// The task.
        task: TaskId,
        /// What the step panicked with.
        message: String,
    },
    /// The task was cancelled.
    #[error("task {task} was cancelled")]
    Cancelled {
        /// The task.
        task: TaskId,
    },
    /// The recorded output does not decode as the handle's output type.
    #[error("output of task {task} does not decode")]
    Output {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: RestoreError,
    },
    /// The outcome could not be read from the store.
    #[error("failed to read the outcome of task {task}")]
    Store {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<CatalogError>,
    },
    /// The runtime stopped before the task ended (it resumes from its checkpoint at the next
    /// start on the same store).
    #[error("the runtime shut down before task {task} ended")]
    ShutDown {
        /// The task.
        task: TaskId,
    },
    /// The task moved away and the host it is on could not be asked for its outcome.
    #[error("task {task} moved; could not get its outcome from `{host}`: {reason}")]
    Unreachable {
        /// The task.
        task: TaskId,
        /// The host asked.
        host: String,
        /// Why.
        reason: String,
    },
}

/// Error returned by a handle's control operations (pause, resume, cancel, checkpoint).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The task has already ended.
    #[error("task {task} has already ended")]
    Finished {
        /// The task.
        task: TaskId,
    },
    /// The state could not be captured.
    #[error("failed to capture task {task}")]
    Capture {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<CaptureError>,
    },
    /// The checkpoint could not be made durable; the previous one is kept.
    #[error("failed to write a checkpoint of task {task}")]
    Store {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<CatalogError>,
    },
    /// The task moved to another host; control it through a handle there (see
    /// [`TaskHandle::locate`](super::TaskHandle::locate)).
    #[error("task {task} moved to `{host}`; control it there")]
    Moved {
        /// The task.
        task: TaskId,
        /// The host it moved to.
        host: String,
    },
    /// The runtime has no store, or its policy is [`Policy::Never`](crate::checkpoint::Policy::Never).
    #[error("task {task} cannot be checkpointed: {reason}")]
    CheckpointsDisabled {
        /// The task.
        task: TaskId,
        /// Why.
        reason: &'static str,
    },
}

/// Error returned by [`Runtime::forget`](super::Runtime::forget) and
/// [`TaskHandle::forget`](super::TaskHandle::forget).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForgetError {
    /// No such task on this runtime (never here, or already forgotten).
    #[error("no task {task} on this runtime")]
    NotFound {
        /// The task.
        task: TaskId,
    },
    /// The task has not ended: only a finished task's outcome can be forgotten.
    #[error("task {task} has not ended; only a finished task can be forgotten")]
    NotFinished {
        /// The task.
        task: TaskId,
    },
    /// The task moved to another host; forget it there.
    #[error("task {task} moved to `{host}`; forget it there")]
    Moved {
        /// The task.
        task: TaskId,
        /// The host it moved to.
        host: String,
    },
    /// The store failed; the outcome may still be there (a tombstone is written first).
    #[error("failed to forget task {task} in the store")]
    Store {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<CatalogError>,
    },
    /// The cluster's coordinator refused or failed to forget the task.
    #[error("the coordinator did not forget task {task}")]
    Coordinator {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: Arc<crate::cluster::CoordinatorError>,
    },
}

/// Error returned by [`Runtime::handle`](super::Runtime::handle).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// No such task on this runtime.
    #[error("no task {task} on this runtime")]
    NotFound {
        /// The task.
        task: TaskId,
    },
    /// The task is in the store, but its type was not registered with this runtime, so it
    /// was not resumed ([`Builder::register`](super::Builder::register), then restart).
    #[error("task {task} is in the store, but its type `{type_name}` is not registered with this runtime (Builder::register), so it was not resumed")]
    UnregisteredType {
        /// The task.
        task: TaskId,
        /// Its type's wire name.
        type_name: String,
    },
    /// The task is in the store but could not be resumed at start (see
    /// [`Runtime::recovery`](super::Runtime::recovery)).
    #[error("task {task} is in the store, but it could not be resumed")]
    NotResumed {
        /// The task.
        task: TaskId,
        /// Why.
        #[source]
        source: super::RecoveryError,
    },
    /// The task's output type is not the one asked for.
    #[error("task {task} outputs `{actual}`, not `{requested}`")]
    OutputType {
        /// The task.
        task: TaskId,
        /// The type asked for.
        requested: String,
        /// The task's output type.
        actual: String,
    },
}
