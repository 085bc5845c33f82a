//! [`FileStore`](super::FileStore)'s group commit: puts that arrive while a batch is being made
//! durable wait together and go in the next batch, which shares the costly part of durability,
//! as a database's group commit shares its log flushes.
//!
//! A batch is written in passes, so that each pass's waits overlap instead of adding up:
//! 1. create the missing folders of every key;
//! 2. write every temporary file, and start the write-back of all of them at once
//!    (`sync_file_range` on Linux);
//! 3. `fdatasync` every temporary, from several threads at once: a journaling file system
//!    commits them together (one journal commit and one device flush for the lot, where one
//!    thread syncing them in turn would wait for a commit each);
//! 4. rename (or, for [`PutMode::Create`], hard-link) each temporary over its key;
//! 5. fsync each folder touched, once, again all at once: one commit covers every rename.
//!
//! So a batch costs about two rounds of device flushes, whatever its size.
//!
//! A put is answered only after its bytes (pass 3) and the names that reach them (pass 5) are
//! durable, so after a crash each key holds its old value or its new one, never a torn file:
//! the same promise as one put on its own. Each put succeeds or fails on its own.
//!
//! A batch holds at most [`MAX_BATCH`] puts (its files stay open between passes). Up to
//! [`LEADERS`] threads write batches at the same time, each until no put is waiting: a put
//! that arrives while every leader is busy waits for the next batch, but with spare leaders
//! it does not wait for a batch in progress (whose two rounds would add to its own), and the
//! file system's journal still commits the overlapping batches' syncs together.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::file_store::{private_file_options, private_folder_builder, sync_folder};
use super::{PutMode, StoreError};

/// Most puts written as one batch (each holds a file open through the passes: with
/// [`LEADERS`] batches at once, at most 256 descriptors, well under the usual limit of 1024).
pub(super) const MAX_BATCH: usize = 64;

/// Most batches written at the same time.
pub(super) const LEADERS: usize = 4;

/// One put waiting for its batch.
pub(super) struct PendingPut {
    pub(super) key: String,
    pub(super) path: PathBuf,
    pub(super) value: Bytes,
    pub(super) mode: PutMode,
    pub(super) done: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<PendingPut>,
    /// Leader threads writing batches.
    leading: usize,
}

/// The queue of puts of one [`FileStore`](super::FileStore).
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("waiting", &self.queue().waiting.len())
            .finish()
    }
}

impl GroupCommit {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every critical section leaves the queue consistent, so a poisoned lock is usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `puts` (they go in the same batch unless there are more than [`MAX_BATCH`]), and
    /// starts a leader if none is writing. Each put is answered through its `done`.
    pub(super) fn submit(self: &Arc<Self>, puts: Vec<PendingPut>) {
        let mut queue = self.queue();
        queue.waiting.extend(puts);
        if queue.leading >= LEADERS || queue.waiting.is_empty() {
            return;
        }
        queue.leading += 1;
        drop(queue);
        let leader = Leader {
            commits: Arc::clone(self),
            finished: false,
        };
        tokio::task::spawn_blocking(move || leader.run());
    }
}

/// A thread writing batches. Dropped without finishing (never run because the runtime is
/// shutting down, or a panic), it lets go of the leadership and of the waiting puts, whose
/// callers see the store interrupted.
struct Leader {
    commits: Arc<GroupCommit>,
    finished: bool,
}

impl Leader {
    fn run(mut self) {
        loop {
            let batch = {
                let mut queue = self.commits.queue();
                if queue.waiting.is_empty() {
                    queue.leading -= 1;
                    self.finished = true;
                    return;
                }
                let first = queue.waiting.len().min(MAX_BATCH);
                let rest = queue.waiting.split_off(first);
                mem::replace(&mut queue.waiting, rest)
            };
            write_batch(batch);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            let mut queue = self.commits.queue();
            queue.leading -= 1;
            if queue.leading == 0 {
                queue.waiting.clear();
            }
        }
    }
}

/// A put on its way through the passes.
struct InFlight {
    put: PendingPut,
    temporary: PathBuf,
    file: Option<File>,
    failed: Option<io::Error>,
}

impl InFlight {
    fn fail(&mut self, error: io::Error) {
        self.file = None;
        if self.failed.is_none() {
            let _ = fs::remove_file(&self.temporary);
            self.failed = Some(error);
        }
    }
}

