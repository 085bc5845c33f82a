//! When to checkpoint: fixed policies and an adaptive one that chooses its own interval.
//!
//! # The adaptive interval
//!
//! A checkpoint costs a task the time its capture stalls it (C, the moving average of
//! measured captures); a failure costs the work done since the last checkpoint. With mean time
//! between failures M, the interval that minimises the expected time lost to both is Daly's
//! (2006) higher-order estimate
//!
//! ```text
//! daly(C, M) = sqrt(2CM) * (1 + sqrt(C/2M)/3 + (C/2M)/9) - C     for C < 2M
//! ```
//!
//! which tends to Young's first-order `sqrt(2CM)` as C/M goes to 0. It is used for every C, so
//! the interval moves smoothly with the measured cost (switching between Young and Daly at a
//! threshold jumped by about 5%). Beyond `C = 2M`, where Daly's paper takes `M`, the interval
//! stays at `daly(2M, M) = 8M/9`: the formula's maximum, reached with zero slope, so the
//! interval has no jump there either (taking `M` would jump by 12.5%).
//!
//! C is only what the task pays. The durable write that follows runs off the task's path but
//! on the host's store, which every task of the host shares: with many tasks the store, not the
//! tasks, is the bottleneck, and captures queued behind a busy store are superseded before
//! they are written (work thrown away). So the interval is also never shorter than the time the
//! store needs to write one checkpoint of every task:
//!
//! ```text
//! interval = max(daly(C, M), N * W)
//! ```
//!
//! where N is the number of tasks writing to the store and W the store's busy time per
//! checkpoint written (a moving average kept by the host's [`StoreMeter`]; with `FileStore`'s
//! group commit it falls as batches grow). Both terms are continuous, and so is their maximum.
//!
//! M is configured ([`Policy::adaptive`], [`Policy::adaptive_secs`]); a zero, negative,
//! infinite or NaN value is refused with a [`PolicyError`], as is a runtime built with such a
//! policy.

use std::sync::Arc;
use std::time::Duration;

use super::StoreMeter;

/// A policy or formula input that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The mean time between failures must be a positive, finite number of seconds.
    #[error("invalid mean time between failures {seconds} s: it must be positive and finite")]
    Mtbf {
        /// The value given, in seconds.
        seconds: f64,
    },
    /// A checkpoint cost must be a non-negative, finite number of seconds.
    #[error("invalid checkpoint cost {seconds} s: it must be zero or positive, and finite")]
    Cost {
        /// The value given, in seconds.
        seconds: f64,
    },
}

/// When a task is checkpointed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Policy {
    /// Never, not even on demand: nothing survives a crash.
    Never,
    /// Only when asked (`checkpoint_now`, or a step's request).
    OnDemand,
    /// After every N steps.
    EverySteps(u64),
    /// At the first safe point after each interval.
    Every(Duration),
    /// At an interval chosen from the measured checkpoint cost, the store's load and this mean
    /// time between failures (see the module docs). Build it with [`Policy::adaptive`], which
    /// checks `mtbf`; a runtime refuses one with a zero `mtbf`.
    Adaptive {
        /// The expected mean time between failures of a host.
        mtbf: Duration,
    },
}

impl Policy {
    /// Checkpoint at the first safe point after each `interval`.
    pub fn every(interval: Duration) -> Policy {
        Policy::Every(interval)
    }

    /// Checkpoint after every `steps` steps (at least 1).
    pub fn every_steps(steps: u64) -> Policy {
        Policy::EverySteps(steps.max(1))
    }

    /// Checkpoint at an interval chosen from the cost of checkpoints and `mtbf`, the mean time
    /// between failures of a host. Refuses a zero `mtbf`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cosmic_runtime::checkpoint::{Policy, PolicyError};
    ///
    /// assert!(Policy::adaptive(Duration::from_secs(24 * 3600)).is_ok());
    /// assert_eq!(
    ///     Policy::adaptive(Duration::ZERO),
    ///     Err(PolicyError::Mtbf { seconds: 0.0 })
    /// );
    /// ```
    pub fn adaptive(mtbf: Duration) -> Result<Policy, PolicyError> {
        check_mtbf(mtbf.as_secs_f64())?;
        Ok(Policy::Adaptive { mtbf })
    }

