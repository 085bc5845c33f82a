//! Round trips of derived types through images: every shape the derive supports, the field
//! attributes that change what is encoded (`skip`, `bulk`, `opaque`), wire names, `use_serde`,
//! plain std roots, and decoding by name through the registry (`restore_any`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;

use cosmic::image::{self, ImageWriter, RestoreError};
use cosmic::image::{lookup_type, registered_types};
use cosmic::state::Fingerprint;
use cosmic::Migratable;
use cosmic_tests::{body, crc32c, stored_body_crc, stored_header_crc, varint, CHECKSUM_LEN};

/// Captures `value`, checks the header names the type, restores it and compares.
fn round_trip<T: Migratable + Debug + PartialEq>(value: &T) -> T {
    let bytes = image::capture(value).expect("capture");
    let header = image::inspect(&bytes).expect("inspect");
    assert_eq!(header.type_name, T::type_name());
    assert_eq!(header.type_version, T::VERSION);
    assert_eq!(header.fingerprint, Fingerprint::current::<T>().0);
    let back: T = image::restore(&bytes).expect("restore");
    assert_eq!(&back, value);
    back
}

// ---- structs and enums ----------------------------------------------------------------------

#[derive(Migratable, Debug, PartialEq, Clone, Default)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Migratable, Debug, PartialEq)]
struct Meters(f64);

#[derive(Migratable, Debug, PartialEq)]
struct Rgb(u8, u8, u8);

#[derive(Migratable, Debug, PartialEq)]
struct Marker;

#[derive(Migratable, Debug, PartialEq)]
enum Figure {
    Empty,
    Circle(f64),
    Line(Point, Point, u8),
    Rect { origin: Point, w: u32, h: u32 },
}

#[test]
fn named_struct_round_trips() {
    round_trip(&Point { x: -3, y: i32::MAX });
}

#[test]
fn tuple_structs_round_trip() {
    round_trip(&Meters(12.5));
    round_trip(&Rgb(0, 128, 255));
}

#[test]
fn unit_struct_round_trips_with_an_empty_body() {
    let bytes = image::capture(&Marker).unwrap();
    assert_eq!(image::inspect(&bytes).unwrap().body_len, 0);
    round_trip(&Marker);
}

#[test]
fn enum_variants_of_every_style_round_trip() {
    round_trip(&Figure::Empty);
    round_trip(&Figure::Circle(-0.5));
    round_trip(&Figure::Line(
        Point { x: 1, y: 2 },
        Point { x: -1, y: -2 },
        9,
    ));
    round_trip(&Figure::Rect {
        origin: Point { x: 5, y: 6 },
        w: 7,
        h: u32::MAX,
    });
}

#[test]
fn enum_variant_is_encoded_as_its_declaration_index() {
    // postcard writes the variant index, nothing else: Rect is the fourth variant.
    let bytes = image::capture(&Figure::Rect {
        origin: Point { x: 0, y: 0 },
        w: 1,
        h: 2,
    })
    .unwrap();
    assert_eq!(body(&bytes), [3, 0, 0, 1, 2]);
}

// ---- generics ---------------------------------------------------------------------------------

#[derive(Migratable, Debug, PartialEq)]
struct Pair<T> {
    a: T,
    b: T,
}

// A field `[T; N]` with a generic `N` (and any array longer than 32) does not compile: serde
// implements its traits for arrays of length 0 to 32 only, and the derive hands array fields to
// serde as they are (reported as a library gap). So the const parameter sizes a `Vec` here.
#[derive(Migratable, Debug, PartialEq)]
struct Ring<const N: usize> {
    slots: Vec<u16>,
    fixed: [u16; 4],
    head: u8,
}

#[test]
fn generic_struct_round_trips_for_several_parameters() {
    round_trip(&Pair { a: 1u8, b: 2u8 });
    round_trip(&Pair {
        a: "left".to_owned(),
        b: String::new(),
    });
    round_trip(&Pair {
        a: Point { x: 1, y: 1 },
        b: Point { x: 2, y: 2 },
    });
    round_trip(&Pair {
        a: vec![Some(1u64)],
        b: vec![None],
    });
}

