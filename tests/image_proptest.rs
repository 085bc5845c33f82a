//! Property tests of images: generated states round-trip exactly (floats by their bits), and no
//! byte string, whether random, a damaged image or a random body behind a valid header, makes
//! the decoder panic or accept bytes that differ from what was written.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use cosmic::image::{self, RestoreError, FORMAT_VERSION, MAGIC};
use cosmic::Migratable;
use cosmic_tests::{body, with_body};
use proptest::collection::{btree_map, btree_set, hash_map, vec, vec_deque};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

#[derive(Migratable, Debug, Clone)]
struct Record {
    id: u64,
    name: String,
    tags: BTreeMap<String, i32>,
    counts: HashMap<u16, u64>,
    kind: Kind,
    parent: Option<Box<Leaf>>,
    samples: Vec<f64>,
    weights: Vec<f32>,
    raw: Vec<u8>,
    #[migratable(bulk)]
    ids: Vec<u32>,
    leaves: Vec<Leaf>,
    letter: char,
    pair: (i64, Option<bool>),
    wide: i128,
    ratio: f64,
}

#[derive(Migratable, Debug, Clone, PartialEq)]
enum Kind {
    Idle,
    Count(u32),
    Span(i64, i64),
    Named { label: String, score: Option<u8> },
}

#[derive(Migratable, Debug, Clone, PartialEq)]
struct Leaf {
    key: String,
    values: VecDeque<i16>,
    flags: BTreeSet<u8>,
    #[migratable(bulk)]
    offsets: Vec<i64>,
}

fn f64_bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|value| value.to_bits()).collect()
}

fn f32_bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|value| value.to_bits()).collect()
}

/// Equality with floats compared by their bits, so NaNs (and their payloads) count.
impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.tags == other.tags
            && self.counts == other.counts
            && self.kind == other.kind
            && self.parent == other.parent
            && f64_bits(&self.samples) == f64_bits(&other.samples)
            && f32_bits(&self.weights) == f32_bits(&other.weights)
            && self.raw == other.raw
            && self.ids == other.ids
            && self.leaves == other.leaves
            && self.letter == other.letter
            && self.pair == other.pair
            && self.wide == other.wide
            && self.ratio.to_bits() == other.ratio.to_bits()
    }
}

// ---- strategies ---------------------------------------------------------------------------------

/// Any f64, NaNs with arbitrary payloads included.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>(), any::<u64>().prop_map(f64::from_bits)]
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![any::<f32>(), any::<u32>().prop_map(f32::from_bits)]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Idle),
        any::<u32>().prop_map(Kind::Count),
        (any::<i64>(), any::<i64>()).prop_map(|(a, b)| Kind::Span(a, b)),
        (".{0,12}", any::<Option<u8>>()).prop_map(|(label, score)| Kind::Named { label, score }),
    ]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    (
        "\\PC{0,8}",
        vec_deque(any::<i16>(), 0..6),
        btree_set(any::<u8>(), 0..6),
        vec(any::<i64>(), 0..6),
    )
        .prop_map(|(key, values, flags, offsets)| Leaf {
            key,
            values,
            flags,
            offsets,
        })
}

fn record() -> impl Strategy<Value = Record> {
    let head = (
        any::<u64>(),
        ".{0,24}",
        btree_map("[a-z]{0,6}", any::<i32>(), 0..5),
        hash_map(any::<u16>(), any::<u64>(), 0..5),
        kind(),
        proptest::option::of(leaf().prop_map(Box::new)),
    );
    let tail = (
        vec(any_f64(), 0..12),
        vec(any_f32(), 0..12),
        vec(any::<u8>(), 0..40),
        vec(any::<u32>(), 0..12),
        vec(leaf(), 0..4),
        any::<char>(),
        (any::<i64>(), any::<Option<bool>>()),
        any::<i128>(),
        any_f64(),
    );
    (head, tail).prop_map(
        |(
            (id, name, tags, counts, kind, parent),
            (samples, weights, raw, ids, leaves, letter, pair, wide, ratio),
        )| Record {
            id,
            name,
            tags,
            counts,
            kind,
            parent,
            samples,
            weights,
            raw,
            ids,
            leaves,
            letter,
            pair,
            wide,
            ratio,
        },
    )
}

/// One change to an image's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    Insert(Index, u8),
    Remove(Index),
    Overwrite(Index, u8),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Remove),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite(at, byte)),
        vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::FlipBit(at, bit) => {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Mutation::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
        Mutation::Remove(at) => {
            bytes.remove(at.index(bytes.len()));
        }
        Mutation::Overwrite(at, byte) => {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
    }
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures are reported with their minimal case; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every decoder entry point on `bytes`; a panic fails the property (proptest catches it).
fn decode_all(bytes: &[u8]) -> Result<Record, RestoreError> {
    let _ = image::inspect(bytes);
    let _ = image::restore_any(bytes);
    image::restore::<Record>(bytes)
}

// ---- properties -----------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn records_round_trip(record in record()) {
        let bytes = image::capture(&record).unwrap();
        let back: Record = image::restore(&bytes).unwrap();
        prop_assert_eq!(&back, &record);
        let any = image::restore_any(&bytes).unwrap();
        let any = any.state.downcast::<Record>().unwrap();
        prop_assert_eq!(&*any, &record);
    }

    #[test]
    fn nested_types_round_trip_as_roots(kind in kind(), leaves in vec(leaf(), 0..4)) {
        prop_assert_eq!(image::restore::<Kind>(&image::capture(&kind).unwrap()).unwrap(), kind);
        prop_assert_eq!(
            image::restore::<Vec<Leaf>>(&image::capture(&leaves).unwrap()).unwrap(),
            leaves
        );
    }

    #[test]
    fn damaged_images_are_refused(
        record in record(),
        mutations in vec(mutation(), 1..4),
    ) {
        let original = image::capture(&record).unwrap();
        let mut damaged = original.clone();
        for mutation in &mutations {
            apply(&mut damaged, mutation);
        }
        let result = decode_all(&damaged);
        if damaged == original {
            prop_assert_eq!(result.unwrap(), record);
        } else {
            prop_assert!(
                result.is_err(),
                "a damaged image decoded: {:?}",
                mutations
            );
        }
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        record in record(),
        body_bytes in vec(any::<u8>(), 0..160),
        keep in any::<Index>(),
    ) {
        // Past every checksum, straight into the body decoder: a prefix of the real body
        // followed by random bytes. Decoding may succeed; it must not panic, and what it
        // decodes must capture again.
        let image = image::capture(&record).unwrap();
        let real = body(&image);
        let mut crafted = real[..keep.index(real.len() + 1)].to_vec();
        crafted.extend_from_slice(&body_bytes);
        let crafted = with_body(&image, &crafted);
        if let Ok(state) = decode_all(&crafted) {
            let again = image::capture(&state).unwrap();
            prop_assert_eq!(image::restore::<Record>(&again).unwrap(), state);
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in vec(any::<u8>(), 0..300)) {
        prop_assert!(decode_all(&bytes).is_err());
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_are_refused(rest in vec(any::<u8>(), 0..300)) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&rest);
        prop_assert!(decode_all(&bytes).is_err());
    }
}
