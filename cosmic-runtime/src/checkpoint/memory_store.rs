//! An in-memory [`CheckpointStore`], for tests and for tasks that only need to survive within
//! one process (pause/resume, test-mode round trips).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use super::store::validate_key;
use super::{CheckpointStore, PutMode, StoreError};

/// A [`CheckpointStore`] in memory. Clones share the same contents.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    entries: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation is
        // one map call), so a poisoned lock is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    async fn put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<(), StoreError> {
        validate_key(key)?;
        let mut entries = self.entries();
        if mode == PutMode::Create && entries.contains_key(key) {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        entries.insert(key.to_owned(), value);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        Ok(self.entries().get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .entries()
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.entries().remove(key);
        Ok(())
    }
}
