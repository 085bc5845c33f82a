//! Safe points: requests take effect at the next step boundary, even when every core is busy
//! running CPU-heavy steps. Checked by ordering (which step a request landed after), not by
//! wall-clock thresholds.

use cosmic::prelude::*;
use cosmic::MemoryStore;

/// Burns CPU for a fixed amount of work per step, never awaiting inside a step.
#[derive(Migratable, Debug)]
struct Burner {
    steps: u64,
    limit: u64,
    acc: u64,
    work_per_step: u64,
}

#[async_trait]
impl Task for Burner {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.steps == self.limit {
            return Ok(Step::Done(self.acc));
        }
        let mut x = self.acc | 1;
        for _ in 0..self.work_per_step {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        self.acc = std::hint::black_box(x);
        self.steps += 1;
        Ok(Step::Continue)
    }
}

fn burner() -> Burner {
    Burner {
        steps: 0,
        limit: u64::MAX,
        acc: 7,
        work_per_step: 200_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_pause_requests_land_within_one_step_while_all_cores_are_busy() {
    let rt = Runtime::builder()
        .store(MemoryStore::new())
        .checkpoint(Policy::OnDemand)
        .build()
        .await
        .unwrap();
    // Twice as many CPU-bound tasks as worker threads: every core is busy running steps.
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(rt.spawn(burner()).await.unwrap());
    }
    while handles.iter().any(|h| h.steps_completed() < 3) {
        tokio::task::yield_now().await;
    }
    for round in 0..5 {
        for handle in &handles {
            let before = handle.steps_completed();
            let key = handle.checkpoint_now().await.unwrap();
            // The step in flight when the request was sent may finish first; no other.
            assert!(
                key.steps >= before && key.steps <= before + 1,
                "round {round}: requested after step {before}, captured after step {}",
                key.steps
            );
        }
    }
    for handle in &handles {
        let before = handle.steps_completed();
        handle.pause().await.unwrap();
        let paused_at = handle.steps_completed();
        assert!(
            paused_at <= before + 1,
            "requested after {before}, paused after {paused_at}"
        );
    }
    for handle in &handles {
        handle.cancel().await.unwrap();
    }
}
