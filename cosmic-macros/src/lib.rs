//! `#[derive(Migratable)]`, the derive of [cosmic](https://docs.rs/cosmic).
//!
//! Use it through the `cosmic` crate, which re-exports it next to the trait of the same name;
//! its attributes are documented there. The derive runs in three stages, one file each:
//! `ast.rs` builds a typed view of the input with its attributes (`attr.rs`), `valid.rs` checks
//! the rules that involve several attributes or types that cannot move (`immovable.rs`), and
//! `expand.rs` writes the code (`de.rs` its decoding side, which reaches the fields' own serde
//! impls through `fields.rs`).
//! Every error of an item is reported in one compile (`ctxt.rs`); on error, `fallback.rs`
//! writes stand-in impls (serde, `Shape`, `Migratable`, `Send`) so that the
//! user sees the real errors, not a cascade of follow-on ones.

mod ast;
mod attr;
mod ctxt;
mod de;
mod expand;
mod fallback;
mod fields;
mod immovable;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `Migratable` (and, unless `#[migratable(use_serde)]`, the positional serde impls
/// that cosmic's images use). See the `cosmic` crate for the attributes.
#[proc_macro_derive(Migratable, attributes(migratable))]
pub fn derive_migratable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
