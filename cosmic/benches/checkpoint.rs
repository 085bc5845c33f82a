//! Speed of checkpoints through the runtime against their physical baselines.
//!
//! `cargo bench -p cosmic --bench checkpoint [-- --mib N --tasks N --iters N --burst N
//! --concurrency N --rounds N --dir PATH --only SUBSTRING]`
//!
//! Every case times the project's operation and its baseline in this process, interleaved
//! (rotating which goes first each round), after one untimed warm-up round where that makes
//! sense, and prints the medians in one line per case:
//!
//! `<bench>/<case>: bytes=<n> median=<seconds>s baseline=<name> baseline_median=<seconds>s ratio=<x>`
//!
//! followed on the same line by extra `key=value` pairs (among them `paired_ratio`, the median of
//! the ratios of samples taken in the same round, less disturbed by load that comes and goes
//! on a shared machine), and by a `<bench>/<case> detail:` line with the spread (min..max) of
//! each side, to show how noisy the run was.
//!
//! - `checkpoint/durable-64m`: `TaskHandle::checkpoint_now` on a paused task with 64 MiB of
//!   state (returns once the image is durable in a `FileStore`), against `File::create` +
//!   `write_all` + `sync_all` of the image's bytes in the same folder. Also timed in the same
//!   rounds, to split the cost: the capture alone (`ImageWriter::capture` + `take`, as the
//!   driver does), a capture into the buffer of the previous one (`capture_reused`), the
//!   catalog's part alone (`Catalog::put_checkpoint` of the same bytes: put, list, prune the
//!   images beyond the newest 3) and the file store's put alone (`file_put`: temp file, fsync,
//!   rename, fsync of the folder). The detail line projects the op without the pruning before
//!   the answer, and also with a reused capture buffer.
//! - `checkpoint/stall`: with `Policy::every_steps(1)`, the time from the end of one step to the
//!   start of the next, as the task itself records it, against the capture alone. The steps
//!   run in bursts (`--burst`, default 4) released by a semaphore the step waits on *after*
//!   recording its start, so the wait is not counted; the first stall of each burst has no
//!   write in flight (the bench waits for the store to go idle between bursts), the others
//!   overlap the background write of the previous image, as periodic checkpoints do. The same
//!   bursts on a runtime with `Policy::OnDemand` show what a step boundary costs without a
//!   checkpoint, and the same captures handed to a raw stand-in for the persister (a thread
//!   doing create + write + fsync, one write in flight, newest queued image wins) show what
//!   concurrent persistence costs a capture on this machine without the runtime.
//! - `checkpoint/many-tasks`: spawn `--tasks` (10,000) small tasks on one runtime with a
//!   `FileStore`, `--concurrency` (64) at a time; each is spawned (returns once its first image
//!   and its record are durable), paused, and checkpointed once (`checkpoint_now`). Baseline:
//!   as many raw create + write + fsync of the same image bytes, as many at a time, on
//!   `spawn_blocking`. Also the same store work without the runtime (`catalog_only`: first
//!   image, task record, second image through `Catalog`). Interleaved in `--rounds` (10)
//!   rounds; `median` is the median round scaled to all tasks. Peak memory is the process's
//!   `VmHWM`, reset before the case (the runtime keeps all tasks, paused, until the end);
//!   `peak_kib_per_task` is its growth over the resident size before the case, per task. The
//!   store's puts of concurrent tasks share fsyncs (`FileStore`'s group commit), but each task
//!   still waits for six rounds of device flushes in a row (spawn: image, then record; then
//!   the checkpoint; each a data and a name round) where the baseline waits for one.
//!
//! Files go to a folder under the target directory (`CARGO_TARGET_TMPDIR`), which must be on a
//! real disk: tmpfs would make fsync free. `--dir` chooses another folder.

#[path = "common/mod.rs"]
mod common;

