//! Capturing state into an image.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use postcard::ser_flavors::Flavor;

use super::checksum::{self, Crc32c, Destination, COPY_BLOCK};
use super::format::{Encoding, CHECKSUM_LEN};
use super::header::{self, ImageHeader, MAX_NAME_LEN, MAX_TABLE_ENTRIES};
use super::isa::Isa;
use super::CaptureError;
use crate::memory;
use crate::state::{Fingerprint, Migratable, SchemaError};

/// Captures state into images, reusing one buffer.
///
/// Periodic checkpoints of the same task should keep one writer: after the first capture the
/// buffer's pages are already faulted in, and a capture costs about a copy of the state.
#[derive(Debug)]
pub struct ImageWriter {
    buffer: Vec<u8>,
    /// How many bytes at the start of `buffer`'s allocation earlier captures wrote: memory
    /// that is mapped, but probably no longer in cache.
    touched: usize,
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
            touched: 0,
            isa,
        }
    }

    /// Captures `state` as a portable image and returns its bytes, valid until the next capture.
    pub fn capture<T: Migratable>(&mut self, state: &T) -> Result<&[u8], CaptureError> {
        let plan = TypePlan::of::<T>();
        if let Some((what, length, limit)) = plan.too_large {
            return Err(CaptureError::HeaderTooLarge {
                type_name: plan.header.type_name.clone(),
                what,
                length,
                limit,
            });
        }
        self.buffer.clear();
        let expected_len = plan.last_len.load(Ordering::Relaxed);
        if self.buffer.capacity() < expected_len {
            // A new buffer: ask for huge pages before anything touches it.
            self.buffer = memory::vec_with_capacity(expected_len);
            self.touched = 0;
        }
        if self.isa == plan.header.isa {
            header::write(&mut self.buffer, &plan.header);
        } else {
            let header = ImageHeader {
                isa: self.isa,
                ..plan.header.clone()
            };
            header::write(&mut self.buffer, &header);
        }
        let header_len = plan.header.header_len;
        debug_assert_eq!(self.buffer.len(), header_len);
        self.touched = self.touched.max(header_len);
        let body = BodyFlavor {
            buffer: &mut self.buffer,
            touched: &mut self.touched,
            crc: Crc32c::new(),
            hashed: header_len,
        };
        let body_crc = postcard::serialize_with_flavor(state, body).map_err(|source| {
            CaptureError::Encode {
                type_name: plan.header.type_name.clone(),
                source,
            }
        })?;
        let body_len = (self.buffer.len() - header_len) as u64;
        header::seal(&mut self.buffer, header_len, body_len);
        self.buffer.extend_from_slice(&body_crc.to_le_bytes());
        self.touched = self.touched.max(self.buffer.len());
        plan.last_len.store(self.buffer.len(), Ordering::Relaxed);
        Ok(&self.buffer)
    }

    /// Takes the bytes of the last capture, leaving the writer empty.
    pub fn take(&mut self) -> Vec<u8> {
        self.touched = 0;
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
    let mut image = writer.take();
    // The buffer was sized for the last image of this type; do not hand out much more memory
    // than this image needs (shrinking a large buffer remaps it, without a copy).
    if image.capacity() / 2 > image.len() {
        image.shrink_to_fit();
    }
    Ok(image)
}

/// What capturing and restoring a `T` need that does not depend on the value: the schema
/// walk and fingerprint, done once per type instead of once per image.
#[derive(Debug)]
pub(crate) struct TypePlan {
    /// The header of an image of `T` written by this host, with a zero body length.
    pub(crate) header: ImageHeader,
    /// What [`Fingerprint::written`] gives for `T` at the versions in `header`: the
    /// fingerprint an image written by this build must carry.
    pub(crate) written_at_current: Result<Fingerprint, SchemaError>,
    /// A name or table over the header's limits: what, its length, the limit.
    too_large: Option<(&'static str, usize, usize)>,
    /// The length of the last image of `T` captured, to size the next new buffer up front
    /// instead of growing it (each growth moves or remaps what is written so far).
    last_len: AtomicUsize,
}

impl TypePlan {
    /// The plan of `T`, computed on first use.
    pub(crate) fn of<T: Migratable>() -> Arc<TypePlan> {
        static PLANS: LazyLock<RwLock<HashMap<TypeId, Arc<TypePlan>>>> =
            LazyLock::new(Default::default);
        let id = TypeId::of::<T>();
        let known = PLANS
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        if let Some(plan) = known {
            return plan;
        }
        let plan = Arc::new(TypePlan::new::<T>());
        PLANS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_insert(plan)
            .clone()
    }

