//! [`MemoryCoordinator`]: the whole [`Coordinator`] contract held in one process's memory, for
//! tests, simulations and clusters whose hosts all live in one process.
//!
//! Everything sits behind one `std::sync::Mutex`, taken and released inside each call: the
//! async methods never wait on anything, so calling them from any executor (or polling them
//! once) is fine. Lease expiry counts from a [`Clock`]: [`MemoryCoordinator::new`] uses the
//! real one, [`MemoryCoordinator::with_clock`] lets a test or simulation drive time by hand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::coordinator::{
    CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError, Fenced, Lease, Member,
    MemberRecord, Owner, TaskEntry, Token,
};
use crate::checkpoint::{Clock, SystemClock};
use crate::task::TaskId;
use crate::transport::{NodeName, PublicKey};

/// A [`Coordinator`] in memory. See the module docs.
///
/// - Incarnations come from one counter (so each name's grow too), starting at 1.
/// - Tokens come from one counter shared by all tasks: each change of a task's owner takes the
///   next one, so each task's tokens strictly grow.
/// - A lease ends when its time to live runs out without a renewal (counted from when the
///   renewal reached this coordinator), when it is [`left`](Coordinator::leave), or when a
///   newer incarnation of its name joins; once ended it never holds again.
/// - A task whose owner's lease ended reads as [`Owner::Orphaned`]; its token does not change
///   until someone takes it over.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// # use cosmic_runtime::checkpoint::ManualClock;
/// # use cosmic_runtime::cluster::{
/// #     CheckpointRef, Coordinator, CoordinatorError, HostLoad, MemberRecord, MemoryCoordinator,
/// #     Owner,
/// # };
/// # use cosmic_runtime::task::TaskId;
/// # use cosmic_runtime::transport::PublicKey;
/// # fn record(name: &str) -> MemberRecord {
/// #     MemberRecord {
/// #         name: name.into(),
/// #         addr: "127.0.0.1:1".into(),
/// #         public_key: PublicKey::from_bytes([7; 32]),
/// #         load: HostLoad::default(),
/// #         types: vec!["Job".into()],
/// #         draining: false,
/// #     }
/// # }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let clock = ManualClock::new();
/// let coordinator = MemoryCoordinator::with_clock(Arc::new(clock.clone()));
/// let ttl = Duration::from_secs(3);
/// let a = coordinator.join(&record("a"), ttl).await?;
/// let b = coordinator.join(&record("b"), ttl).await?;
/// let first = CheckpointRef { key: "k0".into(), steps: 0 };
/// let token = coordinator.create(&a, TaskId::from_raw(1), "Job", "u64", first).await?;
///
/// // `a` falls silent; `b` keeps renewing. After the ttl, `a`'s task is orphaned ...
/// clock.advance(Duration::from_secs(2));
/// coordinator.keep_alive(&b, &record("b")).await?;
/// clock.advance(Duration::from_secs(2));
/// let entry = coordinator.task(TaskId::from_raw(1)).await?.unwrap();
/// assert_eq!(entry.owner, Owner::Orphaned);
///
/// // ... `b` takes it over with a newer token ...
/// let (newer, current) = coordinator.take_over(&b, TaskId::from_raw(1), entry.token).await?;
/// assert!(newer > token);
/// assert_eq!(current.steps, 0);
///
/// // ... and a late checkpoint of `a` is refused: its lease ended.
/// let late = cosmic_runtime::cluster::CheckpointCommit {
///     task: TaskId::from_raw(1),
///     token,
///     checkpoint: CheckpointRef { key: "k1".into(), steps: 10 },
/// };
/// assert!(matches!(
///     coordinator.commit_checkpoints(&a, &[late]).await,
///     Err(CoordinatorError::LeaseEnded { .. })
/// ));
/// # Ok::<(), CoordinatorError>(())
/// # }).unwrap();
/// ```
pub struct MemoryCoordinator {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryCoordinator")
            .field("leases", &state.leases.len())
            .field("tasks", &state.tasks.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    last_incarnation: u64,
    last_token: u64,
    /// The newest lease of each name (earlier ones are superseded, hence ended).
    leases: BTreeMap<String, LeaseState>,
    trusted: BTreeMap<String, PublicKey>,
    tasks: BTreeMap<TaskId, TaskState>,
}

struct LeaseState {
    incarnation: u64,
    ttl: Duration,
    /// The lease holds while the clock reads less than this.
    expires: Duration,
    /// Ended by `leave`.
    left: bool,
    record: MemberRecord,
}

struct TaskState {
    type_name: String,
    output_type: String,
    /// As last set: a `Host` here may have ended since (see [`State::owner`]).
    owner: Owner,
    token: Token,
    current: CheckpointRef,
    /// The token and outcome `finish` was called with (to answer its repeat).
    finished_with: Option<(Token, String)>,
}

impl State {
    fn live(&self, host: &str, incarnation: u64, now: Duration) -> bool {
        self.leases.get(host).is_some_and(|lease| {
            lease.incarnation == incarnation && !lease.left && now < lease.expires
        })
    }

