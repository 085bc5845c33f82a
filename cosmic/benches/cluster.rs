//! The cluster against its physical floors: failover, balancing, leaving, and the
//! coordinator's rate of ownership changes.
//!
//! `cargo bench -p cosmic --bench cluster [-- --reps N --only SUBSTRING]`
//!
//! Hosts are real processes: this binary re-executes itself as `cluster host NAME DIR ...`
//! (as the quickstart does), each host a cosmic runtime on a 2-worker tokio runtime, a member
//! of a cluster through the embedded [`FolderCoordinator`] in a shared folder, with its
//! checkpoints in a shared `FileStore`, all under a folder of the target directory
//! (`CARGO_TARGET_TMPDIR`, a real disk: fsync is not free). The orchestrator (this process)
//! trusts the hosts' keys in the coordinator as an operator would, talks to each host over
//! its stdin and stdout, and watches the coordinator itself (owner and token of every task).
//! A host prints `STEP <task> <unix ms>` the first time a task steps in that process and
//! `DONE <task> <unix ms>` when a task ends, so "runs again" means the new owner holds a new
//! token *and* the task stepped there. Times across processes are wall-clock milliseconds
//! (one machine, one clock). Each case prints one line in this format,
//!
//! `<bench>/<case>: bytes=<n> median=<seconds>s baseline=<name> baseline_median=<seconds>s ratio=<x>`
//!
//! with extra `key=value` pairs, and a `detail:` line with the spread of each side.
//!
//! - `cluster/failover`: three hosts, the balancer off; alpha runs 20 small tasks (a 10 ms
//!   nap per step, a checkpoint every 500 ms) and is SIGKILLed at a different point of its
//!   renewal period each repetition (`--reps`, 5). Timed from the kill until every task has
//!   a new owner with a newer token in the coordinator and has stepped there. Baseline: the
//!   lease's time to live (2 s), the physical floor: a dead host says nothing, so nobody can
//!   know it is dead before its lease ends, and that is up to a TTL after the kill (the lease
//!   was renewed at most a third of a TTL before it). Scan interval 200 ms (a tenth of the
//!   lease, as the quickstart): the scan adds up to one interval after the lease ends, and a
//!   host reads the coordinator's 20 tasks at each scan, which is cheap at this size. The
//!   extra pairs split the time: `detect` (kill to the first task seen orphaned or taken:
//!   lease) and `takeover` (from there until all run: scan, read, decode, compare-and-set,
//!   resume).
//! - `cluster/balance`: four hosts of equal capacity (`CAPACITY` slots each, enforced by a
//!   process-wide semaphore of that many permits that a step holds while it naps one tick,
//!   10 ms: the work is time, not CPU, so 2 cores do not limit it), 400 tasks all spawned on
//!   alpha, each of 100 to 300 ticks of work (lengths from a fixed seed). Timed from the
//!   spawn of the first task to the end of the last. Baseline: the ideal makespan, total work
//!   / total capacity (ticks x tick), the floor of any placement. Also: the moves made (from
//!   the hosts' `cluster_events`), the fewest that could spread 400 tasks evenly (300), and
//!   the moves undone within the cooldown (a task moved back to a host it left less than
//!   `BalanceConfig::cooldown` before; want 0). `BalanceConfig::default()`. One run.
//!   A 10 ms nap of tokio takes longer than 10 ms (its timer rounds up to the millisecond, and
//!   the wake-up waits for a thread of a loaded machine): the hosts time every nap, and
//!   `ratio_at_measured_tick` is the makespan against the ideal at the tick they measured,
//!   which leaves the balancer's share of the loss. The detail line says when the hosts ended
//!   their last tasks (how even the end was), how long the spawns and the spreading took, and
//!   the tasks fenced (a source's scan seeing a move it had just committed, before the driver
//!   let the task go: harmless).
//! - `cluster/leave`: three hosts, the balancer off; alpha runs 20 small tasks. First alpha is
//!   asked through the API to drain them to beta (`Runtime::migrate_to("beta")`), timed from
//!   the request until all 20 are beta's in the coordinator and stepped there: the baseline,
//!   the same moves without a departure (the floor of moving these tasks). Then beta gets
//!   a SIGTERM (`Runtime::leave`: spreads the 20 over alpha and gamma, ends its lease), timed
//!   the same way until all run on alpha or gamma. `--reps` rounds (3), each on fresh hosts.
//! - `cluster/ownership`: the coordinator alone, in this process: ownership changes per
//!   second. `transfer`: one task moved back and forth between two leases, one change at a
//!   time; `commit`: `commit_checkpoints` of batches of 100 tasks. Baseline: the smallest
//!   durable atomic change of a folder on this disk, the floor of any change the folder
//!   coordinator makes: write a new small file, fsync it, rename it into place, fsync the
//!   folder (one at a time for `transfer`; 100 spread over 32 threads, as the coordinator
//!   spreads a batch, for `commit`). The rates are printed as `per_s`.
//!
//! - `cluster/failover-etcd`, `cluster/ownership-*-etcd` (with `--features etcd`): the same on
//!   `EtcdCoordinator`, against one etcd member the bench starts on loopback (`/usr/bin/etcd`
//!   or `COSMIC_ETCD_BIN`), its data on the same disk. The ownership baselines stay the
//!   folder's durable rename: etcd too must make each change durable (its log is fsynced)
//!   before it answers, so a durable write on this disk is the floor of both.
//!
//! The machine has 2 cores shared with whatever else runs: absolute times drift, and the
//! hosts (up to four processes) share those cores with this one.

#[path = "common/mod.rs"]
mod common;

use common::{median, spread};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cosmic::cluster::{
    BalanceConfig, CheckpointCommit, CheckpointRef, ClusterConfig, ClusterEventKind, Coordinator,
    FolderCoordinator, HostLoad, MemberRecord, Owner, TaskEntry, Token,
};
use cosmic::prelude::*;
use cosmic::{ClusterKey, FileStore, HostKey, PublicKey, TaskId};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;