/// Writes `batch` in the passes of the module docs and answers every put.
pub(super) fn write_batch(batch: Vec<PendingPut>) {
    let mut folders_to_sync = BTreeSet::new();
    let mut puts: Vec<InFlight> = batch
        .into_iter()
        .map(|put| {
            let temporary = temporary_path(&put.path);
            InFlight {
                put,
                temporary,
                file: None,
                failed: None,
            }
        })
        .collect();

    // 1. Folders.
    for put in &mut puts {
        let folder = put.put.path.parent().map(Path::to_path_buf);
        let result = match folder {
            Some(folder) => create_folders(&folder, &mut folders_to_sync),
            None => Err(io::Error::other("key has no folder")),
        };
        if let Err(error) = result {
            put.fail(error);
        }
    }
    // 2. Temporaries, and their write-back started together.
    for put in puts.iter_mut().filter(|put| put.failed.is_none()) {
        let written = private_file_options()
            .open(&put.temporary)
            .and_then(|mut file| file.write_all(&put.put.value).map(|()| file));
        match written {
            Ok(file) => {
                start_write_back(&file);
                put.file = Some(file);
            }
            Err(error) => put.fail(error),
        }
    }
    // 3. Their bytes durable.
    let synced = in_parallel(&puts, |put| match &put.file {
        Some(file) => file.sync_data(),
        None => Ok(()),
    });
    for (put, result) in puts.iter_mut().zip(synced) {
        put.file = None;
        if let Err(error) = result {
            put.fail(error);
        }
    }
    // 4. Names.
    for put in puts.iter_mut().filter(|put| put.failed.is_none()) {
        let result = match put.put.mode {
            PutMode::Overwrite => fs::rename(&put.temporary, &put.put.path),
            PutMode::Create => fs::hard_link(&put.temporary, &put.put.path)
                .and_then(|()| fs::remove_file(&put.temporary)),
        };
        match result {
            Ok(()) => {
                if let Some(folder) = put.put.path.parent() {
                    folders_to_sync.insert(folder.to_path_buf());
                }
            }
            Err(error) => put.fail(error),
        }
    }
    // 5. The names durable: every folder that gained an entry, once.
    let folders: Vec<PathBuf> = folders_to_sync.into_iter().collect();
    let folder_failures: Vec<(PathBuf, io::Error)> = folders
        .iter()
        .zip(in_parallel(&folders, |folder| sync_folder(folder)))
        .filter_map(|(folder, result)| result.err().map(|error| (folder.clone(), error)))
        .collect();
    for mut put in puts {
        if put.failed.is_none() {
            let failure = folder_failures
                .iter()
                .find(|(folder, _)| put.put.path.starts_with(folder));
            if let Some((_, error)) = failure {
                put.failed = Some(io::Error::new(error.kind(), error.to_string()));
            }
        }
        let PendingPut {
            key,
            path,
            mode,
            done,
            ..
        } = put.put;
        let result = match put.failed {
            None => Ok(()),
            Some(source)
                if source.kind() == io::ErrorKind::AlreadyExists && mode == PutMode::Create =>
            {
                Err(StoreError::AlreadyExists { key })
            }
            Some(source) => Err(StoreError::Io {
                operation: "write",
                key,
                path,
                source,
            }),
        };
        let _ = done.send(result);
    }
}

/// Most threads that sync a batch's files at once.
const SYNC_THREADS: usize = 32;

/// `work` on every item, spread over up to [`SYNC_THREADS`] threads so that the waits overlap;
/// the results in the items' order.
fn in_parallel<T: Sync>(
    items: &[T],
    work: impl Fn(&T) -> io::Result<()> + Sync,
) -> Vec<io::Result<()>> {
    if items.len() <= 1 {
        return items.iter().map(&work).collect();
    }
    let chunk = items.len().div_ceil(SYNC_THREADS);
    let work = &work;
    std::thread::scope(|scope| {
        let threads: Vec<_> = items
            .chunks(chunk)
            .map(|chunk| {
                let thread = scope.spawn(move || chunk.iter().map(work).collect::<Vec<_>>());
                (chunk.len(), thread)
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|(len, thread)| {
                thread.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(io::Error::other("sync thread panicked")))
                        .collect()
                })
            })
            .collect()
    })
}

/// A temporary file's name next to `path`: starts with `.`, so it is never taken for a key.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp-{:016x}",
        crate::task::TaskId::random().0
    ))
}

/// Creates `folder` and its missing ancestors, noting the parents whose new entries must be
/// made durable.
fn create_folders(folder: &Path, to_sync: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    if folder.is_dir() {
        return Ok(());
    }
    let parent = folder.parent();
    if let Some(parent) = parent {
        create_folders(parent, to_sync)?;
    }
    match private_folder_builder().create(folder) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(error) => return Err(error),
    }
    if let Some(parent) = parent {
        to_sync.insert(parent.to_path_buf());
    }
    Ok(())
}

/// Starts writing `file`'s dirty pages to the device without waiting, so that the writes of a
/// whole batch are in flight together before the first `fdatasync` waits. Only a hint: the
/// `fdatasync` that follows is what makes the bytes durable.
fn start_write_back(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}
