//! What makes a runtime a host: its name, key and address, its peers, the channels it keeps
//! open to them, and the hand-offs in flight.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::arrival::Arrival;
#[cfg(feature = "fault-injection")]
use super::fault::{FaultPlan, FaultPoint, Injected, Injector};
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
}

impl MigrationConfig {
    /// A step's deadline when `bytes` travel or are processed in it: the fixed timeout plus
    /// 20 ms per MiB (50 MiB/s, far below any real link and decoder).
    pub(crate) fn deadline_for(&self, bytes: u64) -> Duration {
        self.step_timeout
            .saturating_add(Duration::from_millis((bytes >> 20).saturating_mul(20)))
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
    /// Hand-offs this host started as the source and has not decided yet.
    pub(crate) deciding: Mutex<HashSet<u64>>,
    /// The latest hand-offs this host committed as the source (the durable `moved` records
    /// say the same across restarts, and for older ones; this also answers without a store).
    committed: Mutex<RecentSet>,
    /// Tasks arriving here.
    arriving: Mutex<Arrivals>,
    /// The fault tests' planned fault.
    #[cfg(feature = "fault-injection")]
    fault: Injector,
    pub(crate) listener: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Tasks arriving here: prepared copies waiting for the source's decision, and claims on
/// tasks being received or started (so that capacity and whereabouts count them).
#[derive(Default)]
pub(crate) struct Arrivals {
    pub(crate) prepared: HashMap<TaskId, Arrival>,
    /// Counted: a receive and a resolver may hold one on the same task.
    claims: HashMap<TaskId, usize>,
}

impl Arrivals {
    pub(crate) fn is_arriving(&self, task: TaskId) -> bool {
        self.prepared.contains_key(&task) || self.claims.contains_key(&task)
    }

    /// Whether a conversation or a resolver is acting on the task's arrival now.
    pub(crate) fn is_claimed(&self, task: TaskId) -> bool {
        self.claims.contains_key(&task)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.prepared.keys().chain(self.claims.keys()).copied()
    }

    fn claim(&mut self, task: TaskId) {
        *self.claims.entry(task).or_default() += 1;
    }

    fn release(&mut self, task: TaskId) {
        if let Some(count) = self.claims.get_mut(&task) {
            *count -= 1;
            if *count == 0 {
                self.claims.remove(&task);
            }
        }
    }
}

/// A claim on a task arriving here, released when dropped.
pub(crate) struct Claim<'a> {
    node: &'a Node,
    task: TaskId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.node.arriving().release(self.task);
    }
}

/// How many committed hand-offs a host remembers in memory. A destination asks about a
/// hand-off within moments of losing its source (or after restarting), not a million moves
/// later; with a store the `moved` records answer for older ones.
const MAX_REMEMBERED_COMMITS: usize = 1 << 20;

/// A set that forgets its oldest entries beyond a bound.
#[derive(Default)]
struct RecentSet {
    members: HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl RecentSet {
    fn insert(&mut self, value: u64, bound: usize) {
        if self.members.insert(value) {
            self.order.push_back(value);
        }
        while self.order.len() > bound {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
    }

    fn contains(&self, value: &u64) -> bool {
        self.members.contains(value)
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
        Node {
            name,
            key,
            channel,
            config,
            addr,
            peers: Mutex::new(peers),
            idle: Mutex::new(HashMap::new()),
            deciding: Mutex::new(HashSet::new()),
            committed: Mutex::new(RecentSet::default()),
            arriving: Mutex::new(Arrivals::default()),
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

    /// Claims `task` as arriving, under the lock already held.
    pub(crate) fn claim<'a>(&'a self, arrivals: &mut Arrivals, task: TaskId) -> Claim<'a> {
        arrivals.claim(task);
        Claim { node: self, task }
    }

    /// Takes the prepared copy of `task` if it is still hand-off `handoff`, claiming the task
    /// until the claim is dropped (so it never looks unknown while it starts).
    pub(crate) fn take_arrival(&self, task: TaskId, handoff: u64) -> Option<(Arrival, Claim<'_>)> {
        let mut arrivals = self.arriving();
        if arrivals.prepared.get(&task)?.handoff != handoff {
            return None;
        }
        let arrival = arrivals.prepared.remove(&task)?;
        let claim = self.claim(&mut arrivals, task);
        Some((arrival, claim))
    }

    /// Notes a committed hand-off; must happen before it leaves `deciding`.
    pub(crate) fn committed(&self, handoff: u64) {
        lock(&self.committed).insert(handoff, MAX_REMEMBERED_COMMITS);
    }

    pub(crate) fn has_committed(&self, handoff: u64) -> bool {
        lock(&self.committed).contains(&handoff)
    }

    pub(crate) fn deciding(&self) -> MutexGuard<'_, HashSet<u64>> {
        lock(&self.deciding)
    }

    pub(crate) fn arriving(&self) -> MutexGuard<'_, Arrivals> {
        lock(&self.arriving)
    }

    /// A channel to `addr`: an idle one if there is, else a new one. The flag says whether it
    /// was reused (a reused channel may have been closed by the peer meanwhile).
    pub(crate) async fn channel(
        &self,
        addr: SocketAddr,
    ) -> Result<(SecureChannel, bool), ConnectError> {
        if let Some(channel) = lock(&self.idle).get_mut(&addr).and_then(Vec::pop) {
            return Ok((channel, true));
        }
        let (channel, _) =
            SecureChannel::connect(addr, &self.key, &self.name, &self.channel).await?;
        Ok((channel, false))
    }

    /// A new channel to `addr`, never a reused one.
    pub(crate) async fn fresh_channel(
        &self,
        addr: SocketAddr,
    ) -> Result<SecureChannel, ConnectError> {
        let (channel, _) =
            SecureChannel::connect(addr, &self.key, &self.name, &self.channel).await?;
        Ok(channel)
    }

    /// Keeps a channel whose last conversation ended cleanly, for the next one.
    pub(crate) fn park(&self, addr: SocketAddr, channel: SecureChannel) {
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
