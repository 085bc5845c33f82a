//! The lifecycle of a task.

use std::fmt;

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskStatus {
    /// Running steps.
    Running,
    /// Stopped at a safe point until resumed.
    Paused,
    /// Finished; its output is recorded.
    Completed,
    /// A step returned an error; the message is recorded.
    Failed(String),
    /// Cancelled at a safe point.
    Cancelled,
    /// The runtime shut down; the task resumes from its last checkpoint at the next start.
    Stopped,
    /// The task moved to the named host; this host keeps a forwarding entry.
    Moved(String),
    /// The task is arriving here: the host holds a verified copy and waits for the source's
    /// decision.
    Arriving,
}

impl TaskStatus {
    /// Whether the task has ended (completed, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed(_) | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskStatus::Running => f.write_str("running"),
            TaskStatus::Paused => f.write_str("paused"),
            TaskStatus::Completed => f.write_str("completed"),
            TaskStatus::Failed(message) => write!(f, "failed: {message}"),
            TaskStatus::Cancelled => f.write_str("cancelled"),
            TaskStatus::Stopped => f.write_str("stopped"),
            TaskStatus::Moved(host) => write!(f, "moved to {host}"),
            TaskStatus::Arriving => f.write_str("arriving"),
        }
    }
}
