//! [`ClusterHost`]: what makes a runtime a member of a cluster. It holds the lease (and from
//! it, whether this host may run anything at all), the tasks it owns with their fencing tokens,
//! and the loops that keep them: renewing the lease, committing checkpoints in batches, and
//! scanning the cluster (`scan.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::commit::Committer;
use super::config::ClusterConfig;
use super::coordinator::{
    CheckpointRef, Coordinator, CoordinatorError, HostLoad, Lease, MemberRecord, Token,
};
use super::decide::LeaseClock;
use super::load::LoadMeter;
use crate::checkpoint::CheckpointStore;
use crate::runtime::RuntimeInner;
use crate::task::TaskId;

/// A task this host owns: its token, and whether it has been fenced (another host holds a
/// newer token: the driver stops at its next safe point).
#[derive(Debug)]
pub(crate) struct OwnedTask {
    pub(crate) type_name: String,
    token: AtomicU64,
    fenced: AtomicBool,
    /// Its end is being recorded: a scan that sees it finished is not surprised.
    ending: AtomicBool,
    pub(crate) arrived: Option<Instant>,
    pinned: AtomicBool,
    /// The keys of this incarnation's checkpoints that are or were current, oldest first:
    /// all but the newest `keep` are collected.
    committed: Mutex<Vec<String>>,
}

impl OwnedTask {
    pub(crate) fn token(&self) -> Token {
        Token(self.token.load(Ordering::SeqCst))
    }

    pub(crate) fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Its end (or its move away) is being recorded: a scan that sees the coordinator name
    /// another owner, or none, is not to fence it.
    pub(crate) fn set_ending(&self, ending: bool) {
        self.ending.store(ending, Ordering::SeqCst);
    }

    pub(crate) fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }

    pub(crate) fn pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed)
    }

    pub(crate) fn set_pinned(&self, pinned: bool) {
        self.pinned.store(pinned, Ordering::Relaxed);
    }

    /// Records `key` as current; returns the keys that fall out of the newest `keep`.
    pub(crate) fn committed(&self, key: String, keep: usize) -> Vec<String> {
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        committed.push(key);
        let surplus = committed.len().saturating_sub(keep.max(1));
        committed.drain(..surplus).collect()
    }
}

/// A move decided or done, kept for reports (the quickstart's summary, `cosmic status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    /// When, since this host started.
    pub at: Duration,
    /// The task.
    pub task: TaskId,
    /// What happened.
    pub kind: ClusterEventKind,
}

/// What happened to a task, as a [`ClusterEvent`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEventKind {
    /// Moved to `to` by the balancer, for `reason`.
    Balanced {
        /// The destination.
        to: String,
        /// Why.
        reason: String,
    },
    /// Moved to `to` because this host was leaving.
    Drained {
        /// The destination.
        to: String,
    },
    /// Taken over here from a host that was gone, from the checkpoint after `steps` steps.
    TookOver {
        /// The owner it was orphaned by.
        from: Option<String>,
        /// Steps in the checkpoint resumed.
        steps: u64,
    },
    /// Picked up here after another host moved it here.
    Arrived {
        /// Steps in the checkpoint resumed.
        steps: u64,
    },
    /// Moved to `to` on request (`cosmic migrate`), asked by peer `by` (an operator).
    Requested {
        /// The destination.
        to: String,
        /// Who asked (the proven name of the peer).
        by: String,
    },
    /// Stopped here because another host holds a newer token.
    Fenced,
    /// Given up: this host cannot run it (and says why); another may.
    Released {
        /// Why.
        reason: String,
    },
}

pub(crate) struct ClusterHost {
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) config: ClusterConfig,
    pub(crate) keep: usize,
    pub(crate) name: String,
    started: Instant,
    /// Sequence numbers of this host's keys in the shared store (never reused in one
    /// incarnation).
    pub(crate) seq: AtomicU64,
    lease: Mutex<Option<Lease>>,
    /// Until when the lease holds from this host's point of view.
    clock: Mutex<LeaseClock>,
    owned: Mutex<HashMap<TaskId, Arc<OwnedTask>>>,
    /// Tasks being spawned here: already in the coordinator (owned here) but not yet in
    /// `owned`. A scan that reads such an entry must not take it for a task moved here and
    /// start a second copy of it (`adopt::arrive`).
    spawning: Mutex<HashSet<TaskId>>,
    /// Tasks this host tried and could not run: the assignment leaves them to others.
    pub(crate) unrunnable: Mutex<HashMap<TaskId, Vec<String>>>,
    pub(crate) draining: AtomicBool,
    /// Left on purpose: the lease is not renewed any more.
    left: AtomicBool,
    pub(crate) moves_in_flight: AtomicUsize,
    pub(crate) balancing: Mutex<bool>,
    /// Balancing moves started lately: to where, and when they were done (None: in flight).
    /// Until the receivers publish their new load, the balancer counts these itself, or it
    /// would see the same idle host at every scan and send it too much.
    pub(crate) recent_moves: Mutex<HashMap<TaskId, (String, Option<Instant>)>>,
    pub(crate) committer: Committer,
    pub(crate) load: LoadMeter,
    events: Mutex<Vec<ClusterEvent>>,
    /// Wakes the scan loop early (a peer said it moved a task here).
    pub(crate) wake_scan: tokio::sync::Notify,
    pub(crate) record: Mutex<Option<MemberRecord>>,
}

