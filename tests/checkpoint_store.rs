//! The checkpoint stores and what a runtime makes of them: the `CheckpointStore` contract on
//! `FileStore` and `MemoryStore`, retention, restore from damaged stores (fallback, typed
//! errors, tasks that cannot be resumed), and real disk-full and permission-denied failures.
//!
//! Both run for any user, in any folder. The disk-full case mounts a small tmpfs: as root
//! directly, otherwise inside a user namespace (`unshare --user --map-root-user --mount`) where
//! the kernel allows one; where it does not, it prints a line saying it was skipped. The
//! permission case runs `crash_child` on a store it may read but not write: as a non-root user,
//! its own store made read-only (mode bits); as root, who ignores mode bits, as `nobody` through
//! `setpriv`, with the child and the store copied to a folder `nobody` can reach (a checkout
//! under a 0700 home folder is not).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cosmic::checkpoint::{
    Catalog, CatalogError, CheckpointKey, Outcome, PutMode, StoreError, TaskRecord,
};
use cosmic::image::RestoreError;
use cosmic::prelude::*;
use cosmic::runtime::{
    BuildError, CheckpointUnusable, ControlError, HandleError, JoinError, RecoveryError, SpawnError,
};
use cosmic::{CheckpointStore, FileStore, MemoryStore, TaskId, TaskStatus};
use tracing::instrument::WithSubscriber;

const CHILD: &str = env!("CARGO_BIN_EXE_crash_child");

/// Sums 1..=n, one number per step; `ballast` makes its images as large as a test needs.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "cosmic_tests.StoreTicker")]
struct Ticker {
    next: u64,
    n: u64,
    total: u64,
    /// Sleeps this long per step (ms), so tests can catch it between steps.
    pace_ms: u64,
    ballast: Vec<u8>,
}

impl Ticker {
    fn new(n: u64, pace_ms: u64) -> Self {
        Ticker {
            next: 1,
            n,
            total: 0,
            pace_ms,
            ballast: Vec::new(),
        }
    }
}

#[async_trait]
impl Task for Ticker {
    type Output = u64;

    async fn step(&mut self, cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if cx.steps_completed() + 1 != self.next {
            return Err(TaskError::new(
                "resumed with a step count that is not the state's",
            ));
        }
        if self.pace_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.pace_ms)).await;
        }
        if self.next > self.n {
            return Ok(Step::Done(self.total));
        }
        self.total += self.next;
        if !self.ballast.is_empty() {
            let at = self.next as usize % self.ballast.len();
            self.ballast[at] = self.ballast[at].wrapping_add(1);
        }
        self.next += 1;
        Ok(Step::Continue)
    }
}

fn sum_to(n: u64) -> u64 {
    n * (n + 1) / 2
}

/// A folder under the target directory, removed on drop unless the test failed.
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
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Every file under `root`, by relative path, with its bytes.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                out.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn image_path(root: &Path, task: TaskId, key: CheckpointKey) -> PathBuf {
    root.join(format!(
        "tasks/{task}/ckpt/{:020}-{:020}",
        key.seq, key.steps
    ))
}

/// Flips every bit of the byte at `at` (negative: from the end) of a file on disk.
fn damage(path: &Path, at: isize) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let at = if at < 0 {
        bytes.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    bytes[at] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
}

/// The store error under a catalog error, if that is what it is.
fn store_error(error: &CatalogError) -> Option<&StoreError> {
    match error {
        CatalogError::Store(error) => Some(error),
        _ => None,
    }
}

