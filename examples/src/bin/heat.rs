//! The main demonstration: a heat-diffusion simulation checkpointed into a local folder,
//! killed with SIGKILL while it runs, restarted, and checked to end with the same answer as a
//! run that was never interrupted.
//!
//! A second phase moves the simulation between two hosts, "alpha" and "beta": separate
//! processes on 127.0.0.1 with their own stores, a shared cluster key, and each its own key
//! pair (`DIR/alpha.key`, `DIR/beta.key`, made on first use), whose public keys each host is
//! told to trust for the other's name. Alpha starts the
//! task and moves it to beta while it runs; beta is SIGKILLed and restarted, resumes the task
//! from its own checkpoint, and alpha, which only keeps a forwarding entry, joins the task and
//! gets the same answer again.
//!
//! ```text
//! cargo run --release -p cosmic-examples --bin heat             # the demonstration
//! cargo run --release -p cosmic-examples --bin heat -- --help   # options
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use cosmic::{ClusterKey, FileStore, HostKey, Policy, PublicKey, Runtime, TaskId, TaskStatus};
use cosmic_examples::heat::{HeatPlate, HeatResult};

struct Options {
    dir: PathBuf,
    size: u32,
    steps: u64,
    sweeps: u32,
    kills: u32,
    worker: bool,
    /// Set for the processes of the migration phase: run as the host of this name.
    host: Option<String>,
    listen: Option<String>,
    peers: Vec<(String, String)>,
    /// The host's own key pair file (made if absent).
    host_key: Option<PathBuf>,
    /// Peers' public keys, trusted for their names.
    trust: Vec<(String, PublicKey)>,
}

const USAGE: &str = "usage: heat [--dir DIR] [--size CELLS] [--steps N] [--sweeps N] [--kills N]

Runs a heat-diffusion task with checkpoints in DIR (default ./checkpoints/heat), kills the
process running it N times (default 3) with SIGKILL, restarts it each time, and checks that the
final answer equals an uninterrupted run's. Then moves a run between two host processes on
127.0.0.1, kills and restarts the one it moved to, and checks the answer again.";

