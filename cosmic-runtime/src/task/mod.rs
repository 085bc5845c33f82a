//! Tasks: the [`Task`] trait users implement, what a step returns, and the identity and
//! lifecycle of a task.
//!
//! # The cooperative contract
//! A task's state is its struct, and only its struct. The runtime calls [`Task::step`] again
//! and again; between two steps is a *safe point*, where it may checkpoint, pause or move the
//! task. Locals inside a step, open files and sockets do not survive a checkpoint. After a
//! crash the task resumes from its last durable checkpoint, so a step that ran after that
//! checkpoint runs again: steps should be idempotent in their effects outside the struct.

mod context;
mod id;
mod status;

use async_trait::async_trait;

pub use context::StepContext;
pub use id::{ParseTaskIdError, TaskId};
pub use status::TaskStatus;

use crate::state::Migratable;

/// What one step of a task produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<O> {
    /// More steps to run.
    Continue,
    /// The task finished with this output.
    Done(O),
}

/// The error a step fails with: the task ends as failed, and `join` reports the message.
///
/// Any error converts into it with `?`. (Like `anyhow::Error`, it does not implement
/// `std::error::Error` itself, which is what makes that conversion possible.)
#[derive(Debug)]
pub struct TaskError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl TaskError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            source: None,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error this one was converted from, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        TaskError {
            // The whole chain: the message is what `join` and the task's status report.
            message: crate::ErrorChain(&error).to_string(),
            source: Some(Box::new(error)),
        }
    }
}

/// A unit of long-running work whose whole state is `Self`.
///
/// ```
/// use cosmic_runtime::task::{Step, StepContext, Task, TaskError};
/// # use cosmic_runtime::state::{Migratable, SchemaBuilder, Shape};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// struct Countdown { left: u32 }
/// # impl Shape for Countdown { fn shape(s: &mut SchemaBuilder) -> String { s.named::<Self>() } }
/// # impl Migratable for Countdown {
/// #     const VERSION: u32 = 1;
/// #     fn type_name() -> std::borrow::Cow<'static, str> { "Countdown".into() }
/// #     fn shape_at(_: u32, s: &mut SchemaBuilder) -> String { format!("struct{{left:{}}}", u32::shape(s)) }
/// #     fn deserialize_version<'de, D: serde::Deserializer<'de>>(_: u32, d: D) -> Result<Self, D::Error> {
/// #         <Self as serde::Deserialize>::deserialize(d)
/// #     }
/// # }
///
/// #[async_trait::async_trait]
/// impl Task for Countdown {
///     type Output = String;
///
///     async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<String>, TaskError> {
///         if self.left == 0 {
///             return Ok(Step::Done("lift-off".to_owned()));
///         }
///         self.left -= 1;
///         Ok(Step::Continue)
///     }
/// }
/// ```
/// (With the `cosmic` facade, `#[derive(Migratable)]` writes the hidden impls above.)
#[async_trait]
pub trait Task: Migratable + Sync {
    /// What the task returns when it is done; it is recorded durably, so it must move too.
    type Output: Migratable;

    /// Runs one step. Keep a step short (milliseconds to a second): pause, checkpoint and move
    /// requests wait for the step in flight to end.
    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<Self::Output>, TaskError>;
}
