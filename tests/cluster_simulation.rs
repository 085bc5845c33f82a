//! Deterministic simulation of cluster failover: 3 to 5 hosts sharing one
//! [`MemoryCoordinator`] and one store of write-once keys, running 5 to 30 tasks of 20 to 60
//! steps each, through crashes, pauses, partitions from the coordinator and graceful leaves,
//! on a simulated clock, all decided by one seed. After every event it checks the promises
//! below; once the faults stop it runs on until every task has finished.
//!
//! Run: `cargo test --release -p cosmic-tests --test cluster_simulation -- --nocapture`
//! - `COSMIC_CLUSTER_SIM_SCHEDULES=N`: how many schedules (default 2,000 in release, 100 in a
//!   debug build such as `cargo test --workspace`);
//! - `COSMIC_CLUSTER_SIM_SEED=S` replays one schedule (a failure prints the command), and
//!   with `COSMIC_CLUSTER_SIM_TRACE=1` prints every event of it;
//! - `COSMIC_CLUSTER_SIM_BASE_SEED=B` fixes where the seeds start (default: from the clock);
//! - `COSMIC_CLUSTER_SIM_MUTANT=renew-from-answer|ignore-lease|no-fence-check` runs the model
//!   with one deliberately broken piece (see [`Mutant`]); `mutants_are_caught` checks that each
//!   one fails a check within 300 schedules (`COSMIC_CLUSTER_SIM_MUTANT_SCHEDULES`).
//!
//! # What each host runs
//!
//! Each host is modelled with the runtime's own pure code, as `cluster/host.rs`, `scan.rs`,
//! `adopt.rs`, `ops.rs` and the driver's `may_go_on` use it:
//! - a [`LeaseClock`]: a renewal (or the join) sent at `sent` that succeeds extends the lease
//!   to `sent + ttl`. Renewals go every ttl/3 after the previous answer (or time-out); their
//!   requests and answers are delayed, lost, or cut by a partition; the coordinator counts the
//!   time to live from when the request *arrives*. A refused renewal (`LeaseEnded`), or one
//!   that failed once the lease no longer holds, ends the lease: every task here is fenced and
//!   the host joins again (retrying `NameInUse`) as a new incarnation;
//! - [`decide`] on every scan (with the real `assign_orphans` inside): `Arrive`, `Fence`,
//!   `TakeOver` (through [`Coordinator::take_over`]);
//! - [`plan_moves`] after every scan, the moves done at the task's next safe point with
//!   [`Coordinator::transfer`];
//! - the safe-point gate: a task's next step starts only if the task is not fenced and the
//!   host's `LeaseClock` holds at that instant (otherwise it waits, or stops if fenced);
//! - a checkpoint every k steps: an image under a write-once key of the shared store, then made
//!   current through one batched [`Coordinator::commit_checkpoints`] per host at a time (the
//!   committer), whose request may land long after it was sent; a `Fenced` verdict fences the
//!   task;
//! - the end: [`Coordinator::finish`], retried while the coordinator is unreachable or its
//!   answer was lost (the repeat of a call that succeeded is Ok).
//!
//! A task's state is its step count and a digest of the step indices it ran, in order; a
//! checkpoint image holds both, and a host resumes from the image of the current checkpoint.
//!
//! # Faults
//!
//! Until a random heal time: **crash** (SIGKILL: all state lost, restart later as a new
//! incarnation), **pause** (SIGSTOP: nothing happens on the host for up to 3 ttl, then it goes
//! on with its stale state, the step it was in included), **partition** (every request to or
//! answer from the coordinator is lost for a while), **leave** (graceful: moves its tasks by
//! `assign_orphans`, stops the rest with a last checkpoint, `leave`s, restarts later). Network
//! delays and losses go on all the time.
//!
//! # The promises checked
//!
//! A step is an interval `[start, end)` of simulated time, run by an *owner*: a host
//! incarnation and the token it holds the task under. A *grant* is the instant the
//! coordinator gave a token (create, take over, transfer).
//! 1. **At most one runner, but for one step in flight.** (a) A step starts only under the
//!    task's newest token, held by a live lease, as the coordinator says at that instant.
//!    (b) For any two steps of one task by different owners whose intervals overlap, the one
//!    of the older token started before the newer token was granted: it is the older owner's
//!    last step, in flight when it lost the task (its lease ran out from its own point of
//!    view, or it was paused), and (a) says the older owner started no other after the grant.
//! 2. **A late checkpoint never becomes current**: every checkpoint the coordinator accepts was
//!    written by the holder of the task's newest token at that instant, under a live lease;
//!    the current checkpoint is always the last one so accepted (or the one a move or the
//!    spawn set), and its image is in the store with the steps it claims.
//! 3. **Each outcome recorded once**: `finish` ends a task at most once (a repeat of the very
//!    call that succeeded, after its answer was lost, is Ok and records nothing new).
//! 4. **No task lost, no step lost**: in the end every task has finished, and its outcome
//!    holds exactly N steps and the digest of steps `0..N` in order (re-running steps after a
//!    checkpoint is allowed; skipping or doubling one is not).
//! 5. **Tokens of each task strictly grow** with every change of owner, and never go back.
//!
//! # Not modelled
//!
//! Clock skew between hosts (one simulated clock: the lease rule relies on rates, not on
//! agreement); the transport of images between hosts (a move only changes the coordinator;
//! the store is shared); collection of old checkpoints; CPU contention (a host runs all its
//! tasks at once; capacity only weighs load); scans' reads, take-overs, moves and ends reach
//! the coordinator at once (or not at all, when cut off): only joins, renewals and checkpoint
//! commits travel with delays, which is where the lease rule and fencing are at stake.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cosmic_runtime::checkpoint::ManualClock;
use cosmic_runtime::cluster::balance::{assign_orphans, plan_moves, Movable, Orphan};
use cosmic_runtime::cluster::decide::{decide, Action, LeaseClock, Running, ScanInput};
use cosmic_runtime::cluster::{
    layout, BalanceConfig, CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError,
    HostLoad, Lease, MemberRecord, MemoryCoordinator, Owner, TaskEntry, Token,
};
use cosmic_runtime::task::TaskId;
use cosmic_runtime::transport::PublicKey;

use cosmic_tests::sim_rng::SimRng as Rng;

/// One deliberately broken piece of the host model, to show the checks bite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutant {
    None,
    /// A renewal counted from when its answer came back, not from when it was sent: the host
    /// believes in its lease for as long as the answer took after the coordinator's count.
    RenewFromAnswer,
    /// The safe-point gate does not look at the lease: a host paused or cut off past its lease
    /// runs on until something fences the task.
    IgnoreLease,
    /// Fences are ignored: the gate runs fenced tasks (and a scan's `Fence` has no effect), so
    /// a host whose lease ended runs its old tasks on under its next incarnation. (Ignoring
    /// only the scan's `Fence` survived 300 schedules: an ended lease and a `Fenced` commit
    /// verdict fence the tasks too, so the scan's `Fence` is a second line here.)
    NoFenceCheck,
}

impl Mutant {
    const ALL: [(&'static str, Mutant); 3] = [
        ("renew-from-answer", Mutant::RenewFromAnswer),
        ("ignore-lease", Mutant::IgnoreLease),
        ("no-fence-check", Mutant::NoFenceCheck),
    ];
}

/// Polls a coordinator call once: [`MemoryCoordinator`]'s calls never wait.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("a MemoryCoordinator call waited"),
    }
}

const TTL: Duration = Duration::from_millis(3_000);
const TYPE: &str = "Job";

fn balance_config() -> BalanceConfig {
    BalanceConfig {
        enabled: true,
        max_in_flight: 4,
        cooldown: Duration::from_secs(2),
        ..BalanceConfig::default()
    }
}

