//! `Migratable` for common std types, so that plain values (a task's `u64` output, a
//! `Vec<String>`) can be captured as images without a wrapper struct. Their wire name is their
//! shape, and they have one version forever.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::{Migratable, SchemaBuilder, Shape};

macro_rules! std_migratable {
    ($(impl$([$($param:ident),*])? for $ty:ty;)*) => {$(
        impl$(<$($param: Shape + Serialize + DeserializeOwned + Send + 'static),*>)? Migratable for $ty {
            const VERSION: u32 = 1;

            fn type_name() -> Cow<'static, str> {
                Cow::Owned(<$ty as Shape>::shape(&mut SchemaBuilder::current()))
            }

            fn shape_at(_version: u32, schema: &mut SchemaBuilder) -> String {
                <$ty as Shape>::shape(schema)
            }

            fn deserialize_version<'de, D: Deserializer<'de>>(
                _version: u32,
                deserializer: D,
            ) -> Result<Self, D::Error> {
                <$ty as Deserialize>::deserialize(deserializer)
            }
        }
    )*};
}

std_migratable! {
    impl for bool; impl for char; impl for ();
    impl for u8; impl for u16; impl for u32; impl for u64; impl for u128; impl for usize;
    impl for i8; impl for i16; impl for i32; impl for i64; impl for i128; impl for isize;
    impl for f32; impl for f64; impl for String;
    impl[T] for Vec<T>;
    impl[T] for Option<T>;
    impl[T] for Box<T>;
    impl[A, B] for (A, B);
    impl[A, B, C] for (A, B, C);
}
