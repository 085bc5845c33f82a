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

mod backend;
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
    init_logs();
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("host") => run_host(&args[2..]),
        _ => parse(&args[1..]).and_then(|dir| story::run(&dir)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {error}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: quickstart [--dir DIR] [--etcd URL[,URL...]] [--s3]

Runs the scenario in DIR (default ./checkpoints/quickstart) on the embedded coordinator and a
folder store; --etcd uses an etcd coordinator instead (build with --features etcd), --s3 keeps
the checkpoints in the bucket the COSMIC_S3_* variables name (--features s3).
scripts/quickstart-etcd-s3.sh starts both servers on loopback and runs it.";

/// The story's options; returns its folder.
fn parse(args: &[String]) -> Result<PathBuf, String> {
    let mut dir = PathBuf::from("checkpoints/quickstart");
    let (mut etcd, mut s3) = (None, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = PathBuf::from(args.next().ok_or(USAGE)?),
            "--etcd" => etcd = Some(args.next().ok_or(USAGE)?.clone()),
            "--s3" => s3 = true,
            _ => return Err(USAGE.into()),
        }
    }
    backend::choose(etcd.as_deref(), s3);
    Ok(dir)
}

/// `quickstart host NAME DIR [LIMIT...]`: one host process (started by the story).
fn run_host(args: &[String]) -> Result<(), String> {
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
    cosmic_examples::logging::init();
}