#[test]
fn generic_type_names_carry_their_parameters() {
    assert_eq!(Pair::<u32>::type_name(), "Pair<u32>");
    assert_eq!(Pair::<Point>::type_name(), "Pair<@Point>");
    assert_eq!(Ring::<4>::type_name(), "Ring<4>");
    // Different instantiations are different wire types.
    let bytes = image::capture(&Pair { a: 1u32, b: 2u32 }).unwrap();
    let err = image::restore::<Pair<u64>>(&bytes).unwrap_err();
    assert!(
        matches!(err, RestoreError::TypeMismatch { .. }),
        "got {err:?}"
    );
}

#[test]
fn const_generic_struct_round_trips() {
    round_trip(&Ring::<4> {
        slots: vec![1, 2, 3, 4],
        fixed: [5, 6, 7, 8],
        head: 2,
    });
    round_trip(&Ring::<0> {
        slots: vec![],
        fixed: [0; 4],
        head: 0,
    });
    let bytes = image::capture(&Ring::<4> {
        slots: vec![],
        fixed: [0; 4],
        head: 0,
    })
    .unwrap();
    let err = image::restore::<Ring<5>>(&bytes).unwrap_err();
    assert!(
        matches!(err, RestoreError::TypeMismatch { .. }),
        "got {err:?}"
    );
}

// ---- nesting and recursion ----------------------------------------------------------------

#[derive(Migratable, Debug, PartialEq)]
struct Scene {
    figures: Vec<Figure>,
    focus: Option<Box<Figure>>,
    pairs: BTreeMap<String, Pair<Point>>,
}

#[derive(Migratable, Debug, PartialEq)]
struct Node {
    value: u32,
    children: Vec<Node>,
}

#[derive(Migratable, Debug, PartialEq)]
enum Expr {
    Lit(i64),
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Call { name: String, args: Vec<Expr> },
}

#[test]
fn nested_migratable_types_round_trip() {
    let scene = Scene {
        figures: vec![Figure::Empty, Figure::Circle(1.0)],
        focus: Some(Box::new(Figure::Rect {
            origin: Point::default(),
            w: 1,
            h: 1,
        })),
        pairs: BTreeMap::from([(
            "p".to_owned(),
            Pair {
                a: Point { x: 1, y: 2 },
                b: Point { x: 3, y: 4 },
            },
        )]),
    };
    round_trip(&scene);
}

#[test]
fn nested_named_types_are_listed_in_the_version_table() {
    let bytes = image::capture(&Scene {
        figures: vec![],
        focus: None,
        pairs: BTreeMap::new(),
    })
    .unwrap();
    let versions = image::inspect(&bytes).unwrap().versions;
    let names: Vec<&str> = versions.keys().map(String::as_str).collect();
    assert_eq!(names, ["Figure", "Pair<@Point>", "Point", "Scene"]);
    assert!(versions.values().all(|&version| version == 1));
}

#[test]
fn recursive_struct_round_trips() {
    let tree = Node {
        value: 1,
        children: vec![
            Node {
                value: 2,
                children: vec![],
            },
            Node {
                value: 3,
                children: vec![Node {
                    value: 4,
                    children: vec![],
                }],
            },
        ],
    };
    round_trip(&tree);
    // A recursive type refers to itself by name: its schema is finite.
    let versions = image::inspect(&image::capture(&tree).unwrap())
        .unwrap()
        .versions;
    assert_eq!(versions.len(), 1);
}

#[test]
fn recursive_enum_round_trips() {
    let expr = Expr::Call {
        name: "f".to_owned(),
        args: vec![
            Expr::Add(
                Box::new(Expr::Lit(1)),
                Box::new(Expr::Neg(Box::new(Expr::Lit(-2)))),
            ),
            Expr::Lit(i64::MIN),
        ],
    };
    round_trip(&expr);
}

// ---- std types --------------------------------------------------------------------------------

