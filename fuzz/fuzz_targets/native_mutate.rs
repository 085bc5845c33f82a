//! The native decoder behind the checksums.
//!
//! Native images are readable only by the build that wrote them, so this target writes its own
//! at run time (seeds written by another binary would all stop at the build-id guard):
//! 1. builds a `fuzz::NativeState` from the input (plain-old-data particles, squares with a
//!    bool, a char and an enum tag, in `native` fields) and captures it as a native image;
//! 2. optionally forges the header: a field of the guard (architecture, byte order, pointer
//!    width, build id, layout fingerprint), which must get the image refused, never decoded;
//!    or the encoding (a native body under a well-formed portable header, a portable body
//!    under a well-formed native one, an unknown encoding code);
//! 3. applies fuzz-chosen mutations: anywhere in the body, inside the elements' memory
//!    (bytes, bits, out-of-range `char`, `bool` and enum tags) and to the byte count of a
//!    native field (off by one or by an element, huge, overlong);
//! 4. re-seals what the input asks for and runs `restore`, then every check of
//!    `image_decode` (`restore_any`, `inspect`, limits): a value or a typed error, never a
//!    panic; a value restores to a valid state that captures again.
//!
//! An untouched image must restore exactly and capture to the same bytes. When the mutations
//! only rewrote element memory, the outcome is known exactly: the mutated memory if every
//! element is valid, `NativeInvalid` if one is not.
#![no_main]

use std::ops::Range;

use cosmic::image::{self, RestoreError};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;

use common::types::{Builder, NativeState, Particle, Square};
use common::{Reseal, CHECKSUM_LEN, HEADER_LEN_OFFSET};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

/// Offsets of the encoding and the guard's fields in the header (see docs/format.md).
const ENCODING: usize = 14;
const ARCH: usize = 15;
const ENDIAN: usize = 16;
const POINTER_WIDTH: usize = 17;
const BUILD_ID: usize = 18;
/// The layout fingerprint of a native header: the 8 bytes before the header checksum.
const LAYOUT_LEN: usize = 8;

/// `char` bit patterns around the edges of the valid ones (surrogates, past the last scalar).
const CHARS: [u32; 7] = [0, 0xd7ff, 0xd800, 0xdfff, 0x10_ffff, 0x11_0000, u32::MAX];

/// What the input asks the header to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    Nothing,
    /// A field of the guard changed: the image must be refused as `NativeMismatch`.
    Guard,
    /// The encoding changed: anything may come of it but a panic.
    Encoding,
}

/// Where a native field of a `NativeState` body sits: its byte count (a postcard varint),
/// then its elements' memory.
#[derive(Debug, Clone, Copy)]
struct Field {
    count_at: usize,
    count_len: usize,
    memory_len: usize,
}

impl Field {
    fn new(count_at: usize, memory_len: usize) -> Field {
        Field {
            count_at,
            count_len: varint(memory_len as u64).len(),
            memory_len,
        }
    }

    fn memory(&self) -> Range<usize> {
        let start = self.count_at + self.count_len;
        start..start + self.memory_len
    }
}

/// The native fields of the body of a native image of `state` (postcard writes the struct's
/// fields in order: `step` as a varint, then `particles` and `squares` as byte strings).
fn native_fields(header_len: usize, state: &NativeState) -> [Field; 2] {
    let particles = Field::new(
        header_len + varint(state.step).len(),
        size_of_val(&state.particles[..]),
    );
    let squares = Field::new(particles.memory().end, size_of_val(&state.squares[..]));
    [particles, squares]
}