use common::{
    median, paired_ratio, release_free_memory, reset_peak_memory, rounds, spread, status_kib,
};

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cosmic::checkpoint::{Catalog, CheckpointKey, PutMode, TaskRecord};
use cosmic::image::ImageWriter;
use cosmic::prelude::*;
use cosmic::{CheckpointStore, FileStore, TaskId};
use tokio::sync::{Notify, Semaphore};

// ---- tasks ------------------------------------------------------------------------------

/// The large state: a bulk `Vec<f64>` and a few fields.
#[derive(Migratable, Debug, Clone, PartialEq)]
struct Big {
    step: u64,
    label: String,
    /// The probe slot whose gate releases the steps; without one, each step sleeps 1 ms.
    gate: Option<u32>,
    values: Vec<f64>,
}

impl Big {
    fn new(mib: usize, gate: Option<u32>) -> Big {
        let count = ((mib << 20) / size_of::<f64>()).max(1);
        Big {
            step: 0,
            label: "checkpoint-bench".to_owned(),
            gate,
            values: (0..count).map(|i| (i as f64).sqrt() * 1.5).collect(),
        }
    }
}

/// When gated steps started and ended (an `Instant` cannot be part of migratable state).
struct Probe {
    starts: Vec<Instant>,
    ends: Vec<Instant>,
}

const SLOTS: usize = 2;
static PROBES: [Mutex<Probe>; SLOTS] = [const {
    Mutex::new(Probe {
        starts: Vec::new(),
        ends: Vec::new(),
    })
}; SLOTS];
/// A gated step waits for one permit of its slot's gate after recording its start.
static GATES: [Semaphore; SLOTS] = [const { Semaphore::const_new(0) }; SLOTS];
/// Signalled when a gated step records its start.
static STARTED: [Notify; SLOTS] = [const { Notify::const_new() }; SLOTS];

fn probe(slot: usize) -> std::sync::MutexGuard<'static, Probe> {
    PROBES[slot].lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Task for Big {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        match self.gate {
            Some(slot) => {
                let slot = slot as usize;
                probe(slot).starts.push(Instant::now());
                STARTED[slot].notify_one();
                GATES[slot].acquire().await?.forget();
            }
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
        let at = self.step as usize % self.values.len();
        self.values[at] += 1.0;
        self.step += 1;
        if let Some(slot) = self.gate {
            probe(slot as usize).ends.push(Instant::now());
        }
        Ok(Step::Continue)
    }
}

/// The small state of `many-tasks`.
#[derive(Migratable, Debug, Clone, PartialEq)]
struct Small {
    id: u64,
    step: u64,
    values: Vec<f64>,
}

impl Small {
    fn new(id: u64) -> Small {
        Small {
            id,
            step: 0,
            values: (0..8).map(|i| i as f64 + id as f64).collect(),
        }
    }
}

#[async_trait]
impl Task for Small {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.step += 1;
        Ok(Step::Continue)
    }
}

// ---- measuring --------------------------------------------------------------------------

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn cosmic_runtime(folder: &Path, policy: Policy) -> Runtime {
    Runtime::builder()
        .host("bench")
        .store(FileStore::open(folder).expect("open the store"))
        .checkpoint(policy)
        .build()
        .await
        .expect("runtime")
}

/// Whether a store folder holds a file being written (a temporary of `FileStore`).
fn has_temporaries(folder: &Path) -> bool {
    let Ok(entries) = fs::read_dir(folder) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            has_temporaries(&entry.path())
        } else {
            name.starts_with('.') && name.contains(".tmp-")
        }
    })
}

/// Waits until the runtime's store has no write in flight: no temporary file, and no new
/// durable checkpoint for 50 ms.
fn quiesce(rt: &Runtime, folder: &Path) {
    let done = |rt: &Runtime| {
        let stats = rt.stats();
        stats.checkpoints_written + stats.checkpoint_failures
    };
    loop {
        let before = done(rt);
        std::thread::sleep(Duration::from_millis(50));
        if done(rt) == before && !has_temporaries(folder) {
            return;
        }
    }
}

fn write_fsync(path: &Path, bytes: &[u8]) {
    let mut file = File::create(path).expect("create");
    file.write_all(bytes).expect("write");
    file.sync_all().expect("fsync");
}