#[derive(Migratable, Debug, PartialEq, Default)]
struct StdTypes {
    vec: Vec<String>,
    deque: VecDeque<i16>,
    btree: BTreeMap<String, Vec<u32>>,
    hash: HashMap<u64, String>,
    btree_set: BTreeSet<char>,
    hash_set: HashSet<i32>,
    option_some: Option<Box<Point>>,
    option_none: Option<u8>,
    boxed: Box<u64>,
    text: String,
    tuple: (u8, String, bool),
    array: [u16; 5],
    longest_array: [u8; 32],
    nested: Vec<Vec<Option<(i8, u8)>>>,
    wide_u: u128,
    wide_i: i128,
    letter: char,
    flag: bool,
    size: usize,
    offset: isize,
    small: (i8, i16, i32, i64, u16),
}

#[test]
fn std_collections_and_primitives_round_trip() {
    let value = StdTypes {
        vec: vec!["a".into(), String::new(), "ünïcødé ✓".into()],
        deque: VecDeque::from([-1, 0, i16::MAX]),
        btree: BTreeMap::from([("k".into(), vec![1, 2]), ("e".into(), vec![])]),
        hash: HashMap::from([(1, "one".into()), (u64::MAX, "max".into())]),
        btree_set: BTreeSet::from(['a', 'é', '🦀']),
        hash_set: HashSet::from([i32::MIN, 0, 7]),
        option_some: Some(Box::new(Point { x: 9, y: 8 })),
        option_none: None,
        boxed: Box::new(42),
        text: "text".into(),
        tuple: (255, "t".into(), true),
        array: [1, 2, 3, 4, u16::MAX],
        longest_array: [0xa5; 32],
        nested: vec![vec![], vec![None, Some((-128, 255))]],
        wide_u: u128::MAX,
        wide_i: i128::MIN,
        letter: '\u{10FFFF}',
        flag: true,
        size: usize::MAX,
        offset: isize::MIN,
        small: (i8::MIN, i16::MIN, i32::MIN, i64::MIN, u16::MAX),
    };
    round_trip(&value);
    round_trip(&StdTypes::default());
}

#[test]
fn usize_travels_as_a_64_bit_varint() {
    // The same bytes as a u64 of the same value: a 64-bit reader reads it whatever the writer's
    // pointer width (a narrower reader must refuse values over its usize; see
    // image_decode_errors.rs for the nearest test that can run here).
    let bytes = image::capture(&StdTypes {
        size: 300,
        ..StdTypes::default()
    })
    .unwrap();
    let size_bytes = varint(300);
    assert!(body(&bytes)
        .windows(size_bytes.len())
        .any(|window| window == size_bytes));
}

#[test]
fn plain_std_values_can_be_roots() {
    round_trip(&vec![1u32, 2, 3]);
    round_trip(&Vec::<u32>::new());
    round_trip(&7u64);
    round_trip(&"text".to_owned());
    round_trip(&Some(Box::new(-1i128)));
    round_trip(&(1u8, "x".to_owned()));
    round_trip(&(1u8, 2u16, 3u32));
    round_trip(&vec![Point { x: 1, y: 2 }]);
    round_trip(&'c');
    round_trip(&());
    let bytes = image::capture(&vec![1u32]).unwrap();
    let header = image::inspect(&bytes).unwrap();
    assert_eq!(header.type_name, "seq<u32>");
    assert_eq!(header.versions.get("seq<u32>"), Some(&1));
}

// ---- floats -------------------------------------------------------------------------------

/// Floats whose bits must survive exactly: NaNs with payloads and both signs, signed zeros,
/// infinities, subnormals and extremes.
const F64_BITS: [u64; 10] = [
    0x7ff8_0000_0000_0001, // quiet NaN with payload
    0xfff4_0000_dead_beef, // signalling NaN, negative, with payload
    0x8000_0000_0000_0000, // -0.0
    0x0000_0000_0000_0000,
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0x0000_0000_0000_0001, // smallest subnormal
    0x7fef_ffff_ffff_ffff, // MAX
    0x3ff0_0000_0000_0000, // 1.0
    0xc00c_cccc_cccc_cccd, // -3.6
];
const F32_BITS: [u32; 8] = [
    0x7fc0_0001, // quiet NaN with payload
    0xffa0_beef, // signalling NaN, negative
    0x8000_0000, // -0.0
    0x7f80_0000,
    0xff80_0000,
    0x0000_0001,
    0x7f7f_ffff,
    0x3f80_0000,
];

