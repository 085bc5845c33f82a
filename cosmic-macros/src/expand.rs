//! Code generation: the `Shape`, `Migratable`, `Serialize` and `Deserialize` impls and the
//! type's registration, all inside one `const _: () = { ... };` block.
//!
//! The serde impls are positional (fields in declaration order, no names on the wire) and the
//! decoder reads the layout of the version the bytes were written with: fields outside their
//! `since`/`until` range are not read and get their default instead.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{parse_quote, DeriveInput, GenericParam, Generics, Ident, LitStr, Path};

use crate::ast::{Body, Container, Field, Style, Variant};
use crate::attr::DefaultValue;
use crate::ctxt::Ctxt;
use crate::{fallback, valid};

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let container = Container::from_ast(&mut cx, input);
    if let Some(container) = &container {
        valid::check(&mut cx, container);
    }
    let krate = container
        .as_ref()
        .and_then(|container| container.attrs.krate.clone())
        .unwrap_or_else(|| parse_quote!(::cosmic));
    match (cx.check(), container) {
        (Ok(()), Some(container)) => Expander::new(&container, krate).expand(),
        (Err(errors), _) => fallback::expand(input, &krate, errors),
        (Ok(()), None) => fallback::expand(
            input,
            &krate,
            syn::Error::new(Span::call_site(), "cannot derive `Migratable` here"),
        ),
    }
}

struct Expander<'a> {
    container: &'a Container<'a>,
    krate: Path,
    /// The container's generics with `MigratableField` bounds on every type parameter.
    generics: Generics,
    wire_name: String,
    version: u32,
    /// Counts the visitor types generated, to name them.
    visitors: std::cell::Cell<usize>,
}

impl<'a> Expander<'a> {
    fn new(container: &'a Container<'a>, krate: Path) -> Self {
        let mut generics = container.generics.clone();
        let type_params: Vec<Ident> = generics.type_params().map(|p| p.ident.clone()).collect();
        let where_clause = generics.make_where_clause();
        for param in type_params {
            where_clause
                .predicates
                .push(parse_quote!(#param: #krate::__private::MigratableField));
        }
        Expander {
            wire_name: container
                .attrs
                .name
                .as_ref()
                .map_or_else(|| container.ident.to_string(), |name| name.value.clone()),
            version: container.attrs.version.as_ref().map_or(1, |v| v.value),
            container,
            krate,
            generics,
            visitors: std::cell::Cell::new(0),
        }
    }

    fn is_generic(&self) -> bool {
        self.container
            .generics
            .params
            .iter()
            .any(|param| !matches!(param, GenericParam::Lifetime(_)))
    }

    fn expand(&self) -> TokenStream {
        let krate = &self.krate;
        let ident = self.container.ident;
        let (impl_generics, ty_generics, where_clause) = self.generics.split_for_impl();
        let version = self.version;
        let type_name = self.type_name();
        let shape_at = self.shape_at();
        let deserialize_version = self.deserialize_version();
        let serde_impls = if self.container.attrs.use_serde.is_some() {
            TokenStream::new()
        } else {
            self.serde_impls()
        };
        let registration = if self.is_generic() {
            TokenStream::new()
        } else {
            let name = LitStr::new(&self.wire_name, Span::call_site());
            quote! {
                #krate::__private::inventory::submit! {
                    #krate::__private::Registration::of::<#ident>(#name)
                }
            }
        };
        let upgrade_check = match (&self.container.attrs.upgrade_from, self.is_generic()) {
            (Some(old), false) => quote! {
                const _: () = ::core::assert!(
                    <#old as #krate::__private::Migratable>::VERSION < #version,
                    "`upgrade_from` must name a type whose `version` is older than this type's",
                );
            },
            _ => TokenStream::new(),
        };
        quote! {
            #[automatically_derived]
            #[allow(non_camel_case_types, clippy::all)]
            const _: () = {
                impl #impl_generics #krate::__private::Shape for #ident #ty_generics #where_clause {
                    fn shape(schema: &mut #krate::__private::SchemaBuilder) -> #krate::__private::String {
                        schema.named::<Self>()
                    }
                }

                impl #impl_generics #krate::__private::Migratable for #ident #ty_generics #where_clause {
                    const VERSION: u32 = #version;

                    fn type_name() -> #krate::__private::Cow<'static, str> {
                        #type_name
                    }

                    fn shape_at(
                        version: u32,
                        schema: &mut #krate::__private::SchemaBuilder,
                    ) -> #krate::__private::String {
                        #shape_at
                    }

                    fn deserialize_version<'de, __D: #krate::__private::serde::Deserializer<'de>>(
                        version: u32,
                        deserializer: __D,
                    ) -> ::core::result::Result<Self, __D::Error> {
                        #deserialize_version
                    }
                }

