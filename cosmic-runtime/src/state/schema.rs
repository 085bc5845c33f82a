//! Collecting the definitions of every named type that a root type reaches, at the versions an
//! image was written with (or at the current versions when writing).

use std::collections::BTreeMap;

use super::{Fingerprint, Migratable};

/// The version of every named type in an image: type name to version.
pub type VersionTable = BTreeMap<String, u32>;

/// A version problem found while walking a schema; see [`SchemaBuilder::errors`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The image holds a type at a version newer than this build knows.
    #[error("type `{type_name}` is at version {image_version} in the image, but this build only knows versions up to {known_version}")]
    VersionTooNew {
        /// The type's wire name.
        type_name: String,
        /// The version the image was written with.
        image_version: u32,
        /// The newest version this build knows.
        known_version: u32,
    },
    /// Versions start at 1; 0 is never written.
    #[error("type `{type_name}` has version 0 in the image; versions start at 1")]
    VersionZero {
        /// The type's wire name.
        type_name: String,
    },
}

/// One named type's definition at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TypeDefinition {
    version: u32,
    definition: String,
}

/// Walks a type's [`Shape`](super::Shape), defining each named type once.
///
/// Built with [`SchemaBuilder::current`] to describe what this build writes, or with
/// [`SchemaBuilder::written`] to describe what an image of an older version holds.
#[derive(Debug)]
pub struct SchemaBuilder {
    written: Option<VersionTable>,
    definitions: BTreeMap<String, TypeDefinition>,
    errors: Vec<SchemaError>,
}

impl SchemaBuilder {
    /// A builder that describes every type at its current version.
    pub fn current() -> Self {
        SchemaBuilder {
            written: None,
            definitions: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    /// A builder that describes types at the versions of `written` (an image's version table);
    /// types absent from it are described at their current version.
    pub fn written(written: VersionTable) -> Self {
        SchemaBuilder {
            written: Some(written),
            ..SchemaBuilder::current()
        }
    }

    /// Defines the named type `T` (once) and returns the reference `@name` to it.
    ///
    /// Called from the `Shape` impl that `#[derive(Migratable)]` writes.
    pub fn named<T: Migratable>(&mut self) -> String {
        let name = T::type_name();
        if !self.definitions.contains_key(name.as_ref()) {
            let version = self
                .written
                .as_ref()
                .and_then(|table| table.get(name.as_ref()).copied())
                .unwrap_or(T::VERSION);
            // The placeholder stops recursive types from recursing forever.
            self.definitions.insert(
                name.to_string(),
                TypeDefinition {
                    version,
                    definition: String::new(),
                },
            );
            let definition = if version == 0 {
                self.errors.push(SchemaError::VersionZero {
                    type_name: name.to_string(),
                });
                String::new()
            } else if version > T::VERSION {
                self.errors.push(SchemaError::VersionTooNew {
                    type_name: name.to_string(),
                    image_version: version,
                    known_version: T::VERSION,
                });
                String::new()
            } else {
                T::shape_at(version, self)
            };
            if let Some(slot) = self.definitions.get_mut(name.as_ref()) {
                slot.definition = definition;
            }
        }
        format!("@{name}")
    }

    /// The version problems met so far (a type newer than this build, version 0).
    pub fn errors(&self) -> &[SchemaError] {
        &self.errors
    }

    /// The version of every named type defined so far.
    pub fn version_table(&self) -> VersionTable {
        self.definitions
            .iter()
            .map(|(name, def)| (name.clone(), def.version))
            .collect()
    }

    /// The fingerprint of `root` (an expression this builder returned) with every definition
    /// collected so far. Equal on every architecture and build for equal shapes.
    pub fn fingerprint(&self, root: &str) -> Fingerprint {
        let mut canonical = Vec::with_capacity(256);
        push_field(&mut canonical, root.as_bytes());
        for (name, def) in &self.definitions {
            push_field(&mut canonical, name.as_bytes());
            canonical.extend_from_slice(&def.version.to_le_bytes());
            push_field(&mut canonical, def.definition.as_bytes());
        }
        Fingerprint::of_canonical(&canonical)
    }

    /// The canonical text of every definition, for error messages and debugging.
    pub fn describe(&self, root: &str) -> String {
        let mut out = root.to_owned();
        for (name, def) in &self.definitions {
            out.push_str(&format!("\n@{name} v{}: {}", def.version, def.definition));
        }
        out
    }
}

/// Length-prefixes a part so that no two different definition lists hash the same bytes.
fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}
