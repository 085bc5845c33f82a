//! Rules that involve several attributes, or a field's type and its attributes.

use crate::ast::{Container, Field};
use crate::ctxt::Ctxt;
use crate::immovable;

pub(crate) fn check(cx: &mut Ctxt, container: &Container<'_>) {
    check_container(cx, container);
    for field in container.all_fields() {
        check_field(cx, container, field);
    }
    for lifetime in container.generics.lifetimes() {
        cx.error_spanned_by(
            lifetime,
            "`Migratable` types cannot borrow: a lifetime parameter means the state holds references, which cannot move to another host; own the data",
        );
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
                "`version = 0` is not allowed: versions start at 1",
            );
        }
    }
    if let Some(name) = &attrs.name {
        if name.value.is_empty() || name.value.len() > 1024 {
            cx.error_spanned_by(
                &name.tokens,
                "`name = \"...\"` must be 1 to 1024 bytes long",
            );
        }
    }
    if let Some(upgrade_from) = &attrs.upgrade_from {
        if version(container) < 2 {
            cx.error_spanned_by(
                upgrade_from,
                "`upgrade_from` needs an older version to upgrade from: set `version = N` with N of at least 2",
            );
        }
    }
    if let Some(use_serde) = &attrs.use_serde {
        if attrs.upgrade_from.is_some() {
            cx.error_spanned_by(
                &use_serde.tokens,
                "`use_serde` cannot be combined with `upgrade_from`: older versions are decoded by the derived serde impls",
            );
        }
    }
}

fn check_field(cx: &mut Ctxt, container: &Container<'_>, field: &Field<'_>) {
    let attrs = &field.attrs;
    let name = field.name();
    // `opaque` is the user's word that the field is a serde type they version themselves.
    if attrs.skip.is_none() && attrs.opaque.is_none() {
        immovable::check_type(cx, field.ty);
    }
    if let Some(skip) = &attrs.skip {
        for (present, what) in [
            (attrs.since.is_some(), "since"),
            (attrs.until.is_some(), "until"),
            (attrs.bulk.is_some(), "bulk"),
            (attrs.opaque.is_some(), "opaque"),
        ] {
            if present {
                cx.error_spanned_by(
                    &skip.tokens,
                    format!(
                        "`skip` cannot be combined with `{what}`: a skipped field is never encoded"
                    ),
                );
            }
        }
    }
    if let Some(use_serde) = &container.attrs.use_serde {
        for (present, what) in [
            (attrs.since.is_some(), "since"),
            (attrs.until.is_some(), "until"),
            (attrs.bulk.is_some(), "bulk"),
        ] {
            if present {
                cx.error_spanned_by(
                    &use_serde.tokens,
                    format!("`use_serde` cannot be combined with `{what}` on field `{name}`: the type's own serde impls decide its encoding"),
                );
            }
        }
    }
    let type_version = version(container);
    if let Some(since) = &attrs.since {
        if since.value == 0 {
            cx.error_spanned_by(
                &since.tokens,
                "`since = 0` is not allowed: versions start at 1",
            );
        } else if since.value > type_version {
            cx.error_spanned_by(
                &since.tokens,
                format!("`since = {}` is newer than the type's `version = {type_version}`; raise the type's version", since.value),
            );
        }
    }
    if let Some(until) = &attrs.until {
        if until.value > type_version {
            cx.error_spanned_by(
                &until.tokens,
                format!("`until = {}` is newer than the type's `version = {type_version}`: the field would still be in the current version; raise the type's version", until.value),
            );
        }
        if until.value <= field.since() {
            cx.error_spanned_by(
                &until.tokens,
                format!(
                    "`until = {}` must be later than the version the field appeared in ({})",
                    until.value,
                    field.since()
                ),
            );
        }
    }
    let versioned =
        attrs.since.as_ref().is_some_and(|since| since.value > 1) || attrs.until.is_some();
    if versioned && attrs.default.is_none() {
        cx.error_spanned_by(
            field.original,
            format!("field `{name}` is not in every version, so it needs a value for the versions without it: add `default` or `default = \"path::to::fn\"`"),
        );
    }
    if let Some(bulk) = &attrs.bulk {
        if field.bulk_element.is_none() {
            cx.error_spanned_by(
                &bulk.tokens,
                "`bulk` applies to fields written `Vec<T>` where T is a fixed-width integer or float (`u8`..`u64`, `i8`..`i64`, `f32`, `f64`)",
            );
        }
    }
}
