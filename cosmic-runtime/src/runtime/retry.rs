//! [`RetryPolicy`]: what the runtime does when a step panics: fail the task at once (the
//! default), or run it again from its last durable checkpoint, a bounded number of times, with
//! a growing pause in between (like Temporal's retry policies or an Erlang supervisor).

use std::time::Duration;

/// How often a task whose step panicked is tried again, and how long to wait before each try.
///
/// The tries are counted per task in the store (with the task's checkpoints), so the count
/// survives restarts and moves; a try starts from the last durable checkpoint, never from
/// state the panicking step touched.
///
/// ```
/// use std::time::Duration;
/// use cosmic_runtime::runtime::RetryPolicy;
///
/// let policy = RetryPolicy::tries(3)
///     .backoff(Duration::from_millis(100), Duration::from_secs(10));
/// assert_eq!(policy.max_tries, 3);
/// // Before the second try, then the third: the pause doubles up to the maximum.
/// assert_eq!(policy.delay_before(2), Duration::from_millis(100));
/// assert_eq!(policy.delay_before(3), Duration::from_millis(200));
/// assert_eq!(RetryPolicy::default().max_tries, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first one included: 1 means a panic fails the task at once.
    pub max_tries: u32,
    /// The pause before the second try.
    pub backoff_initial: Duration,
    /// The longest pause between tries (the pause doubles up to it).
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    /// No retry: a panic fails the task.
    fn default() -> Self {
        RetryPolicy {
            max_tries: 1,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Up to `max_tries` tries in all (at least 1), with the default pauses (100 ms, doubling
    /// up to 30 s).
    pub fn tries(max_tries: u32) -> Self {
        RetryPolicy {
            max_tries: max_tries.max(1),
            ..RetryPolicy::default()
        }
    }

    /// The pause before the second try, and the longest pause.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Whether try number `next` (counting from 1) is allowed.
    pub(crate) fn allows(&self, next: u32) -> bool {
        next <= self.max_tries
    }

    /// The pause before try number `next` (2 or more): the initial pause, doubled for every
    /// try after the second, at most the maximum.
    pub fn delay_before(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(31);
        self.backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_the_maximum_and_never_overflows() {
        let policy =
            RetryPolicy::tries(100).backoff(Duration::from_millis(10), Duration::from_secs(1));
        let pauses: Vec<u128> = (2..=10)
            .map(|next| policy.delay_before(next).as_millis())
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(policy.delay_before(u32::MAX), Duration::from_secs(1));
        let huge = RetryPolicy::tries(5).backoff(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay_before(40), Duration::MAX);
    }

    #[test]
    fn tries_are_counted_from_one_and_zero_means_one() {
        let policy = RetryPolicy::tries(3);
        assert!(policy.allows(1) && policy.allows(3));
        assert!(!policy.allows(4));
        assert_eq!(RetryPolicy::tries(0).max_tries, 1);
        assert!(!RetryPolicy::default().allows(2));
        let inverted = RetryPolicy::tries(2).backoff(Duration::from_secs(5), Duration::ZERO);
        assert_eq!(inverted.backoff_max, Duration::from_secs(5));
    }
}
