//! The quickstart: cosmic's two reasons to exist, on one machine, with nothing to install.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! Three host processes (`alpha`, `beta`, `gamma`) on 127.0.0.1 form a cluster through the
//! embedded coordinator (a folder, `./checkpoints/quickstart/coordinator`) and keep their
//! checkpoints in a shared folder store. A dozen long computations start on alpha and the
//! balancer spreads them; beta is SIGKILLed and its tasks resume on the survivors from their
//! checkpoints; gamma gets a SIGTERM and moves its tasks away before it exits; beta comes back
//! and gets work without anyone asking. Every result is checked against a run that never
//! moved, and a summary says where each task ran, every move and its reason, the checkpoints,
//! and the time lost to the crash. Exits 0 only if every check held.
//!
//! Logs: `RUST_LOG=info` (or `cosmic=debug`) shows the hosts' own logs on stderr.

mod host;
mod story;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The names the cluster key file travels under to the hosts (never on a command line).
const KEY_FILE_VAR: &str = "COSMIC_CLUSTER_KEY_FILE";

/// The scenario's settings.
struct Setup;

impl Setup {
    /// Tasks spawned on alpha.
    const TASKS: usize = 12;
    /// Numbers sieved per step.
    const SEGMENT: u64 = 1 << 20;
    /// The lease: a dead host's tasks run again elsewhere about this long after it died.
    const LEASE: Duration = Duration::from_secs(2);
    /// How often hosts read the coordinator.
    const SCAN: Duration = Duration::from_millis(200);
    /// How often each task checkpoints.
    const CHECKPOINT_EVERY: Duration = Duration::from_millis(300);
    /// How long a host told to stop may take to move its tasks away.
    const LEAVE_DEADLINE: Duration = Duration::from_secs(5);

    /// The limits of the tasks: different lengths, about 0.6 to 1.2 CPU seconds each here.
    fn limits() -> Vec<u64> {
        (0..Self::TASKS as u64)
            .map(|i| 60_000_000 + i * 6_000_000)
            .collect()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("host") => run_host(&args[2..]),
        None => story::run(&PathBuf::from("checkpoints/quickstart")),
        Some("--dir") if args.len() == 3 => story::run(&PathBuf::from(&args[2])),
        Some(_) => Err("usage: quickstart [--dir DIR]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `quickstart host NAME DIR [LIMIT...]`: one host process (started by the story).
fn run_host(args: &[String]) -> Result<(), String> {
    init_logs();
    let [name, dir, limits @ ..] = args else {
        return Err("usage: quickstart host NAME DIR [LIMIT...]".into());
    };
    let limits = limits
        .iter()
        .map(|l| l.parse().map_err(|_| format!("bad limit `{l}`")))
        .collect::<Result<Vec<u64>, _>>()?;
    host::run(name, &PathBuf::from(dir), &limits)
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