async fn file_runtime(root: &Path, keep: usize, policy: Policy) -> Runtime {
    Runtime::builder()
        .host("store-test")
        .store(FileStore::open(root).unwrap())
        .checkpoint(policy)
        .keep_checkpoints(keep)
        .register::<Ticker>()
        .build()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The store contract, on both stores.

fn value(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

async fn get_text(store: &dyn CheckpointStore, key: &str) -> Option<String> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
}

async fn list(store: &dyn CheckpointStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
}

const INVALID_KEYS: &[&str] = &[
    "",
    "/a",
    "a/",
    "a//b",
    ".",
    "..",
    "../escape",
    "a/../b",
    "a/./b",
    ".hidden",
    "a/.one.tmp-0000000000000000",
    "a b",
    "a\\b",
    "a:b",
    "caf\u{e9}",
    "nul\0",
];

/// The whole `CheckpointStore` contract, on an empty store.
async fn exercise(store: &dyn CheckpointStore) {
    assert_eq!(get_text(store, "a/one").await, None);
    store
        .put("a/one", value("1"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(get_text(store, "a/one").await.as_deref(), Some("1"));
    store
        .put("a/one", value("one"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(get_text(store, "a/one").await.as_deref(), Some("one"));

    // A conditional put refuses an existing key and leaves its value alone.
    match store.put("a/one", value("other"), PutMode::Create).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "a/one"),
        other => panic!("create over an existing key: {other:?}"),
    }
    assert_eq!(get_text(store, "a/one").await.as_deref(), Some("one"));
    store
        .put("a/two", value("2"), PutMode::Create)
        .await
        .unwrap();
    for (key, text) in [
        ("b/c/three", "3"),
        ("a.b", "dot"),
        ("ab/x", "x"),
        ("a-b_c.D9/Z", "z"),
    ] {
        store
            .put(key, value(text), PutMode::Overwrite)
            .await
            .unwrap();
    }

    // Listing: by prefix (any prefix, not only whole segments), sorted bytewise.
    assert_eq!(
        list(store, "").await,
        ["a-b_c.D9/Z", "a.b", "a/one", "a/two", "ab/x", "b/c/three"]
    );
    assert_eq!(list(store, "a/").await, ["a/one", "a/two"]);
    assert_eq!(
        list(store, "a").await,
        ["a-b_c.D9/Z", "a.b", "a/one", "a/two", "ab/x"]
    );
    assert_eq!(list(store, "a/t").await, ["a/two"]);
    assert_eq!(list(store, "b/").await, ["b/c/three"]);
    assert_eq!(list(store, "b/c/three").await, ["b/c/three"]);
    assert!(list(store, "zz/").await.is_empty());
    assert!(list(store, "b/d/").await.is_empty());

    // Delete: idempotent, and frees the key for a conditional put.
    store.delete("a/one").await.unwrap();
    assert_eq!(get_text(store, "a/one").await, None);
    assert_eq!(list(store, "a/").await, ["a/two"]);
    store.delete("a/one").await.unwrap();
    store.delete("never/was").await.unwrap();
    store
        .put("a/one", value("again"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(get_text(store, "a/one").await.as_deref(), Some("again"));

    // Values are bytes, any bytes, of any length.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store
        .put("bin/value", Bytes::from(binary.clone()), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(store.get("bin/value").await.unwrap().unwrap(), binary);
    store
        .put("bin/empty", Bytes::new(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get("bin/empty").await.unwrap().unwrap().len(), 0);

    // Keys outside the rules are refused by every operation, before touching anything.
    let long = "k".repeat(1025);
    for key in INVALID_KEYS.iter().copied().chain([long.as_str()]) {
        let results = [
            store.put(key, value("x"), PutMode::Overwrite).await.err(),
            store.put(key, value("x"), PutMode::Create).await.err(),
            store.get(key).await.err(),
            store.delete(key).await.err(),
        ];
        for result in results {
            match result {
                Some(StoreError::InvalidKey { key: refused, .. }) => assert_eq!(refused, key),
                other => panic!("key {key:?} was not refused as invalid: {other:?}"),
            }
        }
    }
    assert_eq!(
        list(store, "").await,
        [
            "a-b_c.D9/Z",
            "a.b",
            "a/one",
            "a/two",
            "ab/x",
            "b/c/three",
            "bin/empty",
            "bin/value"
        ]
    );
}

/// Many conditional puts of one key at once: exactly one wins.
async fn race_creates(store: Arc<dyn CheckpointStore>) {
    let mut racers = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        racers.push(tokio::spawn(async move {
            store
                .put("race/key", Bytes::from(vec![i]), PutMode::Create)
                .await
        }));
    }
    let mut winners = Vec::new();
    for (i, racer) in racers.into_iter().enumerate() {
        match racer.await.unwrap() {
            Ok(()) => winners.push(i as u8),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => panic!("racer {i}: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(
        store.get("race/key").await.unwrap().unwrap(),
        &[winners[0]][..]
    );
}

#[tokio::test]
async fn memory_store_keeps_the_store_contract() {
    exercise(&MemoryStore::new()).await;
    race_creates(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_keeps_the_store_contract() {
    let dir = TempDir::new("store-contract");
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.root(), dir.path());
    exercise(&store).await;
    race_creates(Arc::new(FileStore::open(dir.path().join("race")).unwrap())).await;

    // One file per key, holding exactly the value; no temporary is left behind.
    let files = snapshot(dir.path());
    assert_eq!(files["a/one"], b"again");
    assert_eq!(files["b/c/three"], b"3");
    assert!(
        files
            .keys()
            .all(|path| !path.contains("/.") && !path.starts_with('.')),
        "temporaries left: {:?}",
        files.keys().collect::<Vec<_>>()
    );
    // Another store on the folder (a restart) sees the same contents.
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(get_text(&reopened, "a/two").await.as_deref(), Some("2"));
    assert_eq!(list(&reopened, "a/").await, ["a/one", "a/two"]);
}

#[tokio::test]
async fn file_store_ignores_temporaries_and_open_removes_them() {
    let dir = TempDir::new("store-temporaries");
    let store = FileStore::open(dir.path()).unwrap();
    store
        .put("t/key", value("kept"), PutMode::Overwrite)
        .await
        .unwrap();
    // What a crash in the middle of a put leaves: `.<name>.tmp-<random>` next to the key.
    let leftovers = [
        "t/.key.tmp-00000000deadbeef",
        "t/.new.tmp-0123456789abcdef",
        ".top.tmp-1",
    ];
    for leftover in leftovers {
        std::fs::write(dir.path().join(leftover), b"torn").unwrap();
    }
    assert_eq!(list(&store, "").await, ["t/key"]);
    assert_eq!(list(&store, "t/").await, ["t/key"]);
    assert!(matches!(
        store.get("t/.key.tmp-00000000deadbeef").await,
        Err(StoreError::InvalidKey { .. })
    ));
    // Opening the folder again removes them, and only them.
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(
        snapshot(dir.path()).into_keys().collect::<Vec<_>>(),
        ["t/key"]
    );
    assert_eq!(get_text(&reopened, "t/key").await.as_deref(), Some("kept"));
}

#[tokio::test]
async fn file_store_creates_files_and_folders_only_their_owner_can_open() {
    let dir = TempDir::new("store-modes");
    // The store's own folder is created by `open`, with its missing parents.
    let root = dir.path().join("store").join("root");
    let store = FileStore::open(&root).unwrap();
    store
        .put("tasks/a/ckpt/1", value("image"), PutMode::Overwrite)
        .await
        .unwrap();
    store
        .put("tasks/a/task", value("record"), PutMode::Create)
        .await
        .unwrap();
    store
        .put("tasks/a/ckpt/1", value("newer image"), PutMode::Overwrite)
        .await
        .unwrap();
    let mut folders = vec![dir.path().join("store"), root.clone()];
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path.clone());
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(folders.len(), 5, "{folders:?}");
    // Whatever the umask: no bit for the group or others (a umask can only remove bits, and
    // no usual one removes the owner's).
    for (paths, owner) in [(&files, 0o600), (&folders, 0o700)] {
        for path in paths {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:03o}", path.display());
            assert_eq!(mode & owner, owner, "{} is {mode:03o}", path.display());
        }
    }
}

#[tokio::test]
async fn file_store_treats_keys_below_a_value_as_missing() {
    // `a/one` holds a value, so the file store has a file where the folder of `a/one/x`
    // would be. `a/one/x` is still just a missing key, as it is in every other store.
    let dir = TempDir::new("store-below-a-value");
    let file = FileStore::open(dir.path()).unwrap();
    let memory = MemoryStore::new();
    let stores: [(&str, &dyn CheckpointStore); 2] = [("memory", &memory), ("file", &file)];
    for (name, store) in stores {
        store
            .put("a/one", value("1"), PutMode::Overwrite)
            .await
            .unwrap();
        let get = store.get("a/one/x").await;
        assert!(matches!(get, Ok(None)), "{name} store: get: {get:?}");
        let listed = store.list("a/one/").await;
        assert!(
            matches!(&listed, Ok(keys) if keys.is_empty()),
            "{name} store: list: {listed:?}"
        );
        let deleted = store.delete("a/one/x").await;
        assert!(deleted.is_ok(), "{name} store: delete: {deleted:?}");
    }
}

#[tokio::test]
async fn file_store_list_stays_inside_its_folder() {
    let dir = TempDir::new("store-list-escape");
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret"), b"not a key").unwrap();
    let store = FileStore::open(dir.path().join("store")).unwrap();
    store
        .put("tasks/x", value("x"), PutMode::Overwrite)
        .await
        .unwrap();
    for prefix in ["../", "../outside/", "tasks/../../"] {
        match store.list(prefix).await {
            Err(StoreError::InvalidKey { .. }) => {}
            Ok(keys) => assert!(
                keys.is_empty(),
                "list({prefix:?}) reaches outside the store folder: {keys:?}"
            ),
            Err(other) => panic!("list({prefix:?}): {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retention and outcomes.

async fn catalog_retention(store: Arc<dyn CheckpointStore>) {
    let catalog = Catalog::new(Arc::clone(&store), 3);
    let task = TaskId::from_raw(0x00c0_ffee);
    let mut written = Vec::new();
    for seq in 1..=6 {
        let key = CheckpointKey {
            seq,
            steps: seq * 10,
        };
        let image = cosmic::image::capture(&Ticker::new(seq, 0)).unwrap();
        catalog
            .put_checkpoint(task, key, image.into())
            .await
            .unwrap();
        written.push(key);
        let kept = catalog.checkpoints(task).await.unwrap();
        assert_eq!(kept, written[written.len().saturating_sub(3)..]);
    }
    assert_eq!(
        store.list("tasks/").await.unwrap(),
        [4, 5, 6].map(|seq| format!("tasks/{task}/ckpt/{seq:020}-{:020}", seq * 10))
    );
    let newest = catalog.checkpoint(task, written[5]).await.unwrap().unwrap();
    assert_eq!(cosmic::image::restore::<Ticker>(&newest).unwrap().n, 6);
    assert_eq!(catalog.checkpoint(task, written[0]).await.unwrap(), None);
    catalog.retire_checkpoints(task).await.unwrap();
    assert!(catalog.checkpoints(task).await.unwrap().is_empty());
}

#[tokio::test]
async fn catalog_keeps_the_newest_k_checkpoints_in_both_stores() {
    catalog_retention(Arc::new(MemoryStore::new())).await;
    let dir = TempDir::new("store-retention");
    catalog_retention(Arc::new(FileStore::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn keep_checkpoints_keeps_the_newest_k_on_disk() {
    let dir = TempDir::new("store-keep");
    let rt = file_runtime(dir.path(), 2, Policy::OnDemand).await;
    let handle = rt.spawn(Ticker::new(1_000_000, 1)).await.unwrap();
    let mut keys = Vec::new();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        keys.push(handle.checkpoint_now().await.unwrap());
    }
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
    let catalog = Catalog::new(Arc::new(FileStore::open(dir.path()).unwrap()), 2);
    // Older images are pruned after `checkpoint_now` has answered (the new image is durable
    // first), so wait for the pruning, within a generous bound.
    for _ in 0..500 {
        if catalog.checkpoints(handle.id()).await.unwrap() == keys[2..] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(catalog.checkpoints(handle.id()).await.unwrap(), keys[2..]);
    let images: Vec<String> = snapshot(dir.path())
        .into_keys()
        .filter(|path| path.contains("/ckpt/"))
        .collect();
    let expected: Vec<String> = keys[2..]
        .iter()
        .map(|key| {
            image_path(Path::new(""), handle.id(), *key)
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(images, expected);
    handle.cancel().await.unwrap();
}

#[tokio::test]
async fn finished_task_keeps_its_outcome_and_retires_its_checkpoints() {
    let dir = TempDir::new("store-finished");
    let id = {
        let rt = file_runtime(dir.path(), 3, Policy::every_steps(1)).await;
        let handle = rt.spawn(Ticker::new(20, 0)).await.unwrap();
        assert_eq!(handle.join().await.unwrap(), sum_to(20));
        handle.id()
    };
    let files: Vec<String> = snapshot(dir.path()).into_keys().collect();
    // The outcome, the task record, and the note that the outcome is kept (retention).
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].starts_with("finished/kept/") && files[0].ends_with(&format!(".{id}")));
    assert_eq!(
        files[1..],
        [format!("tasks/{id}/outcome"), format!("tasks/{id}/task")]
    );
    let catalog = Catalog::new(Arc::new(FileStore::open(dir.path()).unwrap()), 3);
    assert_eq!(
        catalog.task_record(id).await.unwrap(),
        Some(TaskRecord {
            type_name: "cosmic_tests.StoreTicker".to_owned(),
            output_type: "u64".to_owned(),
        })
    );
    match catalog.outcome(id).await.unwrap() {
        Some(Outcome::Completed(bytes)) => {
            assert_eq!(cosmic::image::restore::<u64>(&bytes).unwrap(), sum_to(20));
        }
        other => panic!("outcome: {other:?}"),
    }
    // A new runtime reports it finished, serves its output, and does not run it again.
    let rt = file_runtime(dir.path(), 3, Policy::every_steps(1)).await;
    let recovery = rt.recovery();
    assert_eq!(recovery.finished, [id], "{recovery:?}");
    assert!(recovery.resumed.is_empty() && recovery.failed.is_empty());
    assert_eq!(
        rt.handle::<u64>(id).unwrap().join().await.unwrap(),
        sum_to(20)
    );
    assert_eq!(rt.stats().checkpoints_written, 0);
    assert_eq!(snapshot(dir.path()).into_keys().collect::<Vec<_>>(), files);
}

// ---------------------------------------------------------------------------------------------
// Restore from damaged stores.

/// Warnings and errors logged while a future runs.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= tracing::Level::WARN
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// A store left by a runtime that shut down while a task ran: checkpoints `keys` (oldest
/// first, the last one taken by the shutdown), and the task's id.
async fn interrupted_store(root: &Path, keep: usize) -> (TaskId, Vec<CheckpointKey>) {
    let rt = file_runtime(root, keep, Policy::OnDemand).await;
    let handle = rt.spawn(Ticker::new(400, 1)).await.unwrap();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        handle.checkpoint_now().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(15)).await;
    rt.shutdown().await;
    assert!(matches!(
        handle.join().await,
        Err(JoinError::ShutDown { .. })
    ));
    let catalog = Catalog::new(Arc::new(FileStore::open(root).unwrap()), keep);
    let keys = catalog.checkpoints(handle.id()).await.unwrap();
    assert_eq!(keys.len(), keep.min(4), "{keys:?}");
    (handle.id(), keys)
}

#[tokio::test]
async fn damaged_newest_image_resumes_from_the_older_one_with_a_warning() {
    let dir = TempDir::new("store-fallback");
    let (id, keys) = interrupted_store(dir.path(), 3).await;
    let (older, newest) = (keys[1], keys[2]);
    assert!(older.steps < newest.steps, "{keys:?}");
    // One byte in the middle of the newest image (its body: the checksum catches it).
    let path = image_path(dir.path(), id, newest);
    let len = std::fs::metadata(&path).unwrap().len() as isize;
    damage(&path, len / 2);

    let warnings = Warnings::default();
    let rt = file_runtime(dir.path(), 3, Policy::OnDemand)
        .with_subscriber(warnings.clone())
        .await;
    let recovery = rt.recovery();
    assert_eq!(recovery.resumed, [(id, older)], "{recovery:?}");
    assert!(recovery.failed.is_empty(), "{recovery:?}");
    let warned = warnings.lines();
    assert!(
        warned.iter().any(|line| line.starts_with("WARN")
            && line.contains("checkpoint unusable")
            && line.contains(&id.to_string())
            && line.contains(&format!("seq={}", newest.seq))
            && line.contains("checksum")),
        "no warning about the damaged image: {warned:?}"
    );
    // It resumed where the older image was, and finishes with the right answer.
    let handle = rt.handle::<u64>(id).unwrap();
    assert!(handle.steps_completed() >= older.steps);
    assert_eq!(handle.join().await.unwrap(), sum_to(400));
}

#[tokio::test]
async fn after_a_fallback_new_checkpoints_sort_after_the_damaged_image() {
    // The damaged newest image keeps its name after a fallback. The resumed task numbers its
    // next checkpoint from the image it resumed from, so that checkpoint must still sort after
    // the damaged one, or the damaged image stays "newest" and retention prunes good ones.
    let dir = TempDir::new("store-fallback-seq");
    let (id, keys) = interrupted_store(dir.path(), 2).await;
    let (older, damaged) = (keys[0], keys[1]);
    damage(&image_path(dir.path(), id, damaged), -1);

    let rt = file_runtime(dir.path(), 2, Policy::OnDemand).await;
    assert_eq!(rt.recovery().resumed, [(id, older)]);
    let handle = rt.handle::<u64>(id).unwrap();
    handle.pause().await.unwrap();
    let fresh = handle.checkpoint_now().await.unwrap();
    let catalog = Catalog::new(Arc::new(FileStore::open(dir.path()).unwrap()), 2);
    let kept = catalog.checkpoints(id).await.unwrap();
    handle.cancel().await.unwrap();
    assert!(
        fresh > damaged,
        "checkpoint {fresh:?} taken after the fallback sorts before the damaged {damaged:?} \
         (sequence number reused); the store now keeps {kept:?}"
    );
    assert_eq!(
        kept.last(),
        Some(&fresh),
        "the newest image must be the fresh one"
    );
}

#[tokio::test]
async fn every_image_damaged_fails_the_task_with_each_reason() {
    let dir = TempDir::new("store-all-damaged");
    let (id, keys) = interrupted_store(dir.path(), 3).await;
    for key in &keys {
        damage(&image_path(dir.path(), id, *key), -1);
    }
    let before = snapshot(dir.path());
    let warnings = Warnings::default();
    let rt = file_runtime(dir.path(), 3, Policy::OnDemand)
        .with_subscriber(warnings.clone())
        .await;
    let recovery = rt.recovery();
    assert!(recovery.resumed.is_empty(), "{recovery:?}");
    assert_eq!(recovery.failed.len(), 1, "{recovery:?}");
    let (task, reason) = &recovery.failed[0];
    assert_eq!(*task, id);
    cosmic_tests::chain::assert_no_repeats(reason);
    let RecoveryError::NoUsableCheckpoint { newest, older } = reason else {
        panic!("not every checkpoint's problem: {reason:?}");
    };
    let problems: Vec<&CheckpointUnusable> = std::iter::once(newest).chain(older).collect();
    for key in &keys {
        assert!(
            problems.iter().any(|problem| matches!(
                problem,
                CheckpointUnusable::Restore { seq, source }
                    if *seq == key.seq && matches!(**source, RestoreError::BodyChecksum { .. })
            )),
            "checkpoint {} is not among {problems:?}",
            key.seq
        );
    }
    let newest_seq = keys.iter().map(|key| key.seq).max().unwrap();
    let whole = cosmic_tests::chain::text(reason);
    assert!(
        whole.contains(&format!(
            "none of its 3 checkpoints restores: checkpoint {newest_seq} does not restore: body checksum mismatch"
        )),
        "{whole}"
    );
    assert!(
        warnings
            .lines()
            .iter()
            .any(|line| line.starts_with("ERROR") && line.contains("cannot be resumed")),
        "{:?}",
        warnings.lines()
    );
    match rt.handle::<u64>(id) {
        Err(error @ HandleError::NotResumed { .. }) => {
            cosmic_tests::chain::assert_no_repeats(&error);
            let whole = cosmic_tests::chain::text(&error);
            assert!(
                whole.contains("could not be resumed: none of its 3 checkpoints restores"),
                "{whole}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Nothing is deleted: the images are there for whoever can repair them.
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn task_of_an_unregistered_type_is_reported_by_type_name() {
    let dir = TempDir::new("store-unregistered");
    let (id, _) = interrupted_store(dir.path(), 3).await;
    let warnings = Warnings::default();
    let rt = Runtime::builder()
        .store(FileStore::open(dir.path()).unwrap())
        .checkpoint(Policy::OnDemand)
        .build()
        .with_subscriber(warnings.clone())
        .await
        .unwrap();
    let recovery = rt.recovery();
    assert!(recovery.resumed.is_empty(), "{recovery:?}");
    assert_eq!(recovery.failed.len(), 1, "{recovery:?}");
    let (task, reason) = &recovery.failed[0];
    assert_eq!(*task, id);
    assert!(
        matches!(reason, RecoveryError::UnregisteredType { type_name } if type_name == "cosmic_tests.StoreTicker"),
        "{reason:?}"
    );
    let text = reason.to_string();
    assert!(
        text.contains("`cosmic_tests.StoreTicker`") && text.contains("not registered"),
        "{text}"
    );
    // Visible by default: a warning that names the type.
    assert!(
        warnings.lines().iter().any(|line| line.starts_with("WARN")
            && line.contains("cosmic_tests.StoreTicker")
            && line.contains("not registered")),
        "{:?}",
        warnings.lines()
    );
    // The handle says why there is no such task here.
    match rt.handle::<u64>(id) {
        Err(HandleError::UnregisteredType { task, type_name }) => {
            assert_eq!(task, id);
            assert_eq!(type_name, "cosmic_tests.StoreTicker");
        }
        other => panic!("{other:?}"),
    }
    let message = rt.handle::<u64>(id).unwrap_err().to_string();
    assert!(
        message.contains("`cosmic_tests.StoreTicker`") && message.contains("not registered"),
        "{message}"
    );
    drop(rt);
    // Strict: the build itself fails, naming the type.
    let strict = Runtime::builder()
        .store(FileStore::open(dir.path()).unwrap())
        .checkpoint(Policy::OnDemand)
        .require_registered_types(true)
        .build()
        .await;
    match strict {
        Err(error @ BuildError::UnregisteredTypes { .. }) => {
            let BuildError::UnregisteredTypes { tasks } = &error else {
                unreachable!()
            };
            assert_eq!(tasks, &[(id, "cosmic_tests.StoreTicker".to_owned())]);
            let text = error.to_string();
            assert!(
                text.contains("`cosmic_tests.StoreTicker`") && text.contains("register"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Registering the type afterwards (another runtime) resumes it.
    let rt = file_runtime(dir.path(), 3, Policy::OnDemand).await;
    assert_eq!(rt.recovery().resumed.len(), 1);
    assert_eq!(
        rt.handle::<u64>(id).unwrap().join().await.unwrap(),
        sum_to(400)
    );
}

#[tokio::test]
async fn damaged_task_record_is_a_typed_error() {
    let dir = TempDir::new("store-damaged-record");
    let (id, _) = interrupted_store(dir.path(), 3).await;
    let record = dir.path().join(format!("tasks/{id}/task"));
    let catalog = Catalog::new(Arc::new(FileStore::open(dir.path()).unwrap()), 3);

    damage(&record, -1);
    match catalog.task_record(id).await {
        Err(CatalogError::Damaged {
            key,
            source: RestoreError::BodyChecksum { .. },
        }) => assert_eq!(key, format!("tasks/{id}/task")),
        other => panic!("damaged record: {other:?}"),
    }
    let rt = file_runtime(dir.path(), 3, Policy::OnDemand).await;
    let recovery = rt.recovery();
    assert!(recovery.resumed.is_empty(), "{recovery:?}");
    assert_eq!(recovery.failed.len(), 1, "{recovery:?}");
    assert_eq!(recovery.failed[0].0, id);
    cosmic_tests::chain::assert_no_repeats(&recovery.failed[0].1);
    let whole = cosmic_tests::chain::text(&recovery.failed[0].1);
    assert!(whole.contains(&format!("tasks/{id}/task")), "{whole}");

    // Cut short: still a typed error, not a panic.
    std::fs::write(&record, b"COSM").unwrap();
    match catalog.task_record(id).await {
        Err(CatalogError::Damaged {
            source: RestoreError::Truncated { .. } | RestoreError::BadMagic { .. },
            ..
        }) => {}
        other => panic!("truncated record: {other:?}"),
    }
    // Not an image at all.
    std::fs::write(&record, b"{\"type\": \"json\"}").unwrap();
    assert!(matches!(
        catalog.task_record(id).await,
        Err(CatalogError::Damaged {
            source: RestoreError::BadMagic { .. },
            ..
        })
    ));
}

#[tokio::test]
async fn damaged_outcome_record_is_a_typed_error() {
    let dir = TempDir::new("store-damaged-outcome");
    let id = {
        let rt = file_runtime(dir.path(), 3, Policy::every_steps(1)).await;
        let handle = rt.spawn(Ticker::new(10, 0)).await.unwrap();
        assert_eq!(handle.join().await.unwrap(), sum_to(10));
        handle.id()
    };
    damage(&dir.path().join(format!("tasks/{id}/outcome")), -1);
    let catalog = Catalog::new(Arc::new(FileStore::open(dir.path()).unwrap()), 3);
    match catalog.outcome(id).await {
        Err(CatalogError::Damaged {
            key,
            source: RestoreError::BodyChecksum { .. },
        }) => assert_eq!(key, format!("tasks/{id}/outcome")),
        other => panic!("damaged outcome: {other:?}"),
    }
    let rt = file_runtime(dir.path(), 3, Policy::every_steps(1)).await;
    let recovery = rt.recovery();
    assert!(recovery.finished.is_empty(), "{recovery:?}");
    assert_eq!(recovery.failed.len(), 1, "{recovery:?}");
    assert_eq!(recovery.failed[0].0, id);
    assert!(matches!(
        rt.handle::<u64>(id),
        Err(HandleError::NotResumed { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Real I/O failures: a full disk, a folder we may not write.

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Set inside the user namespace that [`in_user_namespace`] runs a test in.
const IN_USER_NAMESPACE: &str = "COSMIC_TEST_IN_USER_NAMESPACE";

/// For a test that needs root to mount: true if this process may mount (root, or already
/// inside the namespace); otherwise runs the test `name` again in a new user and mount
/// namespace, where it is root, and checks that it passed there, or says plainly that it was
/// skipped when the kernel allows no such namespace. False means the caller is done.
fn may_mount_or_rerun(name: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os(IN_USER_NAMESPACE).is_none(),
        "inside the user namespace but not root"
    );
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            eprintln!(
                "skipped: {name} needs root or user namespaces (unshare: {})",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return false;
        }
        Err(error) => {
            eprintln!(
                "skipped: {name} needs root or user namespaces (cannot run unshare: {error})"
            );
            return false;
        }
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--"])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_USER_NAMESPACE, "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} in a user namespace: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} in a user namespace ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{name}: ran in a user namespace (not root here)");
    false
}

/// A tmpfs of a given size, lazily unmounted and removed on drop.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("store-tmpfs");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            output.status.success(),
            "mount -t tmpfs failed ({}); the disk-full test needs a tmpfs",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a blocking thread of the test's runtime may still hold the folder open.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Fills the file system of `dir` with one file until it reports ENOSPC.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 4096];
    loop {
        if let Err(error) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "filling: {error}");
            return;
        }
    }
}

#[tokio::test]
async fn disk_full_is_a_typed_error_and_keeps_the_last_good_image() {
    if !may_mount_or_rerun("disk_full_is_a_typed_error_and_keeps_the_last_good_image") {
        return;
    }
    let tmpfs = Tmpfs::mount("512k");
    let root = tmpfs.path().join("store");
    let rt = file_runtime(&root, 2, Policy::OnDemand).await;
    let mut task = Ticker::new(u64::MAX / 4, 1);
    task.ballast = vec![7; 96 * 1024];
    let handle = rt.spawn(task.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let good = handle.checkpoint_now().await.unwrap();

    fill(&tmpfs.path().join("filler"));
    let steps_before = handle.steps_completed();
    let error = handle.checkpoint_now().await.unwrap_err();
    let ControlError::Store { source, .. } = &error else {
        panic!("expected a store error, got {error:?}");
    };
    let store = store_error(source).unwrap_or_else(|| panic!("not a store error: {source:?}"));
    assert!(store.is_storage_full(), "{store:?}");
    assert!(!store.is_permission_denied());
    assert!(rt.stats().checkpoint_failures >= 1);
    // A new task cannot be recorded either, and says why.
    match rt.spawn(task).await {
        Err(SpawnError::Store { source, .. }) => {
            assert!(store_error(&source).is_some_and(StoreError::is_storage_full));
        }
        other => panic!("spawn on a full disk: {other:?}"),
    }

    // The last good image is still there and decodes; no temporary is left over.
    let catalog = Catalog::new(Arc::new(FileStore::open(&root).unwrap()), 2);
    let kept = catalog.checkpoints(handle.id()).await.unwrap();
    assert_eq!(kept.last(), Some(&good), "{kept:?}");
    let image = catalog
        .checkpoint(handle.id(), good)
        .await
        .unwrap()
        .unwrap();
    let restored: Ticker = cosmic::image::restore(&image).unwrap();
    assert_eq!(restored.next, good.steps + 1);
    assert!(
        snapshot(&root).keys().all(|path| !path.contains("/.")),
        "{:?}",
        snapshot(&root).keys()
    );

    // The task kept running through the failure, and checkpoints again once there is room.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(handle.status(), TaskStatus::Running);
    assert!(handle.steps_completed() > steps_before);
    std::fs::remove_file(tmpfs.path().join("filler")).unwrap();
    let after = handle.checkpoint_now().await.unwrap();
    assert!(after > good && after.steps > steps_before, "{after:?}");
    assert_eq!(
        catalog.checkpoints(handle.id()).await.unwrap().last(),
        Some(&after)
    );
    handle.cancel().await.unwrap();
    assert!(matches!(
        handle.join().await,
        Err(JoinError::Cancelled { .. })
    ));
}

/// Who runs `crash_child` in the permission test, and from where.
enum Runner {
    /// This user: a non-root user, kept from writing by the store's mode bits.
    Me,
    /// Root, as `nobody` through `setpriv`, running a copy of the child that `nobody` can reach.
    Nobody(PathBuf),
}

impl Runner {
    /// Runs the child with `args`; its stdout lines.
    fn child(&self, args: &[&Path]) -> Vec<String> {
        let mut command = match self {
            Runner::Me => Command::new(CHILD),
            Runner::Nobody(child) => {
                let mut command = Command::new("setpriv");
                command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
                command.arg(child);
                command
            }
        };
        let output = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the child: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "child {args:?} ({:?}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout.lines().map(str::to_owned).collect()
    }

    /// Takes write access to `root` away from the child: the owner's write bits for a
    /// non-root child, the others' for `nobody`. Reading stays allowed.
    fn lock(&self, root: &Path) {
        match self {
            Runner::Me => set_modes(root, 0o555, 0o444),
            Runner::Nobody(_) => set_modes(root, 0o755, 0o644),
        }
    }

    /// Gives write access back to the owner (to plant a file, or to remove the folder).
    fn unlock(&self, root: &Path) {
        set_modes(root, 0o755, 0o644);
    }
}

/// Sets every folder under `root` (and itself) to `dirs`, every file to `files`.
fn set_modes(root: &Path, dirs: u32, files: u32) {
    // Files first, while the folder is still writable and searchable.
    let mut sub = Vec::new();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sub.push(path);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(files)).unwrap();
        }
    }
    for path in sub {
        set_modes(&path, dirs, files);
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(dirs)).unwrap();
}

/// A folder every user can reach (under the system's temporary folder), removed on drop
/// unless the test failed: where root puts what `nobody` must open.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new(label: &str) -> SharedDir {
        let path = std::env::temp_dir().join(format!("cosmic-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        SharedDir(path)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn permission_denied_is_a_typed_error_and_keeps_the_last_good_image() {
    // Root ignores mode bits: only another user is refused. The checkout (and so the child
    // and the usual temporary folders) may sit where `nobody` cannot reach, under a 0700
    // home folder: root works in a folder every user can reach, with a copy of the child.
    let (_shared, _own, dir, runner) = if is_root() {
        let setpriv = Command::new("setpriv").arg("--version").output();
        if !setpriv.is_ok_and(|output| output.status.success()) {
            eprintln!(
                "skipped: the permission test, as root, runs the child as nobody through \
                 `setpriv` (util-linux), which is missing"
            );
            return;
        }
        let shared = SharedDir::new("store-permission");
        let child = shared.0.join("crash_child");
        std::fs::copy(CHILD, &child).unwrap();
        std::fs::set_permissions(&child, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = shared.0.join("work");
        std::fs::create_dir(&dir).unwrap();
        (Some(shared), None, dir, Runner::Nobody(child))
    } else {
        let own = TempDir::new("store-permission");
        let dir = own.path().to_owned();
        (None, Some(own), dir, Runner::Me)
    };
    let _cleanup = Unlock(&runner, dir.clone());
    permission_case(&runner, &dir);
}

/// Gives the folder back to its owner on the way out (before the folder itself is dropped),
/// so that it can be removed.
struct Unlock<'a>(&'a Runner, PathBuf);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        if self.1.exists() {
            self.0.unlock(&self.1);
        }
    }
}

fn permission_case(runner: &Runner, dir: &Path) {
    let root = dir.join("store");
    let prepared = Runner::Me.child(&[
        Path::new("prepare"),
        &root,
        Path::new("--steps"),
        Path::new("1000000000"),
    ]);
    let [kind, task, _, _] = prepared[0].split(' ').collect::<Vec<_>>()[..] else {
        panic!("prepare: {prepared:?}");
    };
    assert_eq!(kind, "prepared");
    runner.lock(dir);
    let before = snapshot(&root);
    let images: Vec<&String> = before.keys().filter(|key| key.contains("/ckpt/")).collect();
    assert!(!images.is_empty(), "{before:?}");

    // Without write access: reading and resuming work, every write is refused with a typed
    // error, and the task runs on.
    let lines = runner.child(&[Path::new("permission"), &root]);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_eq!(lines[0], "open ok");
    assert_eq!(lines[1], "recovery resumed=1 finished=0 failed=0");
    assert!(
        lines[2].starts_with("checkpoint permission_denied=true storage_full=false error="),
        "{lines:#?}"
    );
    assert!(lines[2].contains("Permission denied"), "{lines:#?}");
    let running: Vec<&str> = lines[3].split(' ').collect();
    assert_eq!(running[0], "running", "{lines:#?}");
    let (was, now): (u64, u64) = (running[1].parse().unwrap(), running[2].parse().unwrap());
    assert!(now > was && running[3] == "running", "{lines:#?}");
    assert!(
        lines[4].starts_with("spawn permission_denied=true storage_full=false error="),
        "{lines:#?}"
    );
    // Nothing changed on disk: the images are the ones written before, and still valid.
    let after = snapshot(&root);
    assert_eq!(after, before, "the store changed");
    for image in &images {
        cosmic::image::inspect(&after[*image]).unwrap_or_else(|e| panic!("{image}: {e}"));
    }

    // A temporary left by a crash that the child may not remove: the store refuses to open,
    // typed.
    let temporary = root.join(format!("tasks/{task}/ckpt/.torn.tmp-0000000000000001"));
    runner.unlock(dir);
    std::fs::write(&temporary, b"torn").unwrap();
    runner.lock(dir);
    let lines = runner.child(&[Path::new("permission"), &root]);
    assert!(
        lines.len() == 1 && lines[0].starts_with("open permission_denied=true storage_full=false"),
        "{lines:#?}"
    );
}
