//! Versions and fingerprints: successive layouts of one wire type, declared side by side in
//! modules `v1`, `v2`, `v3` under the same `name = "Sim"`, as a program sees them over time.
//! Old images load into newer code (`since`, `until`, `upgrade_from`, nested types at older
//! versions); images from newer code, or from a layout changed without a version bump, are
//! refused with an error naming what is wrong.

use std::collections::BTreeMap;

use cosmic::image::lookup_type;
use cosmic::image::{self, RestoreError};
use cosmic::state::Fingerprint;
use cosmic::Migratable;

fn default_budget() -> u32 {
    500
}

fn default_weight() -> f64 {
    1.5
}

/// A part nested in every `Sim`; it gained a field in its own version 2.
mod part_v1 {
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq, Clone)]
    #[migratable(name = "Part")]
    pub(crate) struct Part {
        pub(crate) id: u32,
    }
}

mod part_v2 {
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq, Clone)]
    #[migratable(name = "Part", version = 2)]
    pub(crate) struct Part {
        pub(crate) id: u32,
        #[migratable(since = 2, default = "super::default_weight")]
        pub(crate) weight: f64,
    }
}

mod v1 {
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq, Clone)]
    #[migratable(name = "Sim")]
    pub(crate) struct Sim {
        pub(crate) step: u64,
        pub(crate) rate: f32,
        pub(crate) parts: Vec<super::part_v1::Part>,
    }
}

mod v2 {
    use cosmic::Migratable;

    /// `rate` was removed in version 2 (kept to read version-1 images); `label` and `budget`
    /// were added.
    #[derive(Migratable, Debug, PartialEq, Clone)]
    #[migratable(name = "Sim", version = 2)]
    pub(crate) struct Sim {
        pub(crate) step: u64,
        #[migratable(until = 2, default)]
        pub(crate) rate: f32,
        pub(crate) parts: Vec<super::part_v2::Part>,
        #[migratable(since = 2, default)]
        pub(crate) label: String,
        #[migratable(since = 2, default = "super::default_budget")]
        pub(crate) budget: u32,
    }
}

mod v3 {
    use cosmic::Migratable;

    /// A layout change `since` cannot express (`budget` widened, `step` renamed), so version 3
    /// upgrades from the whole version-2 type.
    #[derive(Migratable, Debug, PartialEq, Clone)]
    #[migratable(name = "Sim", version = 3, upgrade_from = super::v2::Sim)]
    pub(crate) struct Sim {
        pub(crate) steps_done: u64,
        pub(crate) parts: Vec<super::part_v2::Part>,
        pub(crate) label: String,
        pub(crate) budget: u64,
        pub(crate) legacy_rate: Option<f32>,
    }

    impl From<super::v2::Sim> for Sim {
        fn from(old: super::v2::Sim) -> Sim {
            Sim {
                steps_done: old.step,
                parts: old.parts,
                label: old.label,
                budget: u64::from(old.budget) * 1000,
                legacy_rate: (old.rate != 0.0).then_some(old.rate),
            }
        }
    }
}

/// Version 2 of `Sim` as written by a build that still had `Part` at version 1: a newer root
/// holding an older nested type.
mod v2_with_old_part {
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq, Clone)]
    #[migratable(name = "Sim", version = 2)]
    pub(crate) struct Sim {
        pub(crate) step: u64,
        #[migratable(until = 2, default)]
        pub(crate) rate: f32,
        pub(crate) parts: Vec<super::part_v1::Part>,
        #[migratable(since = 2, default)]
        pub(crate) label: String,
        #[migratable(since = 2, default = "super::default_budget")]
        pub(crate) budget: u32,
    }
}

/// Version 1 of `Sim` with `step` changed to `u32` and no version bump: a mistake the
/// fingerprint must catch.
mod v1_retyped {
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq, Clone)]
    #[migratable(name = "Sim")]
    pub(crate) struct Sim {
        pub(crate) step: u32,
        pub(crate) rate: f32,
        pub(crate) parts: Vec<super::part_v1::Part>,
    }
}

