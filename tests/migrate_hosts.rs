//! Migration between hosts, in one process: several runtimes, each a host with its own file
//! store, talking over real TCP on 127.0.0.1 through the secure channel. Covers moves and
//! joins across chains of hosts, every refusal, drains, moves asked for by a step, and faults
//! (dropped connections, stalls, corrupted images) injected at each step of the hand-off. Each
//! test checks the task's own step log: every step ran exactly once, on one host at a time.
//!
//! Crashes (SIGKILL) of whole hosts are in `migrate_processes.rs`.

use std::time::Duration;

use cosmic::checkpoint::FileStore;
use cosmic::runtime::migrate::{FaultAction, FaultPlan, FaultPoint};
use cosmic::runtime::{MigrateError, TaskLocation};
use cosmic::transport::protocol::Refusal;
use cosmic::{ClusterKey, Policy, Runtime, TaskStatus};
use cosmic_tests::counter::{check_log, expected_digest, read_log, Counter, TempDir};
use cosmic_tests::identity;

const KEY: &[u8] = b"migrate-hosts test cluster key, 32+ bytes long";

fn key() -> ClusterKey {
    ClusterKey::from_bytes(KEY).unwrap()
}

struct Host {
    rt: Runtime,
    dir: TempDir,
}

async fn host(name: &str, configure: impl FnOnce(cosmic::Builder) -> cosmic::Builder) -> Host {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), name);
    let builder = Runtime::builder()
        .host(name)
        .store(FileStore::open(dir.path()).unwrap())
        .checkpoint(Policy::every_steps(10))
        .listen("127.0.0.1:0")
        .cluster_key(key())
        .migration_timeout(Duration::from_secs(5))
        .register::<Counter>();
    let rt = configure(builder).build().await.unwrap();
    Host { rt, dir }
}

fn connect(hosts: &[&Host]) {
    for a in hosts {
        for b in hosts {
            if a.rt.host() != b.rt.host() {
                a.rt.add_peer(b.rt.host(), b.rt.local_addr().unwrap())
                    .unwrap();
                // Each host made its own key pair at build: exchange the public keys, as an
                // operator would configure them.
                identity::introduce(&a.rt, &b.rt);
            }
        }
    }
}