const KEY: &[u8] = b"cluster bench cluster key, at least 32 bytes long";
/// The lease of every host.
const LEASE: Duration = Duration::from_secs(2);
/// How often hosts read the coordinator (see the module docs).
const SCAN: Duration = Duration::from_millis(200);
/// Small tasks in `failover` and `leave`.
const SMALL_TASKS: usize = 20;
/// The nap of a small task's step.
const NAP: Duration = Duration::from_millis(10);
/// `balance`: hosts, slots per host, tasks, tick, lengths in ticks, seed.
const BALANCE_HOSTS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const CAPACITY: u32 = 8;
const BALANCE_TASKS: usize = 400;
const TICK: Duration = Duration::from_millis(10);
const MIN_TICKS: u64 = 100;
const MAX_TICKS: u64 = 300;
const SEED: u64 = 0x5EED_C0FF_EE15_600D;
/// How long a watch waits before it gives up (the case then reports what it saw).
const GIVE_UP: Duration = Duration::from_secs(30);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---- the tasks (run in the host processes) ----------------------------------------------

/// Tasks that stepped in this process, so that each is reported once.
static STEPPED: Mutex<Option<HashSet<TaskId>>> = Mutex::new(None);
/// The slots of this host: a step holds one while it naps.
static SLOTS: OnceLock<Semaphore> = OnceLock::new();
/// Ticks napped on this host, and their total length in microseconds (a 10 ms nap of tokio
/// takes a little longer: its timer rounds up to the millisecond, and a wake-up waits for a
/// thread).
static TICKS: AtomicU64 = AtomicU64::new(0);
static TICKS_US: AtomicU64 = AtomicU64::new(0);

fn first_step(task: TaskId) {
    let mut stepped = STEPPED.lock().unwrap_or_else(|p| p.into_inner());
    if stepped.get_or_insert_with(HashSet::new).insert(task) {
        println!("STEP {task} {}", unix_ms());
    }
}

/// A small task that naps in each step and never ends.
#[derive(Migratable, Debug, Clone, PartialEq)]
struct Spinner {
    steps: u64,
    data: Vec<u8>,
}

#[async_trait]
impl Task for Spinner {
    type Output = u64;

    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        first_step(cx.task_id());
        tokio::time::sleep(NAP).await;
        self.steps += 1;
        Ok(Step::Continue)
    }
}

/// `left` ticks of work, each a step that holds one of the host's slots for a tick.
#[derive(Migratable, Debug, Clone, PartialEq)]
struct Work {
    left: u64,
    done: u64,
}

#[async_trait]
impl Task for Work {
    type Output = u64;

    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        first_step(cx.task_id());
        let slots = SLOTS.get().expect("the host set its slots");
        {
            let _slot = slots.acquire().await?;
            let napped = Instant::now();
            tokio::time::sleep(TICK).await;
            TICKS.fetch_add(1, Ordering::Relaxed);
            TICKS_US.fetch_add(napped.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        self.left -= 1;
        self.done += 1;
        if self.left == 0 {
            println!("DONE {} {}", cx.task_id(), unix_ms());
            return Ok(Step::Done(self.done));
        }
        Ok(Step::Continue)
    }
}

// ---- a host process ---------------------------------------------------------------------

/// A host's settings, passed on its command line.
#[derive(Debug, Clone)]
struct HostSettings {
    capacity: u32,
    balance: bool,
    /// A checkpoint every this many ms (0: only on demand).
    checkpoint_ms: u64,
    /// Which coordinator: [`FOLDER`] or an etcd endpoint.
    coordinator: String,
}

impl HostSettings {
    fn args(&self) -> Vec<String> {
        vec![
            self.capacity.to_string(),
            u8::from(self.balance).to_string(),
            self.checkpoint_ms.to_string(),
            self.coordinator.clone(),
        ]
    }

