//! Measuring this host's load for the coordinator: steps per second (from the runtime's step
//! counter) and CPU use of the process (from `getrusage`), each over the interval since the
//! previous sample.

use std::sync::Mutex;
use std::time::Instant;

pub(crate) struct LoadMeter {
    last: Mutex<Option<(Instant, u64, f64)>>,
}

impl LoadMeter {
    pub(crate) fn new() -> LoadMeter {
        LoadMeter {
            last: Mutex::new(None),
        }
    }

    /// (steps per second, CPU cores busy) since the previous call.
    pub(crate) fn sample(&self, total_steps: u64) -> (f64, f64) {
        let now = Instant::now();
        let cpu = process_cpu_seconds();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rates = match *last {
            Some((then, steps, cpu_then)) => {
                let elapsed = now.duration_since(then).as_secs_f64();
                if elapsed > 0.0 {
                    (
                        total_steps.saturating_sub(steps) as f64 / elapsed,
                        ((cpu - cpu_then) / elapsed).max(0.0),
                    )
                } else {
                    (0.0, 0.0)
                }
            }
            None => (0.0, 0.0),
        };
        *last = Some((now, total_steps, cpu));
        rates
    }
}

/// User plus system CPU time of this process, in seconds.
fn process_cpu_seconds() -> f64 {
    // SAFETY: `getrusage` fills the struct we own; RUSAGE_SELF is always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
