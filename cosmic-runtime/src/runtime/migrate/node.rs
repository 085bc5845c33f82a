//! What makes a runtime a host: its name, key and address, its peers, the channels it keeps
//! open to them, and its hand-off machine (`crate::handoff`), the one owner of every hand-off's
//! state, with the decoded copies arriving here that the machine's commands refer to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::arrival::Arrival;
use super::connections::Connections;
#[cfg(feature = "fault-injection")]
use super::fault::{FaultPlan, FaultPoint, Injected, Injector};
use crate::handoff::{self, Command, Event, Phase, StepError};
use crate::image::{check_native, Encoding, Isa};
use crate::log_limit::{Verdict, WarnLimiter, DEFAULT_CAPACITY};
use crate::task::TaskId;
use crate::transport::{ChannelConfig, ConnectError, Credentials, NodeName, SecureChannel};

/// Settings of a host's migrations.
#[derive(Debug, Clone)]
pub(crate) struct MigrationConfig {
    /// How long one step of a hand-off may wait for the peer (plus time for the image's size).
    pub(crate) step_timeout: Duration,
    /// The most tasks this host runs; offers beyond it are refused.
    pub(crate) max_tasks: usize,
    /// The largest image this host accepts.
    pub(crate) max_image_size: u64,
    /// How many tasks a drain moves at once.
    pub(crate) drain_concurrency: usize,
    /// The most copies arriving here at once (received, or prepared and in doubt).
    pub(crate) max_arriving: usize,
    /// The most bytes of copies arriving here at once.
    pub(crate) max_arriving_bytes: u64,
    /// The most connections from authenticated peers served at once.
    pub(crate) max_connections: usize,
    /// Whether a conversation's channel is kept for the next one to the same peer.
    pub(crate) reuse_connections: bool,
    /// Whether moves to a peer of this kind of machine and build send native images.
    pub(crate) native_moves: bool,
}

impl MigrationConfig {
    /// The hand-off machine's settings.
    pub(crate) fn machine(&self) -> handoff::Config {
        handoff::Config {
            step_timeout: self.step_timeout,
            max_tasks: self.max_tasks,
            max_arriving: self.max_arriving,
            // A bound below the largest image would refuse every such image.
            max_arriving_bytes: self.max_arriving_bytes.max(self.max_image_size),
            ..handoff::Config::default()
        }
    }
}

pub(crate) struct Node {
    pub(crate) name: NodeName,
    /// The cluster key, this host's key pair and the peers it trusts.
    pub(crate) key: Credentials,
    pub(crate) channel: ChannelConfig,
    pub(crate) config: MigrationConfig,
    /// The address peers reach us at (the bound address).
    pub(crate) addr: SocketAddr,
    peers: Mutex<HashMap<String, SocketAddr>>,
    /// Idle channels to peers, reused by later conversations.
    idle: Mutex<HashMap<SocketAddr, Vec<SecureChannel>>>,
    /// The kind of machine and build of each peer reached, as its hello said.
    kinds: Mutex<HashMap<SocketAddr, Isa>>,
    /// Every task's hand-off phase: the protocol's state, one value per task.
    machine: Mutex<handoff::Host>,
    /// Decoded copies arriving here, by task and hand-off (what `StartTask` starts).
    copies: Mutex<HashMap<(TaskId, u64), Arrival>>,
    /// One lock per task whose arriving copies are being written or discarded: a discard
    /// reads a `prepared` record and deletes it if it is still its hand-off's, which must not
    /// interleave with a newer copy's write of the same record.
    store_locks: Mutex<HashMap<TaskId, Arc<tokio::sync::Mutex<()>>>>,
    /// The authenticated connections served, bounded.
    pub(crate) connections: Arc<Connections>,
    /// Repeated warnings about peers, aggregated.
    warnings: Mutex<WarnLimiter<(&'static str, String)>>,
    /// The fault tests' planned fault.
    #[cfg(feature = "fault-injection")]
    fault: Injector,
    pub(crate) listener: Mutex<Option<tokio::task::AbortHandle>>,
}

/// The store lock of one task's arriving copies; the lock is forgotten when nobody holds it.
pub(crate) struct TaskStoreGuard<'a> {
    node: &'a Node,
    task: TaskId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for TaskStoreGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.node.store_locks);
        if locks
            .get(&self.task)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.task);
        }
    }
}

