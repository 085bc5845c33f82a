//! The native decoder behind the checksums.
//!
//! Native images are readable only by the build that wrote them, so this target writes its own
//! at run time (seeds written by another binary would all stop at the build-id guard):
//! 1. builds a `fuzz::NativeState` from the input (plain-old-data particles, cells with a
//!    bool, a char and an enum tag, in `native` fields) and captures it as a native image;
//! 2. optionally forges a field of the guard (architecture, byte order, pointer width, build
//!    id, layout fingerprint), which must get the image refused, never decoded;
//! 3. applies fuzz-chosen mutations to the body (element memory, byte counts, the fields
//!    around them), and re-seals what the input asks for;
//! 4. runs every decoding entry point on the result: a value or a typed error, never a panic;
//!    a value restores to a valid state that captures again.
//!
//! An untouched image must restore exactly and capture back to the same bytes.
#![no_main]

use cosmic::image::{self, RestoreError};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;

use common::types::{Builder, NativeState};
use common::{Reseal, CHECKSUM_LEN};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

/// Offsets of the guard's fields in the header (see docs/format.md).
const ARCH: usize = 15;
const ENDIAN: usize = 16;
const POINTER_WIDTH: usize = 17;
const BUILD_ID: usize = 18;

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let forge: u8 = u.arbitrary()?;
    let reseal = match u.int_in_range(0u8..=7)? {
        0 => Reseal::Nothing,
        1 => Reseal::Header,
        2 | 3 => Reseal::Checksums,
        _ => Reseal::Everything,
    };
    let mut ops = Vec::new();
    for _ in 0..u.int_in_range(0u8..=4)? {
        ops.push((u.arbitrary::<u8>()?, u.arbitrary::<u16>()?, u.arbitrary::<u32>()?));
    }
    let state = Builder::new(u.take_rest()).native_state();
    let mut image = image::capture_native(&state).expect("a native capture");
    if forge % 8 == 0 && ops.is_empty() {
        // Compared through their images: floats from the input may be NaN (NaN != NaN).
        let back: NativeState = image::restore(&image).expect("an untouched native image");
        let again = image::capture_native(&back).expect("capture again");
        assert!(again == image, "capture -> restore -> capture changed the native image");
    }
    let header_len = common::claimed_header_len(&image).expect("a header length");
    let forged = forge % 8 == 1;
    if forged {
        match (forge >> 3) % 5 {
            0 => image[ARCH] ^= 1,
            1 => image[ENDIAN] ^= 1,
            2 => image[POINTER_WIDTH] = image[POINTER_WIDTH].wrapping_add(8),
            3 => image[BUILD_ID + usize::from(forge >> 6)] ^= 1,
            _ => image[header_len - CHECKSUM_LEN - 8] ^= 1, // the layout fingerprint
        }
        common::reseal(&mut image, Reseal::Header);
    }
    for &(kind, at, value) in &ops {
        // The body as it is now (earlier operations may have changed its length).
        let body = header_len..image.len().saturating_sub(CHECKSUM_LEN);
        if body.is_empty() {
            break;
        }
        let pos = body.start + usize::from(at) % body.len();
        match kind % 4 {
            0 => image[pos] ^= 1 << (value % 8),
            1 => image[pos] = value as u8,
            2 => {
                let n = (value as usize % 4 + 1).min(image.len() - CHECKSUM_LEN - pos);
                image.drain(pos..pos + n);
            }
            _ => {
                let bytes = value.to_le_bytes();
                image.splice(pos..pos, bytes[..(value as usize % 4) + 1].iter().copied());
            }
        }
    }
    common::reseal(&mut image, reseal);
    match image::restore::<NativeState>(&image) {
        Ok(value) => {
            assert!(!forged, "a native image with a forged guard field was decoded");
            let again = image::capture_native(&value).expect("a restored state must capture");
            let back: NativeState = image::restore(&again).expect("a fresh capture must restore");
            let twice = image::capture_native(&back).expect("capture again");
            assert!(twice == again, "a restored native state must round-trip");
        }
        Err(error) => {
            if forged && image::inspect(&image).is_ok() {
                assert!(
                    matches!(error, RestoreError::NativeMismatch { .. }),
                    "a forged guard field must be refused as such: {error:?}"
                );
            }
            std::hint::black_box(format!("{error} {error:?}"));
        }
    }
    common::check_all(&image);
    Ok(())
}
