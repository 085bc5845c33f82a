//! The main demonstration: a heat-diffusion simulation checkpointed into a local folder,
//! killed with SIGKILL while it runs, restarted, and checked to end with the same answer as a
//! run that was never interrupted.
//!
//! ```text
//! cargo run --release -p cosmic-examples --bin heat             # the demonstration
//! cargo run --release -p cosmic-examples --bin heat -- --help   # options
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use cosmic::{FileStore, Policy, Runtime};
use cosmic_examples::heat::{HeatPlate, HeatResult};

struct Options {
    dir: PathBuf,
    size: u32,
    steps: u64,
    sweeps: u32,
    kills: u32,
    worker: bool,
}

const USAGE: &str = "usage: heat [--dir DIR] [--size CELLS] [--steps N] [--sweeps N] [--kills N]

Runs a heat-diffusion task with checkpoints in DIR (default ./checkpoints/heat), kills the
process running it N times (default 3) with SIGKILL, restarts it each time, and checks that the
final answer equals an uninterrupted run's.";

fn parse() -> Result<Options, String> {
    let mut options = Options {
        dir: PathBuf::from("checkpoints/heat"),
        size: 192,
        steps: 1500,
        sweeps: 8,
        kills: 3,
        worker: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => options.dir = PathBuf::from(value("--dir")?),
            "--size" => {
                options.size = value("--size")?
                    .parse()
                    .map_err(|e| format!("--size: {e}"))?
            }
            "--steps" => {
                options.steps = value("--steps")?
                    .parse()
                    .map_err(|e| format!("--steps: {e}"))?
            }
            "--sweeps" => {
                options.sweeps = value("--sweeps")?
                    .parse()
                    .map_err(|e| format!("--sweeps: {e}"))?
            }
            "--kills" => {
                options.kills = value("--kills")?
                    .parse()
                    .map_err(|e| format!("--kills: {e}"))?
            }
            "--worker" => options.worker = true,
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
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = if options.worker {
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
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    tokio.block_on(async {
        let store = FileStore::open(&options.dir).map_err(|e| e.to_string())?;
        let rt = Runtime::builder()
            .host("worker")
            .store(store)
            .checkpoint(Policy::every(Duration::from_millis(100)))
            .register::<HeatPlate>()
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let recovery = rt.recovery();
        let handle = match recovery.resumed.first() {
            Some((task, from)) => {
                println!(
                    "resumed task {task} from checkpoint {} at step {}",
                    from.seq, from.steps
                );
                rt.handle::<HeatResult>(*task).map_err(|e| e.to_string())?
            }
            None => match recovery.finished.first() {
                Some(task) => rt.handle::<HeatResult>(*task).map_err(|e| e.to_string())?,
                None => {
                    let plate = HeatPlate::new(options.size, options.steps, options.sweeps);
                    let handle = rt.spawn(plate).await.map_err(|e| e.to_string())?;
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
        let result = handle.join().await.map_err(|e| e.to_string())?;
        progress.abort();
        println!(
            "done {} {:016x} {}",
            result.steps, result.digest, result.mean
        );
        Ok(())
    })
}

/// The demonstration: reference run, then a run that is killed and restarted.
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
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    for round in 1..=options.kills + 1 {
        let last_round = round == options.kills + 1;
        // Kill each run after it made some progress of its own; let the last one finish.
        let kill_after = options.steps * u64::from(round) / u64::from(options.kills + 2);
        match run_worker(&exe, options, (!last_round).then_some(kill_after))? {
            WorkerEnd::Killed { at_step } => {
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
                    "same final answer as the uninterrupted run after {} kills ({:.1?}): OK",
                    options.kills,
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
        .map_err(|e| format!("cannot start the worker: {e}"))?;
    let stdout = child.stdout.take().ok_or("no worker stdout")?;
    let mut first_durable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.starts_with("resumed") || line.starts_with("spawned") {
            println!("  worker: {line}");
        }
        if let Some((step, durable)) = line.strip_prefix("progress ").and_then(parse_progress) {
            // Kill once the run passed its mark and made at least one checkpoint of its own
            // durable, so that every round shows progress that survives the kill.
            let baseline = *first_durable.get_or_insert(durable);
            if kill_after.is_some_and(|limit| step >= limit && durable > baseline) {
                // Child::kill sends SIGKILL: no chance to clean up or flush anything.
                child.kill().map_err(|e| e.to_string())?;
                let _ = child.wait();
                return Ok(WorkerEnd::Killed { at_step: step });
            }
        }
        if line.starts_with("done ") {
            let _ = child.wait();
            return Ok(WorkerEnd::Done(line));
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    Err(format!("the worker exited without finishing ({status})"))
}
