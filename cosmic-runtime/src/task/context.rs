//! What a step sees of the runtime.

use super::TaskId;
use crate::runtime::MigrateError;

/// Passed to every [`Task::step`](super::Task::step): who the task is and where it runs, and
/// requests the step can make that take effect at the next safe point.
#[derive(Debug)]
pub struct StepContext {
    pub(crate) task: TaskId,
    pub(crate) host: String,
    pub(crate) steps: u64,
    pub(crate) checkpoint_requested: bool,
    pub(crate) move_requested: Option<String>,
    pub(crate) move_failed: Option<MigrateError>,
}

impl StepContext {
    pub(crate) fn new(task: TaskId, host: String, steps: u64) -> Self {
        StepContext {
            task,
            host,
            steps,
            checkpoint_requested: false,
            move_requested: None,
            move_failed: None,
        }
    }

    /// The task's id.
    pub fn task_id(&self) -> TaskId {
        self.task
    }

    /// The name of the host the task runs on now.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How many steps the task has completed before this one, across restores.
    pub fn steps_completed(&self) -> u64 {
        self.steps
    }

    /// Asks for a checkpoint at the next safe point (after this step).
    pub fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }

    /// Asks to move this task to the peer `host` at the next safe point (after this step).
    ///
    /// The next step learns the outcome: if the task moved, it runs on `host` ([`host`]
    /// says so); if not (no such peer, the peer refused, it could not be reached), it runs on
    /// here and [`move_failed`](Self::move_failed) says why. The failure is logged too.
    ///
    /// [`host`]: Self::host
    pub fn request_move(&mut self, host: impl Into<String>) {
        self.move_requested = Some(host.into());
    }

    /// Why the move the previous step asked for ([`request_move`](Self::request_move)) did
    /// not happen; `None` if it asked for none, or if the task moved.
    pub fn move_failed(&self) -> Option<&MigrateError> {
        self.move_failed.as_ref()
    }
}
