//! [`Builder`]: configures and starts a [`Runtime`].

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use std::net::SocketAddr;
use std::time::Duration;

use super::migrate::node::{MigrationConfig, Node};
use super::migrate::server;
#[cfg(feature = "fault-injection")]
use super::migrate::FaultPlan;
use super::retry::RetryPolicy;
use super::stats::StatsCounters;
use super::task_types::TaskTypes;
use super::{BuildError, Recovery, RecoveryError, Retention, Runtime, RuntimeInner};
use crate::checkpoint::{Catalog, CheckpointStore, Clock, Policy, SystemClock};
use crate::cluster::{ClusterConfig, ClusterHost, HostLoad, MemberRecord};
use crate::task::Task;
use crate::transport::{
    ChannelConfig, ClusterKey, Credentials, HostKey, ListenError, NodeName, PublicKey,
    SecureListener, TrustedPeers,
};

/// Configures a [`Runtime`], like `tokio::runtime::Builder`.
#[derive(Debug)]
pub struct Builder {
    host: String,
    store: Option<Arc<dyn CheckpointStore>>,
    policy: Policy,
    keep: usize,
    clock: Arc<dyn Clock>,
    verify_every: Option<u64>,
    retry: RetryPolicy,
    slow_step: Option<Duration>,
    quarantine_after: u32,
    types: Vec<fn(&TaskTypes)>,
    require_registered: bool,
    listen: Option<String>,
    advertise: Option<String>,
    peers: Vec<(String, String)>,
    cluster_key: Option<ClusterKey>,
    host_key: Option<HostKey>,
    trusted: Vec<(String, PublicKey)>,
    channel: ChannelConfig,
    migration: MigrationConfig,
    cluster: Option<ClusterConfig>,
    retention: Retention,
    #[cfg(feature = "fault-injection")]
    fault: Option<FaultPlan>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            host: "local".to_owned(),
            store: None,
            policy: Policy::default(),
            keep: 3,
            clock: Arc::new(SystemClock::default()),
            verify_every: None,
            retry: RetryPolicy::default(),
            slow_step: Some(Duration::from_secs(10)),
            quarantine_after: 3,
            types: Vec::new(),
            require_registered: false,
            listen: None,
            advertise: None,
            peers: Vec::new(),
            cluster_key: None,
            host_key: None,
            trusted: Vec::new(),
            channel: ChannelConfig::default(),
            migration: MigrationConfig {
                step_timeout: Duration::from_secs(10),
                max_tasks: 100_000,
                max_image_size: 1 << 30,
                drain_concurrency: 16,
                max_arriving: 64,
                max_arriving_bytes: 2 << 30,
                max_connections: 1024,
                reuse_connections: true,
                native_moves: true,
            },
            cluster: None,
            retention: Retention::default(),
            #[cfg(feature = "fault-injection")]
            fault: None,
        }
    }

    /// The name of this host (in logs, and later to other hosts).
    pub fn host(mut self, name: impl Into<String>) -> Self {
        self.host = name.into();
        self
    }

    /// Where checkpoints go. Without a store nothing survives the process.
    pub fn store(mut self, store: impl CheckpointStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The same as [`store`](Self::store), with a store chosen at run time (a `FileStore` or
    /// an `S3Store`, say) or shared with other parts of the program.
    pub fn store_shared(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// When tasks are checkpointed (default: every second).
    pub fn checkpoint(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long the store keeps what finished tasks leave (default: [`Retention::default`],
    /// outcomes for 7 days). Without it a store grows by two small files per task for good.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How many checkpoints of each task the store keeps (default 3, at least 1). Older ones
    /// are the fallback when the newest is damaged.
    pub fn keep_checkpoints(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// The clock the checkpoint schedule reads (for tests; default: the system's monotonic clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Test mode: at every `every_steps`-th safe point, round-trip each task through its image
    /// and continue with the restored copy, as a migration would. State that does not survive a
    /// move (a skipped field that mattered, a cache that is not rebuilt) then shows up in
    /// ordinary tests.
    pub fn verify_migration(mut self, every_steps: u64) -> Self {
        self.verify_every = Some(every_steps.max(1));
        self
    }

    /// What to do when a step panics (default: no retry, the task fails). The panic is caught
    /// at the step either way; with a policy of more than one try the task runs again from its
    /// last durable checkpoint (retries need a store). Outside a cluster only: in a cluster a
    /// panic fails the task.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How long a step may run without reaching a safe point before it is reported (default
    /// 10 s; `None` turns the watch off): a warning with the task and how long it ran, and a
    /// count in [`RuntimeStats::slow_steps`](super::RuntimeStats::slow_steps). The step is
    /// not stopped.
    pub fn slow_step_warning(mut self, after: Option<Duration>) -> Self {
        self.slow_step = after;
        self
    }

    /// After how many resumes in a row from the same checkpoint, none of which got to a newer
    /// one, a task is quarantined instead of resumed again (default 3, at least 1). This is
    /// what stops a step that takes the whole process down (`panic = "abort"`, a crash in
    /// native code) from doing so at every start: the count is written before each resume. A
    /// quarantined task is listed in [`Recovery::quarantined`](super::Recovery::quarantined),
    /// and its handle reports it failed; its checkpoints are kept, and
    /// [`Catalog::clear_attempts`](crate::checkpoint::Catalog::clear_attempts) releases it
    /// at the next start. Outside a cluster only.
    pub fn quarantine_after(mut self, resumes: u32) -> Self {
        self.quarantine_after = resumes.max(1);
        self
    }

    /// Declares a task type that may be found in the store, so it can be resumed on start.
    /// (Types spawned on the runtime are registered anyway.)
    pub fn register<T: Task>(mut self) -> Self {
        self.types.push(|types| types.register::<T>());
        self
    }

    /// Whether [`build`](Self::build) fails when the store holds tasks of types that were not
    /// [`register`](Self::register)ed (default false: such tasks are logged as warnings,
    /// listed in [`Runtime::recovery`], and [`Runtime::handle`] names their type).
    ///
    /// ```
    /// # use cosmic_runtime::runtime::Runtime;
    /// # use cosmic_runtime::checkpoint::MemoryStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let rt = Runtime::builder()
    ///     .store(MemoryStore::new())
    ///     .require_registered_types(true)
    ///     .build()
    ///     .await?;
    /// # drop(rt); Ok(()) }
    /// ```
    pub fn require_registered_types(mut self, required: bool) -> Self {
        self.require_registered = required;
        self
    }

    /// Makes this runtime a host that peers can move tasks to: listens for them on `addr`
    /// (`"127.0.0.1:7001"`; port 0 picks a free port, see [`Runtime::local_addr`]). Needs
    /// [`cluster_key`](Self::cluster_key).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// The address peers are told to reach this host at (default: the listening address).
    /// Set it when listening on `0.0.0.0`.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// A peer host this one can move tasks to, by name and address. Its key must be trusted
    /// too ([`trust_peer`](Self::trust_peer)): a host only talks to peers whose name is proven.
    pub fn peer(mut self, name: impl Into<String>, addr: impl Into<String>) -> Self {
        self.peers.push((name.into(), addr.into()));
        self
    }

    /// The key every host of the cluster holds; only holders can connect. Load it with
    /// [`ClusterKey::from_file`] or [`ClusterKey::from_env`], never from the command line.
    pub fn cluster_key(mut self, key: ClusterKey) -> Self {
        self.cluster_key = Some(key);
        self
    }

    /// This host's own key pair, which proves its name to peers. Load it with
    /// [`HostKey::from_file`] or [`HostKey::load_or_create`] (a file only its owner can
    /// read), and give peers its [`public_key`](HostKey::public_key). Without it, a host makes
    /// a new key pair at each start and logs its public key (`info`): fine for tests, useless
    /// for peers that must trust it across restarts.
    pub fn host_key(mut self, key: HostKey) -> Self {
        self.host_key = Some(key);
        self
    }

    /// Trusts `key` as the public key of host `name`: connections from it, and to it, are
    /// accepted only if it proves that key. A host that is not trusted is refused, whatever it
    /// holds; trusting is the operator's act, never a side effect of connecting. Works with or
    /// without an address for the host ([`peer`](Self::peer)); later calls for the same name
    /// replace the key.
    pub fn trust_peer(mut self, name: impl Into<String>, key: PublicKey) -> Self {
        self.trusted.push((name.into(), key));
        self
    }

    /// Limits of the secure channels (message size, handshake deadline).
    pub fn channel_config(mut self, config: ChannelConfig) -> Self {
        self.channel = config;
        self
    }

    /// How long each step of a hand-off waits for the peer before the move is abandoned
    /// (default 10 s; steps that carry the image get 20 ms more per MiB).
    pub fn migration_timeout(mut self, timeout: Duration) -> Self {
        self.migration.step_timeout = timeout;
        self
    }

    /// The most tasks this host runs; offers beyond it are refused with
    /// [`Refusal::NoCapacity`](crate::transport::protocol::Refusal::NoCapacity) (default
    /// 100,000).
    pub fn max_tasks(mut self, max: usize) -> Self {
        self.migration.max_tasks = max;
        self
    }

    /// The largest image this host accepts from a peer (default 1 GiB); larger offers are
    /// refused before anything is allocated.
    pub fn max_image_size(mut self, bytes: u64) -> Self {
        self.migration.max_image_size = bytes;
        self.channel.max_message_size = self.channel.max_message_size.max(bytes);
        self
    }

    /// The most copies of tasks this host receives at once, counting copies that wait for
    /// their source's decision (default 64); and the most bytes of them (default 2 GiB, and
    /// never less than [`max_image_size`](Self::max_image_size)). Offers beyond are refused
    /// with [`Refusal::Busy`](crate::transport::protocol::Refusal::Busy) before anything is
    /// allocated.
    pub fn max_arriving(mut self, copies: usize, bytes: u64) -> Self {
        self.migration.max_arriving = copies.max(1);
        self.migration.max_arriving_bytes = bytes;
        self
    }

    /// The most connections from peers (holding the cluster key) this host serves at once
    /// (default 1024). Past it, the connection idle the longest is closed to make room; if
    /// all are in conversations, the newcomer's offer is refused as busy.
    pub fn max_peer_connections(mut self, connections: usize) -> Self {
        self.migration.max_connections = connections.max(1);
        self
    }

    /// Whether a channel to a peer is kept open after a conversation for the next one
    /// (default true: a move then skips the TCP and Noise handshakes). With `false`, every
    /// conversation opens a fresh connection.
    pub fn reuse_peer_connections(mut self, reuse: bool) -> Self {
        self.migration.reuse_connections = reuse;
        self
    }

    /// Whether a move to a host of the same kind of machine running the same build sends a
    /// native image (default true): `#[migratable(native)]` fields travel as memory instead of
    /// being encoded element by element. Hosts tell each other their kind in the handshake; a
    /// move to any other host, or to one not yet reached, is portable. `false` makes every
    /// move portable. Checkpoints are portable either way.
    pub fn native_moves(mut self, native: bool) -> Self {
        self.migration.native_moves = native;
        self
    }

    /// How many tasks a drain moves at once (default 16).
    pub fn drain_concurrency(mut self, tasks: usize) -> Self {
        self.migration.drain_concurrency = tasks.max(1);
        self
    }

    /// Fault tests: inject `plan` into this runtime's hand-offs. Only with the
    /// `fault-injection` feature.
    /// Makes this host a member of a cluster: its tasks' ownership and current checkpoints are
    /// the coordinator's to say, their checkpoints go to the store (which every member must
    /// share: a folder all reach, or an object store), a dead member's tasks are taken over by
    /// the others, and busy members move tasks to idle ones. Needs `store`, `listen` and
    /// `cluster_key`. The store's own recovery is not run: a member resumes only what the
    /// coordinator says it owns (see `cosmic_runtime::cluster`).
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_fault(mut self, plan: FaultPlan) -> Self {
        self.fault = Some(plan);
        self
    }

    /// Starts the runtime on the current tokio runtime, and resumes every unfinished task in
    /// the store from its newest checkpoint that decodes (older ones are the fallback, with a
    /// warning). Finished tasks' outcomes stay available through [`Runtime::handle`].
    pub async fn build(self) -> Result<Runtime, BuildError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::NoTokioRuntime);
        }
        self.policy.check().map_err(BuildError::Policy)?;
        let types = TaskTypes::default();
        for register in &self.types {
            register(&types);
        }
        let (node, listener) = match self.listen.as_deref() {
            None => (None, None),
            Some(listen) => {
                let (node, listener) = bind_node(
                    listen,
                    self.advertise.as_deref(),
                    &self.host,
                    self.cluster_key.clone(),
                    self.host_key.clone(),
                    &self.trusted,
                    &self.peers,
                    self.channel.clone(),
                    self.migration.clone(),
                )
                .await?;
                #[cfg(feature = "fault-injection")]
                let node = node.with_fault(self.fault);
                (Some(node), Some(listener))
            }
        };
        let cluster = match self.cluster {
            None => None,
            Some(config) => {
                let Some(store) = self.store.clone() else {
                    return Err(BuildError::ClusterSetup {
                        missing: "a store every member shares (`store`)",
                    });
                };
                if node.is_none() {
                    return Err(BuildError::ClusterSetup {
                        missing: "an address for its peers (`listen`, with `cluster_key`)",
                    });
                }
                Some(ClusterHost::new(
                    self.host.clone(),
                    config,
                    store,
                    self.keep,
                ))
            }
        };
        let catalog = match cluster {
            Some(_) => None,
            None => self.store.map(|store| Catalog::new(store, self.keep)),
        };
        let inner = Arc::new(RuntimeInner {
            node,
            cluster,
            steps_total: std::sync::atomic::AtomicU64::new(0),
            catalog,
            stats: Arc::new(StatsCounters::new(Arc::clone(&self.clock))),
            host: self.host,
            policy: self.policy,
            clock: self.clock,
            verify_every: self.verify_every,
            retry: self.retry,
            slow_step: self.slow_step,
            quarantine_after: self.quarantine_after,
            types,
            tasks: Mutex::new(HashMap::new()),
            running: Mutex::new(std::collections::HashSet::new()),
            with_attempts: Mutex::new(std::collections::HashSet::new()),
            shutting_down: AtomicBool::new(false),
            recovery: Mutex::new(Recovery::default()),
            retention: self.retention,
            ledger: Mutex::default(),
        });
        let mut settle = Vec::new();
        if let Some(catalog) = inner.catalog.clone() {
            let (recovery, commands) = super::recovery::recover(&inner, &catalog).await?;
            let unregistered: Vec<(crate::task::TaskId, String)> = recovery
                .failed
                .iter()
                .filter_map(|(task, error)| match error {
                    RecoveryError::UnregisteredType { type_name } => {
                        Some((*task, type_name.clone()))
                    }
                    _ => None,
                })
                .collect();
            *inner.recovery.lock().unwrap_or_else(|p| p.into_inner()) = recovery;
            if self.require_registered && !unregistered.is_empty() {
                // The tasks resumed so far stop at their next safe point, checkpointed: the
                // next start with every type registered resumes them all.
                Runtime {
                    inner: Arc::clone(&inner),
                }
                .shutdown()
                .await;
                return Err(BuildError::UnregisteredTypes {
                    tasks: unregistered,
                });
            }
            settle = commands;
        }
        if let (Some(node), Some(listener)) = (&inner.node, listener) {
            // Listening only now: a peer asking about a task finds it recovered.
            let serving = tokio::spawn(server::listen(Arc::downgrade(&inner), listener));
            *node.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(serving.abort_handle());
            // Copies in doubt: ask their sources how the hand-offs ended.
            super::migrate::carry_out(&inner, settle);
        }
        if inner.catalog.is_some() {
            super::retention::sweep(&inner, false).await;
            tokio::spawn(super::retention::sweep_loop(
                Arc::downgrade(&inner),
                inner.retention.sweep_interval(),
            ));
        }
        if let (Some(cluster), Some(node)) = (&inner.cluster, &inner.node) {
            join_cluster(&inner, cluster, node).await?;
        }
        Ok(Runtime { inner })
    }
}

/// Checks the host settings and binds the listener.
/// Publishes this host, starts renewing its lease and scanning the cluster, and waits until it
/// holds a lease (an earlier life's lease of the same name must run out first).
async fn join_cluster(
    inner: &Arc<RuntimeInner>,
    cluster: &Arc<ClusterHost>,
    node: &Node,
) -> Result<(), BuildError> {
    for name in inner.types.names() {
        tracing::debug!(host = %cluster.name, r#type = %name, "can run");
    }
    cluster.set_record(MemberRecord {
        name: cluster.name.clone(),
        addr: node.addr.to_string(),
        public_key: node.key.host_key.public_key(),
        load: HostLoad::default(),
        types: inner.types.names(),
        draining: false,
    });
    tokio::spawn(Arc::clone(cluster).keep_lease(Arc::downgrade(inner)));
    tokio::spawn(crate::cluster::scan_loop(
        Arc::clone(cluster),
        Arc::downgrade(inner),
    ));
    let waited = cluster.config.lease_ttl * 3 + Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + waited;
    while !cluster.lease_holds() {
        if tokio::time::Instant::now() >= deadline {
            return Err(BuildError::Join { waited });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn bind_node(
    listen: &str,
    advertise: Option<&str>,
    host: &str,
    key: Option<ClusterKey>,
    host_key: Option<HostKey>,
    trusted_peers: &[(String, PublicKey)],
    peers: &[(String, String)],
    channel: ChannelConfig,
    migration: MigrationConfig,
) -> Result<(Node, SecureListener), BuildError> {
    let key = key.ok_or(BuildError::NoClusterKey)?;
    let name = NodeName::new(host).map_err(BuildError::HostName)?;
    let host_key = match host_key {
        Some(host_key) => host_key,
        None => {
            let host_key = HostKey::generate().map_err(BuildError::HostKey)?;
            tracing::info!(host = %name, public_key = %host_key.public_key(), "no host key configured (Builder::host_key): made a new one for this run; peers must trust this public key");
            host_key
        }
    };
    let trusted = TrustedPeers::new();
    for (peer, peer_key) in trusted_peers {
        let peer_name = NodeName::new(peer.as_str()).map_err(BuildError::PeerName)?;
        trusted.trust(peer_name, *peer_key);
    }
    for (peer, _) in peers {
        if trusted.get(peer).is_none() {
            tracing::warn!(host = %name, peer = %peer, "peer has an address but no trusted key (Builder::trust_peer): connections to and from it will be refused");
        }
    }
    let key = Credentials::new(key, host_key, trusted);
    let listen_addr = parse_addr(listen)?;
    let mut peer_addrs = HashMap::new();
    for (peer, addr) in peers {
        peer_addrs.insert(peer.clone(), parse_addr(addr)?);
    }
    let listener = SecureListener::bind(listen_addr, &key, &name, &channel)
        .await
        .map_err(BuildError::Listen)?;
    let bound = listener.local_addr().map_err(|source| {
        BuildError::Listen(ListenError::Bind {
            addr: listen_addr,
            source,
        })
    })?;
    let addr = match advertise {
        Some(advertise) => parse_addr(advertise)?,
        None => bound,
    };
    // Peers reach us, and resolve hand-offs with us, at this address.
    if addr.ip().is_unspecified() {
        return Err(BuildError::Address {
            addr: format!("{addr} (listening on all interfaces: set `advertise` to an address peers can reach)"),
        });
    }
    let node = Node::new(name, key, channel, migration, addr, peer_addrs);
    Ok((node, listener))
}

fn parse_addr(addr: &str) -> Result<SocketAddr, BuildError> {
    addr.parse().map_err(|_| BuildError::Address {
        addr: addr.to_owned(),
    })
}
