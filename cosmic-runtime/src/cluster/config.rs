//! How a host takes part in a cluster: [`ClusterConfig`].

use std::sync::Arc;
use std::time::Duration;

use super::balance::BalanceConfig;
use super::coordinator::Coordinator;

/// A host's part in a cluster, given to [`Builder::cluster`](crate::runtime::Builder::cluster).
///
/// ```
/// # use cosmic_runtime::cluster::{ClusterConfig, FolderCoordinator};
/// # use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("cosmic-doc-config-{}", std::process::id()));
/// let coordinator = FolderCoordinator::open(&dir)?;
/// let config = ClusterConfig::new(coordinator)
///     .lease_ttl(Duration::from_secs(2))
///     .capacity(4);
/// assert_eq!(config.scan_interval(), Duration::from_millis(400));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) lease_ttl: Duration,
    pub(crate) scan_interval: Option<Duration>,
    pub(crate) capacity: u32,
    pub(crate) balance: BalanceConfig,
    pub(crate) commit_batch: usize,
}

impl ClusterConfig {
    /// Takes part through `coordinator`, with the defaults: a 5 s lease, a slot per CPU, the
    /// balancer on with [`BalanceConfig::default`].
    pub fn new(coordinator: impl Coordinator) -> ClusterConfig {
        ClusterConfig::shared(Arc::new(coordinator))
    }

    /// The same, with a coordinator shared with other users in this process.
    pub fn shared(coordinator: Arc<dyn Coordinator>) -> ClusterConfig {
        ClusterConfig {
            coordinator,
            lease_ttl: Duration::from_secs(5),
            scan_interval: None,
            capacity: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            balance: BalanceConfig::default(),
            commit_batch: 1024,
        }
    }

    /// How long the host's lease lasts without renewal (renewed at a third of it). The
    /// failover promise is stated in it: a dead host's tasks run again elsewhere about a lease
    /// after it died, and a host cut off stops its tasks at their first safe point after its
    /// lease ran out from its own point of view.
    pub fn lease_ttl(mut self, ttl: Duration) -> ClusterConfig {
        self.lease_ttl = ttl;
        self
    }

    /// How often the host reads the cluster's members and tasks (to take over orphans, pick
    /// up tasks moved to it, and balance). Default: a fifth of the lease.
    pub fn scan_every(mut self, interval: Duration) -> ClusterConfig {
        self.scan_interval = Some(interval);
        self
    }

    /// The scan interval in effect.
    pub fn scan_interval(&self) -> Duration {
        self.scan_interval.unwrap_or(self.lease_ttl / 5)
    }

    /// Tasks this host runs at full speed at once: what its load is measured against.
    pub fn capacity(mut self, slots: u32) -> ClusterConfig {
        self.capacity = slots.max(1);
        self
    }

    /// How the balancer decides (or `BalanceConfig { enabled: false, .. }`).
    pub fn balance(mut self, balance: BalanceConfig) -> ClusterConfig {
        self.balance = balance;
        self
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }
}
