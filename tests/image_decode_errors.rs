//! Total decoding: every way an image can be wrong is refused with the `RestoreError` that names
//! it, never with a panic, never by decoding into state, and never by allocating what the input
//! cannot justify. Crafted images are built by editing real ones and re-sealing their CRCs with
//! the reference CRC-32C of `cosmic_tests`, so each check is reached on its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use cosmic::image::{self, DecodeLimits, RestoreError, FORMAT_VERSION};
use cosmic::Migratable;
use cosmic_tests::{
    body, capture_fixed, crc32c, header_len, header_tail, patch_header, stored_body_crc,
    stored_header_crc, varint, with_body, with_header_tail, BODY_LEN_OFFSET, CHECKSUM_LEN,
    ENCODING_OFFSET, ENDIAN_OFFSET, FINGERPRINT_OFFSET, FIXED_HEADER_LEN, FORMAT_VERSION_OFFSET,
    HEADER_LEN_OFFSET, TYPE_VERSION_OFFSET,
};

// ---- allocation tracking ----------------------------------------------------------------------

/// The global allocator of this test binary: the system one, recording the largest single
/// allocation each thread asks for, so a test can check that decoding stayed bounded.
struct Tracking;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: defers to `System` for every operation; only records sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_allocation_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST_ALLOCATION.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST_ALLOCATION.with(Cell::get))
}

// ---- the images under test ---------------------------------------------------------------------

#[derive(Migratable, Debug, PartialEq)]
struct Small {
    count: u32,
    name: String,
    flag: bool,
    kind: Kind,
    maybe: Option<u8>,
    letter: char,
    samples: Vec<f64>,
}

#[derive(Migratable, Debug, PartialEq)]
enum Kind {
    A,
    B(u16),
}

#[derive(Migratable, Debug, PartialEq)]
struct Other {
    count: u32,
}

fn small() -> Small {
    Small {
        count: 300,
        name: "abc".to_owned(),
        flag: true,
        kind: Kind::B(7),
        maybe: Some(9),
        letter: 'z',
        samples: vec![0.5],
    }
}

fn small_image() -> Vec<u8> {
    capture_fixed(&small())
}

/// The body of `small()` with its parts in order, so tests can corrupt one part at a time.
fn small_body_parts() -> Vec<Vec<u8>> {
    let mut samples = vec![8];
    samples.extend_from_slice(&0.5f64.to_le_bytes());
    vec![
        varint(300),               // count
        vec![3, b'a', b'b', b'c'], // name
        vec![1],                   // flag
        vec![1, 7],                // kind: variant 1, u16 7
        vec![1, 9],                // maybe: Some(9)
        vec![1, b'z'],             // letter: UTF-8 as a string
        samples,                   // samples: bulk byte string
    ]
}

/// Decodes as `T` and fails the test on a panic or on success; returns the error.
fn refused_as<T: Migratable + std::fmt::Debug>(bytes: &[u8], what: &str) -> RestoreError {
    match catch_unwind(AssertUnwindSafe(|| image::restore::<T>(bytes))) {
        Err(_) => panic!("decoding {what} panicked"),
        Ok(Ok(state)) => panic!("decoding {what} succeeded: {state:?}"),
        Ok(Err(error)) => error,
    }
}

fn refused(bytes: &[u8], what: &str) -> RestoreError {
    refused_as::<Small>(bytes, what)
}

/// An error's message followed by those of all its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}

fn assert_mentions(error: &RestoreError, needles: &[&str]) {
    cosmic_tests::chain::assert_no_repeats(error);
    let text = error_chain(error);
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
}

#[test]
fn the_small_image_is_valid_and_its_crcs_match_the_reference() {
    let bytes = small_image();
    assert_eq!(image::restore::<Small>(&bytes).unwrap(), small());
    assert_eq!(body(&bytes), small_body_parts().concat());
    let len = header_len(&bytes);
    assert_eq!(
        crc32c(&bytes[..len - CHECKSUM_LEN]),
        stored_header_crc(&bytes)
    );
    assert_eq!(crc32c(body(&bytes)), stored_body_crc(&bytes));
    // A re-sealed copy of an unchanged image is the image.
    assert_eq!(with_body(&bytes, body(&bytes)), bytes);
}

// ---- framing: magic, format version, lengths ---------------------------------------------------

