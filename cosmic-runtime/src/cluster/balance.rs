//! Decisions, with no I/O: which orphaned tasks this host takes over, and which of its tasks
//! it moves to a less loaded host. Every host runs the same functions on the snapshot it read
//! from the coordinator; the coordinator's compare-and-set settles any disagreement between
//! snapshots (one winner per change), so the decisions need no agreement of their own.
//!
//! Load is `runnable / capacity`: tasks ready to run per slot, so hosts of unequal size
//! compare fairly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::coordinator::{HostLoad, Member};
use crate::task::TaskId;

/// How the balancer decides. See [`plan_moves`].
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceConfig {
    /// Balancing on or off (failover works either way).
    pub enabled: bool,
    /// A host starts giving tasks away once its load exceeds the cluster's mean load by this
    /// fraction of a task per slot (0.25: a quarter of its capacity above the mean) ...
    pub start_above: f64,
    /// ... and stops once it is within this (smaller) margin: the hysteresis that keeps a
    /// host near the threshold from moving tasks back and forth.
    pub stop_above: f64,
    /// Moves of one host in flight at once.
    pub max_in_flight: usize,
    /// A task that moved (or was taken over) is not moved again for this long.
    pub cooldown: Duration,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            enabled: true,
            start_above: 0.25,
            stop_above: 0.05,
            max_in_flight: 8,
            cooldown: Duration::from_secs(10),
        }
    }
}

/// A task this host runs, as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movable {
    /// The task.
    pub task: TaskId,
    /// Its type (the destination must know it).
    pub type_name: String,
    /// Pinned: never moved by the balancer.
    pub pinned: bool,
    /// Time since it last arrived here, if it ever did (moved in or taken over).
    pub since_arrival: Option<Duration>,
}

/// One move the balancer decided, with its reason (logged).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMove {
    /// The task.
    pub task: TaskId,
    /// Where to.
    pub to: String,
    /// Why, in words: both loads and the mean.
    pub reason: String,
}

fn ratio(load: &HostLoad) -> f64 {
    f64::from(load.runnable) / f64::from(load.capacity.max(1))
}

/// The moves this host (`me`) should start now. `active` is the hysteresis state: whether it
/// was balancing at the last decision (updated here). `in_flight`: its moves not yet done.
pub fn plan_moves(
    me: &str,
    members: &[Member],
    mine: &[Movable],
    in_flight: usize,
    active: &mut bool,
    config: &BalanceConfig,
) -> Vec<PlannedMove> {
    if !config.enabled {
        *active = false;
        return Vec::new();
    }
    let Some(my_member) = members.iter().find(|m| m.record.name == me) else {
        return Vec::new();
    };
    let total_runnable: f64 = members
        .iter()
        .map(|m| f64::from(m.record.load.runnable))
        .sum();
    // Draining hosts hold no share of the work.
    let total_capacity: f64 = members
        .iter()
        .filter(|m| !m.record.draining)
        .map(|m| f64::from(m.record.load.capacity.max(1)))
        .sum();
    if total_capacity == 0.0 {
        return Vec::new();
    }
    let mean = total_runnable / total_capacity;
    let my_load = my_member.record.load;
    let my_ratio = ratio(&my_load);
    let margin = if *active {
        config.stop_above
    } else {
        config.start_above
    };
    if my_ratio <= mean + margin {
        *active = false;
        return Vec::new();
    }
    *active = true;
    let budget = config.max_in_flight.saturating_sub(in_flight);
    if budget == 0 {
        return Vec::new();
    }
    // Receivers and how many tasks each can take before reaching the mean.
    let mut room: Vec<(String, f64, f64, &[String])> = members
        .iter()
        .filter(|m| m.record.name != me && !m.record.draining)
        .filter_map(|m| {
            let capacity = f64::from(m.record.load.capacity.max(1));
            let room = mean * capacity - f64::from(m.record.load.runnable);
            (room >= 1.0).then(|| {
                (
                    m.record.name.clone(),
                    room.floor(),
                    ratio(&m.record.load),
                    m.record.types.as_slice(),
                )
            })
        })
        .collect();
    // The least loaded first.
    room.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    // Whole tasks above the mean: a move that would only shift the imbalance to the
    // receiver (less than one task above) is not made, so the plan never undoes itself.
    let surplus = (f64::from(my_load.runnable) - mean * f64::from(my_load.capacity.max(1))).floor();
    let mut to_move = (surplus.max(0.0) as usize).min(budget);
    let mut moves = Vec::new();
    let mut candidates: Vec<&Movable> = mine
        .iter()
        .filter(|t| !t.pinned)
        .filter(|t| t.since_arrival.is_none_or(|since| since >= config.cooldown))
        .collect();
    // Tasks that have been here longest go first; ties by id so every run plans alike.
    candidates.sort_by(|a, b| {
        b.since_arrival
            .unwrap_or(Duration::MAX)
            .cmp(&a.since_arrival.unwrap_or(Duration::MAX))
            .then(a.task.cmp(&b.task))
    });
    for task in candidates {
        if to_move == 0 {
            break;
        }
        let Some(slot) = room
            .iter_mut()
            .find(|(_, room, _, types)| *room >= 1.0 && types.contains(&task.type_name))
        else {
            continue;
        };
        slot.1 -= 1.0;
        to_move -= 1;
        moves.push(PlannedMove {
            task: task.task,
            to: slot.0.clone(),
            reason: format!(
                "{me} runs {} tasks on {} slots ({:.2} per slot), {} is at {:.2}, the cluster's mean is {:.2}",
                my_load.runnable, my_load.capacity, my_ratio, slot.0, slot.2, mean
            ),
        });
    }
    moves
}