fn mix(digest: u64, step: u64) -> u64 {
    let mut z = digest ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 29)
}

fn expected_digest(steps: u64) -> u64 {
    (0..steps).fold(0, mix)
}

/// A request on its way to the coordinator.
#[derive(Debug)]
enum Op {
    Join(MemberRecord),
    KeepAlive(Lease, MemberRecord),
    Commit(Lease, Vec<CheckpointCommit>),
}

/// An answer on its way back (or the host giving up waiting: `None`).
#[derive(Debug)]
enum Answer {
    Joined(Result<Lease, Option<Duration>>),
    Renewed(Lease, Result<(), bool>),
    Committed(Vec<CheckpointCommit>, Result<Vec<bool>, bool>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RpcKind {
    Join,
    Renew,
    Commit,
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    Crash,
    Pause,
    Partition,
    Leave,
}

#[derive(Debug)]
enum Ev {
    /// Host `h`'s process `life` sends a join.
    Join {
        h: usize,
        life: u64,
    },
    /// The renewal timer.
    Renew {
        h: usize,
        life: u64,
    },
    /// A request reaches the coordinator (whatever became of its sender).
    Arrive {
        h: usize,
        life: u64,
        sent: Duration,
        op: Op,
        answer_delay: Option<Duration>,
    },
    /// An answer reaches the host.
    Answer {
        h: usize,
        life: u64,
        sent: Duration,
        answer: Answer,
    },
    /// The host gives up waiting for an answer.
    Timeout {
        h: usize,
        life: u64,
        kind: RpcKind,
    },
    Scan {
        h: usize,
        life: u64,
    },
    SafePoint {
        h: usize,
        life: u64,
        task: TaskId,
    },
    StepEnd {
        h: usize,
        life: u64,
        task: TaskId,
    },
    FinishRetry {
        h: usize,
        life: u64,
        task: TaskId,
        delay: Duration,
    },
    LeaveDeadline {
        h: usize,
        life: u64,
    },
    Restart {
        h: usize,
        life: u64,
    },
    Fault {
        h: usize,
        kind: FaultKind,
    },
}

impl Ev {
    /// The host process the event happens in (None: the network or the operator).
    fn process(&self) -> Option<(usize, u64)> {
        match *self {
            Ev::Join { h, life }
            | Ev::Renew { h, life }
            | Ev::Answer { h, life, .. }
            | Ev::Timeout { h, life, .. }
            | Ev::Scan { h, life }
            | Ev::SafePoint { h, life, .. }
            | Ev::StepEnd { h, life, .. }
            | Ev::FinishRetry { h, life, .. }
            | Ev::LeaveDeadline { h, life } => Some((h, life)),
            Ev::Arrive { .. } | Ev::Restart { .. } | Ev::Fault { .. } => None,
        }
    }
}

/// A task as its host runs it.
#[derive(Debug)]
struct Owned {
    /// The incarnation it was acquired under.
    incarnation: u64,
    token: Token,
    fenced: bool,
    steps: u64,
    digest: u64,
    in_step: bool,
    arrived: Option<Duration>,
    move_to: Option<String>,
    finishing: bool,
}

/// A host process (gone at a crash).
#[derive(Debug, Default)]
struct Proc {
    /// `ClusterHost::lease`: set by a renewal, cleared when the lease ends.
    lease: Option<Lease>,
    /// `keep_lease`'s own copy, which it renews.
    renew_lease: Option<Lease>,
    clock: LeaseClock,
    draining: bool,
    /// Leaving, past the deadline: every task stops at its next safe point.
    stopping: bool,
    owned: BTreeMap<TaskId, Owned>,
    orphaned_since: BTreeMap<TaskId, Duration>,
    balancing: bool,
    seq: u64,
    queue: Vec<CheckpointCommit>,
    committing: bool,
}

#[derive(Debug)]
struct HostSlot {
    name: String,
    capacity: u32,
    scan_every: Duration,
    life: u64,
    proc: Option<Proc>,
    paused_until: Duration,
    partitioned_until: Duration,
}

#[derive(Debug, Clone)]
struct StepRec {
    h: usize,
    incarnation: u64,
    token: Token,
    index: u64,
    start: Duration,
    end: Option<Duration>,
}

#[derive(Debug, Default)]
struct Track {
    need: u64,
    steps: Vec<StepRec>,
    grants: BTreeMap<Token, Duration>,
    /// The newest token seen, and its owner as then set.
    token: Token,
    owner: Option<Owner>,
    /// The checkpoint that must be current.
    current: String,
    finishes: u32,
}

/// A store image: who wrote it and what it holds.
#[derive(Debug, Clone)]
struct Image {
    steps: u64,
    digest: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    events: u64,
    steps: u64,
    crashes: u64,
    pauses: u64,
    partitions: u64,
    leaves: u64,
    joins: u64,
    takeovers: u64,
    arrivals: u64,
    moves: u64,
    commits: u64,
    /// Commits refused entry by entry: the writer's token was no longer the newest.
    fenced_commits: u64,
    /// Commits refused whole: the writer's lease had ended by the time they landed.
    late_lease_commits: u64,
    /// Repeats of a `finish` whose answer was lost (Ok, and recorded nothing new).
    finish_repeats: u64,
    /// Steps started by an older owner that overlapped a newer owner's (allowed, counted).
    overlaps: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.events += o.events;
        self.steps += o.steps;
        self.crashes += o.crashes;
        self.pauses += o.pauses;
        self.partitions += o.partitions;
        self.leaves += o.leaves;
        self.joins += o.joins;
        self.takeovers += o.takeovers;
        self.arrivals += o.arrivals;
        self.moves += o.moves;
        self.commits += o.commits;
        self.fenced_commits += o.fenced_commits;
        self.late_lease_commits += o.late_lease_commits;
        self.overlaps += o.overlaps;
        self.finish_repeats += o.finish_repeats;
    }
}

type Check = Result<(), String>;

struct Sim {
    rng: Rng,
    mutant: Mutant,
    clock: ManualClock,
    coord: MemoryCoordinator,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: HashMap<u64, Ev>,
    hosts: Vec<HostSlot>,
    tasks: BTreeMap<TaskId, Track>,
    store: BTreeMap<String, Image>,
    outcomes: BTreeMap<String, Image>,
    checkpoint_every: u64,
    /// How long a host waits for an answer: between a sixth and a third of the ttl, so in
    /// some schedules one lost renewal costs the lease and in others it does not.
    rpc_timeout: Duration,
    heal: Duration,
    trace: VecDeque<String>,
    stats: Stats,
    /// The coordinator changed since the last check.
    dirty: bool,
    /// Print every event as it happens (`COSMIC_CLUSTER_SIM_TRACE=1` with a seed).
    print_trace: bool,
}

impl Sim {
    fn new(seed: u64, mutant: Mutant) -> Sim {
        let mut rng = Rng(seed);
        let clock = ManualClock::new();
        let coord = MemoryCoordinator::with_clock(Arc::new(clock.clone()));
        let host_count = rng.range(3, 5) as usize;
        let hosts = (0..host_count)
            .map(|i| HostSlot {
                name: format!("h{i}"),
                capacity: rng.range(1, 3) as u32,
                scan_every: rng.millis(300, 800),
                life: 0,
                proc: None,
                paused_until: Duration::ZERO,
                partitioned_until: Duration::ZERO,
            })
            .collect();
        let checkpoint_every = rng.range(2, 8);
        let heal = rng.millis(8_000, 25_000);
        let rpc_timeout = rng.millis(TTL.as_millis() as u64 / 6, TTL.as_millis() as u64 / 3);
        let mut sim = Sim {
            rng,
            mutant,
            clock,
            coord,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            hosts,
            tasks: BTreeMap::new(),
            store: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            checkpoint_every,
            rpc_timeout,
            heal,
            trace: VecDeque::new(),
            stats: Stats::default(),
            dirty: true,
            print_trace: false,
        };
        sim.setup();
        sim
    }

