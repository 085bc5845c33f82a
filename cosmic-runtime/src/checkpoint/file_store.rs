//! [`FileStore`]: the embedded default store, one file per key under a folder.
//!
//! A put writes a temporary file in the key's folder, fsyncs it, renames it over the key's file
//! (or hard-links it, for [`PutMode::Create`], which fails if the file exists) and fsyncs the
//! folder, so after a crash the key holds the old value or the new one, never a torn file.
//! Temporary files start with `.` and are ignored, and removed by [`FileStore::open`].
//!
//! Puts made at the same time (by many tasks, or by one [`put_many`](CheckpointStore::put_many))
//! share their fsyncs: they are written as one batch, each pass over all of them (see
//! `group_commit.rs`), and a put waits for at most the batch in progress before its own.
//!
//! Images may hold secrets (whatever the tasks' state holds), so on Unix every file the store
//! creates is readable only by its owner (0600) and every folder it creates is 0700, whatever
//! the umask. Folders that existed before are left as they are.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::group_commit::{GroupCommit, PendingPut};
use super::store::validate_key;
use super::{BatchPut, CheckpointStore, PutMode, StoreError};

/// A [`CheckpointStore`] in a local (or shared) folder.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: Arc<PathBuf>,
    commits: Arc<GroupCommit>,
}

impl FileStore {
    /// Opens (creating if needed) a store in the folder `root`, and removes temporary files
    /// that a crash left behind.
    pub fn open(root: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let io_error = |source| StoreError::Open {
            path: root.clone(),
            source,
        };
        refuse_non_folder(&root).map_err(io_error)?;
        private_folder_builder()
            .recursive(true)
            .create(&root)
            .map_err(io_error)?;
        remove_temporaries(&root, None).map_err(io_error)?;
        Ok(FileStore {
            root: Arc::new(root),
            commits: Arc::default(),
        })
    }

    /// Opens (creating if needed) a store in the folder `root` that other hosts use at the same
    /// time: a cluster's shared folder. Unlike [`open`](Self::open), it removes only temporary
    /// files older than [`SHARED_TEMPORARY_AGE`](Self::SHARED_TEMPORARY_AGE): a younger one may
    /// be a put another host is making right now.
    pub fn open_shared(root: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let io_error = |source| StoreError::Open {
            path: root.clone(),
            source,
        };
        refuse_non_folder(&root).map_err(io_error)?;
        private_folder_builder()
            .recursive(true)
            .create(&root)
            .map_err(io_error)?;
        remove_temporaries(&root, Some(Self::SHARED_TEMPORARY_AGE)).map_err(io_error)?;
        Ok(FileStore {
            root: Arc::new(root),
            commits: Arc::default(),
        })
    }

    /// How old a temporary file in a shared store must be before [`open_shared`](Self::open_shared)
    /// takes it for a crash's leftover.
    pub const SHARED_TEMPORARY_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

