//! The cluster with real processes and real signals: every host is its own OS process
//! (`cluster_node`), a member agreeing with the others through the embedded coordinator (a
//! folder) and keeping its checkpoints in a shared folder store, with a short lease (2 s,
//! renewed every third of it) and a scan every 100 ms. Hosts are SIGKILLed, SIGSTOPped past
//! their lease and SIGCONTinued, cut off from the coordinator while they keep running (a fault
//! hook of cosmic-runtime's `fault-injection` feature), restarted under their old name, told
//! to leave with SIGTERM, and joined while the balancer moves tasks.
//!
//! Every task is a [`TimedCounter`]: each step appends `<host> <step> <unix ms>` to the task's
//! own log. Whatever happened, every test checks, from those logs and the coordinator:
//! - **no step is lost**: each log is a sequence of runs of consecutive steps, each run starting
//!   at or before the step where the run before it got to (never skipping ahead), and the last
//!   run ends at the last step;
//! - **steps run again only after a takeover, and only from the checkpoint it resumed**: a run
//!   that starts before where the previous one got to is one a host started after a takeover
//!   (its `took-over STEPS` event names that step), and never starts before the step where the
//!   previous run started (the current checkpoint only moves forward);
//! - **no two hosts run a task at once**: the lines of two hosts for one task never interleave,
//!   except for one line of a host whose task was taken over (it was paused or cut off past its
//!   lease): the step it had in flight ("no two hosts run a task beyond the lease plus the step
//!   in flight"). A host that moves a task away stops it first: no line of it may follow;
//! - **each outcome is recorded once**: the coordinator names the task `Finished` with an
//!   outcome written by the host that ran its last step, the store holds that one outcome
//!   record, and its output (read through [`ClusterView`], as an operator would) is the digest
//!   of an uninterrupted run.
//!
//! The tests run one at a time (a lock): five clusters of three or four processes at once on a
//! small machine would starve the leases. Each test keeps its folder (logs, the hosts' stdout
//! and stderr, the coordinator, the store) for inspection when it fails.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cosmic::checkpoint::CheckpointStore;
use cosmic::cluster::{layout, ClusterView, Coordinator, FolderCoordinator, Owner, TaskEntry};
use cosmic::{FileStore, HostKey, TaskId};
use cosmic_tests::counter::{expected_digest, TempDir};
use cosmic_tests::timed::{read_timed_log, unix_ms, TimedStep};

/// The hosts' lease. Short, so that the tests are, but not shorter: on a loaded machine a
/// renewal through the folder (a few flushes to disk) has been seen to take 1.5 s, and a lease
/// that runs out under the tests' feet turns a test about one fault into one about two.
const LEASE: Duration = Duration::from_millis(2000);
/// Steps between checkpoints.
const CHECKPOINT_STEPS: u64 = 10;
/// How long each step of the tasks lasts.
const STEP_MS: u64 = 20;
/// The flag file variable of the coordinator cut (cosmic-runtime's `fault-injection`).
const CUT_VAR: &str = "COSMIC_FAULT_COORDINATOR_CUT";

/// One test at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Something a host reported about a task (`EVENT` lines of `cluster_node`).
#[derive(Debug, Clone)]
struct Event {
    host: String,
    task: TaskId,
    /// `took-over`, `arrived`, `balanced`, `drained`, `fenced`, `released`.
    what: String,
    /// The steps of the checkpoint resumed (`took-over`, `arrived`).
    steps: Option<u64>,
    /// When the test read it.
    at_ms: u64,
}

type Events = Arc<Mutex<Vec<Event>>>;

/// A task the test spawned.
#[derive(Debug, Clone)]
struct Spawned {
    task: TaskId,
    total: u64,
    log: PathBuf,
}

/// A run of a task's log: consecutive steps on one host.
#[derive(Debug, Clone)]
struct Run {
    host: String,
    first: u64,
    last: u64,
    last_ms: u64,
    /// Its host took the task over at its first step (rather than having it moved there).
    took_over: bool,
    /// The one line this host wrote after the next run had begun (its step in flight).
    straggler: Option<TimedStep>,
}

/// A cluster's shared parts: the coordinator's folder, the store's folder, the keys, and what
/// its hosts reported.
struct Cluster {
    dir: TempDir,
    key_file: PathBuf,
    tokio: tokio::runtime::Runtime,
    coordinator: Arc<FolderCoordinator>,
    store: Arc<FileStore>,
    events: Events,
    starts: AtomicU32,
    _serial: MutexGuard<'static, ()>,
}

