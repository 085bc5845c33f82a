//! How the generated serde impls reach the serde impls of each field's type.
//!
//! A field whose type has no `Shape` impl is reported once, by `shape_at`: "`T` has no portable
//! shape". Calling the type's serde impls directly would add two more errors for the same
//! mistake (no `Serialize`, no `Deserialize`), so each call goes through a method that autoref
//! picks: the real one when the type has a `Shape`, a stand-in otherwise, which never runs
//! because the build has already failed.
//!
//! Array fields get their own encoding, the bytes serde writes for the lengths it supports (0
//! to 32): a tuple of the elements. It works for any length, const generic ones included.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Type;

/// The items that `value` and `seed` use; `arrays` adds those for array fields.
pub(crate) fn helpers(private: &TokenStream, arrays: bool) -> TokenStream {
    let de = quote!(#private::serde::de);
    let phantom = quote!(::core::marker::PhantomData);
    let array_helpers = if arrays {
        quote! {
            struct __MigratableArrayField<T, const N: usize>(#phantom<fn() -> T>);

            trait __MigratableArrayHasShape<T, const N: usize> {
                fn __migratable_value<'v>(&self, value: &'v [T; N]) -> __MigratableArray<'v, T, N>;
                fn __migratable_seed(&self) -> __MigratableArraySeed<T, N>;
            }

            impl<T: #private::Shape, const N: usize> __MigratableArrayHasShape<T, N>
                for &__MigratableArrayField<T, N>
            {
                fn __migratable_value<'v>(&self, value: &'v [T; N]) -> __MigratableArray<'v, T, N> {
                    __MigratableArray(value)
                }

                fn __migratable_seed(&self) -> __MigratableArraySeed<T, N> {
                    __MigratableArraySeed(#phantom)
                }
            }

            #[allow(dead_code)]
            trait __MigratableArrayNoShape<T, const N: usize> {
                fn __migratable_value<'v>(&self, value: &'v [T; N]) -> &'v ();
                fn __migratable_seed(&self) -> __MigratableUnreachable<[T; N]>;
            }

            impl<T, const N: usize> __MigratableArrayNoShape<T, N> for __MigratableArrayField<T, N> {
                fn __migratable_value<'v>(&self, _: &'v [T; N]) -> &'v () {
                    &()
                }

                fn __migratable_seed(&self) -> __MigratableUnreachable<[T; N]> {
                    __MigratableUnreachable(#phantom)
                }
            }

            struct __MigratableArray<'v, T, const N: usize>(&'v [T; N]);

            impl<T: #private::serde::Serialize, const N: usize> #private::serde::Serialize
                for __MigratableArray<'_, T, N>
            {
                fn serialize<__S: #private::serde::Serializer>(
                    &self,
                    serializer: __S,
                ) -> ::core::result::Result<__S::Ok, __S::Error> {
                    let mut __tuple = __S::serialize_tuple(serializer, N)?;
                    for __element in self.0 {
                        #private::serde::ser::SerializeTuple::serialize_element(&mut __tuple, __element)?;
                    }
                    #private::serde::ser::SerializeTuple::end(__tuple)
                }
            }

            struct __MigratableArraySeed<T, const N: usize>(#phantom<fn() -> T>);

            impl<'de, T: #private::serde::Deserialize<'de>, const N: usize> #de::DeserializeSeed<'de>
                for __MigratableArraySeed<T, N>
            {
                type Value = [T; N];

                fn deserialize<__D: #private::serde::Deserializer<'de>>(
                    self,
                    deserializer: __D,
                ) -> ::core::result::Result<[T; N], __D::Error> {
                    __D::deserialize_tuple(deserializer, N, self)
                }
            }

            impl<'de, T: #private::serde::Deserialize<'de>, const N: usize> #de::Visitor<'de>
                for __MigratableArraySeed<T, N>
            {
                type Value = [T; N];

                fn expecting(&self, formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::write!(formatter, "an array of length {}", N)
                }

                fn visit_seq<__A: #de::SeqAccess<'de>>(
                    self,
                    mut seq: __A,
                ) -> ::core::result::Result<[T; N], __A::Error> {
                    // Without `Vec` (not in `core`) or `array::try_from_fn` (unstable): read
                    // into `[Option<T>; N]`, stopping at the first error.
                    let mut __error = ::core::option::Option::None;
                    let mut __read = 0usize;
                    let __elements = [(); N].map(|()| {
                        if __error.is_some() {
                            return ::core::option::Option::None;
                        }
                        match #de::SeqAccess::next_element::<T>(&mut seq) {
                            ::core::result::Result::Ok(::core::option::Option::Some(__element)) => {
                                __read += 1;
                                ::core::option::Option::Some(__element)
                            }
                            ::core::result::Result::Ok(::core::option::Option::None) => {
                                __error = ::core::option::Option::Some(
                                    <__A::Error as #de::Error>::invalid_length(__read, &self),
                                );
                                ::core::option::Option::None
                            }
                            ::core::result::Result::Err(__e) => {
                                __error = ::core::option::Option::Some(__e);
                                ::core::option::Option::None
                            }
                        }
                    });
                    if let ::core::option::Option::Some(__error) = __error {
                        return ::core::result::Result::Err(__error);
                    }
                    ::core::result::Result::Ok(__elements.map(|__element| match __element {
                        ::core::option::Option::Some(__element) => __element,
                        ::core::option::Option::None => ::core::unreachable!(),
                    }))
                }
            }
        }
    } else {
        TokenStream::new()
    };
    quote! {
        struct __MigratableField<T>(#phantom<fn() -> T>);

        trait __MigratableHasShape<T> {
            fn __migratable_value<'v>(&self, value: &'v T) -> &'v T;
            fn __migratable_seed(&self) -> #phantom<T>;
        }

        impl<T: #private::Shape> __MigratableHasShape<T> for &__MigratableField<T> {
            fn __migratable_value<'v>(&self, value: &'v T) -> &'v T {
                value
            }

            fn __migratable_seed(&self) -> #phantom<T> {
                #phantom
            }
        }

        #[allow(dead_code)]
        trait __MigratableNoShape<T> {
            fn __migratable_value<'v>(&self, value: &'v T) -> &'v ();
            fn __migratable_seed(&self) -> __MigratableUnreachable<T>;
        }

        impl<T> __MigratableNoShape<T> for __MigratableField<T> {
            fn __migratable_value<'v>(&self, _: &'v T) -> &'v () {
                &()
            }

            fn __migratable_seed(&self) -> __MigratableUnreachable<T> {
                __MigratableUnreachable(#phantom)
            }
        }

        #[allow(dead_code)]
        struct __MigratableUnreachable<T>(#phantom<fn() -> T>);

        impl<'de, T> #de::DeserializeSeed<'de> for __MigratableUnreachable<T> {
            type Value = T;

            fn deserialize<__D: #private::serde::Deserializer<'de>>(
                self,
                _: __D,
            ) -> ::core::result::Result<T, __D::Error> {
                ::core::unreachable!()
            }
        }

        #array_helpers
    }
}