#[derive(Migratable, Debug)]
struct Floats {
    single: f32,
    double: f64,
    maybe: Option<f64>,
    pair: (f32, f64),
    array: [f64; 3],
    boxed: Box<f32>,
    listed: Vec<Option<f32>>,
    bulk64: Vec<f64>,
    bulk32: Vec<f32>,
}

fn f64s() -> Vec<f64> {
    F64_BITS.iter().map(|&bits| f64::from_bits(bits)).collect()
}

fn f32s() -> Vec<f32> {
    F32_BITS.iter().map(|&bits| f32::from_bits(bits)).collect()
}

#[test]
fn float_bits_survive_in_every_position() {
    for (i, (&b64, &b32)) in F64_BITS.iter().zip(F32_BITS.iter().cycle()).enumerate() {
        let value = Floats {
            single: f32::from_bits(b32),
            double: f64::from_bits(b64),
            maybe: Some(f64::from_bits(b64)),
            pair: (f32::from_bits(b32), f64::from_bits(b64)),
            array: [f64::from_bits(b64); 3],
            boxed: Box::new(f32::from_bits(b32)),
            listed: vec![Some(f32::from_bits(b32))],
            bulk64: f64s(),
            bulk32: f32s(),
        };
        let bytes = image::capture(&value).unwrap();
        let back: Floats = image::restore(&bytes).unwrap();
        assert_eq!(back.single.to_bits(), b32, "case {i}");
        assert_eq!(back.double.to_bits(), b64, "case {i}");
        assert_eq!(back.maybe.map(f64::to_bits), Some(b64), "case {i}");
        assert_eq!(back.pair.0.to_bits(), b32, "case {i}");
        assert_eq!(back.pair.1.to_bits(), b64, "case {i}");
        assert_eq!(back.array.map(f64::to_bits), [b64; 3], "case {i}");
        assert_eq!(back.boxed.to_bits(), b32, "case {i}");
        assert_eq!(back.listed[0].map(f32::to_bits), Some(b32), "case {i}");
        let bulk64: Vec<u64> = back.bulk64.iter().map(|v| v.to_bits()).collect();
        let bulk32: Vec<u32> = back.bulk32.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bulk64, F64_BITS);
        assert_eq!(bulk32, F32_BITS);
    }
}

// ---- bulk fields ------------------------------------------------------------------------------

#[derive(Migratable, Debug, PartialEq, Default)]
struct Bulk {
    doubles: Vec<f64>,
    singles: Vec<f32>,
    bytes: Vec<u8>,
    signed_bytes: Vec<i8>,
    #[migratable(bulk)]
    words: Vec<u32>,
    #[migratable(bulk)]
    longs: Vec<i64>,
    #[migratable(bulk)]
    halves: Vec<u16>,
    plain_words: Vec<u32>,
}

