//! The error for an image whose schema fingerprint is not what this build computes: what this
//! build's schema is at the image's versions, which versions it knows, what to do.
//!
//! Only computed on the failure path: it walks the type's shape again, once per version.

use super::{ImageHeader, RestoreError};
use crate::state::{Fingerprint, Migratable, SchemaBuilder};

/// The longest schema description put in an error (a type with thousands of fields would
/// otherwise make an unreadable message).
const MAX_DESCRIPTION: usize = 2048;
/// The most versions listed.
const MAX_KNOWN: u32 = 16;

/// [`RestoreError::FingerprintMismatch`] for `header`, whose fingerprint is not `expected`.
pub(crate) fn mismatch<T: Migratable>(header: &ImageHeader, expected: Fingerprint) -> RestoreError {
    let mut schema = SchemaBuilder::written(header.versions.clone());
    let root = T::shape(&mut schema);
    let mut this_build = schema
        .describe(&root)
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("; ");
    if this_build.is_empty() {
        this_build = root;
    }
    if this_build.len() > MAX_DESCRIPTION {
        let mut cut = MAX_DESCRIPTION;
        while !this_build.is_char_boundary(cut) {
            cut -= 1;
        }
        this_build.truncate(cut);
        this_build.push_str("...");
    }
    // The newest few versions: a type's version is a number its author picked.
    let known = (T::VERSION.saturating_sub(MAX_KNOWN - 1).max(1)..=T::VERSION)
        .filter_map(|version| {
            let mut versions = header.versions.clone();
            versions.insert(header.type_name.clone(), version);
            Fingerprint::written::<T>(&versions)
                .ok()
                .map(|fingerprint| (version, fingerprint))
        })
        .collect();
    RestoreError::FingerprintMismatch {
        type_name: header.type_name.clone(),
        version: header.type_version,
        found: header.fingerprint,
        expected,
        this_build,
        known,
    }
}
