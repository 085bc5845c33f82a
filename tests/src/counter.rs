//! A task for the migration tests: it counts steps, folds every step number into a digest,
//! and appends one line per step to a log file (`<host> <step>`), so that a test can check,
//! from the task's own record and not from timing, that it ran every step, on which host,
//! and never on two hosts at once.

use std::io::Write;

use cosmic::prelude::*;

/// Counts to `total`; see the module docs.
#[derive(Migratable, Debug, Clone, PartialEq)]
pub struct Counter {
    /// Steps to run.
    pub total: u64,
    /// Steps done.
    pub done: u64,
    /// Every step number folded in, in order.
    pub digest: u64,
    /// Where each step is logged ("" for no log).
    pub log: String,
    /// Milliseconds each step sleeps (to leave time for moves).
    pub step_ms: u64,
    /// Moves itself to `move_to` after step `move_at` (through its context), if set.
    pub move_at: u64,
    /// See `move_at`.
    pub move_to: String,
    /// Ballast, to make the state as large as a test needs.
    #[migratable(bulk)]
    pub ballast: Vec<u8>,
}

impl Counter {
    /// A counter of `total` steps logging to `log`.
    pub fn new(total: u64, log: impl Into<String>, step_ms: u64) -> Counter {
        Counter {
            total,
            done: 0,
            digest: 0,
            log: log.into(),
            step_ms,
            move_at: u64::MAX,
            move_to: String::new(),
            ballast: Vec::new(),
        }
    }
}

/// The digest a counter of `total` steps ends with.
pub fn expected_digest(total: u64) -> u64 {
    (0..total).fold(0, fold)
}

fn fold(digest: u64, step: u64) -> u64 {
    (digest ^ step).wrapping_mul(0x100_0000_01b3).rotate_left(7)
}

#[async_trait]
impl Task for Counter {
    type Output = u64;

    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if !self.log.is_empty() {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| TaskError::new(format!("cannot open the step log: {e}")))?;
            writeln!(file, "{} {}", cx.host(), self.done)
                .map_err(|e| TaskError::new(format!("cannot write the step log: {e}")))?;
        }
        self.digest = fold(self.digest, self.done);
        self.done += 1;
        if self.done == self.move_at {
            cx.request_move(self.move_to.clone());
        }
        if self.step_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(self.step_ms)).await;
        }
        if self.done >= self.total {
            return Ok(Step::Done(self.digest));
        }
        Ok(Step::Continue)
    }
}

/// One line of a step log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedStep {
    /// The host that ran the step.
    pub host: String,
    /// The step.
    pub step: u64,
}

/// Reads a step log.
pub fn read_log(path: &std::path::Path) -> Vec<LoggedStep> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (host, step) = line.split_once(' ')?;
            Some(LoggedStep {
                host: host.to_owned(),
                step: step.parse().ok()?,
            })
        })
        .collect()
}

/// Checks a step log of a counter of `total` steps: it is a sequence of runs, each of
/// consecutive steps on one host; a run only starts over at an earlier step when
/// `reruns_allowed` (a crash restored an older checkpoint), and never beyond the next step; the
/// last run ends at the last step. Returns the runs as (host, first, last).
pub fn check_log(
    log: &[LoggedStep],
    total: u64,
    reruns_allowed: bool,
) -> Result<Vec<(String, u64, u64)>, String> {
    let mut runs: Vec<(String, u64, u64)> = Vec::new();
    for (i, entry) in log.iter().enumerate() {
        match runs.last_mut() {
            Some((host, _, last)) if *host == entry.host && entry.step == *last + 1 => {
                *last = entry.step;
            }
            previous => {
                let next = previous.map_or(0, |(_, _, last)| *last + 1);
                if entry.step > next {
                    return Err(format!(
                        "line {i}: step {} skips ahead of {next}",
                        entry.step
                    ));
                }
                if entry.step < next && !reruns_allowed {
                    return Err(format!(
                        "line {i}: step {} on {} runs again (expected {next})",
                        entry.step, entry.host
                    ));
                }
                runs.push((entry.host.clone(), entry.step, entry.step));
            }
        }
    }
    match runs.last() {
        Some((_, _, last)) if *last + 1 == total => Ok(runs),
        other => Err(format!(
            "the log ends at {other:?}, not at step {}",
            total - 1
        )),
    }
}

/// A folder removed on drop unless the test failed (then kept for inspection).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A fresh folder `label-<pid>-<n>` under `base` (a test's `CARGO_TARGET_TMPDIR`).
    pub fn new(base: &str, label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::path::Path::new(base).join(format!(
            "{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a test folder");
        TempDir(path)
    }

    /// The folder.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
