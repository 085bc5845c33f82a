//! Cluster members in one process, each a real runtime listening on loopback, agreeing through
//! the embedded coordinator (a folder) and sharing a folder store: the balancer spreads tasks
//! spawned on one host, explicit moves go through the coordinator, a host that leaves hands
//! its tasks over, a host whose lease ends stops its tasks, a host that cannot run a task says
//! so and leaves it to one that can, and only an operator's act makes a member trusted.
//! Crashes and pauses of whole processes are in `cluster_processes.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmic::cluster::{
    BalanceConfig, ClusterConfig, ClusterEventKind, ClusterView, Coordinator, FolderCoordinator,
    Owner,
};
use cosmic::{ClusterKey, FileStore, Policy, Runtime, TaskId, TaskStatus};
use cosmic_tests::counter::{expected_digest, Counter};
use cosmic_tests::identity::host_key;

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
        std::fs::create_dir_all(&path).expect("create the test folder");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A cluster's shared parts: the coordinator's folder, the store's folder, the key.
struct Cluster {
    dir: TempDir,
    coordinator: Arc<FolderCoordinator>,
    key: ClusterKey,
}

// Long enough that a renewal held up by a loaded disk (CI) does not end it: these tests are
// about behaviour, not about the lease's length.
const LEASE: Duration = Duration::from_secs(2);

impl Cluster {
    fn new(label: &str) -> Cluster {
        let dir = TempDir::new(label);
        let coordinator =
            Arc::new(FolderCoordinator::open(dir.0.join("coordinator")).expect("coordinator"));
        Cluster {
            dir,
            coordinator,
            key: ClusterKey::from_bytes(&[7; 32]).expect("a key"),
        }
    }

    /// The operator trusts host `name` (its test key pair).
    async fn trust(&self, name: &str) {
        self.coordinator
            .trust(name, host_key(name).public_key())
            .await
            .expect("trust");
    }

    fn config(&self, balance: bool) -> ClusterConfig {
        ClusterConfig::shared(self.coordinator.clone())
            .lease_ttl(LEASE)
            .scan_every(Duration::from_millis(60))
            .capacity(2)
            .balance(BalanceConfig {
                enabled: balance,
                cooldown: Duration::from_millis(500),
                ..BalanceConfig::default()
            })
    }

    async fn member(&self, name: &str, balance: bool) -> Runtime {
        self.member_with(name, balance, |b| b.register::<Counter>())
            .await
    }

    async fn member_with(
        &self,
        name: &str,
        balance: bool,
        register: impl FnOnce(cosmic::Builder) -> cosmic::Builder,
    ) -> Runtime {
        self.trust(name).await;
        let builder = Runtime::builder()
            .host(name)
            .store(FileStore::open_shared(self.dir.0.join("store")).expect("store"))
            .checkpoint(Policy::every_steps(5))
            .listen("127.0.0.1:0")
            .cluster_key(self.key.clone())
            .host_key(host_key(name))
            .cluster(self.config(balance));
        register(builder).build().await.expect("a member starts")
    }

    fn view(&self) -> ClusterView {
        ClusterView::new(
            self.coordinator.clone(),
            Arc::new(FileStore::open_shared(self.dir.0.join("store")).expect("store")),
        )
    }

    fn log(&self, name: &str) -> String {
        self.dir.0.join(format!("{name}.log")).display().to_string()
    }

    async fn owners(&self) -> Vec<(TaskId, Owner)> {
        self.coordinator
            .tasks()
            .await
            .expect("tasks")
            .into_iter()
            .map(|e| (e.task, e.owner))
            .collect()
    }

    async fn owned_by(&self, host: &str) -> usize {
        self.owners()
            .await
            .iter()
            .filter(|(_, owner)| matches!(owner, Owner::Host { host: h, .. } if h == host))
            .count()
    }

