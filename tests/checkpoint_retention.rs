//! Retention across restarts on a `FileStore`: finished tasks' outcomes expire after their
//! time to live or when the program forgets them, tombstones are bounded by count and age and
//! keep a forgotten id from running again while they live, and a host's forwarding entry of a
//! task that moved away is collected once it learns that the task finished.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use cosmic::prelude::*;
use cosmic::runtime::{ForgetError, HandleError, Retention};
use cosmic::{ClusterKey, FileStore, TaskId, TaskStatus};
use cosmic_tests::counter::TempDir;
use cosmic_tests::identity;

/// Sums 1..=n, one number per step, sleeping `pace_ms` per step.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "cosmic_tests.RetentionTicker")]
struct Ticker {
    next: u64,
    n: u64,
    total: u64,
    pace_ms: u64,
}

impl Ticker {
    fn new(n: u64, pace_ms: u64) -> Self {
        Ticker {
            next: 1,
            n,
            total: 0,
            pace_ms,
        }
    }
}

#[async_trait]
impl Task for Ticker {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.pace_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.pace_ms)).await;
        }
        if self.next > self.n {
            return Ok(Step::Done(self.total));
        }
        self.total += self.next;
        self.next += 1;
        Ok(Step::Continue)
    }
}

fn sum_to(n: u64) -> u64 {
    n * (n + 1) / 2
}

/// Generous: a loaded 2-core machine may be slow, never this slow.
const PATIENCE: Duration = Duration::from_secs(60);

async fn runtime(root: &Path, retention: Retention) -> Runtime {
    Runtime::builder()
        .host("retention-test")
        .store(FileStore::open(root).unwrap())
        .checkpoint(Policy::every_steps(5))
        .retention(retention.sweep_every(Duration::from_millis(20)))
        .register::<Ticker>()
        .build()
        .await
        .unwrap()
}

/// Every file under `root`, as store keys.
fn keys(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path.strip_prefix(root).unwrap().to_string_lossy();
                out.insert(key.into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// The keys that belong to `task`: its records, and its entries in the finished index.
fn keys_of(root: &Path, task: TaskId) -> BTreeSet<String> {
    let id = task.to_string();
    keys(root)
        .into_iter()
        .filter(|key| key.contains(&id))
        .collect()
}

fn tombstone_of(root: &Path, task: TaskId) -> bool {
    keys_of(root, task)
        .iter()
        .any(|key| key.starts_with("finished/tombstone/"))
}

fn records_of(root: &Path, task: TaskId) -> BTreeSet<String> {
    keys_of(root, task)
        .into_iter()
        .filter(|key| key.starts_with("tasks/"))
        .collect()
}

/// Polls `condition` until it holds, or fails after [`PATIENCE`] saying `what`.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn finish(rt: &Runtime, n: u64) -> TaskId {
    let handle = rt.spawn(Ticker::new(n, 0)).await.unwrap();
    assert_eq!(handle.join().await.unwrap(), sum_to(n));
    handle.id()
}

#[tokio::test]
async fn outcomes_expire_after_their_ttl_counted_across_restarts() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "retention-ttl");
    let ttl = Duration::from_secs(1);
    // Finished under a long time to live: both outcomes are kept.
    let rt = runtime(dir.path(), Retention::default()).await;
    let old = finish(&rt, 5).await;
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    // Taken before it ends: the time to live counts from its end, a little later.
    let new_finished = Instant::now();
    let new = finish(&rt, 6).await;
    assert!(records_of(dir.path(), old).contains(&format!("tasks/{old}/outcome")));
    rt.shutdown().await;
    drop(rt);

    // Restarted with a 1 s time to live: the outcome that ended more than 1 s ago (while the
    // host was down, or before) is forgotten by the sweep at start.
    let rt = runtime(dir.path(), Retention::default().outcome_ttl(ttl)).await;
    let recovery = rt.recovery();
    assert!(recovery.finished.contains(&old), "{recovery:?}");
    assert!(
        records_of(dir.path(), old).is_empty(),
        "{:?}",
        keys(dir.path())
    );
    assert!(tombstone_of(dir.path(), old));
    assert!(matches!(
        rt.handle::<u64>(old),
        Err(HandleError::NotFound { .. })
    ));
    if new_finished.elapsed() < ttl {
        assert_eq!(rt.handle::<u64>(new).unwrap().join().await.unwrap(), 21);
    }
    // The other one goes once its time is up, by the periodic sweep.
    until("the newer outcome expired", || {
        records_of(dir.path(), new).is_empty() && rt.handle::<u64>(new).is_err()
    })
    .await;
    assert!(new_finished.elapsed() >= ttl);
    assert!(tombstone_of(dir.path(), new));
    rt.shutdown().await;
    drop(rt);

    // Gone for good: the next start knows neither, and keeps both tombstones.
    let rt = runtime(dir.path(), Retention::default().outcome_ttl(ttl)).await;
    let recovery = rt.recovery();
    assert!(recovery.finished.is_empty(), "{recovery:?}");
    assert!(tombstone_of(dir.path(), old) && tombstone_of(dir.path(), new));
    assert!(keys(dir.path())
        .iter()
        .all(|key| key.starts_with("finished/tombstone/")));
    rt.shutdown().await;
}

