//! Restoring state from an image: every check before any byte of the body is believed.

use std::any::Any;

use super::examine::examine_with_limits;
use super::format::{Encoding, CHECKSUM_LEN};
use super::header::{self, ImageHeader};
use super::isa::Isa;
use super::writer::TypePlan;
use super::{DecodeLimits, RestoreError};
use crate::state::{self, decode_with_versions, Fingerprint, Migratable};

/// State restored by [`restore_any`], typed only at run time.
#[derive(Debug)]
pub struct RestoredState {
    /// The image's header.
    pub header: ImageHeader,
    /// The state; downcast it to the type named in the header.
    pub state: Box<dyn Any + Send>,
}

/// Parses and verifies the header, the image's length and both checksums, and that this build
/// decodes its encoding, without decoding the body. [`examine`](super::examine) reports on a
/// damaged body (and keeps the header) rather than failing.
pub fn inspect(bytes: &[u8]) -> Result<ImageHeader, RestoreError> {
    verify(bytes, &DecodeLimits::DEFAULT).map(|(header, _)| header)
}

/// Parses and checks the header only (its own checksum included), not the body: for callers
/// that verify the body next anyway, or that wrote it themselves a moment ago.
pub(crate) fn header_only(bytes: &[u8]) -> Result<ImageHeader, RestoreError> {
    header::parse(bytes, &DecodeLimits::DEFAULT)
}

/// Restores a `T` from an image, with the default [`DecodeLimits`].
///
/// Refuses, with an error naming the cause, any image that is not exactly a checksummed image
/// of `T` written by this version of `T`'s code or an older one.
pub fn restore<T: Migratable>(bytes: &[u8]) -> Result<T, RestoreError> {
    restore_with_limits(bytes, &DecodeLimits::DEFAULT)
}

/// Restores a `T` from an image under the given limits.
pub fn restore_with_limits<T: Migratable>(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<T, RestoreError> {
    let (header, body) = verify(bytes, limits)?;
    decode_body(&header, body, limits)
}

/// Restores whatever registered type the image holds, found by its wire name.
pub fn restore_any(bytes: &[u8]) -> Result<RestoredState, RestoreError> {
    let (header, body) = verify(bytes, &DecodeLimits::DEFAULT)?;
    let registration =
        super::lookup_type(&header.type_name).ok_or_else(|| RestoreError::UnknownType {
            type_name: header.type_name.clone(),
        })?;
    let state = (registration.decode)(&header, body)?;
    Ok(RestoredState { header, state })
}

/// Checks everything but the body's meaning: header, lengths, checksums. (A native image's
/// guard needs the type's layout: [`decode_body`] checks it.)
fn verify<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
) -> Result<(ImageHeader, &'a [u8]), RestoreError> {
    let header = examine_with_limits(bytes, limits)?.into_result()?;
    let body = &bytes[header.header_len..bytes.len() - CHECKSUM_LEN];
    Ok((header, body))
}

/// Decodes a verified body as a `T`, after checking type, versions and fingerprint.
pub(crate) fn decode_body<T: Migratable>(
    header: &ImageHeader,
    body: &[u8],
    limits: &DecodeLimits,
) -> Result<T, RestoreError> {
    let all_current = check_schema::<T>(header)?;
    if header.encoding == Encoding::Native {
        check_native_image::<T>(header)?;
    }
    decode_checked(header, body, limits, all_current)
}

/// Whether an image with this header would decode as a `T` here: its schema
/// ([`check_schema`]) and, for a native image, its writer and layout. How a migration offer
/// is judged before any byte of the image moves. Returns whether every version is current.
pub(crate) fn check_offer<T: Migratable>(header: &ImageHeader) -> Result<bool, RestoreError> {
    let all_current = check_schema::<T>(header)?;
    if header.encoding == Encoding::Native {
        check_native_image::<T>(header)?;
    }
    Ok(all_current)
}

/// Checks that a native image of `T` was written by a host whose memory this host can read as
/// its own: same architecture, byte order, pointer width, build and layout of `T`.
pub(crate) fn check_native_image<T: Migratable>(header: &ImageHeader) -> Result<(), RestoreError> {
    let plan = TypePlan::of::<T>();
    super::check_native(&header.isa, header.layout, &Isa::host(), plan.layout).map_err(|mismatch| {
        RestoreError::NativeMismatch {
            type_name: header.type_name.clone(),
            mismatch,
        }
    })
}

/// Checks that an image with this header is one this build can decode as a `T`: same type,
/// a version it knows, the fingerprint those versions must have. Returns whether every
/// version is the current one. (Also how a migration offer is judged before any byte moves.)
pub(crate) fn check_schema<T: Migratable>(header: &ImageHeader) -> Result<bool, RestoreError> {
    // The type's name, current versions and fingerprint are computed once per type.
    let plan = TypePlan::of::<T>();
    let current = &plan.header;
    if header.type_name != current.type_name {
        return Err(RestoreError::TypeMismatch {
            expected: current.type_name.clone(),
            found: header.type_name.clone(),
        });
    }
    let too_new = |source| RestoreError::VersionTooNew {
        type_name: header.type_name.clone(),
        source,
    };
    if header.type_version > T::VERSION {
        return Err(too_new(state::SchemaError::VersionTooNew {
            type_name: header.type_name.clone(),
            image_version: header.type_version,
            known_version: T::VERSION,
        }));
    }
    let all_current = current.versions == header.versions;
    let expected = if all_current {
        plan.written_at_current.clone()
    } else {
        Fingerprint::written::<T>(&header.versions)
    }
    .map_err(|source| match source {
        state::SchemaError::VersionTooNew { .. } => too_new(source),
        _ => RestoreError::UnsupportedSchema {
            type_name: header.type_name.clone(),
            source,
        },
    })?;
    if expected != header.fingerprint {
        return Err(super::schema_mismatch::mismatch::<T>(header, expected));
    }
    Ok(all_current)
}

fn decode_checked<T: Migratable>(
    header: &ImageHeader,
    body: &[u8],
    limits: &DecodeLimits,
    all_current: bool,
) -> Result<T, RestoreError> {
    let native = header.encoding == Encoding::Native;
    let ((decoded, too_deep), rejection) = state::with_native_encoding(native, || {
        decode_with_versions(&header.versions, all_current, || {
            state::with_max_depth(limits.max_depth, || postcard::take_from_bytes::<T>(body))
        })
    });
    let (state, rest) = decoded.map_err(|source| {
        if let Some(reason) = rejection {
            RestoreError::NativeInvalid {
                type_name: header.type_name.clone(),
                reason,
            }
        } else if too_deep {
            RestoreError::TooDeep {
                type_name: header.type_name.clone(),
                limit: limits.max_depth,
            }
        } else if header.isa.pointer_width > Isa::host().pointer_width
            && source == postcard::Error::SerdeDeCustom
            && TypePlan::of::<T>().pointer_sized
        {
            // serde refuses a `usize`/`isize` that does not fit with a message postcard drops:
            // name the likely cause where it can be it (a wider writer, such fields present).
            RestoreError::WiderThanHost {
                type_name: header.type_name.clone(),
                image_bits: header.isa.pointer_width,
                host_bits: Isa::host().pointer_width,
                source,
            }
        } else {
            RestoreError::Decode {
                type_name: header.type_name.clone(),
                source,
            }
        }
    })?;
    if !rest.is_empty() {
        return Err(RestoreError::BodyTrailingBytes {
            type_name: header.type_name.clone(),
            extra: rest.len() as u64,
        });
    }
    Ok(state)
}
