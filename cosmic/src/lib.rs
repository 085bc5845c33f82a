//! cosmic: cooperative, migratable tasks.
//!
//! A task's whole state lives in one struct that derives [`Migratable`]. cosmic captures that
//! state as a portable *image* (postcard, with a schema fingerprint, versions and checksums) at
//! safe points between steps, and restores it on any host: x86_64 or ARM, little- or
//! big-endian, 32- or 64-bit.
//!
//! ```
//! use std::collections::BTreeMap;
//! use cosmic::Migratable;
//!
//! #[derive(Migratable, Debug, PartialEq)]
//! #[migratable(version = 2)]
//! struct Simulation {
//!     step: u64,
//!     grid: Vec<f64>,
//!     names: BTreeMap<String, u32>,
//!     phase: Phase,
//!     #[migratable(since = 2, default)]
//!     label: String,
//! }
//!
//! #[derive(Migratable, Debug, PartialEq)]
//! enum Phase { Warmup, Run { rate: f32 }, Done(u32) }
//!
//! let state = Simulation {
//!     step: 3,
//!     grid: vec![0.0, 1.5],
//!     names: BTreeMap::from([("x".to_owned(), 1)]),
//!     phase: Phase::Run { rate: 0.5 },
//!     label: "demo".to_owned(),
//! };
//! let bytes = cosmic::image::capture(&state)?;
//! let restored: Simulation = cosmic::image::restore(&bytes)?;
//! assert_eq!(restored, state);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Generic code over a derived generic type bounds its parameters by [`MigratableField`], the
//! bound the derive puts on them:
//!
//! ```
//! use cosmic::{Migratable, MigratableField};
//!
//! #[derive(Migratable, Debug, PartialEq)]
//! struct Pair<T> { left: T, right: T }
//!
//! fn round_trip<T: MigratableField + std::fmt::Debug + PartialEq>(pair: &Pair<T>) -> Pair<T> {
//!     let bytes = cosmic::image::capture(pair).expect("capture");
//!     cosmic::image::restore(&bytes).expect("restore")
//! }
//!
//! let pair = Pair { left: 1u32, right: 2 };
//! assert_eq!(round_trip(&pair), pair);
//! ```
//!
//! # Running tasks
//! A task implements [`Task`]: one async step at a time. The [`Runtime`] calls it again and
//! again; between two steps is a safe point where it checkpoints, pauses or cancels the task.
//!
//! ```
//! use cosmic::prelude::*;
//!
//! #[derive(Migratable)]
//! struct Collatz { n: u64, steps: u32 }
//!
//! #[async_trait]
//! impl Task for Collatz {
//!     type Output = u32;
//!
//!     async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u32>, TaskError> {
//!         if self.n == 1 {
//!             return Ok(Step::Done(self.steps));
//!         }
//!         self.n = if self.n % 2 == 0 { self.n / 2 } else { 3 * self.n + 1 };
//!         self.steps += 1;
//!         Ok(Step::Continue)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = cosmic::Runtime::builder()
//!     .host("alpha")
//!     .store(cosmic::MemoryStore::new()) // cosmic::FileStore::open(dir)? to survive crashes
//!     .checkpoint(cosmic::Policy::every_steps(10))
//!     .build()
//!     .await?;
//! let handle = rt.spawn(Collatz { n: 27, steps: 0 }).await?;
//! assert_eq!(handle.join().await?, 111);
//! # Ok(()) }
//! ```
//!
//! # Moving tasks between hosts
//! A runtime that listens for peers is a host; hosts holding the same cluster key move tasks
//! to each other over an encrypted, authenticated channel. The handle keeps working after the
//! move: `join` follows the task to wherever it finishes.
//!
//! ```
//! use cosmic::prelude::*;
//!
//! #[derive(Migratable)]
//! struct Countdown { left: u32 }
//!
//! #[async_trait]
//! impl Task for Countdown {
//!     type Output = String;
//!
//!     async fn step(&mut self, cx: &mut StepContext) -> Result<Step<String>, TaskError> {
//!         tokio::time::sleep(std::time::Duration::from_millis(1)).await;
//!         self.left -= 1;
//!         if self.left == 0 {
//!             return Ok(Step::Done(format!("finished on {}", cx.host())));
//!         }
//!         Ok(Step::Continue)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In real deployments: ClusterKey::from_file or from_env, never a literal.
//! let key = cosmic::ClusterKey::from_bytes(b"an example key of at least 32 bytes")?;
//! // Each host proves its name with a key pair of its own (in real deployments:
//! // HostKey::load_or_create or from_file); peers trust each other's public keys by name.
//! let (alpha_key, beta_key) = (cosmic::HostKey::generate()?, cosmic::HostKey::generate()?);
//! let host = |name: &str, own: &cosmic::HostKey, peer: &str, theirs: &cosmic::HostKey| {
//!     cosmic::Runtime::builder()
//!         .host(name)
//!         .store(cosmic::MemoryStore::new())
//!         .listen("127.0.0.1:0")
//!         .cluster_key(key.clone())
//!         .host_key(own.clone())
//!         .trust_peer(peer, theirs.public_key())
//!         .register::<Countdown>()
//!         .build()
//! };
//! let alpha = host("alpha", &alpha_key, "beta", &beta_key).await?;
//! let beta = host("beta", &beta_key, "alpha", &alpha_key).await?;
//! alpha.add_peer("beta", beta.local_addr().unwrap())?;
//!
//! let handle = alpha.spawn(Countdown { left: 50 }).await?;
//! handle.migrate_to("beta").await?;
//! assert_eq!(handle.status(), cosmic::TaskStatus::Moved("beta".into()));
//! assert_eq!(handle.join().await?, "finished on beta");
//! # Ok(()) }
//! ```
//!
//! # What moves and what does not
//! Only the struct moves. Locals inside a step, open files and sockets, threads and channels
//! stay behind; the derive refuses such types at compile time with an error saying why. After
//! a crash a task resumes from its last durable checkpoint, so a step that ran after that
//! checkpoint runs again: keep a step's effects outside the struct idempotent.
#![warn(missing_docs, unreachable_pub)]