#[derive(Migratable, Debug, PartialEq)]
enum BulkInVariants {
    One(Vec<f64>),
    Two(Vec<u8>, #[migratable(bulk)] Vec<i32>),
    Named {
        #[migratable(bulk)]
        values: Vec<u64>,
    },
}

#[test]
fn bulk_fields_round_trip() {
    round_trip(&Bulk {
        doubles: vec![1.0, -2.5, 1e300],
        singles: vec![0.25, -1e-30],
        bytes: (0..=255).collect(),
        signed_bytes: vec![i8::MIN, -1, 0, i8::MAX],
        words: vec![0, 1, u32::MAX, 0x0102_0304],
        longs: vec![i64::MIN, -1, i64::MAX],
        halves: vec![0xabcd],
        plain_words: vec![300, 5],
    });
}

#[test]
fn empty_vectors_round_trip() {
    round_trip(&Bulk::default());
    let bytes = image::capture(&Bulk::default()).unwrap();
    // Eight fields, each an empty sequence or byte string: a zero length each.
    assert_eq!(body(&bytes), [0; 8]);
}

#[test]
fn bulk_fields_in_enum_variants_round_trip() {
    round_trip(&BulkInVariants::One(vec![1.5, f64::MIN]));
    round_trip(&BulkInVariants::Two(vec![1, 2], vec![-7, 7]));
    round_trip(&BulkInVariants::Named {
        values: vec![u64::MAX],
    });
    round_trip(&BulkInVariants::One(vec![]));
}

#[test]
fn bulk_fields_are_encoded_as_little_endian_byte_strings() {
    // The wire form is the same on every host: a varint byte count, then little-endian bytes.
    // A plain `Vec<u32>` stays a sequence of varints.
    let value = Bulk {
        doubles: vec![1.0],
        singles: vec![-2.0],
        bytes: vec![0xfe],
        signed_bytes: vec![-2],
        words: vec![0x0403_0201],
        longs: vec![-2],
        halves: vec![0x0201],
        plain_words: vec![300],
    };
    let bytes = image::capture(&value).unwrap();
    let mut expected = vec![8];
    expected.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
    expected.push(4);
    expected.extend_from_slice(&(-2.0f32).to_bits().to_le_bytes());
    expected.extend_from_slice(&[1, 0xfe]);
    expected.extend_from_slice(&[1, 0xfe]);
    expected.extend_from_slice(&[4, 1, 2, 3, 4]);
    expected.push(8);
    expected.extend_from_slice(&(-2i64).to_le_bytes());
    expected.extend_from_slice(&[2, 1, 2]);
    expected.push(1);
    expected.extend_from_slice(&varint(300));
    assert_eq!(body(&bytes), expected);
}

#[test]
fn large_bulk_vector_round_trips_with_a_correct_checksum() {
    // Over the writer's 256 KiB copy block, so the blockwise checksum path runs; the body CRC
    // is checked against a bitwise reference CRC-32C.
    let doubles: Vec<f64> = (0..40_000).map(|i| f64::from(i) * 0.5 - 7.0).collect();
    let value = Bulk {
        doubles,
        bytes: (0..70_000u32).map(|i| (i % 251) as u8).collect(),
        ..Bulk::default()
    };
    let bytes = image::capture(&value).unwrap();
    assert!(bytes.len() > 256 << 10);
    assert_eq!(crc32c(body(&bytes)), stored_body_crc(&bytes));
    let header_len = image::inspect(&bytes).unwrap().header_len;
    assert_eq!(
        crc32c(&bytes[..header_len - CHECKSUM_LEN]),
        stored_header_crc(&bytes)
    );
    round_trip(&value);
}

#[test]
fn reused_writer_gives_the_same_bytes_as_a_fresh_one() {
    let big = Bulk {
        doubles: vec![3.0; 50_000],
        ..Bulk::default()
    };
    let small = Point { x: 1, y: 2 };
    let mut writer = ImageWriter::new();
    let first = writer.capture(&big).unwrap().to_vec();
    let second = writer.capture(&small).unwrap().to_vec();
    let third = writer.capture(&big).unwrap().to_vec();
    assert_eq!(second, image::capture(&small).unwrap());
    assert_eq!(first, third);
    assert_eq!(image::restore::<Point>(&second).unwrap(), small);
}

// ---- skip, opaque, name, use_serde ------------------------------------------------------------

fn seven() -> u32 {
    7
}

#[derive(Migratable, Debug, PartialEq)]
struct WithSkips {
    kept: u32,
    #[migratable(skip)]
    cache: Vec<u64>,
    #[migratable(skip, default = "seven")]
    rebuilt: u32,
    also_kept: String,
}

#[test]
fn skipped_fields_are_not_encoded_and_are_rebuilt_from_their_defaults() {
    let value = WithSkips {
        kept: 1,
        cache: vec![9, 9, 9],
        rebuilt: 100,
        also_kept: "x".into(),
    };
    let bytes = image::capture(&value).unwrap();
    assert_eq!(body(&bytes), [1, 1, b'x']);
    let back: WithSkips = image::restore(&bytes).unwrap();
    assert_eq!(
        back,
        WithSkips {
            kept: 1,
            cache: vec![],
            rebuilt: 7,
            also_kept: "x".into(),
        }
    );
}

/// A serde type with no cosmic shape, as a foreign crate's type would be.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Foreign {
    id: u32,
    tag: String,
}

