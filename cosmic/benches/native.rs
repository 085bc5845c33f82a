//! Speed of native images (plain-old-data state stored as memory) against their physical
//! baselines and against the portable encoding.
//!
//! `cargo bench -p cosmic --bench native [-- --mib N --particles N --iters N --only SUBSTRING]`
//!
//! Cases, each timed against its baseline in this process, interleaved (alternating which goes
//! first) after an untimed warm-up round, one line per case:
//!
//! - `native/bulk-256m`: a native capture into a reused writer plus a restore (both
//!   checksummed) of `--mib` MiB of `#[migratable(native)]` particles, against two
//!   `copy_from_slice` of the same bytes into already-touched buffers.
//! - `native/particles`: capture plus restore of `--particles` particles (10 million by
//!   default), native against portable.
//! - `native/restore-scaling`: reading a native image from a `FileStore` (in the temp
//!   folder) and restoring it, for a 1 GiB and a 16 MiB image; the line gives the time per GiB of both and their ratio (a
//!   restore costs a pass over the bytes, so that ratio stays near 1 if nothing else grows).
//!
//! `<bench>/<case>: bytes=<n> median=<seconds>s baseline=<name> baseline_median=<seconds>s ratio=<x>`

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{median, paired_ratio, release_free_memory, rounds, spread};
use cosmic::bytemuck::{self, Pod, Zeroable};
use cosmic::checkpoint::PutMode;
use cosmic::image::{self, Encoding, ImageWriter};
use cosmic::Migratable;
use cosmic::{CheckpointStore, FileStore};

#[derive(Debug, Clone, Copy, PartialEq, Migratable, Pod, Zeroable)]
#[bytemuck(crate = "cosmic::bytemuck")]
#[repr(C)]
struct Particle {
    position: [f32; 3],
    velocity: [f32; 3],
    id: u64,
}

#[derive(Debug, PartialEq, Migratable)]
struct Particles {
    step: u64,
    #[migratable(native)]
    particles: Vec<Particle>,
}

fn particles(count: usize) -> Particles {
    Particles {
        step: 3,
        particles: (0..count)
            .map(|i| {
                let f = i as f32;
                Particle {
                    position: [f, f * 0.5, -f],
                    velocity: [1.0 / (f + 1.0), 0.25, f.sqrt()],
                    id: i as u64 * 2654435761,
                }
            })
            .collect(),
    }
}

/// Seconds taken by `op`, whose output is dropped after the clock stops.
fn time<R>(op: impl FnOnce() -> R) -> f64 {
    let start = Instant::now();
    let out = black_box(op());
    let elapsed = start.elapsed().as_secs_f64();
    drop(out);
    release_free_memory();
    elapsed
}

fn report(case: &str, bytes: usize, baseline: &str, op: &[f64], base: &[f64]) {
    let (op_median, base_median) = (median(op), median(base));
    println!(
        "native/{case}: bytes={bytes} median={op_median:.6}s baseline={baseline} baseline_median={base_median:.6}s ratio={:.3}",
        op_median / base_median
    );
    eprintln!(
        "  native/{case}: op {} baseline {}; paired ratio {:.3}",
        spread(op),
        spread(base),
        paired_ratio(op, base)
    );
}

fn bulk(config: &Config) {
    let count = (config.mib << 20) / size_of::<Particle>();
    let state = particles(count);
    let payload: &[u8] = bytemuck::cast_slice(&state.particles);
    let mut writer = ImageWriter::new();
    let bytes = writer
        .capture_native(&state)
        .expect("native capture")
        .to_vec();
    assert_eq!(image::inspect(&bytes).unwrap().encoding, Encoding::Native);
    let back: Particles = image::restore(&bytes).expect("restore");
    assert!(back == state, "a native image must round-trip");
    drop(back);
    let (mut first, mut second) = (payload.to_vec(), payload.to_vec());
    let mut op = || {
        vec![time(|| {
            let image = writer.capture_native(&state).expect("capture");
            image::restore::<Particles>(image).expect("restore")
        })]
    };
    let mut base = || {
        vec![time(|| {
            first.copy_from_slice(payload);
            second.copy_from_slice(&first);
        })]
    };
    let samples = rounds(config.iters, true, &mut [&mut op, &mut base]);
    report(
        "bulk-256m",
        bytes.len(),
        "2x-copy_from_slice",
        &samples[0],
        &samples[1],
    );
}

