//! Code generation: the `Shape`, `Migratable`, `Serialize` and `Deserialize` impls and the
//! type's registration, all inside one `const _: () = { ... };` block. The decoding side is
//! in `de.rs`.
//!
//! The serde impls are positional (fields in declaration order, no names on the wire) and the
//! decoder reads the layout of the version the bytes were written with: fields outside their
//! `since`/`until` range are not read and get their default instead.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{parse_quote, DeriveInput, GenericParam, Generics, Ident, LitStr, Path};

use crate::ast::{Body, Container, Field, Style, Variant};
use crate::attr::DefaultValue;
use crate::ctxt::Ctxt;
use crate::{fallback, fields, valid};

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let container = Container::from_ast(&mut cx, input);
    if let Some(container) = &container {
        valid::check(&mut cx, container);
    }
    let krate = container
        .as_ref()
        .and_then(|container| container.attrs.krate.as_ref())
        .map_or_else(|| parse_quote!(::cosmic), |krate| krate.value.clone());
    // The version the stubs of the fallback declare, so that an `upgrade_from` naming this type
    // is not refused as well.
    let version = container
        .as_ref()
        .and_then(|container| container.attrs.version.as_ref())
        .map_or(1, |version| version.value.max(1));
    let stubs = fallback::Stubs {
        krate: &krate,
        version,
        serde: container
            .as_ref()
            .is_none_or(|container| container.attrs.use_serde.is_none()),
    };
    match (cx.check(), container) {
        (Ok(()), Some(container)) => Expander::new(&container, krate.clone()).expand(),
        (Err(errors), _) => stubs.expand(input, errors),
        (Ok(()), None) => stubs.expand(
            input,
            syn::Error::new(Span::call_site(), "cannot derive `Migratable` here"),
        ),
    }
}

