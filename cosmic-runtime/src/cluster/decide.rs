//! The member's side of failover as data, with no I/O and no clock of its own (times come in
//! as arguments), so that the simulation (`tests/cluster_simulation.rs`) runs exactly the code
//! the runtime runs:
//! - [`LeaseClock`]: until when this host may run anything, from the send time of its last
//!   renewal that succeeded;
//! - [`decide`]: what one scan of the coordinator's tasks means for this host: start a task
//!   moved here, fence one that has a newer owner, take over its share of the orphans.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::balance::{assign_orphans, Orphan};
use super::coordinator::{Member, Owner, TaskEntry, Token};
use crate::task::TaskId;

/// Until when a host's lease holds from its own point of view. Times are durations since any
/// fixed origin the caller chooses (the runtime: its start; the simulation: simulated time).
///
/// A renewal sent at `sent` that succeeds extends the lease to `sent + ttl`: the coordinator
/// counts its time to live from when the renewal *arrived*, which is later, so on one clock
/// the host always gives up before the coordinator declares it dead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseClock {
    valid_until: Option<Duration>,
}

impl LeaseClock {
    /// A renewal (or the join) sent at `sent` succeeded.
    pub fn renewed(&mut self, sent: Duration, ttl: Duration) {
        let until = sent + ttl;
        self.valid_until = Some(self.valid_until.map_or(until, |old| old.max(until)));
    }

    /// The lease ended (refused, revoked, or given up): nothing runs under it any more.
    pub fn ended(&mut self) {
        self.valid_until = None;
    }

    /// Whether the lease holds at `now`.
    pub fn holds(&self, now: Duration) -> bool {
        self.valid_until.is_some_and(|until| now < until)
    }

    /// Until when it holds.
    pub fn valid_until(&self) -> Option<Duration> {
        self.valid_until
    }
}

/// What this host knows of a task it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// The token it runs the task under.
    pub token: Token,
    /// Already fenced, or its end is being recorded: nothing more to stop.
    pub fenced: bool,
}

/// What a scan asks this host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The coordinator names this host the owner of a task that does not run here (moved
    /// here, or ours from before a lost answer): start it from its current checkpoint.
    Arrive(TaskEntry),
    /// The task runs here but another host holds a newer token: stop it at its next safe
    /// point, record nothing.
    Fence(TaskId),
    /// An orphan this host should take over (its share by load, or one left too long by the
    /// host it was assigned to).
    TakeOver(TaskEntry),
}

/// What the scan is about: this host, and what it remembers between scans.
#[derive(Debug, Clone)]
pub struct ScanInput<'a> {
    /// This host's name.
    pub me: &'a str,
    /// Its lease's incarnation.
    pub incarnation: u64,
    /// Leaving (or shutting down): it takes nothing new.
    pub draining: bool,
    /// The tasks running here.
    pub running: &'a HashMap<TaskId, Running>,
    /// Tasks hosts tried and could not run (this host included).
    pub excluded: &'a HashMap<TaskId, Vec<String>>,
    /// How long an orphan may wait for its assigned host before any host takes it.
    pub grace: Duration,
    /// Now.
    pub now: Duration,
}

