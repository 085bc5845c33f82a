//! Checkpoints: when to take them ([`Policy`]), where they go ([`CheckpointStore`], with
//! [`FileStore`] as the embedded default, [`MemoryStore`] for tests and, with the `s3` feature,
//! `S3Store` on S3-compatible object storage), and how a task's
//! images and outcome are laid out in a store ([`Catalog`]).

mod attempts;
mod catalog;
mod clock;
mod entry;
mod file_store;
mod finished;
mod group_commit;
mod memory_store;
mod ownership;
mod persister;
mod policy;
#[cfg(feature = "s3")]
mod s3_store;
mod store;
mod store_meter;

pub use attempts::Attempts;
pub(crate) use catalog::{decode_outcome, encode_outcome};
pub use catalog::{CatalogError, CheckpointKey, Outcome, TaskRecord};
// The runtime's reader and writer of a store's records: public for the tests and benches.
#[doc(hidden)]
pub use catalog::Catalog;
pub use clock::{Clock, ManualClock, SystemClock};
pub use entry::CatalogEntry;
pub use file_store::FileStore;
pub use finished::FinishedEntry;
pub use memory_store::MemoryStore;
pub use ownership::EpochRecord;
pub(crate) use persister::{PersistRequest, Persister, Target as PersistTarget};
pub(crate) use policy::Schedule;
pub use policy::{daly_interval, daly_interval_secs, young_interval, Policy, PolicyError};
#[cfg(feature = "s3")]
pub use s3_store::{S3Config, S3ConfigError, S3Credentials, S3Store};
#[allow(unused_imports)] // the cluster layout checks its keys against it in tests
pub(crate) use store::validate_key;
pub use store::{BatchPut, CheckpointStore, PutMode, RemoteProblem, StoreError};
pub use store_meter::{StoreMeter, StoreWriter};
