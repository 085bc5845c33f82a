//! [`TaskHandle`]: follow and control one task.

use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use super::error::{ControlError, JoinError};
use super::migrate::{follow, LocateError, MigrateError, TaskLocation};
use super::shared::{Control, TaskShared};
use super::step_guard::panic_message;
use super::RuntimeInner;
use crate::checkpoint::{CheckpointKey, Outcome};
use crate::image;
use crate::state::Migratable;
use crate::task::{TaskId, TaskStatus};

/// A handle to a task whose output is `O`. Cheap to clone; dropping it does not stop the task.
///
/// After the task moves to another host the handle keeps working: [`join`](Self::join) and
/// [`locate`](Self::locate) follow it through the forwarding entries of the hosts it passed.
pub struct TaskHandle<O> {
    shared: Arc<TaskShared>,
    runtime: Weak<RuntimeInner>,
    output: PhantomData<fn() -> O>,
}

impl<O> Clone for TaskHandle<O> {
    fn clone(&self) -> Self {
        TaskHandle {
            shared: Arc::clone(&self.shared),
            runtime: Weak::clone(&self.runtime),
            output: PhantomData,
        }
    }
}

impl<O> std::fmt::Debug for TaskHandle<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.shared.id)
            .field("status", &self.shared.status())
            .finish()
    }
}

impl<O: Migratable> TaskHandle<O> {
    pub(crate) fn new(shared: Arc<TaskShared>, runtime: Weak<RuntimeInner>) -> Self {
        TaskHandle {
            shared,
            runtime,
            output: PhantomData,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.shared.id
    }

    /// The task's status as this host knows it ([`TaskStatus::Moved`] once it moved away;
    /// [`locate`](Self::locate) asks the host it is on).
    pub fn status(&self) -> TaskStatus {
        self.shared.status()
    }

    /// Steps completed so far, across restores.
    pub fn steps_completed(&self) -> u64 {
        self.shared.steps()
    }

    /// Waits for the task to end and returns its output, wherever it ended.
    pub async fn join(&self) -> Result<O, JoinError> {
        let task = self.id();
        let mut status = self.shared.subscribe();
        let ended = status
            .wait_for(|status| {
                status.is_finished() || matches!(status, TaskStatus::Stopped | TaskStatus::Moved(_))
            })
            .await
            .map(|status| status.clone());
        let outcome = match ended {
            Ok(TaskStatus::Stopped) | Err(_) => return Err(JoinError::ShutDown { task }),
            Ok(TaskStatus::Moved(_)) => {
                let runtime = self.runtime.upgrade().ok_or(JoinError::ShutDown { task })?;
                let forward = self.shared.forward().ok_or(JoinError::ShutDown { task })?;
                Some(follow::await_outcome(&runtime, task, forward).await?)
            }
            Ok(_) => self.shared.outcome(),
        };
        match outcome {
            Some(Outcome::Completed(bytes)) => {
                image::restore::<O>(&bytes).map_err(|source| JoinError::Output { task, source })
            }
            Some(Outcome::Failed(message)) => Err(match panic_message(&message) {
                Some(panic) => JoinError::Panicked {
                    task,
                    message: panic.to_owned(),
                },
                None => JoinError::Failed { task, message },
            }),
            Some(Outcome::Cancelled) => Err(JoinError::Cancelled { task }),
            None => Err(JoinError::ShutDown { task }),
        }
    }

    /// Moves the task to the peer `host`: at its next safe point it stops, its image goes to
    /// the peer over the secure channel, and it resumes there. Returns once the move is
    /// committed and (normally) the task runs on the peer. On error the task was not moved
    /// and runs on here (a paused task stays paused); the error says what happened. A paused
    /// task that moves arrives running.
    ///
    /// If the task has moved away since this handle was made, the error is
    /// [`MigrateError::Moved`], naming the host it is on now; if it came back here, it is
    /// moved from here all the same.
    pub async fn migrate_to(&self, host: &str) -> Result<(), MigrateError> {
        let task = self.id();
        // The task's current entry here: this handle's, or a newer one if it came back.
        let mut shared = Arc::clone(&self.shared);
        if shared.forward().is_some() {
            if let Some(current) = self.runtime.upgrade().and_then(|rt| rt.task(task)) {
                shared = current;
            }
        }
        let (reply, answer) = oneshot::channel();
        if !shared.send(Control::Migrate {
            to: host.to_owned(),
            reply,
        }) {
            return Err(self.moved_or_finished(&shared).await);
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.moved_or_finished(&shared).await),
        }
    }

    /// Why a move found no driver for the task: it moved away (to where it is now, followed
    /// as far as possible), or it ended.
    async fn moved_or_finished(&self, shared: &TaskShared) -> MigrateError {
        let task = self.id();
        let Some(forward) = shared.forward() else {
            return MigrateError::Finished { task };
        };
        let located = match self.runtime.upgrade() {
            Some(runtime) => follow::locate(&runtime, task).await.ok(),
            None => None,
        };
        MigrateError::Moved {
            task,
            host: located.map_or(forward.host, |location| location.host),
        }
    }

    /// Where the task is now and how it is doing, following it across hosts.
    pub async fn locate(&self) -> Result<TaskLocation, LocateError> {
        let runtime = self.runtime.upgrade().ok_or(LocateError::NotAHost)?;
        follow::locate(&runtime, self.id()).await
    }

    /// The program is done with this finished task: see [`Runtime::forget`](super::Runtime::forget).
    pub async fn forget(&self) -> Result<(), super::ForgetError> {
        let runtime = self
            .runtime
            .upgrade()
            .ok_or(super::ForgetError::NotFound { task: self.id() })?;
        super::retention::forget(&runtime, self.id()).await
    }

    /// Pauses the task at its next safe point; returns once it is paused.
    pub async fn pause(&self) -> Result<(), ControlError> {
        self.request(Control::Pause).await
    }

    /// Resumes a paused task.
    pub async fn resume(&self) -> Result<(), ControlError> {
        self.request(Control::Resume).await
    }

    /// Cancels the task at its next safe point; returns once the cancellation is recorded.
    pub async fn cancel(&self) -> Result<(), ControlError> {
        self.request(Control::Cancel).await
    }

    /// Checkpoints the task at its next safe point; returns once the image is durable.
    pub async fn checkpoint_now(&self) -> Result<CheckpointKey, ControlError> {
        let (reply, answer) = oneshot::channel();
        if !self.shared.send(Control::Checkpoint(reply)) {
            return Err(self.gone());
        }
        answer.await.map_err(|_| self.gone())?
    }

    /// Why a control request found no driver: the task moved away, or it ended.
    fn gone(&self) -> ControlError {
        let task = self.id();
        match self.shared.forward() {
            Some(forward) => ControlError::Moved {
                task,
                host: forward.host,
            },
            None => ControlError::Finished { task },
        }
    }

    async fn request(
        &self,
        control: fn(oneshot::Sender<()>) -> Control,
    ) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        if !self.shared.send(control(reply)) {
            return Err(self.gone());
        }
        answer.await.map_err(|_| self.gone())
    }
}
