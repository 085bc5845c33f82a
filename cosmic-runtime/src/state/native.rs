//! The native encoding of plain-old-data slices: their in-memory bytes, with no work per
//! element.
//!
//! A field marked `#[migratable(native)]` (a `Vec<T>` whose `T` is plain old data, see
//! [`NativeElement`]) is wrapped by the derive in [`NativeVec`]. In a portable image it
//! encodes exactly as the plain `Vec<T>` would (a length and each element through serde), so
//! marking a field changes neither portable images nor the schema fingerprint. In a native
//! image (written only for a reader of the same build on the same kind of machine, which the
//! image header's guard checks before any byte is decoded) it is a postcard byte string
//! holding the elements' memory as it is.
//!
//! Soundness rests on `bytemuck`'s derives, not on code here:
//! - writing needs [`bytemuck::NoUninit`]: no padding bytes (which would leak uninitialised
//!   memory) and no pointers (`NoUninit` types are `Copy + 'static` and hold no references);
//! - reading needs [`bytemuck::CheckedBitPattern`]: every element's bits are checked before the
//!   element exists (`bool` is 0 or 1, a `char` is a scalar value, an enum's tag is one of its
//!   variants); for types where every bit pattern is valid (`Pod`) the check is free.
//!
//! Lengths are checked (a whole number of elements); alignment needs no check because the
//! bytes are copied into a fresh `Vec<T>`, which is aligned for `T`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use bytemuck::{CheckedBitPattern, NoUninit};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{MigratableField, SchemaBuilder, Shape};
use crate::memory;

/// An element type that the native encoding stores as raw memory: plain old data with no
/// padding (`bytemuck::NoUninit`), whose bit patterns can be checked (`CheckedBitPattern`;
/// every `bytemuck::Pod` type is both), and that is a migratable field (for portable images).
///
/// Derive the bytemuck traits (through `cosmic::bytemuck`) on a `#[repr(C)]` type; the
/// `cosmic` crate's `Migratable` derive docs show a whole example.
///
/// `repr(Rust)` types do not qualify: their layout is not fixed, and bytemuck's derives
/// refuse them at compile time.
pub trait NativeElement: NoUninit + CheckedBitPattern + MigratableField {}

impl<T: NoUninit + CheckedBitPattern + MigratableField> NativeElement for T {}

thread_local! {
    // Set while a native image is written or read on this thread.
    static NATIVE: Cell<bool> = const { Cell::new(false) };
    // Why the last native element check failed: postcard keeps no error text, so the image
    // reader asks here.
    static REJECTION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Whether the bytes being written or read on this thread are a native image.
#[inline]
pub fn native_active() -> bool {
    NATIVE.with(Cell::get)
}

/// Runs `code` with the native encoding on (or off) on this thread; restored afterwards, even
/// on panic. Also returns why a native element was refused, if one was.
pub(crate) fn with_native_encoding<R>(
    native: bool,
    code: impl FnOnce() -> R,
) -> (R, Option<String>) {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NATIVE.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(NATIVE.with(|cell| cell.replace(native)));
    REJECTION.with(|cell| cell.borrow_mut().take());
    let result = code();
    (result, REJECTION.with(|cell| cell.borrow_mut().take()))
}

fn reject(reason: String) {
    REJECTION.with(|cell| *cell.borrow_mut() = Some(reason));
}

/// A `Vec` of plain old data that a native image stores as its memory; the derive wraps
/// `#[migratable(native)]` fields in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NativeVec<T>(pub Vec<T>);

/// A borrowed slice that encodes as [`NativeVec`] does.
#[derive(Debug, Clone, Copy)]
pub struct NativeSlice<'a, T>(pub &'a [T]);

impl<T: NativeElement> Serialize for NativeSlice<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if native_active() {
            if size_of::<T>() == 0 {
                return Err(serde::ser::Error::custom(
                    "a native field's elements have no size, so their count cannot be recorded",
                ));
            }
            serializer.serialize_bytes(bytemuck::cast_slice::<T, u8>(self.0))
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<T: NativeElement> Serialize for NativeVec<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NativeSlice(&self.0).serialize(serializer)
    }
}

impl<'de, T: NativeElement> Deserialize<'de> for NativeVec<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if native_active() {
            deserializer
                .deserialize_bytes(NativeVisitor(PhantomData))
                .map(NativeVec)
        } else {
            Vec::<T>::deserialize(deserializer).map(NativeVec)
        }
    }
}

impl<T: NativeElement> Shape for NativeVec<T> {
    fn shape(schema: &mut SchemaBuilder) -> String {
        schema.native_element::<T>();
        // The portable encoding is the plain `Vec`'s, so is its shape.
        <Vec<T> as Shape>::shape(schema)
    }
}

struct NativeVisitor<T>(PhantomData<T>);

impl<'de, T: NativeElement> Visitor<'de> for NativeVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the memory of whole `{}` values",
            std::any::type_name::<T>()
        )
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
        decode_elements(bytes).map_err(|reason| {
            let error = E::custom(&reason);
            reject(reason);
            error
        })
    }
}

