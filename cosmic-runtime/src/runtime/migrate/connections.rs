//! The authenticated connections a host serves, bounded: peers that hold the cluster key can
//! still open connections in a loop, and each one costs a file descriptor and a task. Past
//! the bound, the connection idle the longest is closed to make room (peers reconnect when
//! they need to); if every one is busy in a conversation, the newcomer is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

/// One served connection.
struct Served {
    /// Waiting for its next request (so it may be closed to make room) since then.
    idle_since: Option<Instant>,
    close: Arc<Notify>,
}

/// The table of served connections.
pub(crate) struct Connections {
    limit: usize,
    table: Mutex<(u64, BTreeMap<u64, Served>)>,
}

/// A connection's place in the table, given back when dropped.
pub(crate) struct Slot {
    connections: Arc<Connections>,
    id: u64,
    /// Told when the connection should close to make room.
    pub(crate) close: Arc<Notify>,
}

impl Connections {
    pub(crate) fn new(limit: usize) -> Connections {
        Connections {
            limit: limit.max(1),
            table: Mutex::new((0, BTreeMap::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (u64, BTreeMap<u64, Served>)> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a new connection, closing the longest-idle one if the table is full.
    /// `None`: the table is full of connections in conversations; refuse this one.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut guard = self.lock();
        let (next, table) = &mut *guard;
        if table.len() >= self.limit {
            let stalest = table
                .iter()
                .filter_map(|(id, s)| s.idle_since.map(|since| (since, *id)))
                .min()?;
            if let Some(evicted) = table.remove(&stalest.1) {
                evicted.close.notify_one();
            }
        }
        *next += 1;
        let id = *next;
        let close = Arc::new(Notify::new());
        table.insert(
            id,
            Served {
                idle_since: Some(Instant::now()),
                close: Arc::clone(&close),
            },
        );
        Some(Slot {
            connections: Arc::clone(self),
            id,
            close,
        })
    }

    /// How many connections are served now.
    pub(crate) fn len(&self) -> usize {
        self.lock().1.len()
    }
}

impl Slot {
    /// Marks the connection idle (waiting for a request) or busy (in a conversation).
    pub(crate) fn set_idle(&self, idle: bool) {
        if let Some(served) = self.connections.lock().1.get_mut(&self.id) {
            served.idle_since = idle.then(Instant::now);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().1.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_idle_connection_makes_room_and_busy_ones_stay() {
        let connections = Arc::new(Connections::new(2));
        let first = connections.admit().expect("room");
        let second = connections.admit().expect("room");
        second.set_idle(false);
        // Full: the idle `first` is closed for the third.
        let third = connections.admit().expect("room made");
        first.close.notified().await;
        assert_eq!(connections.len(), 2);
        // Full of busy ones: refused.
        third.set_idle(false);
        assert!(connections.admit().is_none());
        drop(second);
        assert!(connections.admit().is_some());
    }
}
