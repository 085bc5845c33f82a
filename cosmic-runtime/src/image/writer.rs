//! Capturing state into an image.

use postcard::ser_flavors::Flavor;

use super::checksum::Crc32c;
use super::format::{Encoding, CHECKSUM_LEN};
use super::header::{self, ImageHeader, MAX_NAME_LEN, MAX_TABLE_ENTRIES};
use super::isa::Isa;
use super::CaptureError;
use crate::memory;
use crate::state::{Fingerprint, Migratable};

/// Captures state into images, reusing one buffer.
///
/// Periodic checkpoints of the same task should keep one writer: after the first capture the
/// buffer's pages are already faulted in, and a capture costs about a copy of the state.
#[derive(Debug)]
pub struct ImageWriter {
    buffer: Vec<u8>,
    isa: Isa,
}

impl Default for ImageWriter {
    fn default() -> Self {
        ImageWriter::new()
    }
}

impl ImageWriter {
    /// A writer with an empty buffer that records this host's [`Isa`] in its images.
    pub fn new() -> Self {
        ImageWriter::with_isa(Isa::host())
    }

    /// A writer that records `isa` as the writer's descriptor, for golden images that must be
    /// byte-identical whichever machine and build produce them. The portable encoding does not
    /// depend on it.
    pub fn with_isa(isa: Isa) -> Self {
        ImageWriter {
            buffer: Vec::new(),
            isa,
        }
    }

    /// Captures `state` as a portable image and returns its bytes, valid until the next capture.
    pub fn capture<T: Migratable>(&mut self, state: &T) -> Result<&[u8], CaptureError> {
        let type_name = T::type_name();
        let (fingerprint, versions) = Fingerprint::current::<T>();
        check_header_limits(
            &type_name,
            versions.len(),
            versions.keys().map(String::as_str),
        )?;
        let header = ImageHeader {
            encoding: Encoding::Portable,
            isa: self.isa,
            header_len: header::encoded_len(&type_name, &versions),
            type_name: type_name.into_owned(),
            type_version: T::VERSION,
            fingerprint,
            versions,
            body_len: 0,
        };
        self.buffer.clear();
        header::write(&mut self.buffer, &header);
        debug_assert_eq!(self.buffer.len(), header.header_len);
        let body = BodyFlavor {
            buffer: &mut self.buffer,
            crc: Crc32c::new(),
            hashed: header.header_len,
        };
        let body_crc = postcard::serialize_with_flavor(state, body).map_err(|source| {
            CaptureError::Encode {
                type_name: header.type_name.clone(),
                source,
            }
        })?;
        let body_len = (self.buffer.len() - header.header_len) as u64;
        header::seal(&mut self.buffer, header.header_len, body_len);
        self.buffer.extend_from_slice(&body_crc.to_le_bytes());
        Ok(&self.buffer)
    }

    /// Takes the bytes of the last capture, leaving the writer empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }
}

/// Captures `state` as a portable image in a new buffer.
///
/// ```
/// use cosmic_runtime::image;
/// let bytes = image::capture(&vec![1u32, 2, 3])?;
/// let back: Vec<u32> = image::restore(&bytes)?;
/// assert_eq!(back, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn capture<T: Migratable>(state: &T) -> Result<Vec<u8>, CaptureError> {
    let mut writer = ImageWriter::new();
    writer.capture(state)?;
    Ok(writer.take())
}

fn check_header_limits<'a>(
    type_name: &'a str,
    entries: usize,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), CaptureError> {
    let too_large = |what, length, limit| CaptureError::HeaderTooLarge {
        type_name: type_name.to_owned(),
        what,
        length,
        limit,
    };
    if entries > MAX_TABLE_ENTRIES {
        return Err(too_large("the version table", entries, MAX_TABLE_ENTRIES));
    }
    for name in std::iter::once(type_name).chain(names) {
        if name.len() > MAX_NAME_LEN {
            return Err(too_large("a type name", name.len(), MAX_NAME_LEN));
        }
    }
    Ok(())
}

/// Copies larger than this go through in blocks that are checksummed while still in cache.
const COPY_BLOCK: usize = 256 << 10;
/// Small writes are checksummed in batches of about this size.
const HASH_BATCH: usize = 64 << 10;

/// A postcard output that appends to the writer's buffer and checksums the body as it goes,
/// so the checksum reads bytes from cache rather than from memory a second time.
struct BodyFlavor<'a> {
    buffer: &'a mut Vec<u8>,
    crc: Crc32c,
    /// Bytes before this offset are in `crc`.
    hashed: usize,
}

impl BodyFlavor<'_> {
    fn hash_pending(&mut self) {
        self.crc.update(&self.buffer[self.hashed..]);
        self.hashed = self.buffer.len();
    }

    fn reserve(&mut self, additional: usize) {
        if self.buffer.capacity() - self.buffer.len() >= additional {
            return;
        }
        // Room for the body checksum too, so that appending it never moves the image.
        let wanted =
            (self.buffer.len() + additional + CHECKSUM_LEN).max(self.buffer.capacity() * 2);
        // A large buffer is allocated here rather than by `Vec`'s growth so that it can ask
        // for huge pages before the first write touches it.
        let mut grown = memory::vec_with_capacity(wanted);
        grown.extend_from_slice(self.buffer);
        *self.buffer = grown;
    }
}

impl Flavor for BodyFlavor<'_> {
    type Output = u32;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.buffer.len() == self.buffer.capacity() {
            self.reserve(1);
        }
        self.buffer.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.reserve(data.len());
        if data.len() < COPY_BLOCK {
            self.buffer.extend_from_slice(data);
            if self.buffer.len() - self.hashed >= HASH_BATCH {
                self.hash_pending();
            }
            return Ok(());
        }
        self.hash_pending();
        for block in data.chunks(COPY_BLOCK) {
            self.buffer.extend_from_slice(block);
            self.crc.update(block);
        }
        self.hashed = self.buffer.len();
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<u32> {
        self.hash_pending();
        Ok(self.crc.finish())
    }
}
