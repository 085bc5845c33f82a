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
use super::{CaptureError, DecodeLimits};
use crate::memory;
use crate::state::{self, Fingerprint, Migratable, SchemaError};

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
        self.capture_with(state, Encoding::Portable)
    }

    /// Captures `state` as a native image: `#[migratable(native)]` fields are stored as their
    /// memory (no work per element), and only a host of the same architecture, byte order,
    /// pointer width, build and layout reads it back (see [`check_native`]). For moves between
    /// like machines; checkpoints that another kind of machine may read stay portable.
    ///
    /// Refused with [`CaptureError::NativeUnavailable`] when this writer's build id is unknown
    /// (0), since no reader could then prove it runs the same build.
    ///
    /// [`check_native`]: super::check_native
    pub fn capture_native<T: Migratable>(&mut self, state: &T) -> Result<&[u8], CaptureError> {
        self.capture_with(state, Encoding::Native)
    }

    /// Captures `state` in `encoding`: [`capture`](Self::capture) or
    /// [`capture_native`](Self::capture_native), chosen at run time.
    pub fn capture_with<T: Migratable>(
        &mut self,
        state: &T,
        encoding: Encoding,
    ) -> Result<&[u8], CaptureError> {
        let plan = TypePlan::of::<T>();
        if let Some((what, length, limit)) = plan.too_large {
            return Err(CaptureError::HeaderTooLarge {
                type_name: plan.header.type_name.clone(),
                what,
                length,
                limit,
            });
        }
        if let Err(source) = &plan.written_at_current {
            return Err(CaptureError::Schema {
                type_name: plan.header.type_name.clone(),
                source: source.clone(),
            });
        }
        let native = encoding == Encoding::Native;
        if native && self.isa.build_id == 0 {
            return Err(CaptureError::NativeUnavailable {
                type_name: plan.header.type_name.clone(),
                reason: super::NativeMismatch::UnknownHostBuild,
            });
        }
        self.buffer.clear();
        let expected_len = plan.last_len.load(Ordering::Relaxed);
        if self.buffer.capacity() < expected_len {
            // A new buffer: ask for huge pages before anything touches it.
            self.buffer = memory::vec_with_capacity(expected_len);
            self.touched = 0;
        }
        if self.isa == plan.header.isa && !native {
            header::write(&mut self.buffer, &plan.header);
        } else {
            let header = ImageHeader {
                isa: self.isa,
                encoding,
                layout: if native { plan.layout } else { 0 },
                header_len: if native {
                    plan.native_header_len
                } else {
                    plan.header.header_len
                },
                ..plan.header.clone()
            };
            header::write(&mut self.buffer, &header);
        }
        let header_len = self.buffer.len();
        self.touched = self.touched.max(header_len);
        let body = BodyFlavor::new(&mut self.buffer, &mut self.touched, header_len);
        let (encoded, _) =
            state::with_native_encoding(native, || postcard::serialize_with_flavor(state, body));
        let body_crc = encoded.map_err(|source| CaptureError::Encode {
            type_name: plan.header.type_name.clone(),
            source,
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

    /// Gives back a buffer that an earlier [`take`](Self::take) handed out (once its image
    /// is written), so that the next capture writes into memory that is already mapped
    /// instead of faulting in fresh pages. Kept only if it is larger than the current one.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() > self.buffer.capacity() {
            // Its whole length was written by the capture that filled it.
            self.touched = buffer.len();
            self.buffer = buffer;
            self.buffer.clear();
        }
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

/// Captures `state` as a native image in a new buffer (see
/// [`ImageWriter::capture_native`]: only the same build on the same kind of machine reads it).
pub fn capture_native<T: Migratable>(state: &T) -> Result<Vec<u8>, CaptureError> {
    let mut writer = ImageWriter::new();
    writer.capture_native(state)?;
    let mut image = writer.take();
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
    /// Whether `T`'s schema holds a `usize` or `isize` anywhere: such a value written by a
    /// wider host may not fit this one (see `RestoreError::WiderThanHost`).
    pub(crate) pointer_sized: bool,
    /// The layout fingerprint of `T`'s native encoding (see `SchemaBuilder::layout_fingerprint`).
    pub(crate) layout: u64,
    /// The header length of a native image of `T` (which adds the layout fingerprint).
    native_header_len: usize,
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
        let (fingerprint, versions, layout) = Fingerprint::current_with_layout::<T>();
        let pointer_sized = {
            let mut schema = crate::state::SchemaBuilder::current();
            let root = T::shape(&mut schema);
            schema
                .describe(&root)
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|token| token == "usize" || token == "isize")
        };
        let too_large = header_limit_exceeded(
            &type_name,
            versions.len(),
            versions.keys().map(String::as_str),
        );
        let written_at_current = Fingerprint::written::<T>(&versions);
        let mut header_len = if too_large.is_none() {
            header::encoded_len(&type_name, &versions, Encoding::Portable)
        } else {
            0
        };
        // Never write a header that a reader with the default limits would refuse.
        let readable = DecodeLimits::DEFAULT.max_header_bytes as usize;
        let too_large = too_large
            .or_else(|| (header_len > readable).then_some(("the header", header_len, readable)));
        if too_large.is_some() {
            header_len = 0;
        }
        let native_header_len = if header_len == 0 {
            0
        } else {
            header::encoded_len(&type_name, &versions, Encoding::Native)
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
                layout: 0,
                body_len: 0,
            },
            written_at_current,
            pointer_sized,
            layout,
            native_header_len,
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
///
/// Small writes go through a cursor kept in the flavor itself, as postcard's own slice flavor
/// does: the `Vec`'s length lives behind a reference, and since a byte store may alias it, the
/// compiler would reload it and the data pointer after every field. `buffer.len()` is brought
/// up to date (`sync_len`) before anything else reads the buffer.
struct BodyFlavor<'a> {
    buffer: &'a mut Vec<u8>,
    /// The writer's count of bytes written at the start of the buffer's allocation; only bulk
    /// writes keep it exact, the rest of the body is counted when the capture ends.
    touched: &'a mut usize,
    crc: Crc32c,
    /// Bytes before this offset are in `crc`.
    hashed: usize,
    /// Where the next byte goes, in `buffer`'s allocation at or after `buffer.len()`.
    cursor: *mut u8,
    /// Writes that end at or before this address take the fast path: there is room for them
    /// (and the body checksum after them), and the unhashed bytes stay under a batch. Never
    /// before `cursor`.
    soft_end: *mut u8,
}

impl<'a> BodyFlavor<'a> {
    /// A flavor appending to `buffer`, whose first `hashed` bytes (the header) are not part of
    /// the body's checksum.
    fn new(buffer: &'a mut Vec<u8>, touched: &'a mut usize, hashed: usize) -> BodyFlavor<'a> {
        let mut flavor = BodyFlavor {
            buffer,
            touched,
            crc: Crc32c::new(),
            hashed,
            cursor: std::ptr::null_mut(),
            soft_end: std::ptr::null_mut(),
        };
        flavor.start_batch(0);
        flavor
    }

    /// Makes sure `additional` bytes can be written at `cursor` with plain stores: one compare
    /// in the common case.
    #[inline(always)]
    fn reserve(&mut self, additional: usize) {
        // `soft_end` is never before `cursor`, so this does not wrap.
        if (self.soft_end as usize) - (self.cursor as usize) < additional {
            self.refill(additional);
        }
    }

    /// Checksums the batch written so far (still in cache), makes room for `additional` bytes
    /// and sets the next batch's end.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, additional: usize) {
        self.sync_len();
        self.hash_pending();
        self.grow(additional);
        self.start_batch(additional);
    }
}