fn versus_portable(config: &Config) {
    let state = particles(config.particles);
    let mut native_writer = ImageWriter::new();
    let mut portable_writer = ImageWriter::new();
    let native_len = native_writer.capture_native(&state).expect("capture").len();
    let portable_len = portable_writer.capture(&state).expect("capture").len();
    let mut native = || {
        vec![time(|| {
            let image = native_writer.capture_native(&state).expect("capture");
            image::restore::<Particles>(image).expect("restore")
        })]
    };
    let mut portable = || {
        vec![time(|| {
            let image = portable_writer.capture(&state).expect("capture");
            image::restore::<Particles>(image).expect("restore")
        })]
    };
    let samples = rounds(config.iters.min(7), true, &mut [&mut native, &mut portable]);
    report(
        "particles",
        native_len,
        &format!("portable({portable_len}-bytes)"),
        &samples[0],
        &samples[1],
    );
}

fn restore_scaling(config: &Config) {
    let dir = std::env::temp_dir().join(format!("cosmic-native-bench-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let store = FileStore::open(&dir).expect("bench store");
    let mut per_gib = Vec::new();
    for mib in [1024usize, 16] {
        let state = particles((mib << 20) / size_of::<Particle>());
        let key = format!("scaling/{mib}m");
        let image = image::capture_native(&state).expect("capture");
        drop(state);
        let len = image.len();
        runtime
            .block_on(store.put(&key, image.into(), PutMode::Overwrite))
            .expect("write image");
        // Repetitions so that the small case's sample is not all timer noise.
        let repeat = (1024 / mib).clamp(1, 16);
        let mut restore = || {
            vec![
                time(|| {
                    for _ in 0..repeat {
                        let bytes = runtime
                            .block_on(store.get(&key))
                            .expect("read image")
                            .expect("the image is there");
                        black_box(image::restore::<Particles>(&bytes).expect("restore"));
                    }
                }) / repeat as f64,
            ]
        };
        // Where the time goes: the read alone, the restore alone.
        let mut read = || {
            vec![time(|| {
                runtime
                    .block_on(store.get(&key))
                    .expect("read image")
                    .expect("the image is there")
            })]
        };
        let bytes = runtime
            .block_on(store.get(&key))
            .expect("read")
            .expect("there");
        let mut decode = || {
            vec![time(|| {
                image::restore::<Particles>(&bytes).expect("restore")
            })]
        };
        let samples = rounds(
            config.iters.min(5),
            true,
            &mut [&mut restore, &mut read, &mut decode],
        );
        eprintln!(
            "  native/restore-scaling {mib} MiB: read {:.4}s, restore {:.4}s, both {:.4}s",
            median(&samples[1]),
            median(&samples[2]),
            median(&samples[0])
        );
        drop(bytes);
        per_gib.push((
            mib,
            len,
            median(&samples[0]) * (1 << 30) as f64 / len as f64,
        ));
    }
    std::fs::remove_dir_all(&dir).ok();
    let (large, small) = (per_gib[0], per_gib[1]);
    println!(
        "native/restore-scaling: bytes={} median={:.6}s baseline=restore-16m-per-gib baseline_median={:.6}s ratio={:.3}",
        large.1,
        large.2,
        small.2,
        large.2 / small.2
    );
    eprintln!(
        "  native/restore-scaling: FileStore get + restore, per GiB: {} MiB image {:.3}s, {} MiB image {:.3}s",
        large.0, large.2, small.0, small.2
    );
}

struct Config {
    mib: usize,
    particles: usize,
    iters: usize,
    only: Vec<String>,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            mib: 256,
            particles: 10_000_000,
            iters: 9,
            only: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |what: &str| -> usize {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{what} needs a number"))
            };
            match arg.as_str() {
                "--mib" => config.mib = number("--mib"),
                "--particles" => config.particles = number("--particles"),
                "--iters" => config.iters = number("--iters").max(1),
                "--only" => config
                    .only
                    .push(args.next().expect("--only needs a case name")),
                // `cargo bench` passes `--bench`; other unknown arguments are ignored too.
                _ => {}
            }
        }
        config
    }

    fn wants(&self, case: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| case.contains(only.as_str()))
    }
}

fn main() {
    let config = Config::from_args();
    if config.wants("bulk-256m") {
        bulk(&config);
    }
    if config.wants("particles") {
        versus_portable(&config);
    }
    if config.wants("restore-scaling") {
        restore_scaling(&config);
    }
}
