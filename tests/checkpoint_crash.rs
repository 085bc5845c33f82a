//! Real crashes: the `crash_child` process runs a task on a `FileStore`, checkpointing after
//! every step and printing each checkpoint it knows is durable. This test SIGKILLs it at random
//! moments, checks the folder after every kill against what the child promised before dying,
//! restarts it on the same folder, and compares the digest of the resumed task with an
//! uninterrupted run.
//!
//! A second test crashes in-process the redb way: a store that applies writes up to a chosen
//! one and then goes silent, as a killed process would, tried at every write of a task's life
//! (and again at every write of the life that recovers), each time compared with a model of
//! what the applied writes promise.
//!
//! Knobs (environment): `COSMIC_CRASH_KILLS` (default 200) kills per run, `COSMIC_CRASH_SEED`
//! replays a run (the seed is printed at the start and in every failure), `COSMIC_CRASH_STEPS`
//! (default 6000) the length of the task, so that several tasks finish during a run.
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cosmic::checkpoint::{Catalog, CheckpointKey, Outcome, PutMode, StoreError};
use cosmic::prelude::*;
use cosmic::runtime::Recovery;
use cosmic::{CheckpointStore, FileStore, MemoryStore, TaskId};
use cosmic_tests::batch_value::{batch_generation, batch_key};

const CHILD: &str = env!("CARGO_BIN_EXE_crash_child");
/// Longest a child may take to start or to finish its task once left alone.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Steps of the child's task: short enough that several tasks finish (and are killed while
/// finishing) during a run.
const DEFAULT_STEPS: u64 = 6_000;
/// Images the catalog keeps (the runtime's default).
const KEEP: usize = 3;

/// The child's task state, declared again here (same wire name, same layout) to decode the
/// images it leaves behind. If the two drift apart, decoding fails on the fingerprint.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "cosmic_tests.CrashChain")]
struct Chain {
    step: u64,
    total: u64,
    #[migratable(bulk)]
    words: Vec<u64>,
    samples: Vec<f64>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}=`{text}` is not a number")),
        Err(_) => default,
    }
}

/// xorshift64: small, seedable, good enough to pick delays.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Spread the seed (xorshift must not start at 0).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// A folder under the target directory, removed on drop unless the test failed (then it is
/// kept for a post-mortem and its path printed).
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// When to SIGKILL a child.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Never: let it finish.
    Never,
    /// This long after the process started (it may still be recovering).
    AfterStart(Duration),
    /// This long after its first line (it is running the task).
    AfterFirstLine(Duration),
}

/// One run of the child, from start to exit.
struct Life {
    lines: Vec<String>,
    /// From the start of the process to its first line, if it printed one before the kill.
    first_line: Option<Duration>,
    status: ExitStatus,
    stderr: String,
}

impl Life {
    fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }

    fn describe(&self) -> String {
        let tail: Vec<&String> = self.lines.iter().rev().take(8).collect();
        format!(
            "status {:?}, {} lines, last ones (newest first) {tail:?}, stderr: {}",
            self.status,
            self.lines.len(),
            self.stderr.trim()
        )
    }
}

fn sigkill(child: &Child) {
    // The child is not reaped yet, so its pid cannot have been reused.
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
    let result = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(result, 0, "kill: {}", std::io::Error::last_os_error());
}

fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                sigkill(child);
                let _ = child.wait();
                panic!("child did not end within {CHILD_TIMEOUT:?}");
            }
            Err(error) => panic!("waiting for the child: {error}"),
        }
    }
}

/// The child to run: a stripped copy of `crash_child` where `strip` is available.
///
/// Every process that touches an image hashes its whole executable once for the build id
/// (`cosmic-runtime/src/image/isa.rs`, `build_id`): about 0.2 s of CPU for the 28 MB debug
/// binary, which would dominate hundreds of restarts. The stripped copy runs the same machine
/// code from a seventh of the bytes.
fn child_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let folder = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_copies(folder);
        let copy = folder.join(format!("{STRIPPED}{}", std::process::id()));
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&copy)
            .arg(CHILD)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if stripped {
            copy
        } else {
            eprintln!("`strip` is not available: running the unstripped child");
            PathBuf::from(CHILD)
        }
    })
}

const STRIPPED: &str = "crash_child-stripped-";

