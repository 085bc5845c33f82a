//! Shared helpers of the integration tests: host identities that trust each other
//! ([`identity`]), a reference CRC-32C, surgery on image bytes
//! (rewrite a header field or the body, then re-seal the checksums the way a writer would), and
//! the fixed writer descriptor of golden images.
//!
//! The offsets below restate the header layout of `cosmic-runtime/src/image/header.rs` on
//! purpose: if the format moves a field, these helpers (and the tests built on them) must fail
//! rather than follow along silently.

pub mod batch_value;
pub mod chain;
pub mod counter;
pub mod etcd;
#[cfg(unix)]
pub mod files;
pub mod identity;
pub mod logging;
#[cfg(feature = "s3")]
pub mod s3;
pub mod sim_rng;
pub mod store_contract;
pub mod timed;

use cosmic::image::{Arch, Endian, ImageWriter, Isa};
use cosmic::Migratable;

/// Offset of the format version (u16 LE), right after the 8-byte magic.
pub const FORMAT_VERSION_OFFSET: usize = 8;
/// Offset of the header length (u32 LE, checksum included).
pub const HEADER_LEN_OFFSET: usize = 10;
/// Offset of the encoding code (u8: 0 portable, 1 native).
pub const ENCODING_OFFSET: usize = 14;
/// Offset of the architecture code (u8).
pub const ARCH_OFFSET: usize = 15;
/// Offset of the endianness code (u8: 0 little, 1 big).
pub const ENDIAN_OFFSET: usize = 16;
/// Offset of the pointer width in bits (u8).
pub const POINTER_WIDTH_OFFSET: usize = 17;
/// Offset of the build id (u64 LE).
pub const BUILD_ID_OFFSET: usize = 18;
/// Offset of the root type's version (u32 LE).
pub const TYPE_VERSION_OFFSET: usize = 26;
/// Offset of the schema fingerprint (u64 LE).
pub const FINGERPRINT_OFFSET: usize = 30;
/// Offset of the body length (u64 LE, body checksum excluded).
pub const BODY_LEN_OFFSET: usize = 38;
/// Length of the fixed part of the header; the type name and version table follow.
pub const FIXED_HEADER_LEN: usize = 46;
/// Length of each CRC-32C field.
pub const CHECKSUM_LEN: usize = 4;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: slow and obviously right,
/// a reference to check the library's checksums against.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// The descriptor golden images are written with, so their bytes do not depend on the machine
/// or build that produces them.
pub fn golden_isa() -> Isa {
    Isa {
        arch: Arch::X86_64,
        endian: Endian::Little,
        pointer_width: 64,
        build_id: 0,
    }
}

/// Captures `state` with the [`golden_isa`], so that equal states give equal bytes everywhere.
pub fn capture_fixed<T: Migratable>(state: &T) -> Vec<u8> {
    let mut writer = ImageWriter::with_isa(golden_isa());
    writer
        .capture(state)
        .unwrap_or_else(|error| panic!("capture failed: {error}"));
    writer.take()
}

fn read_u32(image: &[u8], offset: usize) -> u32 {
    let mut le = [0; 4];
    le.copy_from_slice(&image[offset..offset + 4]);
    u32::from_le_bytes(le)
}

fn read_u64(image: &[u8], offset: usize) -> u64 {
    let mut le = [0; 8];
    le.copy_from_slice(&image[offset..offset + 8]);
    u64::from_le_bytes(le)
}

/// The header length recorded in `image`.
pub fn header_len(image: &[u8]) -> usize {
    read_u32(image, HEADER_LEN_OFFSET) as usize
}

/// The body length recorded in `image`.
pub fn body_len(image: &[u8]) -> u64 {
    read_u64(image, BODY_LEN_OFFSET)
}

/// The header CRC stored in `image`.
pub fn stored_header_crc(image: &[u8]) -> u32 {
    read_u32(image, header_len(image) - CHECKSUM_LEN)
}

/// The body CRC stored in `image` (its last four bytes).
pub fn stored_body_crc(image: &[u8]) -> u32 {
    read_u32(image, image.len() - CHECKSUM_LEN)
}

/// The body of a well-formed `image`.
pub fn body(image: &[u8]) -> &[u8] {
    &image[header_len(image)..image.len() - CHECKSUM_LEN]
}

/// Recomputes the header CRC of `image` over its (possibly edited) header bytes.
pub fn reseal_header(image: &mut [u8]) {
    let len = header_len(image);
    let crc = crc32c(&image[..len - CHECKSUM_LEN]);
    image[len - CHECKSUM_LEN..len].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the body CRC of `image` over the bytes between the header and the last four.
pub fn reseal_body(image: &mut [u8]) {
    let start = header_len(image);
    let end = image.len() - CHECKSUM_LEN;
    let crc = crc32c(&image[start..end]);
    image[end..].copy_from_slice(&crc.to_le_bytes());
}

/// Overwrites header bytes at `offset` and re-seals the header CRC: a header that a broken or
/// hostile writer produced, with a valid checksum.
pub fn patch_header(image: &[u8], offset: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = image.to_vec();
    out[offset..offset + bytes.len()].copy_from_slice(bytes);
    reseal_header(&mut out);
    out
}

/// `image` with its body replaced by `body`: body length, header CRC and body CRC all updated,
/// so every check before decoding passes.
pub fn with_body(image: &[u8], body: &[u8]) -> Vec<u8> {
    let len = header_len(image);
    let mut out = image[..len].to_vec();
    out[BODY_LEN_OFFSET..BODY_LEN_OFFSET + 8].copy_from_slice(&(body.len() as u64).to_le_bytes());
    reseal_header(&mut out);
    out.extend_from_slice(body);
    out.extend_from_slice(&[0; CHECKSUM_LEN]);
    reseal_body(&mut out);
    out
}

/// The variable part of a header: a type name, then a version table of `entries`, each name
/// length-prefixed with a u16 LE, as the format writes them (raw bytes, to allow bad UTF-8).
pub fn header_tail(type_name: &[u8], entries: &[(&[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    push_name(&mut out, type_name);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (name, version) in entries {
        push_name(&mut out, name);
        out.extend_from_slice(&version.to_le_bytes());
    }
    out
}

fn push_name(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
}

/// `image` with the variable part of its header (type name and version table) replaced by
/// `tail` (see [`header_tail`]); header length and both CRCs updated, body kept.
pub fn with_header_tail(image: &[u8], tail: &[u8]) -> Vec<u8> {
    let body = body(image).to_vec();
    let new_len = FIXED_HEADER_LEN + tail.len() + CHECKSUM_LEN;
    let mut out = image[..FIXED_HEADER_LEN].to_vec();
    out[HEADER_LEN_OFFSET..HEADER_LEN_OFFSET + 4].copy_from_slice(&(new_len as u32).to_le_bytes());
    out.extend_from_slice(tail);
    out.extend_from_slice(&[0; CHECKSUM_LEN]);
    reseal_header(&mut out);
    out.extend_from_slice(&body);
    out.extend_from_slice(&[0; CHECKSUM_LEN]);
    reseal_body(&mut out);
    out
}

/// The postcard varint (LEB128) of `value`, for hand-written bodies.
pub fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_crc32c_matches_the_standard_check_value() {
        // The check value of CRC-32C over "123456789" (RFC 3720, appendix B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn varint_matches_postcard() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
    }
}