fn v1_sim() -> v1::Sim {
    v1::Sim {
        step: 41,
        rate: 0.75,
        parts: vec![part_v1::Part { id: 1 }, part_v1::Part { id: 2 }],
    }
}

fn v2_sim() -> v2::Sim {
    v2::Sim {
        step: 9,
        rate: 123.0,
        parts: vec![part_v2::Part { id: 5, weight: 2.5 }],
        label: "second".into(),
        budget: 7,
    }
}

// ---- old images into newer code -------------------------------------------------------------

#[test]
fn v1_image_loads_into_v2_with_defaults_for_added_fields() {
    let bytes = image::capture(&v1_sim()).unwrap();
    let header = image::inspect(&bytes).unwrap();
    assert_eq!((header.type_name.as_str(), header.type_version), ("Sim", 1));
    let sim: v2::Sim = image::restore(&bytes).unwrap();
    assert_eq!(
        sim,
        v2::Sim {
            step: 41,
            rate: 0.75,
            parts: vec![
                part_v2::Part { id: 1, weight: 1.5 },
                part_v2::Part { id: 2, weight: 1.5 },
            ],
            label: String::new(),
            budget: 500,
        }
    );
}

#[test]
fn removed_field_is_read_from_old_images_and_defaults_in_new_ones() {
    // From a version-1 image, `rate` (until = 2) is read.
    let from_v1: v2::Sim = image::restore(&image::capture(&v1_sim()).unwrap()).unwrap();
    assert_eq!(from_v1.rate, 0.75);
    // A version-2 image does not carry it: the value in memory is not written, and reads back
    // as its default.
    let bytes = image::capture(&v2_sim()).unwrap();
    let from_v2: v2::Sim = image::restore(&bytes).unwrap();
    assert_eq!(from_v2.rate, 0.0);
    assert_eq!(
        from_v2,
        v2::Sim {
            rate: 0.0,
            ..v2_sim()
        }
    );
    assert_eq!(
        bytes,
        image::capture(&v2::Sim {
            rate: 0.0,
            ..v2_sim()
        })
        .unwrap(),
        "a removed field must not be encoded"
    );
}

#[test]
fn upgrade_from_converts_a_v2_image_into_v3() {
    let sim: v3::Sim = image::restore(&image::capture(&v2_sim()).unwrap()).unwrap();
    assert_eq!(
        sim,
        v3::Sim {
            steps_done: 9,
            parts: vec![part_v2::Part { id: 5, weight: 2.5 }],
            label: "second".into(),
            budget: 7000,
            legacy_rate: None,
        }
    );
}

#[test]
fn upgrades_chain_so_a_v1_image_loads_into_v3() {
    // v1 -> v2 through `since`/`until` defaults, then v2 -> v3 through `From`.
    let sim: v3::Sim = image::restore(&image::capture(&v1_sim()).unwrap()).unwrap();
    assert_eq!(
        sim,
        v3::Sim {
            steps_done: 41,
            parts: vec![
                part_v2::Part { id: 1, weight: 1.5 },
                part_v2::Part { id: 2, weight: 1.5 },
            ],
            label: String::new(),
            budget: 500_000,
            legacy_rate: Some(0.75),
        }
    );
}

#[test]
fn v3_round_trips_at_its_own_version() {
    let sim = v3::Sim {
        steps_done: 1,
        parts: vec![],
        label: "third".into(),
        budget: u64::MAX,
        legacy_rate: Some(-1.0),
    };
    let bytes = image::capture(&sim).unwrap();
    assert_eq!(image::inspect(&bytes).unwrap().type_version, 3);
    assert_eq!(image::restore::<v3::Sim>(&bytes).unwrap(), sim);
}

