//! Aggregated warnings: a warning that repeats (one per refused connection, say) is logged the
//! first time, then at most once per interval with the number of times it was suppressed, so a
//! peer that opens connections in a loop cannot flood the log.
//!
//! [`WarnLimiter`] is only the bookkeeping: callers pass the current instant and log what it
//! tells them to, which keeps it deterministic under test.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What to do with one occurrence of a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it, saying how many occurrences of the same warning were suppressed since the last
    /// line (0 the first time).
    Log {
        /// Occurrences not logged since the last line.
        suppressed: u64,
    },
    /// Do not log it: it is counted into the next line.
    Suppress,
}

/// A line owed for occurrences that were suppressed and not yet reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary<K> {
    /// The warning, or `None` for occurrences counted while too many different warnings were
    /// being tracked.
    pub(crate) key: Option<K>,
    /// Occurrences not logged since the last line.
    pub(crate) suppressed: u64,
}

/// Where one warning stands in its interval.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When its last line was logged.
    started: Instant,
    /// Occurrences since then.
    suppressed: u64,
}

/// Decides which occurrences of warnings keyed by `K` (kind and source, typically) are
/// logged: the first of each key, then at most one line per key and interval.
#[derive(Debug)]
pub(crate) struct WarnLimiter<K> {
    interval: Duration,
    /// Bounds the memory a peer can make us use by varying the source.
    capacity: usize,
    windows: HashMap<K, Window>,
    /// Occurrences of keys that found no room, reported under no key.
    overflow: Option<Window>,
}

/// How many different warnings are tracked at once by default.
pub(crate) const DEFAULT_CAPACITY: usize = 4096;

impl<K: Eq + Hash + Clone> WarnLimiter<K> {
    /// A limiter that logs each key at most once per `interval`, tracking at most `capacity`
    /// keys (beyond that, new keys share one line).
    pub(crate) fn new(interval: Duration, capacity: usize) -> WarnLimiter<K> {
        WarnLimiter {
            interval,
            capacity: capacity.max(1),
            windows: HashMap::new(),
            overflow: None,
        }
    }

    /// Records one occurrence of `key` at `now`.
    pub(crate) fn observe(&mut self, key: K, now: Instant) -> Verdict {
        if let Some(window) = self.windows.get_mut(&key) {
            return count(window, now, self.interval);
        }
        if self.windows.len() >= self.capacity {
            self.forget_quiet(now);
        }
        if self.windows.len() >= self.capacity {
            return match &mut self.overflow {
                Some(window) => count(window, now, self.interval),
                None => {
                    self.overflow = Some(Window {
                        started: now,
                        suppressed: 0,
                    });
                    Verdict::Log { suppressed: 0 }
                }
            };
        }
        self.windows.insert(
            key,
            Window {
                started: now,
                suppressed: 0,
            },
        );
        Verdict::Log { suppressed: 0 }
    }

    /// The lines owed at `now`: keys whose interval has ended with occurrences suppressed.
    /// Each starts a new interval; keys that stayed quiet for a whole interval are forgotten.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Summary<K>> {
        let interval = self.interval;
        let mut owed = Vec::new();
        self.windows.retain(|key, window| {
            if now.saturating_duration_since(window.started) < interval {
                return true;
            }
            if window.suppressed == 0 {
                return false;
            }
            owed.push(Summary {
                key: Some(key.clone()),
                suppressed: window.suppressed,
            });
            *window = Window {
                started: now,
                suppressed: 0,
            };
            true
        });
        if let Some(window) = &mut self.overflow {
            if now.saturating_duration_since(window.started) >= interval {
                if window.suppressed > 0 {
                    owed.push(Summary {
                        key: None,
                        suppressed: window.suppressed,
                    });
                    *window = Window {
                        started: now,
                        suppressed: 0,
                    };
                } else {
                    self.overflow = None;
                }
            }
        }
        owed
    }

    /// Every line still owed, interval ended or not (when the warnings' owner goes away).
    pub(crate) fn flush(&mut self) -> Vec<Summary<K>> {
        let mut owed: Vec<Summary<K>> = self
            .windows
            .drain()
            .filter(|(_, window)| window.suppressed > 0)
            .map(|(key, window)| Summary {
                key: Some(key),
                suppressed: window.suppressed,
            })
            .collect();
        if let Some(window) = self.overflow.take().filter(|w| w.suppressed > 0) {
            owed.push(Summary {
                key: None,
                suppressed: window.suppressed,
            });
        }
        owed
    }

    /// When the earliest interval with suppressed occurrences ends, if any (to wake up and
    /// log its line).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.windows
            .values()
            .chain(self.overflow.iter())
            .filter(|window| window.suppressed > 0)
            .map(|window| window.started + self.interval)
            .min()
    }

    /// Drops keys whose interval ended with nothing suppressed: they owe no line.
    fn forget_quiet(&mut self, now: Instant) {
        let interval = self.interval;
        self.windows.retain(|_, window| {
            window.suppressed > 0 || now.saturating_duration_since(window.started) < interval
        });
    }
}