#[derive(Migratable, Debug, PartialEq)]
struct HoldsForeign {
    #[migratable(opaque = "foreign-v1")]
    foreign: Foreign,
    #[migratable(opaque = "foreign-list-v1")]
    many: Vec<Foreign>,
    count: u8,
}

mod relabelled {
    use super::Foreign;
    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq)]
    #[migratable(name = "HoldsForeign")]
    pub(crate) struct HoldsForeign {
        #[migratable(opaque = "foreign-v2")]
        pub(crate) foreign: Foreign,
        #[migratable(opaque = "foreign-list-v1")]
        pub(crate) many: Vec<Foreign>,
        pub(crate) count: u8,
    }
}

#[test]
fn opaque_field_round_trips_through_its_own_serde_impls() {
    let foreign = Foreign {
        id: 3,
        tag: "t".into(),
    };
    round_trip(&HoldsForeign {
        foreign: foreign.clone(),
        many: vec![foreign.clone(), foreign],
        count: 2,
    });
}

#[test]
fn opaque_label_is_part_of_the_fingerprint() {
    assert_eq!(
        HoldsForeign::type_name(),
        relabelled::HoldsForeign::type_name()
    );
    assert_ne!(
        Fingerprint::current::<HoldsForeign>().0,
        Fingerprint::current::<relabelled::HoldsForeign>().0
    );
    let value = HoldsForeign {
        foreign: Foreign {
            id: 1,
            tag: String::new(),
        },
        many: vec![],
        count: 0,
    };
    let err =
        image::restore::<relabelled::HoldsForeign>(&image::capture(&value).unwrap()).unwrap_err();
    assert!(
        matches!(err, RestoreError::FingerprintMismatch { .. }),
        "got {err:?}"
    );
}

#[derive(Migratable, Debug, PartialEq)]
#[migratable(name = "acme.sim.Widget")]
struct Widget {
    size: u16,
}

#[test]
fn wire_name_is_written_in_the_header_and_registered() {
    assert_eq!(Widget::type_name(), "acme.sim.Widget");
    let bytes = image::capture(&Widget { size: 3 }).unwrap();
    assert_eq!(image::inspect(&bytes).unwrap().type_name, "acme.sim.Widget");
    assert!(lookup_type("acme.sim.Widget").is_some());
    assert!(lookup_type("Widget").is_none());
    round_trip(&Widget { size: 3 });
}

/// A type that derives serde itself and keeps its own impls.
#[derive(Migratable, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[migratable(use_serde)]
struct OwnSerde {
    #[serde(rename = "renamed")]
    value: u64,
    names: Vec<String>,
    point: Point,
    flags: BTreeMap<u8, bool>,
}

#[derive(Migratable, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[migratable(use_serde)]
enum OwnSerdeEnum {
    A,
    B(i32),
    C { text: String },
}

#[test]
fn use_serde_type_round_trips_through_its_own_impls() {
    round_trip(&OwnSerde {
        value: 1 << 40,
        names: vec!["n".into()],
        point: Point { x: -1, y: 1 },
        flags: BTreeMap::from([(1, true), (2, false)]),
    });
    round_trip(&OwnSerdeEnum::A);
    round_trip(&OwnSerdeEnum::B(-5));
    round_trip(&OwnSerdeEnum::C { text: "c".into() });
    assert!(lookup_type("OwnSerde").is_some());
}

// ---- the registry -----------------------------------------------------------------------------

