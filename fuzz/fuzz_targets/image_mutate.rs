//! Structured fuzzing behind the checksums.
//!
//! A raw-bytes fuzzer rarely gets a mutated image past the CRC-32C checks, so the body
//! decoder and the version logic behind them would stay unexplored. This target:
//! 1. builds a state from the input (`types::Builder`: any bytes give a value) and captures
//!    one of the fuzz types (or a std type) as a valid image;
//! 2. optionally forges the header: the version of each named type, extra or missing table
//!    entries, the root version, other header fields, with the fingerprint this build expects
//!    for that table (so the image reaches the body decoder of older layouts);
//! 3. applies fuzz-chosen mutations to the whole image or to its body;
//! 4. re-seals what the input asks for (header checksum, body checksum, body length);
//! 5. runs every check of `image_decode` on the result.
//!
//! An untouched image must restore and capture back to the same bytes.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;

use common::{RawHeader, Reseal};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

/// Versions worth trying for a named type.
const VERSIONS: [u32; 6] = [1, 2, 0, 3, u32::MAX, 1];

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let root: u8 = u.arbitrary()?;
    let forge: u8 = u.arbitrary()?;
    let reseal = match u.int_in_range(0u8..=7)? {
        0 => Reseal::Nothing,
        1 => Reseal::Header,
        2 | 3 => Reseal::Checksums,
        _ => Reseal::Everything,
    };
    let mutations = u.int_in_range(0u8..=4)?;
    let mut ops = Vec::new();
    for _ in 0..mutations {
        ops.push((
            u.arbitrary::<u8>()?,
            u.arbitrary::<u16>()?,
            u.arbitrary::<u64>()?,
        ));
    }
    // Table edits, used when forging: (entry index, version choice, drop it?).
    let edits: Vec<(u8, u8, bool)> = (0..u.int_in_range(0u8..=3)?)
        .map(|_| Ok((u.arbitrary()?, u.arbitrary()?, u.arbitrary()?)))
        .collect::<Result<_>>()?;
    let rest = u.take_rest();

    let state = common::types::Builder::new(rest).state();
    let mut image = common::capture_root(root, &state);

    if forge == 0 && ops.is_empty() {
        // An untouched image of a value built from any bytes must restore and round-trip.
        assert_round_trip(root, &image);
    }

    let (header, body) = common::split(&image);
    let header_len = header.header_len;
    if forge % 4 == 1 {
        image = forge_header(&header, body, forge, &edits);
    }

    for &(kind, at, value) in &ops {
        mutate(&mut image, header_len, kind, at, value);
    }
    common::reseal(&mut image, reseal);
    common::check_all(&image);
    Ok(())
}

fn assert_round_trip(root: u8, image: &[u8]) {
    use cosmic::image::{capture, restore};
    let again = match root % 10 {
        0 | 1 => capture(&restore::<common::types::State>(image).expect("State round trip")),
        2 => capture(&restore::<common::types::V1State>(image).expect("V1State round trip")),
        3 => capture(&restore::<common::types::Phase>(image).expect("Phase round trip")),
        4 => capture(&restore::<common::types::Tree>(image).expect("Tree round trip")),
        5 => capture(&restore::<common::types::Counter>(image).expect("Counter round trip")),
        6 => capture(&restore::<common::types::CounterV1>(image).expect("CounterV1 round trip")),
        7 => capture(&restore::<common::types::Point>(image).expect("Point round trip")),
        8 => capture(&restore::<common::types::Tile>(image).expect("Tile round trip")),
        _ => capture(&restore::<Vec<(String, u32)>>(image).expect("pairs round trip")),
    }
    .expect("capture again");
    assert!(
        again == image,
        "capture -> restore -> capture changed the image"
    );
}

