//! When to checkpoint: fixed policies and an adaptive one that chooses its own interval.
//!
//! The adaptive policy minimises the expected time lost to checkpoints plus the work redone
//! after a failure. With checkpoint cost C (the time a capture stalls the task) and mean time
//! between failures M:
//! - Young (1974): the optimal interval is `sqrt(2*C*M)`, a first-order approximation that
//!   holds when C is small against M.
//! - Daly (2006): a higher-order refinement for larger C:
//!   `sqrt(2*C*M) * (1 + sqrt(C/(2M))/3 + (C/(2M))/9) - C` while `C < 2M`, and `M` beyond.
//!
//! The runtime uses Young while `C < M/100` (where the two agree to within about 2%) and
//! Daly otherwise. C is the moving average of measured capture times.

use std::time::Duration;

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
    /// At an interval chosen from the measured checkpoint cost and this mean time between
    /// failures (see the module docs).
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

    /// Checkpoint at an interval chosen from the cost of checkpoints and `mtbf`.
    pub fn adaptive(mtbf: Duration) -> Policy {
        Policy::Adaptive { mtbf }
    }
}

impl Default for Policy {
    /// Every second.
    fn default() -> Self {
        Policy::Every(Duration::from_secs(1))
    }
}

/// Young's interval `sqrt(2*C*M)`.
pub fn young_interval(cost: Duration, mtbf: Duration) -> Duration {
    Duration::from_secs_f64((2.0 * cost.as_secs_f64() * mtbf.as_secs_f64()).sqrt())
}

/// Daly's higher-order interval (see the module docs).
pub fn daly_interval(cost: Duration, mtbf: Duration) -> Duration {
    let c = cost.as_secs_f64();
    let m = mtbf.as_secs_f64();
    if c >= 2.0 * m {
        return mtbf;
    }
    let ratio = c / (2.0 * m);
    let interval = (2.0 * c * m).sqrt() * (1.0 + ratio.sqrt() / 3.0 + ratio / 9.0) - c;
    Duration::from_secs_f64(interval.max(0.0))
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
}

impl Schedule {
    /// A schedule whose last checkpoint was at `now`.
    pub(crate) fn new(policy: Policy, now: Duration) -> Self {
        Schedule {
            policy,
            last_checkpoint: now,
            steps_since: 0,
            average_cost: None,
        }
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

    /// The interval the adaptive policy uses now (for the fixed-time policy, its interval).
    /// Before any cost is measured the adaptive policy checkpoints at the first safe point.
    pub(crate) fn interval(&self) -> Duration {
        match self.policy {
            Policy::Every(interval) => interval,
            Policy::Adaptive { mtbf } => match self.average_cost {
                None => Duration::ZERO,
                Some(cost) if cost.as_secs_f64() < mtbf.as_secs_f64() / 100.0 => {
                    young_interval(cost, mtbf)
                }
                Some(cost) => daly_interval(cost, mtbf),
            },
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

    #[test]
    fn young_matches_its_formula() {
        // C = 2 s, M = 1 h: sqrt(2 * 2 * 3600) = 120 s.
        assert!(close(
            young_interval(Duration::from_secs(2), Duration::from_secs(3600)),
            Duration::from_secs(120)
        ));
    }

    #[test]
    fn daly_refines_young_for_large_costs_and_caps_at_mtbf() {
        let m = Duration::from_secs(100);
        let c = Duration::from_secs(50);
        // ratio = 0.25: sqrt(10000) * (1 + 0.5/3 + 0.25/9) - 50
        let expected = 100.0 * (1.0 + 0.5 / 3.0 + 0.25 / 9.0) - 50.0;
        assert!((daly_interval(c, m).as_secs_f64() - expected).abs() < 1e-9);
        assert_eq!(daly_interval(Duration::from_secs(300), m), m);
        // For a small cost Daly is close to Young.
        let small = Duration::from_millis(10);
        let young = young_interval(small, m).as_secs_f64();
        assert!((daly_interval(small, m).as_secs_f64() - young).abs() / young < 0.01);
    }

    #[test]
    fn adaptive_schedule_learns_the_cost_on_a_synthetic_clock() {
        let clock = ManualClock::new();
        let mtbf = Duration::from_secs(3600);
        let mut schedule = Schedule::new(Policy::adaptive(mtbf), clock.now());
        // No cost measured yet: checkpoint at the first safe point after a step.
        assert!(!schedule.is_due(clock.now()));
        schedule.step_done();
        assert!(schedule.is_due(clock.now()));

        // A checkpoint that cost 2 s sets the interval to sqrt(2*2*3600) = 120 s.
        schedule.checkpointed(clock.now(), Duration::from_secs(2));
        assert!(close(schedule.interval(), Duration::from_secs(120)));
        schedule.step_done();
        clock.advance(Duration::from_secs(119));
        assert!(!schedule.is_due(clock.now()));
        clock.advance(Duration::from_secs(1));
        assert!(schedule.is_due(clock.now()));

        // Costs rise to 8 s: the moving average converges and the interval follows
        // towards sqrt(2*8*3600) = 240 s.
        for _ in 0..60 {
            schedule.checkpointed(clock.now(), Duration::from_secs(8));
        }
        assert!(
            close(schedule.average_cost().unwrap(), Duration::from_secs(8))
                || (schedule.average_cost().unwrap().as_secs_f64() - 8.0).abs() < 1e-6
        );
        assert!((schedule.interval().as_secs_f64() - 240.0).abs() < 1e-3);

        // A cost that is large against M switches to Daly's formula.
        let mut costly = Schedule::new(Policy::adaptive(Duration::from_secs(100)), clock.now());
        costly.checkpointed(clock.now(), Duration::from_secs(50));
        assert_eq!(
            costly.interval(),
            daly_interval(Duration::from_secs(50), Duration::from_secs(100))
        );
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