/// Removes the stripped copies of test processes that are gone.
fn remove_stale_copies(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.strip_prefix(STRIPPED)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<libc::pid_t>() else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn child_command(args: &[&str]) -> Command {
    let mut command = Command::new(child_program());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `crash_child run <dir>` and kills it as told.
fn live(dir: &Path, steps: u64, kill: KillAt) -> Life {
    let dir = dir.to_str().expect("utf-8 temp path");
    let steps = steps.to_string();
    live_with(&["run", dir, "--steps", &steps], kill)
}

/// Runs `crash_child <args>` and kills it as told.
fn live_with(args: &[&str], kill: KillAt) -> Life {
    let started = Instant::now();
    let mut child = child_command(args)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", child_program().display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (lines_in, lines_out) = mpsc::channel();
    let reader = thread::spawn(move || {
        // Every line the child wrote before it died is still in the pipe: read to the end.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = Vec::new();
    let mut first_line = None;
    match kill {
        KillAt::Never => {}
        KillAt::AfterStart(delay) => {
            thread::sleep(delay);
            sigkill(&child);
        }
        KillAt::AfterFirstLine(delay) => {
            // A child that ends without a line is caught by the checks on its status.
            if let Ok(line) = lines_out.recv_timeout(CHILD_TIMEOUT) {
                first_line = Some(started.elapsed());
                lines.push(line);
            }
            thread::sleep(delay);
            sigkill(&child);
        }
    }
    let status = wait(&mut child);
    reader.join().expect("stdout reader");
    lines.extend(lines_out.try_iter());
    let stderr = stderr_reader.join().expect("stderr reader");
    Life {
        lines,
        first_line,
        status,
        stderr,
    }
}

/// Relative paths of every file under `root`, split into keys and temporaries (any path with a
/// segment starting with `.`).
fn files_on_disk(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(root: &Path, dir: &Path, keys: &mut BTreeSet<String>, temps: &mut BTreeSet<String>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => panic!("read {}: {e}", dir.display()),
        };
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(root, &path, keys, temps);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .to_str()
                .expect("utf-8 names")
                .to_owned();
            if relative.split('/').any(|segment| segment.starts_with('.')) {
                temps.insert(relative);
            } else {
                keys.insert(relative);
            }
        }
    }
    let mut keys = BTreeSet::new();
    let mut temps = BTreeSet::new();
    walk(root, root, &mut keys, &mut temps);
    (keys, temps)
}

/// Whether `key` is `tasks/<id>/task`, `tasks/<id>/outcome`, `tasks/<id>/ckpt/<seq>-<steps>`,
/// or a note of the retention index, `finished/{kept,tombstone}/<unix ms>.<id>`.
fn is_catalog_key(key: &str) -> bool {
    let digits =
        |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = key.split('/').collect();
    let task_ok = |id: &str| id.parse::<TaskId>().is_ok();
    match parts[..] {
        ["finished", "kept" | "tombstone", name] => name
            .split_once('.')
            .is_some_and(|(at, id)| digits(at, 20) && task_ok(id)),
        ["tasks", id, "task" | "outcome" | "attempts"] => task_ok(id),
        ["tasks", id, "ckpt", name] => {
            task_ok(id)
                && name
                    .split_once('-')
                    .is_some_and(|(seq, steps)| digits(seq, 20) && digits(steps, 20))
        }
        _ => false,
    }
}

/// What the parent knows of the task in one folder, from the child's lines.
#[derive(Debug, Default)]
struct Promise {
    /// The task the child reported running.
    task: Option<TaskId>,
    /// The newest checkpoint the child reported durable (or resumed from).
    durable: Option<CheckpointKey>,
    /// The digest, once the task finished.
    digest: Option<u64>,
}

fn parse_words<const N: usize>(line: &str) -> [&str; N] {
    let words: Vec<&str> = line.split(' ').collect();
    words
        .try_into()
        .unwrap_or_else(|_| panic!("malformed child line `{line}`"))
}

fn number(word: &str) -> u64 {
    word.parse()
        .unwrap_or_else(|_| panic!("`{word}` is not a number"))
}

fn task_id(word: &str) -> TaskId {
    word.parse()
        .unwrap_or_else(|_| panic!("`{word}` is not a task id"))
}

impl Promise {
    /// Folds one life's lines in, checking them against what earlier lives promised.
    fn absorb(&mut self, life: &Life, context: &str) {
        for line in &life.lines {
            let kind = line.split(' ').next().unwrap_or_default();
            match kind {
                "start" if line.starts_with("start spawned ") => {
                    let [_, _, task] = parse_words(line);
                    // A new task while ours has a record would mean the store lost it.
                    assert_eq!(
                        self.task,
                        None,
                        "{context}: the child spawned a second task `{line}` ({})",
                        life.describe()
                    );
                    self.task = Some(task_id(task));
                    self.durable = None;
                }
                "start" => {
                    let [_, _, task, seq, steps] = parse_words(line);
                    let (task, key) = (
                        task_id(task),
                        CheckpointKey {
                            seq: number(seq),
                            steps: number(steps),
                        },
                    );
                    if let Some(known) = self.task {
                        assert_eq!(task, known, "{context}: resumed another task");
                    }
                    if let Some(durable) = self.durable {
                        assert!(
                            key >= durable,
                            "{context}: resumed from {key:?}, older than the durable {durable:?}"
                        );
                    }
                    self.task = Some(task);
                    self.durable = Some(key);
                }
                "durable" => {
                    let [_, seq, steps] = parse_words(line);
                    let key = CheckpointKey {
                        seq: number(seq),
                        steps: number(steps),
                    };
                    assert!(self.task.is_some(), "{context}: `{line}` before `start`");
                    if let Some(durable) = self.durable {
                        assert!(
                            key >= durable,
                            "{context}: durable checkpoints went backwards: {durable:?} then {key:?}"
                        );
                    }
                    self.durable = Some(key);
                }
                "done" => {
                    let [_, digest] = parse_words(line);
                    assert!(self.task.is_some(), "{context}: `{line}` before `start`");
                    self.digest = Some(number(digest));
                }
                "finished" => {
                    let [_, task, digest] = parse_words(line);
                    if let Some(known) = self.task {
                        assert_eq!(task_id(task), known, "{context}: another task finished");
                    }
                    self.task = Some(task_id(task));
                    self.digest = Some(number(digest));
                }
                _ => panic!("{context}: unexpected line `{line}` ({})", life.describe()),
            }
        }
    }
}

/// Counters for the report at the end.
#[derive(Debug, Default)]
struct Tally {
    lives: u64,
    kills: u64,
    kills_during_startup: u64,
    kills_leaving_temporaries: u64,
    temporaries_removed: u64,
    kills_with_image_newer_than_promised: u64,
    rounds_completed: u64,
    most_images: usize,
    time_to_first_line: Duration,
    time_in_children: Duration,
    time_in_checks: Duration,
}

/// Checks a folder after a kill: every file decodes, temporaries are invisible and removed by
/// the next open, and the newest image is no older than the last one promised durable.
async fn check_after_kill(
    dir: &Path,
    observer: &FileStore,
    promise: &Promise,
    steps: u64,
    tally: &mut Tally,
    context: &str,
) {
    let (files, temps) = files_on_disk(dir);
    if !temps.is_empty() {
        tally.kills_leaving_temporaries += 1;
        tally.temporaries_removed += temps.len() as u64;
    }
    // `observer` was opened before the child ran: its listing sees the temporaries on disk
    // and must skip them.
    let listed: BTreeSet<String> = observer
        .list("")
        .await
        .unwrap_or_else(|e| panic!("{context}: list: {e}"))
        .into_iter()
        .collect();
    assert_eq!(
        listed, files,
        "{context}: the store lists other keys than the files on disk (temporaries {temps:?})"
    );
    for key in &files {
        assert!(
            is_catalog_key(key),
            "{context}: `{key}` is not a key of the catalog's layout"
        );
    }
    let catalog = Catalog::new(Arc::new(observer.clone()), KEEP);
    let tasks = catalog
        .tasks()
        .await
        .unwrap_or_else(|e| panic!("{context}: tasks: {e}"));
    let mut recorded = Vec::new();
    for &task in &tasks {
        let record = catalog
            .task_record(task)
            .await
            .unwrap_or_else(|e| panic!("{context}: record of {task}: {e:?}"));
        let outcome = catalog
            .outcome(task)
            .await
            .unwrap_or_else(|e| panic!("{context}: outcome of {task}: {e:?}"));
        if let Some(record) = &record {
            assert_eq!(record.type_name, "cosmic_tests.CrashChain", "{context}");
            recorded.push(task);
        }
        let keys = catalog
            .checkpoints(task)
            .await
            .unwrap_or_else(|e| panic!("{context}: checkpoints of {task}: {e}"));
        // More than KEEP when kills came between a put and the pruning after it; the next
        // put that completes prunes them all.
        tally.most_images = tally.most_images.max(keys.len());
        for key in &keys {
            let bytes = catalog
                .checkpoint(task, *key)
                .await
                .unwrap_or_else(|e| panic!("{context}: read {task} {key:?}: {e}"))
                .unwrap_or_else(|| panic!("{context}: {task} {key:?} listed but gone"));
            let state: Chain = cosmic::image::restore(&bytes)
                .unwrap_or_else(|e| panic!("{context}: image {task} {key:?} is corrupt: {e}"));
            assert_eq!(
                (
                    state.step,
                    state.total,
                    state.words.len(),
                    state.samples.len()
                ),
                (key.steps, steps, 512, 64),
                "{context}: image {task} {key:?} holds another state than its name says"
            );
        }
        match (record.is_some(), outcome.as_ref()) {
            (true, _) => {}
            // A spawn killed before its record: one image, nothing else.
            (false, None) => assert!(
                keys.len() <= 1 && Some(task) != promise.task,
                "{context}: task {task} has no record but {keys:?}"
            ),
            (false, Some(_)) => panic!("{context}: task {task} has an outcome but no record"),
        }
        if Some(task) == promise.task {
            match (outcome, promise.durable) {
                // Finished: the outcome supersedes the images.
                (Some(Outcome::Completed(_)), _) => {}
                (Some(other), _) => panic!("{context}: task {task} ended as {other:?}"),
                (None, Some(durable)) => {
                    let newest = keys.last().copied().unwrap_or_else(|| {
                        panic!("{context}: no image left, {durable:?} was durable")
                    });
                    assert!(
                        newest.seq >= durable.seq && newest.steps >= durable.steps,
                        "{context}: newest image {newest:?} is older than the durable {durable:?}"
                    );
                    if newest.seq > durable.seq {
                        tally.kills_with_image_newer_than_promised += 1;
                    }
                }
                (None, None) => {}
            }
        }
    }
    assert!(
        recorded.len() <= 1,
        "{context}: several tasks in one store: {recorded:?}"
    );
    if let Some(task) = promise.task {
        assert_eq!(recorded, [task], "{context}: the task's record is gone");
    }
    // The next open removes the temporaries (and leaves the keys alone).
    FileStore::open(dir).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    let (after, temps_after) = files_on_disk(dir);
    assert!(
        temps_after.is_empty(),
        "{context}: open left temporaries {temps_after:?}"
    );
    assert_eq!(after, files, "{context}: open changed the keys");
}

/// Checks a folder whose task finished: one task, its outcome recorded, no images left, and a
/// restart reports it finished without running it again.
async fn check_completed(
    dir: &Path,
    observer: &FileStore,
    promise: &Promise,
    expected: u64,
    context: &str,
) {
    let task = promise.task.expect("finished task is known");
    assert_eq!(
        promise.digest,
        Some(expected),
        "{context}: the resumed task's digest differs from the uninterrupted run's"
    );
    let catalog = Catalog::new(Arc::new(observer.clone()), KEEP);
    assert_eq!(catalog.tasks().await.unwrap(), [task], "{context}");
    match catalog.outcome(task).await.unwrap() {
        Some(Outcome::Completed(bytes)) => {
            assert_eq!(cosmic::image::restore::<u64>(&bytes).unwrap(), expected);
        }
        other => panic!("{context}: outcome of {task} is {other:?}"),
    }
    let before = files_on_disk(dir).0;
    let images: Vec<&String> = before.iter().filter(|key| key.contains("/ckpt/")).collect();
    assert!(
        images.is_empty(),
        "{context}: images not retired: {images:?}"
    );
    let again = live(dir, 1, KillAt::Never);
    assert!(again.status.success(), "{context}: {}", again.describe());
    assert_eq!(
        again.lines,
        [format!("finished {task} {expected}")],
        "{context}: a restart on a finished store must not run the task again"
    );
    assert_eq!(files_on_disk(dir).0, before, "{context}: the restart wrote");
}

fn expected_digest(steps: u64) -> u64 {
    let output = child_command(&["expected", "--steps", &steps.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", child_program().display()));
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.trim();
    assert!(output.status.success(), "expected mode: {line}");
    let [_, digest] = parse_words(line);
    number(digest)
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

#[test]
fn uninterrupted_child_run_matches_the_reference_digest() {
    let steps = env_u64("COSMIC_CRASH_STEPS", DEFAULT_STEPS);
    let expected = expected_digest(steps);
    let dir = TempDir::new("crash-reference");
    let observer = FileStore::open(&dir.0).unwrap();
    let life = live(&dir.0, steps, KillAt::Never);
    assert!(life.status.success(), "{}", life.describe());
    let mut promise = Promise::default();
    promise.absorb(&life, "uninterrupted run");
    assert!(
        life.lines[0].starts_with("start spawned "),
        "{}",
        life.describe()
    );
    block_on(check_completed(
        &dir.0,
        &observer,
        &promise,
        expected,
        "uninterrupted run",
    ));
}

#[test]
fn sigkilled_child_keeps_every_durable_checkpoint_and_resumes_to_the_same_digest() {
    let kills_wanted = env_u64("COSMIC_CRASH_KILLS", 200);
    let steps = env_u64("COSMIC_CRASH_STEPS", DEFAULT_STEPS);
    let seed = env_u64(
        "COSMIC_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    eprintln!(
        "crash test: seed {seed}, {kills_wanted} kills, {steps} steps per task \
         (replay with COSMIC_CRASH_SEED={seed})"
    );
    let mut rng = XorShift::new(seed);
    let expected = expected_digest(steps);
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut round = 0;
    while tally.kills < kills_wanted || round == 0 {
        round += 1;
        let dir = TempDir::new("crash");
        // Opened before any child runs, so it never removes their temporaries itself.
        let observer = FileStore::open(&dir.0).unwrap();
        let mut promise = Promise::default();
        let mut lives_this_round = 0;
        loop {
            lives_this_round += 1;
            tally.lives += 1;
            let kill = if tally.kills >= kills_wanted {
                KillAt::Never
            } else if rng.between(0, 3) == 0 {
                KillAt::AfterStart(Duration::from_millis(rng.between(2, 40)))
            } else {
                KillAt::AfterFirstLine(Duration::from_millis(rng.between(2, 40)))
            };
            let context = format!(
                "seed {seed}, round {round}, life {lives_this_round}, kill {} ({kill:?})",
                tally.kills + 1
            );
            let life_started = Instant::now();
            let life = live(&dir.0, steps, kill);
            tally.time_in_children += life_started.elapsed();
            tally.time_to_first_line += life.first_line.unwrap_or_default();
            promise.absorb(&life, &context);
            let checks_started = Instant::now();
            if life.killed() {
                tally.kills += 1;
                if life.lines.is_empty() {
                    tally.kills_during_startup += 1;
                }
                block_on(check_after_kill(
                    &dir.0, &observer, &promise, steps, &mut tally, &context,
                ));
            } else {
                assert!(life.status.success(), "{context}: {}", life.describe());
                assert!(
                    promise.digest.is_some(),
                    "{context}: exited without finishing: {}",
                    life.describe()
                );
            }
            if promise.digest.is_some() {
                block_on(check_completed(
                    &dir.0, &observer, &promise, expected, &context,
                ));
                tally.rounds_completed += 1;
            }
            tally.time_in_checks += checks_started.elapsed();
            if promise.digest.is_some() {
                break;
            }
        }
    }
    eprintln!(
        "crash test: {tally:?} in {:.1?} (seed {seed})",
        started.elapsed()
    );
    assert!(tally.kills >= kills_wanted, "{tally:?}");
}

// ---------------------------------------------------------------------------------------------
// Crashes at every store write, in-process.

/// A write that reached the store before the crash.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    Put(String),
    Delete(String),
}

#[derive(Debug, Default)]
struct CrashState {
    /// Writes applied so far.
    applied: Vec<Write>,
    /// The index of the write that crashes: it and everything after it never happen.
    crash_at: Option<usize>,
}

/// A store that dies at a chosen write: that write and every later operation never complete
/// (as in a killed process), and what was applied before stays in `durable`.
#[derive(Debug, Clone)]
struct CrashStore {
    durable: MemoryStore,
    state: Arc<Mutex<CrashState>>,
    crashed: Arc<tokio::sync::watch::Sender<bool>>,
}

impl CrashStore {
    fn new(durable: MemoryStore, crash_at: Option<usize>) -> Self {
        CrashStore {
            durable,
            state: Arc::new(Mutex::new(CrashState {
                applied: Vec::new(),
                crash_at,
            })),
            crashed: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Resolves once the store has crashed.
    async fn crashed(&self) {
        let mut crashed = self.crashed.subscribe();
        let _ = crashed.wait_for(|crashed| *crashed).await;
    }

    fn applied(&self) -> Vec<Write> {
        self.state.lock().unwrap().applied.clone()
    }

    /// Never returns once the store has crashed.
    async fn alive(&self) {
        if *self.crashed.borrow() {
            std::future::pending::<()>().await;
        }
    }

    /// Admits `write` unless it is the one that crashes. The caller applies it before its next
    /// await, so on a current-thread runtime nothing can observe the admitted-but-unapplied gap.
    async fn admit(&self, write: Write) {
        self.alive().await;
        let crash = {
            let mut state = self.state.lock().unwrap();
            if state.crash_at == Some(state.applied.len()) {
                true
            } else {
                state.applied.push(write);
                false
            }
        };
        if crash {
            self.crashed.send_replace(true);
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl CheckpointStore for CrashStore {
    async fn put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<(), StoreError> {
        // A put the store refuses (an existing key under `Create`) changes nothing.
        if mode == PutMode::Create && self.durable.get(key).await?.is_some() {
            self.alive().await;
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        self.admit(Write::Put(key.to_owned())).await;
        self.durable.put(key, value, mode).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.alive().await;
        self.durable.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.alive().await;
        self.durable.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.admit(Write::Delete(key.to_owned())).await;
        self.durable.delete(key).await
    }
}

/// A short task for the in-process crashes: a running hash of squares.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "cosmic_tests.CrashSquares")]
struct Squares {
    next: u64,
    n: u64,
    hash: u64,
    seen: Vec<u64>,
}

impl Squares {
    fn new(n: u64) -> Self {
        Squares {
            next: 0,
            n,
            hash: 17,
            seen: Vec::new(),
        }
    }

    fn answer(n: u64) -> u64 {
        (0..n).fold(17, |hash: u64, i| hash.wrapping_mul(31).wrapping_add(i * i))
    }
}

#[async_trait]
impl Task for Squares {
    type Output = u64;

    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if cx.steps_completed() != self.next {
            return Err(TaskError::new("step count and state disagree"));
        }
        if self.next == self.n {
            return Ok(Step::Done(self.hash));
        }
        self.hash = self
            .hash
            .wrapping_mul(31)
            .wrapping_add(self.next * self.next);
        self.seen.push(self.next);
        self.next += 1;
        Ok(Step::Continue)
    }
}

const SQUARES: u64 = 12;

/// What the applied writes promise, folded over every life.
#[derive(Debug, Default)]
struct Model {
    /// The task whose record was written (its spawn returned, or was about to).
    task: Option<TaskId>,
    /// The newest checkpoint put of each task.
    newest: BTreeMap<TaskId, CheckpointKey>,
    /// Whether the task's outcome was written.
    finished: bool,
}

fn parse_key(key: &str) -> (TaskId, &str) {
    let rest = key.strip_prefix("tasks/").expect("catalog key");
    let (task, what) = rest.split_once('/').expect("catalog key");
    (task.parse().expect("task id"), what)
}

impl Model {
    fn absorb(&mut self, writes: &[Write], context: &str) {
        for write in writes {
            match write {
                // The retention index says when outcomes expire; the model has no clock.
                Write::Put(key) | Write::Delete(key) if key.starts_with("finished/") => {}
                Write::Put(key) => match parse_key(key) {
                    (task, "task") => {
                        assert!(
                            self.task.is_none(),
                            "{context}: a second task recorded: {task}"
                        );
                        self.task = Some(task);
                    }
                    (task, "outcome") => {
                        assert_eq!(Some(task), self.task, "{context}: outcome of {key}");
                        self.finished = true;
                    }
                    // The count of resumes (quarantine), written before each resume: no
                    // promise about the task's state.
                    (_, "attempts") => {}
                    (task, what) => {
                        let (seq, steps) = what
                            .strip_prefix("ckpt/")
                            .and_then(|name| name.split_once('-'))
                            .unwrap_or_else(|| panic!("{context}: unexpected key {key}"));
                        let key = CheckpointKey {
                            seq: seq.parse().unwrap(),
                            steps: steps.parse().unwrap(),
                        };
                        let newest = self.newest.entry(task).or_insert(key);
                        assert!(key >= *newest, "{context}: {key:?} after {newest:?}");
                        *newest = key;
                    }
                },
                Write::Delete(key) => {
                    let (task, what) = parse_key(key);
                    // The newest image of a live task is the promise: never deleted.
                    let newest = self
                        .newest
                        .get(&task)
                        .map(|key| format!("ckpt/{:020}-{:020}", key.seq, key.steps));
                    if Some(task) == self.task && !self.finished {
                        assert_ne!(
                            Some(what.to_owned()),
                            newest,
                            "{context}: deleted the newest image of an unfinished task"
                        );
                    }
                }
            }
        }
    }

    /// Checks what a new runtime found against the model.
    fn check(&self, recovery: &Recovery, context: &str) {
        assert!(recovery.failed.is_empty(), "{context}: {recovery:?}");
        match (self.task, self.finished) {
            (None, _) => assert!(
                recovery.resumed.is_empty() && recovery.finished.is_empty(),
                "{context}: nothing was recorded, yet {recovery:?}"
            ),
            (Some(task), false) => assert_eq!(
                recovery.resumed,
                [(task, self.newest[&task])],
                "{context}: not resumed from the newest image written"
            ),
            (Some(task), true) => assert_eq!(recovery.finished, [task], "{context}: {recovery:?}"),
        }
    }
}

/// One process: start a runtime on the store (recovering what is there), spawn the task if
/// there is none, and wait for it, until the store crashes. Returns what recovery found (if
/// the crash came after it) and the task's output (if it ended before the crash).
fn crashing_life(
    durable: &MemoryStore,
    crash_at: Option<usize>,
    keep: usize,
) -> (Vec<Write>, Option<Recovery>, Option<u64>) {
    let store = CrashStore::new(durable.clone(), crash_at);
    let recovery = Arc::new(Mutex::new(None));
    let life = {
        let store = store.clone();
        let recovery = Arc::clone(&recovery);
        async move {
            let rt = Runtime::builder()
                .store(store)
                .checkpoint(Policy::every_steps(2))
                .keep_checkpoints(keep)
                .register::<Squares>()
                .build()
                .await
                .unwrap();
            let found = rt.recovery();
            *recovery.lock().unwrap() = Some(found.clone());
            let task = found.resumed.first().map(|(task, _)| *task);
            let handle = match task.or(found.finished.first().copied()) {
                Some(task) => rt.handle::<u64>(task).unwrap(),
                None => rt.spawn(Squares::new(SQUARES)).await.unwrap(),
            };
            handle.join().await.unwrap()
        }
    };
    // The runtime is dropped with everything the "dead process" was still doing.
    let output = block_on(async {
        tokio::select! {
            output = life => Some(output),
            () = store.crashed() => None,
        }
    });
    let found = recovery.lock().unwrap().take();
    (store.applied(), found, output)
}

#[test]
fn a_crash_at_any_store_write_resumes_from_the_newest_written_checkpoint() {
    let expected = Squares::answer(SQUARES);
    let mut scenarios = 0;
    // Recoveries seen: nothing to resume, resumed, finished; and lives that were crashed.
    let mut seen = [0u32; 4];
    for keep in [1, 3] {
        // How many writes an uncrashed life makes.
        let (writes, _, output) = crashing_life(&MemoryStore::new(), None, keep);
        assert_eq!(output, Some(expected));
        for first in 0..=writes.len() {
            // Crash at write `first`, then crash the life that recovers at each of its writes
            // (counted on an uncrashed run of it).
            let second_writes = {
                let durable = MemoryStore::new();
                crashing_life(&durable, Some(first), keep);
                crashing_life(&durable, None, keep).0.len()
            };
            for second in (0..=second_writes).map(Some).chain([None]) {
                scenarios += 1;
                let context = format!("keep {keep}, crash at write {first}, then {second:?}");
                let durable = MemoryStore::new();
                let mut model = Model::default();
                let mut finished_with = None;
                for (life, crash_at) in [Some(first), second, None].into_iter().enumerate() {
                    let (applied, recovery, output) = crashing_life(&durable, crash_at, keep);
                    let context = format!("{context}, life {life}");
                    if let Some(recovery) = &recovery {
                        model.check(recovery, &context);
                        seen[match (model.task, model.finished) {
                            (None, _) => 0,
                            (Some(_), false) => 1,
                            (Some(_), true) => 2,
                        }] += 1;
                    }
                    if output.is_none() {
                        seen[3] += 1;
                    }
                    model.absorb(&applied, &context);
                    if crash_at.is_none() {
                        finished_with = output;
                    }
                }
                assert_eq!(finished_with, Some(expected), "{context}");
                // Finished: the outcome stays, the images are gone.
                let keys = block_on(durable.list("tasks/")).unwrap();
                let task = model.task.expect("a task was recorded");
                assert_eq!(
                    keys,
                    [
                        format!("tasks/{task}/outcome"),
                        format!("tasks/{task}/task")
                    ],
                    "{context}"
                );
            }
        }
    }
    eprintln!(
        "in-process crashes: {scenarios} scenarios; recoveries with nothing to resume, resumed, \
         finished; crashed lives: {seen:?}"
    );
    assert!(seen.iter().all(|&count| count > 0), "{seen:?}");
}

/// Group commit under SIGKILL: the child writes generation after generation of 64 tasks'
/// values, each generation as one `put_many` batch, and is killed at random moments, mostly
/// in the middle of a batch. After every kill each task's key holds exactly the value of one
/// generation (its old or its new one, never a torn file or a mix), no older than the last
/// generation the child reported durable and no newer than the last it began.
#[test]
fn a_batch_killed_midway_leaves_every_task_its_old_or_its_new_value() {
    const TASKS: u64 = 64;
    let kills = env_u64("COSMIC_CRASH_BATCH_KILLS", 40);
    let seed = env_u64("COSMIC_CRASH_SEED", std::process::id() as u64);
    eprintln!("batch crash test: seed {seed} (COSMIC_CRASH_SEED), {kills} kills");
    let mut random = XorShift::new(seed);
    let dir = TempDir::new("crash-batches");
    let folder = dir.0.to_str().expect("utf-8 temp path").to_owned();
    let tasks = TASKS.to_string();
    let mut next = 1u64;
    let mut durable_before: Option<u64> = None;
    let mut killed_midway = 0;
    for kill in 0..kills {
        let context = format!("seed {seed}, kill {kill}");
        let from = next.to_string();
        let delay = Duration::from_micros(random.between(0, 30_000));
        let life = live_with(
            &["batches", &folder, &tasks, &from],
            KillAt::AfterFirstLine(delay),
        );
        assert!(life.killed(), "{context}: {}", life.describe());
        let generation = |prefix: &str| {
            life.lines
                .iter()
                .filter_map(|line| line.strip_prefix(prefix))
                .map(number)
                .max()
        };
        assert!(
            life.lines
                .iter()
                .all(|line| line.starts_with("begin ") || line.starts_with("durable ")),
            "{context}: {}",
            life.describe()
        );
        let begun = generation("begin ").unwrap_or(next - 1);
        let durable = generation("durable ").or(durable_before);
        if generation("durable ") != Some(begun) {
            killed_midway += 1;
        }
        let store = FileStore::open_existing(&dir.0).expect("open the store");
        for task in 0..TASKS {
            let value = block_on(store.get(&batch_key(task))).expect("read");
            let Some(value) = value else {
                assert!(
                    durable.is_none(),
                    "{context}: task {task} has no value after generation {durable:?} was durable"
                );
                continue;
            };
            let found = batch_generation(task, &value).unwrap_or_else(|| {
                panic!(
                    "{context}: task {task} holds {} bytes that are no generation's value (torn)",
                    value.len()
                )
            });
            assert!(
                durable.is_none_or(|durable| found >= durable) && found <= begun,
                "{context}: task {task} holds generation {found}, durable {durable:?}, begun {begun}"
            );
        }
        durable_before = durable;
        next = begun + 1;
    }
    assert!(
        killed_midway > 0,
        "seed {seed}: no kill landed inside a batch; the test proved nothing"
    );
    eprintln!("batch crash test: {killed_midway} of {kills} kills landed inside a batch");
}
