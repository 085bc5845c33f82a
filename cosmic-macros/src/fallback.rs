//! What the derive emits when the input has errors: the errors, plus stub impls of every trait
//! the derive would have written, so that code using the type (`capture(&state)`, a field of
//! this type in another derived type) reports nothing further. The stubs never run: the
//! `compile_error!`s next to them stop the build.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::{parse_quote, DeriveInput, GenericParam, Generics, WhereClause};

/// What the stubs need to know of the container (which may not have parsed).
pub(crate) struct Stubs<'a> {
    pub(crate) krate: &'a syn::Path,
    /// The `VERSION` the stub declares, so that an `upgrade_from` naming this type is not
    /// refused as well.
    pub(crate) version: u32,
    /// Whether to stub the serde impls too (not with `use_serde`: the user derives them).
    pub(crate) serde: bool,
}

impl Stubs<'_> {
    pub(crate) fn expand(&self, input: &DeriveInput, errors: syn::Error) -> TokenStream {
        let version = self.version;
        let private = {
            let krate = self.krate;
            quote!(#krate::__private)
        };
        let ident = &input.ident;
        let errors = errors.to_compile_error();

        // `Migratable` needs `Send + 'static`. The stubs are for the type with every lifetime
        // `'static` (a lifetime parameter is one of the errors already), and `Send` is
        // asserted outright, so that a field such as `Rc<T>` is reported once, by the derive,
        // and not again as a missing `Send` impl.
        let (send_impl_generics, send_ty_generics, send_where) = input.generics.split_for_impl();
        let generics = static_generics(&input.generics, self.krate);
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let args = input.generics.params.iter().map(|param| match param {
            GenericParam::Lifetime(_) => quote!('static),
            GenericParam::Type(param) => param.ident.to_token_stream(),
            GenericParam::Const(param) => param.ident.to_token_stream(),
        });
        let ty = quote!(#ident <#(#args),*>);

        let serde_stubs = if self.serde {
            let mut de_generics = generics.clone();
            de_generics.params.insert(0, parse_quote!('de));
            let (de_impl_generics, _, _) = de_generics.split_for_impl();
            quote! {
                impl #impl_generics #private::serde::Serialize for #ty #where_clause {
                    fn serialize<__S: #private::serde::Serializer>(
                        &self,
                        _: __S,
                    ) -> ::core::result::Result<__S::Ok, __S::Error> {
                        ::core::unreachable!()
                    }
                }

                impl #de_impl_generics #private::serde::Deserialize<'de> for #ty #where_clause {
                    fn deserialize<__D: #private::serde::Deserializer<'de>>(
                        _: __D,
                    ) -> ::core::result::Result<Self, __D::Error> {
                        ::core::unreachable!()
                    }
                }
            }
        } else {
            TokenStream::new()
        };

        quote! {
            #errors
            #[automatically_derived]
            #[allow(clippy::all)]
            const _: () = {
                impl #impl_generics #private::Shape for #ty #where_clause {
                    fn shape(_: &mut #private::SchemaBuilder) -> #private::String {
                        ::core::unreachable!()
                    }
                }

                impl #impl_generics #private::Migratable for #ty #where_clause {
                    const VERSION: u32 = #version;

                    fn type_name() -> #private::Cow<'static, str> {
                        ::core::unreachable!()
                    }

                    fn shape_at(_: u32, _: &mut #private::SchemaBuilder) -> #private::String {
                        ::core::unreachable!()
                    }

                    fn deserialize_version<'de, __D: #private::serde::Deserializer<'de>>(
                        _: u32,
                        _: __D,
                    ) -> ::core::result::Result<Self, __D::Error> {
                        ::core::unreachable!()
                    }
                }

                #serde_stubs

                // SAFETY: never part of a program: the errors above stop the build.
                unsafe impl #send_impl_generics ::core::marker::Send for #ident #send_ty_generics #send_where {}
            };
        }
    }
}

/// The type's generics without lifetime parameters (every use of one becomes `'static`), and
/// with the bounds the real impls put on type parameters.
fn static_generics(generics: &Generics, krate: &syn::Path) -> Generics {
    let mut generics = generics.clone();
    generics.params = generics
        .params
        .into_iter()
        .filter(|param| !matches!(param, GenericParam::Lifetime(_)))
        .map(|param| syn::parse2(static_lifetimes(param.to_token_stream())).unwrap_or(param))
        .collect();
    if let Some(where_clause) = &generics.where_clause {
        let tokens = static_lifetimes(where_clause.to_token_stream());
        generics.where_clause = syn::parse2::<WhereClause>(tokens).ok();
    }
    let type_params: Vec<_> = generics.type_params().map(|p| p.ident.clone()).collect();
    let where_clause = generics.make_where_clause();
    for param in type_params {
        where_clause
            .predicates
            .push(parse_quote!(#param: #krate::__private::MigratableField));
    }
    generics
}

/// `tokens` with every lifetime but `'static` replaced by `'static`.
fn static_lifetimes(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                out.push(TokenTree::Punct(punct));
                if let Some(TokenTree::Ident(_)) = tokens.peek() {
                    tokens.next();
                    out.push(TokenTree::Ident(Ident::new("static", Span::call_site())));
                }
            }
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), static_lifetimes(group.stream()));
                new.set_span(group.span());
                out.push(TokenTree::Group(new));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}
