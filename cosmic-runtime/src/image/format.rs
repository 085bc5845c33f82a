//! Constants of the image format (see `docs/format.md`).

/// The first eight bytes of every image. The high first byte catches 7-bit transfers, the CR LF
/// and LF catch newline translation, as in PNG.
pub const MAGIC: [u8; 8] = *b"\x89CSM\r\n\x1a\n";

/// The format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes before the variable part of the header: magic, format version, header length,
/// encoding, arch, endianness, pointer width, build id, type version, fingerprint, body length.
pub(crate) const FIXED_HEADER_LEN: usize = 8 + 2 + 4 + 1 + 1 + 1 + 1 + 8 + 4 + 8 + 8;

/// Offset of the body length field, patched once the body is written.
pub(crate) const BODY_LEN_OFFSET: usize = FIXED_HEADER_LEN - 8;

/// Size of each CRC-32C field.
pub(crate) const CHECKSUM_LEN: usize = 4;

/// How the body encodes the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// postcard: independent of architecture, endianness and pointer width.
    Portable,
    /// A memory image valid only for the same build on the same ISA.
    Native,
}

impl Encoding {
    pub(crate) fn code(self) -> u8 {
        match self {
            Encoding::Portable => 0,
            Encoding::Native => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Encoding> {
        match code {
            0 => Some(Encoding::Portable),
            1 => Some(Encoding::Native),
            _ => None,
        }
    }
}