async fn wait_for_steps(handle: &cosmic::TaskHandle<u64>, steps: u64) {
    while handle.steps_completed() < steps {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn outcome_files(host: &Host) -> usize {
    walk(host.dir.path())
        .into_iter()
        .filter(|p| p.ends_with("outcome"))
        .count()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_task_finishes_on_the_peer_and_joins_at_home() {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", |b| b).await;
    connect(&[&alpha, &beta]);
    let log = alpha.dir.path().join("steps.log");
    let handle = alpha
        .rt
        .spawn(Counter::new(300, log.to_str().unwrap(), 1))
        .await
        .unwrap();
    wait_for_steps(&handle, 40).await;
    handle.migrate_to("beta").await.unwrap();
    assert_eq!(handle.status(), TaskStatus::Moved("beta".into()));
    // Control goes through the host the task is on; here the handle says where that is.
    let error = handle.pause().await.unwrap_err();
    assert!(
        matches!(error, cosmic::runtime::ControlError::Moved { ref host, .. } if host == "beta"),
        "{error}"
    );
    // Moving it again through this handle: it is not here, and the error says where it is.
    let error = handle.migrate_to("alpha").await.unwrap_err();
    assert!(
        matches!(error, MigrateError::Moved { ref host, .. } if host == "beta"),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("moved to `beta`"), "{text}");
    let location = handle.locate().await.unwrap();
    assert_eq!(location.host, "beta");
    assert_eq!(location.epoch, 1);
    assert_eq!(location.via, vec!["alpha".to_owned()]);
    assert_eq!(handle.join().await.unwrap(), expected_digest(300));
    let runs = check_log(&read_log(&log), 300, false).unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[0].0.as_str(), runs[1].0.as_str()), ("alpha", "beta"));
    // Delivered once: the outcome is recorded on beta only; alpha kept no checkpoint.
    assert_eq!(outcome_files(&beta), 1);
    assert_eq!(outcome_files(&alpha), 0);
    let location = alpha.rt.locate(handle.id()).await.unwrap();
    assert_eq!(location.status, TaskStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_follow_a_task_around_a_cycle_of_hosts() {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", |b| b).await;
    let gamma = host("gamma", |b| b).await;
    connect(&[&alpha, &beta, &gamma]);
    let log = alpha.dir.path().join("steps.log");
    let handle = alpha
        .rt
        .spawn(Counter::new(400, log.to_str().unwrap(), 1))
        .await
        .unwrap();
    let id = handle.id();
    wait_for_steps(&handle, 20).await;
    handle.migrate_to("beta").await.unwrap();
    let on_beta = beta.rt.handle::<u64>(id).unwrap();
    wait_for_steps(&on_beta, 60).await;
    on_beta.migrate_to("gamma").await.unwrap();
    let on_gamma = gamma.rt.handle::<u64>(id).unwrap();
    wait_for_steps(&on_gamma, 100).await;
    // From alpha, the task is two hops away.
    let location: TaskLocation = handle.locate().await.unwrap();
    assert_eq!(location.host, "gamma");
    assert_eq!(location.via, vec!["alpha".to_owned(), "beta".to_owned()]);
    on_gamma.migrate_to("alpha").await.unwrap();
    let back = alpha.rt.handle::<u64>(id).unwrap();
    assert_eq!(back.status(), TaskStatus::Running);
    // The first handle (a forwarding entry) follows alpha -> beta -> gamma -> alpha.
    let from_beta = beta.rt.locate(id).await.unwrap();
    assert_eq!(from_beta.host, "alpha");
    assert_eq!(from_beta.epoch, 3);
    assert_eq!(handle.join().await.unwrap(), expected_digest(400));
    assert_eq!(back.join().await.unwrap(), expected_digest(400));
    let runs = check_log(&read_log(&log), 400, false).unwrap();
    let hosts: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(hosts, ["alpha", "beta", "gamma", "alpha"]);
    assert_eq!(outcome_files(&alpha), 1);
    assert_eq!(outcome_files(&beta) + outcome_files(&gamma), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_can_ask_to_move_its_task() {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", |b| b).await;
    connect(&[&alpha, &beta]);
    let log = alpha.dir.path().join("steps.log");
    let mut counter = Counter::new(120, log.to_str().unwrap(), 0);
    counter.move_at = 50;
    counter.move_to = "beta".into();
    let handle = alpha.rt.spawn(counter).await.unwrap();
    assert_eq!(handle.join().await.unwrap(), expected_digest(120));
    let runs = check_log(&read_log(&log), 120, false).unwrap();
    assert_eq!(
        runs,
        vec![("alpha".to_owned(), 0, 49), ("beta".to_owned(), 50, 119)]
    );
}

/// Offers `counter` from a fresh alpha to a beta configured by `beta_config`; the move must be
/// refused, and the task must finish on alpha.
async fn refused(
    counter: impl cosmic::Task<Output = u64>,
    beta_config: impl FnOnce(cosmic::Builder) -> cosmic::Builder,
) -> Refusal {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", beta_config).await;
    connect(&[&alpha, &beta]);
    let handle = alpha.rt.spawn(counter).await.unwrap();
    let error = handle.migrate_to("beta").await.unwrap_err();
    assert_eq!(handle.status(), TaskStatus::Running);
    handle.join().await.unwrap();
    assert!(beta.rt.tasks().is_empty(), "{:?}", beta.rt.tasks());
    error
        .refusal()
        .cloned()
        .unwrap_or_else(|| panic!("not a refusal: {error}"))
}

mod v2 {
    use cosmic::prelude::*;

    /// Same wire name as `Ticker` on the other host, newer version.
    #[derive(Migratable)]
    #[migratable(name = "tests::Ticker", version = 2)]
    pub struct Ticker {
        pub left: u64,
        #[migratable(since = 2, default)]
        pub extra: u64,
    }

    #[async_trait]
    impl Task for Ticker {
        type Output = u64;
        async fn step(&mut self, _: &mut StepContext) -> Result<Step<u64>, TaskError> {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            self.left = self.left.saturating_sub(1);
            Ok(if self.left == 0 {
                Step::Done(7)
            } else {
                Step::Continue
            })
        }
    }
}

mod v1 {
    use cosmic::prelude::*;

    #[derive(Migratable)]
    #[migratable(name = "tests::Ticker")]
    pub struct Ticker {
        pub left: u64,
    }

    #[async_trait]
    impl Task for Ticker {
        type Output = u64;
        async fn step(&mut self, _: &mut StepContext) -> Result<Step<u64>, TaskError> {
            self.left = self.left.saturating_sub(1);
            Ok(if self.left == 0 {
                Step::Done(7)
            } else {
                Step::Continue
            })
        }
    }
}

mod other_shape {
    use cosmic::prelude::*;

    /// Same wire name and version as `v2::Ticker`, different fields.
    #[derive(Migratable)]
    #[migratable(name = "tests::Ticker", version = 2)]
    pub struct Ticker {
        pub left: u64,
        pub extra: String,
    }

    #[async_trait]
    impl Task for Ticker {
        type Output = u64;
        async fn step(&mut self, _: &mut StepContext) -> Result<Step<u64>, TaskError> {
            Ok(Step::Done(0))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_refuse_with_a_reason_and_the_task_runs_on() {
    let ticker = || v2::Ticker {
        left: 200,
        extra: 0,
    };
    // Beta knows no such type.
    let refusal = refused(ticker(), |b| b).await;
    assert!(
        matches!(refusal, Refusal::UnknownType { ref type_name } if type_name == "tests::Ticker"),
        "{refusal}"
    );
    // Beta knows an older version.
    let refusal = refused(ticker(), |b| b.register::<v1::Ticker>()).await;
    assert!(
        matches!(
            refusal,
            Refusal::VersionTooNew {
                offered: 2,
                known: 1,
                ..
            }
        ),
        "{refusal}"
    );
    // Beta's version 2 has another shape.
    let refusal = refused(ticker(), |b| b.register::<other_shape::Ticker>()).await;
    assert!(
        matches!(refusal, Refusal::SchemaMismatch { .. }),
        "{refusal}"
    );
    // Beta is full.
    let refusal = refused(ticker(), |b| b.register::<v2::Ticker>().max_tasks(0)).await;
    assert!(
        matches!(refusal, Refusal::NoCapacity { running: 0 }),
        "{refusal}"
    );
    // The image is larger than beta takes: refused before a byte of it moves.
    let mut big = Counter::new(200, "", 1);
    big.ballast = vec![7; 1 << 20];
    let refusal = refused(big, |b| b.max_image_size(64 << 10)).await;
    assert!(
        matches!(refusal, Refusal::TooLarge { limit: 65536, .. }),
        "{refusal}"
    );
    println!("last refusal reads: {refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_another_key_gets_nothing() {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", |b| {
        b.cluster_key(ClusterKey::from_bytes(b"a different key, also 32 bytes or more").unwrap())
    })
    .await;
    connect(&[&alpha, &beta]);
    let handle = alpha.rt.spawn(Counter::new(100, "", 1)).await.unwrap();
    let error = handle.migrate_to("beta").await.unwrap_err();
    assert!(matches!(error, MigrateError::Connect { .. }), "{error}");
    // Not a network failure: the handshake was refused, and the keys may differ.
    let text = error.to_string();
    assert!(
        text.contains("refused the secure handshake") && text.contains("cluster keys may differ"),
        "{text}"
    );
    assert!(!text.contains("failed to reach"), "{text}");
    cosmic_tests::chain::assert_no_repeats(&error);
    let whole = cosmic_tests::chain::text(&error);
    assert!(whole.contains("does not hold this cluster key"), "{whole}");
    println!("a move to a host with another key reads: {whole}");
    assert_eq!(handle.join().await.unwrap(), expected_digest(100));
    assert!(beta.rt.tasks().is_empty());
    let unknown = handle.migrate_to("nowhere").await.unwrap_err();
    assert!(
        matches!(unknown, MigrateError::Finished { .. }),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_handle_moves_a_task_that_came_back() {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", |b| b).await;
    connect(&[&alpha, &beta]);
    let handle = alpha.rt.spawn(Counter::new(400, "", 1)).await.unwrap();
    let id = handle.id();
    wait_for_steps(&handle, 10).await;
    handle.migrate_to("beta").await.unwrap();
    let on_beta = beta.rt.handle::<u64>(id).unwrap();
    wait_for_steps(&on_beta, 30).await;
    on_beta.migrate_to("alpha").await.unwrap();
    // Back on alpha: the first handle moves it again, from where it is now.
    handle.migrate_to("beta").await.unwrap();
    assert_eq!(beta.rt.locate(id).await.unwrap().host, "beta");
    assert_eq!(handle.join().await.unwrap(), expected_digest(400));
}

/// Asks, at its first step, to move to `to`; at its second step returns what
/// [`StepContext::move_failed`] said, or where it runs if the move happened.
#[derive(cosmic::Migratable)]
struct AsksToMove {
    to: String,
    steps: u64,
}

#[cosmic::async_trait]
impl cosmic::Task for AsksToMove {
    type Output = String;

    async fn step(
        &mut self,
        cx: &mut cosmic::StepContext,
    ) -> Result<cosmic::Step<String>, cosmic::TaskError> {
        self.steps += 1;
        if self.steps == 1 {
            cx.request_move(self.to.clone());
            return Ok(cosmic::Step::Continue);
        }
        Ok(cosmic::Step::Done(match cx.move_failed() {
            Some(error) => format!("failed: {}", cosmic::ErrorChain(error)),
            None => format!("runs on {}", cx.host()),
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_learns_why_the_move_it_asked_for_failed() {
    let alpha = host("alpha", |b| b.register::<AsksToMove>()).await;
    let beta = host("beta", |b| b.register::<AsksToMove>()).await;
    // Gamma does not know the task's type: it refuses it.
    let gamma = host("gamma", |b| b).await;
    connect(&[&alpha, &beta, &gamma]);
    let unknown = alpha
        .rt
        .spawn(AsksToMove {
            to: "nosuchhost".into(),
            steps: 0,
        })
        .await
        .unwrap();
    let said = unknown.join().await.unwrap();
    assert!(
        said.starts_with("failed: ") && said.contains("no peer named `nosuchhost`"),
        "{said}"
    );
    let refused = alpha
        .rt
        .spawn(AsksToMove {
            to: "gamma".into(),
            steps: 0,
        })
        .await
        .unwrap();
    let said = refused.join().await.unwrap();
    assert!(
        said.starts_with("failed: ")
            && said.contains("`gamma` refused")
            && said.contains("not registered"),
        "{said}"
    );
    let moved = alpha
        .rt
        .spawn(AsksToMove {
            to: "beta".into(),
            steps: 0,
        })
        .await
        .unwrap();
    assert_eq!(moved.join().await.unwrap(), "runs on beta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_what_fits_and_reports_the_rest() {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", |b| b.max_tasks(12)).await;
    connect(&[&alpha, &beta]);
    let mut handles = Vec::new();
    for _ in 0..20 {
        handles.push(alpha.rt.spawn(Counter::new(150, "", 2)).await.unwrap());
    }
    let report = alpha.rt.migrate_to("beta").await.unwrap();
    assert_eq!(
        report.moved.len() + report.stayed.len() + report.ended.len(),
        20
    );
    assert_eq!(report.moved.len(), 12, "{report:?}");
    for (_, error) in &report.stayed {
        assert!(
            matches!(error.refusal(), Some(Refusal::NoCapacity { .. })),
            "{error}"
        );
    }
    for handle in &handles {
        assert_eq!(handle.join().await.unwrap(), expected_digest(150));
    }
    let unknown = alpha.rt.migrate_to("nowhere").await.unwrap_err();
    assert!(
        matches!(unknown, MigrateError::UnknownPeer { .. }),
        "{unknown}"
    );
}

/// Injects `plan` on one side, moves a counter, and checks that it ran every step exactly
/// once, on alpha and then (if the move committed) on beta.
async fn move_with_fault(plan: FaultPlan) {
    let on_source = plan.point.on_source();
    let timeout = Duration::from_millis(400);
    let alpha = host("alpha", |b| {
        let b = b.migration_timeout(timeout);
        if on_source {
            b.inject_fault(plan)
        } else {
            b
        }
    })
    .await;
    let beta = host("beta", |b| {
        let b = b.migration_timeout(timeout);
        if on_source {
            b
        } else {
            b.inject_fault(plan)
        }
    })
    .await;
    connect(&[&alpha, &beta]);
    let log = alpha.dir.path().join("steps.log");
    let mut counter = Counter::new(150, log.to_str().unwrap(), 1);
    counter.ballast = vec![1; 256 << 10];
    let handle = alpha.rt.spawn(counter).await.unwrap();
    wait_for_steps(&handle, 20).await;
    let result = handle.migrate_to("beta").await;
    let committed = matches!(
        plan.point,
        FaultPoint::SourceAfterCommit | FaultPoint::DestAfterCommit | FaultPoint::DestAfterStart
    ) && plan.action == FaultAction::Drop;
    match &result {
        Ok(()) => assert!(
            committed,
            "{plan}: moved, but the fault came before the commit"
        ),
        Err(error) => assert!(!committed, "{plan}: {error}"),
    }
    assert_eq!(handle.join().await.unwrap(), expected_digest(150), "{plan}");
    let runs = check_log(&read_log(&log), 150, false).unwrap_or_else(|e| panic!("{plan}: {e}"));
    let hosts: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    let expected: &[&str] = if committed {
        &["alpha", "beta"]
    } else {
        &["alpha"]
    };
    assert_eq!(hosts, expected, "{plan}");
    // Nothing left arriving or running twice: exactly one host recorded the outcome.
    assert_eq!(outcome_files(&alpha) + outcome_files(&beta), 1, "{plan}");
    println!(
        "{plan}: {}",
        result.map_or_else(|e| e.to_string(), |()| "moved".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_at_every_step_lose_nothing_and_run_nothing_twice() {
    for point in FaultPoint::ALL {
        if point == FaultPoint::SourceBeforeOffer {
            continue; // nothing is on the wire yet; covered by `corrupted` below
        }
        move_with_fault(FaultPlan {
            point,
            action: FaultAction::Drop,
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_times_out_and_the_task_stays() {
    for point in [
        FaultPoint::DestAfterOffer,
        FaultPoint::DestMidTransfer,
        FaultPoint::DestAfterPrepare,
    ] {
        move_with_fault(FaultPlan {
            point,
            action: FaultAction::Stall,
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_image_is_refused_by_the_peer() {
    move_with_fault(FaultPlan {
        point: FaultPoint::SourceBeforeOffer,
        action: FaultAction::Corrupt,
    })
    .await;
}

/// A file store whose puts of commit records (`*.moved`) fail: either after writing the
/// record (the error is unclear: the record landed) or before (it did not).
#[derive(Debug)]
struct FailingCommits {
    inner: FileStore,
    after_writing: bool,
}

#[cosmic::async_trait]
impl cosmic::CheckpointStore for FailingCommits {
    async fn put(
        &self,
        key: &str,
        value: bytes::Bytes,
        mode: cosmic::checkpoint::PutMode,
    ) -> Result<(), cosmic::checkpoint::StoreError> {
        if !key.ends_with(".moved") {
            return self.inner.put(key, value, mode).await;
        }
        if self.after_writing {
            self.inner.put(key, value, mode).await?;
        }
        Err(cosmic::checkpoint::StoreError::Io {
            operation: "write",
            key: key.to_owned(),
            path: "injected".into(),
            source: std::io::Error::other("injected failure"),
        })
    }

    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, cosmic::checkpoint::StoreError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, cosmic::checkpoint::StoreError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), cosmic::checkpoint::StoreError> {
        self.inner.delete(key).await
    }
}

/// The commit record decides, not the error of its write: a write that failed after the
/// record landed is a committed move; one that failed before is an abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_record_decides_even_when_its_write_reports_an_error() {
    for after_writing in [true, false] {
        let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "alpha-failing");
        let alpha = Runtime::builder()
            .host("alpha")
            .store(FailingCommits {
                inner: FileStore::open(dir.path()).unwrap(),
                after_writing,
            })
            .checkpoint(Policy::every_steps(10))
            .listen("127.0.0.1:0")
            .cluster_key(key())
            .build()
            .await
            .unwrap();
        let beta = host("beta", |b| b).await;
        alpha
            .add_peer("beta", beta.rt.local_addr().unwrap())
            .unwrap();
        beta.rt
            .add_peer("alpha", alpha.local_addr().unwrap())
            .unwrap();
        identity::introduce(&alpha, &beta.rt);
        let log = dir.path().join("steps.log");
        let handle = alpha
            .spawn(Counter::new(120, log.to_str().unwrap(), 1))
            .await
            .unwrap();
        wait_for_steps(&handle, 20).await;
        let result = handle.migrate_to("beta").await;
        assert_eq!(result.is_ok(), after_writing, "{result:?}");
        assert_eq!(handle.join().await.unwrap(), expected_digest(120));
        let runs = check_log(&read_log(&log), 120, false).unwrap();
        let hosts: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
        let expected: &[&str] = if after_writing {
            &["alpha", "beta"]
        } else {
            &["alpha"]
        };
        assert_eq!(hosts, expected);
    }
}

/// A task sent straight back to the host it just left either moves back or is refused while
/// that host still tidies up after it; either way every step runs once, on one host at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_bounced_straight_back_runs_every_step_once() {
    let alpha = host("alpha", |b| b).await;
    let beta = host("beta", |b| b).await;
    connect(&[&alpha, &beta]);
    let log = alpha.dir.path().join("steps.log");
    let first = alpha
        .rt
        .spawn(Counter::new(300, log.to_str().unwrap(), 1))
        .await
        .unwrap();
    let id = first.id();
    let mut refused = 0;
    for _ in 0..5 {
        for (from, to) in [(&alpha, "beta"), (&beta, "alpha")] {
            let handle = from.rt.handle::<u64>(id).unwrap();
            while let Err(error) = handle.migrate_to(to).await {
                assert!(error.refusal().is_some(), "{error}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    println!("refused while the other host was still tidying up: {refused} times");
    assert_eq!(first.join().await.unwrap(), expected_digest(300));
    let runs = check_log(&read_log(&log), 300, false).unwrap();
    // Ten moves; a host may pass the task on before it ran a step there, so runs can merge.
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(runs.windows(2).all(|w| w[0].0 != w[1].0), "{runs:?}");
}
