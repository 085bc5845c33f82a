//! The state a running task shares with its handles: status, control channel, outcome.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use super::error::ControlError;
use super::migrate::MigrateError;
use crate::checkpoint::{CheckpointKey, Outcome};
use crate::task::{TaskId, TaskStatus};

/// A request to a task's driver, served at its next safe point.
pub(crate) enum Control {
    Pause(oneshot::Sender<()>),
    Resume(oneshot::Sender<()>),
    Cancel(oneshot::Sender<()>),
    Checkpoint(oneshot::Sender<Result<CheckpointKey, ControlError>>),
    Shutdown(oneshot::Sender<()>),
    Migrate {
        to: String,
        reply: oneshot::Sender<Result<(), MigrateError>>,
    },
}

/// Where a task went from here: the forwarding entry a source keeps after a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forward {
    pub(crate) host: String,
    pub(crate) addr: String,
    /// The epoch the task has there.
    pub(crate) epoch: u64,
    /// The hand-off (0 when learned from another host).
    pub(crate) handoff: u64,
}

pub(crate) struct TaskShared {
    pub(crate) id: TaskId,
    pub(crate) output_type: String,
    status: watch::Sender<TaskStatus>,
    control: Option<mpsc::UnboundedSender<Control>>,
    outcome: Mutex<Option<Outcome>>,
    steps: AtomicU64,
    /// How many times the task moved (its fencing token).
    epoch: AtomicU64,
    forward: Mutex<Option<Forward>>,
}

impl TaskShared {
    /// A running task and the receiving end of its control channel.
    pub(crate) fn running(
        id: TaskId,
        output_type: String,
        steps: u64,
        epoch: u64,
    ) -> (Arc<TaskShared>, mpsc::UnboundedReceiver<Control>) {
        let (control, receiver) = mpsc::unbounded_channel();
        let shared = TaskShared {
            id,
            output_type,
            status: watch::Sender::new(TaskStatus::Running),
            control: Some(control),
            outcome: Mutex::new(None),
            steps: AtomicU64::new(steps),
            epoch: AtomicU64::new(epoch),
            forward: Mutex::new(None),
        };
        (Arc::new(shared), receiver)
    }

    /// A task that finished before this runtime started.
    pub(crate) fn finished(id: TaskId, output_type: String, outcome: Outcome) -> Arc<TaskShared> {
        let shared = TaskShared {
            id,
            output_type,
            status: watch::Sender::new(TaskStatus::Running),
            control: None,
            outcome: Mutex::new(None),
            steps: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            forward: Mutex::new(None),
        };
        shared.finish(outcome);
        Arc::new(shared)
    }

    /// A task that moved away before this runtime started: a forwarding entry.
    pub(crate) fn moved(id: TaskId, output_type: String, forward: Forward) -> Arc<TaskShared> {
        let shared = TaskShared {
            id,
            output_type,
            status: watch::Sender::new(TaskStatus::Running),
            control: None,
            outcome: Mutex::new(None),
            steps: AtomicU64::new(0),
            epoch: AtomicU64::new(forward.epoch.saturating_sub(1)),
            forward: Mutex::new(None),
        };
        shared.set_moved(forward);
        Arc::new(shared)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Where the task went, if it moved away.
    pub(crate) fn forward(&self) -> Option<Forward> {
        self.forward
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the move, then announces it.
    pub(crate) fn set_moved(&self, forward: Forward) {
        let host = forward.host.clone();
        *self.forward.lock().unwrap_or_else(|p| p.into_inner()) = Some(forward);
        self.set_status(TaskStatus::Moved(host));
    }

    pub(crate) fn status(&self) -> TaskStatus {
        self.status.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<TaskStatus> {
        self.status.subscribe()
    }

    pub(crate) fn set_status(&self, status: TaskStatus) {
        self.status.send_replace(status);
    }

    pub(crate) fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    pub(crate) fn set_steps(&self, steps: u64) {
        self.steps.store(steps, Ordering::Relaxed);
    }

    /// Sends a control request; false if the driver is gone.
    pub(crate) fn send(&self, control: Control) -> bool {
        self.control
            .as_ref()
            .is_some_and(|sender| sender.send(control).is_ok())
    }

    /// Records the outcome, then announces the final status.
    pub(crate) fn finish(&self, outcome: Outcome) {
        let status = match &outcome {
            Outcome::Completed(_) => TaskStatus::Completed,
            Outcome::Failed(message) => TaskStatus::Failed(message.clone()),
            Outcome::Cancelled => TaskStatus::Cancelled,
        };
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.set_status(status);
    }

    /// The task moved away and ended there with `outcome`: no longer a forwarding entry.
    pub(crate) fn learned(&self, outcome: Outcome) {
        *self.forward.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.finish(outcome);
    }

    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
