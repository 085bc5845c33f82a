//! Portable logical state: the [`Migratable`] trait, the structural [`Shape`] of a type, schema
//! fingerprints and per-version decoding. (The registry that finds a type by its wire name
//! decodes images, so it is in `image`.)

mod bulk;
mod depth;
mod fingerprint;
mod flat;
mod migratable;
mod native;
mod schema;
mod shape;
mod std_migratable;
mod versions;

pub use fingerprint::Fingerprint;
pub use migratable::{Migratable, MigratableField};
pub use native::NativeElement;
pub use schema::{SchemaBuilder, SchemaError, VersionTable};
pub use shape::Shape;

// What the derive's generated code and the image reader use: public because generated code
// reaches it (through `cosmic::__private`), hidden because no one writes it by hand.
#[doc(hidden)]
pub use bulk::{BulkElement, BulkSlice, BulkVec};
#[doc(hidden)]
pub use depth::{with_max_depth, DepthExceeded, DepthGuard, DEFAULT_MAX_DEPTH};
#[doc(hidden)]
pub use flat::{DecodesFlat, FlatProbe, ProbeFlat, ProbeNested};
pub(crate) use native::with_native_encoding;
#[doc(hidden)]
pub use native::{native_active, NativeSlice, NativeVec};
#[doc(hidden)]
pub use shape::{generic_type_name, ShapeParts};
#[doc(hidden)]
pub use versions::{decode_with_versions, written_version};