/// A postcard (LEB128) varint.
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let forge_choice: u8 = u.arbitrary()?;
    let reseal = match u.int_in_range(0u8..=7)? {
        0 => Reseal::Nothing,
        1 => Reseal::Header,
        2 | 3 => Reseal::Checksums,
        _ => Reseal::Everything,
    };
    let mut ops = Vec::new();
    for _ in 0..u.int_in_range(0u8..=4)? {
        ops.push((
            u.arbitrary::<u8>()?,
            u.arbitrary::<u16>()?,
            u.arbitrary::<u64>()?,
        ));
    }
    let state = Builder::new(u.take_rest()).native_state();
    let mut image = image::capture_native(&state).expect("a native capture");
    let header_len = common::claimed_header_len(&image).expect("a header length");
    let fields = native_fields(header_len, &state);
    assert!(
        image[fields[0].memory()] == *bytemuck::cast_slice::<Particle, u8>(&state.particles)
            && image[fields[1].memory()] == *bytemuck::cast_slice::<Square, u8>(&state.squares),
        "the native fields are not where this target looks for them"
    );
    if forge_choice % 8 == 0 && ops.is_empty() {
        // Compared through their images: floats from the input may be NaN (NaN != NaN).
        let back: NativeState = image::restore(&image).expect("an untouched native image");
        let again = image::capture_native(&back).expect("capture again");
        assert!(
            again == image,
            "capture -> restore -> capture changed the native image"
        );
    }

    let forge = match forge_choice % 8 {
        1 => {
            forge_guard(&mut image, header_len, forge_choice >> 3);
            Forge::Guard
        }
        2 => {
            image = forge_encoding(image, header_len, &state, forge_choice >> 3);
            Forge::Encoding
        }
        _ => Forge::Nothing,
    };

    // Whether every mutation so far rewrote element memory in place: then the outcome is known.
    let mut memory_only = forge == Forge::Nothing;
    let in_memory = |pos: usize| fields.iter().any(|f| f.memory().contains(&pos));
    for &(kind, at, value) in &ops {
        // The body as it is now (earlier operations may have changed its length).
        let body = header_len..image.len().saturating_sub(CHECKSUM_LEN);
        if body.is_empty() {
            break;
        }
        let anywhere = body.start + usize::from(at) % body.len();
        // A field with elements, if there is one (earlier splices may have moved it).
        let field = [fields[usize::from(at) % 2], fields[1 - usize::from(at) % 2]]
            .into_iter()
            .find(|f| f.memory_len > 0 && f.memory().end <= body.end);
        match (kind % 8, field) {
            (0, _) => {
                memory_only &= in_memory(anywhere);
                image[anywhere] ^= 1 << (value % 8);
            }
            (1, _) => {
                memory_only &= in_memory(anywhere);
                image[anywhere] = value as u8;
            }
            (2, _) => {
                memory_only = false;
                let n = (value as usize % 4 + 1).min(body.end - anywhere);
                image.drain(anywhere..anywhere + n);
            }
            (3, _) => {
                memory_only = false;
                let bytes = value.to_le_bytes();
                image.splice(
                    anywhere..anywhere,
                    bytes[..(value as usize % 4) + 1].iter().copied(),
                );
            }
            (4, Some(field)) => {
                let memory = field.memory();
                image[memory.start + usize::from(at / 2) % field.memory_len] = value as u8;
            }
            (5, Some(field)) => {
                let memory = field.memory();
                image[memory.start + usize::from(at / 2) % field.memory_len] ^= 1 << (value % 8);
            }
            (6, _) if fields[1].memory_len > 0 && fields[1].memory().end <= body.end => {
                write_square_field(&mut image[fields[1].memory()], at, value);
            }
            (7, _) => {
                memory_only = false;
                let field = fields[usize::from(at) % 2];
                let counts = field.count_at..field.count_at + field.count_len;
                if counts.end <= body.end {
                    let size = if at % 2 == 0 {
                        size_of::<Particle>()
                    } else {
                        size_of::<Square>()
                    };
                    let count = forged_count(field.memory_len as u64, size as u64, value);
                    image.splice(counts, count);
                }
            }
            // Element operations on a state without elements.
            _ => {}
        }
    }
    common::reseal(&mut image, reseal);

    let result = image::restore::<NativeState>(&image);
    match &result {
        Ok(value) => {
            assert!(
                forge != Forge::Guard,
                "a native image with a forged guard field was decoded"
            );
            let again = image::capture_native(value).expect("a restored state must capture");
            let back: NativeState = image::restore(&again).expect("a fresh capture must restore");
            let twice = image::capture_native(&back).expect("capture again");
            assert!(twice == again, "a restored native state must round-trip");
        }
        Err(error) => {
            if forge == Forge::Guard && image::inspect(&image).is_ok() {
                assert!(
                    matches!(error, RestoreError::NativeMismatch { .. }),
                    "a forged guard field must be refused as such: {error:?}"
                );
            }
            std::hint::black_box(format!("{error} {error:?}"));
        }
    }
    if memory_only && matches!(reseal, Reseal::Checksums | Reseal::Everything) {
        check_memory_outcome(&image, &fields, &state, &result);
    }
    common::check_all(&image);
    Ok(())
}

/// Changes one field of the guard, and re-seals the header so that only the guard refuses it.
fn forge_guard(image: &mut [u8], header_len: usize, choice: u8) {
    match choice % 5 {
        0 => image[ARCH] ^= 1,
        1 => image[ENDIAN] ^= 1,
        2 => image[POINTER_WIDTH] = image[POINTER_WIDTH].wrapping_add(8),
        3 => image[BUILD_ID + usize::from(choice >> 3)] ^= 1,
        _ => image[header_len - CHECKSUM_LEN - LAYOUT_LEN] ^= 1,
    }
    common::reseal(image, Reseal::Header);
}