fn reset_folder(folder: &Path) {
    let _ = fs::remove_dir_all(folder);
    fs::create_dir_all(folder).expect("create the bench folder");
    settle_disk();
}

/// Writes back everything dirty (this bench's cleanups remove tens of thousands of files),
/// so that it does not land in the next case's timings.
fn settle_disk() {
    #[cfg(unix)]
    // SAFETY: sync has no preconditions.
    unsafe {
        libc::sync();
    }
}

/// The file system type of `folder`, and whether it is tmpfs.
fn file_system(folder: &Path) -> (String, bool) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(folder.as_os_str().as_bytes()).expect("path");
        let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: statfs fills the struct it is given; the path is NUL-terminated.
        if unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful call (and zeroed before it).
            let kind = unsafe { stat.assume_init() }.f_type as u64;
            const TMPFS: u64 = 0x0102_1994;
            const EXT4: u64 = 0xEF53;
            const XFS: u64 = 0x5846_5342;
            const BTRFS: u64 = 0x9123_683E;
            let name = match kind {
                TMPFS => "tmpfs".to_owned(),
                EXT4 => "ext2/3/4".to_owned(),
                XFS => "xfs".to_owned(),
                BTRFS => "btrfs".to_owned(),
                other => format!("{other:#x}"),
            };
            return (name, kind == TMPFS);
        }
    }
    ("unknown".to_owned(), false)
}

// ---- cases ------------------------------------------------------------------------------