fn parse() -> Result<Options, String> {
    let mut options = Options {
        dir: PathBuf::from("checkpoints/heat"),
        size: 192,
        steps: 3000,
        sweeps: 8,
        kills: 3,
        worker: false,
        host: None,
        listen: None,
        peers: Vec::new(),
        host_key: None,
        trust: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => options.dir = PathBuf::from(value("--dir")?),
            "--size" => {
                options.size = value("--size")?
                    .parse()
                    .map_err(|e| format!("--size: {}", cosmic::ErrorChain(&e)))?
            }
            "--steps" => {
                options.steps = value("--steps")?
                    .parse()
                    .map_err(|e| format!("--steps: {}", cosmic::ErrorChain(&e)))?
            }
            "--sweeps" => {
                options.sweeps = value("--sweeps")?
                    .parse()
                    .map_err(|e| format!("--sweeps: {}", cosmic::ErrorChain(&e)))?
            }
            "--kills" => {
                options.kills = value("--kills")?
                    .parse()
                    .map_err(|e| format!("--kills: {}", cosmic::ErrorChain(&e)))?
            }
            "--worker" => options.worker = true,
            "--host" => options.host = Some(value("--host")?),
            "--listen" => options.listen = Some(value("--listen")?),
            "--peer" => {
                let peer = value("--peer")?;
                let (name, addr) = peer.split_once('=').ok_or("--peer needs NAME=ADDR")?;
                options.peers.push((name.to_owned(), addr.to_owned()));
            }
            "--host-key" => options.host_key = Some(PathBuf::from(value("--host-key")?)),
            "--trust" => {
                let trust = value("--trust")?;
                let (name, key) = trust
                    .split_once('=')
                    .ok_or("--trust needs NAME=PUBLIC_KEY")?;
                let key = key
                    .parse()
                    .map_err(|e| format!("--trust {name}: {}", cosmic::ErrorChain(&e)))?;
                options.trust.push((name.to_owned(), key));
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    if options.size < 3 {
        return Err("--size must be at least 3".to_owned());
    }
    Ok(options)
}

fn main() -> ExitCode {
    cosmic_examples::logging::init();
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = if let Some(name) = &options.host {
        host(&options, name)
    } else if options.worker {
        worker(&options)
    } else {
        demonstrate(&options)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("heat: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs (or resumes) the simulation in this process, reporting progress on stdout.
fn worker(options: &Options) -> Result<(), String> {
    tokio_runtime()?.block_on(async {
        let store =
            FileStore::open(&options.dir).map_err(|e| cosmic::ErrorChain(&e).to_string())?;
        let rt = Runtime::builder()
            .host("worker")
            .store(store)
            .checkpoint(Policy::every(Duration::from_millis(50)))
            .register::<HeatPlate>()
            .build()
            .await
            .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
        let recovery = rt.recovery();
        let handle = match recovery.resumed.first() {
            Some((task, from)) => {
                println!(
                    "resumed task {task} from checkpoint {} at step {}",
                    from.seq, from.steps
                );
                rt.handle::<HeatResult>(*task)
                    .map_err(|e| cosmic::ErrorChain(&e).to_string())?
            }
            None => match recovery.finished.first() {
                Some(task) => rt
                    .handle::<HeatResult>(*task)
                    .map_err(|e| cosmic::ErrorChain(&e).to_string())?,
                None => {
                    let plate = HeatPlate::new(options.size, options.steps, options.sweeps);
                    let handle = rt
                        .spawn(plate)
                        .await
                        .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
                    println!("spawned task {}", handle.id());
                    handle
                }
            },
        };
        let progress = {
            let handle = handle.clone();
            let rt = rt.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let durable = rt.stats().checkpoints_written;
                    println!("progress {} {durable}", handle.steps_completed());
                }
            })
        };
        let result = handle
            .join()
            .await
            .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
        progress.abort();
        println!(
            "done {} {:016x} {}",
            result.steps, result.digest, result.mean
        );
        Ok(())
    })
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {}", cosmic::ErrorChain(&e)))
}

/// The demonstration: reference run, a run that is killed and restarted, then a run that
/// moves between two hosts.
fn demonstrate(options: &Options) -> Result<(), String> {
    println!(
        "cosmic heat demo: {0}x{0} plate, {1} steps of {2} sweeps, checkpoints in {3}",
        options.size,
        options.steps,
        options.sweeps,
        options.dir.display()
    );
    let started = Instant::now();
    let reference = HeatPlate::new(options.size, options.steps, options.sweeps).run_uninterrupted();
    println!(
        "uninterrupted reference: digest {:016x}, mean {:.6} ({:.1?})",
        reference.digest,
        reference.mean,
        started.elapsed()
    );
    if options.dir.exists() {
        std::fs::remove_dir_all(&options.dir)
            .map_err(|e| format!("cannot clear {}: {e}", options.dir.display()))?;
    }
    let exe = std::env::current_exe().map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    kill_and_restart(&exe, options, &reference)?;
    migrate_between_hosts(&exe, options, &reference)
}

/// The first phase: kills the worker `options.kills` times and restarts it each time.
fn kill_and_restart(exe: &Path, options: &Options, reference: &HeatResult) -> Result<(), String> {
    let started = Instant::now();
    let mut killed = 0;
    for round in 1..=options.kills + 1 {
        let last_round = round == options.kills + 1;
        // Kill each run after it made some progress of its own; let the last one finish.
        let kill_after = options.steps * u64::from(round) / u64::from(options.kills + 2);
        match run_worker(exe, options, (!last_round).then_some(kill_after))? {
            WorkerEnd::Killed { at_step } => {
                killed += 1;
                println!("round {round}: SIGKILLed the worker at step ~{at_step}")
            }
            WorkerEnd::Done(line) => {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let digest = parts.get(2).copied().unwrap_or("");
                println!("round {round}: worker finished: {line}");
                let expected = format!("{:016x}", reference.digest);
                if digest != expected {
                    return Err(format!(
                        "final digest {digest} differs from the uninterrupted run's {expected}"
                    ));
                }
                println!(
                    "same final answer as the uninterrupted run after {killed} kills ({:.1?}): OK",
                    started.elapsed()
                );
                return Ok(());
            }
        }
    }
    Err("the worker never finished".to_owned())
}

fn parse_progress(text: &str) -> Option<(u64, u64)> {
    let (steps, durable) = text.split_once(' ')?;
    Some((steps.parse().ok()?, durable.parse().ok()?))
}

enum WorkerEnd {
    Killed { at_step: u64 },
    Done(String),
}

fn run_worker(exe: &Path, options: &Options, kill_after: Option<u64>) -> Result<WorkerEnd, String> {
    let mut child = Command::new(exe)
        .args(["--worker", "--dir"])
        .arg(&options.dir)
        .args(["--size", &options.size.to_string()])
        .args(["--steps", &options.steps.to_string()])
        .args(["--sweeps", &options.sweeps.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the worker: {}", cosmic::ErrorChain(&e)))?;
    let stdout = child.stdout.take().ok_or("no worker stdout")?;
    let mut first_durable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| cosmic::ErrorChain(&e).to_string())?;
        if line.starts_with("resumed") || line.starts_with("spawned") {
            println!("  worker: {line}");
        }
        if let Some((step, durable)) = line.strip_prefix("progress ").and_then(parse_progress) {
            // Kill once the run passed its mark and made at least one checkpoint of its own
            // durable, so that every round shows progress that survives the kill.
            let baseline = *first_durable.get_or_insert(durable);
            if kill_after.is_some_and(|limit| step >= limit && durable > baseline) {
                // Child::kill sends SIGKILL: no chance to clean up or flush anything.
                child
                    .kill()
                    .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
                let _ = child.wait();
                return Ok(WorkerEnd::Killed { at_step: step });
            }
        }
        if line.starts_with("done ") {
            let _ = child.wait();
            return Ok(WorkerEnd::Done(line));
        }
    }
    let status = child
        .wait()
        .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    Err(format!("the worker exited without finishing ({status})"))
}

// The second phase: migration between two hosts, each a process running `heat --host`.

/// Names the cluster key file for the hosts: a key on a command line is visible to every user
/// of the machine.
const KEY_FILE_VAR: &str = "COSMIC_CLUSTER_KEY_FILE";

/// How long the coordinator waits for any one answer from a host before giving up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a cosmic host, driven by one command a line on stdin, answering on stdout:
/// ```text
/// (at start)         resumed ID SEQ STEPS (for each task resumed from a checkpoint), then ready
/// spawn           -> spawned ID
/// migrate ID HOST -> migrated ID STEP MICROS | failed ID REASON
/// join ID         -> joined ID STEPS DIGEST MEAN | join-failed ID REASON
/// quit            -> exits (so does the end of stdin, when the coordinator dies)
/// ```
/// Every 20 ms it also prints `progress ID STEPS DURABLE` for each task running here, and
/// `ended ID` once a task ended here.
fn host(options: &Options, name: &str) -> Result<(), String> {
    let tokio = tokio_runtime()?;
    let rt = tokio.block_on(start_host(options, name))?;
    for (task, from) in rt.recovery().resumed {
        println!("resumed {task} {} {}", from.seq, from.steps);
    }
    println!("ready");
    tokio.spawn(report_progress(rt.clone()));
    // Commands run one at a time on this thread, while tokio's threads run the task.
    for line in std::io::stdin().lines() {
        let line = line.map_err(|e| cosmic::ErrorChain(&e).to_string())?;
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["spawn"] => {
                let plate = HeatPlate::new(options.size, options.steps, options.sweeps);
                let handle = tokio
                    .block_on(rt.spawn(plate))
                    .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
                println!("spawned {}", handle.id());
            }
            ["migrate", task, to] => match tokio.block_on(migrate(&rt, task, to)) {
                Ok((step, took)) => println!("migrated {task} {step} {}", took.as_micros()),
                Err(reason) => println!("failed {task} {reason}"),
            },
            ["join", task] => match tokio.block_on(join(&rt, task)) {
                Ok(result) => println!(
                    "joined {task} {} {:016x} {}",
                    result.steps, result.digest, result.mean
                ),
                Err(reason) => println!("join-failed {task} {reason}"),
            },
            ["quit"] => break,
            _ => return Err(format!("unknown command `{line}`")),
        }
    }
    Ok(())
}

async fn start_host(options: &Options, name: &str) -> Result<Runtime, String> {
    let listen = options.listen.as_deref().ok_or("--host needs --listen")?;
    let key_file = std::env::var_os(KEY_FILE_VAR).ok_or(format!("{KEY_FILE_VAR} is not set"))?;
    let key = ClusterKey::from_file(key_file).map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    let key_file = options.host_key.as_ref().ok_or("--host needs --host-key")?;
    let host_key =
        HostKey::load_or_create(key_file).map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    let store = FileStore::open(&options.dir).map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    let mut builder = Runtime::builder()
        .host(name)
        .store(store)
        // The task spends only a few hundred milliseconds on each host: checkpoint often
        // enough that beta makes checkpoints of its own before it is killed.
        .checkpoint(Policy::every(Duration::from_millis(50)))
        .listen(listen)
        .cluster_key(key)
        .host_key(host_key)
        .register::<HeatPlate>();
    for (peer, addr) in &options.peers {
        builder = builder.peer(peer, addr);
    }
    for (peer, key) in &options.trust {
        builder = builder.trust_peer(peer, *key);
    }
    builder
        .build()
        .await
        .map_err(|e| cosmic::ErrorChain(&e).to_string())
}

/// Moves `task` to the host `to`; returns the step it moved at and how long the move took.
async fn migrate(rt: &Runtime, task: &str, to: &str) -> Result<(u64, Duration), String> {
    let handle = rt
        .handle::<HeatResult>(parse_task(task)?)
        .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    let started = Instant::now();
    handle
        .migrate_to(to)
        .await
        .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    Ok((handle.steps_completed(), started.elapsed()))
}

/// Waits for `task`'s result; if the task moved away, the join follows it.
async fn join(rt: &Runtime, task: &str) -> Result<HeatResult, String> {
    let handle = rt
        .handle::<HeatResult>(parse_task(task)?)
        .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    handle
        .join()
        .await
        .map_err(|e| cosmic::ErrorChain(&e).to_string())
}

fn parse_task(task: &str) -> Result<TaskId, String> {
    task.parse()
        .map_err(|_| format!("`{task}` is not a task id"))
}

async fn report_progress(rt: Runtime) {
    let mut ended = std::collections::HashSet::new();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let durable = rt.stats().checkpoints_written;
        for (task, status) in rt.tasks() {
            if status == TaskStatus::Running {
                if let Ok(handle) = rt.handle::<HeatResult>(task) {
                    println!("progress {task} {} {durable}", handle.steps_completed());
                }
            } else if status.is_finished() && ended.insert(task) {
                println!("ended {task}");
            }
        }
    }
}

