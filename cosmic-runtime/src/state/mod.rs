//! Portable logical state: the [`Migratable`] trait, the structural [`Shape`] of a type, schema
//! fingerprints, per-version decoding and the registry that finds a type by its wire name.

mod bulk;
mod depth;
mod fingerprint;
mod migratable;
mod registry;
mod schema;
mod shape;
mod std_migratable;
mod versions;

pub use bulk::{BulkElement, BulkSlice, BulkVec};
pub use depth::{with_max_depth, DepthExceeded, DepthGuard, DEFAULT_MAX_DEPTH};
pub use fingerprint::Fingerprint;
pub use migratable::{Migratable, MigratableField};
pub use registry::{lookup_type, registered_types, Registration};
pub use schema::{SchemaBuilder, SchemaError, VersionTable};
pub use shape::{generic_type_name, Shape, ShapeParts};
pub use versions::{decode_with_versions, written_version};