    fn new<T: Migratable>() -> TypePlan {
        let type_name = T::type_name();
        let (fingerprint, versions) = Fingerprint::current::<T>();
        let too_large = header_limit_exceeded(
            &type_name,
            versions.len(),
            versions.keys().map(String::as_str),
        );
        let written_at_current = Fingerprint::written::<T>(&versions);
        let header_len = if too_large.is_none() {
            header::encoded_len(&type_name, &versions)
        } else {
            0
        };
        TypePlan {
            header: ImageHeader {
                encoding: Encoding::Portable,
                isa: Isa::host(),
                header_len,
                type_name: type_name.into_owned(),
                type_version: T::VERSION,
                fingerprint,
                versions,
                body_len: 0,
            },
            written_at_current,
            too_large,
            last_len: AtomicUsize::new(0),
        }
    }
}

/// The first header field over its limit, if any: what it is, its length, the limit.
fn header_limit_exceeded<'a>(
    type_name: &'a str,
    entries: usize,
    names: impl Iterator<Item = &'a str>,
) -> Option<(&'static str, usize, usize)> {
    if entries > MAX_TABLE_ENTRIES {
        return Some(("the version table", entries, MAX_TABLE_ENTRIES));
    }
    std::iter::once(type_name)
        .chain(names)
        .find(|name| name.len() > MAX_NAME_LEN)
        .map(|name| ("a type name", name.len(), MAX_NAME_LEN))
}

/// Small writes are checksummed in batches of about this size.
const HASH_BATCH: usize = 64 << 10;

/// A postcard output that appends to the writer's buffer and checksums the body as it goes,
/// so the checksum reads bytes from cache rather than from memory a second time.
struct BodyFlavor<'a> {
    buffer: &'a mut Vec<u8>,
    /// The writer's count of bytes written at the start of the buffer's allocation; only bulk
    /// writes keep it exact, the rest of the body is counted when the capture ends.
    touched: &'a mut usize,
    crc: Crc32c,
    /// Bytes before this offset are in `crc`.
    hashed: usize,
}

impl BodyFlavor<'_> {
    fn hash_pending(&mut self) {
        self.crc.update(&self.buffer[self.hashed..]);
        self.hashed = self.buffer.len();
    }

    /// Makes room for `additional` more bytes. Out of line: postcard calls the flavor for every
    /// few bytes, and the common case (there is room) must stay a compare in the caller.
    ///
    /// Growth goes through the allocator's `realloc`, which moves a large buffer by remapping
    /// its pages (no copy, no new page faults for what is already written).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, additional: usize) {
        // Room for the body checksum too, so that appending it never moves the image.
        let needed = additional + CHECKSUM_LEN;
        if self.buffer.capacity() - self.buffer.len() >= needed {
            return;
        }
        let wanted = (self.buffer.len() + needed).max(self.buffer.capacity() * 2);
        let before = self.buffer.as_ptr();
        self.buffer.reserve_exact(wanted - self.buffer.len());
        if self.buffer.as_ptr() != before {
            // Only what the buffer holds is sure to have come along.
            *self.touched = self.buffer.len();
        }
    }

    /// Makes room for a large write: a new buffer that asks for huge pages before the first
    /// write touches it, when the current one is too small.
    fn grow_for_bulk(&mut self, additional: usize) {
        let needed = additional + CHECKSUM_LEN;
        if self.buffer.capacity() - self.buffer.len() >= needed {
            return;
        }
        let wanted = (self.buffer.len() + needed).max(self.buffer.capacity() * 2);
        let mut grown = memory::vec_with_capacity(wanted);
        grown.extend_from_slice(self.buffer);
        *self.buffer = grown;
        *self.touched = self.buffer.len();
    }

    /// Appends a large slice (a bulk field): copied in cache-sized blocks, each checksummed
    /// while still in cache; a very large one is shared with helper threads.
    #[inline(never)]
    fn extend_large(&mut self, data: &[u8]) {
        self.grow_for_bulk(data.len());
        self.hash_pending();
        let start = self.buffer.len();
        let end = start + data.len();
        // Memory an earlier capture wrote is out of cache: streaming stores skip reading it.
        let destination = if end <= *self.touched {
            Destination::Reused
        } else {
            Destination::Fresh
        };
        let spare = &mut self.buffer.spare_capacity_mut()[..data.len()];
        let crc = checksum::copy_and_checksum(spare, data, destination);
        // SAFETY: `grow_for_bulk` made room, and the copy initialised the `data.len()` bytes
        // after `start`.
        unsafe { self.buffer.set_len(end) };
        self.crc.combine(&crc);
        self.hashed = end;
        *self.touched = (*self.touched).max(end);
    }
}

impl Flavor for BodyFlavor<'_> {
    type Output = u32;

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.buffer.len() == self.buffer.capacity() {
            self.grow(1);
        }
        self.buffer.push(byte);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() >= COPY_BLOCK {
            self.extend_large(data);
            return Ok(());
        }
        if self.buffer.capacity() - self.buffer.len() < data.len() {
            self.grow(data.len());
        }
        self.buffer.extend_from_slice(data);
        if self.buffer.len() - self.hashed >= HASH_BATCH {
            self.hash_pending();
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<u32> {
        self.hash_pending();
        Ok(self.crc.finish())
    }
}
