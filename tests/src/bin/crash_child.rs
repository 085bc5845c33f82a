//! The child process of the crash tests (`tests/checkpoint_crash.rs`, `tests/checkpoint_store.rs`):
//! it runs one deterministic task on a `FileStore`, checkpointing after every step, and prints
//! each checkpoint it knows to be durable, so the parent can SIGKILL it at any moment and hold
//! the store to what was promised before the kill.
//!
//! ```text
//! crash_child run <dir> [--steps N]      resume the task in <dir> (or spawn it) and finish it
//! crash_child prepare <dir> [--steps N]  spawn the task, checkpoint it, shut down cleanly
//! crash_child expected [--steps N]       the digest of an uninterrupted run, without any store
//! crash_child permission <dir>           use a store this user may read but not write
//! crash_child batches <dir> <tasks> <from> write generations from <from> on of <tasks> values
//! ```
//!
//! `batches` writes, for generation g = from, from + 1, ..., the value of g of every task in
//! one `put_many` (one group commit), printing `begin <g>` before and `durable <g>` once every
//! put of the batch has answered.
//!
//! `run` prints, one per line: `start spawned <task>` or `start resumed <task> <seq> <steps>`,
//! then `durable <seq> <steps>` each time `checkpoint_now` has answered (the image is durable),
//! then `done <digest>`. A store whose task already finished gives `finished <task> <digest>`
//! and runs nothing. Anything unexpected is a line starting with `error` and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cosmic::checkpoint::{BatchPut, CatalogError, PutMode, StoreError};
use cosmic::prelude::*;
use cosmic::runtime::{ControlError, SpawnError};
use cosmic::CheckpointStore;
use cosmic::FileStore;
use cosmic_tests::batch_value::{batch_key, batch_value};

/// Words of hash-chain state: 4 KiB, plus half a KiB of floats.
const WORDS: usize = 512;
const SAMPLES: usize = 64;
const DEFAULT_STEPS: u64 = 20_000;

/// A hash chain over a few KiB: every step remixes all the words, so any lost, repeated or
/// reordered step changes the final digest. Its wire name is shared with the mirror type in
/// `tests/checkpoint_crash.rs`, which decodes the images this process leaves behind.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "cosmic_tests.CrashChain")]
struct Chain {
    step: u64,
    total: u64,
    #[migratable(bulk)]
    words: Vec<u64>,
    samples: Vec<f64>,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Chain {
    fn new(total: u64) -> Self {
        Chain {
            step: 0,
            total,
            words: (0..WORDS as u64).map(|i| mix(i + 1)).collect(),
            samples: (0..SAMPLES).map(|i| i as f64 / SAMPLES as f64).collect(),
        }
    }

    fn advance(&mut self) {
        let mut carry = mix(self.step.wrapping_add(0x9E37_79B9_7F4A_7C15));
        for word in &mut self.words {
            carry = mix(*word ^ carry);
            *word = carry;
        }
        let slot = (carry % SAMPLES as u64) as usize;
        self.samples[slot] = self.samples[slot] * 0.75 + (carry >> 11) as f64 / (1u64 << 53) as f64;
        self.step += 1;
    }

    fn digest(&self) -> u64 {
        let mut digest = mix(self.step);
        for word in &self.words {
            digest = mix(digest ^ word);
        }
        for sample in &self.samples {
            digest = mix(digest ^ sample.to_bits());
        }
        digest
    }
}

#[async_trait]
impl Task for Chain {
    type Output = u64;

    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        // The runtime's step count comes from the checkpoint's name, the state's from its body:
        // a resume that mixed them up would be caught here.
        if cx.steps_completed() != self.step {
            return Err(TaskError::new(format!(
                "runtime says {} steps completed, state says {}",
                cx.steps_completed(),
                self.step
            )));
        }
        if self.step >= self.total {
            return Ok(Step::Done(self.digest()));
        }
        self.advance();
        Ok(Step::Continue)
    }
}

