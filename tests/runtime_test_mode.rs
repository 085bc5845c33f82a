//! The runtime's test mode (`Builder::verify_migration`) round-trips tasks through their images
//! at safe points, so state that would not survive a real move breaks ordinary tests.

use cosmic::prelude::*;
use cosmic::runtime::JoinError;

/// Sums squares, but keeps the running total in a skipped field that is lost by a move: a bug
/// that only shows after a migration or a restore.
#[derive(Migratable, Debug)]
struct LeakyTotal {
    next: u64,
    n: u64,
    #[migratable(skip)]
    total: u64,
}

#[async_trait]
impl Task for LeakyTotal {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.next > self.n {
            return Ok(Step::Done(self.total));
        }
        self.total += self.next * self.next;
        self.next += 1;
        Ok(Step::Continue)
    }
}

/// The same computation with the total in the migrated state.
#[derive(Migratable, Debug)]
struct SoundTotal {
    next: u64,
    n: u64,
    total: u64,
}

#[async_trait]
impl Task for SoundTotal {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.next > self.n {
            return Ok(Step::Done(self.total));
        }
        self.total += self.next * self.next;
        self.next += 1;
        Ok(Step::Continue)
    }
}

const N: u64 = 50;
const SUM_OF_SQUARES: u64 = N * (N + 1) * (2 * N + 1) / 6;

async fn run<T: Task<Output = u64>>(task: T, verify: bool) -> Result<u64, JoinError> {
    let mut builder = Runtime::builder().checkpoint(Policy::Never);
    if verify {
        builder = builder.verify_migration(1);
    }
    let rt = builder.build().await.unwrap();
    rt.spawn(task).await.unwrap().join().await
}

#[tokio::test]
async fn the_bug_is_invisible_without_test_mode() {
    let task = LeakyTotal {
        next: 1,
        n: N,
        total: 0,
    };
    assert_eq!(run(task, false).await.unwrap(), SUM_OF_SQUARES);
}

#[tokio::test]
async fn test_mode_exposes_state_that_does_not_survive_a_move() {
    let task = LeakyTotal {
        next: 1,
        n: N,
        total: 0,
    };
    let result = run(task, true).await.unwrap();
    assert_ne!(
        result, SUM_OF_SQUARES,
        "the skipped total must be lost by the round trips"
    );
}

#[tokio::test]
async fn sound_state_gives_the_same_answer_in_test_mode() {
    let task = SoundTotal {
        next: 1,
        n: N,
        total: 0,
    };
    assert_eq!(run(task, true).await.unwrap(), SUM_OF_SQUARES);
}
