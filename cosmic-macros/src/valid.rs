//! Rules that involve several attributes, or a field's type and its attributes.

use crate::ast::{Container, Field};
use crate::ctxt::Ctxt;
use crate::immovable;

pub(crate) fn check(cx: &mut Ctxt, container: &Container<'_>) {
    check_container(cx, container);
    // Lifetimes inside types already reported (`&'a str`) need no second error.
    let mut reported = Vec::new();
    for field in container.all_fields() {
        check_field(cx, container, field, &mut reported);
    }
    for param in container.generics.lifetimes() {
        if !reported.contains(&param.lifetime) {
            cx.error_spanned_by(
                param,
                "`Migratable` types cannot borrow: a lifetime parameter means the state holds references, and what they point to stays behind on this host; own the data (`String` for `&str`, `Vec<T>` for `&[T]`)",
            );
        }
    }
}

fn version(container: &Container<'_>) -> u32 {
    container.attrs.version.as_ref().map_or(1, |v| v.value)
}

fn check_container(cx: &mut Ctxt, container: &Container<'_>) {
    let attrs = &container.attrs;
    if let Some(version) = &attrs.version {
        if version.value == 0 {
            cx.error_spanned_by(
                &version.tokens,
                "`version = 0` is not allowed: versions start at 1, the version of a type without the attribute",
            );
        }
    }
    if let Some(name) = &attrs.name {
        if name.value.is_empty() || name.value.len() > 1024 {
            cx.error_spanned_by(
                &name.tokens,
                "`name = \"...\"` must be 1 to 1024 bytes long: it is written in every image header",
            );
        }
    }
    if let Some(upgrade_from) = &attrs.upgrade_from {
        if version(container) < 2 {
            cx.error_spanned_by(
                &upgrade_from.tokens,
                "`upgrade_from` needs an older version to upgrade from, but this type is at version 1: set `version = N` with N above the old type's version",
            );
        }
    }
    if let Some(use_serde) = &attrs.use_serde {
        if attrs.upgrade_from.is_some() {
            cx.error_spanned_by(
                &use_serde.tokens,
                "`use_serde` cannot be combined with `upgrade_from`: older versions are decoded by the generated serde impls, which `use_serde` turns off",
            );
        }
    }
}

fn check_field(
    cx: &mut Ctxt,
    container: &Container<'_>,
    field: &Field<'_>,
    reported_lifetimes: &mut Vec<syn::Lifetime>,
) {
    let attrs = &field.attrs;
    let name = field.name();
    // `opaque` is the user's word that the field is a serde type they version themselves.
    if attrs.skip.is_none() && attrs.opaque.is_none() {
        immovable::check_type(cx, &field.ty, reported_lifetimes);
    }
    if attrs.skip.is_some() {
        for (other, what) in [
            (attrs.since.as_ref().map(|a| &a.tokens), "since"),
            (attrs.until.as_ref().map(|a| &a.tokens), "until"),
            (attrs.bulk.as_ref().map(|a| &a.tokens), "bulk"),
            (attrs.native.as_ref().map(|a| &a.tokens), "native"),
            (attrs.opaque.as_ref().map(|a| &a.tokens), "opaque"),
        ] {
            if let Some(other) = other {
                cx.error_spanned_by(
                    other,
                    format!("`{what}` has no effect on a field marked `skip`: a skipped field is never encoded, in any version; remove one of the two"),
                );
            }
        }
        // A skipped field is in no version: no further rule applies to it.
        return;
    }
    if container.attrs.use_serde.is_some() {
        for (other, what) in [
            (attrs.since.as_ref().map(|a| &a.tokens), "since"),
            (attrs.until.as_ref().map(|a| &a.tokens), "until"),
            (attrs.bulk.as_ref().map(|a| &a.tokens), "bulk"),
            (attrs.native.as_ref().map(|a| &a.tokens), "native"),
        ] {
            if let Some(other) = other {
                cx.error_spanned_by(
                    other,
                    format!("`{what}` needs the generated serde impls, but the type has `#[migratable(use_serde)]`: its own serde impls decide the encoding of `{name}`; remove `{what}` or `use_serde`"),
                );
            }
        }
        return;
    }
    let type_version = version(container);
    if let Some(since) = &attrs.since {
        if since.value == 0 {
            cx.error_spanned_by(
                &since.tokens,
                "`since = 0` is not allowed: versions start at 1, and a field without `since` is in version 1 already",
            );
        } else if since.value > type_version {
            cx.error_spanned_by(
                &since.tokens,
                format!(
                    "`since = {}` is newer than the type's `version = {type_version}`, so the field would be in no version yet; raise the type's `version` to {}",
                    since.value, since.value
                ),
            );
        }
    }
    if let Some(until) = &attrs.until {
        if until.value > type_version {
            cx.error_spanned_by(
                &until.tokens,
                format!(
                    "`until = {}` is newer than the type's `version = {type_version}`, so the field would still be in the current version; raise the type's `version` to {}",
                    until.value, until.value
                ),
            );
        } else if until.value <= field.since() {
            cx.error_spanned_by(
                &until.tokens,
                format!(
                    "`until = {}` must be later than the version the field appeared in ({}), or the field is in no version; remove the field instead",
                    until.value,
                    field.since()
                ),
            );
        }
    }
    if attrs.default.is_none() {
        if let Some(since) = attrs.since.as_ref().filter(|since| since.value > 1) {
            cx.error_spanned_by(
                &since.tokens,
                format!("`{name}` needs a default: images of versions before {} do not contain it; add `default` or `default = \"path::to::fn\"`", since.value),
            );
        } else if let Some(until) = &attrs.until {
            cx.error_spanned_by(
                &until.tokens,
                format!("`{name}` needs a default: images of version {} and later do not contain it; add `default` or `default = \"path::to::fn\"`", until.value),
            );
        }
    }
    if let Some(native) = &attrs.native {
        if attrs.opaque.is_some() {
            cx.error_spanned_by(
                &native.tokens,
                "`native` needs the field's element type, but `opaque` hides it behind its own serde impls; remove one of the two",
            );
        } else if field.native_element.is_none() && field.bulk_element.is_none() {
            cx.error_spanned_by(
                &native.tokens,
                "`native` applies only to fields written `Vec<T>` (T plain old data: `#[repr(C)]`, deriving `cosmic::bytemuck::Pod` or `NoUninit` + `CheckedBitPattern`); remove `native`",
            );
        }
    }
    if let Some(bulk) = &attrs.bulk {
        if field.bulk_element.is_none() {
            cx.error_spanned_by(
                &bulk.tokens,
                "`bulk` applies only to fields written `Vec<T>` with T a fixed-width integer or float (`u8`..`u64`, `i8`..`i64`, `f32`, `f64`): other types have no raw byte encoding; remove `bulk`",
            );
        }
    }
}
