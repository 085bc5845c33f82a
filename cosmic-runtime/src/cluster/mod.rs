//! The cluster: hosts that agree through a [`Coordinator`] on who is alive, who owns each task
//! and which checkpoint of it is current, and that keep their tasks' checkpoints in a shared
//! store (keys laid out by `layout.rs`). On top of it, failover (the survivors take over a dead host's
//! tasks) and load balancing (busy hosts move tasks to idle ones).

mod adopt;
// Internal: public for the integration tests and benches only, hidden from the docs.
#[doc(hidden)]
pub mod balance;
mod commit;
mod config;
#[doc(hidden)]
pub mod conformance;
mod coordinator;
// Internal: public for the integration tests and benches only, hidden from the docs.
#[doc(hidden)]
pub mod decide;
mod drain;
#[cfg(feature = "etcd")]
pub mod etcd;
mod folder;
mod host;
mod host_config;
// Internal: public for the integration tests and benches only, hidden from the docs.
#[doc(hidden)]
pub mod layout;
mod leave;
mod load;
mod memory;
mod ops;
mod peers;
mod retention;
mod scan;
mod view;

pub use balance::BalanceConfig;
pub use commit::CommitError;
pub use config::ClusterConfig;
pub use drain::ClusterDrainReport;
pub(crate) use drain::{check_destination, drain, move_task};
pub use host::{ClusterEvent, ClusterEventKind};
pub(crate) use host::{ClusterHost, OwnedTask};
pub use host_config::{BalanceSettings, CoordinatorSpec, HostConfig, HostConfigError};
pub(crate) use leave::leave;
pub use leave::LeaveReport;
pub use memory::MemoryCoordinator;
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
