//! Speed of checkpoint images against their physical baselines.
//!
//! `cargo bench -p cosmic --bench image [-- --mixed-records N --bulk-mib N --iters N
//! --mixed-iters N --small-records N --only SUBSTRING --op-only]`
//!
//! `image/small-structs-{capture,restore}-{mesh,updates}`: `--small-records` (200,000)
//! triangles of a mesh, and game-state updates (each with up to five entity updates of
//! nested options and enums), against plain postcard with serde's derive.
//!
//! `--only` (repeatable) runs the cases whose name contains the text; `--op-only` skips the
//! baselines (their columns then read NaN), for profiling the project's side alone.
//!
//! Every case times the project's operation and its baseline in this process, interleaved
//! (alternating which goes first), after one untimed warm-up round, and prints the medians in
//! one line per case:
//!
//! `<bench>/<case>: bytes=<n> median=<seconds>s baseline=<name> baseline_median=<seconds>s ratio=<x>`
//!
//! Outputs are dropped after each timed run, outside the timing, so that every run of either
//! side allocates fresh memory as a real capture or restore would (freed memory is handed
//! back to the kernel with `malloc_trim` between runs). Each side's spread (min..max), the
//! medians of its CPU time and its page faults per run go to stderr, to show how noisy the
//! run was and where the time went; with `COSMIC_BENCH_SAMPLES=1` every sample too.

#[path = "common/mod.rs"]
mod common;

use common::{median, release_free_memory};

use std::hint::black_box;
use std::time::Instant;

use cosmic::image::{self, ImageWriter};
use cosmic::Migratable;

// ---- data -------------------------------------------------------------------------------

/// splitmix64: a tiny deterministic generator, so both twins get identical values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self, min: u64, max: u64) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz_0123456789";
        let len = min + self.below(max - min + 1);
        (0..len)
            .map(|_| LETTERS[self.below(LETTERS.len() as u64) as usize] as char)
            .collect()
    }
}

