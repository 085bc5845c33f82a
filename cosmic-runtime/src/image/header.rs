//! Writing and parsing the image header.

use super::checksum::crc32c;
use super::format::{
    Encoding, BODY_LEN_OFFSET, CHECKSUM_LEN, FIXED_HEADER_LEN, FORMAT_VERSION, MAGIC,
};
use super::isa::{Arch, Endian, Isa};
use super::{DecodeLimits, RestoreError};
use crate::state::{Fingerprint, VersionTable};

/// The longest type name a header holds.
pub(crate) const MAX_NAME_LEN: usize = 1024;
/// The most version-table entries a header holds.
pub(crate) const MAX_TABLE_ENTRIES: usize = 4096;

/// The parsed, checksum-verified header of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHeader {
    /// How the body is encoded.
    pub encoding: Encoding,
    /// Who wrote the image.
    pub isa: Isa,
    /// The root type's wire name.
    pub type_name: String,
    /// The root type's version.
    pub type_version: u32,
    /// The schema fingerprint over every named type at the versions in `versions`.
    pub fingerprint: Fingerprint,
    /// The version of every named type the state contains.
    pub versions: VersionTable,
    /// The layout fingerprint of a native image: a hash of the in-memory layout of every type
    /// its body holds as raw memory (0 in portable images, which do not record one).
    pub layout: u64,
    /// Length of the header in bytes, its checksum included.
    pub header_len: usize,
    /// Length of the body in bytes, its checksum excluded.
    pub body_len: u64,
}

impl ImageHeader {
    /// Total length of the image: header, body and body checksum.
    pub fn image_len(&self) -> u64 {
        // Saturates: a body length near u64::MAX is then simply longer than any input.
        (self.header_len as u64)
            .saturating_add(self.body_len)
            .saturating_add(CHECKSUM_LEN as u64)
    }
}

/// Appends a header with a zero body length and no checksum; [`seal`] completes it.
pub(crate) fn write(out: &mut Vec<u8>, header: &ImageHeader) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.header_len as u32).to_le_bytes());
    out.push(header.encoding.code());
    out.push(header.isa.arch.code());
    out.push(match header.isa.endian {
        Endian::Little => 0,
        Endian::Big => 1,
    });
    out.push(header.isa.pointer_width);
    out.extend_from_slice(&header.isa.build_id.to_le_bytes());
    out.extend_from_slice(&header.type_version.to_le_bytes());
    out.extend_from_slice(&header.fingerprint.0.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    push_name(out, &header.type_name);
    out.extend_from_slice(&(header.versions.len() as u16).to_le_bytes());
    for (name, version) in &header.versions {
        push_name(out, name);
        out.extend_from_slice(&version.to_le_bytes());
    }
    if header.encoding == Encoding::Native {
        out.extend_from_slice(&header.layout.to_le_bytes());
    }
    out.extend_from_slice(&[0; CHECKSUM_LEN]);
}

/// The header length for a type name and version table (checked against the limits by the
/// writer before calling) in an image of `encoding`.
pub(crate) fn encoded_len(type_name: &str, versions: &VersionTable, encoding: Encoding) -> usize {
    let table: usize = versions.keys().map(|name| 2 + name.len() + 4).sum();
    let layout = if encoding == Encoding::Native { 8 } else { 0 };
    FIXED_HEADER_LEN + 2 + type_name.len() + 2 + table + layout + CHECKSUM_LEN
}