pub(crate) struct Expander<'a> {
    pub(crate) container: &'a Container<'a>,
    pub(crate) krate: Path,
    /// The container's generics with `MigratableField` bounds on every type parameter.
    pub(crate) generics: Generics,
    pub(crate) wire_name: String,
    pub(crate) version: u32,
    /// Counts the visitor types generated, to name them.
    pub(crate) visitors: std::cell::Cell<usize>,
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
        // With `use_serde`, a missing serde impl is reported at `use_serde`, as an unmet bound
        // of this impl.
        let migratable_self = match &self.container.attrs.use_serde {
            Some(use_serde) => Ident::new(&ident.to_string(), first_span(&use_serde.tokens)),
            None => ident.clone(),
        };
        let reads_older = self.container.attrs.use_serde.is_none();
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
            (Some(old), false) => {
                let old = &old.value;
                let message = format!(
                    "`upgrade_from = {}` must name an older layout of this type, but its `VERSION` is not below this type's `version = {version}`; raise this type's `version`",
                    quote!(#old).to_string().replace(' ', ""),
                );
                quote_spanned! {old.span()=>
                    const _: () = ::core::assert!(
                        <#old as #krate::__private::Migratable>::VERSION < #version,
                        #message,
                    );
                }
            }
            _ => TokenStream::new(),
        };
        let field_helpers = if self.container.all_fields().any(is_dispatched) {
            let arrays = self
                .container
                .all_fields()
                .any(|field| is_dispatched(field) && matches!(field.ty, syn::Type::Array(_)));
            fields::helpers(&quote!(#krate::__private), arrays)
        } else {
            TokenStream::new()
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

                impl #impl_generics #krate::__private::Migratable for #migratable_self #ty_generics #where_clause {
                    const VERSION: u32 = #version;
                    const READS_OLDER_VERSIONS: bool = #reads_older;

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
                #field_helpers
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
    pub(crate) fn upgrade_prefix(
        &self,
        delegate: impl Fn(&syn::Type) -> TokenStream,
    ) -> TokenStream {
        let krate = &self.krate;
        match &self.container.attrs.upgrade_from {
            Some(old) => {
                let old = &old.value;
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

    /// The type a field is encoded as: the field's own, `BulkVec<T>` for bulk fields or
    /// `NativeVec<T>` for native ones.
    pub(crate) fn field_wire_type(&self, field: &Field<'_>) -> TokenStream {
        let krate = &self.krate;
        if let Some(element) = field.bulk_element {
            return quote!(#krate::__private::BulkVec<#element>);
        }
        if let Some(element) = &field.native_element {
            return quote!(#krate::__private::NativeVec<#element>);
        }
        let ty = &field.ty;
        quote!(#ty)
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
        let depth_guard = self.depth_guard();
        let written_version = self.written_version();
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
                    #depth_guard
                    <Self as #krate::__private::Migratable>::deserialize_version(
                        #written_version,
                        deserializer,
                    )
                }
            }

            #visitors
        }
    }

    /// Enters a level of the nesting bound (see `DepthGuard`), unless every decoded field's
    /// type decodes flat: then this type adds one level at most, and decoding many small
    /// structs (a vertex of three `f32`s) skips a thread-local update per value. The probes
    /// are constants the optimiser folds. A type with `upgrade_from` is always guarded: the
    /// older layout it decodes may hold this type again.
    fn depth_guard(&self) -> TokenStream {
        let krate = &self.krate;
        let enter = quote! {
            // Bounds recursion through hostile bytes; see `DepthGuard`.
            #krate::__private::DepthGuard::enter()
                .map_err(<__D::Error as #krate::__private::serde::de::Error>::custom)?
        };
        if self.container.attrs.upgrade_from.is_some() {
            return quote!(let _depth = #enter;);
        }
        let types: Vec<&syn::Type> = self
            .container
            .all_fields()
            .filter(|field| !field.is_skipped())
            .map(|field| &field.ty)
            .collect();
        if types.is_empty() {
            return TokenStream::new();
        }
        let probe = quote!(#krate::__private::FlatProbe);
        quote! {
            #[allow(unused_imports)]
            use #krate::__private::{ProbeFlat as _, ProbeNested as _};
            let _depth = if #((&&#probe::<#types>::new()).decodes_flat())&&* {
                ::core::option::Option::None
            } else {
                ::core::option::Option::Some(#enter)
            };
        }
    }

    /// The version to decode: the one the bytes were written with, or the current one when
    /// every version has this one layout (no `upgrade_from`, no field added or removed), which
    /// saves a thread-local read per decoded value.
    fn written_version(&self) -> TokenStream {
        let krate = &self.krate;
        let one_layout = self.container.attrs.upgrade_from.is_none()
            && self
                .container
                .all_fields()
                .all(|field| field.is_skipped() || (field.since() == 1 && field.until().is_none()));
        if one_layout {
            quote!(<Self as #krate::__private::Migratable>::VERSION)
        } else {
            quote!(#krate::__private::written_version::<Self>())
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
        if field.bulk_element.is_some() {
            quote!(&#krate::__private::BulkSlice(#place))
        } else if field.native_element.is_some() {
            quote!(&#krate::__private::NativeSlice(#place))
        } else if is_dispatched(field) {
            let value = fields::value(&field.ty, place);
            quote!(&#value)
        } else {
            place
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
            Style::Tuple if is_newtype(variant) => {
                let value = self.serialized_value(&variant.fields[0], quote!(__field0));
                quote! {
                    #ident::#variant_ident(__field0) => __S::serialize_newtype_variant(serializer, #name, #index, #variant_name, #value),
                }
            }
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
pub(crate) fn is_newtype(variant: &Variant<'_>) -> bool {
    variant.style == Style::Tuple
        && variant.fields.len() == 1
        && is_current(&variant.fields[0])
        && variant.fields[0].since() == 1
        && !variant.fields[0].is_wrapped()
}

/// The run-time test of whether `field` is in the layout of `version`.
pub(crate) fn active_condition(field: &Field<'_>) -> TokenStream {
    let since = field.since();
    match field.until() {
        Some(until) => quote!((version >= #since && version < #until)),
        None if since > 1 => quote!((version >= #since)),
        None => quote!(true),
    }
}

/// The value of a field that is not in the bytes. `Default::default()` is spanned at the
/// attribute that asks for it (`default`, or `skip` without `default`), where a missing
/// `Default` impl is reported.
pub(crate) fn default_value(field: &Field<'_>) -> TokenStream {
    let attrs = &field.attrs;
    match &attrs.default {
        Some(default) => match &default.value {
            DefaultValue::Path(path) => quote!(#path()),
            DefaultValue::Trait => trait_default(&default.tokens),
        },
        None => match &attrs.skip {
            Some(skip) => trait_default(&skip.tokens),
            None => trait_default(&quote!()),
        },
    }
}

fn trait_default(at: &TokenStream) -> TokenStream {
    let span = first_span(at);
    quote_spanned!(span=> ::core::default::Default::default())
}

pub(crate) fn first_span(tokens: &TokenStream) -> Span {
    tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |token| token.span())
}

/// Whether the serde calls for a field go through `fields::value`/`seed`: every
/// encoded field but the bulk and native ones (encoded as `BulkVec`, `NativeVec`) and the
/// opaque ones (serde types
/// without a shape, by the user's word).
pub(crate) fn is_dispatched(field: &Field<'_>) -> bool {
    !field.is_skipped() && !field.is_wrapped() && field.attrs.opaque.is_none()
}
