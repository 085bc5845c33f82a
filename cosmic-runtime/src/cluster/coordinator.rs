//! The [`Coordinator`]: what the hosts of a cluster agree on through a service they all reach.
//!
//! Three facts live in it, and nowhere else:
//! - **membership**: each live host holds a *lease* (a name, an incarnation, a time to live) and
//!   publishes its address, public key, load and the task types it can run. A host that stops
//!   renewing its lease is dead once the lease runs out.
//! - **ownership**: each task has one owner (or none, once the owner's lease is gone), and a
//!   *fencing token*, a number that grows with every change of owner. Every change is a
//!   compare-and-set on the token, so of two hosts acting on one task only the one holding the
//!   newest token succeeds.
//! - **the current checkpoint** of each task: a key in the shared store (see
//!   [`layout`](super::layout)), made current only by the owner holding the newest token. A
//!   checkpoint written by a host that has lost the task never becomes current.
//!
//! The coordinator's transaction is the commit point of a move ([`Coordinator::transfer`]), a
//! takeover ([`Coordinator::take_over`]) and an ending ([`Coordinator::finish`]); the shared
//! store only holds bytes under keys that are never reused, so it needs no conditional writes.
//!
//! Trust is not membership: a host's public key is trusted by an operator's act
//! ([`Coordinator::trust`], `cosmic host add`), never by joining. Hosts only exchange tasks with
//! members whose published key is the trusted one.
//!
//! Two implementations: [`FolderCoordinator`](super::FolderCoordinator) (one machine, a shared
//! folder, nothing to install) and, with the `etcd` feature, `EtcdCoordinator`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::task::TaskId;
use crate::transport::PublicKey;

/// A fencing token: grows with every change of a task's owner (a move, a takeover, a release,
/// the end). Tokens of one task are totally ordered; tokens of different tasks are unrelated.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Token(pub u64);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A checkpoint in the shared store: its key (never reused, see
/// [`layout::checkpoint_key`](super::layout::checkpoint_key)) and the steps it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// The store key of the image.
    pub key: String,
    /// Steps the task had completed when it was captured.
    pub steps: u64,
}

/// What a host publishes about its load with every renewal of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct HostLoad {
    /// Tasks running or ready to run here (not paused).
    pub runnable: u32,
    /// Tasks this host runs at full speed at once (its share of CPUs, configured).
    pub capacity: u32,
    /// Steps completed per second over the last interval, all tasks together.
    pub steps_per_sec: f64,
    /// CPU use of the host process over the last interval, in cores (1.0 = one core busy).
    pub cpu: f64,
}

/// What a host publishes about itself in its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Its name (a [`NodeName`](crate::transport::NodeName)).
    pub name: String,
    /// The address peers reach it at.
    pub addr: String,
    /// Its public key (peers still talk to it only if an operator trusted this key).
    pub public_key: PublicKey,
    /// Its load at the last renewal.
    pub load: HostLoad,
    /// The task types it can run (by type name): a move or takeover picks only hosts that can.
    pub types: Vec<String>,
    /// Leaving: it takes no new tasks.
    pub draining: bool,
}

/// A live member, as the coordinator lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// What it published.
    pub record: MemberRecord,
    /// Its lease's incarnation (see [`Lease::incarnation`]).
    pub incarnation: u64,
}

/// A host's lease: proof of membership, renewed with [`Coordinator::keep_alive`].
///
/// A host may run tasks only while its lease holds from its own point of view: until
/// `sent + ttl` where `sent` is when it sent the last renewal that succeeded. The coordinator
/// counts the time to live from when it received that renewal, which is later, so the host
/// always gives up first (on one clock; see the failover promise in `docs/architecture.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The host's name.
    pub host: String,
    /// Which lease of that name: a host that restarts gets a new incarnation, and whatever its
    /// previous incarnation owned is orphaned.
    pub incarnation: u64,
    /// How long the lease lasts without a renewal.
    pub ttl: Duration,
}

/// Who owns a task now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// A live host's incarnation.
    Host {
        /// The host.
        host: String,
        /// Its lease's incarnation.
        incarnation: u64,
    },
    /// Nobody: the owner's lease ended (it died, was cut off, or left), or it released the task.
    /// Any live host that can run it may take it over.
    Orphaned,
    /// The task ended and its outcome is recorded at this store key. Final.
    Finished {
        /// The outcome record's key (see [`layout::outcome_key`](super::layout::outcome_key)).
        outcome: String,
    },
}

/// A task as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEntry {
    /// The task.
    pub task: TaskId,
    /// Its type name (what a host needs registered to run it).
    pub type_name: String,
    /// Its output's type name.
    pub output_type: String,
    /// Its owner.
    pub owner: Owner,
    /// The newest token.
    pub token: Token,
    /// Its current checkpoint.
    pub current: CheckpointRef,
}

/// One entry of a [`Coordinator::commit_checkpoints`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointCommit {
    /// The task.
    pub task: TaskId,
    /// The token the writer holds.
    pub token: Token,
    /// The checkpoint to make current.
    pub checkpoint: CheckpointRef,
}

/// Why a change to a task was refused: the caller does not hold the newest token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task} is no longer ours: its token is now {token}, owned by {owner:?}")]
pub struct Fenced {
    /// The task.
    pub task: TaskId,
    /// Its newest token.
    pub token: Token,
    /// Its owner now.
    pub owner: Owner,
}

