//! What the derive emits when the input has errors: the errors, plus stub impls of the traits
//! the derive would have written, so that code using the type reports nothing further.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub(crate) fn expand(input: &DeriveInput, krate: &syn::Path, errors: syn::Error) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let errors = errors.to_compile_error();
    quote! {
        #errors
        #[automatically_derived]
        const _: () = {
            impl #impl_generics #krate::__private::Shape for #ident #ty_generics #where_clause {
                fn shape(_: &mut #krate::__private::SchemaBuilder) -> #krate::__private::String {
                    ::core::unreachable!()
                }
            }
        };
    }
}