    /// [`adaptive`](Self::adaptive) with the mean time between failures in seconds (from a
    /// configuration file, say). Refuses zero, negative, infinite and NaN values.
    ///
    /// ```
    /// use cosmic_runtime::checkpoint::Policy;
    ///
    /// assert!(Policy::adaptive_secs(3600.0).is_ok());
    /// assert!(Policy::adaptive_secs(-1.0).is_err());
    /// assert!(Policy::adaptive_secs(f64::NAN).is_err());
    /// ```
    pub fn adaptive_secs(mtbf: f64) -> Result<Policy, PolicyError> {
        check_mtbf(mtbf)?;
        let mtbf =
            Duration::try_from_secs_f64(mtbf).map_err(|_| PolicyError::Mtbf { seconds: mtbf })?;
        Policy::adaptive(mtbf)
    }

    /// Checks a policy built directly from its variant (as [`adaptive`](Self::adaptive) does).
    pub fn check(&self) -> Result<(), PolicyError> {
        match self {
            Policy::Adaptive { mtbf } => check_mtbf(mtbf.as_secs_f64()),
            _ => Ok(()),
        }
    }
}

impl Default for Policy {
    /// Every second.
    fn default() -> Self {
        Policy::Every(Duration::from_secs(1))
    }
}

fn check_mtbf(seconds: f64) -> Result<(), PolicyError> {
    if seconds.is_finite() && seconds > 0.0 {
        Ok(())
    } else {
        Err(PolicyError::Mtbf { seconds })
    }
}

fn check_cost(seconds: f64) -> Result<(), PolicyError> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(())
    } else {
        Err(PolicyError::Cost { seconds })
    }
}

/// Young's first-order interval `sqrt(2*C*M)`, for comparison: the runtime uses
/// [`daly_interval`], which tends to it for small costs.
pub fn young_interval(cost: Duration, mtbf: Duration) -> Duration {
    Duration::from_secs_f64((2.0 * cost.as_secs_f64() * mtbf.as_secs_f64()).sqrt())
}

/// Daly's interval for checkpoint cost `cost` and mean time between failures `mtbf`, held at
/// its maximum `8M/9` for costs beyond `2M` (see the module docs). Refuses a zero `mtbf`.
///
/// ```
/// use std::time::Duration;
/// use cosmic_runtime::checkpoint::daly_interval;
///
/// let hour = Duration::from_secs(3600);
/// // A 2 s capture, a failure an hour: just under two minutes.
/// let interval = daly_interval(Duration::from_secs(2), hour).unwrap();
/// assert!((interval.as_secs_f64() - 118.67).abs() < 0.01);
/// assert!(daly_interval(Duration::from_secs(2), Duration::ZERO).is_err());
/// ```
pub fn daly_interval(cost: Duration, mtbf: Duration) -> Result<Duration, PolicyError> {
    daly_interval_secs(cost.as_secs_f64(), mtbf.as_secs_f64()).map(Duration::from_secs_f64)
}

/// [`daly_interval`] in seconds. Refuses a negative, infinite or NaN cost and a mean time
/// between failures that is not positive and finite.
pub fn daly_interval_secs(cost: f64, mtbf: f64) -> Result<f64, PolicyError> {
    check_cost(cost)?;
    check_mtbf(mtbf)?;
    let c = cost.min(2.0 * mtbf);
    let ratio = c / (2.0 * mtbf);
    let interval = (2.0 * c * mtbf).sqrt() * (1.0 + ratio.sqrt() / 3.0 + ratio / 9.0) - c;
    Ok(interval.max(0.0))
}

/// Weight of a new cost measurement in the moving average.
const COST_SMOOTHING: f64 = 0.3;

/// A task's checkpoint schedule: applies a [`Policy`] to the steps and time since the last
/// checkpoint, and learns the checkpoint cost for the adaptive policy.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    policy: Policy,
    last_checkpoint: Duration,
    steps_since: u64,
    average_cost: Option<Duration>,
    store: Option<Arc<StoreMeter>>,
}

