//! Where the quickstart's cluster keeps its facts and its checkpoints: by default the embedded
//! coordinator (a folder) and a folder store, both under the quickstart's folder; with
//! `--etcd URL[,URL...]` an etcd coordinator, and with `--s3` an S3 bucket configured by the
//! `COSMIC_S3_*` variables (both need the cargo features of the same names). The choice
//! travels to the host processes in environment variables.

use std::path::Path;
use std::sync::Arc;

use cosmic::checkpoint::CheckpointStore;
use cosmic::cluster::{Coordinator, CoordinatorSpec};
use cosmic::FileStore;

/// The coordinator, as `folder:PATH` or `etcd:URL,...` (see `CoordinatorSpec`).
const COORDINATOR_VAR: &str = "COSMIC_QUICKSTART_COORDINATOR";
/// `s3` to keep checkpoints in S3.
const STORE_VAR: &str = "COSMIC_QUICKSTART_STORE";

/// Applies the command line's choice (`--etcd URLS`, `--s3`) for this process and its hosts.
pub(crate) fn choose(etcd: Option<&str>, s3: bool) {
    if let Some(urls) = etcd {
        std::env::set_var(COORDINATOR_VAR, format!("etcd:{urls}"));
    }
    if s3 {
        std::env::set_var(STORE_VAR, "s3");
    }
}

/// What the cluster runs on, in words.
pub(crate) fn describe(dir: &Path) -> String {
    let coordinator = std::env::var(COORDINATOR_VAR).unwrap_or_else(|_| {
        format!(
            "embedded coordinator in {}",
            dir.join("coordinator").display()
        )
    });
    let store = match std::env::var(STORE_VAR).as_deref() {
        Ok("s3") => "checkpoints in S3".to_owned(),
        _ => format!("shared store in {}", dir.join("store").display()),
    };
    format!("{coordinator}; {store}")
}

pub(crate) async fn coordinator(dir: &Path) -> Result<Arc<dyn Coordinator>, String> {
    let spec = std::env::var(COORDINATOR_VAR)
        .unwrap_or_else(|_| format!("folder:{}", dir.join("coordinator").display()));
    let spec: CoordinatorSpec = spec
        .parse()
        .map_err(|e| format!("{}", cosmic::ErrorChain(&e)))?;
    spec.open()
        .await
        .map_err(|e| cosmic::ErrorChain(&e).to_string())
}

pub(crate) fn store(dir: &Path) -> Result<Arc<dyn CheckpointStore>, String> {
    match std::env::var(STORE_VAR).as_deref() {
        Ok("s3") => s3_store(),
        _ => FileStore::open_shared(dir.join("store"))
            .map(|s| Arc::new(s) as Arc<dyn CheckpointStore>)
            .map_err(|e| cosmic::ErrorChain(&e).to_string()),
    }
}

#[cfg(feature = "s3")]
fn s3_store() -> Result<Arc<dyn CheckpointStore>, String> {
    let config =
        cosmic::checkpoint::S3Config::from_env().map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    cosmic::checkpoint::S3Store::new(config)
        .map(|s| Arc::new(s) as Arc<dyn CheckpointStore>)
        .map_err(|e| cosmic::ErrorChain(&e).to_string())
}

#[cfg(not(feature = "s3"))]
fn s3_store() -> Result<Arc<dyn CheckpointStore>, String> {
    Err("built without S3 support: add `--features s3`".into())
}