fn durable(config: &Config) {
    let case = format!("durable-{}m", config.mib);
    let folder = config.dir.join("durable");
    reset_folder(&folder);
    let raw_folder = folder.join("raw");
    fs::create_dir_all(&raw_folder).expect("raw folder");
    let tokio_rt = tokio_runtime();
    let state = Big::new(config.mib, None);
    let image = cosmic::image::capture(&state).expect("capture");
    let bytes = image.len();
    let (rt, handle) = tokio_rt.block_on(async {
        let rt = cosmic_runtime(&folder.join("store"), Policy::OnDemand).await;
        let handle = rt.spawn(state.clone()).await.expect("spawn");
        handle.pause().await.expect("pause");
        (rt, handle)
    });
    // The store's part alone, on a catalog of its own in the same file system.
    let catalog = Catalog::new(
        Arc::new(FileStore::open(folder.join("catalog")).expect("store")),
        3,
    );
    let catalog_task = TaskId::random();
    let mut writer = ImageWriter::new();
    let mut driver_capture = Vec::new();
    let mut raw_files = Vec::new();
    let mut seq = 0u64;

    let mut op = || {
        let captured_before = rt.stats().capture_time;
        let started = Instant::now();
        let key = tokio_rt
            .block_on(handle.checkpoint_now())
            .expect("checkpoint");
        let elapsed = started.elapsed().as_secs_f64();
        driver_capture.push((rt.stats().capture_time - captured_before).as_secs_f64());
        assert!(key.seq > 0);
        release_free_memory();
        vec![elapsed]
    };
    let mut raw = || {
        seq += 1;
        let path = raw_folder.join(format!("raw-{seq}"));
        let started = Instant::now();
        write_fsync(&path, &image);
        let elapsed = started.elapsed().as_secs_f64();
        // Keep as many files as the store keeps images.
        raw_files.push(path);
        if raw_files.len() > 3 {
            fs::remove_file(raw_files.remove(0)).expect("remove");
        }
        vec![elapsed]
    };
    let mut capture = || {
        let started = Instant::now();
        writer.capture(&state).expect("capture");
        let taken = writer.take();
        let elapsed = started.elapsed().as_secs_f64();
        drop(taken);
        release_free_memory();
        vec![elapsed]
    };
    // The image handed to the store is captured like the driver's (huge pages, not a plain
    // copy: freeing 64 MiB of small pages costs several ms of its own).
    let mut image_writer = ImageWriter::new();
    let mut fresh_image = || {
        image_writer.capture(&state).expect("capture");
        image_writer.take()
    };
    let mut put_seq = 0u64;
    let mut store_put = || {
        put_seq += 1;
        let key = CheckpointKey {
            seq: put_seq,
            steps: 0,
        };
        let image = fresh_image();
        let started = Instant::now();
        tokio_rt
            .block_on(catalog.put_checkpoint(catalog_task, key, image.into()))
            .expect("put");
        let elapsed = started.elapsed().as_secs_f64();
        release_free_memory();
        vec![elapsed]
    };
    // The file store's put alone: no listing, no pruning of old images (done here afterwards,
    // outside the timing).
    let file_store = FileStore::open(folder.join("file")).expect("store");
    let mut file_writer = ImageWriter::new();
    let mut file_seq = 0u64;
    let mut file_put = || {
        file_seq += 1;
        file_writer.capture(&state).expect("capture");
        let image = file_writer.take();
        let started = Instant::now();
        tokio_rt
            .block_on(file_store.put(
                &format!("images/{file_seq:08}"),
                image.into(),
                PutMode::Overwrite,
            ))
            .expect("put");
        let elapsed = started.elapsed().as_secs_f64();
        if file_seq > 3 {
            tokio_rt
                .block_on(file_store.delete(&format!("images/{:08}", file_seq - 3)))
                .expect("delete");
        }
        release_free_memory();
        vec![elapsed]
    };
    // A capture into the writer's buffer of the previous capture (pages already mapped).
    let mut reuse_writer = ImageWriter::new();
    reuse_writer.capture(&state).expect("capture");
    let mut capture_reused = || {
        let started = Instant::now();
        reuse_writer.capture(&state).expect("capture");
        vec![started.elapsed().as_secs_f64()]
    };
    let samples = rounds(
        config.iters,
        true,
        &mut [
            &mut op,
            &mut raw,
            &mut capture,
            &mut store_put,
            &mut file_put,
            &mut capture_reused,
        ],
    );
    let (op, raw, capture, store_put, file_put, capture_reused) = (
        &samples[0],
        &samples[1],
        &samples[2],
        &samples[3],
        &samples[4],
        &samples[5],
    );
    println!(
        "checkpoint/{case}: bytes={bytes} median={:.6}s baseline=write+fsync baseline_median={:.6}s ratio={:.3} paired_ratio={:.3} capture_median={:.6}s capture_reused_median={:.6}s store_put_median={:.6}s file_put_median={:.6}s driver_capture_median={:.6}s",
        median(op),
        median(raw),
        median(op) / median(raw),
        paired_ratio(op, raw),
        median(capture),
        median(capture_reused),
        median(store_put),
        median(file_put),
        median(&driver_capture[1..]),
    );
    // What the op would take without pruning old images before answering, and with a reused
    // capture buffer: the op minus the measured differences.
    let no_prune = median(op) - (median(store_put) - median(file_put));
    let no_prune_reused = no_prune - (median(capture) - median(capture_reused));
    println!(
        "checkpoint/{case} detail: op {} write+fsync {} capture {} capture_reused {} store_put {} file_put {}; op-capture-store_put {:.6}s; projected without pruning before the answer {:.6}s (ratio {:.3}), also with a reused capture buffer {:.6}s (ratio {:.3})",
        spread(op),
        spread(raw),
        spread(capture),
        spread(capture_reused),
        spread(store_put),
        spread(file_put),
        median(op) - median(capture) - median(store_put),
        no_prune,
        no_prune / median(raw),
        no_prune_reused,
        no_prune_reused / median(raw),
    );
    drop(handle);
    drop(rt);
    tokio_rt.shutdown_timeout(Duration::from_secs(30));
    let _ = fs::remove_dir_all(&folder);
    settle_disk();
    release_free_memory();
}

