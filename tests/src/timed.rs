//! A counter that stamps its step log with the wall clock, for the cluster process tests
//! (`tests/cluster_processes.rs`): each step appends `<host> <step> <unix ms>` to its log
//! file, in one `write` so that lines of hosts appending to one log at once never mix. The
//! time tells a test *when* a host ran a step (after a kill, a pause, a cut), which the order
//! of lines alone does not. Its digest is the [`Counter`](crate::counter::Counter)'s, so
//! [`expected_digest`](crate::counter::expected_digest) checks its result.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use cosmic::prelude::*;

/// Counts to `total`, logging every step with a time stamp; see the module docs.
#[derive(Migratable, Debug, Clone, PartialEq)]
pub struct TimedCounter {
    /// Steps to run.
    pub total: u64,
    /// Steps done.
    pub done: u64,
    /// Every step number folded in, in order.
    pub digest: u64,
    /// Where each step is logged.
    pub log: String,
    /// Milliseconds each step sleeps (after logging it).
    pub step_ms: u64,
}

impl TimedCounter {
    /// A counter of `total` steps logging to `log`, each step lasting `step_ms`.
    pub fn new(total: u64, log: impl Into<String>, step_ms: u64) -> TimedCounter {
        TimedCounter {
            total,
            done: 0,
            digest: 0,
            log: log.into(),
            step_ms,
        }
    }
}

/// The counter's fold (the same as `counter.rs`'s, so `expected_digest` applies).
fn fold(digest: u64, step: u64) -> u64 {
    (digest ^ step).wrapping_mul(0x100_0000_01b3).rotate_left(7)
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[async_trait]
impl Task for TimedCounter {
    type Output = u64;

    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        let line = format!("{} {} {}\n", cx.host(), self.done, unix_ms());
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .map_err(|e| TaskError::new(format!("cannot write the step log: {e}")))?;
        self.digest = fold(self.digest, self.done);
        self.done += 1;
        if self.step_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(self.step_ms)).await;
        }
        if self.done >= self.total {
            return Ok(Step::Done(self.digest));
        }
        Ok(Step::Continue)
    }
}

/// One line of a timed step log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedStep {
    /// The host that ran the step.
    pub host: String,
    /// The step.
    pub step: u64,
    /// When it started, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// Reads a timed step log (a line cut short by a kill is skipped).
pub fn read_timed_log(path: &Path) -> Vec<TimedStep> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            let step = TimedStep {
                host: words.next()?.to_owned(),
                step: words.next()?.parse().ok()?,
                at_ms: words.next()?.parse().ok()?,
            };
            words.next().is_none().then_some(step)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fold_is_the_counters() {
        let digest = (0..100).fold(0, fold);
        assert_eq!(digest, crate::counter::expected_digest(100));
    }
}
