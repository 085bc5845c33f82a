//! The task lifecycle on one runtime: spawn, join, pause, resume, cancel, checkpoint on
//! demand, failures, restore on start and test mode.

use std::time::Duration;

use cosmic::checkpoint::{Catalog, PolicyError};
use cosmic::prelude::*;
use cosmic::runtime::{ControlError, JoinError};
use cosmic::{MemoryStore, TaskStatus};

/// Sums 1..=n one number per step; records the steps it ran in `log`.
#[derive(Migratable, Debug, Clone, PartialEq)]
struct Summer {
    next: u64,
    n: u64,
    total: u64,
    log: Vec<u64>,
    /// Fails at this step, if set.
    fail_at: Option<u64>,
    /// Sleeps this long per step (ms), to give control requests a chance.
    pace_ms: u64,
}

impl Summer {
    fn new(n: u64) -> Self {
        Summer {
            next: 1,
            n,
            total: 0,
            log: Vec::new(),
            fail_at: None,
            pace_ms: 0,
        }
    }
}

#[async_trait]
impl Task for Summer {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.pace_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.pace_ms)).await;
        }
        if self.fail_at == Some(self.next) {
            return Err(TaskError::new(format!("refusing step {}", self.next)));
        }
        if self.next > self.n {
            return Ok(Step::Done(self.total));
        }
        self.total += self.next;
        self.log.push(self.next);
        self.next += 1;
        Ok(Step::Continue)
    }
}

async fn runtime(store: MemoryStore, policy: Policy) -> Runtime {
    Runtime::builder()
        .host("alpha")
        .store(store)
        .checkpoint(policy)
        .register::<Summer>()
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn spawned_task_runs_to_completion_and_join_returns_its_output() {
    let rt = runtime(MemoryStore::new(), Policy::every_steps(10)).await;
    let handle = rt.spawn(Summer::new(100)).await.unwrap();
    assert_eq!(handle.join().await.unwrap(), 5050);
    assert_eq!(handle.status(), TaskStatus::Completed);
    assert_eq!(handle.steps_completed(), 101);
    let stats = rt.stats();
    assert_eq!(stats.completed, 1);
    assert!(stats.checkpoints_written >= 10, "{stats:?}");
}

#[tokio::test]
async fn an_adaptive_policy_without_a_valid_mtbf_is_refused_and_a_valid_one_runs() {
    let zero = Policy::Adaptive {
        mtbf: Duration::ZERO,
    };
    let refused = Runtime::builder()
        .store(MemoryStore::new())
        .checkpoint(zero)
        .build()
        .await;
    match refused {
        Err(cosmic::runtime::BuildError::Policy(PolicyError::Mtbf { seconds })) => {
            assert_eq!(seconds, 0.0)
        }
        other => panic!("expected the policy refused, got {other:?}"),
    }

    // A valid one checkpoints: the first at the first safe point (to measure the cost), and
    // the store's write cost is measured for the bound on the interval.
    let policy = Policy::adaptive(Duration::from_secs(3600)).unwrap();
    let rt = runtime(MemoryStore::new(), policy).await;
    let handle = rt.spawn(Summer::new(200)).await.unwrap();
    assert_eq!(handle.join().await.unwrap(), 20_100);
    let stats = rt.stats();
    assert!(stats.checkpoints_written >= 2, "{stats:?}");
    assert!(stats.store_write_cost.is_some(), "{stats:?}");
}

#[tokio::test]
async fn failed_step_ends_the_task_with_its_message() {
    let rt = runtime(MemoryStore::new(), Policy::OnDemand).await;
    let mut task = Summer::new(10);
    task.fail_at = Some(4);
    let handle = rt.spawn(task).await.unwrap();
    match handle.join().await {
        Err(JoinError::Failed { message, .. }) => assert_eq!(message, "refusing step 4"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(handle.status(), TaskStatus::Failed(_)));
}

#[tokio::test]
async fn pause_stops_at_a_safe_point_and_resume_continues() {
    let rt = runtime(MemoryStore::new(), Policy::OnDemand).await;
    let mut task = Summer::new(1_000_000);
    task.pace_ms = 1;
    let handle = rt.spawn(task).await.unwrap();
    handle.pause().await.unwrap();
    assert_eq!(handle.status(), TaskStatus::Paused);
    let steps = handle.steps_completed();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        handle.steps_completed(),
        steps,
        "a paused task runs no steps"
    );
    // A paused task can still be checkpointed.
    let key = handle.checkpoint_now().await.unwrap();
    assert_eq!(key.steps, steps);
    handle.resume().await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(handle.steps_completed() > steps);
    handle.cancel().await.unwrap();
    assert!(matches!(
        handle.join().await,
        Err(JoinError::Cancelled { .. })
    ));
    assert!(matches!(
        handle.pause().await,
        Err(ControlError::Finished { .. })
    ));
}

#[tokio::test]
async fn checkpoint_now_returns_once_the_image_is_in_the_store() {
    let store = MemoryStore::new();
    let rt = runtime(store.clone(), Policy::OnDemand).await;
    let mut task = Summer::new(1_000_000);
    task.pace_ms = 1;
    let handle = rt.spawn(task).await.unwrap();
    let key = handle.checkpoint_now().await.unwrap();
    let catalog = Catalog::new(std::sync::Arc::new(store), 3);
    let bytes = catalog
        .checkpoint(handle.id(), key)
        .await
        .unwrap()
        .expect("image is durable");
    let restored: Summer = cosmic::image::restore(&bytes).unwrap();
    assert_eq!(restored.log.len() as u64, key.steps);
    handle.cancel().await.unwrap();
}

#[tokio::test]
async fn a_new_runtime_on_the_store_resumes_unfinished_tasks_and_keeps_outcomes() {
    let store = MemoryStore::new();
    let (unfinished, finished) = {
        let rt = runtime(store.clone(), Policy::every_steps(1)).await;
        let done = rt.spawn(Summer::new(10)).await.unwrap();
        assert_eq!(done.join().await.unwrap(), 55);
        let mut slow = Summer::new(200);
        slow.pace_ms = 1;
        let running = rt.spawn(slow).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        running.checkpoint_now().await.unwrap();
        rt.shutdown().await;
        assert!(matches!(
            running.join().await,
            Err(JoinError::ShutDown { .. })
        ));
        (running.id(), done.id())
    };
    let rt = runtime(store, Policy::every_steps(1)).await;
    let recovery = rt.recovery();
    assert_eq!(recovery.resumed.len(), 1, "{recovery:?}");
    assert_eq!(recovery.finished, vec![finished]);
    assert!(recovery.failed.is_empty(), "{recovery:?}");
    let resumed = rt.handle::<u64>(unfinished).unwrap();
    assert_eq!(resumed.join().await.unwrap(), 200 * 201 / 2);
    assert_eq!(
        rt.handle::<u64>(finished).unwrap().join().await.unwrap(),
        55
    );
    assert!(
        rt.handle::<String>(finished).is_err(),
        "output type is checked"
    );
}