impl BodyFlavor<'_> {
    /// Sets `buffer`'s length to what the cursor has written.
    fn sync_len(&mut self) {
        let len = self.cursor as usize - self.buffer.as_ptr() as usize;
        // SAFETY: the cursor only moves over bytes it wrote, within the capacity (`reserve`).
        unsafe { self.buffer.set_len(len) };
    }

    /// Points the cursor at the end of `buffer` (whose length is up to date), and ends the
    /// fast path a batch after the last checksummed byte, or where the room ends, but not
    /// before the `next` bytes about to be written (`grow` made room for them): the cursor
    /// must never pass `soft_end`.
    fn start_batch(&mut self, next: usize) {
        let len = self.buffer.len();
        let room_end = self.buffer.capacity().saturating_sub(CHECKSUM_LEN);
        let soft_end = (self.hashed + HASH_BATCH).min(room_end).max(len + next);
        debug_assert!(soft_end <= self.buffer.capacity());
        let base = self.buffer.as_mut_ptr();
        // SAFETY: both offsets are within the allocation (at most its capacity).
        unsafe {
            self.cursor = base.add(len);
            self.soft_end = base.add(soft_end);
        }
    }

    fn hash_pending(&mut self) {
        self.crc.update(&self.buffer[self.hashed..]);
        self.hashed = self.buffer.len();
    }

    /// Makes room for `additional` more bytes (and the body checksum after them).
    fn grow(&mut self, additional: usize) {
        // Room for the body checksum too, so that appending it never moves the image.
        let needed = additional + CHECKSUM_LEN;
        let (len, capacity) = (self.buffer.len(), self.buffer.capacity());
        if capacity - len >= needed {
            return;
        }
        let wanted = (len + needed).max(capacity * 2);
        let before = self.buffer.as_ptr();
        memory::reserve_exact(self.buffer, wanted - len);
        if self.buffer.as_ptr() != before {
            // Only what the buffer holds is sure to have come along.
            *self.touched = len;
        }
    }

    /// Appends a large slice (a bulk field): copied in cache-sized blocks, each checksummed
    /// while still in cache.
    #[inline(never)]
    fn extend_large(&mut self, data: &[u8]) {
        self.sync_len();
        self.grow(data.len());
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
        checksum::copy_and_checksum(spare, data, destination, &mut self.crc);
        // SAFETY: `grow` made room, and the copy initialised the `data.len()` bytes
        // after `start`.
        unsafe { self.buffer.set_len(end) };
        self.hashed = end;
        self.start_batch(0);
        *self.touched = (*self.touched).max(end);
    }
}