/// Fills in the body length and the header checksum of the header at the start of `image`.
pub(crate) fn seal(image: &mut [u8], header_len: usize, body_len: u64) {
    image[BODY_LEN_OFFSET..BODY_LEN_OFFSET + 8].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c(&image[..header_len - CHECKSUM_LEN]);
    image[header_len - CHECKSUM_LEN..header_len].copy_from_slice(&crc.to_le_bytes());
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// Parses and verifies the header at the start of `bytes`. Checks, in order: magic, format
/// version, header length against the limit and the input, header checksum, then the fields.
pub(crate) fn parse(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageHeader, RestoreError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        if MAGIC.starts_with(bytes) {
            return Err(truncated("magic", MAGIC.len(), bytes.len()));
        }
        return Err(RestoreError::BadMagic {
            found: bytes[..bytes.len().min(MAGIC.len())].to_vec(),
        });
    }
    let mut fixed = Cursor::new(bytes, MAGIC.len());
    let format_version = fixed
        .u16()
        .ok_or_else(|| truncated("format version", 10, bytes.len()))?;
    if format_version != FORMAT_VERSION {
        return Err(RestoreError::UnsupportedFormatVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let header_len = fixed
        .u32()
        .ok_or_else(|| truncated("header length", 14, bytes.len()))?;
    if header_len > limits.max_header_bytes {
        return Err(RestoreError::OverLimit {
            what: "header",
            length: header_len.into(),
            limit: limits.max_header_bytes.into(),
        });
    }
    let header_len = header_len as usize;
    if header_len < FIXED_HEADER_LEN + 2 + 2 + CHECKSUM_LEN {
        return Err(malformed(format!(
            "header length {header_len} is shorter than its fixed part"
        )));
    }
    if bytes.len() < header_len {
        return Err(truncated("header", header_len, bytes.len()));
    }
    let stored = u32::from_le_bytes(le4(&bytes[header_len - CHECKSUM_LEN..header_len]));
    let computed = crc32c(&bytes[..header_len - CHECKSUM_LEN]);
    if stored != computed {
        return Err(RestoreError::HeaderChecksum { stored, computed });
    }

    // From here the bytes are what the writer wrote; a field that does not parse means a broken
    // writer, reported as a malformed header.
    let mut fields = Cursor::new(&bytes[..header_len - CHECKSUM_LEN], 14);
    let short = || malformed("fields run past the header length".to_owned());
    let encoding_code = fields.u8().ok_or_else(short)?;
    let encoding = Encoding::from_code(encoding_code)
        .ok_or_else(|| malformed(format!("unknown encoding code {encoding_code}")))?;
    let arch = Arch::from_code(fields.u8().ok_or_else(short)?);
    let endian = match fields.u8().ok_or_else(short)? {
        0 => Endian::Little,
        1 => Endian::Big,
        other => return Err(malformed(format!("unknown endianness code {other}"))),
    };
    let pointer_width = fields.u8().ok_or_else(short)?;
    let build_id = fields.u64().ok_or_else(short)?;
    let type_version = fields.u32().ok_or_else(short)?;
    let fingerprint = Fingerprint(fields.u64().ok_or_else(short)?);
    let body_len = fields.u64().ok_or_else(short)?;
    let type_name = fields.name("type name")?;
    let entries = fields.u16().ok_or_else(short)? as usize;
    if entries > MAX_TABLE_ENTRIES {
        return Err(malformed(format!(
            "{entries} version-table entries, over the limit of {MAX_TABLE_ENTRIES}"
        )));
    }
    let mut versions = VersionTable::new();
    for _ in 0..entries {
        let name = fields.name("version-table name")?;
        let version = fields.u32().ok_or_else(short)?;
        if versions.insert(name.clone(), version).is_some() {
            return Err(malformed(format!(
                "type `{name}` appears twice in the version table"
            )));
        }
    }
    let layout = match encoding {
        Encoding::Native => fields.u64().ok_or_else(short)?,
        Encoding::Portable => 0,
    };
    if fields.remaining() != 0 {
        return Err(malformed(format!(
            "{} unused bytes at the end of the header",
            fields.remaining()
        )));
    }
    if let Some((name, _)) = versions.iter().find(|(_, version)| **version == 0) {
        return Err(malformed(format!(
            "type `{name}` has version 0; versions start at 1"
        )));
    }
    if versions.get(&type_name) != Some(&type_version) {
        return Err(malformed(format!(
            "the version table does not list root type `{type_name}` at version {type_version}"
        )));
    }
    if body_len > limits.max_body_bytes {
        return Err(RestoreError::OverLimit {
            what: "body",
            length: body_len,
            limit: limits.max_body_bytes,
        });
    }
    Ok(ImageHeader {
        encoding,
        isa: Isa {
            arch,
            endian,
            pointer_width,
            build_id,
        },
        type_name,
        type_version,
        fingerprint,
        versions,
        layout,
        header_len,
        body_len,
    })
}

fn truncated(part: &'static str, needed: usize, available: usize) -> RestoreError {
    RestoreError::Truncated {
        part,
        needed: needed as u64,
        available: available as u64,
    }
}

fn malformed(reason: String) -> RestoreError {
    RestoreError::MalformedHeader { reason }
}

fn le4(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    out.copy_from_slice(bytes);
    out
}

/// Reads little-endian fields from a byte slice, never past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], pos: usize) -> Self {
        Cursor { bytes, pos }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(le4(b)))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut out = [0; 8];
            out.copy_from_slice(b);
            u64::from_le_bytes(out)
        })
    }

    fn name(&mut self, what: &str) -> Result<String, RestoreError> {
        let len = self
            .u16()
            .ok_or_else(|| malformed(format!("{what} length runs past the header")))?
            as usize;
        if len > MAX_NAME_LEN {
            return Err(malformed(format!(
                "{what} of {len} bytes is over the limit of {MAX_NAME_LEN}"
            )));
        }
        let bytes = self
            .take(len)
            .ok_or_else(|| malformed(format!("{what} runs past the header")))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed(format!("{what} is not UTF-8")))
    }
}
