//! [`TaskHandle`]: follow and control one task.

use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::error::{ControlError, JoinError};
use super::shared::{Control, TaskShared};
use crate::checkpoint::{CheckpointKey, Outcome};
use crate::image;
use crate::state::Migratable;
use crate::task::{TaskId, TaskStatus};

/// A handle to a task whose output is `O`. Cheap to clone; dropping it does not stop the task.
pub struct TaskHandle<O> {
    shared: Arc<TaskShared>,
    output: PhantomData<fn() -> O>,
}

impl<O> Clone for TaskHandle<O> {
    fn clone(&self) -> Self {
        TaskHandle {
            shared: Arc::clone(&self.shared),
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
    pub(crate) fn new(shared: Arc<TaskShared>) -> Self {
        TaskHandle {
            shared,
            output: PhantomData,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.shared.id
    }

    /// The task's status now.
    pub fn status(&self) -> TaskStatus {
        self.shared.status()
    }

    /// Steps completed so far, across restores.
    pub fn steps_completed(&self) -> u64 {
        self.shared.steps()
    }

    /// Waits for the task to end and returns its output.
    pub async fn join(&self) -> Result<O, JoinError> {
        let task = self.id();
        let mut status = self.shared.subscribe();
        let ended = status
            .wait_for(|status| status.is_finished() || *status == TaskStatus::Stopped)
            .await
            .map(|status| status.clone());
        match ended {
            Ok(TaskStatus::Stopped) | Err(_) => return Err(JoinError::ShutDown { task }),
            Ok(_) => {}
        }
        match self.shared.outcome() {
            Some(Outcome::Completed(bytes)) => {
                image::restore::<O>(&bytes).map_err(|source| JoinError::Output { task, source })
            }
            Some(Outcome::Failed(message)) => Err(JoinError::Failed { task, message }),
            Some(Outcome::Cancelled) => Err(JoinError::Cancelled { task }),
            None => Err(JoinError::ShutDown { task }),
        }
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
        let task = self.id();
        let (reply, answer) = oneshot::channel();
        if !self.shared.send(Control::Checkpoint(reply)) {
            return Err(ControlError::Finished { task });
        }
        answer.await.map_err(|_| ControlError::Finished { task })?
    }

    async fn request(
        &self,
        control: fn(oneshot::Sender<()>) -> Control,
    ) -> Result<(), ControlError> {
        let task = self.id();
        let (reply, answer) = oneshot::channel();
        if !self.shared.send(control(reply)) {
            return Err(ControlError::Finished { task });
        }
        answer.await.map_err(|_| ControlError::Finished { task })
    }
}