#[test]
fn version_table_records_each_named_type_at_its_version() {
    let versions = |bytes: &[u8]| {
        let table = image::inspect(bytes).unwrap().versions;
        table
            .iter()
            .map(|(name, version)| (name.clone(), *version))
            .collect::<Vec<_>>()
    };
    let sim_v2_old_part = v2_with_old_part::Sim {
        step: 3,
        rate: 0.0,
        parts: vec![part_v1::Part { id: 8 }],
        label: "mixed".into(),
        budget: 1,
    };
    assert_eq!(
        versions(&image::capture(&v1_sim()).unwrap()),
        [("Part".to_owned(), 1), ("Sim".to_owned(), 1)]
    );
    assert_eq!(
        versions(&image::capture(&v2_sim()).unwrap()),
        [("Part".to_owned(), 2), ("Sim".to_owned(), 2)]
    );
    assert_eq!(
        versions(&image::capture(&sim_v2_old_part).unwrap()),
        [("Part".to_owned(), 1), ("Sim".to_owned(), 2)]
    );
}

#[test]
fn older_nested_type_inside_a_current_root_gets_its_defaults() {
    let written = v2_with_old_part::Sim {
        step: 3,
        rate: 0.0,
        parts: vec![part_v1::Part { id: 8 }],
        label: "mixed".into(),
        budget: 1,
    };
    let bytes = image::capture(&written).unwrap();
    let sim: v2::Sim = image::restore(&bytes).unwrap();
    assert_eq!(sim.parts, [part_v2::Part { id: 8, weight: 1.5 }]);
    assert_eq!((sim.step, sim.label.as_str(), sim.budget), (3, "mixed", 1));
    // And through the upgrade to v3.
    let sim: v3::Sim = image::restore(&bytes).unwrap();
    assert_eq!(sim.parts[0].weight, 1.5);
    assert_eq!(sim.budget, 1000);
}

#[test]
fn restore_any_decodes_old_images_as_the_newest_registered_version() {
    let registration = lookup_type("Sim").unwrap();
    assert_eq!(registration.version, 3);
    assert_eq!(
        (registration.fingerprint)(),
        Fingerprint::current::<v3::Sim>().0
    );
    let restored = image::restore_any(&image::capture(&v1_sim()).unwrap()).unwrap();
    assert_eq!(restored.header.type_version, 1);
    let sim = restored
        .state
        .downcast::<v3::Sim>()
        .expect("the newest Sim");
    assert_eq!(sim.steps_done, 41);
    assert_eq!(sim.legacy_rate, Some(0.75));
}

// ---- newer images into older code ------------------------------------------------------------

#[test]
fn image_from_a_newer_version_is_refused_naming_both_versions() {
    let bytes = image::capture(&v2_sim()).unwrap();
    let err = image::restore::<v1::Sim>(&bytes).unwrap_err();
    assert!(
        matches!(&err, RestoreError::VersionTooNew { type_name, .. } if type_name == "Sim"),
        "got {err:?}"
    );
    cosmic_tests::chain::assert_no_repeats(&err);
    let text = cosmic_tests::chain::text(&err);
    assert!(text.contains("`Sim`"), "{text}");
    assert!(text.contains("too new"), "{text}");
    assert!(text.contains("version 2"), "{text}");
    assert!(text.contains("up to 1"), "{text}");

    let v3_bytes = image::capture(&v3::Sim {
        steps_done: 0,
        parts: vec![],
        label: String::new(),
        budget: 0,
        legacy_rate: None,
    })
    .unwrap();
    let error = image::restore::<v2::Sim>(&v3_bytes).unwrap_err();
    cosmic_tests::chain::assert_no_repeats(&error);
    let text = cosmic_tests::chain::text(&error);
    assert!(
        text.contains("version 3") && text.contains("up to 2"),
        "{text}"
    );
}

