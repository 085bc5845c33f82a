//! Counters of the runtime, and the snapshot users read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::{Clock, StoreMeter};
use crate::task::TaskStatus;

/// A snapshot of a runtime's state and counters; see [`Runtime::stats`](super::Runtime::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Tasks running steps.
    pub running: usize,
    /// Tasks paused at a safe point.
    pub paused: usize,
    /// Tasks that completed.
    pub completed: usize,
    /// Tasks that failed.
    pub failed: usize,
    /// Tasks that were cancelled.
    pub cancelled: usize,
    /// Checkpoints made durable.
    pub checkpoints_written: u64,
    /// Checkpoint writes that failed (the previous checkpoint was kept).
    pub checkpoint_failures: u64,
    /// Bytes of images made durable.
    pub bytes_written: u64,
    /// Time tasks spent stalled capturing images.
    pub capture_time: Duration,
    /// Time since the last durable checkpoint of any task.
    pub last_checkpoint_age: Option<Duration>,
    /// Steps that panicked (each one caught; the task failed or was retried).
    pub step_panics: u64,
    /// Steps that ran longer than the bound without reaching a safe point
    /// ([`Builder::slow_step_warning`](super::Builder::slow_step_warning)).
    pub slow_steps: u64,
    /// Captures replaced by a newer capture of the same task before they were written (the
    /// store was busy): work thrown away.
    pub checkpoints_superseded: u64,
    /// The store's busy time per checkpoint written (moving average), once one was written:
    /// what bounds the adaptive interval with many tasks.
    pub store_write_cost: Option<Duration>,
    /// Tasks moved away as native images (the destination runs this build on this kind of
    /// machine): their `native` fields travelled as memory.
    pub moved_native: u64,
    /// Tasks moved away as portable images (another kind of machine or build, or one whose
    /// kind was unknown).
    pub moved_portable: u64,
}

/// Sentinel for "no checkpoint yet".
const NEVER: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct StatsCounters {
    checkpoints: AtomicU64,
    failures: AtomicU64,
    bytes: AtomicU64,
    capture_nanos: AtomicU64,
    panics: AtomicU64,
    slow_steps: AtomicU64,
    moved_native: AtomicU64,
    moved_portable: AtomicU64,
    /// Clock reading (nanoseconds) of the last durable checkpoint.
    last_checkpoint: AtomicU64,
    clock: Arc<dyn Clock>,
    /// The store's load, shared by the tasks' persisters and schedules.
    pub(crate) store_meter: Arc<StoreMeter>,
}

impl StatsCounters {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        StatsCounters {
            checkpoints: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            capture_nanos: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            slow_steps: AtomicU64::new(0),
            moved_native: AtomicU64::new(0),
            moved_portable: AtomicU64::new(0),
            last_checkpoint: AtomicU64::new(NEVER),
            store_meter: StoreMeter::new(Arc::clone(&clock)),
            clock,
        }
    }

    pub(crate) fn captured(&self, elapsed: Duration) {
        self.capture_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn written(&self, bytes: usize) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_checkpoint
            .store(self.clock.now().as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn write_failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn step_panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_step(&self) {
        self.slow_steps.fetch_add(1, Ordering::Relaxed);
    }

    /// A task moved away in `encoding`.
    pub(crate) fn moved(&self, encoding: crate::image::Encoding) {
        match encoding {
            crate::image::Encoding::Native => &self.moved_native,
            _ => &self.moved_portable,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_steps(&self) -> u64 {
        self.slow_steps.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self, tasks: &[TaskStatus], now: Duration) -> RuntimeStats {
        let mut stats = RuntimeStats {
            checkpoints_written: self.checkpoints.load(Ordering::Relaxed),
            checkpoint_failures: self.failures.load(Ordering::Relaxed),
            bytes_written: self.bytes.load(Ordering::Relaxed),
            capture_time: Duration::from_nanos(self.capture_nanos.load(Ordering::Relaxed)),
            last_checkpoint_age: match self.last_checkpoint.load(Ordering::Relaxed) {
                NEVER => None,
                at => Some(now.saturating_sub(Duration::from_nanos(at))),
            },
            step_panics: self.panics.load(Ordering::Relaxed),
            slow_steps: self.slow_steps(),
            checkpoints_superseded: self.store_meter.superseded_count(),
            store_write_cost: self.store_meter.cost_per_write(),
            moved_native: self.moved_native.load(Ordering::Relaxed),
            moved_portable: self.moved_portable.load(Ordering::Relaxed),
            ..RuntimeStats::default()
        };
        for status in tasks {
            match status {
                TaskStatus::Running => stats.running += 1,
                TaskStatus::Paused => stats.paused += 1,
                TaskStatus::Completed => stats.completed += 1,
                TaskStatus::Failed(_) => stats.failed += 1,
                TaskStatus::Cancelled => stats.cancelled += 1,
                _ => {}
            }
        }
        stats
    }
}