/// The second phase: alpha starts the task and moves it to beta while it runs; beta is
/// killed and restarted; alpha joins the task and must get the reference's answer.
fn migrate_between_hosts(
    exe: &Path,
    options: &Options,
    reference: &HeatResult,
) -> Result<(), String> {
    let started = Instant::now();
    for name in ["alpha", "beta"] {
        let store = options.dir.join(name);
        if store.exists() {
            std::fs::remove_dir_all(&store)
                .map_err(|e| format!("cannot clear {}: {e}", store.display()))?;
        }
    }
    let key_file = cosmic_examples::keys::write_cluster_key(&options.dir)?;
    // Each host's own key pair, made here on first use as an operator would provision the
    // hosts, so that each can be told the other's public key before either starts.
    let host_key = |name: &str| {
        let path = options.dir.join(format!("{name}.key"));
        HostKey::load_or_create(&path)
            .map(|key| (path, key.public_key()))
            .map_err(|e| cosmic::ErrorChain(&e).to_string())
    };
    let (alpha_key_file, alpha_key) = host_key("alpha")?;
    let (beta_key_file, beta_key) = host_key("beta")?;
    let [alpha_addr, beta_addr] = free_addrs()?;
    println!(
        "migration between two hosts: alpha on {alpha_addr}, beta on {beta_addr}, stores in {}",
        options.dir.join("{alpha,beta}").display()
    );
    println!("  host keys: alpha {alpha_key}, beta {beta_key} (each trusts the other's)");
    let start = |name| {
        let identity = if name == "alpha" {
            HostIdentity {
                listen: &alpha_addr,
                peer: format!("beta={beta_addr}"),
                key_file: &alpha_key_file,
                trust: format!("beta={beta_key}"),
            }
        } else {
            HostIdentity {
                listen: &beta_addr,
                peer: format!("alpha={alpha_addr}"),
                key_file: &beta_key_file,
                trust: format!("alpha={alpha_key}"),
            }
        };
        HostProcess::start(exe, options, name, &identity, &key_file)
    };
    let mut alpha = start("alpha")?;
    let mut beta = start("beta")?;

    alpha.send("spawn")?;
    let task: String = field(&alpha.expect(|line| line.starts_with("spawned "))?, 1)?;
    println!("  alpha: spawned task {task}");

    // Move the task while it runs, about a third of the way through.
    alpha.wait_for_progress(|step, _| step >= options.steps / 3)?;
    alpha.send(&format!("migrate {task} beta"))?;
    let answer =
        alpha.expect(|line| line.starts_with("migrated ") || line.starts_with("failed "))?;
    if answer.starts_with("failed ") {
        return Err(format!("alpha could not move the task: {answer}"));
    }
    let moved_at: u64 = field(&answer, 2)?;
    let took = Duration::from_micros(field(&answer, 3)?);
    println!("migration: moved task {task} from alpha to beta at step {moved_at} in {took:.1?}");

    // As in the first phase, kill beta once a checkpoint of its own made its progress durable.
    let kill_after = options.steps * 2 / 3;
    let mut baseline = None;
    let killed_at = beta.wait_for_progress(|step, durable| {
        step >= kill_after && durable > *baseline.get_or_insert(durable)
    })?;
    beta.kill();
    beta = start("beta")?;
    let resumed = beta
        .startup
        .iter()
        .find(|line| line.starts_with(&format!("resumed {task} ")))
        .ok_or(format!("beta did not resume task {task} after its restart"))?;
    let (seq, from_step): (u64, u64) = (field(resumed, 2)?, field(resumed, 3)?);
    println!(
        "migration: SIGKILLed beta at step ~{killed_at}; restarted: resumed task {task} from checkpoint {seq} at step {from_step}"
    );

    // Alpha only keeps a forwarding entry for the task: its join follows the task to beta.
    alpha.send(&format!("join {task}"))?;
    let joined =
        alpha.expect(|line| line.starts_with("joined ") || line.starts_with("join-failed "))?;
    println!("  alpha: {joined}");
    let digest: String = field(&joined, 3)?;
    let expected = format!("{:016x}", reference.digest);
    if digest != expected {
        return Err(format!(
            "final digest {digest} differs from the uninterrupted run's {expected}"
        ));
    }
    println!(
        "migration: joined from alpha (forwarded to beta): same final answer as the uninterrupted run: OK ({:.1?})",
        started.elapsed()
    );
    alpha.quit();
    beta.quit();
    Ok(())
}