#[test]
fn every_truncation_of_an_image_is_refused() {
    let bytes = small_image();
    let header_len = header_len(&bytes);
    for len in 0..bytes.len() {
        let prefix = &bytes[..len];
        let err = refused(prefix, &format!("a {len}-byte prefix"));
        let RestoreError::Truncated {
            part,
            needed,
            available,
        } = &err
        else {
            panic!("a {len}-byte prefix gave {err:?}, not Truncated");
        };
        let expected_part = match len {
            0..8 => "magic",
            8..10 => "format version",
            10..14 => "header length",
            _ if len < header_len => "header",
            _ => "body",
        };
        assert_eq!(*part, expected_part, "prefix of {len} bytes");
        assert!(available < needed, "prefix of {len} bytes: {err}");
        assert_mentions(&err, &["truncated", part]);
        assert!(image::inspect(prefix).is_err());
        assert!(image::restore_any(prefix).is_err());
    }
}

#[test]
fn bad_magic_is_refused() {
    for input in [
        &b"not an image at all"[..],
        b"\x89PNG\r\n\x1a\n0000000000000000",
        b"X",
        b"\x89CSM\r\n\x1a\x0b",
    ] {
        let err = refused(input, "bad magic");
        let RestoreError::BadMagic { found } = &err else {
            panic!("{input:?} gave {err:?}");
        };
        assert_eq!(found[..], input[..input.len().min(8)]);
        assert_mentions(&err, &["not a cosmic image", "bad magic"]);
    }
    // Newline translation (CR LF to LF) is caught by the magic too.
    let mut translated = small_image();
    translated.remove(5);
    assert!(matches!(
        refused(&translated, "CR LF -> LF"),
        RestoreError::BadMagic { .. }
    ));
}

#[test]
fn unsupported_format_version_is_refused() {
    let mut bytes = small_image();
    bytes[FORMAT_VERSION_OFFSET..FORMAT_VERSION_OFFSET + 2]
        .copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = refused(&bytes, "format version 2");
    assert!(
        matches!(
            err,
            RestoreError::UnsupportedFormatVersion { found, supported }
                if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION
        ),
        "{err:?}"
    );
    assert_mentions(
        &err,
        &[
            "unsupported image format version",
            &(FORMAT_VERSION + 1).to_string(),
        ],
    );
}

#[test]
fn trailing_bytes_after_the_image_are_refused() {
    let mut bytes = small_image();
    bytes.extend_from_slice(&[0, 0, 0]);
    let err = refused(&bytes, "trailing bytes");
    assert!(
        matches!(err, RestoreError::TrailingBytes { extra: 3 }),
        "{err:?}"
    );
    assert_mentions(&err, &["3 trailing bytes"]);
    assert!(image::inspect(&bytes).is_err());
}

// ---- checksums ----------------------------------------------------------------------------------

#[test]
fn header_checksum_mismatch_is_refused() {
    let mut bytes = small_image();
    bytes[FINGERPRINT_OFFSET] ^= 0x01;
    let err = refused(&bytes, "a changed fingerprint byte");
    let RestoreError::HeaderChecksum { stored, computed } = err else {
        panic!("{err:?}");
    };
    assert_eq!(stored, stored_header_crc(&bytes));
    assert_eq!(
        computed,
        crc32c(&bytes[..header_len(&bytes) - CHECKSUM_LEN])
    );
    assert_mentions(
        &err,
        &[
            "header checksum mismatch",
            &format!("{stored:08x}"),
            &format!("{computed:08x}"),
        ],
    );
}

#[test]
fn body_checksum_mismatch_is_refused() {
    let mut bytes = small_image();
    let at = header_len(&bytes) + 1;
    bytes[at] ^= 0x40;
    let err = refused(&bytes, "a changed body byte");
    let RestoreError::BodyChecksum { stored, computed } = err else {
        panic!("{err:?}");
    };
    assert_eq!(stored, stored_body_crc(&bytes));
    assert_eq!(computed, crc32c(body(&bytes)));
    assert_mentions(
        &err,
        &["body checksum mismatch", &format!("{computed:08x}")],
    );
}

#[test]
fn every_single_bit_flip_is_refused() {
    let bytes = small_image();
    let header_len = header_len(&bytes);
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let err = refused(&flipped, &format!("bit {bit} flipped"));
        let byte = bit / 8;
        // Where the flip lands decides which check catches it.
        let expected = match byte {
            0..8 => matches!(err, RestoreError::BadMagic { .. }),
            8..10 => matches!(err, RestoreError::UnsupportedFormatVersion { .. }),
            // A changed header length is over the limit, past the input, shorter than the fixed
            // part, or puts the checksum elsewhere.
            10..14 => matches!(
                err,
                RestoreError::OverLimit { .. }
                    | RestoreError::Truncated { .. }
                    | RestoreError::MalformedHeader { .. }
                    | RestoreError::HeaderChecksum { .. }
            ),
            _ if byte < header_len => matches!(err, RestoreError::HeaderChecksum { .. }),
            _ => matches!(err, RestoreError::BodyChecksum { .. }),
        };
        assert!(expected, "bit {bit} (byte {byte}) flipped gave {err:?}");
    }
}

