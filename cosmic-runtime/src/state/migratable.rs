//! The trait every piece of task state implements, normally through `#[derive(Migratable)]`.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserializer, Serialize};

use super::{SchemaBuilder, Shape};

/// State that can be captured on one host and restored on another.
///
/// Implemented by `#[derive(Migratable)]`; the derive also writes the type's serde impls (a
/// positional encoding, decoded per version), its [`Shape`] and its registration. Implementing
/// it by hand is possible but the derive is the supported path.
///
/// The portable encoding is postcard: fields in declaration order, integers as varints, floats
/// as little-endian bits. It does not depend on the writer's architecture, endianness or
/// pointer width.
pub trait Migratable: Shape + Serialize + DeserializeOwned + Send + 'static {
    /// The newest version of this type's layout, the one this build writes. Starts at 1.
    const VERSION: u32;

    /// Whether images of older versions can be decoded (false for types that use their own
    /// serde impls, which know only the current layout).
    const READS_OLDER_VERSIONS: bool = true;

    /// The stable name this type travels under (set with `#[migratable(name = "...")]`,
    /// the Rust type name otherwise). Generic types append their parameters' shapes.
    fn type_name() -> Cow<'static, str>;

    /// The shape of this type's own encoding as it was at `version` (1..=`VERSION`), written as
    /// a canonical definition string; nested named types register themselves in `schema`.
    fn shape_at(version: u32, schema: &mut SchemaBuilder) -> String;

    /// Decodes the layout of `version` (1..=`VERSION`). The derived `Deserialize` impl calls
    /// this with the version the bytes were written with; `upgrade_from` chains through it.
    fn deserialize_version<'de, D: Deserializer<'de>>(
        version: u32,
        deserializer: D,
    ) -> Result<Self, D::Error>
    where
        Self: Sized;
}

/// The bounds a generic parameter of a derived `Migratable` type gets: what code that is
/// generic over such a type names in its own bounds (`fn f<T: MigratableField>(x: &Pair<T>)`;
/// the `cosmic` crate's docs show one). Every `Migratable` type, and every field type the
/// derive accepts (integers, strings, collections...), has it.
pub trait MigratableField: Shape + Serialize + DeserializeOwned + Send + 'static {}

impl<T: Shape + Serialize + DeserializeOwned + Send + 'static> MigratableField for T {}