/// A header with a forged version table (and possibly other fields), with the fingerprint
/// that this build expects for the forged table where there is one.
fn forge_header(
    header: &cosmic::image::ImageHeader,
    body: &[u8],
    forge: u8,
    edits: &[(u8, u8, bool)],
) -> Vec<u8> {
    let mut raw = RawHeader::of(header);
    let mut table: BTreeMap<String, u32> = header.versions.clone();
    // Start from every name `fuzz::State` can reach, so that entries can be added too.
    let mut names = common::state_type_names();
    names.push("fuzz::Bogus".to_owned());
    for &(index, version, drop) in edits {
        let name = &names[usize::from(index) % names.len()];
        if drop {
            table.remove(name);
        } else {
            table.insert(
                name.clone(),
                VERSIONS[usize::from(version) % VERSIONS.len()],
            );
        }
    }
    // Keep the root's version consistent with its entry, mostly.
    if forge & 0x10 == 0 {
        if let Some(&version) = table.get(&raw.type_name) {
            raw.type_version = version;
        }
    }
    if raw.type_name == "fuzz::State" {
        if let Some(fingerprint) = common::state_fingerprint(&table) {
            raw.fingerprint = fingerprint;
        }
    }
    if forge & 0x20 != 0 {
        raw.encoding = (forge >> 6) & 1; // Native images must be refused.
    }
    if forge & 0x40 != 0 {
        raw.arch = forge;
        raw.endian = 1;
        raw.pointer_width = 32;
    }
    if forge & 0x80 != 0 {
        // The type name itself: another registered type, or an unknown one.
        raw.type_name = ["fuzz::Counter", "fuzz::Tree", "fuzz::Nope", ""]
            [usize::from(forge >> 2) % 4]
            .to_owned();
    }
    raw.versions = table.into_iter().collect();
    raw.image(body)
}

/// One mutation. `kind` picks the operation and whether it aims at the body; `at` is an offset
/// (modulo the length); `value` is the data.
fn mutate(image: &mut Vec<u8>, header_len: usize, kind: u8, at: u16, value: u64) {
    let body_only = kind & 0x80 != 0 && image.len() > header_len + 4;
    let (start, end) = if body_only {
        (header_len, image.len() - 4)
    } else {
        (0, image.len())
    };
    if end <= start {
        return;
    }
    let pos = start + usize::from(at) % (end - start);
    let bytes = value.to_le_bytes();
    match kind & 0x0f {
        0 => image[pos] ^= 1 << (value % 8),
        1 => image[pos] = value as u8,
        2 => {
            // Overwrite with an interesting little-endian integer of 1, 2, 4 or 8 bytes.
            let width = [1, 2, 4, 8][(value >> 62) as usize];
            let interesting = [0u64, 1, 0x7f, 0x80, 0xff, 0xffff, u32::MAX as u64, u64::MAX];
            let v = interesting[(value as usize) % interesting.len()].to_le_bytes();
            let n = width.min(end - pos);
            image[pos..pos + n].copy_from_slice(&v[..n]);
        }
        3 => {
            let n = (value as usize % 8) + 1;
            image.splice(pos..pos, bytes[..n].iter().copied());
        }
        4 => {
            let n = (value as usize % 16 + 1).min(end - pos);
            image.drain(pos..pos + n);
        }
        5 => image.truncate(pos),
        6 => {
            // A postcard varint of a large length: the classic over-allocation probe.
            let mut varint = Vec::new();
            let mut v = value | 0x1000;
            while v >= 0x80 {
                varint.push((v as u8) | 0x80);
                v >>= 7;
            }
            varint.push(v as u8);
            image.splice(pos..pos, varint);
        }
        7 => {
            let n = (value as usize % 32 + 1).min(end - pos);
            let copy = image[pos..pos + n].to_vec();
            image.splice(pos..pos, copy);
        }
        8 => image.extend_from_slice(&bytes[..(value as usize % 8) + 1]),
        _ => {
            let n = 8.min(end - pos);
            image[pos..pos + n].copy_from_slice(&bytes[..n]);
        }
    }
}
