//! Code shared by the fuzz targets and the seed writer: the state types, the checks every
//! decoded image must pass, and a byte-level image writer that can forge and re-seal headers.
//!
//! Included with `#[path]` rather than built as a library so that every binary links the
//! types' `inventory` registrations for certain (`restore_any` finds types through them).

#![allow(dead_code)]

pub mod types;

use std::collections::BTreeMap;
use std::error::Error as _;

use cosmic::image::{self, DecodeLimits, RestoreError};
use cosmic::Migratable;

use types::{Counter, CounterV1, NativeState, Phase, Point, State, Tile, Tree, V1State};

// ---- the image layout (see cosmic-runtime/src/image/{format,header}.rs) --------------------

pub const MAGIC: [u8; 8] = *b"\x89CSM\r\n\x1a\n";
pub const HEADER_LEN_OFFSET: usize = 10;
pub const TYPE_VERSION_OFFSET: usize = 26;
pub const FINGERPRINT_OFFSET: usize = 30;
pub const BODY_LEN_OFFSET: usize = 38;
/// Fixed part, then the name's length, the table's length and the checksum.
pub const FIXED_HEADER_LEN: usize = 46;
pub const CHECKSUM_LEN: usize = 4;

pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(bytes)
}

/// The header length an image claims, if it has the field.
pub fn claimed_header_len(image: &[u8]) -> Option<usize> {
    let field = image.get(HEADER_LEN_OFFSET..HEADER_LEN_OFFSET + 4)?;
    Some(u32::from_le_bytes(field.try_into().ok()?) as usize)
}

/// How much of an image to make consistent again after a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Leave it as mutated.
    Nothing,
    /// Recompute the header checksum only.
    Header,
    /// Recompute both checksums.
    Checksums,
    /// Set the body length to what follows the header, then recompute both checksums.
    Everything,
}

