//! [`StoreMeter`]: how much checkpoint writing a host's store absorbs, measured by the writers
//! (every task's persister) that share it, for the adaptive schedule's store bound (see
//! `policy.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Clock;

/// Weight of a new sample in the moving average of the write cost.
const SMOOTHING: f64 = 0.3;

/// Busy time gathered before a sample is taken while writes keep overlapping, so that a sample
/// spans whole batches of a group commit (whose writes all finish together).
const SAMPLE_SPAN: Duration = Duration::from_millis(50);

/// The store's busy time per checkpoint written and the number of tasks writing to it; see the
/// module docs of `policy.rs`. One per runtime, shared by its tasks.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cosmic_runtime::checkpoint::{Clock, ManualClock, StoreMeter};
///
/// let clock = ManualClock::new();
/// let meter = StoreMeter::new(Arc::new(clock.clone()));
/// let _writers: Vec<_> = (0..100).map(|_| meter.writer()).collect();
/// // Two writes in flight together for 10 ms: the store spent 5 ms per write.
/// meter.write_started();
/// meter.write_started();
/// clock.advance(Duration::from_millis(10));
/// meter.write_finished();
/// meter.write_finished();
/// assert_eq!(meter.cost_per_write(), Some(Duration::from_millis(5)));
/// // A checkpoint of each of the 100 tasks takes the store 500 ms.
/// assert_eq!(meter.floor(), Duration::from_millis(500));
/// ```
#[derive(Debug)]
pub struct StoreMeter {
    clock: Arc<dyn Clock>,
    state: Mutex<MeterState>,
    writers: AtomicU64,
    superseded: AtomicU64,
}

#[derive(Debug, Default)]
struct MeterState {
    in_flight: u64,
    /// When `busy` was last brought up to date.
    mark: Duration,
    /// Time with at least one write in flight since the last sample.
    busy: Duration,
    /// Writes finished since the last sample.
    finished: u64,
    /// Moving average of the busy time per write.
    cost: Option<Duration>,
}

/// A task writing to the store, counted in [`StoreMeter::writers`] until dropped.
#[derive(Debug)]
pub struct StoreWriter(Arc<StoreMeter>);

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.0.writers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StoreMeter {
    /// A meter with no writer and no measurement, reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Arc<StoreMeter> {
        Arc::new(StoreMeter {
            clock,
            state: Mutex::new(MeterState::default()),
            writers: AtomicU64::new(0),
            superseded: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a task writing to the store until the returned guard is dropped.
    pub fn writer(self: &Arc<Self>) -> StoreWriter {
        self.writers.fetch_add(1, Ordering::Relaxed);
        StoreWriter(Arc::clone(self))
    }

    /// Tasks writing to the store.
    pub fn writers(&self) -> u64 {
        self.writers.load(Ordering::Relaxed)
    }

    /// A write to the store began.
    pub fn write_started(&self) {
        let now = self.clock.now();
        let mut state = self.state();
        state.advance(now);
        state.in_flight += 1;
    }

    /// A write to the store ended (made durable or failed: either way the store was busy).
    pub fn write_finished(&self) {
        let now = self.clock.now();
        let mut state = self.state();
        state.advance(now);
        state.in_flight = state.in_flight.saturating_sub(1);
        state.finished += 1;
        if state.in_flight == 0 || state.busy >= SAMPLE_SPAN {
            let sample = state.busy / state.finished.min(u64::from(u32::MAX)) as u32;
            state.cost = Some(match state.cost {
                None => sample,
                Some(cost) => cost.mul_f64(1.0 - SMOOTHING) + sample.mul_f64(SMOOTHING),
            });
            state.busy = Duration::ZERO;
            state.finished = 0;
        }
    }

    /// The moving average of the store's busy time per write, once a write finished.
    pub fn cost_per_write(&self) -> Option<Duration> {
        self.state().cost
    }

    /// The shortest interval at which every writer can checkpoint without the store falling
    /// behind: writers times the cost per write (zero before any write).
    pub fn floor(&self) -> Duration {
        let cost = self.cost_per_write().unwrap_or(Duration::ZERO);
        cost.saturating_mul(self.writers().min(u64::from(u32::MAX)) as u32)
    }

    /// Counts a capture replaced by a newer one before it was written.
    pub fn superseded(&self) {
        self.superseded.fetch_add(1, Ordering::Relaxed);
    }

    /// Captures replaced by newer ones before they were written.
    pub fn superseded_count(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }
}

impl MeterState {
    /// Adds the time since the last event to `busy` if a write was in flight.
    fn advance(&mut self, now: Duration) {
        if self.in_flight > 0 {
            self.busy += now.saturating_sub(self.mark);
        }
        self.mark = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::ManualClock;

    #[test]
    fn busy_time_is_shared_by_the_writes_in_flight_together() {
        let clock = ManualClock::new();
        let meter = StoreMeter::new(Arc::new(clock.clone()));
        assert_eq!(meter.cost_per_write(), None);
        assert_eq!(meter.floor(), Duration::ZERO);
        // One write alone: its whole latency.
        meter.write_started();
        clock.advance(Duration::from_millis(4));
        meter.write_finished();
        assert_eq!(meter.cost_per_write(), Some(Duration::from_millis(4)));
        // Idle time is not counted.
        clock.advance(Duration::from_secs(10));
        // A batch of 8 in 4 ms: 0.5 ms each; the average moves by 30% towards it.
        for _ in 0..8 {
            meter.write_started();
        }
        clock.advance(Duration::from_millis(4));
        for _ in 0..8 {
            meter.write_finished();
        }
        let expected = 4.0 * 0.7 + 0.5 * 0.3;
        let cost = meter.cost_per_write().unwrap().as_secs_f64() * 1000.0;
        assert!((cost - expected).abs() < 1e-6, "{cost} ms");
    }

    #[test]
    fn the_floor_grows_with_the_writers_and_falls_when_they_leave() {
        let clock = ManualClock::new();
        let meter = StoreMeter::new(Arc::new(clock.clone()));
        meter.write_started();
        clock.advance(Duration::from_millis(2));
        meter.write_finished();
        let writers: Vec<StoreWriter> = (0..1000).map(|_| meter.writer()).collect();
        assert_eq!(meter.writers(), 1000);
        assert_eq!(meter.floor(), Duration::from_secs(2));
        drop(writers);
        assert_eq!(meter.writers(), 0);
        assert_eq!(meter.floor(), Duration::ZERO);
    }

    #[test]
    fn a_store_that_is_never_idle_is_still_sampled() {
        let clock = ManualClock::new();
        let meter = StoreMeter::new(Arc::new(clock.clone()));
        meter.write_started();
        // Writes overlap forever: one starts before the previous one finishes.
        for _ in 0..100 {
            meter.write_started();
            clock.advance(Duration::from_millis(1));
            meter.write_finished();
        }
        assert!(meter.cost_per_write().is_some());
        let cost = meter.cost_per_write().unwrap();
        assert!((cost.as_secs_f64() - 0.001).abs() < 1e-6, "{cost:?}");
    }
}