/// The `StoreError` at the bottom of a catalog error, if that is what it is.
fn store_error(error: &CatalogError) -> Option<&StoreError> {
    match error {
        CatalogError::Store(error) => Some(error),
        _ => None,
    }
}

/// The error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

fn flags(error: Option<&StoreError>) -> String {
    format!(
        "permission_denied={} storage_full={}",
        error.is_some_and(StoreError::is_permission_denied),
        error.is_some_and(StoreError::is_storage_full)
    )
}

async fn runtime(dir: &PathBuf, policy: Policy) -> Result<Runtime, String> {
    let store = FileStore::open(dir).map_err(|e| format!("error open {}", chain(&e)))?;
    Runtime::builder()
        .host("crash-child")
        .store(store)
        .checkpoint(policy)
        // The parent kills this process on purpose, sometimes several times in a row before
        // a new checkpoint: that is not a task bringing its host down, so no quarantine.
        .quarantine_after(u32::MAX)
        .register::<Chain>()
        .build()
        .await
        .map_err(|e| format!("error build {}", chain(&e)))
}

/// `run`: resume or spawn the task, print every durable checkpoint, then its digest.
async fn run(dir: PathBuf, steps: u64) -> Result<(), String> {
    let rt = runtime(&dir, Policy::every_steps(1)).await?;
    let recovery = rt.recovery();
    if let Some((task, reason)) = recovery.failed.first() {
        return Err(format!(
            "error recovery failed {task} {}",
            cosmic::ErrorChain(reason)
        ));
    }
    if recovery.resumed.len() + recovery.finished.len() > 1 {
        return Err(format!(
            "error more than one task in the store: {recovery:?}"
        ));
    }
    let handle = if let Some(&(task, key)) = recovery.resumed.first() {
        println!("start resumed {task} {} {}", key.seq, key.steps);
        rt.handle::<u64>(task)
            .map_err(|e| format!("error handle {}", chain(&e)))?
    } else if let Some(&task) = recovery.finished.first() {
        let handle = rt
            .handle::<u64>(task)
            .map_err(|e| format!("error handle {}", chain(&e)))?;
        let digest = handle
            .join()
            .await
            .map_err(|e| format!("error join {}", chain(&e)))?;
        println!("finished {task} {digest}");
        return Ok(());
    } else {
        let handle = rt
            .spawn(Chain::new(steps))
            .await
            .map_err(|e| format!("error spawn {}", chain(&e)))?;
        // `spawn` returns once the first image and the record are durable.
        println!("start spawned {}", handle.id());
        println!("durable 0 0");
        handle
    };
    loop {
        match handle.checkpoint_now().await {
            Ok(key) => println!("durable {} {}", key.seq, key.steps),
            Err(ControlError::Finished { .. }) => break,
            Err(error) => return Err(format!("error checkpoint {}", chain(&error))),
        }
    }
    let digest = handle
        .join()
        .await
        .map_err(|e| format!("error join {}", chain(&e)))?;
    println!("done {digest}");
    Ok(())
}

/// `prepare`: a store holding one unfinished task, left by a clean shutdown.
async fn prepare(dir: PathBuf, steps: u64) -> Result<(), String> {
    let rt = runtime(&dir, Policy::OnDemand).await?;
    let handle = rt
        .spawn(Chain::new(steps))
        .await
        .map_err(|e| format!("error spawn {}", chain(&e)))?;
    let key = handle
        .checkpoint_now()
        .await
        .map_err(|e| format!("error checkpoint {}", chain(&e)))?;
    rt.shutdown().await;
    println!("prepared {} {} {}", handle.id(), key.seq, key.steps);
    Ok(())
}