// ---- limits ---------------------------------------------------------------------------------------

#[test]
fn header_over_the_limit_is_refused() {
    let bytes = small_image();
    let len = header_len(&bytes) as u32;
    let limits = DecodeLimits {
        max_header_bytes: len - 1,
        ..DecodeLimits::DEFAULT
    };
    let err = image::restore_with_limits::<Small>(&bytes, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            RestoreError::OverLimit { what: "header", length, limit }
                if length == u64::from(len) && limit == u64::from(len - 1)
        ),
        "{err:?}"
    );
    assert_mentions(
        &err,
        &[
            "header",
            &format!("{len} bytes"),
            &format!("limit of {} bytes", len - 1),
        ],
    );
    let at_limit = DecodeLimits {
        max_header_bytes: len,
        ..DecodeLimits::DEFAULT
    };
    assert_eq!(
        image::restore_with_limits::<Small>(&bytes, &at_limit).unwrap(),
        small()
    );
}

#[test]
fn body_over_the_limit_is_refused() {
    let bytes = small_image();
    let len = body(&bytes).len() as u64;
    let limits = DecodeLimits {
        max_body_bytes: len - 1,
        ..DecodeLimits::DEFAULT
    };
    let err = image::restore_with_limits::<Small>(&bytes, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            RestoreError::OverLimit { what: "body", length, limit }
                if length == len && limit == len - 1
        ),
        "{err:?}"
    );
    assert_mentions(&err, &["body", &format!("{len} bytes")]);
    let at_limit = DecodeLimits {
        max_body_bytes: len,
        ..DecodeLimits::DEFAULT
    };
    assert!(image::restore_with_limits::<Small>(&bytes, &at_limit).is_ok());
}

#[test]
fn announced_body_length_is_checked_against_the_limit_before_the_input() {
    // A header announcing a 1 TiB body, on a 100-byte input: over the default limit (64 GiB),
    // refused as such, without reading or allocating for it.
    let bytes = patch_header(&small_image(), BODY_LEN_OFFSET, &(1u64 << 40).to_le_bytes());
    let (err, largest) = largest_allocation_of(|| refused(&bytes, "a 1 TiB body length"));
    assert!(
        matches!(err, RestoreError::OverLimit { what: "body", length, .. } if length == 1 << 40),
        "{err:?}"
    );
    assert!(largest < 64 << 10, "allocated {largest} bytes");
}

#[test]
fn body_length_that_overflows_the_image_length_is_refused() {
    // With no body limit (a reader that trusts its store), a body length near u64::MAX makes
    // header + body + checksum overflow. That must be a truncation error, not an arithmetic
    // overflow (a panic in debug builds, a wrapped length in release builds).
    let limits = DecodeLimits {
        max_header_bytes: u32::MAX,
        max_body_bytes: u64::MAX,
        ..DecodeLimits::DEFAULT
    };
    let original = small_image();
    for body_len in [
        u64::MAX,
        u64::MAX - 3,
        u64::MAX - header_len(&original) as u64,
    ] {
        let bytes = patch_header(&original, BODY_LEN_OFFSET, &body_len.to_le_bytes());
        let result = catch_unwind(AssertUnwindSafe(|| {
            image::restore_with_limits::<Small>(&bytes, &limits)
        }));
        match result {
            Err(_) => panic!("a body length of {body_len:#x} made the decoder panic"),
            Ok(Ok(state)) => panic!("a body length of {body_len:#x} decoded: {state:?}"),
            Ok(Err(err)) => assert!(
                matches!(err, RestoreError::Truncated { part: "body", .. }),
                "{err:?}"
            ),
        }
    }
}

// ---- malformed headers (checksum right, contents wrong) ----------------------------------------

#[test]
fn header_shorter_than_its_fixed_part_is_malformed() {
    let mut bytes = small_image();
    bytes[HEADER_LEN_OFFSET..HEADER_LEN_OFFSET + 4].copy_from_slice(&20u32.to_le_bytes());
    let err = refused(&bytes, "a 20-byte header length");
    assert!(
        matches!(err, RestoreError::MalformedHeader { .. }),
        "{err:?}"
    );
    assert_mentions(&err, &["malformed header", "header length 20"]);
}

