//! The cluster: hosts that agree through a [`Coordinator`] on who is alive, who owns each task
//! and which checkpoint of it is current, and that keep their tasks' checkpoints in a shared
//! store laid out by [`layout`]. On top of it, failover (the survivors take over a dead host's
//! tasks) and load balancing (busy hosts move tasks to idle ones).

mod adopt;
pub mod balance;
mod commit;
mod config;
#[doc(hidden)]
pub mod conformance;
mod coordinator;
pub mod decide;
#[cfg(feature = "etcd")]
pub mod etcd;
mod folder;
mod host;
pub mod layout;
mod leave;
mod load;
mod ops;
mod peers;
mod scan;
mod view;

pub use balance::BalanceConfig;
pub use commit::CommitError;
pub use config::ClusterConfig;
pub use host::{ClusterEvent, ClusterEventKind};
pub(crate) use host::{ClusterHost, OwnedTask};
pub(crate) use leave::leave;
pub use leave::LeaveReport;
pub(crate) use ops::MoveResult;
pub(crate) use scan::run as scan_loop;
pub use view::{ClusterView, ViewError};

pub use coordinator::{
    CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError, Fenced, HostLoad, Lease,
    Member, MemberRecord, Owner, TaskEntry, Token,
};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdCoordinator, EtcdTls};
pub use folder::FolderCoordinator;