    /// The owner as the contract reports it: a host whose lease ended owns nothing.
    fn owner(&self, task: &TaskState, now: Duration) -> Owner {
        match &task.owner {
            Owner::Host { host, incarnation } if !self.live(host, *incarnation, now) => {
                Owner::Orphaned
            }
            owner => owner.clone(),
        }
    }

    fn entry(&self, id: TaskId, task: &TaskState, now: Duration) -> TaskEntry {
        TaskEntry {
            task: id,
            type_name: task.type_name.clone(),
            output_type: task.output_type.clone(),
            owner: self.owner(task, now),
            token: task.token,
            current: task.current.clone(),
        }
    }

    fn next_token(&mut self) -> Token {
        self.last_token += 1;
        Token(self.last_token)
    }

    /// `LeaseEnded` unless `lease` holds now.
    fn check_lease(&self, lease: &Lease, now: Duration) -> Result<(), CoordinatorError> {
        if self.live(&lease.host, lease.incarnation, now) {
            Ok(())
        } else {
            Err(CoordinatorError::LeaseEnded {
                host: lease.host.clone(),
                incarnation: lease.incarnation,
            })
        }
    }

    /// `Fenced` unless `lease`'s host owns `id` at `token`.
    fn check_owner(
        &self,
        lease: &Lease,
        id: TaskId,
        token: Token,
        now: Duration,
    ) -> Result<(), Fenced> {
        let Some(task) = self.tasks.get(&id) else {
            // Unknown (never created, or finished and forgotten): nothing may change it.
            return Err(Fenced {
                task: id,
                token: Token::default(),
                owner: Owner::Orphaned,
            });
        };
        let owner = self.owner(task, now);
        let ours = matches!(&owner, Owner::Host { host, incarnation }
            if *host == lease.host && *incarnation == lease.incarnation);
        if ours && task.token == token {
            Ok(())
        } else {
            Err(Fenced {
                task: id,
                token: task.token,
                owner,
            })
        }
    }

    fn task_mut(&mut self, id: TaskId) -> Result<&mut TaskState, CoordinatorError> {
        self.tasks
            .get_mut(&id)
            .ok_or(CoordinatorError::NoSuchTask { task: id })
    }
}

impl Default for MemoryCoordinator {
    fn default() -> Self {
        MemoryCoordinator::new()
    }
}

impl MemoryCoordinator {
    /// An empty coordinator whose leases run out on the real monotonic clock.
    pub fn new() -> MemoryCoordinator {
        MemoryCoordinator::with_clock(Arc::new(SystemClock::default()))
    }

