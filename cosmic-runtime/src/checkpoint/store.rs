//! The [`CheckpointStore`] trait: where images and outcomes are kept.
//!
//! The trait is a small object store (put, get, list by prefix, delete), so that an
//! S3-compatible store (`S3Store`, with the `s3` feature) implements it without changing any
//! caller; there, [`PutMode::Create`] is best effort and not a fence (see `S3Store`). What the
//! keys mean is the [`Catalog`]'s business.
//!
//! [`Catalog`]: super::Catalog

use std::fmt::{self, Debug};
use std::io;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

/// What a put does when the key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace the value.
    Overwrite,
    /// Fail with [`StoreError::AlreadyExists`]: a conditional put, for records written once.
    Create,
}

/// One put of a [`CheckpointStore::put_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPut {
    /// The key.
    pub key: String,
    /// Its new value.
    pub value: Bytes,
    /// What happens if the key exists.
    pub mode: PutMode,
}

/// Error returned by [`CheckpointStore`] operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The operating system refused an operation (disk full, permission denied, ...).
    #[error("failed to {operation} `{key}` at {}", path.display())]
    Io {
        /// What was being done: "write", "read", "list", "delete", "open".
        operation: &'static str,
        /// The key.
        key: String,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The store's folder could not be opened or created (it is a file, it cannot be
    /// created, its leftovers cannot be cleaned).
    #[error("failed to open the file store at {}", path.display())]
    Open {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A [`PutMode::Create`] put found the key already there.
    #[error("`{key}` already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A key that the store cannot hold.
    #[error("invalid store key `{key}`: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A remote store (`S3Store`) failed or refused an operation.
    #[error("failed to {operation} `{key}` in {location}: {problem}")]
    Remote {
        /// What was being done: "write", "read", "list", "delete", "check for".
        operation: &'static str,
        /// The key (for a list, the prefix).
        key: String,
        /// Where: the bucket and the endpoint.
        location: String,
        /// What kind of failure it was.
        problem: RemoteProblem,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A background operation did not finish (its thread panicked or the runtime shut down).
    #[error("store operation on `{key}` was interrupted")]
    Interrupted {
        /// The key.
        key: String,
    },
}

/// What kind of failure a [`StoreError::Remote`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteProblem {
    /// The service refused the credentials or the access (a wrong access key id or secret,
    /// or a key without the permission).
    Denied,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The service could not be reached (nothing listening, no route, DNS).
    Unreachable,
    /// The service did not answer in time.
    TimedOut,
    /// The service failed (5xx) every time it was asked.
    ServerError,
    /// Anything else: see the error's source.
    Other,
}

impl fmt::Display for RemoteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteProblem::Denied => {
                "access denied (check the access key id and secret, and the key's permissions)"
            }
            RemoteProblem::NoSuchBucket => "the bucket does not exist",
            RemoteProblem::Unreachable => "cannot connect to the service",
            RemoteProblem::TimedOut => "the service did not answer in time",
            RemoteProblem::ServerError => "the service kept failing (server errors)",
            RemoteProblem::Other => "the request failed",
        })
    }
}

impl StoreError {
    /// The OS error kind, for I/O errors.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StoreError::Io { source, .. } | StoreError::Open { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// Whether the device is out of space.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } | StoreError::Open { source, .. } => {
                source.raw_os_error() == Some(libc::ENOSPC)
            }
            _ => false,
        }
    }

    /// Whether the OS denied access.
    pub fn is_permission_denied(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::PermissionDenied)
    }
}

/// A durable key-value store for checkpoint images and task records.
///
/// Keys are `/`-separated paths of `[A-Za-z0-9._-]` segments. Implementations must make a
/// completed `put` durable (it survives a crash of the process and of the machine) and atomic
/// (a reader sees the old value or the new one, never a mix).
#[async_trait]
pub trait CheckpointStore: Send + Sync + Debug + 'static {
    /// Stores `value` under `key`, durably and atomically.
    async fn put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<(), StoreError>;

    /// Stores each of `puts` as [`put`](Self::put) does (durably and atomically, each on its
    /// own: one may fail while the others succeed), answering in the same order.
    ///
    /// Stores that can share the cost of durability between puts override it
    /// ([`FileStore`](super::FileStore) writes them as one batch with shared fsyncs); the default
    /// puts them one after the other, which suits stores whose puts are durable one by one
    /// anyway (S3).
    async fn put_many(&self, puts: Vec<BatchPut>) -> Vec<Result<(), StoreError>> {
        let mut results = Vec::with_capacity(puts.len());
        for put in puts {
            results.push(self.put(&put.key, put.value, put.mode).await);
        }
        results
    }

    /// The value under `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Every key that starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Checks a key against the rules in [`CheckpointStore`]'s docs.
pub(crate) fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return invalid("keys are 1 to 1024 bytes long");
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return invalid("empty, `.` and `..` segments are not allowed");
        }
        if segment.starts_with('.') {
            return invalid("segments may not start with `.` (reserved for temporary files)");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return invalid("segments are made of ASCII letters, digits, `.`, `_` and `-`");
        }
    }
    Ok(())
}
