//! The budget of connections that have not yet proved the cluster key. Anyone can open such
//! connections, so they must never make honest peers wait: when the budget is full, the
//! stalest one (the one accepted first, which has had the longest to send its first message)
//! is dropped to make room for the newcomer.

use std::collections::BTreeMap;

/// Identifies an admitted connection; later admissions have larger tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ticket(u64);

/// At most `capacity` entries (what it takes to drop a connection, and its address), oldest
/// first.
#[derive(Debug)]
pub(crate) struct UnprovenBudget<T> {
    capacity: usize,
    next: u64,
    /// By ticket: the first entry is the oldest.
    pending: BTreeMap<Ticket, T>,
}

impl<T> UnprovenBudget<T> {
    /// A budget of `capacity` connections (at least one).
    pub(crate) fn new(capacity: usize) -> UnprovenBudget<T> {
        UnprovenBudget {
            capacity: capacity.max(1),
            next: 0,
            pending: BTreeMap::new(),
        }
    }

    /// The ticket the next connection will be admitted with (handed to the connection's
    /// handshake before [`admit`](Self::admit), which needs what the spawn returned).
    pub(crate) fn issue(&mut self) -> Ticket {
        let ticket = Ticket(self.next);
        self.next += 1;
        ticket
    }

    /// Admits a connection under `ticket`; when the budget was full, returns the stalest
    /// connection, which the caller drops.
    pub(crate) fn admit(&mut self, ticket: Ticket, entry: T) -> Option<T> {
        let evicted = if self.pending.len() >= self.capacity {
            self.pending.pop_first().map(|(_, stalest)| stalest)
        } else {
            None
        };
        self.pending.insert(ticket, entry);
        evicted
    }

    /// Takes the stalest connection out, to be dropped (when a file descriptor is needed).
    pub(crate) fn evict_stalest(&mut self) -> Option<T> {
        self.pending.pop_first().map(|(_, stalest)| stalest)
    }

    /// Takes a connection out of the budget (it proved the key, or failed). `None` when it is
    /// not there: it was dropped to make room, and whatever it produced must be dropped too.
    pub(crate) fn release(&mut self, ticket: Ticket) -> Option<T> {
        self.pending.remove(&ticket)
    }

    /// Connections held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }

    /// Takes every connection out (in tests: what is left).
    #[cfg(test)]
    fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        std::mem::take(&mut self.pending).into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stalest_connection_makes_room_for_a_new_one() {
        let mut budget = UnprovenBudget::new(3);
        let tickets: Vec<Ticket> = (0..6).map(|_| budget.issue()).collect();
        assert_eq!(budget.admit(tickets[0], "a"), None);
        assert_eq!(budget.admit(tickets[1], "b"), None);
        assert_eq!(budget.admit(tickets[2], "c"), None);
        assert_eq!(budget.len(), 3);
        assert_eq!(budget.admit(tickets[3], "d"), Some("a"));
        // "b" proved the key meanwhile: "c" is now the stalest.
        assert_eq!(budget.release(tickets[1]), Some("b"));
        assert_eq!(budget.admit(tickets[4], "e"), None);
        assert_eq!(budget.admit(tickets[5], "f"), Some("c"));
        assert_eq!(budget.len(), 3);
        // An evicted connection is gone: what it produces later is dropped.
        assert_eq!(budget.release(tickets[0]), None);
        assert_eq!(budget.release(tickets[2]), None);
        let mut left: Vec<_> = budget.drain().collect();
        left.sort();
        assert_eq!(left, vec!["d", "e", "f"]);
        assert_eq!(budget.len(), 0);
    }

    #[test]
    fn a_zero_budget_still_admits_one() {
        let mut budget = UnprovenBudget::new(0);
        let (first, second) = (budget.issue(), budget.issue());
        assert_eq!(budget.admit(first, 1), None);
        assert_eq!(budget.admit(second, 2), Some(1));
        assert_eq!(budget.evict_stalest(), Some(2));
        assert_eq!(budget.evict_stalest(), None);
    }
}
