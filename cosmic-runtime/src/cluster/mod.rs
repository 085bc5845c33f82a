//! The cluster: hosts that agree through a [`Coordinator`] on who is alive, who owns each task
//! and which checkpoint of it is current, and that keep their tasks' checkpoints in a shared
//! store laid out by [`layout`]. On top of it, failover (the survivors take over a dead host's
//! tasks) and load balancing (busy hosts move tasks to idle ones).

mod coordinator;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod layout;

pub use coordinator::{
    CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError, Fenced, HostLoad, Lease,
    Member, MemberRecord, Owner, TaskEntry, Token,
};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdCoordinator, EtcdTls};