/// The most idle channels kept per peer.
const MAX_IDLE_PER_PEER: usize = 32;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    pub(crate) fn new(
        name: NodeName,
        key: Credentials,
        channel: ChannelConfig,
        config: MigrationConfig,
        addr: SocketAddr,
        peers: HashMap<String, SocketAddr>,
    ) -> Node {
        let max_connections = config.max_connections;
        Node {
            machine: Mutex::new(handoff::Host::new(name.as_str(), config.machine())),
            name,
            key,
            channel,
            config,
            addr,
            peers: Mutex::new(peers),
            idle: Mutex::new(HashMap::new()),
            kinds: Mutex::new(HashMap::new()),
            copies: Mutex::new(HashMap::new()),
            store_locks: Mutex::new(HashMap::new()),
            connections: Arc::new(Connections::new(max_connections)),
            warnings: Mutex::new(WarnLimiter::new(
                std::time::Duration::from_secs(10),
                DEFAULT_CAPACITY,
            )),
            #[cfg(feature = "fault-injection")]
            fault: Injector::default(),
            listener: Mutex::new(None),
        }
    }

    pub(crate) fn peer_addr(&self, name: &str) -> Option<SocketAddr> {
        lock(&self.peers).get(name).copied()
    }

    pub(crate) fn add_peer(&self, name: String, addr: SocketAddr) {
        lock(&self.peers).insert(name, addr);
    }

    /// Feeds one event to the hand-off machine. Events that do not apply (late, repeated or
    /// forged messages, timers of hand-offs that moved on) leave it unchanged and are logged.
    pub(crate) fn step(&self, event: Event) -> Vec<Command> {
        match self.try_step(event) {
            Ok(commands) => commands,
            Err(error) => {
                tracing::debug!(error = %crate::ErrorChain(&error), "hand-off event ignored");
                Vec::new()
            }
        }
    }

    /// Feeds one event to the hand-off machine, returning its refusal if it has one.
    pub(crate) fn try_step(&self, event: Event) -> Result<Vec<Command>, StepError> {
        let commands = lock(&self.machine).step(event)?;
        tracing::trace!(?commands, "hand-off commands");
        Ok(commands)
    }

    /// The phase of `task` in the hand-off machine.
    pub(crate) fn phase(&self, task: TaskId) -> Option<Phase> {
        lock(&self.machine).phase(task).cloned()
    }

    /// Whether a copy of `task` is arriving here (or being started).
    pub(crate) fn is_arriving(&self, task: TaskId) -> bool {
        self.arrival_progress(task).is_some()
    }

    /// The steps and epoch of a copy of `task` arriving here, if one is. A copy counts until
    /// its driver runs: `StartTask` starts it under the copies' lock.
    pub(crate) fn arrival_progress(&self, task: TaskId) -> Option<(u64, u64)> {
        let copies = self.copies();
        let copy = copies
            .iter()
            .find(|((t, _), _)| *t == task)
            .map(|(_, a)| (a.checkpoint.steps, a.epoch));
        match self.phase(task) {
            Some(Phase::Arriving(arriving)) => Some(copy.unwrap_or((0, arriving.epoch))),
            _ => copy,
        }
    }

    /// Copies arriving here now, and their bytes.
    pub(crate) fn arriving_load(&self) -> (usize, u64) {
        lock(&self.machine).arriving()
    }

    /// Replaces the machine (with the one recovery rebuilt from the records).
    /// See [`handoff::Host::learned_finished`].
    pub(crate) fn learned_finished(&self, task: TaskId) {
        lock(&self.machine).learned_finished(task);
    }

    /// Forgets the tombstone of `task` (see [`handoff::Host::forget`]).
    pub(crate) fn forget_finished(&self, task: TaskId) {
        lock(&self.machine).forget(task);
    }

    pub(crate) fn set_machine(&self, machine: handoff::Host) {
        *lock(&self.machine) = machine;
    }

    /// Logs a warning about `peer` unless the same one was logged lately: the first time,
    /// then once per interval with the number of occurrences in between.
    pub(crate) fn warn_about(
        &self,
        kind: &'static str,
        peer: &str,
        detail: &dyn std::fmt::Display,
    ) {
        let verdict =
            lock(&self.warnings).observe((kind, peer.to_owned()), std::time::Instant::now());
        if let Verdict::Log { suppressed } = verdict {
            tracing::warn!(%peer, %detail, suppressed, "{kind}");
        }
    }

    /// Holds the store lock of `task`'s arriving copies until the guard is dropped.
    pub(crate) async fn lock_task_store(&self, task: TaskId) -> TaskStoreGuard<'_> {
        let lock = Arc::clone(lock(&self.store_locks).entry(task).or_default());
        let guard = lock.lock_owned().await;
        TaskStoreGuard {
            node: self,
            task,
            guard: Some(guard),
        }
    }

    /// The decoded copies arriving here.
    pub(crate) fn copies(&self) -> MutexGuard<'_, HashMap<(TaskId, u64), Arrival>> {
        lock(&self.copies)
    }

    /// A channel to `addr`: an idle one if there is, else a new one. The flag says whether it
    /// was reused (a reused channel may have been closed by the peer meanwhile).
    pub(crate) async fn channel(
        &self,
        addr: SocketAddr,
    ) -> Result<(SecureChannel, bool), ConnectError> {
        if !self.config.reuse_connections {
            return Ok((self.fresh_channel(addr).await?, false));
        }
        if let Some(channel) = lock(&self.idle).get_mut(&addr).and_then(Vec::pop) {
            return Ok((channel, true));
        }
        Ok((self.fresh_channel(addr).await?, false))
    }

    /// A new channel to `addr`, never a reused one.
    pub(crate) async fn fresh_channel(
        &self,
        addr: SocketAddr,
    ) -> Result<SecureChannel, ConnectError> {
        let (channel, peer) =
            SecureChannel::connect(addr, &self.key, &self.name, &self.channel).await?;
        lock(&self.kinds).insert(addr, peer.isa);
        Ok(channel)
    }

    /// The encoding of a move to the peer at `addr`: native when its hello said it runs this
    /// build on this kind of machine ([`check_native`] with equal layouts: the same build has
    /// the same layouts, and the destination checks the image's own), portable otherwise. A
    /// peer not reached yet is reached now (the channel is kept for the hand-off); one that
    /// cannot be reached gets portable, and the hand-off reports why it failed.
    pub(crate) async fn encoding_for(&self, addr: SocketAddr) -> Encoding {
        if !self.config.native_moves {
            return Encoding::Portable;
        }
        let known = lock(&self.kinds).get(&addr).copied();
        let peer = match known {
            Some(isa) => isa,
            None => {
                let connect = self.channel(addr);
                match tokio::time::timeout(self.channel.handshake_timeout, connect).await {
                    Ok(Ok((channel, _))) => {
                        let isa = channel.peer().isa;
                        self.park(addr, channel);
                        isa
                    }
                    _ => return Encoding::Portable,
                }
            }
        };
        match check_native(&Isa::host(), 0, &peer, 0) {
            Ok(()) => Encoding::Native,
            Err(_) => Encoding::Portable,
        }
    }

    /// Keeps a channel whose last conversation ended cleanly, for the next one.
    pub(crate) fn park(&self, addr: SocketAddr, channel: SecureChannel) {
        if !self.config.reuse_connections {
            return;
        }
        let mut idle = lock(&self.idle);
        let parked = idle.entry(addr).or_default();
        if parked.len() < MAX_IDLE_PER_PEER {
            parked.push(channel);
        }
    }

    /// Drops the idle channels to `addr` (after one of them turned out dead).
    pub(crate) fn forget_idle(&self, addr: SocketAddr) {
        lock(&self.idle).remove(&addr);
    }

    /// Plans a fault in this host's hand-offs (fault tests).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn with_fault(mut self, plan: Option<FaultPlan>) -> Node {
        self.fault = Injector::new(plan);
        self
    }

    /// Whether a fault is planned at `point` (so that the code path with the hook is taken).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn plans(&self, point: FaultPoint) -> bool {
        self.fault.plans(point)
    }

    /// Passes fault point `point`: runs the planned fault if it is there.
    #[cfg(feature = "fault-injection")]
    pub(crate) async fn fault(&self, point: FaultPoint) -> Injected {
        self.fault.at(point).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(listener) = lock(&self.listener).take() {
            listener.abort();
        }
    }
}