    fn at(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn after(&mut self, delay: Duration, ev: Ev) {
        self.at(self.now + delay, ev);
    }

    fn note(&mut self, text: String) {
        if self.print_trace {
            println!("{:>9.3?} {text}", self.now);
        }
        if self.trace.len() == 60 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>9.3?} {text}", self.now));
    }

    fn record(&self, h: usize, draining: bool) -> MemberRecord {
        let runnable = self.hosts[h]
            .proc
            .as_ref()
            .map_or(0, |p| p.owned.values().filter(|o| !o.fenced).count() as u32);
        MemberRecord {
            name: self.hosts[h].name.clone(),
            addr: format!("sim:{h}"),
            public_key: PublicKey::from_bytes([h as u8; 32]),
            load: HostLoad {
                runnable,
                capacity: self.hosts[h].capacity,
                steps_per_sec: 0.0,
                cpu: 0.0,
            },
            types: vec![TYPE.into()],
            draining,
        }
    }

    /// Every host joins at zero; one or two of them spawn every task (so the balancer has
    /// work); then the faults are planned.
    fn setup(&mut self) {
        for h in 0..self.hosts.len() {
            let record = self.record(h, false);
            let lease = ready(self.coord.join(&record, TTL)).expect("the first join");
            let mut proc = Proc {
                lease: Some(lease.clone()),
                renew_lease: Some(lease),
                ..Proc::default()
            };
            proc.clock.renewed(Duration::ZERO, TTL);
            self.hosts[h].proc = Some(proc);
            let period = TTL / 3;
            self.at(period, Ev::Renew { h, life: 0 });
            let first_scan = self.rng.millis(0, 800);
            self.at(first_scan, Ev::Scan { h, life: 0 });
        }
        let spawners = self.rng.range(1, 2) as usize;
        let count = self.rng.range(5, 30);
        for i in 0..count {
            let task = TaskId::from_raw(i + 1);
            let need = self.rng.range(20, 60);
            let h = self.rng.below(spawners as u64) as usize;
            let lease = self.lease_of(h).expect("joined");
            let key = self.write_image(h, &lease, task, 0, 0);
            let first = CheckpointRef {
                key: key.clone(),
                steps: 0,
            };
            let token = ready(self.coord.create(&lease, task, TYPE, "u64", first)).expect("create");
            self.tasks.insert(
                task,
                Track {
                    need,
                    grants: BTreeMap::from([(token, Duration::ZERO)]),
                    current: key,
                    ..Track::default()
                },
            );
            self.own(
                h,
                task,
                token,
                Image {
                    steps: 0,
                    digest: 0,
                },
                None,
            );
        }
        let faults = self.rng.range(2, 10);
        for _ in 0..faults {
            let at = Duration::from_millis(self.rng.range(500, self.heal.as_millis() as u64));
            let h = self.rng.below(self.hosts.len() as u64) as usize;
            let kind = match self.rng.below(4) {
                0 => FaultKind::Crash,
                1 => FaultKind::Pause,
                2 => FaultKind::Partition,
                _ => FaultKind::Leave,
            };
            self.at(at, Ev::Fault { h, kind });
        }
    }

    fn lease_of(&self, h: usize) -> Option<Lease> {
        self.hosts[h].proc.as_ref()?.lease.clone()
    }

    fn proc(&mut self, h: usize) -> &mut Proc {
        self.hosts[h].proc.as_mut().expect("the host is up")
    }

    fn partitioned(&self, h: usize) -> bool {
        self.now < self.hosts[h].partitioned_until
    }

    /// `ClusterHost::lease()`: the lease, if it holds from the host's point of view.
    fn holding_lease(&self, h: usize) -> Option<Lease> {
        let proc = self.hosts[h].proc.as_ref()?;
        if proc.clock.holds(self.now) {
            proc.lease.clone()
        } else {
            None
        }
    }

    /// Writes an image under a key never used before.
    fn write_image(
        &mut self,
        h: usize,
        lease: &Lease,
        task: TaskId,
        steps: u64,
        digest: u64,
    ) -> String {
        let proc = self.proc(h);
        proc.seq += 1;
        let seq = proc.seq;
        let key = layout::checkpoint_key(task, &lease.host, lease.incarnation, seq, steps);
        let old = self.store.insert(key.clone(), Image { steps, digest });
        assert!(old.is_none(), "store key {key} written twice");
        key
    }

    fn own(
        &mut self,
        h: usize,
        task: TaskId,
        token: Token,
        from: Image,
        arrived: Option<Duration>,
    ) {
        let life = self.hosts[h].life;
        let incarnation = self.proc(h).lease.as_ref().map_or(0, |l| l.incarnation);
        self.proc(h).owned.insert(
            task,
            Owned {
                incarnation,
                token,
                fenced: false,
                steps: from.steps,
                digest: from.digest,
                in_step: false,
                arrived,
                move_to: None,
                finishing: false,
            },
        );
        self.after(Duration::ZERO, Ev::SafePoint { h, life, task });
    }

    /// `ClusterHost::lease_ended`.
    fn lease_ended(&mut self, h: usize) {
        let proc = self.proc(h);
        proc.clock.ended();
        proc.lease = None;
        for owned in proc.owned.values_mut() {
            owned.fenced = true;
        }
    }

    // --- the network ---

    /// Sends a request: it reaches the coordinator after a delay (unless lost or cut off),
    /// and its answer the host after another; the host gives up after `rpc_timeout`.
    fn send(&mut self, h: usize, op: Op, kind: RpcKind) {
        let life = self.hosts[h].life;
        let sent = self.now;
        let timeout = self.rpc_timeout;
        let lost_out = self.partitioned(h) || self.rng.chance(3);
        let there = self.delay(kind);
        let back = self.delay(kind);
        let lost_back = self.rng.chance(3);
        let answered = !lost_out && !lost_back && there + back <= timeout;
        if !lost_out {
            self.after(
                there,
                Ev::Arrive {
                    h,
                    life,
                    sent,
                    op,
                    answer_delay: answered.then_some(back),
                },
            );
        }
        if !answered {
            self.after(timeout, Ev::Timeout { h, life, kind });
        }
    }

    fn delay(&mut self, kind: RpcKind) -> Duration {
        let roll = self.rng.below(100);
        if roll < 85 {
            self.rng.millis(1, 30)
        } else if roll < 97 || kind != RpcKind::Commit {
            self.rng.millis(30, TTL.as_millis() as u64 / 2)
        } else {
            // A commit stuck in the network: it lands long after the host gave up on it.
            self.rng
                .millis(TTL.as_millis() as u64 / 2, 3 * TTL.as_millis() as u64)
        }
    }

    /// The coordinator handles a request that arrived.
    fn arrive(
        &mut self,
        h: usize,
        life: u64,
        sent: Duration,
        op: Op,
        answer_delay: Option<Duration>,
    ) -> Check {
        let answer = match op {
            Op::Join(record) => {
                self.dirty = true;
                Answer::Joined(match ready(self.coord.join(&record, TTL)) {
                    Ok(lease) => Ok(lease),
                    Err(CoordinatorError::NameInUse { expires_in, .. }) => Err(Some(expires_in)),
                    Err(error) => return Err(format!("join of {} failed: {error}", record.name)),
                })
            }
            Op::KeepAlive(lease, record) => {
                let result = match ready(self.coord.keep_alive(&lease, &record)) {
                    Ok(()) => Ok(()),
                    Err(CoordinatorError::LeaseEnded { .. }) => Err(true),
                    Err(error) => return Err(format!("keep_alive failed: {error}")),
                };
                Answer::Renewed(lease, result)
            }
            Op::Commit(lease, commits) => {
                let result = self.commit(&lease, &commits)?;
                Answer::Committed(commits, result)
            }
        };
        if let Some(delay) = answer_delay {
            self.after(
                delay,
                Ev::Answer {
                    h,
                    life,
                    sent,
                    answer,
                },
            );
        }
        Ok(())
    }