    fn parse(args: &[String]) -> Option<HostSettings> {
        Some(HostSettings {
            capacity: args.first()?.parse().ok()?,
            balance: args.get(1)? == "1",
            checkpoint_ms: args.get(2)?.parse().ok()?,
            coordinator: args.get(3)?.clone(),
        })
    }
}

/// `cluster host NAME DIR CAPACITY BALANCE CHECKPOINT_MS COORDINATOR`: one host, until SIGTERM (leaves
/// the cluster, exits 0), SIGKILL or the end of its stdin.
///
/// Commands on stdin: `spin N` (spawn N `Spinner`s), `work LEN...` (spawn a `Work` of each
/// length), `drain HOST` (`Runtime::migrate_to`), `sync` (print pending events). Lines on
/// stdout: `READY`, `SPAWNED <task>`, `FIRST-SPAWN <unix ms>`, `SPAWN-DONE <n>`,
/// `DRAINED <moved> <stayed> <ms>`, `STEP`, `DONE` (see the module docs),
/// `EVENT <unix ms> <task> <what> <host>` from `Runtime::cluster_events`, `SYNCED`,
/// `LEFT <moved> <left behind> <ms>`.
fn run_host(args: &[String]) {
    let [name, dir, settings @ ..] = args else {
        panic!("usage: cluster host NAME DIR CAPACITY BALANCE CHECKPOINT_MS COORDINATOR");
    };
    let settings = HostSettings::parse(settings).expect("host settings");
    let dir = PathBuf::from(dir);
    SLOTS.get_or_init(|| Semaphore::new(settings.capacity as usize));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("watch SIGTERM");
        let host_key = HostKey::from_file(dir.join("keys").join(format!("{name}.key")))
            .expect("host key");
        let coordinator = open_coordinator(&settings.coordinator, &dir).await;
        let store = FileStore::open_shared(dir.join("store")).expect("store");
        let balance = BalanceConfig {
            enabled: settings.balance,
            ..BalanceConfig::default()
        };
        let policy = match settings.checkpoint_ms {
            0 => Policy::OnDemand,
            ms => Policy::every(Duration::from_millis(ms)),
        };
        let started_unix = unix_ms();
        let rt = Runtime::builder()
            .host(name.as_str())
            .store(store)
            .checkpoint(policy)
            .listen("127.0.0.1:0")
            .cluster_key(ClusterKey::from_bytes(KEY).expect("cluster key"))
            .host_key(host_key)
            .register::<Spinner>()
            .register::<Work>()
            .cluster(
                ClusterConfig::shared(coordinator)
                    .lease_ttl(LEASE)
                    .scan_every(SCAN)
                    .capacity(settings.capacity)
                    .balance(balance),
            )
            .build()
            .await
            .expect("start the host");
        // Events are stamped since the runtime started: close enough to `started_unix`
        // (the build takes a few ms) for moves seconds apart.
        let mut printed = 0;
        println!("READY {name}");
        let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => printed = print_events(&rt, printed, started_unix),
                line = commands.next_line() => {
                    let Ok(Some(line)) = line else { return };
                    let words: Vec<&str> = line.split_whitespace().collect();
                    match words.as_slice() {
                        ["spin", n] => {
                            let n: usize = n.parse().expect("a count");
                            let spawned = spawn_all(&rt, (0..n).map(|_| Spinner { steps: 0, data: vec![7; 256] })).await;
                            println!("SPAWN-DONE {spawned}");
                        }
                        ["work", lengths @ ..] => {
                            let lengths: Vec<u64> = lengths.iter().map(|l| l.parse().expect("a length")).collect();
                            println!("FIRST-SPAWN {}", unix_ms());
                            let spawned = spawn_all(&rt, lengths.into_iter().map(|left| Work { left, done: 0 })).await;
                            println!("SPAWN-DONE {spawned} {}", unix_ms());
                        }
                        ["drain", to] => {
                            let started = Instant::now();
                            let report = rt.migrate_to(to).await.expect("drain");
                            println!("DRAINED {} {} {}", report.moved.len(), report.stayed.len(), started.elapsed().as_millis());
                        }
                        ["sync"] => {
                            printed = print_events(&rt, printed, started_unix);
                            println!("TICKS {} {}", TICKS.load(Ordering::Relaxed), TICKS_US.load(Ordering::Relaxed));
                            println!("SYNCED");
                        }
                        _ => panic!("unknown command `{line}`"),
                    }
                }
                _ = terminate.recv() => {
                    let report = rt.leave(Duration::from_secs(10)).await.expect("leave");
                    print_events(&rt, printed, started_unix);
                    println!("LEFT {} {} {}", report.moved.len(), report.left_behind.len(), report.elapsed.as_millis());
                    return;
                }
            }
        }
    });
    tokio.shutdown_timeout(Duration::from_secs(1));
}

/// Spawns every task, 32 at a time; prints `SPAWNED <task>` for each.
async fn spawn_all<T: Task<Output = u64> + Send + 'static>(
    rt: &Runtime,
    tasks: impl Iterator<Item = T>,
) -> usize {
    let limit = Arc::new(Semaphore::new(32));
    let mut spawns = tokio::task::JoinSet::new();
    for task in tasks {
        let (rt, limit) = (rt.clone(), Arc::clone(&limit));
        spawns.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let handle = rt.spawn(task).await.expect("spawn");
            println!("SPAWNED {}", handle.id());
        });
    }
    let mut spawned = 0;
    while let Some(done) = spawns.join_next().await {
        done.expect("spawn task");
        spawned += 1;
    }
    spawned
}

/// Prints the cluster events not printed yet; returns how many are printed.
fn print_events(rt: &Runtime, printed: usize, started_unix: u64) -> usize {
    let events = rt.cluster_events();
    for event in events.iter().skip(printed) {
        let (what, host) = match &event.kind {
            ClusterEventKind::Balanced { to, .. } => ("balanced", to.clone()),
            ClusterEventKind::Drained { to } => ("drained", to.clone()),
            ClusterEventKind::TookOver { from, .. } => {
                ("took-over", from.clone().unwrap_or_else(|| "-".into()))
            }
            ClusterEventKind::Arrived { .. } => ("arrived", "-".into()),
            ClusterEventKind::Fenced => ("fenced", "-".into()),
            ClusterEventKind::Released { .. } => ("released", "-".into()),
            _ => ("other", "-".into()),
        };
        println!(
            "EVENT {} {} {what} {host}",
            started_unix + event.at.as_millis() as u64,
            event.task
        );
    }
    events.len()
}

// ---- the orchestrator's side ------------------------------------------------------------

/// What the hosts said, as the orchestrator gathers it.
#[derive(Default)]
struct Heard {
    ready: HashSet<String>,
    spawned: BTreeMap<String, Vec<TaskId>>,
    spawn_done: HashSet<String>,
    first_spawn: Option<u64>,
    /// (task, host) -> unix ms of its first step there.
    steps: HashMap<(TaskId, String), u64>,
    /// task -> (unix ms, host) of its end.
    done: HashMap<TaskId, (u64, String)>,
    spawn_done_at: Option<u64>,
    /// host -> (ticks napped, their total in microseconds)
    ticks: BTreeMap<String, (u64, u64)>,
    /// (unix ms, task, what, source host, other host)
    events: Vec<(u64, TaskId, String, String, String)>,
    drained: Option<(usize, usize, u64)>,
    left: Option<String>,
    synced: HashSet<String>,
}

/// A cluster of host processes on a fresh folder.
struct Cluster {
    dir: PathBuf,
    tokio: tokio::runtime::Runtime,
    coordinator: Arc<dyn Coordinator>,
    hosts: BTreeMap<String, (Child, ChildStdin)>,
    lines: Receiver<(String, String)>,
    sender: Sender<(String, String)>,
    heard: Heard,
}