    /// The store in the existing folder `root`, to read it: unlike [`open`](Self::open), this
    /// creates nothing and leaves temporary files alone (a host may be writing them right
    /// now). Fails if `root` is not a folder.
    pub fn open_existing(root: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let io_error = |source| StoreError::Open {
            path: root.clone(),
            source,
        };
        fs::metadata(&root).map_err(io_error)?;
        refuse_non_folder(&root).map_err(io_error)?;
        Ok(FileStore {
            root: Arc::new(root),
            commits: Arc::default(),
        })
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`'s value (whether or not there is one), for tools that look at
    /// the files themselves (their sizes, say). Fails for a key the store cannot hold.
    pub fn path_of_key(&self, key: &str) -> Result<PathBuf, StoreError> {
        self.path_of(key)
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Queues `puts` for the group commit and waits for each one's answer.
    async fn commit(&self, puts: Vec<BatchPut>) -> Vec<Result<(), StoreError>> {
        let mut answers = Vec::with_capacity(puts.len());
        let mut pending = Vec::with_capacity(puts.len());
        for put in puts {
            match self.path_of(&put.key) {
                Ok(path) => {
                    let (done, answer) = tokio::sync::oneshot::channel();
                    answers.push((put.key.clone(), Ok(answer)));
                    pending.push(PendingPut {
                        key: put.key,
                        path,
                        value: put.value,
                        mode: put.mode,
                        done,
                    });
                }
                Err(error) => answers.push((put.key, Err(error))),
            }
        }
        self.commits.submit(pending);
        let mut results = Vec::with_capacity(answers.len());
        for (key, answer) in answers {
            results.push(match answer {
                Ok(answer) => answer.await.unwrap_or(Err(StoreError::Interrupted { key })),
                Err(error) => Err(error),
            });
        }
        results
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        key: &str,
        work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| StoreError::Interrupted {
                key: key.to_owned(),
            })?
    }
}

#[async_trait]
impl CheckpointStore for FileStore {
    async fn put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let put = BatchPut {
            key: key.to_owned(),
            value,
            mode,
        };
        let mut results = self.commit(vec![put]).await;
        results.pop().unwrap_or(Err(StoreError::Interrupted {
            key: key.to_owned(),
        }))
    }

    async fn put_many(&self, puts: Vec<BatchPut>) -> Vec<Result<(), StoreError>> {
        self.commit(puts).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_of(key)?;
        let owned_key = key.to_owned();
        Self::blocking(key, move || match crate::memory::read_file(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if is_missing(&error) => Ok(None),
            Err(source) => Err(StoreError::Io {
                operation: "read",
                key: owned_key,
                path,
                source,
            }),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk only the folder the prefix names, not the whole store.
        let folder = match prefix.rfind('/') {
            Some(slash) => &prefix[..slash],
            None => "",
        };
        // The folder part must be a valid key itself, so that listing never leaves the store.
        if !folder.is_empty() {
            validate_key(folder)?;
        }
        let start = self.root.join(folder);
        let root = Arc::clone(&self.root);
        let prefix = prefix.to_owned();
        Self::blocking(&prefix.clone(), move || {
            let mut keys = Vec::new();
            collect_keys(&root, &start, &mut keys).map_err(|source| StoreError::Io {
                operation: "list",
                key: prefix.clone(),
                path: start.clone(),
                source,
            })?;
            keys.retain(|key| key.starts_with(&prefix));
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let owned_key = key.to_owned();
        Self::blocking(key, move || {
            let result = fs::remove_file(&path).and_then(|()| sync_parent(&path));
            match result {
                Ok(()) => Ok(()),
                Err(error) if is_missing(&error) => Ok(()),
                Err(source) => Err(StoreError::Io {
                    operation: "delete",
                    key: owned_key,
                    path,
                    source,
                }),
            }
        })
        .await
    }
}

/// Whether an error means "no such key": not found, or a path through a file (a key below
/// another key's value).
fn is_missing(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ENOTDIR)
}

/// Options that create a new file only its owner can read and write.
pub(super) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Fails if `root` exists and is not a folder: creating it would fail with a bare "File
/// exists" that does not say what is wrong.
fn refuse_non_folder(root: &Path) -> io::Result<()> {
    match fs::metadata(root) {
        Ok(metadata) if !metadata.is_dir() => Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "it is a file, not a folder; give a file store a folder of its own",
        )),
        _ => Ok(()),
    }
}

/// A builder of folders only their owner can enter.
pub(super) fn private_folder_builder() -> fs::DirBuilder {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => sync_folder(parent),
        None => Ok(()),
    }
}

pub(super) fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

fn collect_keys(root: &Path, folder: &Path, keys: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if is_missing(&error) => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_keys(root, &path, keys)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let key: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            keys.push(key.join("/"));
        }
    }
    Ok(())
}

/// Removes the temporary files a crash left in `folder` (all of them, or only those older than
/// `older_than`). Files and folders that vanish meanwhile (another host of a shared store
/// removing or renaming them) are skipped.
fn remove_temporaries(folder: &Path, older_than: Option<std::time::Duration>) -> io::Result<()> {
    let skip_missing = |result: io::Result<()>| match result {
        Err(error) if is_missing(&error) => Ok(()),
        other => other,
    };
    let entries = match fs::read_dir(folder) {
        Err(error) if is_missing(&error) => return Ok(()),
        entries => entries?,
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = match entry.file_type() {
            Err(error) if is_missing(&error) => continue,
            file_type => file_type?,
        };
        if file_type.is_dir() {
            if !name.starts_with('.') {
                skip_missing(remove_temporaries(&entry.path(), older_than))?;
            }
        } else if name.starts_with('.') && name.contains(".tmp-") {
            if let Some(age) = older_than {
                let modified = match entry.metadata().and_then(|m| m.modified()) {
                    Err(error) if is_missing(&error) => continue,
                    modified => modified?,
                };
                if modified.elapsed().unwrap_or_default() < age {
                    continue;
                }
            }
            skip_missing(fs::remove_file(entry.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_shared_removes_only_old_temporaries() {
        let dir = std::env::temp_dir().join(format!("cosmic-open-shared-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("t")).unwrap();
        let young = dir.join("t/.young.tmp-0000000000000001");
        let old = dir.join("t/.old.tmp-0000000000000002");
        fs::write(&young, b"being written").unwrap();
        fs::write(&old, b"left by a crash").unwrap();
        let long_ago = std::time::SystemTime::now() - FileStore::SHARED_TEMPORARY_AGE * 2;
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        FileStore::open_shared(&dir).unwrap();
        assert!(young.exists(), "another host's put in progress was removed");
        assert!(!old.exists(), "a crash's leftover was kept");
        // `open` (one host) removes every temporary.
        FileStore::open(&dir).unwrap();
        assert!(!young.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_many_answers_each_put_on_its_own_and_concurrent_puts_all_land() {
        let dir = std::env::temp_dir().join(format!("cosmic-put-many-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).unwrap();
        store
            .put("a/once", Bytes::from_static(b"first"), PutMode::Create)
            .await
            .unwrap();
        let put = |key: &str, value: &'static [u8], mode| BatchPut {
            key: key.to_owned(),
            value: Bytes::from_static(value),
            mode,
        };
        let results = store
            .put_many(vec![
                put("a/b/new", b"one", PutMode::Overwrite),
                put("a/once", b"second", PutMode::Create),
                put("../escape", b"no", PutMode::Overwrite),
                put("c/d/e", b"two", PutMode::Create),
                put("a/b/new", b"three", PutMode::Overwrite),
            ])
            .await;
        assert!(results[0].is_ok() && results[3].is_ok() && results[4].is_ok());
        assert!(matches!(results[1], Err(StoreError::AlreadyExists { .. })));
        assert!(matches!(results[2], Err(StoreError::InvalidKey { .. })));
        // In order: the later put of the same key wins; the refused one changed nothing.
        assert_eq!(store.get("a/b/new").await.unwrap().unwrap(), &b"three"[..]);
        assert_eq!(store.get("a/once").await.unwrap().unwrap(), &b"first"[..]);
        assert_eq!(store.get("c/d/e").await.unwrap().unwrap(), &b"two"[..]);

        // Many puts at once, from many tasks: more than one batch's worth, all durable and
        // readable, no temporary left behind.
        let mut puts = tokio::task::JoinSet::new();
        for i in 0..300u32 {
            let store = store.clone();
            puts.spawn(async move {
                let key = format!("many/{i:03}/value");
                store
                    .put(
                        &key,
                        Bytes::from(i.to_le_bytes().to_vec()),
                        PutMode::Overwrite,
                    )
                    .await
            });
        }
        while let Some(result) = puts.join_next().await {
            result.unwrap().unwrap();
        }
        let keys = store.list("many/").await.unwrap();
        assert_eq!(keys.len(), 300);
        for i in 0..300u32 {
            let value = store.get(&format!("many/{i:03}/value")).await.unwrap();
            assert_eq!(value.unwrap(), &i.to_le_bytes()[..]);
        }
        let mut stack = vec![dir.clone()];
        while let Some(folder) = stack.pop() {
            for entry in fs::read_dir(&folder).unwrap() {
                let entry = entry.unwrap();
                assert!(!entry.file_name().to_string_lossy().contains(".tmp-"));
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_existing_creates_nothing_and_removes_nothing() {
        let dir = std::env::temp_dir().join(format!("cosmic-open-existing-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let missing = FileStore::open_existing(&dir).unwrap_err();
        assert_eq!(missing.io_kind(), Some(io::ErrorKind::NotFound));
        assert!(!dir.exists());

        fs::create_dir_all(dir.join("t")).unwrap();
        let temporary = dir.join("t/.key.tmp-0000000000000001");
        fs::write(&temporary, b"half").unwrap();
        let store = FileStore::open_existing(&dir).unwrap();
        assert!(temporary.exists());
        assert_eq!(store.path_of_key("t/key").unwrap(), dir.join("t/key"));
        assert!(store.path_of_key("../key").is_err());

        let file = dir.join("t/file");
        fs::write(&file, b"x").unwrap();
        let not_a_folder = FileStore::open_existing(&file).unwrap_err();
        assert_eq!(not_a_folder.io_kind(), Some(io::ErrorKind::NotADirectory));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opening_a_regular_file_names_it_and_says_it_is_not_a_folder() {
        let dir = std::env::temp_dir().join(format!("cosmic-open-file-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain-file");
        fs::write(&file, b"x").unwrap();
        for error in [
            FileStore::open(&file).unwrap_err(),
            FileStore::open_shared(&file).unwrap_err(),
            FileStore::open_existing(&file).unwrap_err(),
        ] {
            let outer = error.to_string();
            assert!(outer.contains(&file.display().to_string()), "{outer}");
            assert!(!outer.contains("``"), "no empty quotes: {outer}");
            let cause = std::error::Error::source(&error)
                .expect("a cause")
                .to_string();
            assert!(cause.contains("not a folder"), "{cause}");
            crate::error_chain::assert_no_repeats(&error);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
