//! Parsing of `#[migratable(...)]` attributes on the container, its variants and its fields.

use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitInt, LitStr, Path, Type};

use crate::ctxt::Ctxt;

pub(crate) const MIGRATABLE: &str = "migratable";

// Container attributes.
pub(crate) const VERSION: &str = "version";
pub(crate) const NAME: &str = "name";
pub(crate) const CRATE: &str = "crate";
pub(crate) const UPGRADE_FROM: &str = "upgrade_from";
pub(crate) const USE_SERDE: &str = "use_serde";

// Field attributes.
pub(crate) const SINCE: &str = "since";
pub(crate) const UNTIL: &str = "until";
pub(crate) const DEFAULT: &str = "default";
pub(crate) const SKIP: &str = "skip";
pub(crate) const BULK: &str = "bulk";
pub(crate) const NATIVE: &str = "native";
pub(crate) const OPAQUE: &str = "opaque";

/// A parsed attribute value with the tokens it came from, for spans.
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) tokens: proc_macro2::TokenStream,
}

/// `#[migratable(...)]` on the struct or enum.
#[derive(Default)]
pub(crate) struct ContainerAttrs {
    pub(crate) version: Option<Spanned<u32>>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) krate: Option<Spanned<Path>>,
    pub(crate) upgrade_from: Option<Spanned<Type>>,
    pub(crate) use_serde: Option<Spanned<()>>,
}

/// How a field that is not in the bytes is filled in.
pub(crate) enum DefaultValue {
    /// `default`: `Default::default()`.
    Trait,
    /// `default = "path"`: a call of the function at `path`.
    Path(Path),
}

/// `#[migratable(...)]` on a field.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    pub(crate) since: Option<Spanned<u32>>,
    pub(crate) until: Option<Spanned<u32>>,
    pub(crate) default: Option<Spanned<DefaultValue>>,
    pub(crate) skip: Option<Spanned<()>>,
    pub(crate) bulk: Option<Spanned<()>>,
    pub(crate) native: Option<Spanned<()>>,
    pub(crate) opaque: Option<Spanned<String>>,
}

impl ContainerAttrs {
    pub(crate) fn parse(cx: &mut Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
        let mut out = ContainerAttrs::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident(MIGRATABLE)) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident(VERSION) {
                    let value = parse_u32(&meta)?;
                    set_once(cx, &mut out.version, value, VERSION);
                } else if meta.path.is_ident(NAME) {
                    let value = parse_str(&meta)?;
                    set_once(cx, &mut out.name, value, NAME);
                } else if meta.path.is_ident(CRATE) {
                    let path = &meta.path;
                    let lit = meta.value()?.parse::<LitStr>()?;
                    let value = lit.parse::<Path>()?;
                    let tokens = quote!(#path = #lit);
                    set_once(cx, &mut out.krate, Spanned { value, tokens }, CRATE);
                } else if meta.path.is_ident(UPGRADE_FROM) {
                    let value = parse_type(&meta)?;
                    set_once(cx, &mut out.upgrade_from, value, UPGRADE_FROM);
                } else if meta.path.is_ident(USE_SERDE) {
                    set_once(cx, &mut out.use_serde, flag(&meta), USE_SERDE);
                } else {
                    return Err(meta.error(format!(
                        "unknown migratable container attribute `{}`; expected one of `version = N`, `name = \"...\"`, `crate = \"...\"`, `upgrade_from = Type`, `use_serde`",
                        path_text(&meta.path)
                    )));
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.push(error);
            }
        }
        out
    }
}