/// What to hand to serde to serialize `place`, a `&T` of the field's type `T`; it is borrowed
/// again (`&value`) where it is used.
pub(crate) fn value(ty: &Type, place: TokenStream) -> TokenStream {
    let tag = tag(ty);
    quote_spanned!(ty.span()=> (&&#tag).__migratable_value(#place))
}

/// The `DeserializeSeed` that reads a field of type `ty`.
pub(crate) fn seed(ty: &Type) -> TokenStream {
    let tag = tag(ty);
    quote_spanned!(ty.span()=> (&&#tag).__migratable_seed())
}

fn tag(ty: &Type) -> TokenStream {
    match ty {
        Type::Array(array) => {
            let elem = &array.elem;
            // A const argument other than a literal or a name needs braces; those two must not
            // have them (`unused_braces`).
            let len = match &array.len {
                len @ syn::Expr::Lit(_) => quote!(#len),
                syn::Expr::Path(path) if path.path.get_ident().is_some() => quote!(#path),
                len => quote!({ #len }),
            };
            quote_spanned!(ty.span()=> __MigratableArrayField::<#elem, #len>(::core::marker::PhantomData))
        }
        _ => quote_spanned!(ty.span()=> __MigratableField::<#ty>(::core::marker::PhantomData)),
    }
}
