//! Migration between hosts that are separate OS processes (`migrate_node`, a host driven on
//! stdin) on 127.0.0.1, with a fault injected at each step of the hand-off: the host SIGKILLs
//! itself there (source or destination, as the step belongs), stalls until the peer's timeout
//! fires, drops the connection, or corrupts the image. A killed host is restarted on its own
//! store, as a supervisor would, and the two hosts settle who owns the task from their durable
//! records. After each scenario:
//! - the task ran to completion exactly once and its output (a digest of every step, in
//!   order) is the one an uninterrupted run gives, delivered once (one outcome record in the
//!   two stores) and joinable from the host that spawned it;
//! - its own step log shows every step, alpha's runs strictly before beta's (never on two
//!   hosts at once), and no step run twice unless a host running it was killed (then steps
//!   after its last checkpoint may run again, the documented contract).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cosmic::runtime::migrate::{FaultAction, FaultPlan, FaultPoint};
use cosmic::{HostKey, PublicKey};
use cosmic_tests::counter::{check_log, expected_digest, read_log, TempDir};

const TOTAL: u64 = 300;

struct Node {
    name: &'static str,
    addr: String,
    store: PathBuf,
    peer: String,
    key_file: PathBuf,
    /// `--host-key FILE --trust PEER=KEY`: its own key pair and its peer's public key.
    identity: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The node built for this machine.
fn native() -> Command {
    Command::new(env!("CARGO_BIN_EXE_migrate_node"))
}

/// Two hosts, alpha and beta, as processes: a folder for their stores, the cluster key file,
/// each host's key pair file and the task's step log, and two free ports on 127.0.0.1.
struct Pair {
    dir: TempDir,
    key_file: PathBuf,
    /// The public keys of alpha and beta, read from their key files (made here, as an operator
    /// provisions hosts, so that each host can be told the other's key before either starts).
    alpha_key: PublicKey,
    beta_key: PublicKey,
    alpha_addr: String,
    beta_addr: String,
}

impl Pair {
    fn new(label: &str) -> Pair {
        let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), label);
        let key_file = dir.path().join("cluster.key");
        std::fs::write(&key_file, b"multi-process test cluster key, 32+ bytes").unwrap();
        // Hosts refuse key files other users can read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let owner_only = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&key_file, owner_only).unwrap();
        }
        let host_key = |name: &str| {
            HostKey::load_or_create(dir.path().join(format!("{name}.key")))
                .unwrap()
                .public_key()
        };
        let (alpha_key, beta_key) = (host_key("alpha"), host_key("beta"));
        Pair {
            dir,
            key_file,
            alpha_key,
            beta_key,
            alpha_addr: format!("127.0.0.1:{}", free_port()),
            beta_addr: format!("127.0.0.1:{}", free_port()),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("steps.log")
    }

    fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts host `name` ("alpha" or "beta") from `program`, the other one as its peer.
    fn start(
        &self,
        name: &'static str,
        program: Command,
        fault: Option<FaultPlan>,
        env: &[(&str, &str)],
    ) -> Node {
        let (addr, peer, trust) = if name == "alpha" {
            (
                &self.alpha_addr,
                format!("beta={}", self.beta_addr),
                format!("beta={}", self.beta_key),
            )
        } else {
            (
                &self.beta_addr,
                format!("alpha={}", self.alpha_addr),
                format!("alpha={}", self.alpha_key),
            )
        };
        let host_key = self.dir.path().join(format!("{name}.key"));
        let identity = vec![
            "--host-key".to_owned(),
            host_key.display().to_string(),
            "--trust".to_owned(),
            trust,
        ];
        Node::start(
            name,
            program,
            addr,
            &self.store(name),
            &peer,
            &self.key_file,
            &identity,
            fault,
            env,
        )
    }
}

impl Node {
    /// Starts `command` (the native node, or a foreign one under QEMU) as host `name`; `env`
    /// overrides the defaults (1 s hand-off timeouts, no fault).
    #[allow(clippy::too_many_arguments)]
    fn start(
        name: &'static str,
        mut command: Command,
        addr: &str,
        store: &Path,
        peer: &str,
        key_file: &Path,
        identity: &[String],
        fault: Option<FaultPlan>,
        env: &[(&str, &str)],
    ) -> Node {
        command
            .args(["--name", name, "--listen", addr, "--store"])
            .arg(store)
            .args(["--peer", peer])
            .args(identity)
            .env("COSMIC_CLUSTER_KEY_FILE", key_file)
            .env("COSMIC_MIGRATION_TIMEOUT_MS", "1000")
            .env_remove("COSMIC_FAULT")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(plan) = fault {
            command.env("COSMIC_FAULT", plan.to_string());
        }
        let mut child = command.spawn().expect("start migrate_node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            name,
            addr: addr.to_owned(),
            store: store.to_owned(),
            peer: peer.to_owned(),
            key_file: key_file.to_owned(),
            identity: identity.to_vec(),
            child,
            stdin,
            lines,
        };
        let key = node.expect("key ");
        let ready = node.expect("ready");
        eprintln!("{name}: {key}; {ready}");
        node
    }