/// `permission`: meant to run as a user who may read the store but not write it. Prints what
/// each write attempt reported, and that the task went on running.
async fn permission(dir: PathBuf) -> Result<(), String> {
    let store = match FileStore::open(&dir) {
        Ok(store) => store,
        Err(error) => {
            println!("open {} error={}", flags(Some(&error)), chain(&error));
            return Ok(());
        }
    };
    println!("open ok");
    let rt = Runtime::builder()
        .host("crash-child")
        .store(store)
        .checkpoint(Policy::OnDemand)
        .register::<Chain>()
        .build()
        .await
        .map_err(|e| format!("error build {}", chain(&e)))?;
    let recovery = rt.recovery();
    println!(
        "recovery resumed={} finished={} failed={}",
        recovery.resumed.len(),
        recovery.finished.len(),
        recovery.failed.len()
    );
    if let Some(&(task, _)) = recovery.resumed.first() {
        let handle = rt
            .handle::<u64>(task)
            .map_err(|e| format!("error handle {}", chain(&e)))?;
        match handle.checkpoint_now().await {
            Ok(key) => println!("checkpoint written {} {}", key.seq, key.steps),
            Err(ControlError::Store { source, .. }) => println!(
                "checkpoint {} error={}",
                flags(store_error(&source)),
                chain(&*source)
            ),
            Err(error) => println!("checkpoint other error={}", chain(&error)),
        }
        let before = handle.steps_completed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        println!(
            "running {before} {} {}",
            handle.steps_completed(),
            handle.status()
        );
    }
    match rt.spawn(Chain::new(DEFAULT_STEPS)).await {
        Ok(handle) => println!("spawn written {}", handle.id()),
        Err(SpawnError::Store { source, .. }) => println!(
            "spawn {} error={}",
            flags(store_error(&source)),
            chain(&*source)
        ),
        Err(error) => println!("spawn other error={}", chain(&error)),
    }
    Ok(())
}

/// The digest of the task run straight through, with no runtime and no store.
fn expected(steps: u64) -> u64 {
    let mut chain = Chain::new(steps);
    while chain.step < chain.total {
        chain.advance();
    }
    chain.digest()
}

fn usage() -> String {
    "usage: crash_child (run|prepare) <dir> [--steps N] | expected [--steps N] | permission <dir> | batches <dir> <tasks> <from>"
        .to_owned()
}

/// Writes generation after generation of `tasks` values, each generation as one batch, until
/// killed (or after 100,000 generations).
async fn batches(dir: PathBuf, tasks: u64, from: u64) -> Result<(), String> {
    let store = FileStore::open(&dir).map_err(|error| format!("error open: {error}"))?;
    for generation in from..from + 100_000 {
        let puts = (0..tasks)
            .map(|task| BatchPut {
                key: batch_key(task),
                value: batch_value(generation, task).into(),
                mode: PutMode::Overwrite,
            })
            .collect();
        println!("begin {generation}");
        for result in store.put_many(puts).await {
            result.map_err(|error| format!("error put: {error}"))?;
        }
        println!("durable {generation}");
    }
    Ok(())
}

fn parse_steps(args: &[String]) -> Result<u64, String> {
    match args {
        [] => Ok(DEFAULT_STEPS),
        [flag, value] if flag == "--steps" => value
            .parse()
            .map_err(|_| format!("error bad step count `{value}`")),
        _ => Err(usage()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    cosmic_tests::logging::init(tracing_subscriber::filter::LevelFilter::WARN);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [mode, dir, rest @ ..] if mode == "run" => match parse_steps(rest) {
            Ok(steps) => run(PathBuf::from(dir), steps).await,
            Err(error) => Err(error),
        },
        [mode, dir, rest @ ..] if mode == "prepare" => match parse_steps(rest) {
            Ok(steps) => prepare(PathBuf::from(dir), steps).await,
            Err(error) => Err(error),
        },
        [mode, rest @ ..] if mode == "expected" => parse_steps(rest).map(|steps| {
            println!("expected {}", expected(steps));
        }),
        [mode, dir] if mode == "permission" => permission(PathBuf::from(dir)).await,
        [mode, dir, tasks, from] if mode == "batches" => match (tasks.parse(), from.parse()) {
            (Ok(tasks), Ok(from)) => batches(PathBuf::from(dir), tasks, from).await,
            _ => Err(usage()),
        },
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            println!("{message}");
            ExitCode::from(2)
        }
    }
}
