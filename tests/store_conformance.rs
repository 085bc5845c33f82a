//! The `CheckpointStore` contract (`src/store_contract.rs`) on `MemoryStore` and `FileStore`;
//! `tests/store_s3.rs` runs the same contract on `S3Store`.

use std::path::PathBuf;
use std::sync::Arc;

use cosmic::{FileStore, MemoryStore};
use cosmic_tests::store_contract::{conformance, Promises};

#[tokio::test]
async fn memory_store_conforms() {
    conformance(
        Arc::new(MemoryStore::new()),
        Promises {
            exclusive_create: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_conforms() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    conformance(
        Arc::new(FileStore::open(&root).unwrap()),
        Promises {
            exclusive_create: true,
        },
    )
    .await;
    std::fs::remove_dir_all(&root).unwrap();
}