#[test]
fn nested_type_from_a_newer_version_is_refused_naming_it() {
    // The root is at a version this reader knows; the nested `Part` is not.
    let bytes = image::capture(&v2_sim()).unwrap();
    let err = image::restore::<v2_with_old_part::Sim>(&bytes).unwrap_err();
    let RestoreError::VersionTooNew { type_name, source } = &err else {
        panic!("expected VersionTooNew, got {err:?}");
    };
    assert_eq!(type_name, "Sim");
    let text = source.to_string();
    assert!(text.contains("`Part`"), "{text}");
    assert!(
        text.contains("version 2") && text.contains("up to 1"),
        "{text}"
    );
    // The cause is in the chain once, not repeated by the outer message.
    cosmic_tests::chain::assert_no_repeats(&err);
    assert!(cosmic_tests::chain::text(&err).ends_with(&text), "{err}");
}

#[test]
fn retyped_field_without_a_version_bump_is_a_fingerprint_mismatch() {
    let bytes = image::capture(&v1_sim()).unwrap();
    let err = image::restore::<v1_retyped::Sim>(&bytes).unwrap_err();
    let RestoreError::FingerprintMismatch {
        type_name,
        version,
        found,
        expected,
        this_build,
        known,
    } = &err
    else {
        panic!("expected FingerprintMismatch, got {err:?}");
    };
    assert_eq!((type_name.as_str(), *version), ("Sim", 1));
    assert_eq!(*found, Fingerprint::current::<v1::Sim>().0);
    assert_eq!(*expected, Fingerprint::current::<v1_retyped::Sim>().0);
    let text = err.to_string();
    for needle in [
        "fingerprint mismatch",
        "`Sim`",
        "version 1",
        &found.to_string(),
        &expected.to_string(),
        // This build's fields, by name and shape: `step` is a u32 here.
        "step:u32",
        "rate:f32",
        // What to do.
        "raise the type's `#[migratable(version = N)]`",
        "since = N, default",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert!(
        this_build.contains("Sim v1: struct{step:u32"),
        "{this_build}"
    );
    assert_eq!(known, &[(1, *expected)]);
    cosmic_tests::chain::assert_no_repeats(&err);
}

// ---- the fingerprint --------------------------------------------------------------------------

/// A fixed type whose fingerprint is pinned below: if the canonical shape form or the hash
/// changes, every image ever written stops loading, so that must be a deliberate decision.
#[derive(Migratable)]
#[migratable(name = "Pinned", version = 2)]
#[allow(dead_code)]
struct Pinned {
    id: u64,
    name: String,
    values: Vec<f64>,
    table: BTreeMap<String, Option<(u8, i64)>>,
    kind: PinnedKind,
    #[migratable(since = 2, default)]
    extra: [u16; 3],
}

#[derive(Migratable)]
#[allow(dead_code)]
enum PinnedKind {
    Idle,
    Busy(u32),
    Moving { from: char, to: char },
}

#[test]
fn fingerprint_of_a_fixed_type_is_stable() {
    let (fingerprint, versions) = Fingerprint::current::<Pinned>();
    assert_eq!(
        fingerprint,
        Fingerprint(PINNED_FINGERPRINT),
        "the fingerprint of `Pinned` changed: images written before this change no longer load"
    );
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        [("Pinned".to_owned(), 2), ("PinnedKind".to_owned(), 1)]
    );
    assert_eq!(
        fingerprint.to_string(),
        format!("{PINNED_FINGERPRINT:016x}")
    );
}

const PINNED_FINGERPRINT: u64 = 0xd345_1ffa_0f31_a8f6;