impl Schedule {
    /// A schedule whose last checkpoint was at `now`.
    pub(crate) fn new(policy: Policy, now: Duration) -> Self {
        Schedule {
            policy,
            last_checkpoint: now,
            steps_since: 0,
            average_cost: None,
            store: None,
        }
    }

    /// The same schedule, whose adaptive interval is never shorter than what `store` can
    /// absorb for all the tasks writing to it (see the module docs).
    pub(crate) fn sharing(mut self, store: Arc<StoreMeter>) -> Self {
        self.store = Some(store);
        self
    }

    /// Counts a completed step.
    pub(crate) fn step_done(&mut self) {
        self.steps_since += 1;
    }

    /// Whether a checkpoint is due at a safe point at time `now`.
    pub(crate) fn is_due(&self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last_checkpoint);
        match self.policy {
            Policy::Never | Policy::OnDemand => false,
            Policy::EverySteps(steps) => self.steps_since >= steps,
            Policy::Every(interval) => elapsed >= interval,
            Policy::Adaptive { .. } => self.steps_since > 0 && elapsed >= self.interval(),
        }
    }

    /// Records a checkpoint taken at `now` that stalled the task for `cost`.
    pub(crate) fn checkpointed(&mut self, now: Duration, cost: Duration) {
        self.last_checkpoint = now;
        self.steps_since = 0;
        self.average_cost = Some(match self.average_cost {
            None => cost,
            Some(average) => average.mul_f64(1.0 - COST_SMOOTHING) + cost.mul_f64(COST_SMOOTHING),
        });
    }

    /// The interval the adaptive policy uses now (for the fixed-time policy, its interval):
    /// `max(daly(C, M), N * W)`. Before any cost is measured, the task's term is zero: the
    /// first checkpoint measures it.
    pub(crate) fn interval(&self) -> Duration {
        match self.policy {
            Policy::Every(interval) => interval,
            Policy::Adaptive { mtbf } => {
                // An invalid M is refused when the runtime is built; a schedule made directly
                // with one checkpoints at every safe point rather than never.
                let task = self
                    .average_cost
                    .and_then(|cost| daly_interval(cost, mtbf).ok())
                    .unwrap_or(Duration::ZERO);
                let store = self
                    .store
                    .as_ref()
                    .map(|store| store.floor())
                    .unwrap_or(Duration::ZERO);
                task.max(store)
            }
            _ => Duration::MAX,
        }
    }

    /// The moving average of checkpoint costs, once one was measured (read by the tests).
    #[cfg(test)]
    pub(crate) fn average_cost(&self) -> Option<Duration> {
        self.average_cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Clock, ManualClock};

    fn close(a: Duration, b: Duration) -> bool {
        (a.as_secs_f64() - b.as_secs_f64()).abs() <= 1e-9 * b.as_secs_f64().max(1.0)
    }

    fn daly(c: f64, m: f64) -> f64 {
        daly_interval_secs(c, m).unwrap()
    }

    #[test]
    fn young_matches_its_formula() {
        // C = 2 s, M = 1 h: sqrt(2 * 2 * 3600) = 120 s.
        assert!(close(
            young_interval(Duration::from_secs(2), Duration::from_secs(3600)),
            Duration::from_secs(120)
        ));
    }

    #[test]
    fn daly_matches_its_formula_and_tends_to_young() {
        let m = Duration::from_secs(100);
        let c = Duration::from_secs(50);
        // ratio = 0.25: sqrt(10000) * (1 + 0.5/3 + 0.25/9) - 50
        let expected = 100.0 * (1.0 + 0.5 / 3.0 + 0.25 / 9.0) - 50.0;
        assert!((daly_interval(c, m).unwrap().as_secs_f64() - expected).abs() < 1e-9);
        // For a small cost Daly is Young to within 2/3 sqrt(C/2M).
        for cost in [1e-6, 1e-3, 0.1] {
            let young = young_interval(Duration::from_secs_f64(cost), m).as_secs_f64();
            let relative = (daly(cost, 100.0) - young).abs() / young;
            // (Plus the rounding of `Duration` to nanoseconds.)
            let bound = 2.0 * (cost / 200.0).sqrt() / 3.0 + 1e-6;
            assert!(relative <= bound, "{cost}: {relative}");
        }
        assert_eq!(daly(0.0, 100.0), 0.0);
    }

    #[test]
    fn daly_has_no_jump_anywhere_and_holds_its_maximum_beyond_twice_the_mtbf() {
        let m = 100.0;
        // Sweep C over 0..4M in steps of 1e-4 M: neighbouring intervals never differ by more
        // than the formula's slope allows over the step (a jump would exceed it), and the
        // interval never decreases. Daly's slope is at most Young's, sqrt(M/2C), and the
        // interval at most Young's, sqrt(2CM).
        let steps = 40_000;
        let step = 4.0 * m / steps as f64;
        let mut previous = daly(0.0, m);
        for i in 1..=steps {
            let c = i as f64 * step;
            let interval = daly(c, m);
            assert!(interval + 1e-9 >= previous, "decreases at C = {c}");
            let left = c - step;
            let allowed = if left > 0.0 {
                step * (m / (2.0 * left)).sqrt()
            } else {
                (2.0 * c * m).sqrt()
            };
            assert!(interval - previous <= allowed + 1e-9, "jumps at C = {c}");
            previous = interval;
        }
        // At and beyond C = 2M: 8M/9, the formula's own value there.
        assert!((daly(2.0 * m, m) - 8.0 * m / 9.0).abs() < 1e-9);
        assert!((daly(2.0 * m - 1e-6, m) - 8.0 * m / 9.0).abs() < 1e-6);
        assert!((daly(1e6, m) - 8.0 * m / 9.0).abs() < 1e-9);
        // Where the old schedule switched from Young to Daly (C = M/100), nothing happens.
        let below = daly(m / 100.0 - 1e-9, m);
        let above = daly(m / 100.0 + 1e-9, m);
        assert!((above - below).abs() < 1e-6);
    }

    #[test]
    fn invalid_inputs_are_refused_with_what_is_wrong() {
        for mtbf in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(
                matches!(Policy::adaptive_secs(mtbf), Err(PolicyError::Mtbf { .. })),
                "{mtbf}"
            );
            assert!(matches!(
                daly_interval_secs(1.0, mtbf),
                Err(PolicyError::Mtbf { .. })
            ));
        }
        assert_eq!(
            Policy::adaptive(Duration::ZERO),
            Err(PolicyError::Mtbf { seconds: 0.0 })
        );
        assert!(daly_interval(Duration::from_secs(1), Duration::ZERO).is_err());
        for cost in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                daly_interval_secs(cost, 100.0),
                Err(PolicyError::Cost { .. })
            ));
        }
        // A policy built from its variant is checked too.
        let direct = Policy::Adaptive {
            mtbf: Duration::ZERO,
        };
        assert!(direct.check().is_err());
        assert!(Policy::adaptive_secs(1e-3).unwrap().check().is_ok());
        assert!(Policy::every(Duration::ZERO).check().is_ok());
        let message = Policy::adaptive_secs(-2.0).unwrap_err().to_string();
        assert!(
            message.contains("-2") && message.contains("between failures"),
            "{message}"
        );
    }

    #[test]
    fn adaptive_schedule_learns_the_cost_on_a_synthetic_clock() {
        let clock = ManualClock::new();
        let mtbf = Duration::from_secs(3600);
        let mut schedule = Schedule::new(Policy::adaptive(mtbf).unwrap(), clock.now());
        // No cost measured yet: checkpoint at the first safe point after a step.
        assert!(!schedule.is_due(clock.now()));
        schedule.step_done();
        assert!(schedule.is_due(clock.now()));

        // A checkpoint that cost 2 s sets the interval to daly(2 s, 1 h), about 118.67 s.
        schedule.checkpointed(clock.now(), Duration::from_secs(2));
        let expected = daly_interval(Duration::from_secs(2), mtbf).unwrap();
        assert!(close(schedule.interval(), expected));
        schedule.step_done();
        clock.advance(Duration::from_secs(118));
        assert!(!schedule.is_due(clock.now()));
        clock.advance(Duration::from_secs(1));
        assert!(schedule.is_due(clock.now()));

        // Costs rise to 8 s: the moving average converges and the interval follows.
        for _ in 0..60 {
            schedule.checkpointed(clock.now(), Duration::from_secs(8));
        }
        assert!((schedule.average_cost().unwrap().as_secs_f64() - 8.0).abs() < 1e-6);
        let expected = daly(8.0, 3600.0);
        assert!((schedule.interval().as_secs_f64() - expected).abs() < 1e-3);
    }

    #[test]
    fn the_store_bounds_the_adaptive_interval_from_below() {
        let clock = ManualClock::new();
        let meter = StoreMeter::new(Arc::new(clock.clone()));
        let policy = Policy::adaptive(Duration::from_secs(3600)).unwrap();
        let mut schedule = Schedule::new(policy, clock.now()).sharing(Arc::clone(&meter));
        // A 6 us capture: Daly alone says about 0.21 s.
        schedule.checkpointed(clock.now(), Duration::from_micros(6));
        let task_term = daly(6e-6, 3600.0);
        assert!(close(
            schedule.interval(),
            Duration::from_secs_f64(task_term)
        ));

        // The store takes 5 ms per write and 1,000 tasks write to it: 5 s per round of
        // checkpoints, which the interval respects.
        let writers: Vec<_> = (0..1000).map(|_| meter.writer()).collect();
        meter.write_started();
        clock.advance(Duration::from_millis(5));
        meter.write_finished();
        assert!(close(schedule.interval(), Duration::from_secs(5)));
        schedule.checkpointed(clock.now(), Duration::from_micros(6));
        schedule.step_done();
        clock.advance(Duration::from_millis(4_999));
        assert!(!schedule.is_due(clock.now()));
        clock.advance(Duration::from_millis(1));
        assert!(schedule.is_due(clock.now()));

        // Fewer tasks: the task's own term is the larger again, with no jump between the two.
        drop(writers);
        let few: Vec<_> = (0..10).map(|_| meter.writer()).collect();
        assert!(close(
            schedule.interval(),
            Duration::from_secs_f64(task_term)
        ));
        let crossover = (task_term / 0.005).ceil() as usize;
        drop(few);
        let at: Vec<_> = (0..crossover).map(|_| meter.writer()).collect();
        let interval = schedule.interval().as_secs_f64();
        assert!(interval >= task_term && interval - task_term <= 0.005 + 1e-9);
        drop(at);

        // The fixed policies are the user's explicit choice and are not bounded.
        let timed = Schedule::new(Policy::every(Duration::from_millis(1)), clock.now())
            .sharing(Arc::clone(&meter));
        let _many: Vec<_> = (0..1000).map(|_| meter.writer()).collect();
        assert_eq!(timed.interval(), Duration::from_millis(1));
    }

    #[test]
    fn fixed_policies_fire_when_due() {
        let clock = ManualClock::new();
        let mut steps = Schedule::new(Policy::every_steps(3), clock.now());
        steps.step_done();
        steps.step_done();
        assert!(!steps.is_due(clock.now()));
        steps.step_done();
        assert!(steps.is_due(clock.now()));
        steps.checkpointed(clock.now(), Duration::ZERO);
        assert!(!steps.is_due(clock.now()));

        let mut timed = Schedule::new(Policy::every(Duration::from_secs(5)), clock.now());
        clock.advance(Duration::from_secs(4));
        assert!(!timed.is_due(clock.now()));
        clock.advance(Duration::from_secs(1));
        assert!(timed.is_due(clock.now()));
        timed.checkpointed(clock.now(), Duration::ZERO);
        assert!(!timed.is_due(clock.now()));

        for policy in [Policy::Never, Policy::OnDemand] {
            let mut never = Schedule::new(policy, clock.now());
            never.step_done();
            clock.advance(Duration::from_secs(1_000_000));
            assert!(!never.is_due(clock.now()));
        }
    }
}
