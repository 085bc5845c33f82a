//! The structural description of a type's portable encoding, from which fingerprints are made.
//!
//! Every field of a `Migratable` type must implement [`Shape`]. The shape is a canonical string
//! that changes exactly when the postcard encoding of the type would change: `Vec<T>`,
//! `VecDeque<T>` and slices are all `seq<T>`, `HashMap` and `BTreeMap` are both `map<K,V>`,
//! `Box<T>` is `T`. Named (`Migratable`) types appear as `@name` and are defined once in the
//! [`SchemaBuilder`], which also makes recursive types finite.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::marker::PhantomData;
use std::time::Duration;

use super::SchemaBuilder;

/// The structural description of a type's portable encoding; see the module docs.
///
/// Implemented for the primitive types, `String`, `Option`, `Box`, tuples, arrays and the std
/// collections, and by `#[derive(Migratable)]` for user types. For a field of a foreign serde
/// type, use `#[migratable(opaque = "label")]` on the field instead.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no portable shape, so it cannot be part of migratable state",
    label = "this type cannot move between hosts",
    note = "derive `Migratable` for it, or mark the field `#[migratable(opaque = \"label\")]` if it is a serde type you version yourself, or `#[migratable(skip)]` to rebuild it from `Default` after a move"
)]
pub trait Shape {
    /// Returns this type's canonical shape expression, registering any named types it contains.
    fn shape(schema: &mut SchemaBuilder) -> String;
}

/// Builds a definition string from its parts: `kind{name:shape,...}` or `kind(shape,...)`.
///
/// Used by the code `#[derive(Migratable)]` generates, so that the canonical form is written in
/// one place.
#[derive(Debug)]
pub struct ShapeParts {
    kind: &'static str,
    parts: Vec<String>,
    named: bool,
}

impl ShapeParts {
    /// A definition of the given kind (`struct`, `tuple_struct`, a variant name...).
    pub fn new(kind: &'static str) -> Self {
        ShapeParts {
            kind,
            parts: Vec::new(),
            named: false,
        }
    }

    /// Adds a named part (a named field, or an enum variant).
    pub fn named(&mut self, name: &str, shape: String) {
        self.named = true;
        self.parts.push(format!("{name}:{shape}"));
    }

    /// Adds a positional part (a tuple field).
    pub fn positional(&mut self, shape: String) {
        self.parts.push(shape);
    }

    /// The definition string.
    pub fn finish(self) -> String {
        let (open, close) = if self.named { ('{', '}') } else { ('(', ')') };
        format!("{}{open}{}{close}", self.kind, self.parts.join(","))
    }
}

/// The wire name of a generic type: its base name and its parameters' shapes.
pub fn generic_type_name(base: &str, parameters: &[String]) -> String {
    format!("{base}<{}>", parameters.join(","))
}

macro_rules! leaf_shapes {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl Shape for $ty {
            fn shape(_: &mut SchemaBuilder) -> String {
                $name.to_owned()
            }
        })*
    };
}

// `usize`/`isize` travel as 64-bit varints whatever the writer's pointer width; a reader with a
// narrower `usize` refuses a value that does not fit instead of truncating it.
leaf_shapes! {
    bool => "bool", char => "char", () => "unit",
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128", usize => "usize",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128", isize => "isize",
    f32 => "f32", f64 => "f64",
    String => "string", Duration => "duration",
}

impl Shape for str {
    fn shape(_: &mut SchemaBuilder) -> String {
        "string".to_owned()
    }
}

impl<T: ?Sized> Shape for PhantomData<T> {
    fn shape(_: &mut SchemaBuilder) -> String {
        "unit".to_owned()
    }
}

impl<T: Shape + ?Sized> Shape for Box<T> {
    fn shape(schema: &mut SchemaBuilder) -> String {
        T::shape(schema)
    }
}

impl<T: Shape> Shape for Option<T> {
    fn shape(schema: &mut SchemaBuilder) -> String {
        format!("option<{}>", T::shape(schema))
    }
}

impl<T: Shape, E: Shape> Shape for Result<T, E> {
    fn shape(schema: &mut SchemaBuilder) -> String {
        format!("enum{{Ok:{},Err:{}}}", T::shape(schema), E::shape(schema))
    }
}

/// The shape of a sequence, checked for elements that encode to nothing.
fn seq_shape<T: Shape + ?Sized>(schema: &mut SchemaBuilder) -> String {
    let element = T::shape(schema);
    let shape = format!("seq<{element}>");
    schema.check_collection(&shape, &[&element]);
    shape
}