fn count(window: &mut Window, now: Instant, interval: Duration) -> Verdict {
    if now.saturating_duration_since(window.started) < interval {
        window.suppressed += 1;
        return Verdict::Suppress;
    }
    let suppressed = window.suppressed;
    *window = Window {
        started: now,
        suppressed: 0,
    };
    Verdict::Log { suppressed }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limiter(capacity: usize) -> WarnLimiter<(&'static str, u8)> {
        WarnLimiter::new(10 * SECOND, capacity)
    }

    #[test]
    fn the_first_occurrence_is_logged_and_repeats_are_counted_into_one_line() {
        let start = Instant::now();
        let mut limiter = limiter(16);
        assert_eq!(
            limiter.observe(("refused", 1), start),
            Verdict::Log { suppressed: 0 }
        );
        for i in 1..=999u64 {
            let at = start + Duration::from_millis(i * 9);
            assert_eq!(limiter.observe(("refused", 1), at), Verdict::Suppress);
        }
        assert!(limiter.due(start + 9 * SECOND).is_empty());
        assert_eq!(limiter.next_due(), Some(start + 10 * SECOND));
        // The next occurrence after the interval carries the count.
        assert_eq!(
            limiter.observe(("refused", 1), start + 10 * SECOND),
            Verdict::Log { suppressed: 999 }
        );
        assert_eq!(limiter.next_due(), None);
    }

    #[test]
    fn keys_are_counted_apart() {
        let start = Instant::now();
        let mut limiter = limiter(16);
        assert!(matches!(
            limiter.observe(("refused", 1), start),
            Verdict::Log { .. }
        ));
        assert!(matches!(
            limiter.observe(("refused", 2), start),
            Verdict::Log { .. }
        ));
        assert!(matches!(
            limiter.observe(("timeout", 1), start),
            Verdict::Log { .. }
        ));
        assert_eq!(limiter.observe(("refused", 2), start), Verdict::Suppress);
        let owed = limiter.due(start + 10 * SECOND);
        assert_eq!(
            owed,
            vec![Summary {
                key: Some(("refused", 2)),
                suppressed: 1
            }]
        );
    }

    #[test]
    fn a_summary_starts_a_new_interval_and_quiet_keys_are_forgotten() {
        let start = Instant::now();
        let mut limiter = limiter(16);
        limiter.observe(("refused", 1), start);
        limiter.observe(("refused", 1), start + SECOND);
        assert_eq!(limiter.due(start + 10 * SECOND).len(), 1);
        // Within the new interval: still suppressed.
        assert_eq!(
            limiter.observe(("refused", 1), start + 11 * SECOND),
            Verdict::Suppress
        );
        assert_eq!(limiter.due(start + 19 * SECOND), vec![]);
        assert_eq!(limiter.due(start + 20 * SECOND).len(), 1);
        // A whole quiet interval: forgotten, so the next occurrence is a first one again.
        assert_eq!(limiter.due(start + 30 * SECOND), vec![]);
        assert!(limiter.windows.is_empty());
        assert_eq!(
            limiter.observe(("refused", 1), start + 31 * SECOND),
            Verdict::Log { suppressed: 0 }
        );
    }

    #[test]
    fn too_many_keys_share_one_line() {
        let start = Instant::now();
        let mut limiter = limiter(2);
        limiter.observe(("refused", 1), start);
        limiter.observe(("refused", 2), start);
        assert_eq!(
            limiter.observe(("refused", 3), start),
            Verdict::Log { suppressed: 0 }
        );
        for source in 4..100 {
            assert_eq!(
                limiter.observe(("refused", source), start),
                Verdict::Suppress
            );
        }
        assert_eq!(limiter.windows.len(), 2);
        let owed = limiter.flush();
        assert_eq!(
            owed,
            vec![Summary {
                key: None,
                suppressed: 96
            }]
        );
        // Room again once quiet keys are forgotten.
        let mut limiter = self::limiter(1);
        limiter.observe(("refused", 1), start);
        assert_eq!(
            limiter.observe(("refused", 2), start + 10 * SECOND),
            Verdict::Log { suppressed: 0 }
        );
        assert!(limiter.overflow.is_none());
    }

    #[test]
    fn flush_reports_everything_owed() {
        let start = Instant::now();
        let mut limiter = limiter(16);
        for _ in 0..5 {
            limiter.observe(("refused", 1), start);
        }
        limiter.observe(("timeout", 1), start);
        let owed = limiter.flush();
        assert_eq!(
            owed,
            vec![Summary {
                key: Some(("refused", 1)),
                suppressed: 4
            }]
        );
        assert!(limiter.flush().is_empty());
    }
}