    /// An empty coordinator whose leases run out on `clock` (a
    /// [`ManualClock`](crate::checkpoint::ManualClock) in tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryCoordinator {
        MemoryCoordinator {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Host names are [`NodeName`]s (what the transport and the store layout accept).
fn check_name(name: &str) -> Result<(), CoordinatorError> {
    NodeName::new(name)
        .map(drop)
        .map_err(|error| CoordinatorError::Invalid {
            what: "host name",
            reason: error.to_string(),
        })
}

#[async_trait]
impl Coordinator for MemoryCoordinator {
    async fn join(&self, record: &MemberRecord, ttl: Duration) -> Result<Lease, CoordinatorError> {
        check_name(&record.name)?;
        if ttl.is_zero() {
            return Err(CoordinatorError::Invalid {
                what: "lease time to live",
                reason: "it is zero".into(),
            });
        }
        let now = self.clock.now();
        let mut state = self.state();
        if let Some(lease) = state.leases.get(&record.name) {
            if state.live(&record.name, lease.incarnation, now) {
                return Err(CoordinatorError::NameInUse {
                    host: record.name.clone(),
                    incarnation: lease.incarnation,
                    expires_in: lease.expires - now,
                });
            }
        }
        state.last_incarnation += 1;
        let incarnation = state.last_incarnation;
        // Replacing the name's lease supersedes the earlier incarnation: its tasks read as
        // orphaned from now on (their owner no longer matches a live lease).
        state.leases.insert(
            record.name.clone(),
            LeaseState {
                incarnation,
                ttl,
                expires: now + ttl,
                left: false,
                record: record.clone(),
            },
        );
        Ok(Lease {
            host: record.name.clone(),
            incarnation,
            ttl,
        })
    }

    async fn keep_alive(
        &self,
        lease: &Lease,
        record: &MemberRecord,
    ) -> Result<(), CoordinatorError> {
        if record.name != lease.host {
            return Err(CoordinatorError::Invalid {
                what: "member record",
                reason: format!(
                    "it names `{}` but the lease is `{}`'s",
                    record.name, lease.host
                ),
            });
        }
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        let held = state
            .leases
            .get_mut(&lease.host)
            .expect("a live lease is recorded");
        held.expires = now + held.ttl;
        held.record = record.clone();
        Ok(())
    }

    async fn leave(&self, lease: &Lease) -> Result<(), CoordinatorError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        if let Some(held) = state.leases.get_mut(&lease.host) {
            held.left = true;
        }
        Ok(())
    }

    async fn members(&self) -> Result<Vec<Member>, CoordinatorError> {
        let now = self.clock.now();
        let state = self.state();
        Ok(state
            .leases
            .iter()
            .filter(|(name, lease)| state.live(name, lease.incarnation, now))
            .map(|(_, lease)| Member {
                record: lease.record.clone(),
                incarnation: lease.incarnation,
            })
            .collect())
    }

    async fn trust(&self, name: &str, key: PublicKey) -> Result<(), CoordinatorError> {
        check_name(name)?;
        self.state().trusted.insert(name.to_owned(), key);
        Ok(())
    }

    async fn trusted(&self) -> Result<Vec<(String, PublicKey)>, CoordinatorError> {
        Ok(self
            .state()
            .trusted
            .iter()
            .map(|(name, key)| (name.clone(), *key))
            .collect())
    }

    async fn create(
        &self,
        lease: &Lease,
        task: TaskId,
        type_name: &str,
        output_type: &str,
        first: CheckpointRef,
    ) -> Result<Token, CoordinatorError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        if state.tasks.contains_key(&task) {
            return Err(CoordinatorError::TaskExists { task });
        }
        let token = state.next_token();
        state.tasks.insert(
            task,
            TaskState {
                type_name: type_name.to_owned(),
                output_type: output_type.to_owned(),
                owner: Owner::Host {
                    host: lease.host.clone(),
                    incarnation: lease.incarnation,
                },
                token,
                current: first,
                finished_with: None,
            },
        );
        Ok(token)
    }

    async fn task(&self, task: TaskId) -> Result<Option<TaskEntry>, CoordinatorError> {
        let now = self.clock.now();
        let state = self.state();
        Ok(state.tasks.get(&task).map(|t| state.entry(task, t, now)))
    }

    async fn tasks(&self) -> Result<Vec<TaskEntry>, CoordinatorError> {
        let now = self.clock.now();
        let state = self.state();
        Ok(state
            .tasks
            .iter()
            .map(|(id, t)| state.entry(*id, t, now))
            .collect())
    }

