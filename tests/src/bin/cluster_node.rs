//! A cluster member as an OS process, for the cluster process tests
//! (`tests/cluster_processes.rs`): a cosmic runtime that is a member of a cluster agreeing
//! through the embedded coordinator (a folder) and keeping its checkpoints in a shared folder
//! store, with [`TimedCounter`] registered, driven line by line on stdin.
//!
//! `cluster_node --name NAME --dir DIR [--lease-ms 1000] [--scan-ms 100] [--checkpoint-steps 5]
//! [--capacity 2] [--balance on|off] [--cooldown-ms 500] [--leave-ms 3000]`
//!
//! `DIR/coordinator` is the coordinator's folder, `DIR/store` the shared store and
//! `DIR/keys/NAME.key` this host's key pair (made by the test, which trusts its public key in
//! the coordinator as an operator would). The cluster key is read from the file named by
//! `COSMIC_CLUSTER_KEY_FILE`. With `COSMIC_FAULT_COORDINATOR_CUT=PATH`, every call to the
//! coordinator fails while `PATH` exists (cosmic-runtime's `fault-injection` feature): the
//! host keeps running, cut off from the coordinator. Logs (`RUST_LOG`, default `info`) go to
//! stderr.
//!
//! Commands and answers (one line each), and what the host reports on its own:
//! ```text
//! spawn TOTAL LOG STEP_MS  -> spawned ID | spawn-failed REASON
//! tasks                    -> tasks ID=STATUS...      (the tasks this runtime knows)
//! quit                     -> (exits at once)
//! READY NAME ADDR                            once it holds a lease (after an earlier life's
//!                                            lease of its name ran out)
//! EVENT TASK took-over STEPS FROM | arrived STEPS | balanced TO | drained TO | fenced
//!     | released                            from Runtime::cluster_events, as they happen
//! LEFT MOVED LEFT_BEHIND MS                  after a SIGTERM: it left the cluster; exits 0
//! ```
//! The end of stdin (the test is gone) ends the process.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use cosmic::cluster::{BalanceConfig, ClusterConfig, ClusterEventKind, FolderCoordinator};
use cosmic::{ClusterKey, FileStore, HostKey, Policy, Runtime};
use cosmic_tests::timed::TimedCounter;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{signal, SignalKind};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}: a number, not `{value}`"))
    })
}

/// Prints a line and flushes it at once (stdout is a pipe).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints the cluster events not printed yet; returns how many are printed.
fn report(rt: &Runtime, printed: usize) -> usize {
    let events = rt.cluster_events();
    for event in events.iter().skip(printed) {
        let what = match &event.kind {
            ClusterEventKind::TookOver { from, steps } => {
                format!("took-over {steps} {}", from.as_deref().unwrap_or("-"))
            }
            ClusterEventKind::Arrived { steps } => format!("arrived {steps}"),
            ClusterEventKind::Balanced { to, .. } => format!("balanced {to}"),
            ClusterEventKind::Drained { to } => format!("drained {to}"),
            ClusterEventKind::Fenced => "fenced".into(),
            ClusterEventKind::Released { .. } => "released".into(),
            _ => "other".into(),
        };
        say(&format!("EVENT {} {what}", event.task));
    }
    events.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    cosmic_tests::logging::init(tracing_subscriber::filter::LevelFilter::INFO);
    // Watched before anything else: a SIGTERM that comes early still means "leave".
    let mut terminate = signal(SignalKind::terminate()).expect("watch SIGTERM");
    let args: Vec<String> = std::env::args().collect();
    let name = arg(&args, "--name").expect("--name");
    let dir = PathBuf::from(arg(&args, "--dir").expect("--dir"));
    let key_file = std::env::var("COSMIC_CLUSTER_KEY_FILE").expect("COSMIC_CLUSTER_KEY_FILE");
    let balance = arg(&args, "--balance").is_none_or(|on| on == "on");
    let config = ClusterConfig::new(
        FolderCoordinator::open(dir.join("coordinator")).expect("the coordinator folder"),
    )
    .lease_ttl(Duration::from_millis(number(&args, "--lease-ms", 1000)))
    .scan_every(Duration::from_millis(number(&args, "--scan-ms", 100)))
    .capacity(number(&args, "--capacity", 2) as u32)
    .balance(BalanceConfig {
        enabled: balance,
        cooldown: Duration::from_millis(number(&args, "--cooldown-ms", 500)),
        ..BalanceConfig::default()
    });
    let leave_deadline = Duration::from_millis(number(&args, "--leave-ms", 3000));
    let rt = Runtime::builder()
        .host(&name)
        .store(FileStore::open_shared(dir.join("store")).expect("the shared store"))
        .checkpoint(Policy::every_steps(number(&args, "--checkpoint-steps", 5)))
        .listen("127.0.0.1:0")
        .cluster_key(ClusterKey::from_file(&key_file).expect("the cluster key"))
        .host_key(
            HostKey::from_file(dir.join("keys").join(format!("{name}.key")))
                .expect("this host's key pair"),
        )
        .register::<TimedCounter>()
        .cluster(config)
        .build()
        .await
        .expect("build the runtime (join the cluster)");
    say(&format!(
        "READY {name} {}",
        rt.local_addr().expect("listening")
    ));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut printed = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => printed = report(&rt, printed),
            _ = terminate.recv() => {
                let left = rt.leave(leave_deadline).await.expect("a member leaves");
                report(&rt, printed);
                say(&format!(
                    "LEFT {} {} {}",
                    left.moved.len(),
                    left.left_behind.len(),
                    left.elapsed.as_millis()
                ));
                // Not a return: the runtime would wait for the blocking read of stdin.
                std::process::exit(0);
            }
            line = lines.next_line() => {
                let Ok(Some(line)) = line else {
                    std::process::exit(0);
                };
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["spawn", total, log, step_ms] => {
                        let counter = TimedCounter::new(
                            total.parse().expect("total"),
                            *log,
                            step_ms.parse().expect("step_ms"),
                        );
                        match rt.spawn(counter).await {
                            Ok(handle) => say(&format!("spawned {}", handle.id())),
                            Err(error) => say(&format!("spawn-failed {error}")),
                        }
                    }
                    ["tasks"] => {
                        let tasks: Vec<String> = rt
                            .tasks()
                            .iter()
                            .map(|(task, status)| {
                                format!("{task}={}", status.to_string().replace(' ', "_"))
                            })
                            .collect();
                        say(&format!("tasks {}", tasks.join(" ")));
                    }
                    ["quit"] => std::process::exit(0),
                    _ => say(&format!("unknown command: {line}")),
                }
            }
        }
    }
}