/// The struct-heavy state, defined twice from the same tokens: once deriving `Migratable` (the
/// project's generated serde impls), once deriving serde directly (the twin).
macro_rules! mixed_types {
    ($($derive:path),*) => {
        use std::collections::BTreeMap;

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub enum Kind {
            Idle,
            Active { since: u64, rate: f32 },
            Failed(String),
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub struct Record {
            pub id: u64,
            pub name: String,
            pub score: f64,
            pub tags: BTreeMap<String, u32>,
            pub kind: Kind,
            pub parent: Option<u32>,
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub struct Mixed {
            pub epoch: u64,
            pub records: Vec<Record>,
        }

        pub fn generate(count: usize) -> Mixed {
            let mut rng = super::Rng(0x5eed);
            let records = (0..count as u64)
                .map(|id| {
                    let tags = (0..rng.below(5))
                        .map(|_| (rng.word(3, 8), rng.below(1 << 12) as u32))
                        .collect();
                    let kind = match rng.below(3) {
                        0 => Kind::Idle,
                        1 => Kind::Active {
                            since: rng.below(1 << 40),
                            rate: rng.below(1000) as f32 / 7.0,
                        },
                        _ => Kind::Failed(rng.word(6, 22)),
                    };
                    Record {
                        id: id * 7 + rng.below(7),
                        name: rng.word(10, 24),
                        score: rng.next() as f64 / u64::MAX as f64,
                        tags,
                        kind,
                        parent: rng.below(2).checked_sub(1).map(|_| rng.below(1 << 20) as u32),
                    }
                })
                .collect();
            Mixed { epoch: 42, records }
        }
    };
}

mod derived {
    mixed_types!(cosmic::Migratable);
}

mod twin {
    mixed_types!(serde::Serialize, serde::Deserialize);
}

/// Many small structs, defined twice like the mixed shape: a mesh of `f32` triangles (as in
/// rust_serialization_benchmark's `mesh`) and a stream of game-state updates with nested
/// options and enums (in the manner of its `minecraft_savedata` and `mk48` sets).
macro_rules! small_types {
    ($($derive:path),*) => {
        #[derive($($derive),*, Debug, Clone, Copy, PartialEq)]
        pub struct Vector3 {
            pub x: f32,
            pub y: f32,
            pub z: f32,
        }

        #[derive($($derive),*, Debug, Clone, Copy, PartialEq)]
        pub struct Triangle {
            pub v0: Vector3,
            pub v1: Vector3,
            pub v2: Vector3,
            pub normal: Vector3,
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub struct Mesh {
            pub triangles: Vec<Triangle>,
        }

        #[derive($($derive),*, Debug, Clone, Copy, PartialEq)]
        pub enum GameMode {
            Survival,
            Creative,
            Adventure,
            Spectator,
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub enum Action {
            Idle,
            Move { to: (f32, f32), speed: f32 },
            Attack { target: u32, damage: u16 },
            Say(String),
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub struct Item {
            pub id: u16,
            pub count: u8,
            pub damage: Option<u16>,
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub struct EntityUpdate {
            pub entity: u32,
            pub position: Option<(f32, f32, f32)>,
            pub velocity: Option<(f32, f32)>,
            pub health: Option<u8>,
            pub action: Option<Action>,
            pub held: Option<Item>,
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub struct Update {
            pub tick: u64,
            pub mode: Option<GameMode>,
            pub entities: Vec<EntityUpdate>,
        }

        #[derive($($derive),*, Debug, Clone, PartialEq)]
        pub struct Updates {
            pub updates: Vec<Update>,
        }

        pub fn mesh(triangles: usize) -> Mesh {
            let mut rng = super::Rng(0x3e54);
            let mut v = || Vector3 {
                x: rng.below(1 << 20) as f32 / 1024.0,
                y: rng.below(1 << 20) as f32 / 1024.0,
                z: rng.below(1 << 20) as f32 / 1024.0,
            };
            Mesh {
                triangles: (0..triangles)
                    .map(|_| Triangle { v0: v(), v1: v(), v2: v(), normal: v() })
                    .collect(),
            }
        }

        pub fn updates(count: usize) -> Updates {
            let mut rng = super::Rng(0x9a3e);
            let updates = (0..count as u64)
                .map(|tick| Update {
                    tick,
                    mode: match rng.below(8) {
                        0 => Some(GameMode::Creative),
                        1 => Some(GameMode::Spectator),
                        _ => None,
                    },
                    entities: (0..rng.below(6))
                        .map(|_| EntityUpdate {
                            entity: rng.below(1 << 16) as u32,
                            position: (rng.below(2) == 0).then(|| {
                                (rng.below(4096) as f32, rng.below(256) as f32, rng.below(4096) as f32)
                            }),
                            velocity: (rng.below(3) == 0)
                                .then(|| (rng.below(100) as f32 / 10.0, rng.below(100) as f32 / 10.0)),
                            health: (rng.below(4) == 0).then(|| rng.below(21) as u8),
                            action: match rng.below(6) {
                                0 => Some(Action::Idle),
                                1 => Some(Action::Move {
                                    to: (rng.below(4096) as f32, rng.below(4096) as f32),
                                    speed: 1.5,
                                }),
                                2 => Some(Action::Attack {
                                    target: rng.below(1 << 16) as u32,
                                    damage: rng.below(40) as u16,
                                }),
                                3 => Some(Action::Say(rng.word(4, 16))),
                                _ => None,
                            },
                            held: (rng.below(3) == 0).then(|| Item {
                                id: rng.below(900) as u16,
                                count: rng.below(64) as u8 + 1,
                                damage: (rng.below(4) == 0).then(|| rng.below(500) as u16),
                            }),
                        })
                        .collect(),
                })
                .collect();
            Updates { updates }
        }
    };
}

mod small_derived {
    small_types!(cosmic::Migratable);
}

mod small_twin {
    small_types!(serde::Serialize, serde::Deserialize);
}

#[derive(Migratable, Debug, PartialEq)]
struct BulkF64 {
    step: u64,
    values: Vec<f64>,
}

#[derive(Migratable, Debug, PartialEq)]
struct BulkU8 {
    step: u64,
    bytes: Vec<u8>,
}

// ---- timing -----------------------------------------------------------------------------

struct Samples {
    op: Vec<f64>,
    base: Vec<f64>,
    /// Minor page faults taken by all timed runs of each side.
    op_faults: i64,
    base_faults: i64,
    /// CPU time of the process (user and system, so page faults too) during each run: less
    /// disturbed than wall time by other programs on the machine.
    op_cpu: Vec<f64>,
    base_cpu: Vec<f64>,
}

/// CPU time this process has used so far, in seconds.
fn cpu_time() -> f64 {
    #[cfg(target_os = "linux")]
    {
        let mut time = std::mem::MaybeUninit::<libc::timespec>::zeroed();
        // SAFETY: clock_gettime fills the struct it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, time.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful call (and zeroed before it).
            let time = unsafe { time.assume_init() };
            return time.tv_sec as f64 + time.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

/// Minor page faults this process has taken so far.
fn minor_faults() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful call (and zeroed before it).
            return unsafe { usage.assume_init() }.ru_minflt;
        }
    }
    0
}

/// `--op-only`: skip the baselines (for profiling the project's side alone).
static OP_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs `op` and `base` `iters` times each after one warm-up round, alternating which goes
/// first. Each closure returns its output, which is dropped after the clock stops.
fn interleave<A, B>(
    iters: usize,
    mut op: impl FnMut() -> A,
    mut base: impl FnMut() -> B,
) -> Samples {
    let mut samples = Samples {
        op: Vec::new(),
        base: Vec::new(),
        op_faults: 0,
        base_faults: 0,
        op_cpu: Vec::new(),
        base_cpu: Vec::new(),
    };
    for round in 0..=iters {
        let mut time_op = |samples: &mut Samples| {
            let faults = minor_faults();
            let cpu = cpu_time();
            let start = Instant::now();
            let out = black_box(op());
            let elapsed = start.elapsed().as_secs_f64();
            let cpu = cpu_time() - cpu;
            let faults = minor_faults() - faults;
            drop(out);
            release_free_memory();
            if round > 0 {
                samples.op.push(elapsed);
                samples.op_faults += faults;
                samples.op_cpu.push(cpu);
            }
        };
        let mut time_base = |samples: &mut Samples| {
            let faults = minor_faults();
            let cpu = cpu_time();
            let start = Instant::now();
            let out = black_box(base());
            let elapsed = start.elapsed().as_secs_f64();
            let cpu = cpu_time() - cpu;
            let faults = minor_faults() - faults;
            drop(out);
            release_free_memory();
            if round > 0 {
                samples.base.push(elapsed);
                samples.base_faults += faults;
                samples.base_cpu.push(cpu);
            }
        };
        if OP_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
            time_op(&mut samples);
            if round > 0 {
                samples.base.push(f64::NAN);
                samples.base_cpu.push(f64::NAN);
            }
        } else if round % 2 == 0 {
            time_op(&mut samples);
            time_base(&mut samples);
        } else {
            time_base(&mut samples);
            time_op(&mut samples);
        }
    }
    samples
}

/// Seconds with six decimals, or nine for sub-millisecond times (small `--mixed-records`).
fn seconds(value: f64) -> String {
    if value < 1e-3 {
        format!("{value:.9}")
    } else {
        format!("{value:.6}")
    }
}

fn report(case: &str, bytes: usize, baseline: &str, samples: &Samples) {
    let op = median(&samples.op);
    let base = median(&samples.base);
    println!(
        "image/{case}: bytes={bytes} median={}s baseline={baseline} baseline_median={}s ratio={:.3}",
        seconds(op),
        seconds(base),
        op / base
    );
    let spread = |s: &[f64]| {
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.iter().copied().fold(0.0, f64::max);
        format!("{min:.6}..{max:.6}s")
    };
    let runs = samples.op.len() as i64;
    if std::env::var_os("COSMIC_BENCH_SAMPLES").is_some() {
        let list = |s: &[f64]| {
            s.iter()
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!("  op samples: {}", list(&samples.op));
        eprintln!("  baseline samples: {}", list(&samples.base));
    }
    let (op_cpu, base_cpu) = (median(&samples.op_cpu), median(&samples.base_cpu));
    eprintln!(
        "  image/{case}: wall op {} baseline {}; cpu median op {op_cpu:.6}s baseline {base_cpu:.6}s ratio {:.3}; page faults per run op {} baseline {}; {runs} runs each",
        spread(&samples.op),
        spread(&samples.base),
        op_cpu / base_cpu,
        samples.op_faults / runs,
        samples.base_faults / runs,
    );
}

// ---- cases ------------------------------------------------------------------------------

fn mixed(config: &Config) {
    let state = derived::generate(config.mixed_records);
    let twin_state = twin::generate(config.mixed_records);
    let bytes = image::capture(&state).expect("capture");
    let plain = postcard::to_allocvec(&state).expect("postcard");
    assert_eq!(
        plain,
        postcard::to_allocvec(&twin_state).expect("postcard"),
        "the derived impls and the serde_derive twin must encode alike"
    );
    let restored: derived::Mixed = image::restore(&bytes).expect("restore");
    assert!(restored == state, "mixed state must round-trip");
    drop(restored);
    let iters = config.mixed_iters;

    if config.wants("mixed-capture") {
        let samples = interleave(
            iters,
            || image::capture(&state).expect("capture"),
            || postcard::to_allocvec(&state).expect("postcard"),
        );
        report("mixed-capture", bytes.len(), "postcard", &samples);
    }
    if config.wants("mixed-restore") {
        let samples = interleave(
            iters,
            || image::restore::<derived::Mixed>(&bytes).expect("restore"),
            || postcard::from_bytes::<derived::Mixed>(&plain).expect("postcard"),
        );
        report("mixed-restore", bytes.len(), "postcard", &samples);
    }
    if config.wants("mixed-capture-vs-serde-derive") {
        let samples = interleave(
            iters,
            || postcard::to_allocvec(&state).expect("postcard"),
            || postcard::to_allocvec(&twin_state).expect("postcard"),
        );
        report(
            "mixed-capture-vs-serde-derive",
            plain.len(),
            "postcard-serde-derive",
            &samples,
        );
    }
    if config.wants("mixed-restore-vs-serde-derive") {
        let samples = interleave(
            iters,
            || postcard::from_bytes::<derived::Mixed>(&plain).expect("postcard"),
            || postcard::from_bytes::<twin::Mixed>(&plain).expect("postcard"),
        );
        report(
            "mixed-restore-vs-serde-derive",
            plain.len(),
            "postcard-serde-derive",
            &samples,
        );
    }
}

/// `image/small-structs-{capture,restore}-{mesh,updates}`: the project's capture (into a
/// reused writer, as periodic checkpoints do) and restore against plain postcard of the same
/// value (`to_slice` into a reused buffer, `from_bytes`) with serde's own derive (the twin).
fn small_structs(config: &Config) {
    fn case<D, P>(config: &Config, shape: &str, derived: D, twin: P)
    where
        D: Migratable + PartialEq + std::fmt::Debug,
        P: serde::Serialize + serde::de::DeserializeOwned,
    {
        let image = image::capture(&derived).expect("capture");
        let plain = postcard::to_allocvec(&twin).expect("postcard");
        assert!(
            postcard::to_allocvec(&derived).expect("postcard") == plain,
            "the derived impls and the serde_derive twin must encode alike"
        );
        let back: D = image::restore(&image).expect("restore");
        assert!(back == derived, "{shape} must round-trip");
        drop(back);
        let capture = format!("small-structs-capture-{shape}");
        if config.wants(&capture) {
            let mut writer = ImageWriter::new();
            let mut buffer = vec![0u8; plain.len() + 64];
            let samples = interleave(
                config.iters,
                || writer.capture(&derived).expect("capture").len(),
                || {
                    postcard::to_slice(&twin, &mut buffer)
                        .expect("postcard")
                        .len()
                },
            );
            report(&capture, image.len(), "postcard-to_slice", &samples);
        }
        let restore = format!("small-structs-restore-{shape}");
        if config.wants(&restore) {
            let samples = interleave(
                config.iters,
                || image::restore::<D>(&image).expect("restore"),
                || postcard::from_bytes::<P>(&plain).expect("postcard"),
            );
            report(&restore, image.len(), "postcard-from_bytes", &samples);
        }
    }
    case(
        config,
        "mesh",
        small_derived::mesh(config.small_records),
        small_twin::mesh(config.small_records),
    );
    case(
        config,
        "updates",
        small_derived::updates(config.small_records),
        small_twin::updates(config.small_records),
    );
}

/// The bytes of a slice of plain numbers, as the baseline copies them.
fn as_bytes<T: Copy>(values: &[T]) -> &[u8] {
    // SAFETY: only called with f64 and u8, which have no padding.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values)) }
}

fn bulk_f64(config: &Config) {
    let count = (config.bulk_mib << 20) / size_of::<f64>();
    let state = BulkF64 {
        step: 1,
        values: (0..count).map(|i| (i as f64).sqrt() * 1.5).collect(),
    };
    let payload = as_bytes(&state.values);
    let bytes = image::capture(&state).expect("capture");
    let restored: BulkF64 = image::restore(&bytes).expect("restore");
    assert!(restored == state, "bulk f64 state must round-trip");
    drop(restored);
    let iters = config.iters;

    if config.wants("bulk-f64-capture") {
        let samples = interleave(
            iters,
            || image::capture(&state).expect("capture"),
            || payload.to_vec(),
        );
        report("bulk-f64-capture", bytes.len(), "to_vec", &samples);
    }
    if config.wants("bulk-f64-restore") {
        let samples = interleave(
            iters,
            || image::restore::<BulkF64>(&bytes).expect("restore"),
            || payload.to_vec(),
        );
        report("bulk-f64-restore", bytes.len(), "to_vec", &samples);
    }
    if config.wants("bulk-f64-again") {
        let mut writer = ImageWriter::new();
        let mut copy = payload.to_vec();
        writer.capture(&state).expect("capture");
        let samples = interleave(
            iters,
            || writer.capture(&state).expect("capture").len(),
            || copy.copy_from_slice(payload),
        );
        assert_eq!(writer.capture(&state).expect("capture"), &bytes[..]);
        report("bulk-f64-again", bytes.len(), "copy_from_slice", &samples);
    }
}

fn bulk_u8(config: &Config) {
    let count = config.bulk_mib << 20;
    let mut rng = Rng(7);
    let state = BulkU8 {
        step: 1,
        bytes: (0..count / 8)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect(),
    };
    let payload = as_bytes(&state.bytes);
    let bytes = image::capture(&state).expect("capture");
    let restored: BulkU8 = image::restore(&bytes).expect("restore");
    assert!(restored == state, "bulk u8 state must round-trip");
    drop(restored);
    let iters = config.iters;

    if config.wants("bulk-u8-capture") {
        let samples = interleave(
            iters,
            || image::capture(&state).expect("capture"),
            || payload.to_vec(),
        );
        report("bulk-u8-capture", bytes.len(), "to_vec", &samples);
    }
    if config.wants("bulk-u8-restore") {
        let samples = interleave(
            iters,
            || image::restore::<BulkU8>(&bytes).expect("restore"),
            || payload.to_vec(),
        );
        report("bulk-u8-restore", bytes.len(), "to_vec", &samples);
    }
}

// ---- main -------------------------------------------------------------------------------

struct Config {
    mixed_records: usize,
    bulk_mib: usize,
    iters: usize,
    mixed_iters: usize,
    small_records: usize,
    only: Vec<String>,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            mixed_records: 1_000_000,
            bulk_mib: 256,
            iters: 11,
            mixed_iters: 11,
            small_records: 200_000,
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
                "--mixed-records" => config.mixed_records = number("--mixed-records"),
                "--bulk-mib" => config.bulk_mib = number("--bulk-mib"),
                "--iters" => config.iters = number("--iters").max(1),
                "--mixed-iters" => config.mixed_iters = number("--mixed-iters").max(1),
                "--small-records" => config.small_records = number("--small-records").max(1),
                "--only" => config
                    .only
                    .push(args.next().expect("--only needs a case name")),
                "--op-only" => OP_ONLY.store(true, std::sync::atomic::Ordering::Relaxed),
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
    let any = |cases: &[&str]| cases.iter().any(|case| config.wants(case));
    if any(&[
        "mixed-capture",
        "mixed-restore",
        "mixed-capture-vs-serde-derive",
        "mixed-restore-vs-serde-derive",
    ]) {
        mixed(&config);
    }
    if any(&["bulk-f64-capture", "bulk-f64-restore", "bulk-f64-again"]) {
        bulk_f64(&config);
    }
    if any(&["bulk-u8-capture", "bulk-u8-restore"]) {
        bulk_u8(&config);
    }
    if any(&[
        "small-structs-capture-mesh",
        "small-structs-restore-mesh",
        "small-structs-capture-updates",
        "small-structs-restore-updates",
    ]) {
        small_structs(&config);
    }
}
