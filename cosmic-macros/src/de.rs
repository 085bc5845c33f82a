//! The `Deserialize` side of the generated code: `Migratable::deserialize_version` and the
//! serde visitors it drives, which read the layout of the version the bytes were written with.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{parse_quote, Generics, Ident};

use crate::ast::{Body, Field, Style, Variant};
use crate::expand::{active_condition, default_value, is_dispatched, is_newtype, Expander};
use crate::fields;

impl Expander<'_> {
    pub(crate) fn generics_with_de(&self) -> Generics {
        let mut generics = self.generics.clone();
        generics.params.insert(0, parse_quote!('de));
        generics
    }

    pub(crate) fn deserialize_version(&self) -> TokenStream {
        let krate = &self.krate;
        let upgrade = self.upgrade_prefix(|old| {
            // Spanned at `Old`, where a missing `From<Old>` impl is reported.
            let convert =
                quote_spanned!(old.span()=> <Self as ::core::convert::From<#old>>::from(__old));
            quote! {
                return <#old as #krate::__private::Migratable>::deserialize_version(version, deserializer)
                    .map(|__old| #convert);
            }
        });
        if self.container.attrs.use_serde.is_some() {
            let name = &self.wire_name;
            let version = self.version;
            return quote! {
                if version != #version {
                    return ::core::result::Result::Err(<__D::Error as #krate::__private::serde::de::Error>::custom(
                        #krate::__private::format!(
                            "`{}` uses its own serde impls and reads only version {}, not {}",
                            #name, #version, version,
                        ),
                    ));
                }
                // Through a `T: Migratable` bound rather than `Self: Deserialize`: a missing
                // serde impl is reported once, as a bound of this `Migratable` impl.
                fn __own_deserialize<'de, __T: #krate::__private::Migratable, __D: #krate::__private::serde::Deserializer<'de>>(
                    deserializer: __D,
                ) -> ::core::result::Result<__T, __D::Error> {
                    <__T as #krate::__private::serde::Deserialize<'de>>::deserialize(deserializer)
                }
                __own_deserialize::<Self, __D>(deserializer)
            };
        }
        let entry = self.entry_visitor_ident();
        let (_, ty_generics, _) = self.generics.split_for_impl();
        let turbofish = ty_generics.as_turbofish();
        let name = &self.wire_name;
        let call = match &self.container.body {
            Body::Struct(Style::Unit, _) => {
                quote!(deserialize_unit_struct(deserializer, #name, __visitor))
            }
            Body::Struct(Style::Named, fields) => {
                let names = fields.iter().map(Field::name);
                quote!(deserialize_struct(deserializer, #name, &[#(#names),*], __visitor))
            }
            Body::Struct(Style::Tuple, fields) => {
                let count = fields.len();
                quote!(deserialize_tuple_struct(deserializer, #name, #count, __visitor))
            }
            Body::Enum(variants) => {
                let names = variants.iter().map(|variant| variant.ident.to_string());
                quote!(deserialize_enum(deserializer, #name, &[#(#names),*], __visitor))
            }
        };
        quote! {
            #upgrade
            let __visitor = #entry #turbofish { version, marker: ::core::marker::PhantomData };
            __D::#call
        }
    }

    fn entry_visitor_ident(&self) -> Ident {
        format_ident!("__MigratableVisitor")
    }

    fn next_visitor_ident(&self) -> Ident {
        let n = self.visitors.get() + 1;
        self.visitors.set(n);
        format_ident!("__MigratableVisitor{}", n)
    }

    /// A visitor type: a struct carrying the version, and its `Visitor` impl with `methods`.
    fn visitor(&self, ident: &Ident, expecting: &str, methods: TokenStream) -> TokenStream {
        let krate = &self.krate;
        let de = quote!(#krate::__private::serde::de);
        let container_ident = self.container.ident;
        let (impl_generics, ty_generics, where_clause) = self.generics.split_for_impl();
        let de_generics = self.generics_with_de();
        let (de_impl_generics, _, _) = de_generics.split_for_impl();
        quote! {
            struct #ident #impl_generics #where_clause {
                version: u32,
                marker: ::core::marker::PhantomData<fn() -> #container_ident #ty_generics>,
            }

            impl #de_impl_generics #de::Visitor<'de> for #ident #ty_generics #where_clause {
                type Value = #container_ident #ty_generics;

                fn expecting(&self, formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Formatter::write_str(formatter, #expecting)
                }

                #methods
            }
        }
    }

    pub(crate) fn visitors_and_entry(&self) -> TokenStream {
        let krate = &self.krate;
        let de = quote!(#krate::__private::serde::de);
        let entry = self.entry_visitor_ident();
        let ident = self.container.ident;
        let name = &self.wire_name;
        match &self.container.body {
            Body::Struct(Style::Unit, _) => self.visitor(
                &entry,
                &format!("unit struct {name}"),
                quote! {
                    fn visit_unit<__E: #de::Error>(self) -> ::core::result::Result<Self::Value, __E> {
                        ::core::result::Result::Ok(#ident)
                    }
                },
            ),
            Body::Struct(style, fields) => {
                let body = self.read_fields(quote!(#ident), *style, fields, &format!("struct {name}"));
                self.visitor(&entry, &format!("struct {name}"), self.visit_seq(body))
            }
            Body::Enum(variants) => {
                let mut extra = Vec::new();
                let arms: Vec<TokenStream> = variants
                    .iter()
                    .enumerate()
                    .map(|(index, variant)| {
                        let index = index as u32;
                        let (arm, visitor) = self.deserialize_variant(variant);
                        extra.extend(visitor);
                        quote!(#index => #arm,)
                    })
                    .collect();
                let expecting = format!("variant index 0 <= i < {}", variants.len());
                let entry_visitor = self.visitor(
                    &entry,
                    &format!("enum {name}"),
                    quote! {
                        fn visit_enum<__A: #de::EnumAccess<'de>>(
                            self,
                            data: __A,
                        ) -> ::core::result::Result<Self::Value, __A::Error> {
                            let (__index, __variant): (u32, _) = #de::EnumAccess::variant(data)?;
                            match __index {
                                #(#arms)*
                                _ => ::core::result::Result::Err(#de::Error::invalid_value(
                                    #de::Unexpected::Unsigned(__index as u64),
                                    &#expecting,
                                )),
                            }
                        }
                    },
                );
                quote! {
                    #entry_visitor
                    #(#extra)*
                }
            }
        }
    }

    fn visit_seq(&self, body: TokenStream) -> TokenStream {
        let krate = &self.krate;
        let de = quote!(#krate::__private::serde::de);
        quote! {
            fn visit_seq<__A: #de::SeqAccess<'de>>(
                self,
                mut __seq: __A,
            ) -> ::core::result::Result<Self::Value, __A::Error> {
                let version = self.version;
                #body
            }
        }
    }

    /// Reads the fields of `version`'s layout from `__seq` and builds `constructor`.
    fn read_fields(
        &self,
        constructor: TokenStream,
        style: Style,
        fields: &[Field<'_>],
        what: &str,
    ) -> TokenStream {
        let krate = &self.krate;
        let de = quote!(#krate::__private::serde::de);
        let locals: Vec<Ident> = (0..fields.len())
            .map(|i| format_ident!("__field{}", i))
            .collect();
        let reads = fields.iter().zip(&locals).map(|(field, local)| {
            let ty = &field.ty;
            let default = default_value(field);
            if field.is_skipped() {
                return quote!(let #local: #ty = #default;);
            }
            let next = if is_dispatched(field) {
                let seed = fields::seed(&field.ty);
                quote!(#de::SeqAccess::next_element_seed(&mut __seq, #seed))
            } else {
                let wire = self.field_wire_type(field);
                quote!(#de::SeqAccess::next_element::<#wire>(&mut __seq))
            };
            let unwrap = if field.is_wrapped() { quote!(.0) } else { TokenStream::new() };
            let read = quote! {
                match #next? {
                    ::core::option::Option::Some(__value) => {
                        __read += 1;
                        __value #unwrap
                    }
                    ::core::option::Option::None => {
                        return ::core::result::Result::Err(#de::Error::invalid_length(__read, &#what));
                    }
                }
            };
            if field.since() == 1 && field.until().is_none() {
                // In every version: no default needed (or required of the type).
                quote!(let #local: #ty = #read;)
            } else {
                let active = active_condition(field);
                quote!(let #local: #ty = if #active { #read } else { #default };)
            }
        });
        let build = match style {
            Style::Named => {
                let members = fields.iter().map(|field| &field.member);
                quote!(#constructor { #(#members: #locals),* })
            }
            Style::Tuple => quote!(#constructor(#(#locals),*)),
            Style::Unit => quote!(#constructor),
        };
        quote! {
            let mut __read = 0usize;
            let _ = version;
            #(#reads)*
            let _ = __read;
            ::core::result::Result::Ok(#build)
        }
    }

    /// A match arm body for one variant, and the visitor type it needs, if any.
    fn deserialize_variant(&self, variant: &Variant<'_>) -> (TokenStream, Option<TokenStream>) {
        let krate = &self.krate;
        let de = quote!(#krate::__private::serde::de);
        let ident = self.container.ident;
        let variant_ident = variant.ident;
        let what = format!("variant {}::{}", self.wire_name, variant.ident);
        match variant.style {
            Style::Unit => (
                quote! {{
                    #de::VariantAccess::unit_variant(__variant)?;
                    ::core::result::Result::Ok(#ident::#variant_ident)
                }},
                None,
            ),
            Style::Tuple if is_newtype(variant) => {
                let field = &variant.fields[0];
                let read = if is_dispatched(field) {
                    let seed = fields::seed(&field.ty);
                    quote!(#de::VariantAccess::newtype_variant_seed(__variant, #seed))
                } else {
                    let ty = &field.ty;
                    quote!(#de::VariantAccess::newtype_variant::<#ty>(__variant))
                };
                (quote!(#read.map(#ident::#variant_ident)), None)
            }
            style => {
                let visitor_ident = self.next_visitor_ident();
                let (_, ty_generics, _) = self.generics.split_for_impl();
                let turbofish = ty_generics.as_turbofish();
                let body = self.read_fields(
                    quote!(#ident::#variant_ident),
                    style,
                    &variant.fields,
                    &what,
                );
                let visitor = self.visitor(&visitor_ident, &what, self.visit_seq(body));
                let make = quote!(#visitor_ident #turbofish { version: self.version, marker: ::core::marker::PhantomData });
                let arm = if style == Style::Named {
                    let names = variant.fields.iter().map(Field::name);
                    quote!(#de::VariantAccess::struct_variant(__variant, &[#(#names),*], #make))
                } else {
                    let count = variant.fields.len();
                    quote!(#de::VariantAccess::tuple_variant(__variant, #count, #make))
                };
                (arm, Some(visitor))
            }
        }
    }
}