fn stall(config: &Config) {
    let folder = config.dir.join("stall");
    reset_folder(&folder);
    let every_folder = folder.join("every");
    let tokio_rt = tokio_runtime();
    let state = Big::new(config.mib, None);
    let bytes = cosmic::image::capture(&state).expect("capture").len();
    let (every, every_handle, demand, demand_handle) = tokio_rt.block_on(async {
        let every = cosmic_runtime(&every_folder, Policy::every_steps(1)).await;
        let every_handle = every.spawn(Big::new(config.mib, Some(0))).await;
        let demand = cosmic_runtime(&folder.join("demand"), Policy::OnDemand).await;
        let demand_handle = demand.spawn(Big::new(config.mib, Some(1))).await;
        (every, every_handle, demand, demand_handle)
    });
    let (every_handle, demand_handle) =
        (every_handle.expect("spawn"), demand_handle.expect("spawn"));
    release_free_memory();

    // Releases `burst` steps of the task in `slot` and returns the gaps between them.
    let burst = config.burst.max(1);
    let run_burst = |slot: usize| -> Vec<f64> {
        let before = probe(slot).starts.len().max(1);
        GATES[slot].add_permits(burst);
        tokio_rt.block_on(async {
            loop {
                let started = STARTED[slot].notified();
                if probe(slot).starts.len() >= before + burst {
                    return;
                }
                started.await;
            }
        });
        let probe = probe(slot);
        (before - 1..before - 1 + burst)
            .map(|k| {
                probe.starts[k + 1]
                    .duration_since(probe.ends[k])
                    .as_secs_f64()
            })
            .collect()
    };
    // Wait for the first step of both tasks to start.
    tokio_rt.block_on(async {
        for (slot, notify) in STARTED.iter().enumerate() {
            loop {
                let started = notify.notified();
                if !probe(slot).starts.is_empty() {
                    break;
                }
                started.await;
            }
        }
    });

    let mut isolated = Vec::new();
    let mut driver_capture = Vec::new();
    let mut with_checkpoints = || {
        let captured_before = every.stats().capture_time;
        let gaps = run_burst(0);
        let captured = (every.stats().capture_time - captured_before).as_secs_f64();
        isolated.push(gaps[0]);
        driver_capture.push(captured / burst as f64);
        // Let the last write finish outside the measurements.
        quiesce(&every, &every_folder);
        release_free_memory();
        gaps
    };
    let mut writer = ImageWriter::new();
    let mut capture = || {
        (0..burst)
            .map(|_| {
                // What the driver does at a safe point: capture, then take the buffer.
                let started = Instant::now();
                writer.capture(&state).expect("capture");
                let taken = writer.take();
                let elapsed = started.elapsed().as_secs_f64();
                drop(taken);
                release_free_memory();
                elapsed
            })
            .collect()
    };
    // The same captures with a raw stand-in for the persister writing them in the background,
    // to separate what concurrent persistence costs on this machine from the runtime's part.
    let mut raw_persister = RawPersister::start(folder.join("raw"));
    let mut background_writer = ImageWriter::new();
    let mut capture_under_write = || {
        let samples = (0..burst)
            .map(|_| {
                let started = Instant::now();
                background_writer.capture(&state).expect("capture");
                let taken = background_writer.take();
                let elapsed = started.elapsed().as_secs_f64();
                raw_persister.submit(taken);
                elapsed
            })
            .collect();
        raw_persister.wait_idle();
        release_free_memory();
        samples
    };
    let mut without_checkpoints = || run_burst(1);
    let samples = rounds(
        config.iters,
        true,
        &mut [
            &mut with_checkpoints,
            &mut capture,
            &mut without_checkpoints,
            &mut capture_under_write,
        ],
    );
    raw_persister.stop();
    let (stalls, captures, gaps, under_write) =
        (&samples[0], &samples[1], &samples[2], &samples[3]);
    let isolated = &isolated[1..];
    let driver_capture = &driver_capture[1..];
    println!(
        "checkpoint/stall: bytes={bytes} median={:.6}s baseline=capture baseline_median={:.6}s ratio={:.3} paired_ratio={:.3} first_in_burst_median={:.6}s first_in_burst_ratio={:.3} no_checkpoint_gap_median={:.6}s driver_capture_mean_median={:.6}s capture_under_raw_write_median={:.6}s ratio_vs_capture_under_raw_write={:.3} burst={burst}",
        median(stalls),
        median(captures),
        median(stalls) / median(captures),
        paired_ratio(stalls, captures),
        median(isolated),
        median(isolated) / median(captures),
        median(gaps),
        median(driver_capture),
        median(under_write),
        median(stalls) / median(under_write),
    );
    println!(
        "checkpoint/stall detail: stall {} capture {} first_in_burst {} no_checkpoint_gap {} capture_under_raw_write {}",
        spread(stalls),
        spread(captures),
        spread(isolated),
        spread(gaps),
        spread(under_write),
    );
    drop((every_handle, demand_handle, every, demand));
    tokio_rt.shutdown_timeout(Duration::from_secs(30));
    let _ = fs::remove_dir_all(&folder);
    settle_disk();
    release_free_memory();
}

