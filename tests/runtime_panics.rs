//! Steps that panic, abort their process or run too long: the task fails with the panic's
//! message (and `join` says so), the end is recorded so a restart does not run it again, a
//! retry policy runs it again from its last checkpoint a bounded number of times (the count
//! kept in the store, across restarts), a step that aborts its whole process gets its task
//! quarantined after a few restarts in a row, and slow steps are reported.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use cosmic::checkpoint::{Catalog, FileStore};
use cosmic::prelude::*;
use cosmic::runtime::{ControlError, JoinError, RetryPolicy};
use cosmic::{TaskHandle, TaskId, TaskStatus};
use cosmic_tests::counter::TempDir;

/// How often each labelled task ran the step that misbehaves, in this process.
static RUNS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn count_run(label: &str) -> u64 {
    let mut runs = RUNS.lock().unwrap_or_else(|p| p.into_inner());
    let count = runs
        .get_or_insert_with(HashMap::new)
        .entry(label.to_owned())
        .or_default();
    *count += 1;
    *count
}

fn runs(label: &str) -> u64 {
    let runs = RUNS.lock().unwrap_or_else(|p| p.into_inner());
    runs.as_ref()
        .and_then(|runs| runs.get(label).copied())
        .unwrap_or(0)
}

/// Counts to `n`; at step `bad_at` it marks its state as touched, then panics on its first
/// `panics` runs of that step (all of them with `u64::MAX`). Its output is the sum of the
/// numbers it counted plus a million for every touched mark it still carries, so state that a
/// panicking step touched shows in the output if it ever came back.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "cosmic_tests.Fragile")]
struct Fragile {
    label: String,
    next: u64,
    n: u64,
    total: u64,
    touched: u64,
    bad_at: u64,
    panics: u64,
    /// Sleeps this long (ms) in the step before `bad_at`.
    slow_ms: u64,
}

impl Fragile {
    fn new(label: &str, n: u64, bad_at: u64, panics: u64) -> Self {
        Fragile {
            label: label.to_owned(),
            next: 0,
            n,
            total: 0,
            touched: 0,
            bad_at,
            panics,
            slow_ms: 0,
        }
    }
}

#[async_trait]
impl Task for Fragile {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.next == self.n {
            return Ok(Step::Done(self.total + self.touched * 1_000_000));
        }
        if self.slow_ms > 0 && self.next + 1 == self.bad_at {
            tokio::time::sleep(Duration::from_millis(self.slow_ms)).await;
        }
        if self.next == self.bad_at {
            self.touched += 1;
            self.next += 1000;
            let run = count_run(&self.label);
            if run <= self.panics {
                panic!("boom at step {} (run {run})", self.bad_at);
            }
            self.touched -= 1;
            self.next -= 1000;
        }
        self.total += self.next;
        self.next += 1;
        Ok(Step::Continue)
    }
}

fn sum(n: u64) -> u64 {
    (0..n).sum()
}

async fn runtime(
    dir: &Path,
    configure: impl FnOnce(cosmic::Builder) -> cosmic::Builder,
) -> Runtime {
    let builder = Runtime::builder()
        .host("alpha")
        .store(FileStore::open(dir).unwrap())
        .checkpoint(Policy::every_steps(1))
        .register::<Fragile>();
    configure(builder).build().await.unwrap()
}

