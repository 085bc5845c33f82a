//! The code `#[derive(Migratable)]` generates names only absolute paths
//! (`::cosmic::__private::...`, `::core::...`), so it compiles next to user items that shadow
//! the prelude (`Result`, `Ok`, `Option`, `Vec`, `Box`, `Default`, ...) and the crates it uses
//! (`core`, `std`, `serde`, `cosmic`), and under strict lints without a warning.

/// User items named like the prelude, std's crates and the derive's own dependencies. The
/// types in here spell std types by their full paths, as a user of such a module must.
mod shadowed {
    #![allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]

    // Shadows of the prelude, in both namespaces where the prelude item has both.
    pub struct Result;
    pub struct Ok;
    pub struct Err;
    pub struct Option;
    pub struct Some;
    pub struct None;
    pub struct Vec;
    pub struct Box;
    pub struct String;
    pub struct Cow;
    pub struct PhantomData;
    pub trait Default {}
    pub trait Into {}
    pub trait From {}
    pub trait Serialize {}
    pub trait Deserialize {}
    pub trait Iterator {}
    pub fn drop() {}
    pub fn panic() {}
    pub fn unreachable() {}
    pub fn format() {}

    // Shadows of the crates the generated code uses.
    pub mod core {}
    pub mod std {}
    pub mod serde {}
    pub mod cosmic {}
    pub mod inventory {}

    pub fn default_label() -> ::std::string::String {
        ::std::string::String::from("fresh")
    }

    /// Named like the std type it stands next to, and migratable itself.
    #[derive(::cosmic::Migratable, Debug, PartialEq, Clone)]
    pub struct Record {
        pub id: u64,
        pub tags: ::std::vec::Vec<::std::string::String>,
    }

    #[derive(::cosmic::Migratable, Debug, PartialEq)]
    #[migratable(version = 3, name = "hygiene.Shadowed")]
    pub struct Shadowed<T, const N: usize> {
        pub value: T,
        pub maybe: ::core::option::Option<::std::boxed::Box<T>>,
        pub outcome: ::core::result::Result<u32, ::std::string::String>,
        pub records: ::std::vec::Vec<Record>,
        pub window: [u16; N],
        pub samples: ::std::vec::Vec<f64>,
        #[migratable(bulk)]
        pub counts: ::std::vec::Vec<u32>,
        #[migratable(since = 2, default)]
        pub added: u8,
        #[migratable(since = 2, default = "default_label")]
        pub label: ::std::string::String,
        #[migratable(until = 3, default)]
        pub removed: ::core::option::Option<u8>,
        #[migratable(skip)]
        pub cache: ::std::vec::Vec<u8>,
    }

    #[derive(::cosmic::Migratable, Debug, PartialEq)]
    pub enum Choice<T> {
        Unit,
        Newtype(T),
        Tuple(T, ::std::vec::Vec<f32>),
        Struct {
            first: T,
            rest: ::std::vec::Vec<T>,
            #[migratable(skip)]
            scratch: ::std::vec::Vec<u8>,
        },
    }

    #[derive(::cosmic::Migratable, Debug, PartialEq)]
    pub struct Unit;

    #[derive(::cosmic::Migratable, Debug, PartialEq)]
    pub struct Pair(pub ::std::string::String, pub Choice<Record>);
}

/// Nothing from the prelude is in scope here: generated code that named `Option` or `Ok`
/// without a path would not compile.
#[no_implicit_prelude]
mod no_prelude {
    #[derive(::cosmic::Migratable, ::core::fmt::Debug, ::core::cmp::PartialEq)]
    #[migratable(version = 2)]
    pub struct Bare<T> {
        pub value: T,
        pub samples: ::std::vec::Vec<f64>,
        pub window: [u8; 2],
        #[migratable(since = 2, default)]
        pub added: ::std::string::String,
        #[migratable(skip)]
        pub cache: ::std::vec::Vec<u8>,
    }

    #[derive(::cosmic::Migratable, ::core::fmt::Debug, ::core::cmp::PartialEq)]
    pub enum BareChoice {
        Unit,
        Newtype(::std::string::String),
        Struct { value: u64 },
    }
}