#[test]
fn fingerprint_is_written_at_the_image_versions() {
    // What a v1 writer puts in its header is what a v2 reader computes for a v1 table.
    let v1_bytes = image::capture(&v1_sim()).unwrap();
    let header = image::inspect(&v1_bytes).unwrap();
    assert_eq!(header.fingerprint, Fingerprint::current::<v1::Sim>().0);
    assert_eq!(
        Fingerprint::written::<v2::Sim>(&header.versions).unwrap(),
        header.fingerprint
    );
    assert_eq!(
        Fingerprint::written::<v3::Sim>(&header.versions).unwrap(),
        header.fingerprint
    );
    assert_ne!(
        Fingerprint::current::<v1::Sim>().0,
        Fingerprint::current::<v2::Sim>().0
    );
}

/// Variants of one wire type `Fp`, each differing from `base` in one way.
mod fp {
    #![allow(dead_code)]
    use std::collections::{BTreeMap, HashMap, VecDeque};

    use cosmic::Migratable;

    pub(crate) mod base {
        use super::*;
        #[derive(Migratable)]
        #[migratable(name = "Fp")]
        pub(crate) struct Fp {
            a: u32,
            b: String,
            c: Vec<u16>,
            d: BTreeMap<u8, u8>,
            e: super::Inner,
        }
    }
    pub(crate) mod same_encoding {
        use super::*;
        /// `VecDeque` for `Vec` and `HashMap` for `BTreeMap` encode the same.
        #[derive(Migratable)]
        #[migratable(name = "Fp")]
        pub(crate) struct Fp {
            a: u32,
            b: String,
            c: VecDeque<u16>,
            d: HashMap<u8, u8>,
            e: super::Inner,
        }
    }
    pub(crate) mod renamed {
        use super::*;
        #[derive(Migratable)]
        #[migratable(name = "Fp")]
        pub(crate) struct Fp {
            a: u32,
            b_renamed: String,
            c: Vec<u16>,
            d: BTreeMap<u8, u8>,
            e: super::Inner,
        }
    }
    pub(crate) mod reordered {
        use super::*;
        #[derive(Migratable)]
        #[migratable(name = "Fp")]
        pub(crate) struct Fp {
            b: String,
            a: u32,
            c: Vec<u16>,
            d: BTreeMap<u8, u8>,
            e: super::Inner,
        }
    }
    pub(crate) mod retyped {
        use super::*;
        #[derive(Migratable)]
        #[migratable(name = "Fp")]
        pub(crate) struct Fp {
            a: u64,
            b: String,
            c: Vec<u16>,
            d: BTreeMap<u8, u8>,
            e: super::Inner,
        }
    }
    pub(crate) mod bulk {
        use super::*;
        /// The same element type, encoded in bulk.
        #[derive(Migratable)]
        #[migratable(name = "Fp")]
        pub(crate) struct Fp {
            a: u32,
            b: String,
            #[migratable(bulk)]
            c: Vec<u16>,
            d: BTreeMap<u8, u8>,
            e: super::Inner,
        }
    }
    pub(crate) mod bumped {
        use super::*;
        /// Same fields, new version number.
        #[derive(Migratable)]
        #[migratable(name = "Fp", version = 2)]
        pub(crate) struct Fp {
            a: u32,
            b: String,
            c: Vec<u16>,
            d: BTreeMap<u8, u8>,
            e: super::Inner,
        }
    }
    pub(crate) mod nested_changed {
        use super::*;
        /// Same fields; only the nested type differs.
        #[derive(Migratable)]
        #[migratable(name = "Fp")]
        pub(crate) struct Fp {
            a: u32,
            b: String,
            c: Vec<u16>,
            d: BTreeMap<u8, u8>,
            e: super::InnerWithVariant,
        }
    }

    #[derive(Migratable)]
    #[migratable(name = "Inner")]
    pub(crate) enum Inner {
        A,
        B(u8),
    }

    #[derive(Migratable)]
    #[migratable(name = "Inner")]
    pub(crate) enum InnerWithVariant {
        A,
        B(u8),
        C,
    }

    #[derive(Migratable)]
    #[migratable(name = "Inner")]
    pub(crate) enum InnerReordered {
        B(u8),
        A,
    }

