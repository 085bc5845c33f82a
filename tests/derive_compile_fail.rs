//! Compile-fail tests of `#[derive(Migratable)]`: every misuse is refused with one error, at
//! the field or attribute at fault, that says why and what to do instead.
//!
//! One file per rule under `ui/fail/`, named after the rule, with the expected compiler output
//! next to it (`.stderr`); `ui/pass/` holds uses that must keep compiling. Regenerate the
//! expected output with `TRYBUILD=overwrite cargo test -p cosmic-tests --test
//! derive_compile_fail` and read every changed `.stderr` before committing it.

#[test]
fn derive_compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}