    /// `commit_checkpoints`, checking each verdict against who held the newest token.
    /// `Ok(verdicts)`, or `Err(true)` for `LeaseEnded`.
    fn commit(
        &mut self,
        lease: &Lease,
        commits: &[CheckpointCommit],
    ) -> Result<Result<Vec<bool>, bool>, String> {
        let me = Owner::Host {
            host: lease.host.clone(),
            incarnation: lease.incarnation,
        };
        let before: Vec<Option<TaskEntry>> = commits
            .iter()
            .map(|c| ready(self.coord.task(c.task)).expect("task"))
            .collect();
        self.dirty = true;
        self.stats.commits += commits.len() as u64;
        let verdicts = match ready(self.coord.commit_checkpoints(lease, commits)) {
            Ok(verdicts) => verdicts,
            Err(CoordinatorError::LeaseEnded { .. }) => {
                for (commit, before) in commits.iter().zip(&before) {
                    if before
                        .as_ref()
                        .is_some_and(|b| b.token == commit.token && b.owner == me)
                    {
                        return Err(format!(
                            "task {}: a commit by {} holding the newest token {} under a live lease was refused as LeaseEnded",
                            commit.task, lease.host, commit.token
                        ));
                    }
                    self.stats.late_lease_commits += 1;
                }
                self.note(format!(
                    "commit by {}#{} refused: lease ended",
                    lease.host, lease.incarnation
                ));
                return Ok(Err(true));
            }
            Err(error) => return Err(format!("commit_checkpoints failed: {error}")),
        };
        if verdicts.len() != commits.len() {
            return Err(format!(
                "{} verdicts for {} commits",
                verdicts.len(),
                commits.len()
            ));
        }
        let mut out = Vec::new();
        for ((commit, before), verdict) in commits.iter().zip(&before).zip(&verdicts) {
            let rightful = before
                .as_ref()
                .is_some_and(|b| b.token == commit.token && b.owner == me);
            match (rightful, verdict) {
                (true, Ok(())) => {
                    self.tasks.get_mut(&commit.task).expect("known").current = commit.checkpoint.key.clone();
                }
                (false, Ok(())) => {
                    return Err(format!(
                        "task {}: a late checkpoint became current: {} was written by {}#{} under token {}, but the newest token was then {:?} owned by {:?}",
                        commit.task,
                        commit.checkpoint.key,
                        lease.host,
                        lease.incarnation,
                        commit.token,
                        before.as_ref().map(|b| b.token),
                        before.as_ref().map(|b| &b.owner)
                    ))
                }
                (true, Err(fenced)) => {
                    return Err(format!(
                        "task {}: the rightful owner's commit was fenced: {fenced}",
                        commit.task
                    ))
                }
                (false, Err(_)) => {
                    self.stats.fenced_commits += 1;
                    self.note(format!(
                        "commit of task {} by {}#{} under token {} fenced",
                        commit.task, lease.host, lease.incarnation, commit.token
                    ));
                }
            }
            out.push(verdict.is_ok());
        }
        Ok(Ok(out))
    }

    // --- the run ---

    fn run(&mut self) -> Check {
        let limit = self.heal + Duration::from_secs(600);
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            let ev = self.events.remove(&seq).expect("queued event");
            if at > self.now {
                self.clock.advance(at - self.now);
                self.now = at;
            }
            if let Some((h, life)) = ev.process() {
                if self.hosts[h].life != life || self.hosts[h].proc.is_none() {
                    continue;
                }
                // A stopped process does nothing until it is continued.
                if self.now < self.hosts[h].paused_until {
                    let until = self.hosts[h].paused_until;
                    self.at(until, ev);
                    continue;
                }
            }
            self.stats.events += 1;
            self.handle(ev)?;
            self.check()?;
            if self.all_finished() {
                return self.check_end();
            }
            if self.now > limit {
                return Err(format!(
                    "not every task finished {limit:?} into the run: {}",
                    self.unfinished()
                ));
            }
        }
        Err(format!(
            "the world stopped with tasks unfinished: {}",
            self.unfinished()
        ))
    }

    fn unfinished(&self) -> String {
        let tasks = ready(self.coord.tasks()).expect("tasks");
        let owners: Vec<String> = tasks
            .iter()
            .filter(|t| !matches!(t.owner, Owner::Finished { .. }))
            .map(|t| format!("{}:{:?}@{}", t.task, t.owner, t.token))
            .collect();
        owners.join(", ")
    }

    fn all_finished(&self) -> bool {
        self.tasks.values().all(|t| t.finishes == 1)
    }

    fn handle(&mut self, ev: Ev) -> Check {
        match ev {
            Ev::Join { h, life: _ } => {
                let record = self.record(h, false);
                self.note(format!("{} sends join", self.hosts[h].name));
                self.send(h, Op::Join(record), RpcKind::Join);
            }
            Ev::Renew { h, life: _ } => {
                let Some(lease) = self.proc(h).renew_lease.clone() else {
                    return Ok(());
                };
                let draining = self.proc(h).draining;
                let record = self.record(h, draining);
                self.send(h, Op::KeepAlive(lease, record), RpcKind::Renew);
            }
            Ev::Arrive {
                h,
                life,
                sent,
                op,
                answer_delay,
            } => self.arrive(h, life, sent, op, answer_delay)?,
            Ev::Answer {
                h,
                life,
                sent,
                answer,
            } => {
                if self.partitioned(h) {
                    // Cut off on the way back: the host waits until it gives up.
                    let kind = match answer {
                        Answer::Joined(_) => RpcKind::Join,
                        Answer::Renewed(..) => RpcKind::Renew,
                        Answer::Committed(..) => RpcKind::Commit,
                    };
                    let at = (sent + self.rpc_timeout).max(self.now);
                    self.at(at, Ev::Timeout { h, life, kind });
                    return Ok(());
                }
                self.answer(h, sent, answer)?;
            }
            Ev::Timeout { h, life: _, kind } => self.timeout(h, kind),
            Ev::Scan { h, life } => {
                let every = self.hosts[h].scan_every;
                self.after(every, Ev::Scan { h, life });
                self.scan(h)?;
            }
            Ev::SafePoint { h, life: _, task } => self.safe_point(h, task)?,
            Ev::StepEnd { h, life: _, task } => self.step_end(h, task)?,
            Ev::FinishRetry {
                h,
                life: _,
                task,
                delay,
            } => self.finish(h, task, delay)?,
            Ev::LeaveDeadline { h, life: _ } => {
                self.proc(h).stopping = true;
                self.note(format!(
                    "{} leave deadline: stopping what stayed",
                    self.hosts[h].name
                ));
                let idle: Vec<TaskId> = self
                    .proc(h)
                    .owned
                    .iter()
                    .filter(|(_, o)| !o.in_step && !o.finishing)
                    .map(|(t, _)| *t)
                    .collect();
                for task in idle {
                    self.safe_point(h, task)?;
                    if self.hosts[h].proc.is_none() {
                        break;
                    }
                }
                self.try_complete_leave(h);
            }
            Ev::Restart { h, life } => {
                if self.hosts[h].life == life && self.hosts[h].proc.is_none() {
                    self.hosts[h].proc = Some(Proc::default());
                    self.note(format!("{} restarts", self.hosts[h].name));
                    self.after(Duration::ZERO, Ev::Join { h, life });
                    let first = self.rng.millis(0, 800);
                    self.after(first, Ev::Scan { h, life });
                }
            }
            Ev::Fault { h, kind } => self.fault(h, kind)?,
        }
        Ok(())
    }

