//! Runs one step of a task under guard: a panic in the step is caught there and turned into a
//! value (the task fails or is retried, the runtime goes on), and a step that runs longer than
//! the configured bound without returning to a safe point is reported while it runs (or, for
//! a step that blocks its thread, as soon as it returns).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::stats::StatsCounters;
use crate::task::TaskId;

/// The prefix of the failure message a panicking step leaves; [`panic_message`] finds it.
pub(crate) const PANIC_PREFIX: &str = "step panicked: ";

/// A step panicked with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Panicked {
    pub(crate) message: String,
}

/// The message of a panic as recorded in a failed outcome, if `failure` is one.
pub(crate) fn panic_message(failure: &str) -> Option<&str> {
    failure.strip_prefix(PANIC_PREFIX)
}

/// What to watch a step for: who it is, and how long a step may run before it is reported.
pub(crate) struct Watch<'a> {
    pub(crate) task: TaskId,
    pub(crate) slow_after: Option<Duration>,
    pub(crate) stats: &'a StatsCounters,
}

impl Watch<'_> {
    fn report(&self, ran: Duration, returned: bool) {
        self.stats.slow_step();
        let bound = self.slow_after.unwrap_or_default();
        if returned {
            tracing::warn!(task = %self.task, ?ran, ?bound, "a step ran longer than the bound without reaching a safe point (it blocked its thread)");
        } else {
            tracing::warn!(task = %self.task, ?ran, ?bound, "a step has run longer than the bound without reaching a safe point");
        }
    }
}

/// Polls `step` to its end, catching a panic in any poll. A step that is still running when
/// the bound passes is reported once.
pub(crate) async fn run<F: Future>(step: F, watch: Watch<'_>) -> Result<F::Output, Panicked> {
    let mut step = pin!(step);
    let started = Instant::now();
    // Made only once the step waits: steps that finish in one poll never touch the timer.
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let mut reported = false;
    let result = std::future::poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| step.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => return Poll::Ready(Ok(output)),
            Err(payload) => {
                return Poll::Ready(Err(Panicked {
                    message: payload_message(payload.as_ref()),
                }))
            }
            Ok(Poll::Pending) => {}
        }
        if let (Some(bound), false) = (watch.slow_after, reported) {
            let timer =
                timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + bound)));
            if timer.as_mut().poll(cx).is_ready() {
                reported = true;
                watch.report(started.elapsed(), false);
            }
        }
        Poll::Pending
    })
    .await;
    if let (Some(bound), false) = (watch.slow_after, reported) {
        let ran = started.elapsed();
        if ran > bound {
            watch.report(ran, true);
        }
    }
    result
}

/// The text of a panic's payload: what `panic!` was given, when it is text.
fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic whose payload is not text".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SystemClock;
    use std::sync::Arc;

    fn stats() -> StatsCounters {
        StatsCounters::new(Arc::new(SystemClock::default()))
    }

    fn watch(stats: &StatsCounters, slow_after: Option<Duration>) -> Watch<'_> {
        Watch {
            task: TaskId(7),
            slow_after,
            stats,
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_step_becomes_its_message() {
        let stats = stats();
        let text = run(async { panic!("boom at {}", 3) }, watch(&stats, None)).await;
        assert_eq!(
            text,
            Err::<(), _>(Panicked {
                message: "boom at 3".into()
            })
        );
        let literal = run(async { panic!("plain") }, watch(&stats, None)).await;
        assert_eq!(literal.unwrap_err().message, "plain");
        let other = run(async { std::panic::panic_any(42_u32) }, watch(&stats, None)).await;
        assert_eq!(
            other.unwrap_err().message,
            "a panic whose payload is not text"
        );
        assert_eq!(run(async { 5 }, watch(&stats, None)).await, Ok(5));
    }

    #[tokio::test]
    async fn a_panic_after_the_step_waited_is_caught_too() {
        let stats = stats();
        let result = run(
            async {
                tokio::task::yield_now().await;
                panic!("late");
            },
            watch(&stats, Some(Duration::from_secs(60))),
        )
        .await;
        assert_eq!(
            result,
            Err::<(), _>(Panicked {
                message: "late".into()
            })
        );
    }

    #[tokio::test]
    async fn a_step_waiting_past_the_bound_is_reported_once_while_it_runs() {
        let stats = stats();
        // The step returns only once it has been reported: the report cannot wait for its end.
        let step = async {
            while stats.slow_steps() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            1
        };
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            run(step, watch(&stats, Some(Duration::from_millis(20)))),
        )
        .await
        .expect("the slow step was never reported");
        assert_eq!(result, Ok(1));
        assert_eq!(stats.slow_steps(), 1);
    }

    #[tokio::test]
    async fn a_step_blocking_past_the_bound_is_reported_when_it_returns() {
        let stats = stats();
        let result = run(
            async {
                std::thread::sleep(Duration::from_millis(30));
                2
            },
            watch(&stats, Some(Duration::from_millis(5))),
        )
        .await;
        assert_eq!(result, Ok(2));
        assert_eq!(stats.slow_steps(), 1);
        let quick = run(async { 3 }, watch(&stats, Some(Duration::from_secs(60)))).await;
        assert_eq!(quick, Ok(3));
        assert_eq!(stats.slow_steps(), 1);
        let unwatched = run(
            async {
                std::thread::sleep(Duration::from_millis(10));
                4
            },
            watch(&stats, None),
        )
        .await;
        assert_eq!(unwatched, Ok(4));
        assert_eq!(stats.slow_steps(), 1);
    }
}