    /// A `Vec<f64>` field under the type's own serde impls: encoded as a sequence of `f64`s,
    /// not as the derive's bulk byte string.
    #[derive(Migratable, serde::Serialize, serde::Deserialize)]
    #[migratable(name = "Floats", use_serde)]
    pub(crate) struct SerdeFloats {
        values: Vec<f64>,
    }

    #[derive(Migratable)]
    #[migratable(name = "Floats")]
    pub(crate) struct DerivedFloats {
        values: Vec<f64>,
    }

    #[derive(Migratable, serde::Serialize, serde::Deserialize, Debug)]
    #[migratable(name = "FloatsAndBytes", use_serde)]
    pub(crate) struct SerdeFloatsAndBytes {
        pub(crate) values: Vec<f64>,
        pub(crate) tail: Vec<u8>,
    }

    #[derive(Migratable, Debug)]
    #[migratable(name = "FloatsAndBytes")]
    pub(crate) struct DerivedFloatsAndBytes {
        pub(crate) values: Vec<f64>,
        pub(crate) tail: Vec<u8>,
    }
}

fn fingerprint_of<T: Migratable>() -> Fingerprint {
    Fingerprint::current::<T>().0
}

#[test]
fn fingerprint_changes_with_every_change_of_the_encoding() {
    let base = fingerprint_of::<fp::base::Fp>();
    for (what, other) in [
        ("renamed field", fingerprint_of::<fp::renamed::Fp>()),
        ("reordered fields", fingerprint_of::<fp::reordered::Fp>()),
        ("retyped field", fingerprint_of::<fp::retyped::Fp>()),
        ("bulk encoding", fingerprint_of::<fp::bulk::Fp>()),
        ("version bump", fingerprint_of::<fp::bumped::Fp>()),
        (
            "variant added to a nested type",
            fingerprint_of::<fp::nested_changed::Fp>(),
        ),
    ] {
        assert_ne!(base, other, "{what} left the fingerprint unchanged");
    }
    assert_ne!(
        fingerprint_of::<fp::Inner>(),
        fingerprint_of::<fp::InnerWithVariant>(),
        "variant added"
    );
    assert_ne!(
        fingerprint_of::<fp::Inner>(),
        fingerprint_of::<fp::InnerReordered>(),
        "variants reordered"
    );
}

#[test]
fn fingerprint_ignores_differences_that_do_not_change_the_encoding() {
    assert_eq!(
        fingerprint_of::<fp::base::Fp>(),
        fingerprint_of::<fp::same_encoding::Fp>()
    );
}

#[test]
fn fingerprint_tells_serde_encoded_floats_from_bulk_encoded_ones() {
    // The derive encodes a `Vec<f64>` field as one byte string; a `use_serde` type's own serde
    // impls encode it as a sequence of floats. The bytes differ, so the fingerprints must too,
    // or an image of one would be decoded as the other.
    assert_ne!(
        fingerprint_of::<fp::SerdeFloats>(),
        fingerprint_of::<fp::DerivedFloats>()
    );
}

#[test]
fn serde_encoded_floats_are_not_silently_misread_as_bulk_ones() {
    // Eight floats as serde writes them: count 8, then 64 bytes. A bulk reader sees a byte
    // string of 8 bytes (one float), then takes the next float's low byte (56) as the length
    // of `tail`, which swallows the remaining 55 bytes and serde's empty tail. Every check
    // passes unless the fingerprints differ.
    let mut values = vec![1.0f64; 8];
    values[1] = f64::from_bits(0x3ff0_0000_0000_0038);
    let written = fp::SerdeFloatsAndBytes {
        values,
        tail: vec![],
    };
    let bytes = image::capture(&written).unwrap();
    let result = image::restore::<fp::DerivedFloatsAndBytes>(&bytes);
    assert!(
        result.is_err(),
        "an image of a `use_serde` type was decoded as a different encoding: {result:?}"
    );
}