    fn answer(&mut self, h: usize, sent: Duration, answer: Answer) -> Check {
        let life = self.hosts[h].life;
        let period = TTL / 3;
        match answer {
            Answer::Joined(Ok(lease)) => {
                self.stats.joins += 1;
                self.note(format!(
                    "{} joined as incarnation {}",
                    lease.host, lease.incarnation
                ));
                let counted_from = if self.mutant == Mutant::RenewFromAnswer {
                    self.now
                } else {
                    sent
                };
                let proc = self.proc(h);
                proc.lease = Some(lease.clone());
                proc.renew_lease = Some(lease.clone());
                proc.clock.renewed(counted_from, lease.ttl);
                self.after(period, Ev::Renew { h, life });
            }
            Answer::Joined(Err(expires_in)) => {
                let wait = expires_in.map_or(period, |e| e.min(TTL).max(Duration::from_millis(50)));
                self.after(wait, Ev::Join { h, life });
            }
            Answer::Renewed(lease, Ok(())) => {
                let counted_from = if self.mutant == Mutant::RenewFromAnswer {
                    self.now
                } else {
                    sent
                };
                let proc = self.proc(h);
                if proc.lease.as_ref() != Some(&lease) {
                    proc.lease = Some(lease.clone());
                }
                proc.clock.renewed(counted_from, lease.ttl);
                self.after(period, Ev::Renew { h, life });
            }
            Answer::Renewed(lease, Err(_)) => {
                self.note(format!(
                    "{}#{}: the lease ended; fencing every task, joining again",
                    lease.host, lease.incarnation
                ));
                self.lease_ended(h);
                self.proc(h).renew_lease = None;
                self.after(Duration::ZERO, Ev::Join { h, life });
            }
            Answer::Committed(commits, result) => {
                match result {
                    Ok(verdicts) => {
                        for (commit, ok) in commits.iter().zip(verdicts) {
                            if !ok {
                                if let Some(owned) = self.proc(h).owned.get_mut(&commit.task) {
                                    if owned.token == commit.token {
                                        owned.fenced = true;
                                    }
                                }
                            }
                        }
                    }
                    Err(_) => self.lease_ended(h),
                }
                self.proc(h).committing = false;
                self.send_commits(h);
            }
        }
        Ok(())
    }

    fn timeout(&mut self, h: usize, kind: RpcKind) {
        let life = self.hosts[h].life;
        let period = TTL / 3;
        match kind {
            RpcKind::Join => self.after(period, Ev::Join { h, life }),
            RpcKind::Renew => {
                if self.proc(h).renew_lease.is_none() {
                    return;
                }
                let now = self.now;
                if self.proc(h).clock.holds(now) {
                    self.after(period, Ev::Renew { h, life });
                } else {
                    self.note(format!(
                        "{}: renewal failed and the lease no longer holds",
                        self.hosts[h].name
                    ));
                    self.lease_ended(h);
                    self.proc(h).renew_lease = None;
                    self.after(Duration::ZERO, Ev::Join { h, life });
                }
            }
            RpcKind::Commit => {
                self.proc(h).committing = false;
                self.send_commits(h);
            }
        }
    }

