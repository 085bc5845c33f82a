//! Races between a member's scan and its own tasks, in one process (members are runtimes
//! agreeing through a folder coordinator, scanning every 5 ms so that a scan is nearly always
//! in flight). A scan reads the coordinator's tasks, then what runs on its host; a task the
//! coordinator names this host's owner of but that does not run here is taken for one moved
//! here, and started. Two tasks look like that without being it:
//! - one being spawned here: in the coordinator, not yet running;
//! - one that left between the two reads: moved away, ended, or lost.
//!
//! Starting either runs a second copy of it (on this host, or beside its new owner). The
//! leases are long, so nothing here is ever taken over: each step of each task must run
//! exactly once, in order, which the tasks' own step logs tell.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmic::cluster::{BalanceConfig, ClusterConfig, ClusterView, Coordinator, FolderCoordinator};
use cosmic::{ClusterKey, FileStore, Policy, Runtime, TaskId, TaskStatus};
use cosmic_tests::counter::{expected_digest, TempDir};
use cosmic_tests::identity::host_key;
use cosmic_tests::timed::{read_timed_log, TimedCounter};

async fn member(dir: &Path, coordinator: &Arc<FolderCoordinator>, name: &str) -> Runtime {
    coordinator
        .trust(name, host_key(name).public_key())
        .await
        .expect("trust");
    Runtime::builder()
        .host(name)
        .store(FileStore::open_shared(dir.join("store")).expect("store"))
        .checkpoint(Policy::every_steps(5))
        .listen("127.0.0.1:0")
        .cluster_key(ClusterKey::from_bytes(&[7; 32]).expect("a key"))
        .host_key(host_key(name))
        .register::<TimedCounter>()
        .cluster(
            ClusterConfig::shared(coordinator.clone())
                .lease_ttl(Duration::from_secs(30))
                .scan_every(Duration::from_millis(5))
                .balance(BalanceConfig {
                    enabled: false,
                    ..BalanceConfig::default()
                }),
        )
        .build()
        .await
        .expect("a member starts")
}

/// Each step exactly once, in order, and the right result.
async fn ran_once(view: &ClusterView, task: TaskId, total: u64, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while view.output::<u64>(task).await.expect("view").is_none() {
        assert!(Instant::now() < deadline, "task {task} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        view.output::<u64>(task).await.expect("view"),
        Some(expected_digest(total))
    );
    let steps: Vec<u64> = read_timed_log(log).iter().map(|l| l.step).collect();
    assert_eq!(
        steps,
        (0..total).collect::<Vec<_>>(),
        "task {task} ran some steps twice (log {})",
        log.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_spawned_while_its_host_scans_runs_once() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "races-spawn");
    let coordinator = Arc::new(FolderCoordinator::open(dir.path().join("c")).expect("open"));
    let alpha = member(dir.path(), &coordinator, "alpha").await;
    let mut tasks = Vec::new();
    for n in 0..20 {
        let log = dir.path().join(format!("t{n}.log"));
        let handle = alpha
            .spawn(TimedCounter::new(30, log.display().to_string(), 5))
            .await
            .expect("spawn");
        tasks.push((handle.id(), log));
    }
    let view = ClusterView::new(
        coordinator.clone(),
        Arc::new(FileStore::open_shared(dir.path().join("store")).expect("store")),
    );
    for (task, log) in &tasks {
        ran_once(&view, *task, 30, log).await;
    }
    alpha.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_moved_away_while_its_old_host_scans_runs_only_at_its_new_host() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "races-move");
    let coordinator = Arc::new(FolderCoordinator::open(dir.path().join("c")).expect("open"));
    // Many finished tasks read after the moved one, so that a scan's read of every task goes
    // on for a while after it read the moved task's entry: the window widens.
    let keeper = coordinator
        .join(
            &cosmic::cluster::conformance::record("keeper"),
            Duration::from_secs(60),
        )
        .await
        .expect("join");
    for n in 0..100 {
        // Read after the moved task (tasks are read in id order).
        let id = TaskId::from_raw(u64::MAX - n);
        let first = cosmic::cluster::CheckpointRef {
            key: format!("cluster/tasks/{id}/keeper/1/ckpt-0-0.portable"),
            steps: 0,
        };
        let token = coordinator
            .create(&keeper, id, "Finished", "u64", first)
            .await
            .expect("create");
        coordinator
            .finish(
                &keeper,
                id,
                token,
                &format!("cluster/tasks/{id}/keeper/1/outcome"),
            )
            .await
            .expect("finish");
    }
    coordinator.leave(&keeper).await.expect("leave");
    let hosts = [
        member(dir.path(), &coordinator, "alpha").await,
        member(dir.path(), &coordinator, "beta").await,
    ];
    let log = dir.path().join("moved.log");
    let total = 300;
    let task = hosts[0]
        .spawn(TimedCounter::new(total, log.display().to_string(), 10))
        .await
        .expect("spawn")
        .id();
    for n in 0..12 {
        let (from, to) = (&hosts[n % 2], &hosts[(n + 1) % 2]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !from
            .tasks()
            .iter()
            .any(|(t, s)| *t == task && *s == TaskStatus::Running)
        {
            assert!(
                Instant::now() < deadline,
                "move {n}: {} runs it",
                from.host()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let handle = from.handle::<u64>(task).expect("a handle");
        handle.migrate_to(to.host()).await.expect("the move");
    }
    let view = ClusterView::new(
        coordinator.clone(),
        Arc::new(FileStore::open_shared(dir.path().join("store")).expect("store")),
    );
    ran_once(&view, task, total, &log).await;
    for host in hosts {
        host.shutdown().await;
    }
}