/// A raw stand-in for the persister: one thread writes the newest submitted image to a new
/// file (create + write + fsync) and keeps the last 3 files; an image submitted while another
/// is being written waits, and a newer one replaces it.
struct RawPersister {
    shared: Arc<(Mutex<RawSlot>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct RawSlot {
    queued: Option<Vec<u8>>,
    writing: bool,
    stop: bool,
}

impl RawPersister {
    fn start(folder: PathBuf) -> RawPersister {
        fs::create_dir_all(&folder).expect("raw folder");
        let shared = Arc::new((Mutex::new(RawSlot::default()), Condvar::new()));
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let (slot, changed) = &*shared;
                let mut files = Vec::new();
                for seq in 0u64.. {
                    let image = {
                        let mut slot = slot.lock().unwrap();
                        while slot.queued.is_none() && !slot.stop {
                            slot = changed.wait(slot).unwrap();
                        }
                        let Some(image) = slot.queued.take() else {
                            return;
                        };
                        slot.writing = true;
                        image
                    };
                    let path = folder.join(format!("raw-{seq}"));
                    write_fsync(&path, &image);
                    drop(image);
                    files.push(path);
                    if files.len() > 3 {
                        fs::remove_file(files.remove(0)).expect("remove");
                    }
                    slot.lock().unwrap().writing = false;
                    changed.notify_all();
                }
            })
        };
        RawPersister {
            shared,
            thread: Some(thread),
        }
    }

    fn submit(&self, image: Vec<u8>) {
        let (slot, changed) = &*self.shared;
        let superseded = slot.lock().unwrap().queued.replace(image);
        changed.notify_all();
        drop(superseded);
    }

    fn wait_idle(&self) {
        let (slot, changed) = &*self.shared;
        let mut slot = slot.lock().unwrap();
        while slot.queued.is_some() || slot.writing {
            slot = changed.wait(slot).unwrap();
        }
    }

    fn stop(&mut self) {
        let (slot, changed) = &*self.shared;
        slot.lock().unwrap().stop = true;
        changed.notify_all();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("raw persister");
        }
    }
}

/// Per-task latencies of `many-tasks`, summed over the tasks of the op's rounds (nanoseconds).
#[derive(Default)]
struct Latencies {
    spawn: AtomicU64,
    pause: AtomicU64,
    checkpoint: AtomicU64,
    tasks: AtomicU64,
}

