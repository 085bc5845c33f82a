//! The task types a runtime can resume from a store, by wire name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{driver, RuntimeInner};
use crate::checkpoint::CheckpointKey;
use crate::image::{self, RestoreError};
use crate::task::{Task, TaskId};

/// Resumes a task of one type from an image.
type Resume = fn(&Arc<RuntimeInner>, TaskId, &[u8], CheckpointKey, u64) -> Result<(), RestoreError>;

#[derive(Clone)]
pub(crate) struct TaskType {
    pub(crate) resume: Resume,
}

/// Task types registered with the builder or spawned on this runtime.
#[derive(Default)]
pub(crate) struct TaskTypes {
    types: Mutex<HashMap<String, TaskType>>,
}

impl TaskTypes {
    pub(crate) fn register<T: Task>(&self) {
        let entry = TaskType {
            resume: resume::<T>,
        };
        self.types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(T::type_name().into_owned(), entry);
    }

    pub(crate) fn get(&self, type_name: &str) -> Option<TaskType> {
        self.types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(type_name)
            .cloned()
    }
}

fn resume<T: Task>(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    bytes: &[u8],
    from: CheckpointKey,
    next_seq: u64,
) -> Result<(), RestoreError> {
    let state: T = image::restore(bytes)?;
    driver::start(runtime, task, state, from, next_seq);
    Ok(())
}