/// The shape of a map, checked for entries that encode to nothing.
fn map_shape<K: Shape, V: Shape>(schema: &mut SchemaBuilder) -> String {
    let key = K::shape(schema);
    let value = V::shape(schema);
    let shape = format!("map<{key},{value}>");
    schema.check_collection(&shape, &[&key, &value]);
    shape
}

macro_rules! seq_shapes {
    ($($ty:ident),*) => {
        $(impl<T: Shape> Shape for $ty<T> {
            fn shape(schema: &mut SchemaBuilder) -> String {
                seq_shape::<T>(schema)
            }
        })*
    };
}
seq_shapes!(Vec, VecDeque, LinkedList, BinaryHeap, BTreeSet);

impl<T: Shape> Shape for [T] {
    fn shape(schema: &mut SchemaBuilder) -> String {
        seq_shape::<T>(schema)
    }
}

impl<T: Shape, S> Shape for HashSet<T, S> {
    fn shape(schema: &mut SchemaBuilder) -> String {
        seq_shape::<T>(schema)
    }
}

impl<K: Shape, V: Shape> Shape for BTreeMap<K, V> {
    fn shape(schema: &mut SchemaBuilder) -> String {
        map_shape::<K, V>(schema)
    }
}

impl<K: Shape, V: Shape, S> Shape for HashMap<K, V, S> {
    fn shape(schema: &mut SchemaBuilder) -> String {
        map_shape::<K, V>(schema)
    }
}

impl<T: Shape, const N: usize> Shape for [T; N] {
    fn shape(schema: &mut SchemaBuilder) -> String {
        format!("array<{};{}>", T::shape(schema), N)
    }
}

macro_rules! tuple_shapes {
    ($(($($name:ident),+))*) => {
        $(impl<$($name: Shape),+> Shape for ($($name,)+) {
            fn shape(schema: &mut SchemaBuilder) -> String {
                let parts: &[String] = &[$($name::shape(schema)),+];
                format!("tuple({})", parts.join(","))
            }
        })*
    };
}
tuple_shapes! {
    (A) (A, B) (A, B, C) (A, B, C, D) (A, B, C, D, E) (A, B, C, D, E, F) (A, B, C, D, E, F, G)
    (A, B, C, D, E, F, G, H) (A, B, C, D, E, F, G, H, I) (A, B, C, D, E, F, G, H, I, J)
    (A, B, C, D, E, F, G, H, I, J, K) (A, B, C, D, E, F, G, H, I, J, K, L)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of<T: Shape + ?Sized>() -> String {
        T::shape(&mut SchemaBuilder::current())
    }

    #[test]
    fn equivalent_encodings_share_a_shape() {
        assert_eq!(shape_of::<Vec<u32>>(), shape_of::<VecDeque<u32>>());
        assert_eq!(
            shape_of::<HashMap<String, u8>>(),
            shape_of::<BTreeMap<String, u8>>()
        );
        assert_eq!(shape_of::<Box<u64>>(), shape_of::<u64>());
    }

    #[test]
    fn collections_of_elements_that_encode_to_nothing_are_refused() {
        for shape in [
            <Vec<()> as Shape>::shape,
            <BTreeMap<(), ()> as Shape>::shape,
            <Vec<[u64; 0]> as Shape>::shape,
            <Vec<((), [(); 3])> as Shape>::shape,
        ] {
            let mut schema = SchemaBuilder::current();
            let text = shape(&mut schema);
            assert!(
                matches!(
                    schema.errors(),
                    [crate::state::SchemaError::ZeroSizedElements { .. }]
                ),
                "{text} was not refused"
            );
        }
        let mut fine = SchemaBuilder::current();
        let _ = <(Vec<Option<()>>, BTreeMap<(), u8>, Vec<[u8; 1]>) as Shape>::shape(&mut fine);
        assert!(fine.errors().is_empty(), "{:?}", fine.errors());
    }

    #[test]
    fn different_encodings_have_different_shapes() {
        assert_ne!(shape_of::<Vec<u32>>(), shape_of::<Vec<u64>>());
        assert_ne!(shape_of::<[u8; 4]>(), shape_of::<Vec<u8>>());
        assert_ne!(shape_of::<(u8, u16)>(), shape_of::<(u16, u8)>());
        assert_ne!(shape_of::<Option<u8>>(), shape_of::<u8>());
    }
}