/// `bytemuck`, whose derives (`Pod`, `Zeroable`, `NoUninit`, `CheckedBitPattern`) make a type an
/// element of `#[migratable(native)]` fields; write `#[bytemuck(crate = "cosmic::bytemuck")]`
/// beside them.
pub use bytemuck;
#[cfg(feature = "derive")]
#[doc = include_str!("derive.md")]
pub use cosmic_macros::Migratable;
pub use cosmic_runtime::image;
pub use cosmic_runtime::state::{Migratable, MigratableField, NativeElement};

pub use async_trait::async_trait;
pub use cosmic_runtime::checkpoint::{CheckpointStore, FileStore, MemoryStore, Policy};
/// Checkpoints on S3-compatible object storage (the `s3` feature).
#[cfg(feature = "s3")]
pub use cosmic_runtime::checkpoint::{S3Config, S3Store};
pub use cosmic_runtime::runtime::{Builder, DrainReport, MigrateError, Runtime, TaskHandle};
pub use cosmic_runtime::task::{Step, StepContext, Task, TaskError, TaskId, TaskStatus};
pub use cosmic_runtime::transport::{ClusterKey, HostKey, PublicKey};
pub use cosmic_runtime::ErrorChain;

/// Checkpoint policies, stores and the layout of tasks in a store.
pub mod checkpoint {
    pub use cosmic_runtime::checkpoint::*;
}

/// Clusters: a coordinator (membership, ownership with fencing tokens, current checkpoints),
/// failover, load balancing, leaving on purpose, and a read-only view for operators.
pub mod cluster {
    pub use cosmic_runtime::cluster::*;
}

/// The runtime's builder, handles, errors and statistics.
pub mod runtime {
    pub use cosmic_runtime::runtime::*;
}

/// The secure channel between hosts (cluster key, host keys, Noise handshake, framed messages)
/// and an operator's requests to a cluster member (`request_move`, `request_drain`).
pub mod transport {
    pub use cosmic_runtime::transport::*;
}

/// Tasks: the trait, steps, ids and statuses.
pub mod task {
    pub use cosmic_runtime::task::*;
}

/// Schemas, fingerprints and versions. (The registry of types by wire name is in [`image`].)
pub mod state {
    pub use cosmic_runtime::state::{
        Fingerprint, Migratable, MigratableField, NativeElement, SchemaBuilder, SchemaError, Shape,
        VersionTable,
    };
}

/// The names most programs need: `use cosmic::prelude::*;`.
pub mod prelude {
    pub use crate::{async_trait, Migratable, Policy, Runtime, Step, StepContext, Task, TaskError};
}

/// The README's Rust blocks, compiled (and those not marked `no_run` run) as doctests, so that
/// the README cannot drift from the API. Only under `cfg(doctest)`: not in the docs nor the
/// build.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Items used by the code `#[derive(Migratable)]` generates. Not a stable API: it may change
/// in any release.
#[doc(hidden)]
pub mod __private {
    pub use cosmic_runtime::image::Registration;
    pub use cosmic_runtime::state::{
        generic_type_name, written_version, BulkSlice, BulkVec, DepthGuard, FlatProbe, Migratable,
        MigratableField, NativeSlice, NativeVec, ProbeFlat, ProbeNested, SchemaBuilder, Shape,
        ShapeParts,
    };
    pub use inventory;
    pub use serde;
    pub use std::borrow::Cow;
    pub use std::format;
    pub use std::string::{String, ToString};
}