/// The `index`th word of a host's answer.
fn field<T: std::str::FromStr>(line: &str, index: usize) -> Result<T, String> {
    line.split_whitespace()
        .nth(index)
        .and_then(|word| word.parse().ok())
        .ok_or(format!("unexpected answer from a host: `{line}`"))
}

/// Two free addresses on 127.0.0.1. Both listeners stay open until both ports are known, so
/// the two differ; they close before the hosts bind them.
fn free_addrs() -> Result<[String; 2], String> {
    let bind = || {
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| cosmic::ErrorChain(&e).to_string())
    };
    let (first, second) = (bind()?, bind()?);
    let addr = |listener: &std::net::TcpListener| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .map_err(|e| cosmic::ErrorChain(&e).to_string())
    };
    Ok([addr(&first)?, addr(&second)?])
}

/// Writes a fresh cluster key into `dir/cluster.key`, readable only by its owner.
/// Where a host of the migration phase listens, its peer, its key pair file, and the public
/// key it trusts for its peer.
struct HostIdentity<'a> {
    listen: &'a str,
    /// `NAME=ADDR`.
    peer: String,
    key_file: &'a Path,
    /// `NAME=PUBLIC_KEY`.
    trust: String,
}

/// A host process of the migration phase. Dropping it kills the process, so that no host
/// outlives the demonstration when a step of it fails.
struct HostProcess {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// What it printed before `ready`.
    startup: Vec<String>,
}