    /// Waits until every task in `tasks` finished with the right digest (read through the
    /// coordinator and the store, as an operator would).
    async fn all_finish(&self, tasks: &[(TaskId, u64)], within: Duration) {
        let view = self.view();
        let deadline = Instant::now() + within;
        for (task, total) in tasks {
            loop {
                if let Some(digest) = view.output::<u64>(*task).await.expect("view") {
                    assert_eq!(digest, expected_digest(*total), "task {task}'s result");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "task {task} did not finish within {within:?}; owners: {:?}",
                    self.owners().await
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_spreads_tasks_spawned_on_one_host_and_every_result_is_right() {
    let cluster = Cluster::new("cluster-balance");
    let alpha = cluster.member("alpha", true).await;
    let beta = cluster.member("beta", true).await;
    let gamma = cluster.member("gamma", true).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let total = 60 + i;
        let handle = alpha
            .spawn(Counter::new(total, cluster.log(&format!("t{i}")), 20))
            .await
            .expect("spawn");
        tasks.push((handle.id(), total));
    }
    wait_for(
        "beta and gamma get work",
        Duration::from_secs(10),
        || async { cluster.owned_by("beta").await > 0 && cluster.owned_by("gamma").await > 0 },
    )
    .await;
    cluster.all_finish(&tasks, Duration::from_secs(60)).await;
    let balanced = alpha
        .cluster_events()
        .iter()
        .filter(|e| matches!(e.kind, ClusterEventKind::Balanced { .. }))
        .count();
    assert!(balanced >= 4, "alpha moved only {balanced} tasks");
    // Each task's own log: every step once per run, in order, whatever host ran it.
    for (i, (_, total)) in tasks.iter().enumerate() {
        let log = cosmic_tests::counter::read_log(Path::new(&cluster.log(&format!("t{i}"))));
        let mut expected = 0;
        for line in &log {
            // A resumed run repeats the steps after its checkpoint: never skips one.
            assert!(
                line.step <= expected,
                "task t{i} skipped from {expected} to {}",
                line.step
            );
            expected = line.step + 1;
        }
        assert_eq!(expected, *total, "task t{i} ran to its end");
    }
    for rt in [alpha, beta, gamma] {
        rt.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_move_goes_through_the_coordinator_and_the_handle_follows() {
    let cluster = Cluster::new("cluster-move");
    let alpha = cluster.member("alpha", false).await;
    let beta = cluster.member("beta", false).await;
    let handle = alpha
        .spawn(Counter::new(80, cluster.log("moved"), 10))
        .await
        .expect("spawn");
    let task = handle.id();
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.migrate_to("beta").await.expect("the move");
    assert_eq!(handle.status(), TaskStatus::Moved("beta".into()));
    wait_for("beta runs it", Duration::from_secs(5), || async {
        beta.tasks()
            .iter()
            .any(|(t, s)| *t == task && *s == TaskStatus::Running)
    })
    .await;
    assert_eq!(
        handle.join().await.expect("joined through beta"),
        expected_digest(80)
    );
    let log = cosmic_tests::counter::read_log(Path::new(&cluster.log("moved")));
    assert!(log.iter().any(|l| l.host == "alpha") && log.iter().any(|l| l.host == "beta"));
    // A move to a host that is not a member is refused, and the task runs on.
    let other = alpha.spawn(Counter::new(40, "", 10)).await.expect("spawn");
    assert!(other.migrate_to("nosuchhost").await.is_err());
    assert_eq!(other.join().await.expect("runs on"), expected_digest(40));
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_leaves_hands_its_tasks_over_and_ends_its_lease_at_once() {
    let cluster = Cluster::new("cluster-leave");
    let alpha = cluster.member("alpha", false).await;
    let beta = cluster.member("beta", false).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let handle = alpha
            .spawn(Counter::new(100 + i, "", 15))
            .await
            .expect("spawn");
        tasks.push((handle.id(), 100 + i));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = alpha.leave(Duration::from_secs(5)).await.expect("leave");
    assert_eq!(report.moved.len(), 6, "{report:?}");
    assert!(report.moved.iter().all(|(_, to)| to == "beta"));
    let members = cluster.coordinator.members().await.expect("members");
    assert!(
        members.iter().all(|m| m.record.name != "alpha"),
        "alpha's lease ended when it left"
    );
    cluster.all_finish(&tasks, Duration::from_secs(30)).await;
    beta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_lease_ends_stops_its_tasks_and_another_takes_them_over() {
    let cluster = Cluster::new("cluster-fence");
    let alpha = cluster.member("alpha", false).await;
    let handle = alpha
        .spawn(Counter::new(200, cluster.log("fenced"), 10))
        .await
        .expect("spawn");
    let task = handle.id();
    let beta = cluster.member("beta", false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The coordinator ends alpha's lease behind its back (as a partition long enough would),
    // and another process takes the name at once (a newer incarnation that runs nothing), so
    // alpha cannot come back under it: everything alpha owned is orphaned, and beta, the only
    // other member that can run it, takes it over.
    let member = cluster
        .coordinator
        .members()
        .await
        .expect("members")
        .into_iter()
        .find(|m| m.record.name == "alpha")
        .expect("alpha is a member");
    let lease = cosmic::cluster::Lease {
        host: "alpha".into(),
        incarnation: member.incarnation,
        ttl: LEASE,
    };
    cluster.coordinator.leave(&lease).await.expect("revoke");
    let mut usurper = member.record.clone();
    usurper.types.clear();
    cluster
        .coordinator
        .join(&usurper, Duration::from_secs(60))
        .await
        .expect("the name is free the moment the lease ended");
    wait_for("alpha stops the task", Duration::from_secs(5), || async {
        handle.status() == TaskStatus::Stopped
    })
    .await;
    wait_for("beta took it over", Duration::from_secs(10), || async {
        beta.tasks().iter().any(|(t, _)| *t == task)
    })
    .await;
    cluster
        .all_finish(&[(task, 200)], Duration::from_secs(30))
        .await;
    // Never on two hosts at once: after the last alpha step, only beta.
    let log = cosmic_tests::counter::read_log(Path::new(&cluster.log("fenced")));
    let first_beta = log
        .iter()
        .position(|l| l.host == "beta")
        .expect("beta ran it");
    assert!(
        log[first_beta..].iter().all(|l| l.host == "beta"),
        "alpha ran after beta took over"
    );
    alpha.shutdown().await;
    beta.shutdown().await;
}

/// A task type only some hosts know.
#[derive(cosmic::Migratable, Debug, Clone, PartialEq)]
struct Rare {
    left: u64,
}

#[cosmic::async_trait]
impl cosmic::Task for Rare {
    type Output = u64;

    async fn step(
        &mut self,
        _cx: &mut cosmic::StepContext,
    ) -> Result<cosmic::Step<u64>, cosmic::TaskError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.left -= 1;
        Ok(if self.left == 0 {
            cosmic::Step::Done(7)
        } else {
            cosmic::Step::Continue
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_that_cannot_run_a_task_leaves_it_to_one_that_can() {
    let cluster = Cluster::new("cluster-unknown");
    let alpha = cluster
        .member_with("alpha", false, |b| b.register::<Rare>())
        .await;
    let handle = alpha.spawn(Rare { left: 150 }).await.expect("spawn");
    let task = handle.id();
    let beta = cluster.member("beta", false).await; // knows only Counter
    let gamma = cluster
        .member_with("gamma", false, |b| b.register::<Rare>())
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = alpha.leave(Duration::from_millis(1)).await.expect("leave");
    assert!(
        report.moved.iter().all(|(_, to)| to == "gamma"),
        "{report:?}"
    );
    wait_for("gamma runs it", Duration::from_secs(10), || async {
        gamma.tasks().iter().any(|(t, _)| *t == task)
    })
    .await;
    assert!(
        beta.tasks().iter().all(|(t, _)| *t != task),
        "beta cannot run Rare"
    );
    let view = cluster.view();
    wait_for("it finishes", Duration::from_secs(20), || async {
        view.output::<u64>(task).await.expect("view") == Some(7)
    })
    .await;
    beta.shutdown().await;
    gamma.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_nobody_trusted_gets_no_tasks() {
    let cluster = Cluster::new("cluster-trust");
    let alpha = cluster.member("alpha", true).await;
    // Mallory joins with a key pair of its own, never trusted by the operator.
    let mallory = Runtime::builder()
        .host("mallory")
        .store(FileStore::open_shared(cluster.dir.0.join("store")).expect("store"))
        .checkpoint(Policy::every_steps(5))
        .listen("127.0.0.1:0")
        .cluster_key(cluster.key.clone())
        .host_key(cosmic::HostKey::generate().expect("key"))
        .register::<Counter>()
        .cluster(cluster.config(true))
        .build()
        .await
        .expect("mallory starts");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push((
            alpha
                .spawn(Counter::new(40, "", 20))
                .await
                .expect("spawn")
                .id(),
            40,
        ));
    }
    // The balancer would give mallory half, but the move is refused: its key is not trusted.
    cluster.all_finish(&tasks, Duration::from_secs(30)).await;
    assert!(
        mallory.tasks().is_empty(),
        "mallory got {:?}",
        mallory.tasks()
    );
    alpha.shutdown().await;
    mallory.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_finished_task_removes_its_entry_and_its_outcome_record() {
    let cluster = Cluster::new("cluster-forget");
    let alpha = cluster.member("alpha", false).await;
    let handle = alpha.spawn(Counter::new(10, "", 0)).await.expect("spawn");
    let task = handle.id();
    assert_eq!(handle.join().await.expect("joined"), expected_digest(10));
    let entry = cluster.coordinator.task(task).await.expect("the entry");
    let Some(Owner::Finished { outcome }) = entry.map(|e| e.owner) else {
        panic!("not finished in the coordinator");
    };
    let store = FileStore::open_shared(cluster.dir.0.join("store")).expect("store");
    assert!(cosmic::CheckpointStore::get(&store, &outcome)
        .await
        .expect("read")
        .is_some());
    handle.forget().await.expect("forget");
    assert!(cluster
        .coordinator
        .task(task)
        .await
        .expect("read")
        .is_none());
    assert!(cosmic::CheckpointStore::get(&store, &outcome)
        .await
        .expect("read")
        .is_none());
    assert!(alpha.handle::<u64>(task).is_err());
    alpha.shutdown().await;
}

/// A member whose finished tasks' outcomes are kept `ttl`.
async fn member_keeping_outcomes(cluster: &Cluster, name: &str, ttl: Duration) -> Runtime {
    cluster
        .member_with(name, false, |b| {
            b.register::<Counter>()
                .retention(cosmic::runtime::Retention::default().outcome_ttl(ttl))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_is_forgotten_once_its_outcome_outlived_its_time_to_live() {
    let cluster = Cluster::new("cluster-ttl");
    let alpha = member_keeping_outcomes(&cluster, "alpha", Duration::from_millis(400)).await;
    let handle = alpha.spawn(Counter::new(10, "", 0)).await.expect("spawn");
    let task = handle.id();
    assert_eq!(handle.join().await.expect("joined"), expected_digest(10));
    let Some(Owner::Finished { outcome }) = cluster
        .coordinator
        .task(task)
        .await
        .expect("read")
        .map(|e| e.owner)
    else {
        panic!("not finished in the coordinator");
    };
    // Kept at first: the outcome can be read by anyone for its time to live.
    let view = cluster.view();
    assert_eq!(
        view.output::<u64>(task).await.expect("view"),
        Some(expected_digest(10))
    );
    let store = FileStore::open_shared(cluster.dir.0.join("store")).expect("store");
    // The entry is forgotten first, then its outcome record removed, then the runtime's handle:
    // wait for all three (a check between two of the steps saw the record still there once).
    wait_for(
        "the expired task, its outcome record and its handle are forgotten",
        Duration::from_secs(10),
        || async {
            let entry_gone = cluster
                .coordinator
                .task(task)
                .await
                .expect("read")
                .is_none();
            let record_gone = cosmic::CheckpointStore::get(&store, &outcome)
                .await
                .expect("read")
                .is_none();
            entry_gone && record_gone && alpha.handle::<u64>(task).is_err()
        },
    )
    .await;
    alpha.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcomes_of_a_host_that_left_are_forgotten_by_the_others() {
    let cluster = Cluster::new("cluster-ttl-left");
    let alpha = cluster.member("alpha", false).await;
    let beta = member_keeping_outcomes(&cluster, "beta", Duration::from_millis(300)).await;
    let handle = alpha.spawn(Counter::new(10, "", 0)).await.expect("spawn");
    let task = handle.id();
    assert_eq!(handle.join().await.expect("joined"), expected_digest(10));
    // Alpha keeps outcomes for a week (the default); beta forgets another host's outcomes
    // only once that host is gone.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        cluster
            .coordinator
            .task(task)
            .await
            .expect("read")
            .is_some(),
        "beta leaves a live writer's outcome alone"
    );
    alpha.leave(Duration::from_secs(5)).await.expect("leave");
    wait_for(
        "the outcome of a host that left is forgotten",
        Duration::from_secs(10),
        || async {
            cluster
                .coordinator
                .task(task)
                .await
                .expect("read")
                .is_none()
        },
    )
    .await;
    beta.shutdown().await;
}