    async fn commit_checkpoints(
        &self,
        lease: &Lease,
        commits: &[CheckpointCommit],
    ) -> Result<Vec<Result<(), Fenced>>, CoordinatorError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        let mut verdicts = Vec::with_capacity(commits.len());
        for commit in commits {
            let verdict = state.check_owner(lease, commit.task, commit.token, now);
            if verdict.is_ok() {
                if let Some(task) = state.tasks.get_mut(&commit.task) {
                    task.current = commit.checkpoint.clone();
                }
            }
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    async fn transfer(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        to: &str,
        checkpoint: CheckpointRef,
    ) -> Result<Token, CoordinatorError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        state.task_mut(task)?;
        state.check_owner(lease, task, token, now)?;
        let to_incarnation = match state.leases.get(to) {
            Some(dest) if state.live(to, dest.incarnation, now) && !dest.record.draining => {
                dest.incarnation
            }
            _ => {
                return Err(CoordinatorError::NoSuchMember {
                    host: to.to_owned(),
                })
            }
        };
        let token = state.next_token();
        let entry = state.task_mut(task)?;
        entry.owner = Owner::Host {
            host: to.to_owned(),
            incarnation: to_incarnation,
        };
        entry.token = token;
        entry.current = checkpoint;
        Ok(token)
    }

    async fn take_over(
        &self,
        lease: &Lease,
        task: TaskId,
        seen: Token,
    ) -> Result<(Token, CheckpointRef), CoordinatorError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        let entry = state
            .tasks
            .get(&task)
            .ok_or(CoordinatorError::NoSuchTask { task })?;
        let owner = state.owner(entry, now);
        if owner != Owner::Orphaned {
            return Err(CoordinatorError::NotOrphaned { task, owner });
        }
        if entry.token != seen {
            return Err(Fenced {
                task,
                token: entry.token,
                owner,
            }
            .into());
        }
        let token = state.next_token();
        let entry = state.task_mut(task)?;
        entry.owner = Owner::Host {
            host: lease.host.clone(),
            incarnation: lease.incarnation,
        };
        entry.token = token;
        Ok((token, entry.current.clone()))
    }