    /// The committer: one batch in flight per host.
    fn send_commits(&mut self, h: usize) {
        let proc = self.proc(h);
        if proc.committing || proc.queue.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut proc.queue);
        match self.holding_lease(h) {
            Some(lease) => {
                self.proc(h).committing = true;
                self.send(h, Op::Commit(lease, batch), RpcKind::Commit);
            }
            None => self.lease_ended(h),
        }
    }

    // --- a task's driver ---

    /// The safe point before a task's next step: `may_go_on`, then a planned move, then the
    /// step.
    fn safe_point(&mut self, h: usize, task: TaskId) -> Check {
        let life = self.hosts[h].life;
        let mutant = self.mutant;
        let now = self.now;
        let holds = self.proc(h).clock.holds(now);
        let stopping = self.proc(h).stopping;
        let Some(owned) = self.proc(h).owned.get(&task) else {
            return Ok(());
        };
        if owned.in_step || owned.finishing {
            return Ok(());
        }
        if owned.fenced && mutant != Mutant::NoFenceCheck {
            self.note(format!("{} stops task {task}: fenced", self.hosts[h].name));
            self.proc(h).owned.remove(&task);
            self.try_complete_leave(h);
            return Ok(());
        }
        if !holds && mutant != Mutant::IgnoreLease {
            if stopping {
                self.proc(h).owned.remove(&task);
                self.try_complete_leave(h);
            } else {
                self.after(Duration::from_millis(50), Ev::SafePoint { h, life, task });
            }
            return Ok(());
        }
        if stopping {
            self.stop_for_leave(h, task)?;
            return Ok(());
        }
        if let Some(to) = self
            .proc(h)
            .owned
            .get_mut(&task)
            .and_then(|o| o.move_to.take())
        {
            if self.transfer(h, task, &to)? {
                return Ok(());
            }
        }
        self.start_step(h, task)
    }

    fn start_step(&mut self, h: usize, task: TaskId) -> Check {
        let life = self.hosts[h].life;
        let owned = self.proc(h).owned.get_mut(&task).expect("owned");
        owned.in_step = true;
        let (token, index, incarnation) = (owned.token, owned.steps, owned.incarnation);
        let name = self.hosts[h].name.clone();
        self.note(format!(
            "{name}#{incarnation} starts step {index} of task {task} (token {token})"
        ));
        // (a): only under the newest token of a live lease.
        let entry = ready(self.coord.task(task)).expect("task").expect("known");
        let me = Owner::Host {
            host: name.clone(),
            incarnation,
        };
        if entry.owner != me || entry.token != token {
            return Err(format!(
                "task {task}: {name}#{incarnation} started step {index} under token {token}, but the coordinator says {:?} holds token {}",
                entry.owner, entry.token
            ));
        }
        let record = StepRec {
            h,
            incarnation,
            token,
            index,
            start: self.now,
            end: None,
        };
        // (b) against every step still running (or ended after now).
        let track = self.tasks.get_mut(&task).expect("known");
        for other in &track.steps {
            if other.end.is_none_or(|end| end > record.start) {
                overlap_allowed(task, &track.grants, other, &record, &self.hosts)?;
                if other.token != record.token {
                    self.stats.overlaps += 1;
                }
            }
        }
        track.steps.push(record);
        self.stats.steps += 1;
        // Mostly short steps; now and then one as long as a lease.
        let duration = if self.rng.chance(3) {
            self.rng.millis(250, TTL.as_millis() as u64)
        } else {
            self.rng.millis(20, 250)
        };
        self.after(duration, Ev::StepEnd { h, life, task });
        Ok(())
    }

    fn close_step(&mut self, h: usize, task: TaskId) -> Check {
        let now = self.now;
        let track = self.tasks.get_mut(&task).expect("known");
        let i = track
            .steps
            .iter()
            .rposition(|s| s.h == h && s.end.is_none())
            .expect("an open step");
        track.steps[i].end = Some(now);
        let closed = track.steps[i].clone();
        for other in &track.steps {
            if other.start >= closed.start && other.start < now && other.token != closed.token {
                overlap_allowed(task, &track.grants, &closed, other, &self.hosts)?;
            }
        }
        Ok(())
    }

    fn step_end(&mut self, h: usize, task: TaskId) -> Check {
        self.close_step(h, task)?;
        let owned = self.proc(h).owned.get_mut(&task).expect("owned");
        owned.in_step = false;
        owned.digest = mix(owned.digest, owned.steps);
        owned.steps += 1;
        let (steps, digest) = (owned.steps, owned.digest);
        let need = self.tasks[&task].need;
        if steps == need {
            self.proc(h).owned.get_mut(&task).expect("owned").finishing = true;
            return self.finish(h, task, Duration::from_millis(10));
        }
        if steps % self.checkpoint_every == 0 {
            // `persist`: needs the lease; the image first, then the commit through the batch.
            if let Some(lease) = self.holding_lease(h) {
                let key = self.write_image(h, &lease, task, steps, digest);
                let token = self.proc(h).owned[&task].token;
                self.proc(h).queue.push(CheckpointCommit {
                    task,
                    token,
                    checkpoint: CheckpointRef { key, steps },
                });
                self.send_commits(h);
            }
        }
        self.safe_point(h, task)
    }

    /// `ClusterHost::finish`: the outcome, then the coordinator's `finish`, retried while it
    /// cannot be reached.
    fn finish(&mut self, h: usize, task: TaskId, delay: Duration) -> Check {
        let life = self.hosts[h].life;
        let Some(lease) = self.holding_lease(h) else {
            // The end is not recorded here: the task is taken over (or picked up again here)
            // from its last checkpoint.
            self.proc(h).owned.remove(&task);
            self.try_complete_leave(h);
            return Ok(());
        };
        let (token, steps, digest) = {
            let o = &self.proc(h).owned[&task];
            (o.token, o.steps, o.digest)
        };
        let key = layout::outcome_key(task, &lease.host, lease.incarnation);
        self.outcomes.insert(key.clone(), Image { steps, digest });
        if self.partitioned(h) {
            let next = (delay * 2).min(Duration::from_secs(2));
            self.after(
                delay,
                Ev::FinishRetry {
                    h,
                    life,
                    task,
                    delay: next,
                },
            );
            return Ok(());
        }
        self.dirty = true;
        let before = ready(self.coord.task(task)).expect("task").expect("known");
        match ready(self.coord.finish(&lease, task, token, &key)) {
            Ok(()) => {
                if let Owner::Finished { outcome } = &before.owner {
                    // A repeat after a lost answer: Ok only for the very call that succeeded.
                    if *outcome != key {
                        return Err(format!(
                            "task {task}: finish by {}#{} with outcome {key} succeeded, but the task had already finished with {outcome}",
                            lease.host, lease.incarnation
                        ));
                    }
                    self.stats.finish_repeats += 1;
                } else {
                    let track = self.tasks.get_mut(&task).expect("known");
                    track.finishes += 1;
                    let finishes = track.finishes;
                    self.note(format!(
                        "{}#{} finished task {task} under token {token}",
                        lease.host, lease.incarnation
                    ));
                    if finishes > 1 {
                        return Err(format!("task {task}: finish succeeded {finishes} times"));
                    }
                    if self.rng.chance(5) {
                        // The answer is lost: the host tries the same call again.
                        let next = (delay * 2).min(Duration::from_secs(2));
                        self.after(
                            delay,
                            Ev::FinishRetry {
                                h,
                                life,
                                task,
                                delay: next,
                            },
                        );
                        return Ok(());
                    }
                }
                self.proc(h).owned.remove(&task);
            }
            Err(CoordinatorError::Fenced(fenced)) => {
                self.note(format!(
                    "{} could not finish task {task}: {fenced}",
                    lease.host
                ));
                self.proc(h).owned.remove(&task);
            }
            Err(CoordinatorError::LeaseEnded { .. }) => {
                self.lease_ended(h);
                self.proc(h).owned.remove(&task);
            }
            Err(error) => return Err(format!("finish failed: {error}")),
        }
        self.try_complete_leave(h);
        Ok(())
    }

    /// A planned move at the safe point (`ClusterHost::transfer`). True if the task left.
    fn transfer(&mut self, h: usize, task: TaskId, to: &str) -> Result<bool, String> {
        let Some(lease) = self.holding_lease(h) else {
            return Ok(false);
        };
        let (token, steps, digest) = {
            let o = &self.proc(h).owned[&task];
            (o.token, o.steps, o.digest)
        };
        let key = self.write_image(h, &lease, task, steps, digest);
        if self.partitioned(h) {
            // Unavailable, and so is the read that would tell whether it happened: lost.
            self.proc(h).owned.remove(&task);
            return Ok(true);
        }
        self.dirty = true;
        let checkpoint = CheckpointRef {
            key: key.clone(),
            steps,
        };
        match ready(self.coord.transfer(&lease, task, token, to, checkpoint)) {
            Ok(new) => {
                self.stats.moves += 1;
                self.note(format!(
                    "{} moved task {task} to {to} at step {steps}: token {new}",
                    lease.host
                ));
                let track = self.tasks.get_mut(&task).expect("known");
                track.grants.insert(new, self.now);
                track.current = key;
                self.proc(h).owned.remove(&task);
                Ok(true)
            }
            Err(CoordinatorError::Fenced(_)) => {
                self.proc(h).owned.remove(&task);
                Ok(true)
            }
            Err(CoordinatorError::NoSuchMember { .. } | CoordinatorError::LeaseEnded { .. }) => {
                Ok(false)
            }
            Err(error) => Err(format!("transfer failed: {error}")),
        }
    }

    /// Leaving, past the deadline: a last checkpoint made current, and the task stops here.
    fn stop_for_leave(&mut self, h: usize, task: TaskId) -> Check {
        if let Some(lease) = self.holding_lease(h) {
            let (token, steps, digest) = {
                let o = &self.proc(h).owned[&task];
                (o.token, o.steps, o.digest)
            };
            let key = self.write_image(h, &lease, task, steps, digest);
            if !self.partitioned(h) {
                let commit = CheckpointCommit {
                    task,
                    token,
                    checkpoint: CheckpointRef { key, steps },
                };
                // Fenced or refused: it stops here either way.
                let _verdict = self.commit(&lease, &[commit])?;
            }
        }
        self.proc(h).owned.remove(&task);
        self.try_complete_leave(h);
        Ok(())
    }

    fn try_complete_leave(&mut self, h: usize) {
        let Some(proc) = self.hosts[h].proc.as_mut() else {
            return;
        };
        if !proc.stopping || !proc.owned.is_empty() {
            return;
        }
        // `give_up_lease`, then `leave`.
        proc.clock.ended();
        let lease = proc.lease.take().or(proc.renew_lease.take());
        if let Some(lease) = lease {
            if !self.partitioned(h) {
                self.dirty = true;
                let _ = ready(self.coord.leave(&lease));
            }
        }
        self.note(format!("{} left", self.hosts[h].name));
        self.stats.leaves += 1;
        self.down(h);
        let back = self
            .rng
            .millis(TTL.as_millis() as u64, 3 * TTL.as_millis() as u64);
        let life = self.hosts[h].life;
        self.after(back, Ev::Restart { h, life });
    }

    /// The process is gone: whatever step it was in ends now.
    fn down(&mut self, h: usize) {
        let now = self.now;
        for track in self.tasks.values_mut() {
            for step in &mut track.steps {
                if step.h == h && step.end.is_none() {
                    step.end = Some(now);
                }
            }
        }
        self.hosts[h].proc = None;
        self.hosts[h].life += 1;
        self.hosts[h].paused_until = now;
    }

    // --- the scan ---

    fn scan(&mut self, h: usize) -> Check {
        // A host that is leaving takes nothing new and does not scan (`scan::run`).
        let now = self.now;
        if self.proc(h).draining || !self.proc(h).clock.holds(now) || self.partitioned(h) {
            return Ok(());
        }
        let Some(lease) = self.holding_lease(h) else {
            return Ok(());
        };
        let members = ready(self.coord.members()).expect("members");
        let tasks = ready(self.coord.tasks()).expect("tasks");
        let name = self.hosts[h].name.clone();
        let grace = self.hosts[h].scan_every * 3;
        let proc = self.hosts[h].proc.as_mut().expect("up");
        let running: HashMap<TaskId, Running> = proc
            .owned
            .iter()
            .map(|(t, o)| {
                (
                    *t,
                    Running {
                        token: o.token,
                        fenced: o.fenced,
                    },
                )
            })
            .collect();
        let excluded = HashMap::new();
        let draining = proc.draining;
        let input = ScanInput {
            me: &name,
            incarnation: lease.incarnation,
            draining,
            running: &running,
            excluded: &excluded,
            grace,
            now: self.now,
        };
        let mut since = std::mem::take(&mut proc.orphaned_since);
        let actions = decide(&input, &members, &tasks, &mut since);
        self.proc(h).orphaned_since = since;
        for action in actions {
            match action {
                Action::Arrive(entry) => {
                    let image = self.current_image(&entry)?;
                    self.stats.arrivals += 1;
                    self.note(format!(
                        "{name}#{} picks up task {} at step {} (token {})",
                        lease.incarnation, entry.task, image.steps, entry.token
                    ));
                    self.own(h, entry.task, entry.token, image, Some(self.now));
                }
                Action::Fence(task) => {
                    if self.mutant != Mutant::NoFenceCheck {
                        self.note(format!("{name}: scan fences task {task}"));
                        if let Some(owned) = self.proc(h).owned.get_mut(&task) {
                            owned.fenced = true;
                        }
                    }
                }
                Action::TakeOver(entry) => {
                    self.current_image(&entry)?;
                    self.dirty = true;
                    match ready(self.coord.take_over(&lease, entry.task, entry.token)) {
                        Ok((token, current)) => {
                            let image = self.store.get(&current.key).cloned().ok_or_else(|| {
                                format!(
                                    "task {}: the current checkpoint {} is not in the store",
                                    entry.task, current.key
                                )
                            })?;
                            self.stats.takeovers += 1;
                            self.note(format!(
                                "{name}#{} took over task {} from {:?} at step {} (token {} -> {token})",
                                lease.incarnation, entry.task, entry.owner, image.steps, entry.token
                            ));
                            self.tasks
                                .get_mut(&entry.task)
                                .expect("known")
                                .grants
                                .insert(token, self.now);
                            self.own(h, entry.task, token, image, Some(self.now));
                        }
                        Err(CoordinatorError::NotOrphaned { .. } | CoordinatorError::Fenced(_)) => {
                        }
                        Err(error) => return Err(format!("take_over failed: {error}")),
                    }
                }
            }
        }
        if !draining {
            self.balance(h, &name, members);
        }
        Ok(())
    }

    /// The image of a task's current checkpoint, which must be in the store and agree.
    fn current_image(&self, entry: &TaskEntry) -> Result<Image, String> {
        let image = self.store.get(&entry.current.key).cloned().ok_or_else(|| {
            format!(
                "task {}: the current checkpoint {} is not in the store",
                entry.task, entry.current.key
            )
        })?;
        if image.steps != entry.current.steps {
            return Err(format!(
                "task {}: the current checkpoint claims {} steps, its image holds {}",
                entry.task, entry.current.steps, image.steps
            ));
        }
        Ok(image)
    }

    fn balance(&mut self, h: usize, name: &str, mut members: Vec<cosmic_runtime::cluster::Member>) {
        let now = self.now;
        let capacity = self.hosts[h].capacity;
        let proc = self.hosts[h].proc.as_mut().expect("up");
        let runnable = proc.owned.values().filter(|o| !o.fenced).count() as u32;
        if let Some(me) = members.iter_mut().find(|m| m.record.name == name) {
            me.record.load.runnable = runnable;
            me.record.load.capacity = capacity;
        }
        let mine: Vec<Movable> = proc
            .owned
            .iter()
            .filter(|(_, o)| !o.fenced && !o.finishing && o.move_to.is_none())
            .map(|(t, o)| Movable {
                task: *t,
                type_name: TYPE.into(),
                pinned: false,
                since_arrival: o.arrived.map(|at| now - at),
            })
            .collect();
        let in_flight = proc.owned.values().filter(|o| o.move_to.is_some()).count();
        let moves = plan_moves(
            name,
            &members,
            &mine,
            in_flight,
            &mut proc.balancing,
            &balance_config(),
        );
        for planned in moves {
            if let Some(owned) = proc.owned.get_mut(&planned.task) {
                owned.move_to = Some(planned.to.clone());
            }
        }
    }

    // --- faults ---

    fn fault(&mut self, h: usize, kind: FaultKind) -> Check {
        let name = self.hosts[h].name.clone();
        let paused = self.now < self.hosts[h].paused_until;
        if self.hosts[h].proc.is_none() || (paused && !matches!(kind, FaultKind::Crash)) {
            return Ok(());
        }
        match kind {
            FaultKind::Crash => {
                self.stats.crashes += 1;
                self.note(format!("{name} CRASHES"));
                self.down(h);
                let back = self.rng.millis(100, 2 * TTL.as_millis() as u64);
                let life = self.hosts[h].life;
                self.after(back, Ev::Restart { h, life });
            }
            FaultKind::Pause => {
                let until = self.now
                    + self
                        .rng
                        .millis(TTL.as_millis() as u64 / 2, 3 * TTL.as_millis() as u64);
                self.stats.pauses += 1;
                self.note(format!("{name} PAUSED until {until:?}"));
                self.hosts[h].paused_until = until;
            }
            FaultKind::Partition => {
                let until = self.now + self.rng.millis(300, 3 * TTL.as_millis() as u64);
                self.stats.partitions += 1;
                self.note(format!("{name} CUT OFF until {until:?}"));
                self.hosts[h].partitioned_until = until;
            }
            FaultKind::Leave => {
                if self.proc(h).draining || self.holding_lease(h).is_none() {
                    return Ok(());
                }
                self.note(format!("{name} LEAVES"));
                self.proc(h).draining = true;
                let life = self.hosts[h].life;
                // Announce it, then spread its tasks over the others by load.
                let lease = self.holding_lease(h).expect("checked");
                let mut members = Vec::new();
                if !self.partitioned(h) {
                    let record = self.record(h, true);
                    self.dirty = true;
                    let _ = ready(self.coord.keep_alive(&lease, &record));
                    members = ready(self.coord.members())
                        .expect("members")
                        .into_iter()
                        .filter(|m| m.record.name != name && !m.record.draining)
                        .collect();
                }
                let proc = self.proc(h);
                let tasks: Vec<Orphan> = proc
                    .owned
                    .iter()
                    .filter(|(_, o)| !o.fenced)
                    .map(|(t, _)| Orphan {
                        task: *t,
                        type_name: TYPE.into(),
                    })
                    .collect();
                for (task, to) in assign_orphans(&members, &tasks, &HashMap::new()) {
                    if let Some(owned) = proc.owned.get_mut(&task) {
                        owned.move_to = Some(to);
                    }
                }
                let deadline = self.rng.millis(300, 2_000);
                self.after(deadline, Ev::LeaveDeadline { h, life });
            }
        }
        Ok(())
    }

    // --- checks ---

    /// After every event: tokens only grow (strictly with every new owner), the current
    /// checkpoint is the one the rightful writer last made current.
    fn check(&mut self) -> Check {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        for entry in ready(self.coord.tasks()).expect("tasks") {
            let track = self
                .tasks
                .get_mut(&entry.task)
                .ok_or(format!("unknown task {}", entry.task))?;
            if entry.token < track.token {
                return Err(format!(
                    "task {}: its token went back from {} to {}",
                    entry.task, track.token, entry.token
                ));
            }
            let new_owner = !matches!(entry.owner, Owner::Orphaned)
                && track.owner.as_ref() != Some(&entry.owner);
            if new_owner && track.owner.is_some() && entry.token <= track.token {
                return Err(format!(
                    "task {}: its owner changed from {:?} to {:?} but its token stayed {}",
                    entry.task, track.owner, entry.owner, entry.token
                ));
            }
            if !matches!(entry.owner, Owner::Orphaned) {
                track.owner = Some(entry.owner.clone());
            }
            track.token = entry.token;
            if entry.current.key != track.current {
                return Err(format!(
                    "task {}: the current checkpoint is {} but the last one its rightful owner made current is {}",
                    entry.task, entry.current.key, track.current
                ));
            }
            if matches!(entry.owner, Owner::Finished { .. }) && track.finishes != 1 {
                return Err(format!(
                    "task {}: finished, but finish succeeded {} times",
                    entry.task, track.finishes
                ));
            }
        }
        Ok(())
    }

    /// Once every task finished: each outcome holds exactly its steps, in order.
    fn check_end(&mut self) -> Check {
        self.dirty = true;
        self.check()?;
        for entry in ready(self.coord.tasks()).expect("tasks") {
            let Owner::Finished { outcome } = &entry.owner else {
                return Err(format!(
                    "task {} did not finish: {:?}",
                    entry.task, entry.owner
                ));
            };
            let need = self.tasks[&entry.task].need;
            let image = self.outcomes.get(outcome).ok_or(format!(
                "task {}: its outcome {outcome} is not in the store",
                entry.task
            ))?;
            if image.steps != need || image.digest != expected_digest(need) {
                return Err(format!(
                    "task {}: its outcome holds {} steps (digest {:x}); it needs exactly {need} (digest {:x})",
                    entry.task,
                    image.steps,
                    image.digest,
                    expected_digest(need)
                ));
            }
        }
        Ok(())
    }
}