/// What went wrong talking to the coordinator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The coordinator could not be reached or did not answer in time. Nothing is known of
    /// whether the operation took effect (a later read tells).
    #[error("the coordinator is unavailable ({what})")]
    Unavailable {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lease ran out (or was revoked): this host is no longer a member, and must stop its
    /// tasks and join again.
    #[error("the lease of `{host}` (incarnation {incarnation}) has ended")]
    LeaseEnded {
        /// The host.
        host: String,
        /// The incarnation that ended.
        incarnation: u64,
    },
    /// Another live lease holds this name (the same host still running, or a misconfiguration).
    #[error("host name `{host}` is held by a live lease (incarnation {incarnation}); it ends within {expires_in:?} if that host is gone")]
    NameInUse {
        /// The name.
        host: String,
        /// The live incarnation.
        incarnation: u64,
        /// How long until it ends without renewal.
        expires_in: Duration,
    },
    /// The change was refused: the caller does not hold the task's newest token.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// The task is already known (a spawn with a reused id).
    #[error("task {task} already exists in the coordinator")]
    TaskExists {
        /// The task.
        task: TaskId,
    },
    /// The coordinator does not know this task.
    #[error("task {task} is unknown to the coordinator")]
    NoSuchTask {
        /// The task.
        task: TaskId,
    },
    /// A move named a host that is not a live member, or one that is leaving.
    #[error("host `{host}` is not a live member of the cluster (or not one its operator trusted)")]
    NoSuchMember {
        /// The host.
        host: String,
    },
    /// Take over refused: the task has a live owner (or ended).
    #[error("task {task} is not orphaned (owner: {owner:?})")]
    NotOrphaned {
        /// The task.
        task: TaskId,
        /// Its owner.
        owner: Owner,
    },
    /// The coordinator holds something that does not parse: named, never guessed at.
    #[error("the coordinator's record `{what}` is damaged: {detail}")]
    Damaged {
        /// Which record.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A local I/O error (the folder coordinator).
    #[error("failed to {operation} {}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// Where.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An argument that cannot be right (an empty name, a zero time to live).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// The service the hosts of a cluster agree through. See the module docs for the model.
///
/// Every method that changes a task takes the caller's [`Lease`] and is refused with
/// [`CoordinatorError::LeaseEnded`] if that lease is not live, so a host that was paused past
/// its lease cannot change anything when it wakes.
#[async_trait]
pub trait Coordinator: Send + Sync + fmt::Debug + 'static {
    // --- membership ---

    /// Joins with a new lease of `ttl` (a new incarnation). Refused with `NameInUse` while
    /// another live lease holds the name. Everything owned by earlier incarnations of the
    /// name is orphaned from now on (if it was not already).
    async fn join(&self, record: &MemberRecord, ttl: Duration) -> Result<Lease, CoordinatorError>;

    /// Renews the lease and publishes `record` (its load). `LeaseEnded` once the lease ran out
    /// or was revoked: it can never be renewed again.
    async fn keep_alive(
        &self,
        lease: &Lease,
        record: &MemberRecord,
    ) -> Result<(), CoordinatorError>;

    /// Ends the lease at once: every task the host still owns is orphaned now, so others take
    /// it over without waiting for the lease to run out.
    async fn leave(&self, lease: &Lease) -> Result<(), CoordinatorError>;

    /// The live members.
    async fn members(&self) -> Result<Vec<Member>, CoordinatorError>;

    // --- trust (an operator's act) ---

    /// Trusts `key` as the public key of host `name` (replacing any key trusted for it).
    async fn trust(&self, name: &str, key: PublicKey) -> Result<(), CoordinatorError>;

    /// Every trusted host and key.
    async fn trusted(&self) -> Result<Vec<(String, PublicKey)>, CoordinatorError>;

    // --- tasks ---

    /// Records a new task owned by `lease`'s host, with its first checkpoint current.
    /// `TaskExists` if the id is taken.
    async fn create(
        &self,
        lease: &Lease,
        task: TaskId,
        type_name: &str,
        output_type: &str,
        first: CheckpointRef,
    ) -> Result<Token, CoordinatorError>;

    /// One task, or None if unknown (or forgotten).
    async fn task(&self, task: TaskId) -> Result<Option<TaskEntry>, CoordinatorError>;

    /// Every task known (including finished ones not yet forgotten).
    async fn tasks(&self) -> Result<Vec<TaskEntry>, CoordinatorError>;

    /// Makes each checkpoint current if its writer still holds the task's newest token: one
    /// verdict per entry, in order. Batched: a host commits all its tasks' new checkpoints of
    /// an interval in a few round trips, not one per task.
    async fn commit_checkpoints(
        &self,
        lease: &Lease,
        commits: &[CheckpointCommit],
    ) -> Result<Vec<Result<(), Fenced>>, CoordinatorError>;

    /// The commit point of a move: if the caller holds `token`, `to` (a live, not draining
    /// member) becomes the owner with `checkpoint` current. Returns the new token.
    async fn transfer(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        to: &str,
        checkpoint: CheckpointRef,
    ) -> Result<Token, CoordinatorError>;

    /// The commit point of a takeover: if the task is orphaned and its token is still `seen`,
    /// the caller becomes the owner. Returns the new token and the current checkpoint to
    /// resume from.
    async fn take_over(
        &self,
        lease: &Lease,
        task: TaskId,
        seen: Token,
    ) -> Result<(Token, CheckpointRef), CoordinatorError>;

    /// Gives a task up (the caller cannot run it: type unknown, checkpoint unreadable): it is
    /// orphaned, for another host to take over.
    async fn release(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
    ) -> Result<Token, CoordinatorError>;

    /// The end of a task: if the caller holds `token`, the outcome recorded at store key
    /// `outcome` becomes the task's, once and for all. Repeating the same call after it
    /// succeeded is Ok.
    async fn finish(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        outcome: &str,
    ) -> Result<(), CoordinatorError>;

    /// Forgets a finished task (retention): its entry is removed. Refused for unfinished ones.
    async fn forget(&self, task: TaskId) -> Result<(), CoordinatorError>;
}