async fn join_within(handle: &TaskHandle<u64>) -> Result<u64, JoinError> {
    tokio::time::timeout(Duration::from_secs(120), handle.join())
        .await
        .expect("join returned within two minutes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_fails_the_task_with_its_message() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "panic-fails");
    let rt = runtime(dir.path(), |b| b).await;
    let handle = rt
        .spawn(Fragile::new("fails", 10, 4, u64::MAX))
        .await
        .unwrap();
    let error = join_within(&handle).await.unwrap_err();
    match &error {
        JoinError::Panicked { task, message } => {
            assert_eq!(*task, handle.id());
            assert_eq!(message, "boom at step 4 (run 1)");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(error.to_string().contains("boom at step 4"), "{error}");
    match handle.status() {
        TaskStatus::Failed(message) => assert!(message.contains("boom at step 4"), "{message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    // The task has ended: control requests say so, and say it at once.
    let cancel = handle.cancel().await.unwrap_err();
    assert!(matches!(cancel, ControlError::Finished { .. }), "{cancel}");
    assert_eq!(runs("fails"), 1);
    let stats = rt.stats();
    assert_eq!((stats.step_panics, stats.failed, stats.running), (1, 1, 0));
    // The runtime goes on: another task runs to its end.
    let healthy = rt.spawn(Fragile::new("healthy", 6, 99, 0)).await.unwrap();
    assert_eq!(join_within(&healthy).await.unwrap(), sum(6));
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_failed_by_a_panic_is_not_run_again_after_a_restart() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "panic-restart");
    let id = {
        let rt = runtime(dir.path(), |b| b).await;
        let handle = rt
            .spawn(Fragile::new("restart", 10, 3, u64::MAX))
            .await
            .unwrap();
        assert!(matches!(
            join_within(&handle).await,
            Err(JoinError::Panicked { .. })
        ));
        rt.shutdown().await;
        handle.id()
    };
    assert_eq!(runs("restart"), 1);
    for _ in 0..2 {
        let rt = runtime(dir.path(), |b| b).await;
        let recovery = rt.recovery();
        assert_eq!(recovery.finished, vec![id], "{recovery:?}");
        assert!(recovery.resumed.is_empty(), "{recovery:?}");
        let handle = rt.handle::<u64>(id).unwrap();
        match join_within(&handle).await {
            Err(JoinError::Panicked { message, .. }) => {
                assert_eq!(message, "boom at step 3 (run 1)")
            }
            other => panic!("expected the recorded panic, got {other:?}"),
        }
        rt.shutdown().await;
    }
    // Never run again: the step that panicked ran once in all.
    assert_eq!(runs("restart"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_task_starts_from_its_checkpoint_and_finishes_clean() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "panic-retry-ok");
    let rt = runtime(dir.path(), |b| {
        b.retry(RetryPolicy::tries(3).backoff(Duration::from_millis(5), Duration::from_millis(20)))
    })
    .await;
    let handle = rt.spawn(Fragile::new("retry-ok", 12, 5, 2)).await.unwrap();
    // No touched mark and no jump by 1000 survived: each try began from sound state.
    assert_eq!(join_within(&handle).await.unwrap(), sum(12));
    assert_eq!(runs("retry-ok"), 3);
    assert_eq!(rt.stats().step_panics, 2);
    let catalog = Catalog::new(std::sync::Arc::new(FileStore::open(dir.path()).unwrap()), 3);
    // Once the task has ended its counts go with its checkpoints.
    assert_eq!(
        catalog.attempts(handle.id()).await.unwrap(),
        cosmic::checkpoint::Attempts::default()
    );
    assert!(!dir
        .path()
        .join(format!("tasks/{}/attempts", handle.id()))
        .exists());
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_panicking_fails_after_its_tries() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "panic-retry-fail");
    let rt = runtime(dir.path(), |b| {
        b.retry(RetryPolicy::tries(4).backoff(Duration::from_millis(1), Duration::from_millis(4)))
    })
    .await;
    let handle = rt
        .spawn(Fragile::new("retry-fail", 12, 5, u64::MAX))
        .await
        .unwrap();
    match join_within(&handle).await {
        Err(JoinError::Panicked { message, .. }) => {
            assert_eq!(message, "boom at step 5 (run 4) (after 4 tries)")
        }
        other => panic!("expected Panicked after the tries, got {other:?}"),
    }
    assert_eq!(runs("retry-fail"), 4);
    assert_eq!(rt.stats().step_panics, 4);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_of_tries_survives_a_restart() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "panic-retry-restart");
    let id = {
        // A long pause after the first panic: the host shuts down during it.
        let rt = runtime(dir.path(), |b| {
            b.retry(
                RetryPolicy::tries(3).backoff(Duration::from_secs(600), Duration::from_secs(600)),
            )
        })
        .await;
        let handle = rt
            .spawn(Fragile::new("retry-restart", 12, 5, u64::MAX))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(120), async {
            while runs("retry-restart") < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the step panicked");
        // Control requests are served during the pause.
        tokio::time::timeout(Duration::from_secs(60), rt.shutdown())
            .await
            .expect("the shutdown was served during the pause before the next try");
        assert_eq!(handle.status(), TaskStatus::Stopped);
        handle.id()
    };
    let rt = runtime(dir.path(), |b| {
        b.retry(RetryPolicy::tries(3).backoff(Duration::from_millis(1), Duration::from_millis(2)))
    })
    .await;
    assert_eq!(rt.recovery().resumed.len(), 1);
    let handle = rt.handle::<u64>(id).unwrap();
    match join_within(&handle).await {
        Err(JoinError::Panicked { message, .. }) => {
            assert_eq!(message, "boom at step 5 (run 3) (after 3 tries)")
        }
        other => panic!("expected Panicked after the tries, got {other:?}"),
    }
    // Three tries in all, across the two lives: the first life's try counted.
    assert_eq!(runs("retry-restart"), 3);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_of_tries_moves_with_the_task() {
    let key =
        cosmic::ClusterKey::from_bytes(b"runtime-panics test cluster key, 32+ bytes").unwrap();
    let host = |name: &'static str, dir: &TempDir, pause: Duration| {
        Runtime::builder()
            .host(name)
            .store(FileStore::open(dir.path()).unwrap())
            .checkpoint(Policy::every_steps(1))
            .listen("127.0.0.1:0")
            .cluster_key(key.clone())
            .retry(RetryPolicy::tries(3).backoff(pause, pause))
            .register::<Fragile>()
            .build()
    };
    let (alpha_dir, beta_dir) = (
        TempDir::new(env!("CARGO_TARGET_TMPDIR"), "panic-move-alpha"),
        TempDir::new(env!("CARGO_TARGET_TMPDIR"), "panic-move-beta"),
    );
    // On alpha the pause after a panic is long: the task moves during it.
    let alpha = host("alpha", &alpha_dir, Duration::from_secs(600))
        .await
        .unwrap();
    let beta = host("beta", &beta_dir, Duration::from_millis(1))
        .await
        .unwrap();
    alpha.add_peer("beta", beta.local_addr().unwrap()).unwrap();
    beta.add_peer("alpha", alpha.local_addr().unwrap()).unwrap();
    cosmic_tests::identity::introduce(&alpha, &beta);
    let handle = alpha
        .spawn(Fragile::new("retry-move", 12, 5, u64::MAX))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        while runs("retry-move") < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the step panicked on alpha");
    tokio::time::timeout(Duration::from_secs(120), handle.migrate_to("beta"))
        .await
        .expect("the move was served during the pause before the next try")
        .unwrap();
    // Beta goes on counting from alpha's two tries: one more, then the task fails.
    match join_within(&handle).await {
        Err(JoinError::Panicked { message, .. }) => {
            assert_eq!(message, "boom at step 5 (run 3) (after 3 tries)")
        }
        other => panic!("expected Panicked after the tries, got {other:?}"),
    }
    assert_eq!(runs("retry-move"), 3);
    assert_eq!(
        (alpha.stats().step_panics, beta.stats().step_panics),
        (1, 2)
    );
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_running_past_the_bound_is_counted() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "slow-step");
    let rt = runtime(dir.path(), |b| {
        b.slow_step_warning(Some(Duration::from_millis(20)))
    })
    .await;
    let mut slow = Fragile::new("slow", 6, 3, 0);
    slow.slow_ms = 200;
    let handle = rt.spawn(slow).await.unwrap();
    assert_eq!(join_within(&handle).await.unwrap(), sum(6));
    assert_eq!(rt.stats().slow_steps, 1);
    rt.shutdown().await;
    // The default bound (10 s) leaves quick steps alone.
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "quick-step");
    let rt = runtime(dir.path(), |b| b).await;
    let handle = rt.spawn(Fragile::new("quick", 6, 99, 0)).await.unwrap();
    assert_eq!(join_within(&handle).await.unwrap(), sum(6));
    assert_eq!(rt.stats().slow_steps, 0);
    rt.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A step that aborts its process: this test binary, run again as the child.

/// The child's folder, when this process is the child.
const ABORT_DIR_ENV: &str = "COSMIC_ABORT_CHILD_DIR";
const ABORT_CHILD: &str = "abort_child_process";
/// What starts the child's report line (the test harness prints around it).
const REPORT: &str = "abort-child: ";

/// Counts to 10 and aborts the whole process at step 3, as a step built with `panic =
/// "abort"` would: nothing can be caught.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "cosmic_tests.Aborting")]
struct Aborting {
    next: u64,
}

#[async_trait]
impl Task for Aborting {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.next == 3 {
            std::process::abort();
        }
        if self.next == 10 {
            return Ok(Step::Done(self.next));
        }
        self.next += 1;
        Ok(Step::Continue)
    }
}

/// The child: starts a runtime on the folder, spawns the task if the store is empty, and
/// prints what recovery found. Run only by the test below, in a process of its own.
#[test]
#[ignore = "the child process of a_step_that_aborts_its_process_is_quarantined"]
fn abort_child_process() {
    let Some(dir) = std::env::var_os(ABORT_DIR_ENV) else {
        return;
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async move {
        use std::io::Write;
        let rt = Runtime::builder()
            .host("aborting")
            .store(FileStore::open(&dir).unwrap())
            // Only the spawn's checkpoint: every life starts from it again.
            .checkpoint(Policy::OnDemand)
            .quarantine_after(3)
            .register::<Aborting>()
            .build()
            .await
            .unwrap();
        let recovery = rt.recovery();
        let line = if let Some((task, reason)) = recovery.quarantined.first() {
            let error = rt.handle::<u64>(*task).unwrap().join().await.unwrap_err();
            format!("quarantined {task} {reason} / {error}")
        } else if let Some((task, _)) = recovery.resumed.first() {
            format!("resumed {task}")
        } else if rt.tasks().is_empty() {
            let handle = rt.spawn(Aborting { next: 0 }).await.unwrap();
            format!("spawned {}", handle.id())
        } else {
            format!("unexpected {recovery:?}")
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "\n{REPORT}{line}").unwrap();
        out.flush().unwrap();
        drop(out);
        let running = rt
            .tasks()
            .iter()
            .any(|(_, status)| *status == TaskStatus::Running);
        if running {
            // A running task aborts the process before this ends.
            tokio::time::sleep(Duration::from_secs(60)).await;
            println!("still alive");
        }
    });
}

#[cfg(unix)]
#[test]
fn a_step_that_aborts_its_process_is_quarantined() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "abort-loop");
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut lines = Vec::new();
    for life in 1..=6 {
        // Under a cross-test runner (QEMU without binfmt_misc) the binary runs through it.
        let mut command = match std::env::var_os("CROSS_TEST_RUNNER") {
            Some(runner) => {
                let mut command = std::process::Command::new(runner);
                command.arg(&exe);
                command
            }
            None => std::process::Command::new(&exe),
        };
        let output = command
            .args([
                ABORT_CHILD,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ABORT_DIR_ENV, dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix(REPORT))
            .unwrap_or_else(|| {
                panic!(
                    "life {life}: no report from the child: {stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })
            .to_owned();
        let aborted = output.status.signal() == Some(libc::SIGABRT);
        lines.push((line, aborted));
    }
    let kinds: Vec<(&str, bool)> = lines
        .iter()
        .map(|(line, aborted)| (line.split(' ').next().unwrap(), *aborted))
        .collect();
    // Spawned and aborted, resumed and aborted three times (the limit), then quarantined at
    // every start after that, without running.
    assert_eq!(
        kinds,
        [
            ("spawned", true),
            ("resumed", true),
            ("resumed", true),
            ("resumed", true),
            ("quarantined", false),
            ("quarantined", false),
        ],
        "{lines:?}"
    );
    let (quarantined, _) = &lines[4];
    assert!(
        quarantined.contains("resumed 3 times in a row from checkpoint 0"),
        "{quarantined}"
    );
    let task: TaskId = lines[0].0["spawned ".len()..].parse().unwrap();
    assert!(quarantined.contains(&task.to_string()), "{quarantined}");
}