impl std::fmt::Debug for ClusterHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHost")
            .field("name", &self.name)
            .field("coordinator", &self.coordinator)
            .finish_non_exhaustive()
    }
}

impl ClusterHost {
    pub(crate) fn new(
        name: String,
        config: ClusterConfig,
        store: Arc<dyn CheckpointStore>,
        keep: usize,
    ) -> Arc<ClusterHost> {
        let coordinator = Arc::clone(&config.coordinator);
        let batch = config.commit_batch;
        Arc::new_cyclic(|host: &Weak<ClusterHost>| ClusterHost {
            committer: Committer::start(host.clone(), batch),
            coordinator,
            store,
            config,
            keep,
            name,
            started: Instant::now(),
            seq: AtomicU64::new(0),
            lease: Mutex::new(None),
            clock: Mutex::new(LeaseClock::default()),
            owned: Mutex::new(HashMap::new()),
            spawning: Mutex::new(HashSet::new()),
            unrunnable: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            left: AtomicBool::new(false),
            moves_in_flight: AtomicUsize::new(0),
            balancing: Mutex::new(false),
            recent_moves: Mutex::new(HashMap::new()),
            load: LoadMeter::new(),
            events: Mutex::new(Vec::new()),
            wake_scan: tokio::sync::Notify::new(),
            record: Mutex::new(None),
        })
    }

    /// Now, as the lease clock counts (since this host started).
    pub(crate) fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn lease_clock(&self) -> MutexGuard<'_, LeaseClock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the lease holds now, from this host's point of view.
    pub(crate) fn lease_holds(&self) -> bool {
        self.lease_clock().holds(self.now())
    }

    /// The lease, if it holds.
    pub(crate) fn lease(&self) -> Result<Lease, CoordinatorError> {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match lease {
            Some(lease) if self.lease_holds() => Ok(lease),
            Some(lease) => Err(CoordinatorError::LeaseEnded {
                host: lease.host,
                incarnation: lease.incarnation,
            }),
            None => Err(CoordinatorError::LeaseEnded {
                host: self.name.clone(),
                incarnation: 0,
            }),
        }
    }

    /// A renewal sent at `sent` succeeded: the lease holds until `sent + ttl`.
    pub(crate) fn renewed(&self, lease: &Lease, sent: Instant) {
        let mut held = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if held.as_ref() != Some(lease) {
            *held = Some(lease.clone());
        }
        let sent = sent.saturating_duration_since(self.started);
        self.lease_clock().renewed(sent, lease.ttl);
    }

    /// The lease ended: nothing may run under it any more.
    pub(crate) fn lease_ended(&self) {
        self.lease_clock().ended();
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = None;
        for task in self.owned().values() {
            task.fence();
        }
    }

    /// Whether the driver of `task` may run its next step.
    pub(crate) fn may_run(&self, task: &OwnedTask) -> bool {
        !task.is_fenced() && self.lease_holds()
    }

