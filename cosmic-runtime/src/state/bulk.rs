//! The bulk encoding of `Vec`s of plain numbers: one length and the raw little-endian bytes.
//!
//! serde hands a `Vec<f64>` to the encoder one element at a time and the decoder grows the
//! vector as it goes; for hundreds of MiB of numbers that is several times slower than a copy.
//! The derive encodes fields of type `Vec<f32>`, `Vec<f64>`, `Vec<u8>` and `Vec<i8>` (and other
//! fixed-width integer `Vec`s marked `#[migratable(bulk)]`) as a postcard byte string instead:
//! a varint byte count, then the elements as little-endian bytes. On little-endian hosts that
//! is a single copy each way; big-endian hosts swap each element, except in native images
//! (read only by the same kind of machine), which hold the elements in the host's byte order.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::native::native_active;
use super::{SchemaBuilder, Shape};
use crate::memory;

mod sealed {
    pub trait Sealed {}
}

/// A plain number that can be encoded in bulk: any bit pattern is a valid value and it has no
/// padding, so its little-endian bytes are all there is to it.
pub trait BulkElement: sealed::Sealed + bytemuck::Pod + Send + Sync + 'static {
    /// The element's name in shapes.
    const NAME: &'static str;

    /// The elements as little-endian bytes (borrowed on little-endian hosts).
    fn to_le_bytes(values: &[Self]) -> Cow<'_, [u8]>;

    /// Appends the elements encoded in `bytes` (a multiple of the element size) to `out`.
    fn extend_from_le_bytes(out: &mut Vec<Self>, bytes: &[u8]);
}

macro_rules! bulk_elements {
    ($($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}
        impl BulkElement for $ty {
            const NAME: &'static str = stringify!($ty);

            fn to_le_bytes(values: &[Self]) -> Cow<'_, [u8]> {
                if cfg!(target_endian = "little") {
                    // SAFETY: a primitive number has no padding and no invalid bit patterns,
                    // so its memory is `size_of_val(values)` initialised bytes.
                    Cow::Borrowed(unsafe {
                        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values))
                    })
                } else {
                    Cow::Owned(values.iter().flat_map(|value| value.to_le_bytes()).collect())
                }
            }

            fn extend_from_le_bytes(out: &mut Vec<Self>, bytes: &[u8]) {
                const SIZE: usize = size_of::<$ty>();
                let count = bytes.len() / SIZE;
                out.reserve(count);
                if cfg!(target_endian = "little") {
                    // SAFETY: `reserve` made room for `count` more elements; every bit pattern
                    // is a valid value, so the copied bytes initialise them.
                    unsafe {
                        let dst = out.as_mut_ptr().add(out.len()).cast::<u8>();
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, count * SIZE);
                        out.set_len(out.len() + count);
                    }
                } else {
                    out.extend(bytes.chunks_exact(SIZE).map(|chunk| {
                        let mut le = [0u8; SIZE];
                        le.copy_from_slice(chunk);
                        <$ty>::from_le_bytes(le)
                    }));
                }
            }
        }
    )*};
}
bulk_elements!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// A `Vec` that encodes in bulk; the derive wraps bulk fields in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkVec<T>(pub Vec<T>);

/// A borrowed slice that encodes in bulk, as [`BulkVec`] does.
#[derive(Debug, Clone, Copy)]
pub struct BulkSlice<'a, T>(pub &'a [T]);

impl<T: BulkElement> Serialize for BulkSlice<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if cfg!(target_endian = "big") && native_active() {
            // A native image is read by this kind of machine only: no byte swapping.
            return serializer.serialize_bytes(bytemuck::cast_slice::<T, u8>(self.0));
        }
        serializer.serialize_bytes(&T::to_le_bytes(self.0))
    }
}

impl<T: BulkElement> Serialize for BulkVec<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BulkSlice(&self.0).serialize(serializer)
    }
}

impl<'de, T: BulkElement> Deserialize<'de> for BulkVec<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_bytes(BulkVisitor(PhantomData))
            .map(BulkVec)
    }
}

impl<T: BulkElement> Shape for BulkVec<T> {
    fn shape(_: &mut SchemaBuilder) -> String {
        format!("bulk<{}>", T::NAME)
    }
}

struct BulkVisitor<T>(PhantomData<T>);

impl<'de, T: BulkElement> Visitor<'de> for BulkVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a byte string of little-endian {} values", T::NAME)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
        if bytes.len() % size_of::<T>() != 0 {
            return Err(E::invalid_length(bytes.len(), &self));
        }
        if cfg!(target_endian = "big") && native_active() {
            // Written in this machine's byte order (see `serialize`).
            return Ok(bytes
                .chunks_exact(size_of::<T>())
                .map(bytemuck::pod_read_unaligned)
                .collect());
        }
        // The bytes are already in memory, so this allocation is bounded by the input.
        let mut values = memory::vec_with_capacity(bytes.len() / size_of::<T>());
        T::extend_from_le_bytes(&mut values, bytes);
        Ok(values)
    }

    // Self-describing formats (JSON, for debugging) may hand the bytes over as a sequence.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut bytes = Vec::new();
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        self.visit_bytes(&bytes)
    }
}