/// An orphaned task, as the takeover assignment sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The task.
    pub task: TaskId,
    /// Its type.
    pub type_name: String,
}

/// Spreads orphaned tasks over the live hosts that can run them, by load: every host computes
/// the same assignment from the same snapshot, each task going to the host with the lowest
/// load once the tasks before it are counted (ties broken by a hash of task and host, so equal
/// hosts share evenly). Hosts that are draining, or in `excluded` for a task (they tried and
/// could not run it), get nothing. Returns task -> host.
pub fn assign_orphans(
    members: &[Member],
    orphans: &[Orphan],
    excluded: &HashMap<TaskId, Vec<String>>,
) -> BTreeMap<TaskId, String> {
    let mut loads: Vec<(String, f64, f64, &[String])> = members
        .iter()
        .filter(|m| !m.record.draining)
        .map(|m| {
            (
                m.record.name.clone(),
                f64::from(m.record.load.runnable),
                f64::from(m.record.load.capacity.max(1)),
                m.record.types.as_slice(),
            )
        })
        .collect();
    let mut sorted: Vec<&Orphan> = orphans.iter().collect();
    sorted.sort_by_key(|o| o.task);
    let mut assignment = BTreeMap::new();
    for orphan in sorted {
        let skip = excluded.get(&orphan.task);
        let best = loads
            .iter_mut()
            .filter(|(name, _, _, types)| {
                types.contains(&orphan.type_name) && skip.is_none_or(|s| !s.contains(name))
            })
            .min_by(|a, b| {
                (a.1 / a.2)
                    .total_cmp(&(b.1 / b.2))
                    .then_with(|| tie(orphan.task, &a.0).cmp(&tie(orphan.task, &b.0)))
            });
        if let Some(best) = best {
            best.1 += 1.0;
            assignment.insert(orphan.task, best.0.clone());
        }
    }
    assignment
}

