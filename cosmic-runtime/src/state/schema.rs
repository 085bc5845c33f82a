//! Collecting the definitions of every named type that a root type reaches, at the versions an
//! image was written with (or at the current versions when writing).

use std::collections::{BTreeMap, BTreeSet};

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
    /// A type that uses its own serde impls (`#[migratable(use_serde)]`) appears at another
    /// version than its current one: it cannot read other layouts.
    #[error("type `{type_name}` is at version {image_version} in the image, but it uses its own serde impls and reads only its current version {known_version}")]
    OnlyCurrentVersion {
        /// The type's wire name.
        type_name: String,
        /// The version the image was written with.
        image_version: u32,
        /// The only version this build reads.
        known_version: u32,
    },
    /// A sequence or map whose elements encode to no bytes at all (`Vec<()>`, a `Vec` of a
    /// struct whose fields are all skipped): its length could not be checked against the
    /// input, so a few bytes could make the decoder loop for ages.
    #[error("`{shape}` holds elements that encode to no bytes, which cannot be decoded safely; give the element a field, or use a count instead")]
    ZeroSizedElements {
        /// The collection's shape.
        shape: String,
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
    /// The in-memory layout of every element type stored as raw memory by the native
    /// encoding (`#[migratable(native)]` fields): not part of the portable fingerprint.
    native_layouts: BTreeSet<String>,
}

impl SchemaBuilder {
    /// A builder that describes every type at its current version.
    pub fn current() -> Self {
        SchemaBuilder {
            written: None,
            definitions: BTreeMap::new(),
            errors: Vec::new(),
            native_layouts: BTreeSet::new(),
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
            } else if version != T::VERSION && !T::READS_OLDER_VERSIONS {
                self.errors.push(SchemaError::OnlyCurrentVersion {
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

    /// Records an error if a collection's elements (`element` shapes, e.g. a map's key and
    /// value) all encode to no bytes; see [`SchemaError::ZeroSizedElements`].
    pub fn check_collection(&mut self, collection: &str, elements: &[&str]) {
        let mut visiting = Vec::new();
        if elements
            .iter()
            .all(|element| self.encodes_nothing(element, &mut visiting))
        {
            self.errors.push(SchemaError::ZeroSizedElements {
                shape: collection.to_owned(),
            });
        }
    }

    /// Whether a value of shape `expr` encodes to zero bytes.
    fn encodes_nothing(&self, expr: &str, visiting: &mut Vec<String>) -> bool {
        if let Some(name) = expr.strip_prefix('@') {
            // A type being defined (recursion) is not known to be empty; treat it as not.
            if visiting.iter().any(|seen| seen == name) {
                return false;
            }
            let Some(definition) = self.definitions.get(name) else {
                return false;
            };
            visiting.push(name.to_owned());
            let nothing = !definition.definition.is_empty()
                && self.encodes_nothing(&definition.definition, visiting);
            visiting.pop();
            return nothing;
        }
        if expr == "unit" {
            return true;
        }
        // A struct with no encoded fields is written `struct()` (no named parts).
        for kind in [
            "struct{",
            "struct(",
            "tuple(",
            "tuple_struct(",
            "unit_struct(",
        ] {
            if let Some(inner) = expr.strip_prefix(kind) {
                let inner = &inner[..inner.len().saturating_sub(1)];
                return split_top_level(inner).into_iter().all(|part| {
                    // Named parts are `name:shape`; names never contain `:` or brackets.
                    let shape = match (kind, part.split_once(':')) {
                        ("struct{", Some((_, shape))) => shape,
                        _ => part,
                    };
                    self.encodes_nothing(shape, visiting)
                });
            }
        }
        if let Some(inner) = expr
            .strip_prefix("array<")
            .and_then(|s| s.strip_suffix('>'))
        {
            if let Some((element, length)) = inner.rsplit_once(';') {
                return length == "0" || self.encodes_nothing(element, visiting);
            }
        }
        false
    }

    /// The problems met so far: a type newer than this build, version 0, a collection of
    /// elements that encode to nothing.
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

    /// Records the in-memory layout of `T`, an element type that the native encoding stores
    /// as raw memory. Called from the shape of [`NativeVec`](super::NativeVec).
    pub fn native_element<T: 'static>(&mut self) {
        self.native_layouts.insert(format!(
            "{}:size={}:align={}",
            std::any::type_name::<T>(),
            size_of::<T>(),
            align_of::<T>()
        ));
    }

    /// The layout fingerprint: a hash of the in-memory layout (name, size, alignment) of
    /// every type the native encoding stores as raw memory. Unlike
    /// [`fingerprint`](Self::fingerprint) it depends on the build and the machine, which is
    /// the point: a native image is only read where it is equal.
    pub fn layout_fingerprint(&self) -> u64 {
        let mut canonical = Vec::with_capacity(128);
        for layout in &self.native_layouts {
            push_field(&mut canonical, layout.as_bytes());
        }
        xxhash_rust::xxh3::xxh3_64(&canonical)
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

/// Splits `a,b<c,d>,e` at the commas outside brackets.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, ch) in text.char_indices() {
        match ch {
            '(' | '{' | '<' => depth += 1,
            ')' | '}' | '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}

/// Length-prefixes a part so that no two different definition lists hash the same bytes.
fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}
