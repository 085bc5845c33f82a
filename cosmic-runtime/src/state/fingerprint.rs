//! The schema fingerprint: a hash of a type's structure, checked before any decoding.

use std::fmt;

use super::{Migratable, SchemaBuilder, SchemaError, VersionTable};

/// A 64-bit hash of a type's canonical shape (names, order and shapes of fields and variants,
/// nested types' definitions and versions).
///
/// The same on every architecture and build for the same source; different whenever the
/// portable encoding would differ.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// Hashes canonical schema bytes (XXH3-64, a fixed, portable algorithm).
    pub(crate) fn of_canonical(bytes: &[u8]) -> Fingerprint {
        Fingerprint(xxhash_rust::xxh3::xxh3_64(bytes))
    }

    /// The fingerprint of `T` as this build writes it, with the version of every named type.
    pub fn current<T: Migratable>() -> (Fingerprint, VersionTable) {
        let (fingerprint, versions, _) = Fingerprint::current_with_layout::<T>();
        (fingerprint, versions)
    }

    /// [`current`](Self::current), and the layout fingerprint of the types `T`'s native
    /// encoding stores as raw memory ([`SchemaBuilder::layout_fingerprint`]).
    pub(crate) fn current_with_layout<T: Migratable>() -> (Fingerprint, VersionTable, u64) {
        let mut schema = SchemaBuilder::current();
        let root = T::shape(&mut schema);
        let mut versions = schema.version_table();
        // Std roots (`Vec<u8>`, `u64`) are not named types; the header still lists them.
        versions
            .entry(T::type_name().into_owned())
            .or_insert(T::VERSION);
        (
            schema.fingerprint(&root),
            versions,
            schema.layout_fingerprint(),
        )
    }

    /// The fingerprint that an image of `T` written with the versions in `written` must carry.
    ///
    /// Fails when `written` names a version newer than this build knows.
    pub fn written<T: Migratable>(written: &VersionTable) -> Result<Fingerprint, SchemaError> {
        let mut schema = SchemaBuilder::written(written.clone());
        let root = T::shape(&mut schema);
        match schema.errors().first() {
            Some(error) => Err(error.clone()),
            None => Ok(schema.fingerprint(&root)),
        }
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:016x})", self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