#[tokio::test]
async fn forget_removes_the_outcome_at_once_and_for_good() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "retention-forget");
    let until_forgotten = Retention::default().keep_outcomes_until_forgotten();
    let rt = runtime(dir.path(), until_forgotten.clone()).await;
    let handle = rt.spawn(Ticker::new(10, 0)).await.unwrap();
    let task = handle.id();
    assert_eq!(handle.join().await.unwrap(), sum_to(10));
    let kept = rt.spawn(Ticker::new(3, 0)).await.unwrap();
    kept.join().await.unwrap();
    let running = rt.spawn(Ticker::new(u64::MAX / 4, 1)).await.unwrap();
    assert!(matches!(
        running.forget().await,
        Err(ForgetError::NotFinished { .. })
    ));

    handle.forget().await.unwrap();
    assert!(
        records_of(dir.path(), task).is_empty(),
        "{:?}",
        keys(dir.path())
    );
    assert!(tombstone_of(dir.path(), task));
    assert!(matches!(
        rt.handle::<u64>(task),
        Err(HandleError::NotFound { .. })
    ));
    assert!(matches!(
        rt.forget(task).await,
        Err(ForgetError::NotFound { .. })
    ));
    running.cancel().await.unwrap();
    rt.shutdown().await;
    drop(rt);

    // After a restart: the forgotten task is not there; the others' outcomes are.
    let rt = runtime(dir.path(), until_forgotten).await;
    let recovery = rt.recovery();
    assert!(!recovery.finished.contains(&task), "{recovery:?}");
    assert!(recovery.finished.contains(&kept.id()), "{recovery:?}");
    assert!(recovery.finished.contains(&running.id()), "{recovery:?}");
    assert_eq!(
        rt.handle::<u64>(kept.id()).unwrap().join().await.unwrap(),
        6
    );
    assert!(rt.handle::<u64>(task).is_err());
    rt.forget(kept.id()).await.unwrap();
    assert!(records_of(dir.path(), kept.id()).is_empty());
    rt.shutdown().await;
}

#[tokio::test]
async fn tombstones_are_bounded_by_count() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "retention-count");
    let retention = Retention::default()
        .keep_outcomes_until_forgotten()
        .tombstones(2, Duration::from_secs(3600));
    let rt = runtime(dir.path(), retention.clone()).await;
    let mut tasks = Vec::new();
    for n in 1..=4 {
        let task = finish(&rt, n).await;
        rt.forget(task).await.unwrap();
        tasks.push(task);
        // Distinct end times, so that "oldest" is well defined.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    until("two tombstones are left", || keys(dir.path()).len() == 2).await;
    let left: Vec<bool> = tasks.iter().map(|t| tombstone_of(dir.path(), *t)).collect();
    assert_eq!(left, [false, false, true, true], "{:?}", keys(dir.path()));
    rt.shutdown().await;
    drop(rt);

    // The bound holds across a restart, with the newest kept.
    let rt = runtime(dir.path(), retention).await;
    let task = finish(&rt, 5).await;
    rt.forget(task).await.unwrap();
    until("the oldest of three tombstones is gone", || {
        !tombstone_of(dir.path(), tasks[2])
    })
    .await;
    assert!(tombstone_of(dir.path(), tasks[3]) && tombstone_of(dir.path(), task));
    assert_eq!(keys(dir.path()).len(), 2, "{:?}", keys(dir.path()));
    rt.shutdown().await;
}