/// An image whose header claims another encoding than its body has, well-formed otherwise.
fn forge_encoding(image: Vec<u8>, header_len: usize, state: &NativeState, choice: u8) -> Vec<u8> {
    let layout_at = header_len - CHECKSUM_LEN - LAYOUT_LEN;
    let mut out = match choice % 3 {
        // The native body under a portable header (without the layout fingerprint).
        0 => {
            let mut out = image;
            out.drain(layout_at..layout_at + LAYOUT_LEN);
            out[ENCODING] = 0;
            set_header_len(&mut out, header_len - LAYOUT_LEN);
            out
        }
        // The portable body under a native header with this build's guard and layout.
        1 => {
            let layout: [u8; LAYOUT_LEN] = image[layout_at..layout_at + LAYOUT_LEN]
                .try_into()
                .expect("8 bytes");
            let mut out = image::capture(state).expect("a portable capture");
            let portable_header_len = header_len - LAYOUT_LEN;
            out.splice(
                portable_header_len - CHECKSUM_LEN..portable_header_len - CHECKSUM_LEN,
                layout,
            );
            out[ENCODING..BUILD_ID + 8].copy_from_slice(&image[ENCODING..BUILD_ID + 8]);
            set_header_len(&mut out, header_len);
            out
        }
        // An encoding code nobody knows.
        _ => {
            let mut out = image;
            out[ENCODING] = 2 + choice / 3;
            out
        }
    };
    common::reseal(&mut out, Reseal::Everything);
    out
}

fn set_header_len(image: &mut [u8], len: usize) {
    image[HEADER_LEN_OFFSET..HEADER_LEN_OFFSET + 4].copy_from_slice(&(len as u32).to_le_bytes());
}

/// Writes a value that is often not a valid bit pattern into one field of one `Square`
/// (`#[repr(C)]`: value at 0, letter at 4, kind at 8, alive at 9, spare at 10).
fn write_square_field(memory: &mut [u8], at: u16, value: u64) {
    let size = size_of::<Square>();
    let start = usize::from(at >> 2) % (memory.len() / size) * size;
    let square = &mut memory[start..start + size];
    match at % 4 {
        0 => {
            let letter = CHARS[value as usize % CHARS.len()].wrapping_add((value >> 32) as u32 % 3);
            square[4..8].copy_from_slice(&letter.to_ne_bytes());
        }
        1 => square[8] = value as u8,
        2 => square[9] = value as u8,
        _ => square[10..12].copy_from_slice(&(value as u16).to_ne_bytes()),
    }
}

/// A byte count for a native field of `len` bytes of `size`-byte elements, as a varint.
fn forged_count(len: u64, size: u64, value: u64) -> Vec<u8> {
    match value % 8 {
        0 => varint(len + 1),
        1 => varint(len.wrapping_sub(1)),
        2 => varint(len + size),
        3 => varint(len.saturating_sub(size)),
        4 => varint(0),
        5 => varint(value >> 35),
        6 => varint(value >> 3),
        // The same count, written with needless continuation bytes.
        _ => {
            let mut long = varint(len);
            let last = long.len() - 1;
            long[last] |= 0x80;
            long.extend(std::iter::repeat_n(0x80, (value >> 3) as usize % 8));
            long.push(0);
            long
        }
    }
}

/// After in-place rewrites of element memory only: the image decodes to exactly that memory
/// if every element is valid, and is refused as `NativeInvalid` if one is not.
fn check_memory_outcome(
    image: &[u8],
    fields: &[Field; 2],
    state: &NativeState,
    result: &std::result::Result<NativeState, RestoreError>,
) {
    let squares = &image[fields[1].memory()];
    let valid = squares
        .chunks_exact(size_of::<Square>())
        .all(|chunk| bytemuck::checked::try_pod_read_unaligned::<Square>(chunk).is_ok());
    match result {
        Ok(value) => {
            assert!(valid, "a native image with an invalid element was decoded");
            assert!(
                *bytemuck::cast_slice::<Particle, u8>(&value.particles)
                    == image[fields[0].memory()]
                    && *bytemuck::cast_slice::<Square, u8>(&value.squares) == *squares,
                "the decoded elements are not the image's memory"
            );
            let bits = |samples: &[f64]| samples.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
            assert!(
                value.step == state.step
                    && bits(&value.samples) == bits(&state.samples)
                    && value.label == state.label,
                "rewriting element memory changed another field"
            );
        }
        Err(error) => assert!(
            !valid && matches!(error, RestoreError::NativeInvalid { .. }),
            "element memory that was {} was refused as {error:?}",
            if valid { "valid" } else { "invalid" }
        ),
    }
}