impl HostProcess {
    fn start(
        exe: &Path,
        options: &Options,
        name: &'static str,
        identity: &HostIdentity<'_>,
        key_file: &Path,
    ) -> Result<HostProcess, String> {
        let mut child = Command::new(exe)
            .args(["--host", name, "--listen", identity.listen])
            .args(["--peer", &identity.peer, "--trust", &identity.trust])
            .arg("--host-key")
            .arg(identity.key_file)
            .arg("--dir")
            .arg(options.dir.join(name))
            .args(["--size", &options.size.to_string()])
            .args(["--steps", &options.steps.to_string()])
            .args(["--sweeps", &options.sweeps.to_string()])
            .env(KEY_FILE_VAR, key_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {}", cosmic::ErrorChain(&e)))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no pipes to {name}"));
        };
        // A thread reads the host's lines, so that waiting for one can time out.
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut host = HostProcess {
            name,
            child,
            stdin,
            lines,
            startup: Vec::new(),
        };
        loop {
            match host.next_line()? {
                line if line == "ready" => break,
                line => host.startup.push(line),
            }
        }
        Ok(host)
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        writeln!(self.stdin, "{command}").map_err(|e| format!("cannot write to {}: {e}", self.name))
    }

    fn next_line(&mut self) -> Result<String, String> {
        match self.lines.recv_timeout(ANSWER_TIMEOUT) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "{} did not answer within {ANSWER_TIMEOUT:?}",
                self.name
            )),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self
                    .child
                    .wait()
                    .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
                Err(format!("{} exited unexpectedly ({status})", self.name))
            }
        }
    }

    /// The next line `wanted` accepts; other lines (progress reports) are skipped.
    fn expect(&mut self, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
        loop {
            let line = self.next_line()?;
            if wanted(&line) {
                return Ok(line);
            }
        }
    }

    /// Waits for a progress report that `enough(step, durable checkpoints)` accepts; returns
    /// its step.
    fn wait_for_progress(
        &mut self,
        mut enough: impl FnMut(u64, u64) -> bool,
    ) -> Result<u64, String> {
        loop {
            let line =
                self.expect(|line| line.starts_with("progress ") || line.starts_with("ended "))?;
            if line.starts_with("ended ") {
                return Err(format!(
                    "the task ended on {} before the demonstration could interrupt it (try more --steps)",
                    self.name
                ));
            }
            let (step, durable) = (field(&line, 2)?, field(&line, 3)?);
            if enough(step, durable) {
                return Ok(step);
            }
        }
    }

    /// SIGKILL: no chance to clean up or flush anything.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the host to exit; if it has not after a moment, dropping it kills it.
    fn quit(mut self) {
        let _ = self.send("quit");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