#[test]
fn malformed_header_fields_are_refused_naming_the_field() {
    let image = small_image();
    let long_name = vec![b'n'; 1025];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown encoding code",
            patch_header(&image, ENCODING_OFFSET, &[9]),
            "unknown encoding code 9",
        ),
        (
            "unknown endianness code",
            patch_header(&image, ENDIAN_OFFSET, &[2]),
            "unknown endianness code 2",
        ),
        (
            "root missing from the version table",
            with_header_tail(&image, &header_tail(b"Small", &[(b"Kind", 1)])),
            "does not list root type `Small`",
        ),
        (
            "root at another version in the table",
            with_header_tail(
                &image,
                &header_tail(b"Small", &[(b"Kind", 1), (b"Small", 2)]),
            ),
            "at version 1",
        ),
        (
            "duplicate table entry",
            with_header_tail(
                &image,
                &header_tail(b"Small", &[(b"Kind", 1), (b"Small", 1), (b"Kind", 1)]),
            ),
            "`Kind` appears twice",
        ),
        (
            "unused bytes at the end",
            with_header_tail(&image, &{
                let mut tail = header_tail(b"Small", &[(b"Kind", 1), (b"Small", 1)]);
                tail.extend_from_slice(&[0, 0, 0]);
                tail
            }),
            "3 unused bytes",
        ),
        (
            "type name not UTF-8",
            with_header_tail(&image, &header_tail(b"Sm\xffll", &[(b"Sm\xffll", 1)])),
            "type name is not UTF-8",
        ),
        (
            "type name over the limit",
            with_header_tail(&image, &header_tail(&long_name, &[(&long_name, 1)])),
            "type name of 1025 bytes",
        ),
        (
            "table name running past the header",
            with_header_tail(&image, &{
                let mut tail = header_tail(b"Small", &[]);
                // One entry announced, whose name length claims 200 bytes.
                let count = tail.len() - 2;
                tail[count..].copy_from_slice(&1u16.to_le_bytes());
                tail.extend_from_slice(&200u16.to_le_bytes());
                tail.extend_from_slice(b"Small");
                tail
            }),
            "version-table name runs past the header",
        ),
        (
            "too many table entries",
            with_header_tail(&image, &{
                let mut tail = header_tail(b"Small", &[]);
                let count = tail.len() - 2;
                tail[count..].copy_from_slice(&5000u16.to_le_bytes());
                tail
            }),
            "5000 version-table entries",
        ),
    ];
    for (what, bytes, needle) in cases {
        let err = refused(&bytes, what);
        assert!(
            matches!(err, RestoreError::MalformedHeader { .. }),
            "{what}: {err:?}"
        );
        assert_mentions(&err, &["malformed header", needle]);
    }
}

#[test]
fn version_zero_in_the_header_is_malformed_not_too_new() {
    // Versions start at 1; a version-0 image was written by a broken or hostile writer. Calling
    // it "too new" sends whoever reads the error after the wrong cause (an upgrade).
    let image = small_image();
    let zero = with_header_tail(
        &image,
        &header_tail(b"Small", &[(b"Kind", 1), (b"Small", 0)]),
    );
    let zero = patch_header(&zero, TYPE_VERSION_OFFSET, &0u32.to_le_bytes());
    let err = refused(&zero, "a version-0 image");
    assert!(
        !error_chain(&err).contains("too new"),
        "version 0 reported as too new: {err}"
    );
    assert!(
        matches!(err, RestoreError::MalformedHeader { .. }),
        "version 0 should be a malformed header, got {err:?}"
    );
}

#[test]
fn a_portable_image_relabelled_native_is_refused() {
    // A native header carries a layout fingerprint that a portable one lacks: the relabelled
    // header is short of it. (The guard itself is tested in `native_image`.)
    let bytes = patch_header(&small_image(), ENCODING_OFFSET, &[1]);
    let err = refused(&bytes, "a portable image relabelled native");
    assert!(
        matches!(&err, RestoreError::MalformedHeader { .. }),
        "{err:?}"
    );
    assert_mentions(&err, &["fields run past the header length"]);
}

// ---- type, version, fingerprint -----------------------------------------------------------------

#[test]
fn unknown_type_is_refused_by_restore_any() {
    let renamed = with_header_tail(
        &small_image(),
        &header_tail(b"NoSuchType", &[(b"Kind", 1), (b"NoSuchType", 1)]),
    );
    let err = match image::restore_any(&renamed) {
        Ok(state) => panic!("decoded an unknown type: {state:?}"),
        Err(err) => err,
    };
    assert!(
        matches!(&err, RestoreError::UnknownType { type_name } if type_name == "NoSuchType"),
        "{err:?}"
    );
    assert_mentions(
        &err,
        &["unknown type `NoSuchType`", "#[derive(Migratable)]"],
    );
    // The same image is otherwise fine: `inspect` reads it.
    assert_eq!(image::inspect(&renamed).unwrap().type_name, "NoSuchType");
}