fn many_tasks(config: &Config) {
    let folder = config.dir.join("many");
    reset_folder(&folder);
    let raw_folder = folder.join("raw");
    fs::create_dir_all(&raw_folder).expect("raw folder");
    release_free_memory();
    let peak_reset = reset_peak_memory();
    let rss_before = status_kib("VmRSS").unwrap_or(0);
    let tokio_rt = tokio_runtime();
    let rt = tokio_rt.block_on(cosmic_runtime(&folder.join("store"), Policy::OnDemand));
    let image = Arc::new(cosmic::image::capture(&Small::new(0)).expect("capture"));
    let rounds_count = config.rounds.clamp(1, config.tasks.max(1));
    let per_round = config.tasks / rounds_count;
    let total = per_round * rounds_count;
    let concurrency = config.concurrency.max(1);
    let latencies = Arc::new(Latencies::default());
    let handles = Arc::new(Mutex::new(Vec::with_capacity(total)));

    let mut next_task = 0u64;
    let mut op = || {
        let first = next_task;
        next_task += per_round as u64;
        let started = Instant::now();
        tokio_rt.block_on(async {
            let next = Arc::new(AtomicUsize::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (rt, next, latencies, handles) = (
                    rt.clone(),
                    Arc::clone(&next),
                    Arc::clone(&latencies),
                    Arc::clone(&handles),
                );
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= per_round {
                            return;
                        }
                        let t0 = Instant::now();
                        let handle = rt.spawn(Small::new(first + i as u64)).await.expect("spawn");
                        let t1 = Instant::now();
                        handle.pause().await.expect("pause");
                        let t2 = Instant::now();
                        handle.checkpoint_now().await.expect("checkpoint");
                        let t3 = Instant::now();
                        let nanos = |d: Duration| d.as_nanos() as u64;
                        latencies.spawn.fetch_add(nanos(t1 - t0), Ordering::Relaxed);
                        latencies.pause.fetch_add(nanos(t2 - t1), Ordering::Relaxed);
                        latencies
                            .checkpoint
                            .fetch_add(nanos(t3 - t2), Ordering::Relaxed);
                        latencies.tasks.fetch_add(1, Ordering::Relaxed);
                        handles.lock().unwrap().push(handle);
                    }
                });
            }
            while let Some(result) = workers.join_next().await {
                result.expect("worker");
            }
        });
        vec![started.elapsed().as_secs_f64()]
    };
    let mut next_file = 0usize;
    let mut raw = || {
        let first = next_file;
        next_file += per_round;
        let started = Instant::now();
        tokio_rt.block_on(async {
            let next = Arc::new(AtomicUsize::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (next, image, raw_folder) =
                    (Arc::clone(&next), Arc::clone(&image), raw_folder.clone());
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= per_round {
                            return;
                        }
                        let path = raw_folder.join(format!("raw-{}", first + i));
                        let image = Arc::clone(&image);
                        tokio::task::spawn_blocking(move || write_fsync(&path, &image))
                            .await
                            .expect("raw write");
                    }
                });
            }
            while let Some(result) = workers.join_next().await {
                result.expect("worker");
            }
        });
        vec![started.elapsed().as_secs_f64()]
    };
    // The store work of one task without the runtime: what `spawn` and `checkpoint_now` ask
    // of the catalog (first image, task record, second image), as many at a time.
    let catalog = Catalog::new(
        Arc::new(FileStore::open(folder.join("catalog")).expect("store")),
        3,
    );
    let mut catalog_only = || {
        let started = Instant::now();
        tokio_rt.block_on(async {
            let next = Arc::new(AtomicUsize::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (next, image, catalog) =
                    (Arc::clone(&next), Arc::clone(&image), catalog.clone());
                workers.spawn(async move {
                    loop {
                        if next.fetch_add(1, Ordering::Relaxed) >= per_round {
                            return;
                        }
                        let task = TaskId::random();
                        let key = |seq| CheckpointKey { seq, steps: 0 };
                        catalog
                            .put_checkpoint(task, key(0), image.to_vec().into())
                            .await
                            .expect("put");
                        let record = TaskRecord {
                            type_name: "Small".to_owned(),
                            output_type: "u64".to_owned(),
                        };
                        catalog.create_task(task, &record).await.expect("record");
                        catalog
                            .put_checkpoint(task, key(1), image.to_vec().into())
                            .await
                            .expect("put");
                    }
                });
            }
            while let Some(result) = workers.join_next().await {
                result.expect("worker");
            }
        });
        vec![started.elapsed().as_secs_f64()]
    };
    let samples = rounds(
        rounds_count,
        false,
        &mut [&mut op, &mut raw, &mut catalog_only],
    );
    let (op, raw, catalog_only) = (&samples[0], &samples[1], &samples[2]);
    let peak_kib = status_kib("VmHWM").unwrap_or(0);
    let rss_after = status_kib("VmRSS").unwrap_or(0);
    let scale = rounds_count as f64;
    let (op_median, raw_median) = (median(op) * scale, median(raw) * scale);
    let tasks_done = latencies.tasks.load(Ordering::Relaxed).max(1) as f64;
    let mean_ms = |sum: &AtomicU64| sum.load(Ordering::Relaxed) as f64 / tasks_done / 1e6;
    let stats = rt.stats();
    println!(
        "checkpoint/many-tasks: bytes={} median={op_median:.6}s baseline=write+fsync baseline_median={raw_median:.6}s ratio={:.3} paired_ratio={:.3} tasks={total} tasks_per_s={:.0} baseline_files_per_s={:.0} catalog_only_tasks_per_s={:.0} peak_mib={:.1} peak_kib_per_task={:.2} rss_growth_kib_per_task={:.2} superseded={} concurrency={concurrency} image_bytes={}",
        total * image.len(),
        op_median / raw_median,
        paired_ratio(op, raw),
        total as f64 / op_median,
        total as f64 / raw_median,
        total as f64 / (median(catalog_only) * scale),
        peak_kib as f64 / 1024.0,
        peak_kib.saturating_sub(rss_before) as f64 / total as f64,
        rss_after.saturating_sub(rss_before) as f64 / total as f64,
        stats.checkpoints_superseded,
        image.len(),
    );
    println!(
        "checkpoint/many-tasks detail: round of {per_round} op {} write+fsync {} catalog_only {}; mean per task spawn {:.3}ms pause {:.3}ms checkpoint_now {:.3}ms; paused tasks {}; checkpoints written {}; peak memory {} (rss before {:.1} MiB after {:.1} MiB)",
        spread(op),
        spread(raw),
        spread(catalog_only),
        mean_ms(&latencies.spawn),
        mean_ms(&latencies.pause),
        mean_ms(&latencies.checkpoint),
        stats.paused,
        stats.checkpoints_written,
        if peak_reset { "since reset" } else { "of the whole process (clear_refs failed)" },
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
    );
    drop(handles);
    drop(rt);
    tokio_rt.shutdown_timeout(Duration::from_secs(30));
    let _ = fs::remove_dir_all(&folder);
    settle_disk();
    release_free_memory();
}

