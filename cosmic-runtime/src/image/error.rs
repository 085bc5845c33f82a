//! Errors of capturing and restoring images.

use crate::state::{Fingerprint, SchemaError};

/// Error returned by [`capture`](super::capture) and [`ImageWriter::capture`](super::ImageWriter::capture).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The state's serde impl refused to encode it (a hand-written impl, or a map whose length
    /// is not known up front).
    #[error("failed to encode state of type `{type_name}`")]
    Encode {
        /// The type being captured.
        type_name: String,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// The state's schema cannot be encoded safely (elements that encode to nothing).
    #[error("failed to capture type `{type_name}`: its schema cannot be encoded safely")]
    Schema {
        /// The type being captured.
        type_name: String,
        /// What is wrong.
        #[source]
        source: SchemaError,
    },
    /// A name in the schema is longer than the header format allows.
    #[error(
        "failed to capture type `{type_name}`: {what} is {length} bytes, over the limit of {limit}"
    )]
    HeaderTooLarge {
        /// The type being captured.
        type_name: String,
        /// Which header field is too long.
        what: &'static str,
        /// Its length.
        length: usize,
        /// The format's limit.
        limit: usize,
    },
    /// A native image was asked for where this host cannot prove who reads it: its build id is
    /// unknown. Capture a portable image instead.
    #[error("cannot capture `{type_name}` as a native image: {reason}")]
    NativeUnavailable {
        /// The type being captured.
        type_name: String,
        /// Why.
        #[source]
        reason: super::NativeMismatch,
    },
}