/// The embedded coordinator, in the case's folder.
const FOLDER: &str = "folder";

/// The coordinator of a case: [`FOLDER`] (in `dir`), or an etcd endpoint (its keys under a
/// prefix named after `dir`, so that every case starts empty).
async fn open_coordinator(spec: &str, dir: &Path) -> Arc<dyn Coordinator> {
    match spec {
        FOLDER => Arc::new(FolderCoordinator::open(dir.join("coordinator")).expect("coordinator")),
        #[cfg(feature = "etcd")]
        endpoint => {
            let case = dir
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a case folder");
            // One prefix per case: the etcd is fresh at every run of the bench.
            let config = cosmic::cluster::EtcdConfig::new([endpoint])
                .with_prefix(format!("/cosmic-bench/{case}/"))
                // etcd's fsyncs on a loaded 2-core machine can take longer than the default
                // 2 s: a slow answer is a number here, not a failure.
                .with_timeouts(Duration::from_secs(5), Duration::from_secs(10));
            Arc::new(
                cosmic::cluster::EtcdCoordinator::connect(config)
                    .await
                    .expect("connect to etcd"),
            )
        }
        #[cfg(not(feature = "etcd"))]
        other => panic!("unknown coordinator `{other}` (etcd needs the `etcd` feature)"),
    }
}

fn private_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path).expect("create a folder");
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).expect("chmod 700");
}

fn bench_root() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-bench");
    private_dir(&base);
    base
}