/// Makes the checksums (and optionally the body length) of a mutated image right again, so
/// that the mutation reaches the checks behind them. Does nothing where the header length
/// field does not fit the image.
pub fn reseal(image: &mut [u8], how: Reseal) {
    if how == Reseal::Nothing {
        return;
    }
    let Some(header_len) = claimed_header_len(image) else {
        return;
    };
    if header_len < FIXED_HEADER_LEN || header_len > image.len() {
        return;
    }
    if how == Reseal::Everything {
        if let Some(body_len) = image.len().checked_sub(header_len + CHECKSUM_LEN) {
            image[BODY_LEN_OFFSET..BODY_LEN_OFFSET + 8]
                .copy_from_slice(&(body_len as u64).to_le_bytes());
        }
    }
    let crc = crc32c(&image[..header_len - CHECKSUM_LEN]);
    image[header_len - CHECKSUM_LEN..header_len].copy_from_slice(&crc.to_le_bytes());
    if matches!(how, Reseal::Checksums | Reseal::Everything) && image.len() >= header_len + 4 {
        let end = image.len() - CHECKSUM_LEN;
        let crc = crc32c(&image[header_len..end]);
        image[end..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The fields of a header, for writing forged ones.
#[derive(Debug, Clone)]
pub struct RawHeader {
    pub encoding: u8,
    pub arch: u8,
    pub endian: u8,
    pub pointer_width: u8,
    pub build_id: u64,
    pub type_name: String,
    pub type_version: u32,
    pub fingerprint: u64,
    pub versions: Vec<(String, u32)>,
}

impl RawHeader {
    /// The header of a real image, as written by an x86_64 host with build id 0 (so that
    /// images made from it are the same whichever binary makes them).
    pub fn of(header: &image::ImageHeader) -> RawHeader {
        RawHeader {
            encoding: 0,
            arch: 1,
            endian: 0,
            pointer_width: 64,
            build_id: 0,
            type_name: header.type_name.clone(),
            type_version: header.type_version,
            fingerprint: header.fingerprint.0,
            versions: header
                .versions
                .iter()
                .map(|(name, version)| (name.clone(), *version))
                .collect(),
        }
    }

    /// A whole image with this header and `body`, both checksums right.
    pub fn image(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // header length, patched below
        out.extend_from_slice(&[self.encoding, self.arch, self.endian, self.pointer_width]);
        out.extend_from_slice(&self.build_id.to_le_bytes());
        out.extend_from_slice(&self.type_version.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        push_name(&mut out, &self.type_name);
        out.extend_from_slice(&(self.versions.len() as u16).to_le_bytes());
        for (name, version) in &self.versions {
            push_name(&mut out, name);
            out.extend_from_slice(&version.to_le_bytes());
        }
        let header_len = out.len() + CHECKSUM_LEN;
        out[HEADER_LEN_OFFSET..HEADER_LEN_OFFSET + 4]
            .copy_from_slice(&(header_len as u32).to_le_bytes());
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&crc32c(body).to_le_bytes());
        out
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// Splits a valid image into its header and its body.
pub fn split(image: &[u8]) -> (image::ImageHeader, &[u8]) {
    let header = image::inspect(image).expect("a captured image must inspect");
    let body = &image[header.header_len..image.len() - CHECKSUM_LEN];
    (header, body)
}

// ---- the checks -----------------------------------------------------------------------------

/// Limits small enough that the seeds hit them.
pub const SMALL_LIMITS: DecodeLimits = DecodeLimits {
    max_header_bytes: 192,
    max_body_bytes: 96,
    ..DecodeLimits::DEFAULT
};

/// "No limit", as a caller might spell it.
pub const NO_LIMITS: DecodeLimits = DecodeLimits {
    max_header_bytes: u32::MAX,
    max_body_bytes: u64::MAX,
    ..DecodeLimits::DEFAULT
};

/// Large limits that cannot overflow `header_len + body_len + 4`.
pub const LARGE_LIMITS: DecodeLimits = DecodeLimits {
    max_header_bytes: u32::MAX,
    max_body_bytes: 1 << 62,
    ..DecodeLimits::DEFAULT
};

/// `COSMIC_FUZZ_SKIP_UNLIMITED=1` replaces [`NO_LIMITS`] by [`LARGE_LIMITS`], to keep fuzzing
/// past the known crash of `restore_with_limits` under `u64::MAX` limits (see
/// `fuzz/regressions/body_len_*.bin`) until the library is fixed.
fn unlimited() -> &'static DecodeLimits {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let skip = *SKIP.get_or_init(|| {
        std::env::var_os("COSMIC_FUZZ_SKIP_UNLIMITED").is_some_and(|v| v != "0" && !v.is_empty())
    });
    if skip {
        &LARGE_LIMITS
    } else {
        &NO_LIMITS
    }
}

/// Every error must display, with its whole source chain, without panicking.
fn exercise_error(error: &RestoreError) {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    std::hint::black_box(text);
    std::hint::black_box(format!("{error:?}"));
}

/// A restored value must capture again, and that image must restore to a value that captures
/// to the very same bytes (the encoding is a fixed point after one round).
fn recapture<T: Migratable>(value: &T) {
    let first = image::capture(value).expect("a restored state must capture again");
    let again: T = image::restore(&first).expect("a fresh capture must restore");
    let second = image::capture(&again).expect("a restored state must capture again");
    assert!(
        first == second,
        "capture -> restore -> capture changed the image"
    );
}

/// A value restored from a native image must also capture natively, and restore from that
/// image to a value that captures to the very same bytes.
fn recapture_native<T: Migratable>(value: &T) {
    let first = image::capture_native(value).expect("a restored state must capture natively");
    let again: T = image::restore(&first).expect("a fresh native capture must restore");
    let second = image::capture_native(&again).expect("a restored state must capture natively");
    assert!(
        first == second,
        "native capture -> restore -> capture changed the image"
    );
}

fn check_restore<T: Migratable>(bytes: &[u8], limits: &DecodeLimits) -> bool {
    match image::restore_with_limits::<T>(bytes, limits) {
        Ok(value) => {
            recapture(&value);
            if image::inspect(bytes).is_ok_and(|h| h.encoding == image::Encoding::Native) {
                recapture_native(&value);
            }
            true
        }
        Err(error) => {
            exercise_error(&error);
            false
        }
    }
}

/// Feeds `bytes` to every decoding entry point and checks that they agree with each other.
pub fn check_all(bytes: &[u8]) {
    let inspected = image::inspect(bytes);
    match &inspected {
        Ok(header) => {
            assert_eq!(
                header.image_len(),
                bytes.len() as u64,
                "inspect accepted a wrong length"
            );
            assert!(header.header_len <= bytes.len());
        }
        Err(error) => exercise_error(error),
    }

    let state = check_restore::<State>(bytes, &DecodeLimits::DEFAULT);
    let v1 = check_restore::<V1State>(bytes, &DecodeLimits::DEFAULT);
    for ok in [state, v1] {
        assert!(
            !ok || inspected.is_ok(),
            "restore accepted an image inspect refuses"
        );
    }
    // Under small limits nothing may succeed that fails under the defaults.
    let small = check_restore::<State>(bytes, &SMALL_LIMITS);
    assert!(
        !small || state,
        "restore succeeded under small limits but not the defaults"
    );
    if small {
        let header = inspected.as_ref().unwrap();
        assert!(header.header_len as u64 <= SMALL_LIMITS.max_header_bytes as u64);
        assert!(header.body_len <= SMALL_LIMITS.max_body_bytes);
    }
    // Raising the limits to the maximum must not change the verdict of a default-size image.
    let unlimited = check_restore::<State>(bytes, unlimited());
    assert!(
        !state || unlimited,
        "restore failed with no limits but not the defaults"
    );
    check_restore::<V1State>(bytes, &SMALL_LIMITS);

    // The state with native fields, from native and portable images alike.
    let native = check_restore::<NativeState>(bytes, &DecodeLimits::DEFAULT);
    assert!(
        !native || inspected.is_ok(),
        "restore accepted an image inspect refuses"
    );
    let native_small = check_restore::<NativeState>(bytes, &SMALL_LIMITS);
    assert!(
        !native_small || native,
        "restore succeeded under small limits but not the defaults"
    );

    // Nested types as roots of their own images.
    check_restore::<Counter>(bytes, &DecodeLimits::DEFAULT);
    check_restore::<Tree>(bytes, &DecodeLimits::DEFAULT);

    match image::restore_any(bytes) {
        Ok(restored) => {
            assert!(
                inspected.is_ok(),
                "restore_any accepted an image inspect refuses"
            );
            let name = restored.header.type_name.as_str();
            let any = restored.state;
            match name {
                "fuzz::State" => {
                    let value = any.downcast::<State>().expect("fuzz::State is a State");
                    assert!(state, "restore_any accepted a State image restore refused");
                    recapture(&*value);
                }
                "fuzz::Counter" => recapture(&*any.downcast::<Counter>().expect("Counter")),
                "fuzz::Tree" => recapture(&*any.downcast::<Tree>().expect("Tree")),
                "fuzz::Phase" => recapture(&*any.downcast::<Phase>().expect("Phase")),
                "fuzz::Point" => recapture(&*any.downcast::<Point>().expect("Point")),
                "fuzz::Tile" => recapture(&*any.downcast::<Tile>().expect("Tile")),
                "fuzz::NativeState" => {
                    let value = any.downcast::<NativeState>().expect("NativeState");
                    assert!(
                        native,
                        "restore_any accepted a NativeState image restore refused"
                    );
                    recapture(&*value);
                }
                "fuzz::Particle" => {
                    recapture(&*any.downcast::<types::Particle>().expect("Particle"))
                }
                "fuzz::Square" => recapture(&*any.downcast::<types::Square>().expect("Square")),
                "fuzz::Kind" => recapture(&*any.downcast::<types::Kind>().expect("Kind")),
                "fuzz::Marker" => recapture(&*any.downcast::<types::Marker>().expect("Marker")),
                // Types of other crates linked into the binary (none today).
                _ => {}
            }
        }
        Err(error) => {
            exercise_error(&error);
            if let Ok(header) = &inspected {
                let restored = match header.type_name.as_str() {
                    "fuzz::State" => state,
                    "fuzz::NativeState" => native,
                    _ => false,
                };
                assert!(
                    !restored,
                    "restore succeeded where restore_any failed: {error}"
                );
            }
        }
    }
}

/// Every root type the seed writer and `image_mutate` capture.
pub fn capture_root(which: u8, state: &State) -> Vec<u8> {
    let v1 = || V1State {
        step: state.step,
        index: state.index,
        big: state.big,
        small: state.small,
        grid: state.grid.clone(),
        raw: state.raw.clone(),
        ints: state.ints.clone(),
        names: state.names.clone(),
        phase: state.phase.clone(),
        history: state.history.clone(),
        origin: state.origin.clone(),
        note: state.note.clone(),
        counter: state.counter.clone(),
        tree: state.tree.clone(),
        pair: state.pair,
        bytes4: state.bytes4,
        marker: state.marker,
        tile: state.tile.clone(),
        legacy: state.legacy,
    };
    let result = match which % 10 {
        0 | 1 => image::capture(state),
        2 => image::capture(&v1()),
        3 => image::capture(&state.phase),
        4 => image::capture(state.tree.as_deref().unwrap_or(&Tree::Leaf(-1))),
        5 => image::capture(&state.counter),
        6 => image::capture(&CounterV1 {
            count: state.counter.count as u32,
        }),
        7 => image::capture(&state.origin),
        8 => image::capture(&state.tile),
        // A std type: not registered, so `restore_any` must say it is unknown.
        _ => image::capture(
            &state
                .names
                .clone()
                .into_iter()
                .collect::<Vec<(String, u32)>>(),
        ),
    };
    result.expect("capture of a built state")
}

/// The version tables worth forging for `fuzz::State` images: every named type it reaches.
pub fn state_type_names() -> Vec<String> {
    let (_, table) = cosmic::state::Fingerprint::current::<State>();
    table.into_keys().collect()
}

/// The fingerprint a `fuzz::State` image with this version table must carry, when there is one.
pub fn state_fingerprint(table: &BTreeMap<String, u32>) -> Option<u64> {
    cosmic::state::Fingerprint::written::<State>(table)
        .ok()
        .map(|f| f.0)
}