#[test]
fn restore_any_finds_the_type_by_name_and_downcasts() {
    let point = Point { x: 4, y: -4 };
    let restored = image::restore_any(&image::capture(&point).unwrap()).unwrap();
    assert_eq!(restored.header.type_name, "Point");
    let state = restored.state.downcast::<Point>().expect("a Point");
    assert_eq!(*state, point);

    let figure = Figure::Line(Point::default(), Point { x: 1, y: 1 }, 0);
    let restored = image::restore_any(&image::capture(&figure).unwrap()).unwrap();
    assert!(restored.state.downcast_ref::<Point>().is_none());
    assert_eq!(*restored.state.downcast::<Figure>().unwrap(), figure);

    let widget = Widget { size: 1 };
    let restored = image::restore_any(&image::capture(&widget).unwrap()).unwrap();
    assert_eq!(*restored.state.downcast::<Widget>().unwrap(), widget);
}

#[test]
fn registry_lists_every_non_generic_derived_type() {
    for name in [
        "Point",
        "Meters",
        "Rgb",
        "Marker",
        "Figure",
        "Scene",
        "Node",
        "Expr",
        "StdTypes",
        "Floats",
        "Bulk",
        "WithSkips",
        "OwnSerde",
    ] {
        let registration = lookup_type(name).unwrap_or_else(|| panic!("`{name}` not registered"));
        assert_eq!(registration.type_name, name);
        assert_eq!(registration.version, 1);
    }
    let point = lookup_type("Point").unwrap();
    assert_eq!((point.fingerprint)(), Fingerprint::current::<Point>().0);
    assert!(lookup_type("NoSuchType").is_none());
    let names: Vec<&str> = registered_types().map(|r| r.type_name).collect();
    assert!(names.contains(&"Node"));
}

#[test]
fn generic_types_are_not_registered_so_restore_any_refuses_them() {
    // A generic type has no single wire name to register: each instantiation has its own
    // (`Pair<u32>`), and the registry cannot know which ones a program uses. Restore such
    // images with `restore::<Pair<u32>>`, or wrap them in a non-generic root.
    assert!(lookup_type("Pair<u32>").is_none());
    assert!(lookup_type("Pair").is_none());
    assert!(lookup_type("Ring<4>").is_none());
    let bytes = image::capture(&Pair { a: 1u32, b: 2 }).unwrap();
    let err = image::restore_any(&bytes).unwrap_err();
    assert!(
        matches!(&err, RestoreError::UnknownType { type_name } if type_name == "Pair<u32>"),
        "got {err:?}"
    );
    // Std roots are not registered either.
    let err = image::restore_any(&image::capture(&vec![1u32]).unwrap()).unwrap_err();
    assert!(
        matches!(&err, RestoreError::UnknownType { type_name } if type_name == "seq<u32>"),
        "got {err:?}"
    );
}

// ---- capture errors ---------------------------------------------------------------------------

#[derive(Migratable, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[migratable(use_serde)]
struct FlattenedInner {
    depth: u8,
}

/// `#[serde(flatten)]` makes serde write a map of unknown length, which postcard cannot encode.
#[derive(Migratable, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[migratable(use_serde)]
struct Flattened {
    id: u8,
    #[serde(flatten)]
    inner: FlattenedInner,
}

#[test]
fn state_that_cannot_be_encoded_is_a_capture_error_naming_the_type() {
    let err = image::capture(&Flattened {
        id: 1,
        inner: FlattenedInner { depth: 2 },
    })
    .unwrap_err();
    assert!(
        matches!(&err, image::CaptureError::Encode { type_name, .. } if type_name == "Flattened"),
        "got {err:?}"
    );
    assert!(err.to_string().contains("`Flattened`"), "{err}");
    // The writer is usable after a failed capture.
    let mut writer = ImageWriter::new();
    assert!(writer
        .capture(&Flattened {
            id: 1,
            inner: FlattenedInner { depth: 2 },
        })
        .is_err());
    let bytes = writer.capture(&Point { x: 1, y: 1 }).unwrap().to_vec();
    assert_eq!(bytes, image::capture(&Point { x: 1, y: 1 }).unwrap());
}
