//! Measuring and reporting helpers shared by the benchmarks (each uses a subset).
#![allow(dead_code)]

use std::fs;

/// Runs every measurement once per round, rotating which goes first; round 0 is a warm-up
/// whose samples are dropped unless `warm_up` is false. Each measurement returns its samples
/// (seconds) for the round.
pub fn rounds(
    iters: usize,
    warm_up: bool,
    measures: &mut [&mut dyn FnMut() -> Vec<f64>],
) -> Vec<Vec<f64>> {
    let mut samples = vec![Vec::new(); measures.len()];
    let first = if warm_up { 0 } else { 1 };
    for round in first..=iters {
        for k in 0..measures.len() {
            let which = (round + k) % measures.len();
            let taken = (measures[which])();
            if round > 0 {
                samples[which].extend(taken);
            }
        }
    }
    samples
}

/// The median; NaN for no samples.
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The `q` quantile (0 to 1) by nearest rank; NaN for no samples.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of the ratios of samples taken in the same round (the same position), which
/// cancels load that lasts a round on a shared machine.
pub fn paired_ratio(op: &[f64], base: &[f64]) -> f64 {
    let ratios: Vec<f64> = op.iter().zip(base).map(|(op, base)| op / base).collect();
    median(&ratios)
}

/// `min..max` of the samples, in seconds, with their count.
pub fn spread(samples: &[f64]) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(0.0, f64::max);
    format!("{min:.6}..{max:.6}s(n={})", samples.len())
}

/// Hands freed memory back to the kernel, so that the next run's allocations get fresh pages
/// (glibc would otherwise serve them from an already-touched free heap region) and one case's
/// garbage is not the next one's.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets `VmHWM` to the current resident size (Linux 4.0 and later).
pub fn reset_peak_memory() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}