impl Cluster {
    /// A fresh folder (store, keys, and the folder coordinator) with `names` trusted in
    /// the coordinator `spec` ([`FOLDER`], or an etcd endpoint).
    fn new(case: &str, names: &[&str], spec: &str) -> Cluster {
        let dir = bench_root().join(case);
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("clear the case's folder");
        }
        private_dir(&dir);
        private_dir(&dir.join("keys"));
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let coordinator = tokio.block_on(open_coordinator(spec, &dir));
        for name in names {
            let key = HostKey::load_or_create(dir.join("keys").join(format!("{name}.key")))
                .expect("host key");
            tokio
                .block_on(coordinator.trust(name, key.public_key()))
                .expect("trust a host");
        }
        let (sender, lines) = mpsc::channel();
        Cluster {
            dir,
            tokio,
            coordinator,
            hosts: BTreeMap::new(),
            lines,
            sender,
            heard: Heard::default(),
        }
    }

    /// Starts the hosts and waits until each holds a lease.
    fn start(&mut self, names: &[&str], settings: &HostSettings) {
        let exe = std::env::current_exe().expect("this binary");
        for name in names {
            let mut child = Command::new(&exe)
                .arg("host")
                .arg(name)
                .arg(&self.dir)
                .args(settings.args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a host");
            let stdout = child.stdout.take().expect("stdout");
            let stdin = child.stdin.take().expect("stdin");
            let (sender, host) = (self.sender.clone(), (*name).to_owned());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if sender.send((host.clone(), line)).is_err() {
                        return;
                    }
                }
            });
            self.hosts.insert((*name).to_owned(), (child, stdin));
        }
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        self.wait("hosts ready", Duration::from_secs(60), |c| {
            names.iter().all(|n| c.heard.ready.contains(n))
        });
    }

    fn send(&mut self, host: &str, command: &str) {
        let (_, stdin) = self.hosts.get_mut(host).expect("a host of the cluster");
        writeln!(stdin, "{command}").expect("send a command to a host");
        stdin.flush().expect("flush");
    }

    fn signal(&mut self, host: &str, signal: i32) {
        let (child, _) = &self.hosts[host];
        // SAFETY: `kill` on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// Reads what the hosts said so far.
    fn drain_lines(&mut self) {
        while let Ok((host, line)) = self.lines.try_recv() {
            self.hear(&host, &line);
        }
    }

    fn hear(&mut self, host: &str, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let heard = &mut self.heard;
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        let task = |i: usize| words.get(i).and_then(|w| w.parse::<TaskId>().ok());
        match words.first().copied() {
            Some("READY") => {
                heard.ready.insert(host.to_owned());
            }
            Some("SPAWNED") => {
                if let Some(task) = task(1) {
                    heard.spawned.entry(host.to_owned()).or_default().push(task);
                }
            }
            Some("SPAWN-DONE") => {
                heard.spawn_done.insert(host.to_owned());
                if let Some(at) = number(2) {
                    heard.spawn_done_at = Some(at);
                }
            }
            Some("FIRST-SPAWN") => heard.first_spawn = number(1),
            Some("STEP") => {
                if let (Some(task), Some(at)) = (task(1), number(2)) {
                    heard.steps.entry((task, host.to_owned())).or_insert(at);
                }
            }
            Some("DONE") => {
                if let (Some(task), Some(at)) = (task(1), number(2)) {
                    heard.done.insert(task, (at, host.to_owned()));
                }
            }
            Some("EVENT") => {
                if let (Some(at), Some(task), Some(what), Some(other)) =
                    (number(1), task(2), words.get(3), words.get(4))
                {
                    heard.events.push((
                        at,
                        task,
                        (*what).to_owned(),
                        host.to_owned(),
                        (*other).to_owned(),
                    ));
                }
            }
            Some("DRAINED") => {
                if let (Some(moved), Some(failed), Some(ms)) = (number(1), number(2), number(3)) {
                    heard.drained = Some((moved as usize, failed as usize, ms));
                }
            }
            Some("TICKS") => {
                if let (Some(count), Some(us)) = (number(1), number(2)) {
                    heard.ticks.insert(host.to_owned(), (count, us));
                }
            }
            Some("LEFT") => heard.left = Some(words[1..].join(" ")),
            Some("SYNCED") => {
                heard.synced.insert(host.to_owned());
            }
            _ => eprintln!("{host}: {line}"),
        }
    }

    /// Waits until `done` holds (polling every 5 ms); false if it did not within `within`.
    fn wait(
        &mut self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        loop {
            self.drain_lines();
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                eprintln!("cluster bench: gave up waiting for {what} after {within:?}");
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn tasks(&self) -> Vec<TaskEntry> {
        self.tokio
            .block_on(self.coordinator.tasks())
            .unwrap_or_default()
    }

    /// Asks every host still running for its pending events and waits for them.
    fn sync_events(&mut self) {
        self.heard.synced.clear();
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        let mut asked = Vec::new();
        for name in names {
            let alive = self
                .hosts
                .get_mut(&name)
                .is_some_and(|(child, _)| child.try_wait().ok().flatten().is_none());
            if alive {
                self.send(&name, "sync");
                asked.push(name);
            }
        }
        self.wait("events", Duration::from_secs(10), |c| {
            asked.iter().all(|n| c.heard.synced.contains(n))
        });
    }

    /// Watches the coordinator until every task of `tasks` is owned by a host other than
    /// `away_from` (or by `onto`, if given) with a token above the one in `before`, and has
    /// stepped there. Returns, in seconds since `since_unix_ms`: when the first was seen
    /// orphaned or owned by another, and when the last runs again (None if it never did).
    fn watch_moved(
        &mut self,
        tasks: &[TaskId],
        before: &HashMap<TaskId, Token>,
        away_from: &str,
        onto: Option<&str>,
        since_unix_ms: u64,
    ) -> (Option<f64>, Option<f64>) {
        let mut first_change: Option<u64> = None;
        let mut owned_at: HashMap<TaskId, (u64, String)> = HashMap::new();
        let deadline = Instant::now() + GIVE_UP;
        loop {
            let polled = unix_ms();
            let entries = self.tasks();
            self.drain_lines();
            for entry in entries.iter().filter(|e| tasks.contains(&e.task)) {
                let newer = before.get(&entry.task).is_none_or(|t| entry.token > *t);
                let changed = match &entry.owner {
                    Owner::Orphaned => true,
                    Owner::Host { host, .. } => host != away_from,
                    Owner::Finished { .. } => false,
                };
                if changed && first_change.is_none() {
                    first_change = Some(polled);
                }
                if let Owner::Host { host, .. } = &entry.owner {
                    let fits = host != away_from && onto.is_none_or(|o| o == host);
                    if fits && newer && !owned_at.contains_key(&entry.task) {
                        owned_at.insert(entry.task, (polled, host.clone()));
                    }
                }
            }
            let runs: Option<Vec<u64>> = tasks
                .iter()
                .map(|task| {
                    let (owned, host) = owned_at.get(task)?;
                    let stepped = self.heard.steps.get(&(*task, host.clone()))?;
                    Some((*owned).max(*stepped))
                })
                .collect();
            let seconds = |at: u64| at.saturating_sub(since_unix_ms) as f64 / 1000.0;
            if let Some(runs) = runs {
                let last = runs.into_iter().max().unwrap_or(polled);
                return (first_change.map(seconds), Some(seconds(last)));
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "cluster bench: {} of {} tasks ran again within {GIVE_UP:?}",
                    owned_at.len(),
                    tasks.len()
                );
                return (first_change.map(seconds), None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn tokens(&self, tasks: &[TaskId]) -> HashMap<TaskId, Token> {
        self.tasks()
            .into_iter()
            .filter(|e| tasks.contains(&e.task))
            .map(|e| (e.task, e.token))
            .collect()
    }

    /// Spawns `n` spinners on `host` and waits until all of them stepped there.
    fn spin_on(&mut self, host: &str, n: usize) -> Vec<TaskId> {
        self.heard.spawn_done.remove(host);
        self.send(host, &format!("spin {n}"));
        let owner = host.to_owned();
        self.wait("spawns", Duration::from_secs(60), |c| {
            c.heard.spawn_done.contains(&owner)
        });
        let tasks = self.heard.spawned.get(host).cloned().unwrap_or_default();
        let owner = host.to_owned();
        self.wait("first steps", Duration::from_secs(30), |c| {
            tasks
                .iter()
                .all(|t| c.heard.steps.contains_key(&(*t, owner.clone())))
        });
        tasks
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _) in self.hosts.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn small_settings(coordinator: &str) -> HostSettings {
    HostSettings {
        capacity: 2,
        balance: false,
        checkpoint_ms: 500,
        coordinator: coordinator.to_owned(),
    }
}

// ---- cases ------------------------------------------------------------------------------

/// `case` is `failover` on the folder coordinator, `failover-etcd` on etcd (`spec`).
fn failover(config: &Config, case: &str, spec: &str) {
    let names = ["alpha", "beta", "gamma"];
    let (mut total, mut detect, mut takeover) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    for rep in 0..config.reps {
        let mut cluster = Cluster::new(&format!("{case}-{rep}"), &names, spec);
        cluster.start(&["beta", "gamma"], &small_settings(spec));
        cluster.start(&["alpha"], &small_settings(spec));
        let tasks = cluster.spin_on("alpha", SMALL_TASKS);
        // Kill at a different point of alpha's renewal period each time (renewals every
        // LEASE / 3).
        std::thread::sleep(Duration::from_millis(1000 + 157 * rep as u64));
        let before = cluster.tokens(&tasks);
        let killed = unix_ms();
        cluster.signal("alpha", libc::SIGKILL);
        let (first, last) = cluster.watch_moved(&tasks, &before, "alpha", None, killed);
        match (first, last) {
            (Some(first), Some(last)) => {
                total.push(last);
                detect.push(first);
                takeover.push(last - first);
            }
            _ => failed += 1,
        }
    }
    let ttl = LEASE.as_secs_f64();
    println!(
        "cluster/{case}: bytes=0 median={:.6}s baseline=lease-ttl baseline_median={ttl:.6}s ratio={:.3} tasks={SMALL_TASKS} reps={} failed={failed} detect_median={:.3}s takeover_median={:.3}s scan={:.3}s",
        median(&total),
        median(&total) / ttl,
        total.len(),
        median(&detect),
        median(&takeover),
        SCAN.as_secs_f64(),
    );
    println!(
        "cluster/{case} detail: total {} detect {} takeover {}",
        spread(&total),
        spread(&detect),
        spread(&takeover)
    );
}

/// Lengths of the balance case's tasks, from the fixed seed (xorshift64*).
fn lengths() -> Vec<u64> {
    let mut state = SEED;
    (0..BALANCE_TASKS)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            MIN_TICKS + x % (MAX_TICKS - MIN_TICKS + 1)
        })
        .collect()
}

fn balance(_config: &Config) {
    let mut cluster = Cluster::new("balance", &BALANCE_HOSTS, FOLDER);
    let settings = HostSettings {
        capacity: CAPACITY,
        balance: true,
        checkpoint_ms: 0,
        coordinator: FOLDER.to_owned(),
    };
    cluster.start(&BALANCE_HOSTS[1..], &settings);
    cluster.start(&BALANCE_HOSTS[..1], &settings);
    let lengths = lengths();
    let work: u64 = lengths.iter().sum();
    let ideal =
        work as f64 * TICK.as_secs_f64() / (f64::from(CAPACITY) * BALANCE_HOSTS.len() as f64);
    let command = format!(
        "work {}",
        lengths
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    cluster.send("alpha", &command);
    let finished = cluster.wait(
        "every task of the balance case to end",
        Duration::from_secs_f64(ideal * 3.0 + 30.0),
        |c| c.heard.done.len() == BALANCE_TASKS,
    );
    cluster.sync_events();
    let first = cluster.heard.first_spawn.unwrap_or(0);
    let last = cluster
        .heard
        .done
        .values()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or(first);
    // When each host ended its last task, since the first spawn.
    let mut host_ends: BTreeMap<&str, f64> = BTreeMap::new();
    for (at, host) in cluster.heard.done.values() {
        let end = host_ends.entry(host.as_str()).or_default();
        *end = end.max(at.saturating_sub(first) as f64 / 1000.0);
    }
    let (ticks, ticks_us) = cluster
        .heard
        .ticks
        .values()
        .fold((0, 0), |(n, us), (count, total)| (n + count, us + total));
    let tick_measured = ticks_us as f64 / 1e6 / ticks.max(1) as f64;
    let ideal_measured = ideal * tick_measured / TICK.as_secs_f64();
    let makespan = if finished {
        last.saturating_sub(first) as f64 / 1000.0
    } else {
        f64::INFINITY
    };
    // Moves, from the sources' events: (at, task, from, to).
    let mut moves: Vec<(u64, TaskId, String, String)> = cluster
        .heard
        .events
        .iter()
        .filter(|(_, _, what, _, _)| what == "balanced")
        .map(|(at, task, _, from, to)| (*at, *task, from.clone(), to.clone()))
        .collect();
    moves.sort();
    let cooldown = BalanceConfig::default().cooldown.as_millis() as u64;
    let mut left_at: HashMap<(TaskId, String), u64> = HashMap::new();
    let mut undone = 0;
    for (at, task, from, to) in &moves {
        if left_at
            .get(&(*task, to.clone()))
            .is_some_and(|left| at.saturating_sub(*left) < cooldown)
        {
            undone += 1;
        }
        left_at.insert((*task, from.clone()), *at);
    }
    let moved_tasks: HashSet<TaskId> = moves.iter().map(|m| m.1).collect();
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, _, to) in &moves {
        *per_host.entry(to.as_str()).or_default() += 1;
    }
    let spread_moves = BALANCE_TASKS - BALANCE_TASKS / BALANCE_HOSTS.len();
    // When the first and last move landed, since the first spawn.
    let since = |at: u64| at.saturating_sub(first) as f64 / 1000.0;
    let first_move = moves.first().map_or(f64::NAN, |m| since(m.0));
    let last_move = moves.last().map_or(f64::NAN, |m| since(m.0));
    let spread_done = moves
        .get(spread_moves.saturating_sub(1))
        .map_or(f64::NAN, |m| since(m.0));
    let spawned_in = cluster.heard.spawn_done_at.map_or(f64::NAN, since);
    // Takeovers: a host that lost its lease (its renewal late) has its tasks fenced, and the
    // others take them over from their last checkpoint (here: the image of their last move).
    let took_over = cluster
        .heard
        .events
        .iter()
        .filter(|e| e.2 == "took-over")
        .count();
    let mut fenced_on: BTreeMap<&str, usize> = BTreeMap::new();
    for event in cluster.heard.events.iter().filter(|e| e.2 == "fenced") {
        *fenced_on.entry(event.3.as_str()).or_default() += 1;
    }
    let fenced = cluster
        .heard
        .events
        .iter()
        .filter(|e| e.2 == "fenced")
        .count();
    println!(
        "cluster/balance: bytes=0 median={makespan:.6}s baseline=ideal-makespan baseline_median={ideal:.6}s ratio={:.3} tasks={BALANCE_TASKS} hosts={} capacity={CAPACITY} tick={:.3}s work_ticks={work} moves={} moved_tasks={} fewest_moves={spread_moves} undone_within_cooldown={undone} cooldown={:.0}s fenced={fenced} took_over={took_over} finished={} tick_measured={tick_measured:.4}s ratio_at_measured_tick={:.3}",
        makespan / ideal,
        BALANCE_HOSTS.len(),
        TICK.as_secs_f64(),
        moves.len(),
        moved_tasks.len(),
        cooldown as f64 / 1000.0,
        cluster.heard.done.len(),
        makespan / ideal_measured,
    );
    println!(
        "cluster/balance detail: all spawned {spawned_in:.2}s after the first spawn; moves received {per_host:?}; first move {first_move:.2}s, move {spread_moves} {spread_done:.2}s, last {last_move:.2}s; hosts' last task ended at {host_ends:?}; fenced on {fenced_on:?} (a source's scan seeing a move it just committed, or a lease lost); BalanceConfig::default() {:?}",
        BalanceConfig::default()
    );
}

fn leave(config: &Config) {
    let names = ["alpha", "beta", "gamma"];
    let (mut leaves, mut drains) = (Vec::new(), Vec::new());
    let mut failed = 0;
    let mut reports = Vec::new();
    for rep in 0..config.reps {
        let mut cluster = Cluster::new(&format!("leave-{rep}"), &names, FOLDER);
        cluster.start(&names, &small_settings(FOLDER));
        let tasks = cluster.spin_on("alpha", SMALL_TASKS);
        std::thread::sleep(Duration::from_millis(500));
        // The baseline: the same tasks moved through the API.
        let before = cluster.tokens(&tasks);
        let asked = unix_ms();
        cluster.send("alpha", "drain beta");
        let (_, drained) = cluster.watch_moved(&tasks, &before, "alpha", Some("beta"), asked);
        std::thread::sleep(Duration::from_millis(500));
        // The departure.
        let before = cluster.tokens(&tasks);
        let told = unix_ms();
        cluster.signal("beta", libc::SIGTERM);
        let (_, left) = cluster.watch_moved(&tasks, &before, "beta", None, told);
        cluster.wait("beta's exit", Duration::from_secs(15), |c| {
            c.heard.left.is_some()
        });
        reports.push(format!(
            "drain {:?} leave {:?}",
            cluster.heard.drained,
            cluster.heard.left.take()
        ));
        match (drained, left) {
            (Some(drained), Some(left)) => {
                drains.push(drained);
                leaves.push(left);
            }
            _ => failed += 1,
        }
    }
    println!(
        "cluster/leave: bytes=0 median={:.6}s baseline=api-drain baseline_median={:.6}s ratio={:.3} paired_ratio={:.3} tasks={SMALL_TASKS} reps={} failed={failed}",
        median(&leaves),
        median(&drains),
        median(&leaves) / median(&drains),
        common::paired_ratio(&leaves, &drains),
        leaves.len(),
    );
    println!(
        "cluster/leave detail: leave {} drain {}; hosts' reports (moved failed ms; moved left-behind ms): {}",
        spread(&leaves),
        spread(&drains),
        reports.join(", ")
    );
}

/// The smallest durable atomic change of a folder: a new file written, fsynced, renamed into
/// place, the folder fsynced. `n` of them over `threads` threads; returns the seconds taken.
fn durable_replaces(dir: &Path, n: usize, threads: usize) -> f64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let bytes = [0x5a_u8; 96];
    let started = Instant::now();
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(n) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                if i >= n {
                    return;
                }
                let unique = NEXT.fetch_add(1, Ordering::SeqCst);
                let temp = dir.join(format!("tmp-{unique}"));
                let mut file = File::create(&temp).expect("create");
                file.write_all(&bytes).expect("write");
                file.sync_all().expect("fsync");
                fs::rename(&temp, dir.join(format!("record-{i}"))).expect("rename");
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .expect("fsync the folder");
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// `spec`: [`FOLDER`] or an etcd endpoint; `name`: how the lines name it.
fn ownership(config: &Config, spec: &str, name: &str) {
    const TRANSFERS: usize = 50;
    const BATCH: usize = 100;
    let dir = bench_root().join(format!("ownership-{name}"));
    let suffix = if spec == FOLDER {
        String::new()
    } else {
        format!("-{name}")
    };
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("clear");
    }
    private_dir(&dir);
    let raw = dir.join("raw");
    private_dir(&raw);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let coordinator = tokio.block_on(open_coordinator(spec, &dir));
    let record = |name: &str| MemberRecord {
        name: name.into(),
        addr: "127.0.0.1:1".into(),
        public_key: PublicKey::from_bytes([name.len() as u8; 32]),
        load: HostLoad::default(),
        types: vec!["Spinner".into()],
        draining: false,
    };
    let ttl = Duration::from_secs(600);
    let (a, b) = tokio.block_on(async {
        (
            coordinator.join(&record("a"), ttl).await.expect("join a"),
            coordinator.join(&record("b"), ttl).await.expect("join b"),
        )
    });
    let checkpoint = |seq: u64| CheckpointRef {
        key: format!("cluster/tasks/bench/ckpt-{seq}"),
        steps: seq,
    };
    let moved = TaskId::from_raw(1);
    let mut token = tokio
        .block_on(coordinator.create(&a, moved, "Spinner", "u64", checkpoint(0)))
        .expect("create");
    let batch: Vec<TaskId> = (0..BATCH as u64)
        .map(|i| TaskId::from_raw(1000 + i))
        .collect();
    let mut tokens: Vec<Token> = batch
        .iter()
        .map(|task| {
            tokio
                .block_on(coordinator.create(&a, *task, "Spinner", "u64", checkpoint(0)))
                .expect("create")
        })
        .collect();
    let seq = AtomicU64::new(1);
    let mut at_a = true;
    let (mut transfers, mut transfer_base, mut commits, mut commit_base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let rounds = config.reps.max(3) * 2;
    for round in 0..=rounds {
        // One task moved back and forth, one change at a time.
        let started = Instant::now();
        for _ in 0..TRANSFERS {
            let (from, to) = if at_a { (&a, "b") } else { (&b, "a") };
            let ckpt = checkpoint(seq.fetch_add(1, Ordering::SeqCst));
            token = tokio
                .block_on(coordinator.transfer(from, moved, token, to, ckpt))
                .expect("transfer");
            at_a = !at_a;
        }
        let transfer = started.elapsed().as_secs_f64() / TRANSFERS as f64;
        let base = durable_replaces(&raw, TRANSFERS, 1) / TRANSFERS as f64;
        // A batch of commits (the baseline first: alternate nothing else in between).
        let entries: Vec<CheckpointCommit> = batch
            .iter()
            .zip(&tokens)
            .map(|(task, token)| CheckpointCommit {
                task: *task,
                token: *token,
                checkpoint: checkpoint(seq.fetch_add(1, Ordering::SeqCst)),
            })
            .collect();
        let batch_base = durable_replaces(&raw, BATCH, 32);
        let started = Instant::now();
        let verdicts = tokio
            .block_on(coordinator.commit_checkpoints(&a, &entries))
            .expect("commit");
        let commit = started.elapsed().as_secs_f64();
        assert!(verdicts.iter().all(Result::is_ok), "a commit was fenced");
        tokens = entries.iter().map(|e| e.token).collect();
        if round > 0 {
            transfers.push(transfer);
            transfer_base.push(base);
            commits.push(commit);
            commit_base.push(batch_base);
        }
    }
    println!(
        "cluster/ownership-transfer{suffix}: bytes=0 median={:.6}s baseline=durable-rename baseline_median={:.6}s ratio={:.3} per_s={:.0} baseline_per_s={:.0} coordinator={name}",
        median(&transfers),
        median(&transfer_base),
        median(&transfers) / median(&transfer_base),
        1.0 / median(&transfers),
        1.0 / median(&transfer_base),
    );
    println!(
        "cluster/ownership-commit{suffix}: bytes=0 median={:.6}s baseline=durable-rename-x{BATCH}-32-threads baseline_median={:.6}s ratio={:.3} per_s={:.0} baseline_per_s={:.0} batch={BATCH} coordinator={name}",
        median(&commits),
        median(&commit_base),
        median(&commits) / median(&commit_base),
        BATCH as f64 / median(&commits),
        BATCH as f64 / median(&commit_base),
    );
    println!(
        "cluster/ownership detail ({name}): transfer {} (per change) base {}; commit {} (per batch of {BATCH}) base {}",
        spread(&transfers),
        spread(&transfer_base),
        spread(&commits),
        spread(&commit_base)
    );
    drop(tokio);
    let _ = fs::remove_dir_all(&dir);
}

/// An etcd server for the etcd cases, as the tests start one (`/usr/bin/etcd`, or
/// `COSMIC_ETCD_BIN`): one member on loopback, its data in the bench's folder (a real disk).
#[cfg(feature = "etcd")]
struct Etcd {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

#[cfg(feature = "etcd")]
impl Etcd {
    fn start() -> Option<Etcd> {
        let binary = std::env::var_os("COSMIC_ETCD_BIN")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))?;
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let (client, peer) = (
            format!("http://127.0.0.1:{}", port()),
            format!("http://127.0.0.1:{}", port()),
        );
        let dir = bench_root().join("etcd");
        let _ = fs::remove_dir_all(&dir);
        private_dir(&dir);
        let child = Command::new(binary)
            .args(["--name", "cosmic-bench", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("cosmic-bench={peer}")])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let etcd = Etcd {
            child,
            dir,
            endpoint: client,
        };
        // Up once a coordinator on it answers.
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let config = cosmic::cluster::EtcdConfig::new([etcd.endpoint.clone()])
                .with_prefix("/cosmic-bench/probe/")
                .with_timeouts(Duration::from_secs(1), Duration::from_secs(1));
            let up = tokio.block_on(async {
                match cosmic::cluster::EtcdCoordinator::connect(config).await {
                    Ok(coordinator) => coordinator.members().await.is_ok(),
                    Err(_) => false,
                }
            });
            if up {
                return Some(etcd);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("cluster bench: etcd did not come up within 30 s");
        None
    }
}

#[cfg(feature = "etcd")]
impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---- main -------------------------------------------------------------------------------

struct Config {
    reps: usize,
    only: Vec<String>,
}

impl Config {
    fn from_args(args: &[String]) -> Config {
        let mut config = Config {
            reps: 5,
            only: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--reps" => {
                    config.reps = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .expect("--reps needs a number")
                }
                "--only" => config
                    .only
                    .push(args.next().expect("--only needs a case name").clone()),
                // `cargo bench` passes `--bench`; other unknown arguments are ignored too.
                _ => {}
            }
        }
        config.reps = config.reps.max(1);
        config
    }

    fn wants(&self, case: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| case.contains(only.as_str()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("host") {
        run_host(&args[1..]);
        return;
    }
    let config = Config::from_args(&args);
    eprintln!("cluster bench: --reps {}", config.reps);
    if config.wants("ownership") {
        ownership(&config, FOLDER, "folder");
    }
    if config.wants("failover") {
        failover(&config, "failover", FOLDER);
    }
    #[cfg(feature = "etcd")]
    if config.wants("ownership-etcd") || config.wants("failover-etcd") {
        match Etcd::start() {
            Some(etcd) => {
                if config.wants("ownership-etcd") {
                    ownership(&config, &etcd.endpoint, "etcd");
                }
                if config.wants("failover-etcd") {
                    failover(&config, "failover-etcd", &etcd.endpoint);
                }
            }
            None => println!(
                "cluster/failover-etcd: not measured: no etcd (/usr/bin/etcd or COSMIC_ETCD_BIN)"
            ),
        }
    }
    #[cfg(not(feature = "etcd"))]
    if config.wants("failover-etcd") {
        println!("cluster/failover-etcd: not measured: built without the `etcd` feature (`--features etcd`)");
    }
    if config.wants("leave") {
        let config = Config {
            reps: config.reps.min(3),
            only: Vec::new(),
        };
        leave(&config);
    }
    if config.wants("balance") {
        balance(&config);
    }
}