impl FieldAttrs {
    pub(crate) fn parse(cx: &mut Ctxt, attrs: &[Attribute]) -> FieldAttrs {
        let mut out = FieldAttrs::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident(MIGRATABLE)) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident(SINCE) {
                    let value = parse_u32(&meta)?;
                    set_once(cx, &mut out.since, value, SINCE);
                } else if meta.path.is_ident(UNTIL) {
                    let value = parse_u32(&meta)?;
                    set_once(cx, &mut out.until, value, UNTIL);
                } else if meta.path.is_ident(DEFAULT) {
                    let value = if meta.input.peek(syn::Token![=]) {
                        let path = &meta.path;
                        let lit = meta.value()?.parse::<LitStr>()?;
                        let value = DefaultValue::Path(lit.parse::<Path>()?);
                        Spanned {
                            value,
                            tokens: quote!(#path = #lit),
                        }
                    } else {
                        Spanned {
                            value: DefaultValue::Trait,
                            tokens: meta.path.to_token_stream(),
                        }
                    };
                    set_once(cx, &mut out.default, value, DEFAULT);
                } else if meta.path.is_ident(SKIP) {
                    set_once(cx, &mut out.skip, flag(&meta), SKIP);
                } else if meta.path.is_ident(BULK) {
                    set_once(cx, &mut out.bulk, flag(&meta), BULK);
                } else if meta.path.is_ident(NATIVE) {
                    set_once(cx, &mut out.native, flag(&meta), NATIVE);
                } else if meta.path.is_ident(OPAQUE) {
                    let value = parse_str(&meta)?;
                    set_once(cx, &mut out.opaque, value, OPAQUE);
                } else {
                    return Err(meta.error(format!(
                        "unknown migratable field attribute `{}`; expected one of `since = N`, `until = N`, `default`, `default = \"path\"`, `skip`, `bulk`, `native`, `opaque = \"label\"`",
                        path_text(&meta.path)
                    )));
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.push(error);
            }
        }
        out
    }
}

/// Reports that `#[migratable(...)]` has no meaning where it stands (on a variant).
pub(crate) fn reject_on_variant(cx: &mut Ctxt, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(MIGRATABLE)) {
        cx.error_spanned_by(
            attr,
            "`#[migratable(...)]` is not supported on enum variants: a variant is versioned with its enum; put `since`/`until` on its fields, or bump the enum's `version` and use `upgrade_from`",
        );
    }
}

fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<Spanned<T>>, value: Spanned<T>, name: &str) {
    if slot.is_some() {
        cx.error_spanned_by(
            &value.tokens,
            format!("duplicate `{name}` attribute: each attribute may be given once; remove one of them"),
        );
    } else {
        *slot = Some(value);
    }
}

fn path_text(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// A flag such as `skip`: the tokens are its name.
fn flag(meta: &ParseNestedMeta<'_>) -> Spanned<()> {
    Spanned {
        value: (),
        tokens: meta.path.to_token_stream(),
    }
}

/// `name = 3`; the tokens cover the whole `name = 3`.
fn parse_u32(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<u32>> {
    let path = &meta.path;
    let expected = |span| {
        let name = path_text(path);
        syn::Error::new(
            span,
            format!("`{name}` takes a whole number, as in `{name} = 2`"),
        )
    };
    let lit: LitInt = meta
        .value()
        .and_then(|value| value.parse())
        .map_err(|error| expected(error.span()))?;
    Ok(Spanned {
        value: lit
            .base10_parse::<u32>()
            .map_err(|_| expected(lit.span()))?,
        tokens: quote!(#path = #lit),
    })
}

/// `name = "text"`; the tokens cover the whole `name = "text"`.
fn parse_str(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<String>> {
    let path = &meta.path;
    let lit: LitStr = meta
        .value()
        .and_then(|value| value.parse())
        .map_err(|error| {
            let name = path_text(path);
            syn::Error::new(
                error.span(),
                format!("`{name}` takes a string, as in `{name} = \"...\"`"),
            )
        })?;
    Ok(Spanned {
        value: lit.value(),
        tokens: quote!(#path = #lit),
    })
}

/// `upgrade_from = Type`, also accepting the string form `upgrade_from = "Type"`.
fn parse_type(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<Type>> {
    let path = &meta.path;
    let value = meta.value()?;
    let ty: Type = if value.peek(LitStr) {
        value.parse::<LitStr>()?.parse()?
    } else {
        value.parse()?
    };
    Ok(Spanned {
        tokens: quote!(#path = #ty),
        value: ty,
    })
}