#[test]
fn type_mismatch_names_both_types() {
    let err = refused_as::<Other>(&small_image(), "a Small image as Other");
    assert!(
        matches!(&err, RestoreError::TypeMismatch { expected, found } if expected == "Other" && found == "Small"),
        "{err:?}"
    );
    assert_mentions(&err, &["`Small`", "`Other`"]);
}

#[test]
fn version_too_new_names_both_versions() {
    let image = small_image();
    let newer = with_header_tail(
        &image,
        &header_tail(b"Small", &[(b"Kind", 1), (b"Small", 5)]),
    );
    let newer = patch_header(&newer, TYPE_VERSION_OFFSET, &5u32.to_le_bytes());
    let err = refused(&newer, "a version-5 image");
    assert!(
        matches!(&err, RestoreError::VersionTooNew { type_name, .. } if type_name == "Small"),
        "{err:?}"
    );
    assert_mentions(&err, &["too new", "`Small`", "version 5", "up to 1"]);

    // A nested type too new, root current.
    let nested = with_header_tail(
        &image,
        &header_tail(b"Small", &[(b"Kind", 2), (b"Small", 1)]),
    );
    let err = refused(&nested, "an image with Kind at version 2");
    assert!(matches!(err, RestoreError::VersionTooNew { .. }), "{err:?}");
    assert_mentions(&err, &["`Kind`", "version 2", "up to 1"]);
}