    pub(crate) fn owned(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<OwnedTask>>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tasks being spawned here (see the field). Read it *before* `owned`: a task whose entry
    /// the coordinator showed is in one or the other, as a spawn puts it in `owned` before it
    /// takes it out of here.
    pub(crate) fn spawning(&self) -> MutexGuard<'_, HashSet<TaskId>> {
        self.spawning.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn owned_task(&self, task: TaskId) -> Option<Arc<OwnedTask>> {
        self.owned().get(&task).cloned()
    }

    /// Starts owning `task` at `token`, resumed from `from` (None for a new task).
    /// Starts owning `task` at a `token` obtained under `lease`, if that lease still holds
    /// (else None: the token names an incarnation that is over, and the task is an orphan
    /// for the next takeover). A call to the coordinator can outlast the lease it was made
    /// under (a stalled disk, a paused process); a task owned after [`lease_ended`] fenced
    /// this host's tasks would run unfenced beside whoever takes it over. Checked with
    /// `owned` locked: `lease_ended` drops the lease before it fences what `owned` holds.
    ///
    /// [`lease_ended`]: ClusterHost::lease_ended
    pub(crate) fn own_under(
        &self,
        lease: &Lease,
        task: TaskId,
        type_name: String,
        token: Token,
        from: &CheckpointRef,
        arrived: bool,
    ) -> Option<Arc<OwnedTask>> {
        let mut owned = self.owned();
        let current = self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if current.as_ref() != Some(lease) || !self.lease_holds() {
            return None;
        }
        let task_entry = Arc::new(OwnedTask {
            type_name,
            token: AtomicU64::new(token.0),
            fenced: AtomicBool::new(false),
            ending: AtomicBool::new(false),
            arrived: arrived.then(Instant::now),
            pinned: AtomicBool::new(false),
            committed: Mutex::new(vec![from.key.clone()]),
        });
        owned.insert(task, Arc::clone(&task_entry));
        Some(task_entry)
    }

    /// Stops owning `task` (it moved, ended, or was fenced).
    pub(crate) fn disown(&self, task: TaskId) {
        self.owned().remove(&task);
    }

    pub(crate) fn event(&self, task: TaskId, kind: ClusterEventKind) {
        let event = ClusterEvent {
            at: self.started.elapsed(),
            task,
            kind,
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    pub(crate) fn events(&self) -> Vec<ClusterEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What this host publishes now.
    pub(crate) fn member_record(&self, runtime: &RuntimeInner) -> Option<MemberRecord> {
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let record = record.as_mut()?;
        let runnable = runtime.running().len() as u32;
        let (steps_per_sec, cpu) = self.load.sample(runtime.total_steps());
        record.load = HostLoad {
            runnable,
            capacity: self.config.capacity,
            steps_per_sec,
            cpu,
        };
        record.types = runtime.types.names();
        record.draining = self.draining.load(Ordering::SeqCst);
        Some(record.clone())
    }

    pub(crate) fn set_record(&self, record: MemberRecord) {
        *self.record.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
    }

    /// Joins (waiting out a lease of this name left by an earlier life), then renews at a
    /// third of the lease until the runtime is gone. A lease that ends (cut off too long,
    /// paused past it) fences every task here; the host then joins again as a new
    /// incarnation, and its scans take over whatever is still orphaned.
    pub(crate) async fn keep_lease(self: Arc<Self>, runtime: Weak<RuntimeInner>) {
        let ttl = self.config.lease_ttl;
        let period = ttl / 3;
        loop {
            if self.left.load(Ordering::SeqCst) {
                return;
            }
            let Some(record) = runtime.upgrade().and_then(|rt| self.member_record(&rt)) else {
                return;
            };
            let sent = Instant::now();
            let lease = match self.coordinator.join(&record, ttl).await {
                Ok(lease) => lease,
                Err(CoordinatorError::NameInUse { expires_in, .. }) => {
                    tracing::info!(host = %self.name, ?expires_in, "an earlier lease of this name still holds; waiting for it to end");
                    tokio::time::sleep(expires_in.min(ttl).max(Duration::from_millis(50))).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(host = %self.name, %error, "failed to join the cluster; retrying");
                    tokio::time::sleep(period).await;
                    continue;
                }
            };
            tracing::info!(host = %self.name, incarnation = lease.incarnation, ?ttl, "joined the cluster");
            self.renewed(&lease, sent);
            self.wake_scan.notify_one();
            // After a failed renewal, try again sooner: a renewal that timed out after a
            // third of the lease must not be followed by a whole third more of waiting.
            let mut wait = period;
            loop {
                tokio::time::sleep(wait).await;
                wait = period;
                if runtime.strong_count() == 0 {
                    return;
                }
                let Some(record) = runtime.upgrade().and_then(|rt| self.member_record(&rt)) else {
                    return;
                };
                if self.left.load(Ordering::SeqCst) {
                    return;
                }
                let sent = Instant::now();
                match self.coordinator.keep_alive(&lease, &record).await {
                    Ok(()) => self.renewed(&lease, sent),
                    Err(CoordinatorError::LeaseEnded { .. }) => {
                        tracing::warn!(host = %self.name, incarnation = lease.incarnation, "the lease ended: stopping every task here at its next safe point, then joining again");
                        self.lease_ended();
                        break;
                    }
                    Err(error) => {
                        // Not renewed: the lease runs out on its own if this goes on, and the
                        // tasks stop at their safe points when it does.
                        tracing::warn!(host = %self.name, %error, "failed to renew the lease");
                        wait = (period / 4).max(Duration::from_millis(10));
                        if !self.lease_holds() {
                            self.lease_ended();
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Marks the lease as given up on purpose (the host is leaving): no more renewals.
    pub(crate) fn give_up_lease(&self) -> Option<Lease> {
        self.left.store(true, Ordering::SeqCst);
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.lease_clock().ended();
        lease
    }
}