    async fn release(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
    ) -> Result<Token, CoordinatorError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        state.task_mut(task)?;
        state.check_owner(lease, task, token, now)?;
        let token = state.next_token();
        let entry = state.task_mut(task)?;
        entry.owner = Owner::Orphaned;
        entry.token = token;
        Ok(token)
    }

    async fn finish(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        outcome: &str,
    ) -> Result<(), CoordinatorError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.check_lease(lease, now)?;
        let entry = state.task_mut(task)?;
        if entry
            .finished_with
            .as_ref()
            .is_some_and(|(t, o)| *t == token && o == outcome)
        {
            // The same call again (its answer was lost): it succeeded.
            return Ok(());
        }
        state.check_owner(lease, task, token, now)?;
        let newer = state.next_token();
        let entry = state.task_mut(task)?;
        entry.owner = Owner::Finished {
            outcome: outcome.to_owned(),
        };
        entry.finished_with = Some((token, outcome.to_owned()));
        entry.token = newer;
        Ok(())
    }

    async fn forget(&self, task: TaskId) -> Result<(), CoordinatorError> {
        let mut state = self.state();
        let entry = state.task_mut(task)?;
        if !matches!(entry.owner, Owner::Finished { .. }) {
            return Err(CoordinatorError::Invalid {
                what: "forget",
                reason: format!("task {task} has not finished"),
            });
        }
        state.tasks.remove(&task);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The contract every coordinator must keep, on this one too.
    #[tokio::test]
    async fn the_memory_coordinator_passes_the_conformance_suite() {
        crate::cluster::conformance::run_all(|| async { super::MemoryCoordinator::new() }).await;
    }

    use super::*;
    use crate::checkpoint::ManualClock;
    use crate::cluster::HostLoad;

    const TTL: Duration = Duration::from_secs(3);

    fn record(name: &str) -> MemberRecord {
        MemberRecord {
            name: name.into(),
            addr: "127.0.0.1:1".into(),
            public_key: PublicKey::from_bytes([3; 32]),
            load: HostLoad::default(),
            types: vec!["Job".into()],
            draining: false,
        }
    }

    fn ckpt(key: &str, steps: u64) -> CheckpointRef {
        CheckpointRef {
            key: key.into(),
            steps,
        }
    }

    /// Its futures never wait: one poll answers.
    fn now<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("a MemoryCoordinator call waited"),
        }
    }

    fn setup() -> (ManualClock, MemoryCoordinator) {
        let clock = ManualClock::new();
        let coordinator = MemoryCoordinator::with_clock(Arc::new(clock.clone()));
        (clock, coordinator)
    }

    fn owner(lease: &Lease) -> Owner {
        Owner::Host {
            host: lease.host.clone(),
            incarnation: lease.incarnation,
        }
    }

    #[test]
    fn a_lease_holds_for_its_ttl_from_each_renewal_and_never_after_it_ended() {
        let (clock, c) = setup();
        let a = now(c.join(&record("a"), TTL)).unwrap();
        assert!(matches!(
            now(c.join(&record("a"), TTL)),
            Err(CoordinatorError::NameInUse { incarnation, expires_in, .. })
                if incarnation == a.incarnation && expires_in == TTL
        ));
        clock.advance(Duration::from_secs(2));
        now(c.keep_alive(&a, &record("a"))).unwrap();
        clock.advance(Duration::from_millis(2_999));
        assert_eq!(now(c.members()).unwrap().len(), 1);
        clock.advance(Duration::from_millis(1));
        assert!(now(c.members()).unwrap().is_empty());
        assert!(matches!(
            now(c.keep_alive(&a, &record("a"))),
            Err(CoordinatorError::LeaseEnded { .. })
        ));
        // A new incarnation; the old lease stays ended.
        let a2 = now(c.join(&record("a"), TTL)).unwrap();
        assert!(a2.incarnation > a.incarnation);
        assert!(matches!(
            now(c.keep_alive(&a, &record("a"))),
            Err(CoordinatorError::LeaseEnded { .. })
        ));
        let members = now(c.members()).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].incarnation, a2.incarnation);
        assert!(matches!(
            now(c.keep_alive(&a2, &record("b"))),
            Err(CoordinatorError::Invalid { .. })
        ));
        for bad in ["", "../etc", "two words"] {
            assert!(matches!(
                now(c.join(&record(bad), TTL)),
                Err(CoordinatorError::Invalid { .. })
            ));
            assert!(now(c.trust(bad, PublicKey::from_bytes([1; 32]))).is_err());
        }
        assert!(matches!(
            now(c.join(&record("z"), Duration::ZERO)),
            Err(CoordinatorError::Invalid { .. })
        ));
    }

    #[test]
    fn tasks_of_an_ended_lease_are_orphaned_and_taken_over_once_with_a_newer_token() {
        let (clock, c) = setup();
        let a = now(c.join(&record("a"), TTL)).unwrap();
        let b = now(c.join(&record("b"), TTL)).unwrap();
        let t1 = now(c.create(&a, TaskId(1), "Job", "u64", ckpt("k0", 0))).unwrap();
        assert!(matches!(
            now(c.create(&a, TaskId(1), "Job", "u64", ckpt("k0", 0))),
            Err(CoordinatorError::TaskExists { .. })
        ));
        assert!(matches!(
            now(c.take_over(&b, TaskId(1), t1)),
            Err(CoordinatorError::NotOrphaned { owner: o, .. }) if o == owner(&a)
        ));
        clock.advance(TTL);
        now(c.keep_alive(&b, &record("b"))).ok();
        // b's lease ran out at the same instant: join again.
        let b = now(c.join(&record("b"), TTL)).unwrap();
        let entry = now(c.task(TaskId(1))).unwrap().unwrap();
        assert_eq!(entry.owner, Owner::Orphaned);
        assert_eq!(entry.token, t1);
        assert!(matches!(
            now(c.take_over(&b, TaskId(1), Token(t1.0 + 100))),
            Err(CoordinatorError::Fenced(_))
        ));
        let (t2, current) = now(c.take_over(&b, TaskId(1), t1)).unwrap();
        assert!(t2 > t1);
        assert_eq!(current, ckpt("k0", 0));
        assert_eq!(now(c.task(TaskId(1))).unwrap().unwrap().owner, owner(&b));
        // A second taker with the same snapshot loses.
        let c2 = now(c.join(&record("c"), TTL)).unwrap();
        assert!(now(c.take_over(&c2, TaskId(1), t1)).is_err());
        // The old owner can change nothing.
        assert!(matches!(
            now(c.finish(&a, TaskId(1), t1, "out")),
            Err(CoordinatorError::LeaseEnded { .. })
        ));
    }

    #[test]
    fn a_restart_or_a_leave_orphans_at_once() {
        let (clock, c) = setup();
        let a = now(c.join(&record("a"), TTL)).unwrap();
        now(c.create(&a, TaskId(1), "Job", "u64", ckpt("k", 0))).unwrap();
        let b = now(c.join(&record("b"), TTL)).unwrap();
        now(c.create(&b, TaskId(2), "Job", "u64", ckpt("k", 0))).unwrap();
        now(c.leave(&a)).unwrap();
        assert_eq!(
            now(c.task(TaskId(1))).unwrap().unwrap().owner,
            Owner::Orphaned
        );
        assert!(matches!(
            now(c.leave(&a)),
            Err(CoordinatorError::LeaseEnded { .. })
        ));
        // Left: the name is free at once.
        let a2 = now(c.join(&record("a"), TTL)).unwrap();
        assert!(a2.incarnation > a.incarnation);
        // b's lease expires and b restarts: its earlier life's task is orphaned.
        clock.advance(TTL);
        let b2 = now(c.join(&record("b"), TTL)).unwrap();
        assert_eq!(
            now(c.task(TaskId(2))).unwrap().unwrap().owner,
            Owner::Orphaned
        );
        assert!(matches!(
            now(c.create(&b, TaskId(3), "Job", "u64", ckpt("k", 0))),
            Err(CoordinatorError::LeaseEnded { .. })
        ));
        now(c.create(&b2, TaskId(3), "Job", "u64", ckpt("k", 0))).unwrap();
    }

    #[test]
    fn only_the_newest_token_commits_checkpoints_one_verdict_each() {
        let (_clock, c) = setup();
        let a = now(c.join(&record("a"), TTL)).unwrap();
        let b = now(c.join(&record("b"), TTL)).unwrap();
        let t1 = now(c.create(&a, TaskId(1), "Job", "u64", ckpt("k0", 0))).unwrap();
        let t2 = now(c.create(&a, TaskId(2), "Job", "u64", ckpt("j0", 0))).unwrap();
        let moved = now(c.transfer(&a, TaskId(2), t2, "b", ckpt("j1", 5))).unwrap();
        assert!(moved > t2);
        let entry = now(c.task(TaskId(2))).unwrap().unwrap();
        assert_eq!((entry.owner, entry.current), (owner(&b), ckpt("j1", 5)));
        let commit = |task, token, key: &str| CheckpointCommit {
            task: TaskId(task),
            token,
            checkpoint: ckpt(key, 9),
        };
        let verdicts = now(c.commit_checkpoints(
            &a,
            &[
                commit(1, t1, "k1"),
                commit(2, t2, "j2"),
                commit(1, Token(t1.0 + 50), "k2"),
                commit(9, t1, "x"),
            ],
        ))
        .unwrap();
        assert!(verdicts[0].is_ok());
        let Err(fenced) = &verdicts[1] else {
            panic!("{verdicts:?}")
        };
        assert_eq!((fenced.token, &fenced.owner), (moved, &owner(&b)));
        assert!(verdicts[2].is_err() && verdicts[3].is_err());
        assert_eq!(
            now(c.task(TaskId(1))).unwrap().unwrap().current,
            ckpt("k1", 9)
        );
        assert_eq!(
            now(c.task(TaskId(2))).unwrap().unwrap().current,
            ckpt("j1", 5)
        );
        // b holds the newest token of task 2, but not of task 1.
        let verdicts =
            now(c.commit_checkpoints(&b, &[commit(2, moved, "j3"), commit(1, t1, "k3")])).unwrap();
        assert!(verdicts[0].is_ok() && verdicts[1].is_err());
    }

    #[test]
    fn moves_need_a_live_member_that_is_not_leaving() {
        let (_clock, c) = setup();
        let a = now(c.join(&record("a"), TTL)).unwrap();
        let b = now(c.join(&record("b"), TTL)).unwrap();
        let t = now(c.create(&a, TaskId(1), "Job", "u64", ckpt("k0", 0))).unwrap();
        let mut draining = record("b");
        draining.draining = true;
        now(c.keep_alive(&b, &draining)).unwrap();
        assert!(matches!(
            now(c.transfer(&a, TaskId(1), t, "b", ckpt("k1", 1))),
            Err(CoordinatorError::NoSuchMember { .. })
        ));
        assert!(matches!(
            now(c.transfer(&a, TaskId(1), t, "nobody", ckpt("k1", 1))),
            Err(CoordinatorError::NoSuchMember { .. })
        ));
        assert!(matches!(
            now(c.transfer(&b, TaskId(1), t, "a", ckpt("k1", 1))),
            Err(CoordinatorError::Fenced(_))
        ));
        assert!(matches!(
            now(c.transfer(&a, TaskId(7), t, "a", ckpt("k1", 1))),
            Err(CoordinatorError::NoSuchTask { .. })
        ));
        assert_eq!(now(c.task(TaskId(1))).unwrap().unwrap().token, t);
    }

    #[test]
    fn release_orphans_finish_is_once_and_forget_only_the_finished() {
        let (_clock, c) = setup();
        let a = now(c.join(&record("a"), TTL)).unwrap();
        let b = now(c.join(&record("b"), TTL)).unwrap();
        let t1 = now(c.create(&a, TaskId(1), "Job", "u64", ckpt("k0", 0))).unwrap();
        assert!(matches!(
            now(c.forget(TaskId(1))),
            Err(CoordinatorError::Invalid { .. })
        ));
        let t2 = now(c.release(&a, TaskId(1), t1)).unwrap();
        assert!(t2 > t1);
        assert_eq!(
            now(c.task(TaskId(1))).unwrap().unwrap().owner,
            Owner::Orphaned
        );
        assert!(now(c.release(&a, TaskId(1), t1)).is_err());
        let (t3, _) = now(c.take_over(&b, TaskId(1), t2)).unwrap();
        assert!(matches!(
            now(c.finish(&a, TaskId(1), t1, "a-out")),
            Err(CoordinatorError::Fenced(_))
        ));
        now(c.finish(&b, TaskId(1), t3, "b-out")).unwrap();
        // The same call again is Ok; another is not.
        now(c.finish(&b, TaskId(1), t3, "b-out")).unwrap();
        assert!(now(c.finish(&b, TaskId(1), t3, "other")).is_err());
        let entry = now(c.task(TaskId(1))).unwrap().unwrap();
        assert_eq!(
            entry.owner,
            Owner::Finished {
                outcome: "b-out".into()
            }
        );
        assert!(entry.token > t3);
        assert!(matches!(
            now(c.take_over(&a, TaskId(1), entry.token)),
            Err(CoordinatorError::NotOrphaned { .. } | CoordinatorError::LeaseEnded { .. })
        ));
        assert!(matches!(
            now(c.take_over(&b, TaskId(1), entry.token)),
            Err(CoordinatorError::NotOrphaned { .. })
        ));
        now(c.forget(TaskId(1))).unwrap();
        assert!(now(c.task(TaskId(1))).unwrap().is_none());
        assert!(matches!(
            now(c.forget(TaskId(1))),
            Err(CoordinatorError::NoSuchTask { .. })
        ));
    }

    #[test]
    fn trust_is_kept_per_name() {
        let c = MemoryCoordinator::new();
        now(c.trust("a", PublicKey::from_bytes([1; 32]))).unwrap();
        now(c.trust("a", PublicKey::from_bytes([2; 32]))).unwrap();
        now(c.trust("b", PublicKey::from_bytes([3; 32]))).unwrap();
        assert_eq!(
            now(c.trusted()).unwrap(),
            vec![
                ("a".to_owned(), PublicKey::from_bytes([2; 32])),
                ("b".to_owned(), PublicKey::from_bytes([3; 32])),
            ]
        );
    }
}
