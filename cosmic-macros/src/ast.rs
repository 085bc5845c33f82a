//! A typed view of the derive input: the container, its variants and fields, each with its
//! parsed attributes and a reference to the syn node it came from (for error spans).

use proc_macro2::{Group, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Member, Type};

use crate::attr::{self, ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;

pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) attrs: ContainerAttrs,
    pub(crate) body: Body<'a>,
}

pub(crate) enum Body<'a> {
    Struct(Style, Vec<Field<'a>>),
    Enum(Vec<Variant<'a>>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Named,
    Tuple,
    Unit,
}

pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) style: Style,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) member: Member,
    /// The field's type as written, with `Self` spelled out: the generated code uses it in
    /// items (visitors) where `Self` is another type.
    pub(crate) ty: Type,
    pub(crate) attrs: FieldAttrs,
    /// Encoded as raw little-endian bytes (`Vec` of a plain number).
    pub(crate) bulk_element: Option<&'a Ident>,
    /// `#[migratable(native)]` on a `Vec<T>` that is not bulk: the `T` (with `Self` spelled
    /// out), whose memory native images hold as it is.
    pub(crate) native_element: Option<Type>,
}

impl<'a> Container<'a> {
    /// Builds the view, or returns `None` (with the error recorded) for a union.
    pub(crate) fn from_ast(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<Container<'a>> {
        let attrs = ContainerAttrs::parse(cx, &input.attrs);
        let mut body = match &input.data {
            Data::Struct(data) => {
                let (style, fields) = fields_from_ast(cx, input, &data.fields);
                Body::Struct(style, fields)
            }
            Data::Enum(data) => Body::Enum(
                data.variants
                    .iter()
                    .map(|variant| {
                        attr::reject_on_variant(cx, &variant.attrs);
                        let (style, fields) = fields_from_ast(cx, input, &variant.fields);
                        Variant {
                            ident: &variant.ident,
                            style,
                            fields,
                        }
                    })
                    .collect(),
            ),
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "unions cannot be `Migratable`: which field is live is not recorded, so the state cannot be encoded portably; use an enum",
                );
                return None;
            }
        };
        if attrs.use_serde.is_some() {
            // The type's own serde impls encode a `Vec<f64>` as a sequence, not in bulk; the
            // shape must say so.
            for field in body.fields_mut() {
                field.bulk_element = None;
                field.native_element = None;
            }
        }
        Some(Container {
            ident: &input.ident,
            generics: &input.generics,
            attrs,
            body,
        })
    }

    /// Every field of the container, across all variants.
    pub(crate) fn all_fields(&self) -> Box<dyn Iterator<Item = &Field<'a>> + '_> {
        match &self.body {
            Body::Struct(_, fields) => Box::new(fields.iter()),
            Body::Enum(variants) => Box::new(variants.iter().flat_map(|v| v.fields.iter())),
        }
    }
}

impl<'a> Body<'a> {
    fn fields_mut(&mut self) -> Box<dyn Iterator<Item = &mut Field<'a>> + '_> {
        match self {
            Body::Struct(_, fields) => Box::new(fields.iter_mut()),
            Body::Enum(variants) => Box::new(variants.iter_mut().flat_map(|v| v.fields.iter_mut())),
        }
    }
}

fn fields_from_ast<'a>(
    cx: &mut Ctxt,
    input: &DeriveInput,
    fields: &'a Fields,
) -> (Style, Vec<Field<'a>>) {
    let style = match fields {
        Fields::Named(_) => Style::Named,
        Fields::Unnamed(_) => Style::Tuple,
        Fields::Unit => Style::Unit,
    };
    let fields = fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let attrs = FieldAttrs::parse(cx, &field.attrs);
            let member = match &field.ident {
                Some(ident) => Member::Named(ident.clone()),
                None => Member::Unnamed(index.into()),
            };
            let element = vec_element(&field.ty);
            let bulk_element = element.filter(|element| {
                let auto = ["f32", "f64", "u8", "i8"]
                    .iter()
                    .any(|name| *element == name);
                let opt_in = ["u16", "i16", "u32", "i32", "u64", "i64"]
                    .iter()
                    .any(|name| *element == name);
                attrs.skip.is_none()
                    && attrs.opaque.is_none()
                    && (auto || (opt_in && attrs.bulk.is_some()))
            });
            let ty = replace_self(&field.ty, input);
            // A bulk field is raw memory in native images already, and keeps its encoding.
            let native_element = if attrs.native.is_some()
                && bulk_element.is_none()
                && attrs.skip.is_none()
                && attrs.opaque.is_none()
            {
                vec_element_type(&ty).cloned()
            } else {
                None
            };
            Field {
                member,
                ty,
                attrs,
                bulk_element,
                native_element,
            }
        })
        .collect();
    (style, fields)
}

/// `ty` with every `Self` replaced by the container type.
fn replace_self(ty: &Type, input: &DeriveInput) -> Type {
    fn replace(tokens: TokenStream, container: &TokenStream) -> TokenStream {
        tokens
            .into_iter()
            .flat_map(|token| match token {
                TokenTree::Ident(ident) if ident == "Self" => container.clone(),
                TokenTree::Group(group) => {
                    let mut new = Group::new(group.delimiter(), replace(group.stream(), container));
                    new.set_span(group.span());
                    TokenTree::Group(new).into_token_stream()
                }
                other => other.into_token_stream(),
            })
            .collect()
    }
    let ident = &input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let container = quote::quote!(#ident #ty_generics);
    syn::parse2(replace(ty.to_token_stream(), &container)).unwrap_or_else(|_| ty.clone())
}

/// The element ident of a field written `Vec<ident>` (or `std::vec::Vec<ident>`).
pub(crate) fn vec_element(ty: &Type) -> Option<&Ident> {
    match vec_element_type(ty)? {
        Type::Path(element) if element.qself.is_none() => element.path.get_ident(),
        _ => None,
    }
}

/// `T` of a field written `Vec<T>`, whatever `T` is.
pub(crate) fn vec_element_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (args.args.len(), args.args.first()?) {
        (1, syn::GenericArgument::Type(element)) => Some(element),
        _ => None,
    }
}

impl Field<'_> {
    /// Whether the field travels in a wrapper of its own (`BulkVec`, `NativeVec`) instead of
    /// through the per-type dispatch.
    pub(crate) fn is_wrapped(&self) -> bool {
        self.bulk_element.is_some() || self.native_element.is_some()
    }

    /// Whether this field is in the encoding of `version` (known at expansion time only for
    /// the bounds; the generated code tests the version at run time).
    pub(crate) fn is_skipped(&self) -> bool {
        self.attrs.skip.is_some()
    }

    pub(crate) fn since(&self) -> u32 {
        self.attrs.since.as_ref().map_or(1, |since| since.value)
    }

    pub(crate) fn until(&self) -> Option<u32> {
        self.attrs.until.as_ref().map(|until| until.value)
    }

    /// The name used in shapes and serde field lists.
    pub(crate) fn name(&self) -> String {
        match &self.member {
            Member::Named(ident) => ident.to_string(),
            Member::Unnamed(index) => index.index.to_string(),
        }
    }
}