    fn restart(self) -> Node {
        let Node {
            name,
            addr,
            store,
            peer,
            key_file,
            identity,
            mut child,
            ..
        } = self;
        let _ = child.wait();
        Node::start(
            name,
            native(),
            &addr,
            &store,
            &peer,
            &key_file,
            &identity,
            None,
            &[],
        )
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write a command");
    }

    /// The next line starting with `prefix` (others are skipped), or panics after 60 s.
    fn expect(&mut self, prefix: &str) -> String {
        self.try_expect(prefix, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{}: no `{prefix}` line", self.name))
    }

    fn try_expect(&mut self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Whether the process has exited (after a kill it injected).
    fn has_died(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn steps(&mut self, task: &str) -> u64 {
        self.send(&format!("steps {task}"));
        let line = self.expect("steps ");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    fn quit(mut self) {
        self.send("quit");
        let _ = self.child.wait();
    }
}

/// The task id of a `spawned ID` line.
fn spawned_task(line: &str) -> String {
    line.split(' ').nth(1).expect("spawned ID").to_owned()
}

fn outcome_files(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            count += outcome_files(&path);
        } else if path.file_name().is_some_and(|n| n == "outcome") {
            count += 1;
        }
    }
    count
}

/// Runs one scenario; returns what the source's `migrate` said (or "killed").
fn scenario(plan: Option<FaultPlan>) -> String {
    let label = plan.map_or("none".to_owned(), |p| p.to_string());
    let pair = Pair::new("migrate-processes");
    let on_source = plan.is_some_and(|p| p.point.on_source());
    let mut alpha = pair.start("alpha", native(), plan.filter(|_| on_source), &[]);
    let mut beta = pair.start("beta", native(), plan.filter(|_| !on_source), &[]);
    let log = pair.log();
    // 1 MiB of state: the image takes many frames, so mid-transfer faults fall mid-stream.
    alpha.send(&format!("spawn {TOTAL} {} 2 1048576", log.display()));
    let task = spawned_task(&alpha.expect("spawned "));
    while alpha.steps(&task) < 30 {
        std::thread::sleep(Duration::from_millis(5));
    }

    alpha.send(&format!("migrate {task} beta"));
    let mut killed = false;
    let said = loop {
        if let Some(line) = alpha.try_expect("", Duration::from_millis(50)) {
            if line.starts_with("migrated") || line.starts_with("failed") {
                break line;
            }
        }
        if alpha.has_died() {
            killed = true;
            alpha = alpha.restart();
            // Give the destination time to notice if the source had died mid-hand-off.
            break "source killed".to_owned();
        }
        if beta.has_died() {
            killed = true;
            beta = beta.restart();
            // The source's answer comes once it notices.
        }
    };
    // A destination killed after the source answered (late, e.g. after a commit) restarts too.
    std::thread::sleep(Duration::from_millis(50));
    if beta.has_died() {
        killed = true;
        beta = beta.restart();
    }

    alpha.send(&format!("join {task}"));
    let joined = alpha.expect("join");
    let expected = format!("joined {task} {}", expected_digest(TOTAL));
    assert_eq!(joined, expected, "{label}: said `{said}`");
    alpha.send(&format!("locate {task}"));
    let located = alpha.expect("locate");
    assert!(located.contains(" completed "), "{label}: {located}");

    let entries = read_log(&log);
    let runs = check_log(&entries, TOTAL, killed).unwrap_or_else(|e| panic!("{label}: {e}"));
    let hosts: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    let first_beta = hosts
        .iter()
        .position(|h| *h == "beta")
        .unwrap_or(hosts.len());
    assert!(
        hosts[first_beta..].iter().all(|h| *h == "beta"),
        "{label}: alpha ran the task after beta did: {runs:?}"
    );
    let outcomes = outcome_files(&pair.store("alpha")) + outcome_files(&pair.store("beta"));
    assert_eq!(outcomes, 1, "{label}: outcome recorded {outcomes} times");
    let ended_on = hosts.last().copied().unwrap_or("?");
    eprintln!("{label}: migrate said `{said}`; ran {runs:?}; ended on {ended_on}");
    alpha.quit();
    beta.quit();
    format!("{said} -> ended on {ended_on}")
}

#[test]
fn a_move_between_processes_without_faults() {
    let said = scenario(None);
    assert!(said.starts_with("migrated"), "{said}");
    assert!(said.ends_with("ended on beta"), "{said}");
}

#[test]
fn killing_either_host_at_any_step_loses_nothing_and_runs_nothing_twice() {
    let mut summary = Vec::new();
    for point in FaultPoint::ALL {
        let plan = FaultPlan {
            point,
            action: FaultAction::Kill,
        };
        summary.push(format!("{plan}: {}", scenario(Some(plan))));
    }
    for line in &summary {
        println!("{line}");
    }
}

#[test]
fn stalls_drops_and_corruption_between_processes() {
    for plan in [
        "dest-after-prepare=stall",
        "dest-mid-transfer=stall",
        "source-after-prepared=drop",
        "dest-after-commit=drop",
        "source-before-offer=corrupt",
    ] {
        let plan: FaultPlan = plan.parse().unwrap();
        let said = scenario(Some(plan));
        println!("{plan}: {said}");
    }
}

/// The process's peak resident memory (`VmHWM`), in MiB.
fn peak_mib(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// Bounded resources: a large state moves without either host holding more than about two
/// copies of it (the source: the state and its image; the destination: the image and the
/// decoded state). 256 MiB by default; `COSMIC_LARGE_MIB=1024` for the 1 GiB case.
#[test]
fn a_large_state_moves_within_about_two_copies_on_each_side() {
    let mib: u64 = std::env::var("COSMIC_LARGE_MIB").map_or(256, |v| v.parse().unwrap());
    let pair = Pair::new("migrate-large");
    // Checkpoints only at spawn (and on arrival): the peaks below are the move's.
    let env = [
        ("COSMIC_CHECKPOINT_STEPS", "1000000"),
        ("COSMIC_MIGRATION_TIMEOUT_MS", "30000"),
    ];
    let mut alpha = pair.start("alpha", native(), None, &env);
    let beta = pair.start("beta", native(), None, &env);
    let log = pair.log();
    // Debug builds move a GiB slowly: wait as long as it takes (up to 10 minutes).
    let patience = Duration::from_secs(600);
    // Just under the size in MiB, so that 1024 fits the default 1 GiB image limit.
    let ballast = (mib << 20) - (64 << 10);
    alpha.send(&format!("spawn 60 {} 20 {ballast}", log.display()));
    let spawned = alpha.try_expect("spawned ", patience).expect("spawned");
    let task = spawned_task(&spawned);
    let started = Instant::now();
    alpha.send(&format!("migrate {task} beta"));
    let said = alpha
        .try_expect("", patience)
        .expect("an answer to migrate");
    assert!(said.starts_with("migrated"), "{said}");
    let took = started.elapsed();
    let (alpha_peak, beta_peak) = (peak_mib(&alpha), peak_mib(&beta));
    alpha.send(&format!("join {task}"));
    assert_eq!(
        alpha.try_expect("join", patience).expect("joined"),
        format!("joined {task} {}", expected_digest(60))
    );
    println!(
        "{mib} MiB state: {said} in {took:?}; peak resident memory: alpha {alpha_peak} MiB, beta {beta_peak} MiB"
    );
    let bound = 2 * mib + 100;
    assert!(
        alpha_peak <= bound,
        "alpha peaked at {alpha_peak} MiB (> {bound})"
    );
    assert!(
        beta_peak <= bound,
        "beta peaked at {beta_peak} MiB (> {bound})"
    );
    alpha.quit();
    beta.quit();
}

/// Hosts of different ISAs: alpha is this machine's (x86-64, little-endian) node; beta is the
/// same node cross-built for big-endian s390x and for aarch64, run under QEMU. The task moves
/// alpha -> beta -> alpha; its state crosses byte orders both ways and it finishes with the
/// digest of an uninterrupted run, every step logged once.
///
/// Needs the foreign nodes: `COSMIC_FOREIGN_NODES=qemu-s390x:PATH,qemu-aarch64:PATH` (`.ci/run`
/// builds them with `scripts/cross-test.sh` and runs this test).
#[test]
#[ignore = "needs cross-built nodes (COSMIC_FOREIGN_NODES); .ci/run runs it"]
fn a_task_moves_to_another_isa_and_back() {
    let nodes = std::env::var("COSMIC_FOREIGN_NODES")
        .expect("COSMIC_FOREIGN_NODES=qemu-s390x:PATH,... (see the test's docs)");
    for spec in nodes.split(',') {
        let (runner, path) = spec.split_once(':').expect("RUNNER:PATH");
        let pair = Pair::new("migrate-cross-isa");
        // Emulated hosts are slow: generous hand-off deadlines.
        let env = [("COSMIC_MIGRATION_TIMEOUT_MS", "60000")];
        let mut alpha = pair.start("alpha", native(), None, &env);
        let mut foreign = Command::new(runner);
        foreign.arg(path);
        let mut beta = pair.start("beta", foreign, None, &env);
        let log = pair.log();
        alpha.send(&format!("spawn 120 {} 5 4096", log.display()));
        let task = spawned_task(&alpha.expect("spawned "));
        while alpha.steps(&task) < 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
        alpha.send(&format!("migrate {task} beta"));
        let there = alpha.expect("migrated");
        // Unlike machines: the encoding chosen is portable, both ways.
        assert!(there.ends_with(" portable"), "{runner}: {there}");
        while beta.steps(&task) < 60 {
            std::thread::sleep(Duration::from_millis(20));
        }
        beta.send(&format!("migrate {task} alpha"));
        let back = beta.expect("migrated");
        assert!(back.ends_with(" portable"), "{runner}: {back}");
        alpha.send(&format!("join {task}"));
        assert_eq!(
            alpha.expect("join"),
            format!("joined {task} {}", expected_digest(120)),
            "{runner}"
        );
        let runs =
            check_log(&read_log(&log), 120, false).unwrap_or_else(|e| panic!("{runner}: {e}"));
        let hosts: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(hosts, ["alpha", "beta", "alpha"], "{runner}");
        println!("{runner}: {there}, {back}; ran {runs:?}");
        alpha.quit();
        beta.quit();
    }
}

/// Between two hosts of one foreign kind (both the same cross-built binary under QEMU), a move
/// is native; the task still runs every step once and ends with the native digest.
///
/// Needs `COSMIC_FOREIGN_NODES` as [`a_task_moves_to_another_isa_and_back`] does.
#[test]
#[ignore = "needs cross-built nodes (COSMIC_FOREIGN_NODES); .ci/run runs it"]
fn a_move_between_two_foreign_hosts_of_one_kind_is_native() {
    let nodes = std::env::var("COSMIC_FOREIGN_NODES")
        .expect("COSMIC_FOREIGN_NODES=qemu-s390x:PATH,... (see the test's docs)");
    let only = std::env::var("COSMIC_NATIVE_PAIR").ok();
    for spec in nodes.split(',') {
        let (runner, path) = spec.split_once(':').expect("RUNNER:PATH");
        if only.as_deref().is_some_and(|only| !runner.contains(only)) {
            continue;
        }
        let pair = Pair::new("migrate-native-foreign");
        let env = [("COSMIC_MIGRATION_TIMEOUT_MS", "60000")];
        let foreign = || {
            let mut command = Command::new(runner);
            command.arg(path);
            command
        };
        let mut alpha = pair.start("alpha", foreign(), None, &env);
        let mut beta = pair.start("beta", foreign(), None, &env);
        let log = pair.log();
        alpha.send(&format!("spawn 60 {} 5 4096", log.display()));
        let task = spawned_task(&alpha.expect("spawned "));
        while alpha.steps(&task) < 10 {
            std::thread::sleep(Duration::from_millis(5));
        }
        alpha.send(&format!("migrate {task} beta"));
        let there = alpha.expect("migrated");
        assert!(there.ends_with(" native"), "{runner}: {there}");
        beta.send(&format!("join {task}"));
        assert_eq!(
            beta.expect("join"),
            format!("joined {task} {}", expected_digest(60)),
            "{runner}"
        );
        let runs =
            check_log(&read_log(&log), 60, false).unwrap_or_else(|e| panic!("{runner}: {e}"));
        let hosts: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(hosts, ["alpha", "beta"], "{runner}");
        println!("{runner}: {there}; ran {runs:?}");
        alpha.quit();
        beta.quit();
    }
}
