//! Types whose decoding cannot recurse into a derived type. A derived type whose decoded fields
//! are all such types needs no depth guard (see [`DepthGuard`](super::DepthGuard)): it adds one
//! level at most, however hostile the bytes. On shapes made of many small structs (a vertex of
//! three `f32`s) that saves a thread-local update per decoded value.

use std::marker::PhantomData;

/// Decoding a value of this type never decodes a derived `Migratable` type, so it cannot
/// recurse. Implemented for scalars, strings and containers of such types only; derived types
/// never implement it (a cycle of types always passes through one that is guarded).
pub trait DecodesFlat {}

macro_rules! decodes_flat {
    ($($ty:ty),* $(,)?) => {
        $(impl DecodesFlat for $ty {})*
    };
}

decodes_flat!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
);

impl<T: DecodesFlat> DecodesFlat for Option<T> {}
impl<T: DecodesFlat> DecodesFlat for Vec<T> {}
impl<T: DecodesFlat> DecodesFlat for Box<T> {}
impl<T: DecodesFlat, const N: usize> DecodesFlat for [T; N] {}

macro_rules! decodes_flat_tuples {
    ($(($($name:ident),+)),* $(,)?) => {
        $(impl<$($name: DecodesFlat),+> DecodesFlat for ($($name,)+) {})*
    };
}

decodes_flat_tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
);

/// Asks at compile time whether a field type decodes flat, in code that may be generic over it:
/// `(&&FlatProbe::<T>::new()).decodes_flat()` finds [`ProbeFlat`] (true) when `T` is
/// [`DecodesFlat`], and [`ProbeNested`] (false) otherwise, including for a type parameter whose
/// bounds do not say. The answer is a constant the optimiser folds away.
pub struct FlatProbe<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> Default for FlatProbe<T> {
    fn default() -> Self {
        FlatProbe::new()
    }
}

impl<T: ?Sized> FlatProbe<T> {
    /// A probe for `T`.
    #[inline(always)]
    pub const fn new() -> Self {
        FlatProbe(PhantomData)
    }
}

/// The answer for types that decode flat (found through one more reference).
pub trait ProbeFlat {
    /// Whether the probed type decodes flat: yes.
    fn decodes_flat(&self) -> bool;
}

impl<T: ?Sized + DecodesFlat> ProbeFlat for &FlatProbe<T> {
    #[inline(always)]
    fn decodes_flat(&self) -> bool {
        true
    }
}

/// The answer for every other type.
pub trait ProbeNested {
    /// Whether the probed type decodes flat: no.
    fn decodes_flat(&self) -> bool;
}

impl<T: ?Sized> ProbeNested for FlatProbe<T> {
    #[inline(always)]
    fn decodes_flat(&self) -> bool {
        false
    }
}

#[cfg(test)]
// The probe is always called through `&&`, as generated code does: which trait answers depends
// on it, though clippy sees only the cases where the outer borrow is not needed.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    struct Derived(u32);

    fn generic_is_nested<T>() -> bool {
        (&&FlatProbe::<T>::new()).decodes_flat()
    }

    #[test]
    fn scalars_and_containers_of_them_decode_flat() {
        assert!((&&FlatProbe::<f32>::new()).decodes_flat());
        assert!((&&FlatProbe::<(f32, Option<u16>, [u8; 3])>::new()).decodes_flat());
        assert!((&&FlatProbe::<Vec<String>>::new()).decodes_flat());
    }

    #[test]
    fn other_types_and_unbounded_parameters_may_nest() {
        assert!(!(&&FlatProbe::<Derived>::new()).decodes_flat());
        assert!(!(&&FlatProbe::<Option<Box<Derived>>>::new()).decodes_flat());
        // Even when the parameter is a flat type: the generic code cannot know it.
        assert!(!generic_is_nested::<u32>());
    }
}