/// Derives under lints that flag relative paths, unused values and undocumented items.
#[deny(
    warnings,
    unused_qualifications,
    unused_results,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    unsafe_code,
    trivial_casts,
    trivial_numeric_casts,
    unused_lifetimes,
    elided_lifetimes_in_paths,
    let_underscore_drop,
    clippy::all,
    clippy::pedantic
)]
pub mod linted {
    use cosmic::Migratable;

    /// A documented state type.
    #[derive(Migratable, Debug, PartialEq)]
    #[migratable(version = 2)]
    pub struct State<T> {
        /// A generic field.
        pub value: T,
        /// A bulk field.
        pub samples: Vec<f64>,
        /// A field of version 2.
        #[migratable(since = 2, default)]
        pub label: String,
        /// Rebuilt after a restore.
        #[migratable(skip)]
        pub cache: Vec<u8>,
        /// An array.
        pub window: [u8; 4],
    }

    /// A documented enum.
    #[derive(Migratable, Debug, PartialEq)]
    pub enum Step {
        /// A unit variant.
        Idle,
        /// A newtype variant.
        Wait(u64),
        /// A struct variant.
        Run {
            /// Its rate.
            rate: f32,
        },
    }
}

use shadowed::{Choice, Pair, Record, Shadowed, Unit};

fn round_trip<T: cosmic::Migratable + std::fmt::Debug + PartialEq>(value: &T) -> T {
    let bytes = cosmic::image::capture(value).expect("capture");
    cosmic::image::restore(&bytes).expect("restore")
}

fn record(id: u64) -> Record {
    Record {
        id,
        tags: vec![format!("tag{id}")],
    }
}

#[test]
fn generic_struct_derived_next_to_shadowing_items_round_trips() {
    let value = Shadowed {
        value: -7i64,
        maybe: Some(Box::new(11)),
        outcome: Err("no".to_owned()),
        records: vec![record(1), record(2)],
        window: [1, 2, 3],
        samples: vec![0.5, -1.25],
        counts: vec![4, 5, 6],
        added: 9,
        label: "kept".to_owned(),
        removed: None,
        cache: vec![1, 2, 3],
    };
    let back = round_trip(&value);
    // `skip` fields come back from `Default`; everything else as written.
    assert_eq!(back.cache, Vec::<u8>::new());
    assert_eq!(
        back,
        Shadowed {
            cache: Vec::new(),
            ..value
        }
    );
}

#[test]
fn generic_enum_derived_next_to_shadowing_items_round_trips() {
    for value in [
        Choice::Unit,
        Choice::Newtype(record(3)),
        Choice::Tuple(record(4), vec![1.5]),
        Choice::Struct {
            first: record(5),
            rest: vec![record(6)],
            scratch: Vec::new(),
        },
    ] {
        assert_eq!(round_trip(&value), value);
    }
    let pair = Pair("left".to_owned(), Choice::Newtype(record(7)));
    assert_eq!(round_trip(&pair), pair);
    assert_eq!(round_trip(&Unit), Unit);
}

#[test]
fn types_derived_without_the_prelude_round_trip() {
    let bare = no_prelude::Bare {
        value: 5u16,
        samples: vec![1.0],
        window: [1, 2],
        added: "a".to_owned(),
        cache: Vec::new(),
    };
    assert_eq!(round_trip(&bare), bare);
    for choice in [
        no_prelude::BareChoice::Unit,
        no_prelude::BareChoice::Newtype("n".to_owned()),
        no_prelude::BareChoice::Struct { value: 8 },
    ] {
        assert_eq!(round_trip(&choice), choice);
    }
}

#[test]
fn types_derived_under_strict_lints_round_trip() {
    let state = linted::State {
        value: (1u8, 'x'),
        samples: vec![2.0],
        label: "l".to_owned(),
        cache: Vec::new(),
        window: [9, 8, 7, 6],
    };
    assert_eq!(round_trip(&state), state);
    for step in [
        linted::Step::Idle,
        linted::Step::Wait(3),
        linted::Step::Run { rate: 0.25 },
    ] {
        assert_eq!(round_trip(&step), step);
    }
}