/// Turns one read of the coordinator (its live `members` and every task) into actions, in
/// task order. `orphaned_since` remembers when each orphan was first seen (kept across scans
/// by the caller).
pub fn decide(
    input: &ScanInput<'_>,
    members: &[Member],
    tasks: &[TaskEntry],
    orphaned_since: &mut BTreeMap<TaskId, Duration>,
) -> Vec<Action> {
    let mine = |owner: &Owner| matches!(owner, Owner::Host { host, incarnation } if host == input.me && *incarnation == input.incarnation);
    let mut actions = Vec::new();
    let mut orphans = Vec::new();
    for entry in tasks {
        match (&entry.owner, input.running.get(&entry.task)) {
            (owner, None) if mine(owner) && !input.draining => {
                actions.push(Action::Arrive(entry.clone()));
            }
            (owner, None) if mine(owner) => {}
            (owner, Some(running))
                if (!mine(owner) || entry.token > running.token) && !running.fenced =>
            {
                actions.push(Action::Fence(entry.task));
            }
            (Owner::Orphaned, None) => orphans.push(entry),
            _ => {}
        }
    }
    orphaned_since.retain(|task, _| orphans.iter().any(|o| o.task == *task));
    if input.draining || orphans.is_empty() {
        return actions;
    }
    let wanted: Vec<Orphan> = orphans
        .iter()
        .map(|entry| Orphan {
            task: entry.task,
            type_name: entry.type_name.clone(),
        })
        .collect();
    let assignment = assign_orphans(members, &wanted, input.excluded);
    for entry in orphans {
        let since = *orphaned_since.entry(entry.task).or_insert(input.now);
        let assigned_here = assignment.get(&entry.task).map(String::as_str) == Some(input.me);
        let excluded_here = input
            .excluded
            .get(&entry.task)
            .is_some_and(|hosts| hosts.iter().any(|h| h == input.me));
        let open = input.now.saturating_sub(since) >= input.grace && !excluded_here;
        if assigned_here || open {
            actions.push(Action::TakeOver(entry.clone()));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{CheckpointRef, HostLoad, MemberRecord};
    use crate::transport::PublicKey;

    fn member(name: &str, runnable: u32) -> Member {
        Member {
            record: MemberRecord {
                name: name.into(),
                addr: "127.0.0.1:1".into(),
                public_key: PublicKey::from_bytes([1; 32]),
                load: HostLoad {
                    runnable,
                    capacity: 1,
                    ..HostLoad::default()
                },
                types: vec!["Job".into()],
                draining: false,
            },
            incarnation: 1,
        }
    }

    fn entry(task: u64, owner: Owner, token: u64) -> TaskEntry {
        TaskEntry {
            task: TaskId(task),
            type_name: "Job".into(),
            output_type: "u64".into(),
            owner,
            token: Token(token),
            current: CheckpointRef {
                key: format!("k{task}"),
                steps: 0,
            },
        }
    }

    fn owner(host: &str, incarnation: u64) -> Owner {
        Owner::Host {
            host: host.into(),
            incarnation,
        }
    }

    #[test]
    fn the_lease_holds_from_the_send_time_of_the_last_renewal_and_never_after_it_ended() {
        let mut lease = LeaseClock::default();
        assert!(!lease.holds(Duration::ZERO));
        lease.renewed(Duration::from_secs(10), Duration::from_secs(5));
        assert!(lease.holds(Duration::from_millis(14_999)));
        assert!(!lease.holds(Duration::from_secs(15)));
        // A late answer to an older renewal never shortens it.
        lease.renewed(Duration::from_secs(8), Duration::from_secs(5));
        assert_eq!(lease.valid_until(), Some(Duration::from_secs(15)));
        lease.ended();
        assert!(!lease.holds(Duration::from_secs(11)));
    }

    #[test]
    fn a_scan_starts_arrivals_fences_the_outbid_and_takes_its_share_of_orphans() {
        let members = [member("a", 0), member("b", 0)];
        let running = HashMap::from([
            (
                TaskId(2),
                Running {
                    token: Token(5),
                    fenced: false,
                },
            ),
            (
                TaskId(3),
                Running {
                    token: Token(7),
                    fenced: false,
                },
            ),
        ]);
        let excluded = HashMap::new();
        let input = ScanInput {
            me: "a",
            incarnation: 1,
            draining: false,
            running: &running,
            excluded: &excluded,
            grace: Duration::from_secs(1),
            now: Duration::ZERO,
        };
        let tasks = [
            entry(1, owner("a", 1), 3),
            entry(2, owner("b", 1), 6),
            entry(3, owner("a", 1), 7),
            entry(4, owner("a", 0), 1), // an earlier life's: orphaned only once the coordinator says so
            entry(10, Owner::Orphaned, 2),
            entry(11, Owner::Orphaned, 2),
        ];
        let mut since = BTreeMap::new();
        let actions = decide(&input, &members, &tasks, &mut since);
        assert!(actions.contains(&Action::Arrive(tasks[0].clone())));
        assert!(actions.contains(&Action::Fence(TaskId(2))));
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::Fence(TaskId(3)))));
        let taken: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::TakeOver(e) => Some(e.task),
                _ => None,
            })
            .collect();
        // Two orphans, two idle hosts: one each.
        assert_eq!(taken.len(), 1, "{actions:?}");
        // After the grace period the other one is open to this host too.
        let later = ScanInput {
            now: Duration::from_secs(2),
            ..input.clone()
        };
        let actions = decide(&later, &members, &tasks, &mut since);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::TakeOver(_)))
                .count(),
            2
        );
        // Leaving: nothing new.
        let leaving = ScanInput {
            draining: true,
            ..later
        };
        assert!(decide(&leaving, &members, &tasks, &mut since)
            .iter()
            .all(|a| matches!(a, Action::Fence(_))));
    }
}