/// Promise 1(b): two overlapping steps of different owners are allowed only if the older
/// owner's started before the newer owner was granted the task.
fn overlap_allowed(
    task: TaskId,
    grants: &BTreeMap<Token, Duration>,
    a: &StepRec,
    b: &StepRec,
    hosts: &[HostSlot],
) -> Check {
    if a.token == b.token {
        return Ok(());
    }
    let (old, new) = if a.token < b.token { (a, b) } else { (b, a) };
    let granted = grants.get(&new.token).copied().unwrap_or(Duration::ZERO);
    if old.start < granted {
        return Ok(());
    }
    Err(format!(
        "task {task}: two hosts ran it at once beyond the promise: {}#{} ran step {} [{:?}, {:?}) under token {}, \
         started after {}#{} was granted token {} at {granted:?} (its step {} [{:?}, {:?}))",
        hosts[old.h].name,
        old.incarnation,
        old.index,
        old.start,
        old.end,
        old.token,
        hosts[new.h].name,
        new.incarnation,
        new.token,
        new.index,
        new.start,
        new.end
    ))
}

fn run_one(seed: u64, mutant: Mutant) -> Result<Stats, (String, Vec<String>)> {
    run_traced(seed, mutant, false)
}

fn run_traced(
    seed: u64,
    mutant: Mutant,
    print_trace: bool,
) -> Result<Stats, (String, Vec<String>)> {
    let mut sim = Sim::new(seed, mutant);
    sim.print_trace = print_trace;
    match sim.run() {
        Ok(()) => Ok(sim.stats),
        Err(error) => Err((
            format!(
                "{error} ({} hosts, {} tasks, checkpoint every {} steps, heal at {:?}, at {:?})",
                sim.hosts.len(),
                sim.tasks.len(),
                sim.checkpoint_every,
                sim.heal,
                sim.now
            ),
            sim.trace.iter().cloned().collect(),
        )),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.replace('_', "").parse().ok(),
    }
}