#[test]
fn fingerprint_mismatch_names_both_fingerprints() {
    let image = small_image();
    let fingerprint = image::inspect(&image).unwrap().fingerprint;
    let wrong = fingerprint.0 ^ 0x8000_0000_0000_0001;
    let bytes = patch_header(&image, FINGERPRINT_OFFSET, &wrong.to_le_bytes());
    let err = refused(&bytes, "a wrong fingerprint");
    let RestoreError::FingerprintMismatch {
        found, expected, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((found.0, *expected), (wrong, fingerprint));
    assert_mentions(
        &err,
        &[
            "fingerprint mismatch",
            "`Small`",
            &format!("{wrong:016x}"),
            &fingerprint.to_string(),
        ],
    );
}

// ---- bodies that pass every check but do not decode -----------------------------------------------

#[test]
fn body_that_does_not_decode_is_a_decode_error() {
    let image = small_image();
    let parts = small_body_parts();
    let with_part = |index: usize, replacement: &[u8]| {
        let mut parts = parts.clone();
        parts[index] = replacement.to_vec();
        with_body(&image, &parts.concat())
    };
    let cases: Vec<(&str, Vec<u8>, postcard::Error)> = vec![
        (
            "an empty body",
            with_body(&image, &[]),
            postcard::Error::DeserializeUnexpectedEnd,
        ),
        (
            "a body cut inside the name",
            with_body(&image, &parts.concat()[..4]),
            postcard::Error::DeserializeUnexpectedEnd,
        ),
        (
            "a name that is not UTF-8",
            with_part(1, &[2, 0xc3, 0x28]),
            postcard::Error::DeserializeBadUtf8,
        ),
        (
            "a bool of 2",
            with_part(2, &[2]),
            postcard::Error::DeserializeBadBool,
        ),
        (
            "an unknown variant index",
            with_part(3, &[5, 7]),
            postcard::Error::SerdeDeCustom,
        ),
        (
            "an option tag of 2",
            with_part(4, &[2, 9]),
            postcard::Error::DeserializeBadOption,
        ),
        (
            "a char of five bytes",
            with_part(5, &[5, b'a', b'b', b'c', b'd', b'e']),
            postcard::Error::DeserializeBadChar,
        ),
        (
            "an empty char",
            with_part(5, &[0]),
            postcard::Error::DeserializeBadChar,
        ),
        (
            "a char that is a surrogate",
            with_part(5, &[3, 0xed, 0xa0, 0x80]),
            postcard::Error::DeserializeBadChar,
        ),
        (
            "bulk bytes not a whole number of f64s",
            with_part(6, &[3, 0, 0, 0]),
            postcard::Error::SerdeDeCustom,
        ),
        (
            "a varint of eleven bytes",
            with_part(0, &[0xff; 11]),
            postcard::Error::DeserializeBadVarint,
        ),
    ];
    for (what, bytes, expected) in cases {
        let err = refused(&bytes, what);
        let RestoreError::Decode { type_name, source } = &err else {
            panic!("{what}: {err:?}");
        };
        assert_eq!(type_name, "Small");
        assert_eq!(*source, expected, "{what}");
        assert_mentions(&err, &["failed to decode body of `Small`"]);
    }
}

#[test]
fn body_trailing_bytes_are_refused() {
    let image = small_image();
    let mut longer = body(&image).to_vec();
    longer.extend_from_slice(&[0, 1]);
    let err = refused(&with_body(&image, &longer), "a body with 2 extra bytes");
    assert!(
        matches!(&err, RestoreError::BodyTrailingBytes { type_name, extra: 2 } if type_name == "Small"),
        "{err:?}"
    );
    assert_mentions(&err, &["body of `Small`", "2 bytes left"]);
}

#[derive(Migratable, Debug, PartialEq)]
struct Sizes {
    size: usize,
    offset: isize,
}

/// postcard's zigzag encoding of a signed value.
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// `usize` and `isize` travel as 64-bit varints. A reader restores every value that fits its
/// pointer width, and refuses one that does not (written by a 64-bit host) with a decode
/// error, never cutting it to its low bits. Run on a 32-bit host (armv7 under QEMU in CI), the
/// second half is the real thing; on a 64-bit one, every value fits.
#[test]
fn usize_and_isize_restore_where_they_fit_and_are_refused_where_they_do_not() {
    let header = capture_fixed(&Sizes { size: 0, offset: 0 });
    let sizes = |size: u64, offset: i64| {
        let mut body = varint(size);
        body.extend(varint(zigzag(offset)));
        with_body(&header, &body)
    };
    let fitting = [
        (0, 0),
        (300, -300),
        (u64::from(u32::MAX), i64::from(i32::MIN)),
        (u64::from(u32::MAX), i64::from(i32::MAX)),
    ];
    for (size, offset) in fitting {
        let back: Sizes = image::restore(&sizes(size, offset)).unwrap();
        assert_eq!((back.size as u64, back.offset as i64), (size, offset));
    }
    let wide = [
        (u64::from(u32::MAX) + 1, 0),
        (u64::MAX, 0),
        (0, i64::from(i32::MAX) + 1),
        (0, i64::from(i32::MIN) - 1),
        (0, i64::MIN),
    ];
    for (size, offset) in wide {
        let image = sizes(size, offset);
        if usize::BITS == 64 {
            let back: Sizes = image::restore(&image).unwrap();
            assert_eq!((back.size as u64, back.offset as i64), (size, offset));
        } else {
            let err = refused_as::<Sizes>(&image, "a value wider than this host's usize");
            assert!(
                matches!(
                    err,
                    RestoreError::WiderThanHost {
                        image_bits: 64,
                        host_bits: 32,
                        ..
                    }
                ),
                "{size:#x} {offset:#x}: {err:?}"
            );
            assert_mentions(
                &err,
                &[
                    "failed to decode body of `Sizes`, written on a 64-bit host",
                    "usize or isize that does not fit this 32-bit host",
                ],
            );
        }
    }
}

#[derive(Migratable, Debug)]
#[migratable(name = "Counter")]
struct WideCounter {
    value: u64,
}

#[derive(Migratable, Debug)]
#[migratable(name = "Counter")]
struct NarrowCounter {
    value: u32,
}

#[test]
fn u64_value_too_large_for_a_u32_field_is_a_decode_error_not_a_truncation() {
    // The nearest test of "a usize over u32::MAX on a 32-bit reader is an error" that runs on a
    // 64-bit host: postcard reads a 32-bit reader's usize exactly as it reads a u32 (a varint
    // of at most five bytes whose value must fit), so a wider value is refused, never cut to
    // its low bits. Here a u64 body is put behind a u32 type's header.
    let narrow = capture_fixed(&NarrowCounter { value: 1 });
    for value in [u64::from(u32::MAX) + 1, 1 << 40, u64::MAX] {
        let wide_body = varint(value);
        assert_eq!(
            body(&capture_fixed(&WideCounter { value })),
            wide_body.as_slice()
        );
        let err = refused_as::<NarrowCounter>(&with_body(&narrow, &wide_body), "a wide value");
        assert!(
            matches!(
                err,
                RestoreError::Decode {
                    source: postcard::Error::DeserializeBadVarint,
                    ..
                }
            ),
            "{value:#x}: {err:?}"
        );
    }
    // u32::MAX itself fits.
    let max = with_body(&narrow, &varint(u64::from(u32::MAX)));
    assert_eq!(
        image::restore::<NarrowCounter>(&max).unwrap().value,
        u32::MAX
    );
    // And on this 64-bit host a usize holds any u64.
    assert_eq!(
        image::restore::<usize>(&image::capture(&usize::MAX).unwrap()).unwrap(),
        usize::MAX
    );
}

#[derive(Migratable, Debug)]
struct Lengths {
    numbers: Vec<u64>,
    text: String,
    bytes: Vec<u8>,
    doubles: Vec<f64>,
    strings: Vec<String>,
    tree: BTreeMap<u32, u32>,
    hash: HashMap<u64, u64>,
}

#[test]
fn huge_announced_lengths_are_refused_without_allocating() {
    // Each field in turn announces 2^60 elements (or bytes) with a few bytes behind it. The
    // decoder must run out of input, not try to allocate for the announced length; serde caps
    // up-front capacity at 1 MiB of elements, so nothing near the announced size is asked for.
    let image = capture_fixed(&Lengths {
        numbers: vec![],
        text: String::new(),
        bytes: vec![],
        doubles: vec![],
        strings: vec![],
        tree: BTreeMap::new(),
        hash: HashMap::new(),
    });
    assert_eq!(body(&image), [0; 7]);
    let huge = varint(1 << 60);
    for field in 0..7 {
        let mut parts = vec![vec![0u8]; 7];
        parts[field] = huge.clone();
        parts[field].extend_from_slice(&[1, 2, 3]);
        let bytes = with_body(&image, &parts.concat());
        let (err, largest) = largest_allocation_of(|| {
            refused_as::<Lengths>(&bytes, &format!("field {field} with a 2^60 length"))
        });
        assert!(
            matches!(err, RestoreError::Decode { .. }),
            "field {field}: {err:?}"
        );
        assert!(
            largest <= 4 << 20,
            "field {field}: a {}-byte input made the decoder allocate {largest} bytes",
            bytes.len()
        );
    }
}

// ---- work and stack bounded by the input --------------------------------------------------------

thread_local! {
    static BLANKS_BUILT: Cell<u64> = const { Cell::new(0) };
}

/// How many zero-byte elements the test below lets the decoder build before stopping it.
const BLANK_BUDGET: u64 = 1_000_000;

fn counted_blank() -> u64 {
    let built = BLANKS_BUILT.with(|count| {
        count.set(count.get() + 1);
        count.get()
    });
    if built > BLANK_BUDGET {
        panic!("decoder built over {BLANK_BUDGET} elements");
    }
    0
}

/// Encodes as zero bytes: every field is rebuilt on restore.
#[derive(Migratable, Debug)]
#[allow(dead_code)]
struct Blank {
    #[migratable(skip, default = "counted_blank")]
    scratch: u64,
}

#[derive(Migratable, Debug)]
struct Blanks {
    items: Vec<Blank>,
}

#[test]
fn huge_count_of_zero_byte_elements_is_refused_with_bounded_work() {
    // Elements that encode as nothing cannot run out of input: a 9-byte body announcing 2^60
    // of them would have the decoder build elements until memory or time runs out. Such a
    // schema is refused outright, on both sides: the writer will not capture it, and the
    // reader refuses an image of it before reading the body.
    match cosmic::image::capture(&Blanks {
        items: vec![Blank { scratch: 1 }],
    }) {
        Err(cosmic::image::CaptureError::Schema { source, .. }) => assert!(
            matches!(source, cosmic::state::SchemaError::ZeroSizedElements { .. }),
            "{source:?}"
        ),
        other => panic!("capture of zero-byte elements was not refused: {other:?}"),
    }
    // An image from another writer under the same name, announcing 2^60 elements.
    let image = capture_fixed(&BlanksLookalike { items: vec![] });
    let bytes = with_body(&image, &varint(1 << 60));
    BLANKS_BUILT.with(|count| count.set(0));
    let result = catch_unwind(AssertUnwindSafe(|| image::restore::<Blanks>(&bytes)));
    let built = BLANKS_BUILT.with(Cell::get);
    match result {
        Err(_) => panic!(
            "a {}-byte image made the decoder build over {BLANK_BUDGET} zero-byte elements \
             (it announces 2^60): decoding work is not bounded by the input",
            bytes.len()
        ),
        Ok(Ok(state)) => panic!("decoded {} elements", state.items.len()),
        Ok(Err(err)) => {
            assert!(
                matches!(err, RestoreError::UnsupportedSchema { .. }),
                "{err:?} after {built} elements"
            );
            cosmic_tests::chain::assert_no_repeats(&err);
            let text = error_chain(&err);
            assert!(text.contains("encode to no bytes"), "{text}");
            assert_eq!(built, 0, "nothing is decoded before the schema is checked");
        }
    }
}

/// Another type under `Blanks`'s wire name, whose elements do encode to bytes.
#[derive(Migratable, Debug)]
#[migratable(name = "Blanks")]
struct BlanksLookalike {
    items: Vec<u16>,
}

#[derive(Migratable, Debug)]
struct Tree {
    children: Vec<Tree>,
}

const DEEP_CHILD_ENV: &str = "COSMIC_TEST_DEEP_NESTING_CHILD";

#[test]
fn deeply_nested_body_is_refused_without_overflowing_the_stack() {
    // A million nested `Tree`s take two bytes each: one varint 1 per level, a 0 at the bottom.
    // Decoding recurses once per level, so without a depth limit it overflows the stack, which
    // aborts the process (no panic to catch). So the decode runs in a child process (this test
    // binary again, running only this test) and this test checks that the child survived.
    if std::env::var_os(DEEP_CHILD_ENV).is_some() {
        let image = capture_fixed(&Tree { children: vec![] });
        let mut nested = vec![1u8; 1_000_000];
        nested.push(0);
        let err = refused_as::<Tree>(&with_body(&image, &nested), "a million nested levels");
        assert!(
            matches!(err, RestoreError::TooDeep { limit: 128, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("128 levels"), "{err}");
        return;
    }
    survives_in_child("deeply_nested_body_is_refused_without_overflowing_the_stack");
}

/// `Link`'s older layout, which holds a current `Link`: an image of version 1 decodes
/// `Link` -> `LinkV1` -> `Link` ... So `Link` must stay guarded although its own field decodes
/// flat (a `u32`), which would otherwise let it skip the depth guard.
#[derive(Migratable, Debug)]
#[migratable(name = "Link")]
struct LinkV1 {
    next: Option<Box<Link>>,
}

#[derive(Migratable, Debug)]
#[migratable(version = 2, upgrade_from = LinkV1)]
struct Link {
    value: u32,
}

impl From<LinkV1> for Link {
    fn from(old: LinkV1) -> Link {
        Link {
            value: old.next.map_or(0, |next| next.value + 1),
        }
    }
}

#[test]
fn deep_nesting_through_an_older_layout_is_refused() {
    if std::env::var_os(DEEP_CHILD_ENV).is_some() {
        // One byte per level (`Some`), a 0 (`None`) at the bottom; every level is read at
        // version 1, through the upgrade. A shallow one decodes.
        let image = capture_fixed(&LinkV1 { next: None });
        let back: Link = image::restore(&with_body(&image, &[1, 1, 0])).expect("three old links");
        assert_eq!(back.value, 2);
        let mut nested = vec![1u8; 1_000_000];
        nested.push(0);
        let err = refused_as::<Link>(&with_body(&image, &nested), "a million nested old links");
        assert!(
            matches!(err, RestoreError::TooDeep { limit: 128, .. }),
            "{err:?}"
        );
        return;
    }
    survives_in_child("deep_nesting_through_an_older_layout_is_refused");
}

/// Runs `test` of this binary in a child process with [`DEEP_CHILD_ENV`] set and checks that
/// it passed (a stack overflow would kill it).
fn survives_in_child(test: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    // Under a cross-test runner (QEMU without binfmt_misc) the binary must be run through it.
    let mut child = match std::env::var_os("CROSS_TEST_RUNNER") {
        Some(runner) => {
            let mut command = std::process::Command::new(runner);
            command.arg(&exe);
            command
        }
        None => std::process::Command::new(&exe),
    };
    let output = child
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(DEEP_CHILD_ENV, "1")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "decoding a deeply nested body killed the process ({}):\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
}

#[test]
fn offsets_used_by_these_tests_match_the_format() {
    // The crafted images above rely on the header layout; pin it to a real image.
    let bytes = small_image();
    let header = image::inspect(&bytes).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!(u32_at(HEADER_LEN_OFFSET) as usize, header.header_len);
    assert_eq!(u32_at(TYPE_VERSION_OFFSET), header.type_version);
    assert_eq!(u64_at(FINGERPRINT_OFFSET), header.fingerprint.0);
    assert_eq!(u64_at(BODY_LEN_OFFSET), header.body_len);
    assert_eq!(bytes[ENCODING_OFFSET], 0);
    assert_eq!(
        u16::from_le_bytes([bytes[FIXED_HEADER_LEN], bytes[FIXED_HEADER_LEN + 1]]),
        5,
        "the type name's length follows the fixed part"
    );
    assert_eq!(&bytes[FIXED_HEADER_LEN + 2..FIXED_HEADER_LEN + 7], b"Small");
}