                #serde_impls
                #registration
                #upgrade_check
            };
        }
    }

    fn type_name(&self) -> TokenStream {
        let krate = &self.krate;
        let name = &self.wire_name;
        if !self.is_generic() {
            return quote!(#krate::__private::Cow::Borrowed(#name));
        }
        let parameters = self
            .container
            .generics
            .params
            .iter()
            .filter_map(|param| match param {
                GenericParam::Type(ty) => {
                    let ident = &ty.ident;
                    Some(quote! {
                        <#ident as #krate::__private::Shape>::shape(
                            &mut #krate::__private::SchemaBuilder::current(),
                        )
                    })
                }
                GenericParam::Const(constant) => {
                    let ident = &constant.ident;
                    Some(quote!(#krate::__private::ToString::to_string(&#ident)))
                }
                GenericParam::Lifetime(_) => None,
            });
        quote! {
            #krate::__private::Cow::Owned(#krate::__private::generic_type_name(#name, &[#(#parameters),*]))
        }
    }

    // ---- shapes -------------------------------------------------------------------------

    fn shape_at(&self) -> TokenStream {
        let krate = &self.krate;
        let upgrade = self.upgrade_prefix(|old| {
            quote!(return <#old as #krate::__private::Migratable>::shape_at(version, schema);)
        });
        let body = match &self.container.body {
            Body::Struct(style, fields) => self.fields_shape(struct_kind(*style), *style, fields),
            Body::Enum(variants) => {
                let parts = variants.iter().map(|variant| {
                    let name = variant.ident.to_string();
                    let shape = self.fields_shape(
                        variant_kind(variant.style),
                        variant.style,
                        &variant.fields,
                    );
                    quote!(__variants.named(#name, #shape);)
                });
                quote! {{
                    let mut __variants = #krate::__private::ShapeParts::new("enum");
                    #(#parts)*
                    __variants.finish()
                }}
            }
        };
        quote! {
            #upgrade
            #body
        }
    }

    /// For a type with `upgrade_from = Old`: versions up to `Old::VERSION` are Old's business.
    fn upgrade_prefix(&self, delegate: impl Fn(&syn::Type) -> TokenStream) -> TokenStream {
        let krate = &self.krate;
        match &self.container.attrs.upgrade_from {
            Some(old) => {
                let call = delegate(old);
                quote! {
                    if version <= <#old as #krate::__private::Migratable>::VERSION {
                        #call
                    }
                }
            }
            None => TokenStream::new(),
        }
    }

    fn fields_shape(&self, kind: &str, style: Style, fields: &[Field<'_>]) -> TokenStream {
        let krate = &self.krate;
        let parts = fields
            .iter()
            .filter(|field| !field.is_skipped())
            .map(|field| {
                let active = active_condition(field);
                let shape = self.field_shape(field);
                let push = match style {
                    Style::Named => {
                        let name = field.name();
                        quote!(__parts.named(#name, #shape))
                    }
                    _ => quote!(__parts.positional(#shape)),
                };
                quote!(if #active { #push; })
            });
        quote! {{
            let mut __parts = #krate::__private::ShapeParts::new(#kind);
            #(#parts)*
            __parts.finish()
        }}
    }

    fn field_shape(&self, field: &Field<'_>) -> TokenStream {
        let krate = &self.krate;
        if let Some(label) = &field.attrs.opaque {
            let text = format!("opaque<{}>", label.value);
            return quote!(#krate::__private::String::from(#text));
        }
        let ty = self.field_wire_type(field);
        quote!(<#ty as #krate::__private::Shape>::shape(schema))
    }

    /// The type a field is encoded as: the field's own, or `BulkVec<T>` for bulk fields.
    fn field_wire_type(&self, field: &Field<'_>) -> TokenStream {
        let krate = &self.krate;
        match field.bulk_element {
            Some(element) => quote!(#krate::__private::BulkVec<#element>),
            None => {
                let ty = field.ty;
                quote!(#ty)
            }
        }
    }

    // ---- serialize ----------------------------------------------------------------------

    fn serde_impls(&self) -> TokenStream {
        let krate = &self.krate;
        let ident = self.container.ident;
        let (impl_generics, ty_generics, where_clause) = self.generics.split_for_impl();
        let de_generics = self.generics_with_de();
        let (de_impl_generics, _, _) = de_generics.split_for_impl();
        let serialize_body = self.serialize_body();
        let visitors = self.visitors_and_entry();
        quote! {
            impl #impl_generics #krate::__private::serde::Serialize for #ident #ty_generics #where_clause {
                fn serialize<__S: #krate::__private::serde::Serializer>(
                    &self,
                    serializer: __S,
                ) -> ::core::result::Result<__S::Ok, __S::Error> {
                    #serialize_body
                }
            }

            impl #de_impl_generics #krate::__private::serde::Deserialize<'de> for #ident #ty_generics #where_clause {
                fn deserialize<__D: #krate::__private::serde::Deserializer<'de>>(
                    deserializer: __D,
                ) -> ::core::result::Result<Self, __D::Error> {
                    <Self as #krate::__private::Migratable>::deserialize_version(
                        #krate::__private::written_version::<Self>(),
                        deserializer,
                    )
                }
            }

            #visitors
        }
    }

    fn serialize_body(&self) -> TokenStream {
        let krate = &self.krate;
        let name = &self.wire_name;
        let ser = quote!(#krate::__private::serde::ser);
        match &self.container.body {
            Body::Struct(Style::Unit, _) => quote!(__S::serialize_unit_struct(serializer, #name)),
            Body::Struct(style, fields) => {
                let current: Vec<&Field> = current_fields(fields).collect();
                let count = current.len();
                let (start, trait_name) = match style {
                    Style::Named => (quote!(serialize_struct), quote!(SerializeStruct)),
                    _ => (quote!(serialize_tuple_struct), quote!(SerializeTupleStruct)),
                };
                let writes = current.iter().map(|field| {
                    let member = &field.member;
                    let value = self.serialized_value(field, quote!(&self.#member));
                    match style {
                        Style::Named => {
                            let field_name = field.name();
                            quote!(#ser::SerializeStruct::serialize_field(&mut __state, #field_name, #value)?;)
                        }
                        _ => quote!(#ser::SerializeTupleStruct::serialize_field(&mut __state, #value)?;),
                    }
                });
                quote! {
                    let mut __state = __S::#start(serializer, #name, #count)?;
                    #(#writes)*
                    #ser::#trait_name::end(__state)
                }
            }
            Body::Enum(variants) => {
                let arms = variants
                    .iter()
                    .enumerate()
                    .map(|(index, variant)| self.serialize_variant(index as u32, variant));
                quote! {
                    match self {
                        #(#arms)*
                    }
                }
            }
        }
    }

    /// The value to hand to serde for a field (bound to `place`, a reference).
    fn serialized_value(&self, field: &Field<'_>, place: TokenStream) -> TokenStream {
        let krate = &self.krate;
        match field.bulk_element {
            Some(_) => quote!(&#krate::__private::BulkSlice(#place)),
            None => place,
        }
    }

    fn serialize_variant(&self, index: u32, variant: &Variant<'_>) -> TokenStream {
        let krate = &self.krate;
        let ser = quote!(#krate::__private::serde::ser);
        let name = &self.wire_name;
        let ident = self.container.ident;
        let variant_ident = variant.ident;
        let variant_name = variant.ident.to_string();
        let bindings: Vec<Ident> = (0..variant.fields.len())
            .map(|i| format_ident!("__field{}", i))
            .collect();
        let current: Vec<(&Field, &Ident)> = variant
            .fields
            .iter()
            .zip(&bindings)
            .filter(|(field, _)| is_current(field))
            .collect();
        let count = current.len();
        match variant.style {
            Style::Unit => quote! {
                #ident::#variant_ident => __S::serialize_unit_variant(serializer, #name, #index, #variant_name),
            },
            Style::Tuple if is_newtype(variant) => quote! {
                #ident::#variant_ident(__field0) => __S::serialize_newtype_variant(serializer, #name, #index, #variant_name, __field0),
            },
            Style::Tuple => {
                let writes = current.iter().map(|(field, binding)| {
                    let value = self.serialized_value(field, quote!(#binding));
                    quote!(#ser::SerializeTupleVariant::serialize_field(&mut __state, #value)?;)
                });
                quote! {
                    #ident::#variant_ident(#(#bindings),*) => {
                        let mut __state = __S::serialize_tuple_variant(serializer, #name, #index, #variant_name, #count)?;
                        #(#writes)*
                        #ser::SerializeTupleVariant::end(__state)
                    }
                }
            }
            Style::Named => {
                let members = variant.fields.iter().map(|field| &field.member);
                let writes = current.iter().map(|(field, binding)| {
                    let value = self.serialized_value(field, quote!(#binding));
                    let field_name = field.name();
                    quote!(#ser::SerializeStructVariant::serialize_field(&mut __state, #field_name, #value)?;)
                });
                quote! {
                    #ident::#variant_ident { #(#members: #bindings),* } => {
                        let mut __state = __S::serialize_struct_variant(serializer, #name, #index, #variant_name, #count)?;
                        #(#writes)*
                        #ser::SerializeStructVariant::end(__state)
                    }
                }
            }
        }
    }

    // ---- deserialize --------------------------------------------------------------------

    fn generics_with_de(&self) -> Generics {
        let mut generics = self.generics.clone();
        generics.params.insert(0, parse_quote!('de));
        generics
    }

    fn deserialize_version(&self) -> TokenStream {
        let krate = &self.krate;
        let upgrade = self.upgrade_prefix(|old| {
            quote! {
                return <#old as #krate::__private::Migratable>::deserialize_version(version, deserializer)
                    .map(::core::convert::Into::into);
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
                <Self as #krate::__private::serde::Deserialize<'de>>::deserialize(deserializer)
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

    fn visitors_and_entry(&self) -> TokenStream {
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
            let ty = field.ty;
            let default = default_value(field);
            if field.is_skipped() {
                return quote!(let #local: #ty = #default;);
            }
            let wire = self.field_wire_type(field);
            let unwrap = if field.bulk_element.is_some() { quote!(.0) } else { TokenStream::new() };
            let read = quote! {
                match #de::SeqAccess::next_element::<#wire>(&mut __seq)? {
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
                let ty = variant.fields[0].ty;
                (
                    quote!(#de::VariantAccess::newtype_variant::<#ty>(__variant).map(#ident::#variant_ident)),
                    None,
                )
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

fn struct_kind(style: Style) -> &'static str {
    match style {
        Style::Named => "struct",
        Style::Tuple => "tuple_struct",
        Style::Unit => "unit_struct",
    }
}

fn variant_kind(style: Style) -> &'static str {
    match style {
        Style::Named => "struct",
        Style::Tuple => "tuple",
        Style::Unit => "unit",
    }
}

/// Fields in the current version's encoding.
fn current_fields<'f, 'a>(fields: &'f [Field<'a>]) -> impl Iterator<Item = &'f Field<'a>> {
    fields.iter().filter(|field| is_current(field))
}

fn is_current(field: &Field<'_>) -> bool {
    !field.is_skipped() && field.until().is_none()
}

/// A single plain field: encoded as a serde newtype variant.
fn is_newtype(variant: &Variant<'_>) -> bool {
    variant.style == Style::Tuple
        && variant.fields.len() == 1
        && is_current(&variant.fields[0])
        && variant.fields[0].since() == 1
        && variant.fields[0].bulk_element.is_none()
}

/// The run-time test of whether `field` is in the layout of `version`.
fn active_condition(field: &Field<'_>) -> TokenStream {
    let since = field.since();
    match field.until() {
        Some(until) => quote!((version >= #since && version < #until)),
        None if since > 1 => quote!((version >= #since)),
        None => quote!(true),
    }
}

fn default_value(field: &Field<'_>) -> TokenStream {
    match field.attrs.default.as_ref().map(|d| &d.value) {
        Some(DefaultValue::Path(path)) => quote!(#path()),
        Some(DefaultValue::Trait) | None => quote!(::core::default::Default::default()),
    }
}