// ---- main -------------------------------------------------------------------------------

struct Config {
    mib: usize,
    tasks: usize,
    iters: usize,
    burst: usize,
    concurrency: usize,
    rounds: usize,
    dir: PathBuf,
    only: Vec<String>,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            mib: 64,
            tasks: 10_000,
            iters: 15,
            burst: 4,
            concurrency: 64,
            rounds: 10,
            dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint-bench"),
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
                "--tasks" => config.tasks = number("--tasks"),
                "--iters" => config.iters = number("--iters").max(1),
                "--burst" => config.burst = number("--burst").max(1),
                "--concurrency" => config.concurrency = number("--concurrency").max(1),
                "--rounds" => config.rounds = number("--rounds").max(1),
                "--dir" => config.dir = PathBuf::from(args.next().expect("--dir needs a path")),
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
    fs::create_dir_all(&config.dir).expect("create the bench folder");
    let (fs_name, tmpfs) = file_system(&config.dir);
    eprintln!(
        "checkpoint bench: folder {} ({fs_name}); --mib {} --tasks {} --iters {} --burst {} --concurrency {} --rounds {}",
        config.dir.display(),
        config.mib,
        config.tasks,
        config.iters,
        config.burst,
        config.concurrency,
        config.rounds,
    );
    if tmpfs {
        eprintln!(
            "warning: the folder is on tmpfs, where fsync costs nothing; use --dir on a disk"
        );
    }
    if config.wants(&format!("durable-{}m", config.mib)) {
        durable(&config);
    }
    if config.wants("stall") {
        stall(&config);
    }
    if config.wants("many-tasks") {
        many_tasks(&config);
    }
}