/// A stable hash of (task, host) for ties (FNV-1a: the same on every host and build).
fn tie(task: TaskId, host: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in task.0.to_le_bytes().iter().chain(host.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MemberRecord;
    use crate::transport::PublicKey;

    fn member(name: &str, runnable: u32, capacity: u32) -> Member {
        Member {
            record: MemberRecord {
                name: name.into(),
                addr: "127.0.0.1:1".into(),
                public_key: PublicKey::from_bytes([0; 32]),
                load: HostLoad {
                    runnable,
                    capacity,
                    steps_per_sec: 0.0,
                    cpu: 0.0,
                },
                types: vec!["Job".into()],
                draining: false,
            },
            incarnation: 1,
        }
    }

    fn tasks(n: u64) -> Vec<Movable> {
        (0..n)
            .map(|i| Movable {
                task: TaskId(i),
                type_name: "Job".into(),
                pinned: false,
                since_arrival: None,
            })
            .collect()
    }

    fn config() -> BalanceConfig {
        BalanceConfig {
            max_in_flight: 100,
            ..BalanceConfig::default()
        }
    }

    #[test]
    fn a_busy_host_gives_its_surplus_to_idle_ones_and_no_more() {
        let members = [member("a", 12, 2), member("b", 0, 2), member("c", 0, 2)];
        let mut active = false;
        let moves = plan_moves("a", &members, &tasks(12), 0, &mut active, &config());
        assert!(active);
        // The mean is 2 per slot: a keeps 4, b and c take 4 each.
        assert_eq!(moves.len(), 8);
        assert_eq!(moves.iter().filter(|m| m.to == "b").count(), 4);
        assert_eq!(moves.iter().filter(|m| m.to == "c").count(), 4);
        assert!(
            moves[0].reason.contains("mean is 2.00"),
            "{}",
            moves[0].reason
        );
    }

    #[test]
    fn hysteresis_starts_above_one_margin_and_stops_below_the_other() {
        let config = BalanceConfig {
            start_above: 1.0,
            stop_above: 0.0,
            ..config()
        };
        // 5 and 3 tasks on 2 slots each: mean 2, a at 2.5: under the start margin.
        let members = [member("a", 5, 2), member("b", 3, 2)];
        let mut active = false;
        assert!(plan_moves("a", &members, &tasks(5), 0, &mut active, &config).is_empty());
        assert!(!active);
        // Once active (it was above the start margin before), it goes on down to the mean.
        active = true;
        let moves = plan_moves("a", &members, &tasks(5), 0, &mut active, &config);
        assert_eq!(moves.len(), 1);
    }

    #[test]
    fn pinned_cooling_and_unknown_types_stay_and_the_cap_holds() {
        let members = [member("a", 10, 1), member("b", 0, 1)];
        let mut mine = tasks(10);
        mine[0].pinned = true;
        mine[1].since_arrival = Some(Duration::from_secs(1));
        mine[2].type_name = "Other".into();
        let mut active = false;
        let moves = plan_moves("a", &members, &mine, 0, &mut active, &config());
        let moved: Vec<u64> = moves.iter().map(|m| m.task.0).collect();
        assert!(!moved.contains(&0) && !moved.contains(&1) && !moved.contains(&2));
        assert_eq!(moves.len(), 5);
        let capped = BalanceConfig {
            max_in_flight: 3,
            ..config()
        };
        let mut active = false;
        assert_eq!(
            plan_moves("a", &members, &mine, 1, &mut active, &capped).len(),
            2
        );
    }

    #[test]
    fn a_balanced_cluster_moves_nothing() {
        let members = [member("a", 4, 2), member("b", 4, 2), member("c", 3, 2)];
        for me in ["a", "b", "c"] {
            let mut active = false;
            assert!(plan_moves(me, &members, &tasks(4), 0, &mut active, &config()).is_empty());
        }
    }

    #[test]
    fn orphans_spread_by_load_and_skip_hosts_that_cannot_run_them() {
        let members = [member("a", 4, 2), member("b", 0, 2), member("c", 0, 2)];
        let orphans: Vec<Orphan> = (0..20)
            .map(|i| Orphan {
                task: TaskId(i),
                type_name: "Job".into(),
            })
            .collect();
        let assignment = assign_orphans(&members, &orphans, &HashMap::new());
        let count = |h: &str| assignment.values().filter(|v| *v == h).count();
        // Totals even out: a ends with 4 + 4, b and c with 8 each.
        assert_eq!((count("a"), count("b"), count("c")), (4, 8, 8));
        let excluded = HashMap::from([(TaskId(3), vec!["b".to_owned(), "c".to_owned()])]);
        let assignment = assign_orphans(&members, &orphans, &excluded);
        assert_eq!(assignment[&TaskId(3)], "a");
        let unknown = [Orphan {
            task: TaskId(99),
            type_name: "Nobody".into(),
        }];
        assert!(assign_orphans(&members, &unknown, &HashMap::new()).is_empty());
    }
}