#[tokio::test]
async fn a_forgotten_id_cannot_run_again_until_its_tombstone_expires() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "retention-age");
    let age = Duration::from_secs(4);
    let retention = Retention::default()
        .keep_outcomes_until_forgotten()
        .tombstones(1000, age);
    let rt = runtime(dir.path(), retention.clone()).await;
    let handle = rt.spawn(Ticker::new(u64::MAX / 4, 1)).await.unwrap();
    let task = handle.id();
    handle.checkpoint_now().await.unwrap();
    // A stale copy of the running task: its record and checkpoints as they are now.
    let stale: Vec<(String, Vec<u8>)> = records_of(dir.path(), task)
        .into_iter()
        .map(|key| {
            let bytes = std::fs::read(dir.path().join(&key)).unwrap();
            (key, bytes)
        })
        .collect();
    assert!(
        stale.iter().any(|(key, _)| key.contains("/ckpt/")),
        "{stale:?}"
    );
    // Taken before it ends: the tombstone's age counts from its end, a little later.
    let ended = Instant::now();
    handle.cancel().await.unwrap();
    handle.forget().await.unwrap();
    rt.shutdown().await;
    drop(rt);
    let plant = || {
        for (key, bytes) in &stale {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    };

    // The stale copy comes back while the tombstone lives: it is removed, not resumed.
    plant();
    let rt = runtime(dir.path(), retention.clone()).await;
    if ended.elapsed() < age {
        let recovery = rt.recovery();
        assert!(recovery.resumed.is_empty(), "{recovery:?}");
        assert!(rt.tasks().is_empty(), "{:?}", rt.tasks());
        assert!(
            records_of(dir.path(), task).is_empty(),
            "{:?}",
            keys(dir.path())
        );
        assert!(tombstone_of(dir.path(), task));
    }
    // The tombstone goes once it is older than its age.
    until("the tombstone expired", || !tombstone_of(dir.path(), task)).await;
    assert!(ended.elapsed() >= age);
    assert!(keys(dir.path()).is_empty(), "{:?}", keys(dir.path()));
    rt.shutdown().await;
    drop(rt);

    // Without it nothing tells the copy apart from a task to resume: the bound is real.
    plant();
    let rt = runtime(dir.path(), retention).await;
    let recovery = rt.recovery();
    assert_eq!(
        recovery.resumed.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [task],
        "{recovery:?}"
    );
    rt.handle::<u64>(task).unwrap().cancel().await.unwrap();
    rt.shutdown().await;
}

const KEY: &[u8] = b"checkpoint-retention test cluster key, 32+ bytes";

async fn host(name: &str, root: &Path) -> Runtime {
    Runtime::builder()
        .host(name)
        .store(FileStore::open(root).unwrap())
        .checkpoint(Policy::every_steps(5))
        .listen("127.0.0.1:0")
        .cluster_key(ClusterKey::from_bytes(KEY).unwrap())
        .host_key(identity::host_key(name))
        .retention(Retention::default().sweep_every(Duration::from_millis(50)))
        .register::<Ticker>()
        .build()
        .await
        .unwrap()
}

fn epoch_records(root: &Path, task: TaskId) -> usize {
    records_of(root, task)
        .iter()
        .filter(|key| key.contains("/epoch/"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_entries_are_collected_once_the_origin_learns_the_task_finished() {
    let (alpha_dir, beta_dir) = (
        TempDir::new(env!("CARGO_TARGET_TMPDIR"), "retention-alpha"),
        TempDir::new(env!("CARGO_TARGET_TMPDIR"), "retention-beta"),
    );
    let alpha = host("retention-alpha", alpha_dir.path()).await;
    let beta = host("retention-beta", beta_dir.path()).await;
    alpha
        .add_peer(beta.host(), beta.local_addr().unwrap())
        .unwrap();
    beta.add_peer(alpha.host(), alpha.local_addr().unwrap())
        .unwrap();
    identity::introduce(&alpha, &beta);

    // Learned by a join here.
    let joined = alpha.spawn(Ticker::new(300, 2)).await.unwrap();
    joined.migrate_to(beta.host()).await.unwrap();
    assert!(matches!(joined.status(), TaskStatus::Moved(_)));
    assert!(epoch_records(alpha_dir.path(), joined.id()) > 0);
    // Learned by the sweep, which asks where moved tasks are: nobody joins this one here.
    let probed = alpha.spawn(Ticker::new(300, 2)).await.unwrap();
    probed.migrate_to(beta.host()).await.unwrap();

    // The forwarding records give way to a tombstone; the outcome stays recorded once, on
    // beta, and the handles here have it.
    assert_eq!(joined.join().await.unwrap(), sum_to(300));
    assert_eq!(joined.status(), TaskStatus::Completed);
    assert_eq!(epoch_records(alpha_dir.path(), joined.id()), 0);
    assert!(records_of(alpha_dir.path(), joined.id()).is_empty());
    assert!(tombstone_of(alpha_dir.path(), joined.id()));
    assert!(records_of(beta_dir.path(), joined.id())
        .contains(&format!("tasks/{}/outcome", joined.id())));
    until("the sweep learned the other task finished", || {
        probed.status() == TaskStatus::Completed
    })
    .await;
    assert!(records_of(alpha_dir.path(), probed.id()).is_empty());
    assert!(tombstone_of(alpha_dir.path(), probed.id()));
    assert_eq!(probed.join().await.unwrap(), sum_to(300));

    // After a restart, with the peer gone: no forwarding entry, only the tombstones.
    beta.shutdown().await;
    drop(beta);
    alpha.shutdown().await;
    drop(alpha);
    let alpha = host("retention-alpha", alpha_dir.path()).await;
    let recovery = alpha.recovery();
    assert!(recovery.moved.is_empty(), "{recovery:?}");
    assert!(recovery.finished.is_empty(), "{recovery:?}");
    assert!(alpha.tasks().is_empty(), "{:?}", alpha.tasks());
    assert!(keys(alpha_dir.path())
        .iter()
        .all(|key| key.starts_with("finished/tombstone/")));
    alpha.shutdown().await;
}
