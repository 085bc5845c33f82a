//! Parsing of `#[migratable(...)]` attributes on the container, its variants and its fields.

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
    pub(crate) krate: Option<Path>,
    pub(crate) upgrade_from: Option<Type>,
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
    pub(crate) opaque: Option<Spanned<String>>,
}

impl ContainerAttrs {
    pub(crate) fn parse(cx: &mut Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
        let mut out = ContainerAttrs::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident(MIGRATABLE)) {
            let result = attr.parse_nested_meta(|meta| {
                let tokens = meta_tokens(&meta);
                if meta.path.is_ident(VERSION) {
                    let value = parse_u32(&meta)?;
                    set_once(cx, &mut out.version, Spanned { value, tokens }, VERSION);
                } else if meta.path.is_ident(NAME) {
                    let value = meta.value()?.parse::<LitStr>()?.value();
                    set_once(cx, &mut out.name, Spanned { value, tokens }, NAME);
                } else if meta.path.is_ident(CRATE) {
                    let path = meta.value()?.parse::<LitStr>()?.parse::<Path>()?;
                    if out.krate.replace(path).is_some() {
                        cx.error_spanned_by(tokens, "duplicate `crate` attribute");
                    }
                } else if meta.path.is_ident(UPGRADE_FROM) {
                    let ty = parse_type(&meta)?;
                    if out.upgrade_from.replace(ty).is_some() {
                        cx.error_spanned_by(tokens, "duplicate `upgrade_from` attribute");
                    }
                } else if meta.path.is_ident(USE_SERDE) {
                    set_once(cx, &mut out.use_serde, Spanned { value: (), tokens }, USE_SERDE);
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
                let tokens = meta_tokens(&meta);
                if meta.path.is_ident(SINCE) {
                    let value = parse_u32(&meta)?;
                    set_once(cx, &mut out.since, Spanned { value, tokens }, SINCE);
                } else if meta.path.is_ident(UNTIL) {
                    let value = parse_u32(&meta)?;
                    set_once(cx, &mut out.until, Spanned { value, tokens }, UNTIL);
                } else if meta.path.is_ident(DEFAULT) {
                    let value = if meta.input.peek(syn::Token![=]) {
                        DefaultValue::Path(meta.value()?.parse::<LitStr>()?.parse::<Path>()?)
                    } else {
                        DefaultValue::Trait
                    };
                    set_once(cx, &mut out.default, Spanned { value, tokens }, DEFAULT);
                } else if meta.path.is_ident(SKIP) {
                    set_once(cx, &mut out.skip, Spanned { value: (), tokens }, SKIP);
                } else if meta.path.is_ident(BULK) {
                    set_once(cx, &mut out.bulk, Spanned { value: (), tokens }, BULK);
                } else if meta.path.is_ident(OPAQUE) {
                    let value = meta.value()?.parse::<LitStr>()?.value();
                    set_once(cx, &mut out.opaque, Spanned { value, tokens }, OPAQUE);
                } else {
                    return Err(meta.error(format!(
                        "unknown migratable field attribute `{}`; expected one of `since = N`, `until = N`, `default`, `default = \"path\"`, `skip`, `bulk`, `opaque = \"label\"`",
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
            "`#[migratable(...)]` is not supported on enum variants; put `since`/`until` on fields, or bump the enum's `version` and use `upgrade_from`",
        );
    }
}

fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<Spanned<T>>, value: Spanned<T>, name: &str) {
    if slot.is_some() {
        cx.error_spanned_by(&value.tokens, format!("duplicate `{name}` attribute"));
    } else {
        *slot = Some(value);
    }
}

fn meta_tokens(meta: &ParseNestedMeta<'_>) -> proc_macro2::TokenStream {
    quote::ToTokens::to_token_stream(&meta.path)
}

fn path_text(path: &Path) -> String {
    quote::ToTokens::to_token_stream(path)
        .to_string()
        .replace(' ', "")
}

fn parse_u32(meta: &ParseNestedMeta<'_>) -> syn::Result<u32> {
    let lit: LitInt = meta.value()?.parse()?;
    lit.base10_parse::<u32>()
}

/// `upgrade_from = Type`, also accepting the string form `upgrade_from = "Type"`.
fn parse_type(meta: &ParseNestedMeta<'_>) -> syn::Result<Type> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        value.parse::<LitStr>()?.parse()
    } else {
        value.parse()
    }
}