/// Checks and copies the memory of whole `T`s out of `bytes`.
fn decode_elements<T: NativeElement>(bytes: &[u8]) -> Result<Vec<T>, String> {
    let size = size_of::<T>();
    let element = std::any::type_name::<T>();
    if size == 0 {
        return Err(format!("`{element}` has no size"));
    }
    if bytes.len() % size != 0 {
        return Err(format!(
            "{} bytes are not a whole number of `{element}` values ({size} bytes each)",
            bytes.len()
        ));
    }
    let count = bytes.len() / size;
    // Every element's bits are checked before any `T` exists. For `Pod` types the check is
    // a constant `true` and this loop compiles to nothing.
    for (index, chunk) in bytes.chunks_exact(size).enumerate() {
        let bits: T::Bits = bytemuck::pod_read_unaligned(chunk);
        if !T::is_valid_bit_pattern(&bits) {
            return Err(format!(
                "element {index} of {count} holds bits that are not a valid `{element}`"
            ));
        }
    }
    // The bytes are already in memory, so this allocation is bounded by the input.
    let mut values: Vec<T> = memory::vec_with_capacity(count);
    // SAFETY: `values` has room for `count` elements, `count * size` bytes, which is
    // `bytes.len()`; the two cannot overlap (`values` is new). Every `size`-byte chunk of
    // `bytes` was checked above to be a valid `T` (`CheckedBitPattern`'s contract: such bits
    // may be reinterpreted as `T`), and `T` has no padding (`NoUninit`), so the copy
    // initialises `count` valid values; the destination is aligned for `T` by `Vec`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            values.as_mut_ptr().cast::<u8>(),
            bytes.len(),
        );
        values.set_len(count);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, bytemuck::NoUninit, bytemuck::CheckedBitPattern)]
    #[repr(C)]
    struct Flagged {
        value: u32,
        on: bool,
        kind: u8,
        spare: u16,
    }

    impl Shape for Flagged {
        fn shape(_: &mut SchemaBuilder) -> String {
            "flagged".to_owned()
        }
    }
    impl Serialize for Flagged {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            (self.value, self.on, self.kind, self.spare).serialize(s)
        }
    }
    impl<'de> Deserialize<'de> for Flagged {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let (value, on, kind, spare) = Deserialize::deserialize(d)?;
            Ok(Flagged {
                value,
                on,
                kind,
                spare,
            })
        }
    }

    fn sample() -> Vec<Flagged> {
        (0..100)
            .map(|i| Flagged {
                value: i * 7,
                on: i % 3 == 0,
                kind: i as u8,
                spare: 0,
            })
            .collect()
    }

    #[test]
    fn native_bytes_are_the_memory_and_portable_bytes_are_the_plain_vec() {
        let values = sample();
        let (native, _) = with_native_encoding(true, || {
            postcard::to_allocvec(&NativeSlice(&values[..])).unwrap()
        });
        let memory: &[u8] = bytemuck::cast_slice(&values);
        assert!(
            native.ends_with(memory),
            "native bytes are the elements' memory"
        );
        let portable = postcard::to_allocvec(&NativeSlice(&values[..])).unwrap();
        assert_eq!(portable, postcard::to_allocvec(&values).unwrap());

        let (back, rejection) = with_native_encoding(true, || {
            postcard::from_bytes::<NativeVec<Flagged>>(&native).unwrap()
        });
        assert_eq!(back.0, values);
        assert_eq!(rejection, None);
        let back: NativeVec<Flagged> = postcard::from_bytes(&portable).unwrap();
        assert_eq!(back.0, values);
    }

    #[test]
    fn invalid_bits_and_partial_elements_are_refused_with_the_reason() {
        let values = sample();
        let (mut native, _) = with_native_encoding(true, || {
            postcard::to_allocvec(&NativeSlice(&values[..])).unwrap()
        });
        // The `bool` of element 5: 2 is not a bool.
        let start = native.len() - size_of_val(&values[..]);
        native[start + 5 * 8 + 4] = 2;
        let (result, rejection) =
            with_native_encoding(true, || postcard::from_bytes::<NativeVec<Flagged>>(&native));
        assert!(result.is_err());
        let rejection = rejection.expect("the reason is kept");
        assert!(rejection.contains("element 5 of 100"), "{rejection}");

        // A byte string that is not a whole number of elements.
        let (bytes, _) = with_native_encoding(true, || {
            postcard::to_allocvec(&NativeSlice(&[1u32, 2, 3][..])).unwrap()
        });
        let mut short = bytes.clone();
        short[0] -= 1; // the length prefix: 11 bytes
        short.pop();
        let (result, rejection) =
            with_native_encoding(true, || postcard::from_bytes::<NativeVec<u32>>(&short));
        assert!(result.is_err());
        assert!(rejection.unwrap().contains("not a whole number"));
    }
}