mod settings_v1 {
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq)]
    #[migratable(name = "Settings")]
    pub(crate) struct Settings {
        pub(crate) level: u32,
    }
}

mod settings_v2 {
    use cosmic::Migratable;

    /// Version 2 keeps its own serde impls, so it reads only version 2.
    #[derive(Migratable, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    #[migratable(name = "Settings", version = 2, use_serde)]
    pub(crate) struct Settings {
        pub(crate) level: u32,
    }
}

/// An error's message followed by those of all its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}

#[test]
fn use_serde_type_refuses_an_older_version_naming_both() {
    // derive.md: "Such a type reads only its current version". Same fields at another version
    // may mean something else (units, invariants), which is why the version was bumped.
    let bytes = image::capture(&settings_v1::Settings { level: 3 }).unwrap();
    let err = match image::restore::<settings_v2::Settings>(&bytes) {
        Ok(state) => {
            panic!("a version-1 image loaded into a type that reads only version 2: {state:?}")
        }
        Err(err) => err,
    };
    let text = error_chain(&err);
    assert!(text.contains("`Settings`"), "{text}");
    assert!(
        text.contains("version 2") && text.contains('1'),
        "the error does not say which versions: {text}"
    );
    // Its own version still loads.
    let bytes = image::capture(&settings_v2::Settings { level: 4 }).unwrap();
    assert_eq!(
        image::restore::<settings_v2::Settings>(&bytes).unwrap(),
        settings_v2::Settings { level: 4 }
    );
}

fn default_boost() -> u8 {
    3
}

mod event_v1 {
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq)]
    #[migratable(name = "Ev")]
    pub(crate) enum Ev {
        Start,
        Run { rate: f32, legacy: u16 },
        Stop(u8),
    }
}

mod event_v2 {
    use cosmic::Migratable;

    /// Fields added to and removed from variants; `Stop` was a newtype variant in version 1.
    #[derive(Migratable, Debug, PartialEq)]
    #[migratable(name = "Ev", version = 2)]
    pub(crate) enum Ev {
        Start,
        Run {
            rate: f32,
            #[migratable(until = 2, default)]
            legacy: u16,
            #[migratable(since = 2, default = "super::default_boost")]
            boost: u8,
        },
        Stop(u8, #[migratable(since = 2, default)] String),
    }
}

#[test]
fn version_attributes_apply_inside_enum_variants() {
    let old = [
        event_v1::Ev::Start,
        event_v1::Ev::Run {
            rate: 2.5,
            legacy: 9,
        },
        event_v1::Ev::Stop(4),
    ];
    let expected = [
        event_v2::Ev::Start,
        event_v2::Ev::Run {
            rate: 2.5,
            legacy: 9,
            boost: 3,
        },
        event_v2::Ev::Stop(4, String::new()),
    ];
    for (old, expected) in old.iter().zip(expected) {
        let bytes = image::capture(old).unwrap();
        assert_eq!(image::restore::<event_v2::Ev>(&bytes).unwrap(), expected);
    }
    // Nested in a std root too: the version table carries `Ev` at version 1.
    let bytes = image::capture(&vec![event_v1::Ev::Stop(1), event_v1::Ev::Start]).unwrap();
    assert_eq!(
        image::restore::<Vec<event_v2::Ev>>(&bytes).unwrap(),
        [event_v2::Ev::Stop(1, String::new()), event_v2::Ev::Start]
    );
    // Current images do not carry the removed field.
    let current = event_v2::Ev::Run {
        rate: 1.0,
        legacy: 77,
        boost: 1,
    };
    let back: event_v2::Ev = image::restore(&image::capture(&current).unwrap()).unwrap();
    assert_eq!(
        back,
        event_v2::Ev::Run {
            rate: 1.0,
            legacy: 0,
            boost: 1,
        }
    );
}
