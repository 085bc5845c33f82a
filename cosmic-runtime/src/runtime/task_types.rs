//! The task types a runtime can resume from a store or receive from a peer, by wire name.

use std::collections::HashMap;
use std::sync::Mutex;

use super::driver;
use super::migrate::StartTask;
use crate::image::{self, ImageHeader, RestoreError};
use crate::task::Task;

/// Verifies and decodes an image into a task ready to start.
type Prepare = fn(&[u8]) -> Result<(ImageHeader, StartTask), RestoreError>;

/// What the runtime can do with one task type without knowing it statically.
#[derive(Clone)]
pub(crate) struct TaskType {
    /// Whether an image with this header would decode (a migration offer is judged by it).
    pub(crate) check: fn(&ImageHeader) -> Result<bool, RestoreError>,
    /// The type's current version.
    pub(crate) version: fn() -> u32,
    /// Verifies and decodes an image, ready to start.
    pub(crate) prepare: Prepare,
}

/// Task types registered with the builder or spawned on this runtime.
#[derive(Default)]
pub(crate) struct TaskTypes {
    types: Mutex<HashMap<String, TaskType>>,
}

impl TaskTypes {
    pub(crate) fn register<T: Task>(&self) {
        let entry = TaskType {
            check: image::check_offer::<T>,
            version: || T::VERSION,
            prepare: prepare::<T>,
        };
        self.types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(T::type_name().into_owned(), entry);
    }

    /// The names of every registered type, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub(crate) fn get(&self, type_name: &str) -> Option<TaskType> {
        self.types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(type_name)
            .cloned()
    }
}

fn prepare<T: Task>(bytes: &[u8]) -> Result<(ImageHeader, StartTask), RestoreError> {
    // `restore` verifies the whole image; the header is read again for the caller.
    let state: T = image::restore(bytes)?;
    let header = image::header_only(bytes)?;
    // Resumed from a native image (a move between like machines): the next checkpoint is
    // portable and written at once, so that any kind of machine, or the next build, can take
    // the task from the store again.
    let from_native = header.encoding == image::Encoding::Native;
    let start: StartTask = Box::new(move |runtime, task, from, next_seq, epoch| {
        driver::start(runtime, task, state, from, next_seq, epoch, from_native)
    });
    Ok((header, start))
}