fn mutant_from_env() -> Mutant {
    let Ok(name) = std::env::var("COSMIC_CLUSTER_SIM_MUTANT") else {
        return Mutant::None;
    };
    let (_, mutant) = Mutant::ALL
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| {
            panic!(
                "no mutant `{name}`; there are {:?}",
                Mutant::ALL.map(|(n, _)| n)
            )
        });
    println!("cluster simulation: mutant={name}");
    mutant
}

fn base_seed() -> u64 {
    env_u64("COSMIC_CLUSTER_SIM_BASE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    })
}

const REPLAY: &str =
    "cargo test --release -p cosmic-tests --test cluster_simulation -- --nocapture failover";

#[test]
fn failover_keeps_its_promises_under_every_schedule() {
    let mutant = mutant_from_env();
    if let Some(seed) = env_u64("COSMIC_CLUSTER_SIM_SEED") {
        let print = std::env::var_os("COSMIC_CLUSTER_SIM_TRACE").is_some();
        match run_traced(seed, mutant, print) {
            Ok(stats) => println!("cluster simulation: seed={seed} passed ({stats:?})"),
            Err((error, trace)) => {
                for line in trace {
                    println!("{line}");
                }
                panic!("seed {seed}: {error}");
            }
        }
        return;
    }
    let default = if cfg!(debug_assertions) { 100 } else { 2_000 };
    let schedules = env_u64("COSMIC_CLUSTER_SIM_SCHEDULES").unwrap_or(default);
    let base = base_seed();
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for i in 0..schedules {
        let seed = base.wrapping_add(i);
        match run_one(seed, mutant) {
            Ok(stats) => total.add(&stats),
            Err((error, trace)) => {
                println!("the last {} events of seed {seed}:", trace.len());
                for line in trace {
                    println!("{line}");
                }
                panic!(
                    "schedule {i} of {schedules} failed: {error}\nreplay it with:\n  {}COSMIC_CLUSTER_SIM_SEED={seed} {REPLAY}",
                    std::env::var("COSMIC_CLUSTER_SIM_MUTANT")
                        .map(|name| format!("COSMIC_CLUSTER_SIM_MUTANT={name} "))
                        .unwrap_or_default()
                );
            }
        }
    }
    println!(
        "cluster simulation: schedules={schedules} base_seed={base} events={} steps={} crashes={} pauses={} partitions={} leaves={} joins={} takeovers={} arrivals={} moves={} commits={} fenced_commits={} late_commits_refused_for_lease={} overlapping_steps={} finish_repeats={} in {:.1?}",
        total.events,
        total.steps,
        total.crashes,
        total.pauses,
        total.partitions,
        total.leaves,
        total.joins,
        total.takeovers,
        total.arrivals,
        total.moves,
        total.commits,
        total.fenced_commits,
        total.late_lease_commits,
        total.overlaps,
        total.finish_repeats,
        started.elapsed()
    );
    // The run must have exercised what it claims to check.
    if schedules >= 50 {
        for (what, count) in [
            ("crashes", total.crashes),
            ("pauses", total.pauses),
            ("partitions", total.partitions),
            ("leaves", total.leaves),
            ("takeovers", total.takeovers),
            ("moves", total.moves),
            ("fenced commits", total.fenced_commits),
            (
                "late commits refused for an ended lease",
                total.late_lease_commits,
            ),
            ("overlapping steps", total.overlaps),
            ("repeated finishes", total.finish_repeats),
        ] {
            assert!(
                count > 0,
                "no {what} in {schedules} schedules: the run proves little"
            );
        }
    }
}

/// Each broken piece of the host model fails a check within a few hundred schedules.
#[test]
fn mutants_are_caught() {
    let schedules = env_u64("COSMIC_CLUSTER_SIM_MUTANT_SCHEDULES").unwrap_or(300);
    let base = base_seed();
    for (name, mutant) in Mutant::ALL {
        let started = std::time::Instant::now();
        let caught = (0..schedules).find_map(|i| {
            let seed = base.wrapping_add(i);
            run_one(seed, mutant)
                .err()
                .map(|(error, _)| (i, seed, error))
        });
        match caught {
            Some((i, seed, error)) => println!(
                "mutant {name}: caught at schedule {} (seed {seed}) in {:.1?}: {error}",
                i + 1,
                started.elapsed()
            ),
            None => panic!("mutant {name} survived {schedules} schedules from base seed {base}"),
        }
    }
}