/// Error returned by [`restore`](super::restore), [`restore_any`](super::restore_any) and
/// [`inspect`](super::inspect): what is wrong with the bytes, found before any of them is
/// believed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The bytes do not start with the image magic: not an image at all.
    #[error("not a cosmic image: bad magic {found:02x?}")]
    BadMagic {
        /// The first bytes found (at most eight).
        found: Vec<u8>,
    },
    /// The image was written in a format version this build does not read.
    #[error("unsupported image format version {found} (this build reads version {supported})")]
    UnsupportedFormatVersion {
        /// The version in the image.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The image ends before a part it announces.
    #[error("truncated image: the {part} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// The part that is cut short.
        part: &'static str,
        /// Bytes the part needs.
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// Bytes follow the end of the image.
    #[error("{extra} trailing bytes after the end of the image")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// A length in the image is over the reader's limit.
    #[error("{what} of {length} bytes is over the limit of {limit} bytes")]
    OverLimit {
        /// Which length.
        what: &'static str,
        /// The length the image announces.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// The header's checksum does not match its bytes.
    #[error("header checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    HeaderChecksum {
        /// The CRC-32C in the image.
        stored: u32,
        /// The CRC-32C of the bytes.
        computed: u32,
    },
    /// The body's checksum does not match its bytes.
    #[error("body checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    BodyChecksum {
        /// The CRC-32C in the image.
        stored: u32,
        /// The CRC-32C of the bytes.
        computed: u32,
    },
    /// The header's checksum is right but its contents are not well formed (written by a
    /// broken or hostile writer).
    #[error("malformed header: {reason}")]
    MalformedHeader {
        /// What is wrong.
        reason: String,
    },
    /// The image uses an encoding this reader cannot decode here.
    #[error("image of `{type_name}` uses the {encoding:?} encoding, which cannot be decoded here: {reason}")]
    UnsupportedEncoding {
        /// The type in the image.
        type_name: String,
        /// The encoding.
        encoding: super::Encoding,
        /// Why not.
        reason: &'static str,
    },
    /// A native image (the writer's memory) whose writer differs from this host in
    /// architecture, byte order, pointer width, build or layout: never decoded. Restore the
    /// task from a portable image instead.
    #[error("native image of `{type_name}` cannot be read on this host")]
    NativeMismatch {
        /// The type in the image.
        type_name: String,
        /// The first difference.
        #[source]
        mismatch: super::NativeMismatch,
    },
    /// A native image's body passed its checksum but holds bytes that are not valid values
    /// of a `native` field's element type (a `bool` that is not 0 or 1, an enum tag of no
    /// variant, a byte count that is not a whole number of elements).
    #[error("native image of `{type_name}` holds invalid data: {reason}")]
    NativeInvalid {
        /// The root type.
        type_name: String,
        /// What is wrong, and where.
        reason: String,
    },
    /// The image holds another type than the one asked for.
    #[error("image holds type `{found}`, not `{expected}`")]
    TypeMismatch {
        /// The type asked for.
        expected: String,
        /// The type in the image.
        found: String,
    },
    /// No type of this name is registered in this program.
    #[error("unknown type `{type_name}`: no `#[derive(Migratable)]` type of that name is linked into this program")]
    UnknownType {
        /// The type name in the image.
        type_name: String,
    },
    /// The image was written by newer code than this build.
    #[error("image of `{type_name}` is too new for this build")]
    VersionTooNew {
        /// The root type in the image.
        type_name: String,
        /// Which type and versions.
        #[source]
        source: SchemaError,
    },
    /// The image's schema cannot be decoded by this build for another reason than its
    /// version (a type that reads only its current version, elements that encode to nothing).
    #[error("image of `{type_name}` has a schema this build cannot decode")]
    UnsupportedSchema {
        /// The root type in the image.
        type_name: String,
        /// What is wrong.
        #[source]
        source: SchemaError,
    },
    /// The image's schema fingerprint differs from what this build expects for the versions the
    /// image names: a type changed without a version bump, or the image is foreign.
    ///
    /// The image carries only the fingerprint of its writer's schema, so the message lists
    /// this build's schema at the image's versions (every named type, its fields or variants
    /// by name and shape), the fingerprints this build knows for the type's versions, and what
    /// to do.
    #[error("schema fingerprint mismatch for `{type_name}` version {version}: image has {found}, this build expects {expected}. This build reads version {version} as: {this_build}. Versions this build knows: {}. If a field or variant was added, removed or retyped since the image was written, raise the type's `#[migratable(version = N)]` and mark added fields `#[migratable(since = N, default)]` (removed ones `until`), so that older images keep their layout", known_list(.known))]
    FingerprintMismatch {
        /// The root type.
        type_name: String,
        /// The root type's version in the image.
        version: u32,
        /// The fingerprint in the image.
        found: Fingerprint,
        /// The fingerprint this build computes.
        expected: Fingerprint,
        /// This build's schema at the image's versions: each named type with its version and
        /// definition (`struct{name:shape,...}`, `enum{Variant:shape,...}`).
        this_build: String,
        /// The fingerprint this build computes for each version of the root type it knows
        /// (nested types at the image's versions).
        known: Vec<(u32, Fingerprint)>,
    },
    /// The body passed every check but did not decode (or a value does not fit this host, such
    /// as a `usize` over 32 bits on a 32-bit reader).
    #[error("failed to decode body of `{type_name}`")]
    Decode {
        /// The root type.
        type_name: String,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// The body, written on a host with wider pointers, holds a value this host refused: most
    /// likely a `usize` or `isize` over this host's width (a 64-bit writer's `usize` of 2^32 on
    /// a 32-bit reader), which is never cut to its low bits. postcard keeps no text for the
    /// refusal, so this names the likely cause from the two pointer widths.
    #[error("failed to decode body of `{type_name}`, written on a {image_bits}-bit host: a value was refused, most likely a usize or isize that does not fit this {host_bits}-bit host")]
    WiderThanHost {
        /// The root type.
        type_name: String,
        /// The writer's pointer width in bits.
        image_bits: u8,
        /// This host's.
        host_bits: u8,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// Named types nest deeper in the body than the reader's limit allows
    /// ([`DecodeLimits::max_depth`](super::DecodeLimits::max_depth)).
    #[error("body of `{type_name}` nests named types more than {limit} levels deep")]
    TooDeep {
        /// The root type.
        type_name: String,
        /// The limit in force.
        limit: u32,
    },
    /// The body decoded but left bytes unread.
    #[error("body of `{type_name}` has {extra} bytes left after decoding")]
    BodyTrailingBytes {
        /// The root type.
        type_name: String,
        /// How many.
        extra: u64,
    },
}

/// `1 (fingerprint), 2 (fingerprint)`.
fn known_list(known: &[(u32, Fingerprint)]) -> String {
    known
        .iter()
        .map(|(version, fingerprint)| format!("{version} ({fingerprint})"))
        .collect::<Vec<_>>()
        .join(", ")
}