/// A host process.
struct Node {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: PathBuf,
}

impl Cluster {
    fn new(label: &str) -> Cluster {
        let serial = serial();
        let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), label);
        let key_file = dir.path().join("cluster.key");
        std::fs::write(&key_file, b"cluster process test key, 32 bytes or more").unwrap();
        // Hosts refuse key files other users can read.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        for sub in ["keys", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let coordinator = Arc::new(
            FolderCoordinator::open(dir.path().join("coordinator")).expect("the coordinator"),
        );
        let store = Arc::new(FileStore::open_shared(dir.path().join("store")).expect("the store"));
        Cluster {
            dir,
            key_file,
            tokio,
            coordinator,
            store,
            events: Arc::default(),
            starts: AtomicU32::new(0),
            _serial: serial,
        }
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.tokio.block_on(future)
    }

    /// Starts host `name` (its key pair made and trusted by the operator the first time);
    /// `args` are extra options of `cluster_node`, `env` extra variables. Returns once it holds
    /// a lease (it printed READY).
    fn start(&self, name: &str, args: &[&str], env: &[(&str, &Path)]) -> Node {
        let key = HostKey::load_or_create(self.dir.path().join("keys").join(format!("{name}.key")))
            .expect("a host key pair");
        self.block_on(self.coordinator.trust(name, key.public_key()))
            .expect("trust the host");
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let stderr = self.dir.path().join(format!("{name}-{n}.stderr"));
        let transcript = self.dir.path().join(format!("{name}-{n}.stdout"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_cluster_node"));
        let lease = LEASE.as_millis().to_string();
        let checkpoint = CHECKPOINT_STEPS.to_string();
        // The first occurrence of an option counts: `args` first, then the defaults.
        command
            .args(["--name", name, "--dir"])
            .arg(self.dir.path())
            .args(args)
            .args(["--lease-ms", &lease, "--checkpoint-steps", &checkpoint])
            .env("COSMIC_CLUSTER_KEY_FILE", &self.key_file)
            .env_remove(CUT_VAR)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap());
        for (var, value) in env {
            command.env(var, value);
        }
        let mut child = command.spawn().expect("start cluster_node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        let events = Arc::clone(&self.events);
        let host = name.to_owned();
        std::thread::spawn(move || {
            let mut transcript = File::create(transcript).ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(file) = transcript.as_mut() {
                    let _ = writeln!(file, "{} {line}", unix_ms());
                }
                if let Some(event) = parse_event(&host, &line) {
                    events.lock().unwrap().push(event);
                } else if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            stderr,
        };
        node.expect("READY", Duration::from_secs(30));
        node
    }

    fn log(&self, label: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{label}.log"))
    }

    /// Spawns `count` tasks of `total` steps on `node`, each with its own log.
    fn spawn(&self, node: &mut Node, count: usize, total: u64) -> Vec<Spawned> {
        (0..count)
            .map(|_| {
                let n = self.starts.fetch_add(1, Ordering::Relaxed);
                let log = self.log(&format!("task-{n}"));
                let task = node.spawn(total, &log);
                Spawned { task, total, log }
            })
            .collect()
    }

    fn tasks(&self) -> Vec<TaskEntry> {
        self.block_on(self.coordinator.tasks())
            .expect("read the coordinator's tasks")
    }

    /// The live incarnation of host `name`, if it is a member.
    fn incarnation(&self, name: &str) -> Option<u64> {
        self.block_on(self.coordinator.members())
            .expect("read the members")
            .into_iter()
            .find(|m| m.record.name == name)
            .map(|m| m.incarnation)
    }

    /// The tasks whose owner is host `name` (any incarnation).
    fn owned_by(&self, name: &str) -> Vec<TaskId> {
        self.tasks()
            .into_iter()
            .filter(|e| matches!(&e.owner, Owner::Host { host, .. } if host == name))
            .map(|e| e.task)
            .collect()
    }

    /// Whether every task of `tasks` has an owner other than host `name` (a live host that
    /// took it over, or its end).
    fn all_taken_from(&self, tasks: &[TaskId], name: &str) -> bool {
        self.tasks()
            .iter()
            .filter(|e| tasks.contains(&e.task))
            .all(|e| match &e.owner {
                Owner::Host { host, .. } => host != name,
                Owner::Finished { .. } => true,
                Owner::Orphaned => false,
            })
    }

    fn owners(&self) -> Vec<(TaskId, Owner)> {
        self.tasks()
            .into_iter()
            .map(|e| (e.task, e.owner))
            .collect()
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until every task finished with the right digest, read through the coordinator
    /// and the store as an operator would.
    fn all_finish(&self, tasks: &[Spawned], within: Duration) {
        let view = ClusterView::new(self.coordinator.clone(), self.store.clone());
        let deadline = Instant::now() + within;
        for t in tasks {
            loop {
                let output = self
                    .block_on(view.output::<u64>(t.task))
                    .unwrap_or_else(|e| panic!("read task {}'s outcome: {e:?}", t.task));
                if let Some(digest) = output {
                    assert_eq!(
                        digest,
                        expected_digest(t.total),
                        "task {} finished with the wrong digest (log {})",
                        t.task,
                        t.log.display()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "task {} did not finish within {within:?} (log {}); owners: {:?}",
                    t.task,
                    t.log.display(),
                    self.owners()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The checks every test makes of every task once all finished (see the module docs):
    /// its step log, and its outcome recorded once.
    fn check_all(&self, tasks: &[Spawned]) -> HashMap<TaskId, Vec<Run>> {
        let events = self.events();
        let mut all = HashMap::new();
        for t in tasks {
            let runs =
                check_steps(t, &events).unwrap_or_else(|error| panic!("task {}: {error}", t.task));
            self.check_outcome(t, &runs);
            all.insert(t.task, runs);
        }
        all
    }

    /// The coordinator records the task `Finished` once, with an outcome the host that ran its
    /// last step wrote, and the store holds no other outcome of it.
    fn check_outcome(&self, t: &Spawned, runs: &[Run]) {
        let entry = self
            .block_on(self.coordinator.task(t.task))
            .expect("read the task")
            .expect("the coordinator knows the task");
        let Owner::Finished { outcome } = &entry.owner else {
            panic!("task {} is not finished: {:?}", t.task, entry.owner);
        };
        let parsed = layout::parse(outcome).expect("an outcome key of the cluster layout");
        assert_eq!(parsed.item, layout::Item::Outcome, "{outcome}");
        let last = runs.last().expect("the task ran");
        assert_eq!(
            parsed.host, last.host,
            "task {}'s outcome was recorded by {} but its last step ran on {}",
            t.task, parsed.host, last.host
        );
        // Others' outcomes (a host that ended the task but lost it) are collected by the
        // owner right after it records the end.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let keys = self
                .block_on(self.store.list(&layout::task_prefix(t.task)))
                .expect("list the store");
            let outcomes: Vec<_> = keys
                .iter()
                .filter(|k| layout::parse(k).is_some_and(|p| p.item == layout::Item::Outcome))
                .collect();
            if outcomes == [outcome] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "task {}: the store holds outcomes {outcomes:?}, the coordinator names {outcome}",
                t.task
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn parse_event(host: &str, line: &str) -> Option<Event> {
    let mut words = line.strip_prefix("EVENT ")?.split(' ');
    let task = words.next()?.parse().ok()?;
    let what = words.next()?.to_owned();
    let steps = match what.as_str() {
        "took-over" | "arrived" => Some(words.next()?.parse().ok()?),
        _ => None,
    };
    Some(Event {
        host: host.to_owned(),
        task,
        what,
        steps,
        at_ms: unix_ms(),
    })
}

/// Checks a task's step log (see the module docs) and returns its runs.
fn check_steps(t: &Spawned, events: &[Event]) -> Result<Vec<Run>, String> {
    let log = read_timed_log(&t.log);
    let mut runs: Vec<Run> = Vec::new();
    let context = |runs: &[Run]| format!("(log {}; runs so far {runs:?})", t.log.display());
    for (i, line) in log.iter().enumerate() {
        if let Some(run) = runs.last_mut() {
            if run.host == line.host && line.step == run.last + 1 {
                run.last = line.step;
                run.last_ms = line.at_ms;
                continue;
            }
        }
        let took_over = events.iter().any(|e| {
            e.host == line.host
                && e.task == t.task
                && e.what == "took-over"
                && e.steps == Some(line.step)
        });
        // The step the previous owner had in flight when it lost the task, written late: only
        // after a takeover (a host that moves a task away stops it first), and only one.
        if let [.., previous, current] = runs.as_mut_slice() {
            if previous.host == line.host && line.step == previous.last + 1 && !took_over {
                if !current.took_over || previous.straggler.is_some() {
                    let how = if current.took_over {
                        "taken over"
                    } else {
                        "been given"
                    };
                    let current = current.host.clone();
                    return Err(format!(
                        "line {i}: {} ran step {} after {} had {} the task: two hosts ran it at \
                         once {}",
                        line.host,
                        line.step,
                        current,
                        how,
                        context(&runs)
                    ));
                }
                previous.straggler = Some(line.clone());
                continue;
            }
        }
        let next = runs.last().map_or(0, |run| run.last + 1);
        if line.step > next {
            return Err(format!(
                "line {i}: step {} on {} skips ahead of step {next}: steps were lost {}",
                line.step,
                line.host,
                context(&runs)
            ));
        }
        if line.step < next {
            if !took_over {
                return Err(format!(
                    "line {i}: {} runs step {} again (the task had got to {next}) without \
                     having taken it over from that checkpoint {}",
                    line.host,
                    line.step,
                    context(&runs)
                ));
            }
            let previous_start = runs.last().map_or(0, |run| run.first);
            if line.step < previous_start {
                return Err(format!(
                    "line {i}: {} resumed at step {}, before the step {previous_start} the \
                     previous run resumed from: an older checkpoint became current again {}",
                    line.host,
                    line.step,
                    context(&runs)
                ));
            }
        }
        runs.push(Run {
            host: line.host.clone(),
            first: line.step,
            last: line.step,
            last_ms: line.at_ms,
            took_over,
            straggler: None,
        });
    }
    match runs.last() {
        Some(run) if run.last + 1 == t.total => Ok(runs),
        _ => Err(format!(
            "the log does not end at step {} {}",
            t.total - 1,
            context(&runs)
        )),
    }
}

/// Waits until `check` holds, or fails with `what`.
fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until each task logged at least `steps` steps.
fn wait_for_steps(tasks: &[Spawned], steps: usize) {
    for t in tasks {
        wait_for(
            &format!("task {} logs {steps} steps", t.task),
            Duration::from_secs(20),
            || read_timed_log(&t.log).len() >= steps,
        );
    }
}

impl Node {
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the host");
        self.stdin.flush().expect("write to the host");
    }

    /// The next line starting with `prefix` (others are skipped).
    fn expect(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{}: no `{prefix}` line within {within:?} (stderr: {})",
                    self.name,
                    self.stderr.display()
                ),
            }
        }
    }

    /// Spawns a task; retried while the host cannot (its lease does not hold for a moment:
    /// a renewal held up by a loaded disk).
    fn spawn(&mut self, total: u64, log: &Path) -> TaskId {
        for _ in 0..20 {
            self.send(&format!("spawn {total} {} {STEP_MS}", log.display()));
            let line = self.expect("spawn", Duration::from_secs(10));
            if let Some(id) = line.strip_prefix("spawned ") {
                return id.parse().expect("a task id");
            }
            eprintln!("{}: {line}; retrying", self.name);
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{} cannot spawn tasks", self.name);
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own child, which we have not reaped.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "signal {signal} to {}", self.name);
    }

    /// SIGKILL, and reap it.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM: it leaves the cluster and exits 0. Returns (moved, left behind).
    fn terminate(mut self) -> (usize, usize) {
        self.signal(libc::SIGTERM);
        let line = self.expect("LEFT", Duration::from_secs(20));
        let status = self.child.wait().expect("reap");
        assert!(status.success(), "{} exited with {status}", self.name);
        let words: Vec<usize> = line
            .split(' ')
            .skip(1)
            .map(|w| w.parse().expect("a number"))
            .collect();
        (words[0], words[1])
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line another host than `host` wrote at or after `since_ms`.
fn first_elsewhere(log: &[TimedStep], host: &str, since_ms: u64) -> Option<TimedStep> {
    log.iter()
        .find(|l| l.host != host && l.at_ms >= since_ms)
        .cloned()
}

/// Three hosts with tasks of their own; one is SIGKILLed. Its tasks are orphaned when its
/// lease runs out, and the survivors take them over from their current checkpoints: each
/// runs again on a survivor within the lease plus a margin (the scan interval, the takeover
/// and slack for a loaded machine), and every task finishes once with the right digest. A
/// killed host writes nothing after its death, so no two hosts' lines may interleave at all.
#[test]
fn a_killed_hosts_tasks_run_again_on_the_survivors_within_the_lease() {
    let cluster = Cluster::new("proc-kill");
    let no_balance = ["--balance", "off"];
    let mut alpha = cluster.start("alpha", &no_balance, &[]);
    let mut beta = cluster.start("beta", &no_balance, &[]);
    let mut gamma = cluster.start("gamma", &no_balance, &[]);
    let mut tasks = Vec::new();
    for node in [&mut alpha, &mut beta, &mut gamma] {
        tasks.extend(cluster.spawn(node, 3, 150));
    }
    wait_for_steps(&tasks, 12);
    let doomed = cluster.owned_by("gamma");
    assert_eq!(
        doomed.len(),
        3,
        "gamma owns its 3 tasks: {:?}",
        cluster.owners()
    );
    let killed_ms = unix_ms();
    gamma.kill();

    let margin = Duration::from_secs(2);
    wait_for(
        "the survivors own every task of gamma",
        LEASE + margin,
        || cluster.all_taken_from(&doomed, "gamma"),
    );
    for t in tasks.iter().filter(|t| doomed.contains(&t.task)) {
        wait_for(
            &format!("task {} runs on a survivor", t.task),
            LEASE + margin,
            || first_elsewhere(&read_timed_log(&t.log), "gamma", killed_ms).is_some(),
        );
        let first = first_elsewhere(&read_timed_log(&t.log), "gamma", killed_ms).unwrap();
        let after = Duration::from_millis(first.at_ms - killed_ms);
        eprintln!(
            "task {} ran again on {} {after:?} after the kill",
            t.task, first.host
        );
        assert!(
            after <= LEASE + margin,
            "task {} ran again only {after:?} after gamma was killed",
            t.task
        );
    }
    cluster.all_finish(&tasks, Duration::from_secs(30));
    let runs = cluster.check_all(&tasks);
    for task in &doomed {
        let runs = &runs[task];
        assert!(
            runs.iter().any(|r| r.host == "gamma") && runs.last().unwrap().host != "gamma",
            "task {task} ran on gamma, then on a survivor: {runs:?}"
        );
    }
    drop((alpha, beta));
}

impl Node {
    /// The tasks this host's runtime says are running.
    fn running(&mut self) -> Vec<TaskId> {
        self.send("tasks");
        let line = self.expect("tasks", Duration::from_secs(10));
        line.split(' ')
            .skip(1)
            .filter_map(|entry| entry.split_once('='))
            .filter(|(_, status)| *status == "running")
            .map(|(task, _)| task.parse().expect("a task id"))
            .collect()
    }
}

impl Cluster {
    /// The current checkpoint key of each of `tasks`.
    fn currents(&self, tasks: &[TaskId]) -> HashMap<TaskId, String> {
        self.tasks()
            .into_iter()
            .filter(|e| tasks.contains(&e.task))
            .map(|e| (e.task, e.current.key))
            .collect()
    }

    /// Fails if a checkpoint that `host`'s incarnation `incarnation` wrote, and that was not
    /// current already in `before`, becomes current in the next `watch`: a late write of a
    /// host that lost its tasks.
    fn no_late_checkpoint(
        &self,
        tasks: &[TaskId],
        host: &str,
        incarnation: u64,
        before: &HashMap<TaskId, String>,
        watch: Duration,
    ) {
        let until = Instant::now() + watch;
        while Instant::now() < until {
            for (task, key) in self.currents(tasks) {
                let late = layout::parse(&key)
                    .is_some_and(|p| p.host == host && p.incarnation == incarnation)
                    && before.get(&task) != Some(&key);
                assert!(
                    !late,
                    "task {task}: checkpoint {key}, written by {host} after it lost the task, \
                     became current"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tasks `node` runs that the coordinator does not give it: copies it should have stopped.
    fn copies_not_owned(&self, node: &mut Node, tasks: &[TaskId]) -> Vec<TaskId> {
        let before = self.owned_by(&node.name);
        let running = node.running();
        let after = self.owned_by(&node.name);
        running
            .into_iter()
            .filter(|t| tasks.contains(t) && !before.contains(t) && !after.contains(t))
            .collect()
    }
}

/// What host `host` wrote in `log` at or after `since_ms` as the old copy of a task it lost:
/// its lines before it got the task back (a `took-over` or `arrived` event after `since_ms`).
fn old_copy_lines(
    log: &[TimedStep],
    events: &[Event],
    task: TaskId,
    host: &str,
    since_ms: u64,
) -> Vec<TimedStep> {
    let back: Vec<u64> = events
        .iter()
        .filter(|e| {
            e.host == host
                && e.task == task
                && e.at_ms >= since_ms
                && matches!(e.what.as_str(), "took-over" | "arrived")
        })
        .filter_map(|e| e.steps)
        .collect();
    log.iter()
        .filter(|l| l.host == host && l.at_ms >= since_ms)
        .take_while(|l| !back.contains(&l.step))
        .cloned()
        .collect()
}

/// Three hosts with two tasks each; one is SIGSTOPped and stays stopped until the others
/// have taken its tasks over (past its lease) and run them. When SIGCONT wakes it, it may
/// finish the step it was in (one line, the step after its last one, written after the new
/// owner's first), then its drivers find at their next safe point that its lease no longer
/// holds and stop: its copies run no further, and no checkpoint it writes late ever becomes
/// current. Its renewal is refused, so it joins again as a new incarnation, and the balancer
/// gives it work again.
#[test]
fn a_host_paused_past_its_lease_loses_its_tasks_stops_its_copies_and_rejoins() {
    let cluster = Cluster::new("proc-pause");
    let mut alpha = cluster.start("alpha", &[], &[]);
    let mut beta = cluster.start("beta", &[], &[]);
    let mut gamma = cluster.start("gamma", &[], &[]);
    let mut tasks = Vec::new();
    for node in [&mut alpha, &mut beta, &mut gamma] {
        tasks.extend(cluster.spawn(node, 2, 400));
    }
    wait_for_steps(&tasks, 12);
    let old = cluster.incarnation("gamma").expect("gamma is a member");
    gamma.signal(libc::SIGSTOP);
    let stopped_ms = unix_ms();
    // Read while its lease still holds: what gamma owned when it stopped.
    let paused = cluster.owned_by("gamma");
    assert!(
        !paused.is_empty(),
        "gamma owns tasks: {:?}",
        cluster.owners()
    );
    wait_for(
        "alpha and beta take over gamma's tasks",
        LEASE + Duration::from_secs(3),
        || cluster.all_taken_from(&paused, "gamma"),
    );
    for t in tasks.iter().filter(|t| paused.contains(&t.task)) {
        wait_for(
            &format!("task {} runs elsewhere", t.task),
            Duration::from_secs(5),
            || first_elsewhere(&read_timed_log(&t.log), "gamma", stopped_ms).is_some(),
        );
    }
    let before = cluster.currents(&paused);
    let woke_ms = unix_ms();
    eprintln!("gamma paused for {} ms", woke_ms - stopped_ms);
    gamma.signal(libc::SIGCONT);
    cluster.no_late_checkpoint(&paused, "gamma", old, &before, Duration::from_millis(1500));
    let stray = cluster.copies_not_owned(&mut gamma, &paused);
    assert!(
        stray.is_empty(),
        "gamma still runs {stray:?} 1.5 s after it woke, though it lost them"
    );
    wait_for(
        "gamma joins again as a new incarnation",
        Duration::from_secs(5),
        || cluster.incarnation("gamma").is_some_and(|n| n > old),
    );
    wait_for("gamma gets work again", Duration::from_secs(10), || {
        !cluster.owned_by("gamma").is_empty()
    });
    cluster.all_finish(&tasks, Duration::from_secs(40));
    cluster.check_all(&tasks);
    let events = cluster.events();
    for t in tasks.iter().filter(|t| paused.contains(&t.task)) {
        let log = read_timed_log(&t.log);
        let late = old_copy_lines(&log, &events, t.task, "gamma", woke_ms);
        let last_before = log
            .iter()
            .rfind(|l| l.host == "gamma" && l.at_ms < woke_ms)
            .map(|l| l.step);
        assert!(
            late.len() <= 1
                && late
                    .iter()
                    .all(|l| Some(l.step) == last_before.map(|s| s + 1)),
            "task {}: after it woke, gamma's old copy ran more than the step it was in \
             (its last step before the pause: {last_before:?}; after: {late:?})",
            t.task
        );
    }
    drop((alpha, beta, gamma));
}

/// Three hosts with two tasks each; one is cut off from the coordinator (every call it makes
/// fails as unavailable while a flag file exists) but keeps running. It cannot renew its
/// lease, so its tasks stop at their first safe point after the lease ran out *from its own
/// point of view* (at most a lease after the cut, as its last renewal was sent before it),
/// before the coordinator declares it dead; the others then take them over. Once the cut is
/// healed it joins again as a new incarnation and gets work again.
#[test]
fn a_host_cut_off_from_the_coordinator_stops_its_tasks_in_time_and_rejoins_when_healed() {
    let cluster = Cluster::new("proc-cut");
    let flag = cluster.dir.path().join("cut-gamma");
    let mut alpha = cluster.start("alpha", &[], &[]);
    let mut beta = cluster.start("beta", &[], &[]);
    let mut gamma = cluster.start("gamma", &[], &[(CUT_VAR, &flag)]);
    let mut tasks = Vec::new();
    for node in [&mut alpha, &mut beta, &mut gamma] {
        tasks.extend(cluster.spawn(node, 2, 400));
    }
    wait_for_steps(&tasks, 12);
    let old = cluster.incarnation("gamma").expect("gamma is a member");
    let cut = cluster.owned_by("gamma");
    assert!(!cut.is_empty(), "gamma owns tasks: {:?}", cluster.owners());
    let cut_ms = unix_ms();
    File::create(&flag).expect("cut gamma off");
    wait_for(
        "alpha and beta take over gamma's tasks",
        LEASE + Duration::from_secs(3),
        || cluster.all_taken_from(&cut, "gamma"),
    );
    for t in tasks.iter().filter(|t| cut.contains(&t.task)) {
        wait_for(
            &format!("task {} runs elsewhere", t.task),
            Duration::from_secs(5),
            || first_elsewhere(&read_timed_log(&t.log), "gamma", cut_ms).is_some(),
        );
    }
    // Still cut off for a while: gamma runs on, its copies stay stopped.
    std::thread::sleep(Duration::from_millis(500));
    assert!(gamma.is_running(), "gamma keeps running while cut off");
    let stray = cluster.copies_not_owned(&mut gamma, &cut);
    assert!(stray.is_empty(), "gamma still runs {stray:?} while cut off");
    let healed_ms = unix_ms();
    std::fs::remove_file(&flag).expect("heal the cut");
    eprintln!("gamma was cut off for {} ms", healed_ms - cut_ms);
    // Its steps after the cut: none later than a lease after it (plus scheduling slack).
    let slack = Duration::from_millis(300);
    for t in tasks.iter().filter(|t| cut.contains(&t.task)) {
        for line in read_timed_log(&t.log) {
            if line.host == "gamma" && (cut_ms..healed_ms).contains(&line.at_ms) {
                assert!(
                    line.at_ms <= cut_ms + (LEASE + slack).as_millis() as u64,
                    "task {}: gamma ran step {} {} ms after the cut, past its lease",
                    t.task,
                    line.step,
                    line.at_ms - cut_ms
                );
            }
        }
    }
    wait_for(
        "gamma joins again as a new incarnation",
        Duration::from_secs(5),
        || cluster.incarnation("gamma").is_some_and(|n| n > old),
    );
    wait_for("gamma gets work again", Duration::from_secs(10), || {
        !cluster.owned_by("gamma").is_empty()
    });
    cluster.all_finish(&tasks, Duration::from_secs(40));
    cluster.check_all(&tasks);
    drop((alpha, beta, gamma));
}

/// A host is SIGKILLed and restarted at once under the same name, as a supervisor would: its
/// old lease still holds, so the coordinator answers `NameInUse` and the new process waits it
/// out before it is ready; it then joins as the next incarnation. Its old tasks are taken over
/// from their checkpoints, and when more work arrives the balancer moves tasks to it.
#[test]
fn a_killed_host_restarted_under_its_name_waits_out_its_old_lease_and_gets_work() {
    let cluster = Cluster::new("proc-rejoin");
    // beta's lease is longer, so that it surely still holds when its restart asks to join.
    let long_lease = ["--lease-ms", "3000"];
    let mut alpha = cluster.start("alpha", &[], &[]);
    let beta = cluster.start("beta", &long_lease, &[]);
    let gamma = cluster.start("gamma", &[], &[]);
    let mut tasks = cluster.spawn(&mut alpha, 6, 300);
    wait_for(
        "the balancer gives beta work",
        Duration::from_secs(10),
        || !cluster.owned_by("beta").is_empty(),
    );
    wait_for_steps(&tasks, 10);
    let old = cluster.incarnation("beta").expect("beta is a member");
    let killed = Instant::now();
    beta.kill();
    let beta = cluster.start("beta", &long_lease, &[]);
    let ready_ms = unix_ms();
    let waited = killed.elapsed();
    let new = cluster.incarnation("beta").expect("beta is a member again");
    assert_eq!(new, old + 1, "beta joined as the next incarnation");
    let stderr = std::fs::read_to_string(&beta.stderr).unwrap();
    assert!(
        stderr.contains("an earlier lease of this name still holds"),
        "the restarted beta did not wait out its old lease (ready {waited:?} after the kill); \
         its log: {stderr}"
    );
    eprintln!("the restarted beta was ready {waited:?} after the kill");
    // More work on alpha: the balancer moves some of it to the new beta.
    tasks.extend(cluster.spawn(&mut alpha, 6, 200));
    wait_for(
        "the balancer moves a task to the new beta",
        Duration::from_secs(10),
        || {
            cluster
                .events()
                .iter()
                .any(|e| e.host == "beta" && e.what == "arrived" && e.at_ms >= ready_ms)
        },
    );
    cluster.all_finish(&tasks, Duration::from_secs(40));
    cluster.check_all(&tasks);
    drop((alpha, beta, gamma));
}

/// Churn: tasks spawned on one host are spread by the balancer while hosts join, one is
/// SIGKILLed while moves are in flight to a host that just joined, one leaves on SIGTERM
/// (moving its tasks away, or checkpointing what could not move and ending its lease at once),
/// more work arrives, and the killed host comes back. At the end every task finished exactly
/// once with the right digest, and its log shows no lost step, no step run twice except from
/// a takeover's checkpoint, and never two hosts at once.
///
/// It once saw two hosts run the same task (steps 138-140) after a disk stall ended every
/// lease at once: a takeover checked its lease, its claim stalled past that lease's end and
/// landed under the ended incarnation, and the host ran the task under its next one beside a
/// host that took it over again. Both sides now refuse such a takeover
/// (`folder::tests::a_takeover_whose_lease_ran_out_during_its_claim_is_refused`).
#[test]
fn churn_joins_leaves_and_a_kill_while_the_balancer_moves_tasks_lose_nothing() {
    let cluster = Cluster::new("proc-churn");
    let mut alpha = cluster.start("alpha", &[], &[]);
    let beta = cluster.start("beta", &[], &[]);
    let gamma = cluster.start("gamma", &[], &[]);
    let mut tasks = cluster.spawn(&mut alpha, 8, 250);
    wait_for(
        "the balancer spreads the tasks",
        Duration::from_secs(10),
        || !cluster.owned_by("beta").is_empty() && !cluster.owned_by("gamma").is_empty(),
    );
    let mut delta = cluster.start("delta", &[], &[]);
    // The balancer starts moving tasks to delta; beta dies in the middle of it.
    std::thread::sleep(Duration::from_millis(150));
    beta.kill();
    let (moved, left_behind) = gamma.terminate();
    eprintln!("gamma left: {moved} tasks moved, {left_behind} left behind");
    let epsilon = cluster.start("epsilon", &[], &[]);
    tasks.extend(cluster.spawn(&mut delta, 4, 150));
    std::thread::sleep(Duration::from_millis(500));
    let beta = cluster.start("beta", &[], &[]);
    cluster.all_finish(&tasks, Duration::from_secs(60));
    cluster.check_all(&tasks);
    let events = cluster.events();
    let count = |what: &str| events.iter().filter(|e| e.what == what).count();
    eprintln!(
        "events: {} balanced, {} drained, {} took over, {} arrived",
        count("balanced"),
        count("drained"),
        count("took-over"),
        count("arrived")
    );
    assert!(count("balanced") > 0, "the balancer moved tasks");
    assert!(
        count("took-over") > 0,
        "beta's tasks were taken over after it was killed"
    );
    drop((alpha, beta, delta, epsilon));
}