impl Flavor for BodyFlavor<'_> {
    type Output = u32;

    // postcard calls these for every field (a byte, a varint, a float's four bytes): one
    // compare each (`reserve`), then a plain store through the cursor, instead of a capacity
    // check here, another inside `Vec::push`/`extend_from_slice` and a batch count.
    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.reserve(1);
        // Read once: after the store the compiler must assume the cursor's own memory changed.
        let cursor = self.cursor;
        // SAFETY: `reserve` left room for one more byte at the cursor.
        unsafe {
            cursor.write(byte);
            self.cursor = cursor.add(1);
        }
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() >= COPY_BLOCK {
            self.extend_large(data);
            return Ok(());
        }
        self.reserve(data.len());
        let cursor = self.cursor;
        // SAFETY: `reserve` left room for `data.len()` more bytes at the cursor, and `data`
        // cannot overlap the spare capacity, which nothing else borrows.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), cursor, data.len());
            self.cursor = cursor.add(data.len());
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<u32> {
        self.sync_len();
        self.hash_pending();
        Ok(self.crc.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::BulkSlice;

    /// Runs `value` through the body flavor into `buffer` (after a fake header of `prefix`
    /// bytes) and checks the bytes and checksum against plain postcard.
    fn check_body<T: serde::Serialize>(
        buffer: &mut Vec<u8>,
        touched: &mut usize,
        prefix: usize,
        value: &T,
    ) {
        buffer.clear();
        buffer.resize(prefix, 0xAB);
        let flavor = BodyFlavor::new(&mut *buffer, &mut *touched, prefix);
        let crc = postcard::serialize_with_flavor(value, flavor).unwrap();
        let expected = postcard::to_allocvec(value).unwrap();
        assert!(buffer[prefix..] == expected[..], "body bytes differ");
        assert_eq!(crc, checksum::crc32c(&expected), "body checksum differs");
        *touched = (*touched).max(buffer.len());
    }

    fn floats(count: usize) -> Vec<f64> {
        (0..count).map(|i| i as f64 * 0.75 - 3.0).collect()
    }

    #[test]
    fn bulk_writes_into_fresh_and_reused_buffers_match_postcard() {
        let big = floats(3 * COPY_BLOCK / 8 + 5);
        let bytes: Vec<u8> = (0..COPY_BLOCK as u32 + 77).map(|i| i as u8).collect();
        let value = (
            7u32,
            BulkSlice(&big[..]),
            "between".to_owned(),
            BulkSlice(&bytes[..]),
            vec![1u64 << 40; 1000],
        );
        let mut buffer = Vec::new();
        let mut touched = 0;
        // Fresh: the buffer grows for the bulk writes.
        check_body(&mut buffer, &mut touched, 61, &value);
        let first = buffer.as_ptr();
        // Reused: the same buffer again, written over with streaming stores.
        check_body(&mut buffer, &mut touched, 61, &value);
        assert_eq!(
            buffer.as_ptr(),
            first,
            "a repeated capture must reuse the buffer"
        );
        // Reused at another offset and partly past what was touched.
        let longer = floats(big.len() + COPY_BLOCK);
        check_body(&mut buffer, &mut touched, 3, &(BulkSlice(&longer[..]), 1u8));
    }

    #[test]
    fn many_small_writes_match_postcard() {
        // Grows from empty through many batches of small writes.
        let value: Vec<(u64, String)> = (0..20_000u64)
            .map(|i| (i * 977, format!("name {i}")))
            .collect();
        check_body(&mut Vec::new(), &mut 0, 40, &value);
    }

    #[test]
    fn writes_longer_than_a_batch_match_postcard() {
        // Longer than a checksum batch but shorter than a bulk copy: written on the fast path
        // right after a refill, with small writes after each, into a fresh buffer and again
        // into the same one.
        let medium = "m".repeat(HASH_BATCH + HASH_BATCH / 2);
        assert!(medium.len() < COPY_BLOCK);
        let value: Vec<(String, u32)> = (0..5u32).map(|i| (medium.clone(), i)).collect();
        let (mut buffer, mut touched) = (Vec::new(), 0);
        check_body(&mut buffer, &mut touched, 40, &value);
        check_body(&mut buffer, &mut touched, 40, &value);
    }

    #[test]
    fn captures_are_header_body_and_checksum() {
        let values: Vec<u32> = (0..100_000).map(|i| i * 3).collect();
        let mut writer = ImageWriter::new();
        for _ in 0..3 {
            let image = writer.capture(&values).unwrap().to_vec();
            let plan = TypePlan::of::<Vec<u32>>();
            let header_len = plan.header.header_len;
            let body = postcard::to_allocvec(&values).unwrap();
            assert_eq!(image.len(), header_len + body.len() + CHECKSUM_LEN);
            assert!(image[header_len..header_len + body.len()] == body[..]);
            let crc = checksum::crc32c(&body).to_le_bytes();
            assert_eq!(image[image.len() - CHECKSUM_LEN..], crc);
            let fresh = capture(&values).unwrap();
            assert!(fresh == image, "a new writer writes the same image");
            let back: Vec<u32> = super::super::restore(&image).unwrap();
            assert!(back == values);
        }
        // A smaller image of the same type after a larger one: sized by the hint, then trimmed.
        let small = capture(&vec![1u32, 2, 3]).unwrap();
        assert!(small.capacity() < 1024, "capacity {}", small.capacity());
        let back: Vec<u32> = super::super::restore(&small).unwrap();
        assert_eq!(back, [1, 2, 3]);
    }
}
