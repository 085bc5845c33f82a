//! Golden images: committed `.img` files under `tests/golden/` that every future build must
//! decode, and that the encoder must reproduce byte for byte (a change in the encoder's output
//! breaks images already on disk or in flight, so it must be a deliberate format change).
//!
//! The images are written with a fixed writer descriptor ([`golden_isa`]), so their bytes do not
//! depend on the host; these tests also run cross-built for aarch64 and big-endian s390x.
//! Floats are compared by their bits.
//!
//! `COSMIC_BLESS=1 cargo test -p cosmic-tests --test image_golden` (re)writes the files instead
//! of comparing them. Only do that for a deliberate format change, and keep the old files as
//! well where old images must go on loading.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use cosmic::image::{self, Encoding, FORMAT_VERSION, MAGIC};
use cosmic::state::Fingerprint;
use cosmic::Migratable;
use cosmic_tests::{body, capture_fixed, crc32c, golden_isa, stored_body_crc};

/// Every golden file, so that a file nobody checks is noticed.
const GOLDEN_FILES: [&str; 5] = [
    "simulation_v2.img",
    "simulation_v1.img",
    "event_log.img",
    "event_note.img",
    "bulk_grid.img",
];

// ---- the types, frozen: changing them changes the golden bytes ----------------------------

#[derive(Migratable, Debug, PartialEq)]
#[migratable(version = 2)]
struct Simulation {
    step: u64,
    grid: Vec<f64>,
    names: BTreeMap<String, u32>,
    phase: Phase,
    #[migratable(since = 2, default)]
    label: String,
}

#[derive(Migratable, Debug, PartialEq)]
enum Phase {
    Warmup,
    Run { rate: f32 },
    Done(u32),
}

/// `Simulation` as it was at version 1, before `label`; images of it must still load.
mod v1 {
    use std::collections::BTreeMap;

    use cosmic::Migratable;

    #[derive(Migratable, Debug, PartialEq)]
    #[migratable(name = "Simulation")]
    pub(crate) struct Simulation {
        pub(crate) step: u64,
        pub(crate) grid: Vec<f64>,
        pub(crate) names: BTreeMap<String, u32>,
        pub(crate) phase: super::Phase,
    }
}

#[derive(Migratable, Debug, PartialEq)]
enum Event {
    Start,
    Tick(u64),
    Move(i32, i32),
    Note { text: String, level: u8 },
    Batch(Vec<Event>),
}

#[derive(Migratable, Debug)]
struct Grid {
    cells: Vec<f64>,
    weights: Vec<f32>,
    mask: Vec<u8>,
    #[migratable(bulk)]
    ids: Vec<u32>,
    #[migratable(bulk)]
    deltas: Vec<i64>,
    origin: (f64, f64),
}

// ---- the values ---------------------------------------------------------------------------

/// f64 bit patterns that must survive exactly (NaN payloads, signed zero, infinities,
/// subnormals).
const SPECIAL_F64: [u64; 6] = [
    0x7ff8_0000_0000_0001,
    0xfff4_0000_dead_beef,
    0x8000_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0x0000_0000_0000_0001,
    0xc00c_cccc_cccc_cccd,
];

fn grid_cells() -> Vec<f64> {
    SPECIAL_F64
        .iter()
        .map(|&bits| f64::from_bits(bits))
        .chain((0..26).map(|i| f64::from(i) * 0.25 - 3.0))
        .collect()
}

fn names() -> BTreeMap<String, u32> {
    BTreeMap::from([
        ("alpha".to_owned(), 1),
        ("beta".to_owned(), u32::MAX),
        ("γ".to_owned(), 300),
    ])
}

fn simulation_v2() -> Simulation {
    Simulation {
        step: 1 << 33,
        grid: grid_cells(),
        names: names(),
        phase: Phase::Run { rate: -0.5 },
        label: "golden".to_owned(),
    }
}

fn simulation_v1() -> v1::Simulation {
    v1::Simulation {
        step: 77,
        grid: vec![1.0, -0.0, f64::from_bits(0x7ff8_0000_0000_0001)],
        names: names(),
        phase: Phase::Done(12),
    }
}

fn event_log() -> Vec<Event> {
    vec![
        Event::Start,
        Event::Tick(0),
        Event::Tick(u64::MAX),
        Event::Move(-1, i32::MIN),
        Event::Note {
            text: "checkpoint ✓".to_owned(),
            level: 3,
        },
        Event::Batch(vec![Event::Tick(5), Event::Batch(vec![])]),
    ]
}

fn event_note() -> Event {
    Event::Note {
        text: String::new(),
        level: 255,
    }
}

fn bulk_grid() -> Grid {
    Grid {
        cells: grid_cells(),
        weights: vec![f32::from_bits(0x7fc0_0001), -0.0, 1.5, f32::MAX],
        mask: (0..40).map(|i| (i * 7) as u8).collect(),
        ids: vec![0, 1, 0xdead_beef, u32::MAX],
        deltas: vec![i64::MIN, -1, 0, 1, i64::MAX],
        origin: (f64::from_bits(SPECIAL_F64[1]), -0.0),
    }
}

fn bits64(values: &[f64]) -> Vec<u64> {
    values.iter().map(|value| value.to_bits()).collect()
}

fn bits32(values: &[f32]) -> Vec<u32> {
    values.iter().map(|value| value.to_bits()).collect()
}

// ---- the golden files ---------------------------------------------------------------------

fn golden_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(file)
}

fn blessing() -> bool {
    std::env::var_os("COSMIC_BLESS").is_some_and(|value| value == "1")
}

/// The committed bytes of `file`, after checking that `fresh` (the value captured by this
/// build) reproduces them exactly; with `COSMIC_BLESS=1`, writes `fresh` instead.
fn committed(file: &str, fresh: &[u8]) -> Vec<u8> {
    let path = golden_path(file);
    if blessing() {
        std::fs::write(&path, fresh)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        return fresh.to_vec();
    }
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read golden image {}: {error} (create it with COSMIC_BLESS=1)",
            path.display()
        )
    })
}

/// Asserts that this build's capture equals the committed image, naming the first difference.
fn assert_reproduced(file: &str, committed: &[u8], fresh: &[u8]) {
    if committed == fresh {
        return;
    }
    let first = committed
        .iter()
        .zip(fresh)
        .position(|(a, b)| a != b)
        .unwrap_or(committed.len().min(fresh.len()));
    panic!(
        "the encoder's output for {file} changed: {} bytes committed, {} bytes now, first \
         difference at offset {first} (committed {:02x?}, now {:02x?}); images already written \
         would no longer match. If the format change is deliberate, bump the format version and \
         re-bless with COSMIC_BLESS=1",
        committed.len(),
        fresh.len(),
        committed.get(first..(first + 8).min(committed.len())),
        fresh.get(first..(first + 8).min(fresh.len())),
    );
}

/// Checks the committed image's header: the fixed writer, the type, its version and its
/// checksums (against the reference CRC-32C).
fn check_header<T: Migratable>(bytes: &[u8], type_version: u32) -> image::ImageHeader {
    assert_eq!(bytes[..8], MAGIC);
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), FORMAT_VERSION);
    let header = image::inspect(bytes).expect("golden header");
    assert_eq!(header.isa, golden_isa());
    assert_eq!(header.encoding, Encoding::Portable);
    assert_eq!(header.type_name, T::type_name());
    assert_eq!(header.type_version, type_version);
    assert_eq!(header.image_len(), bytes.len() as u64);
    assert_eq!(crc32c(body(bytes)), stored_body_crc(bytes));
    assert_eq!(
        Fingerprint::written::<T>(&header.versions).unwrap(),
        header.fingerprint
    );
    header
}

fn golden<T: Migratable + Debug>(file: &str, value: &T) -> Vec<u8> {
    let fresh = capture_fixed(value);
    let bytes = committed(file, &fresh);
    let restored: T = image::restore(&bytes)
        .unwrap_or_else(|error| panic!("golden image {file} no longer decodes: {error}"));
    // Compare what was decoded before comparing bytes: a golden image that still decodes to the
    // right value is the more important promise, and its failure is the clearer message.
    let again = capture_fixed(&restored);
    assert_reproduced(file, &bytes, &again);
    assert_reproduced(file, &bytes, &fresh);
    bytes
}

#[test]
fn simulation_v2_golden_image_decodes_and_is_reproduced() {
    let bytes = golden("simulation_v2.img", &simulation_v2());
    let header = check_header::<Simulation>(&bytes, 2);
    assert_eq!(
        header.versions.into_iter().collect::<Vec<_>>(),
        [("Phase".to_owned(), 1), ("Simulation".to_owned(), 2)]
    );
    let restored: Simulation = image::restore(&bytes).unwrap();
    let expected = simulation_v2();
    assert_eq!(bits64(&restored.grid), bits64(&expected.grid));
    assert_eq!(restored.step, expected.step);
    assert_eq!(restored.names, expected.names);
    assert_eq!(restored.phase, expected.phase);
    assert_eq!(restored.label, expected.label);
}

#[test]
fn simulation_v1_golden_image_loads_into_the_current_version() {
    let bytes = golden("simulation_v1.img", &simulation_v1());
    check_header::<Simulation>(&bytes, 1);
    let old: v1::Simulation = image::restore(&bytes).unwrap();
    assert_eq!(bits64(&old.grid), bits64(&simulation_v1().grid));

    let current: Simulation = image::restore(&bytes).unwrap();
    assert_eq!(current.step, 77);
    assert_eq!(bits64(&current.grid), bits64(&simulation_v1().grid));
    assert_eq!(current.names, names());
    assert_eq!(current.phase, Phase::Done(12));
    assert_eq!(
        current.label, "",
        "a field added in version 2 gets its default"
    );

    let restored = image::restore_any(&bytes).unwrap();
    let any = restored
        .state
        .downcast::<Simulation>()
        .expect("the newest Simulation");
    assert_eq!(any.phase, Phase::Done(12));
}

#[test]
fn event_log_golden_image_decodes_and_is_reproduced() {
    let bytes = golden("event_log.img", &event_log());
    let header = check_header::<Vec<Event>>(&bytes, 1);
    assert_eq!(header.type_name, "seq<@Event>");
    assert_eq!(image::restore::<Vec<Event>>(&bytes).unwrap(), event_log());
}

#[test]
fn event_note_golden_image_decodes_and_is_reproduced() {
    let bytes = golden("event_note.img", &event_note());
    check_header::<Event>(&bytes, 1);
    assert_eq!(image::restore::<Event>(&bytes).unwrap(), event_note());
    let restored = image::restore_any(&bytes).unwrap();
    assert_eq!(*restored.state.downcast::<Event>().unwrap(), event_note());
}

#[test]
fn bulk_grid_golden_image_decodes_and_is_reproduced() {
    let bytes = golden("bulk_grid.img", &bulk_grid());
    check_header::<Grid>(&bytes, 1);
    let restored: Grid = image::restore(&bytes).unwrap();
    let expected = bulk_grid();
    assert_eq!(bits64(&restored.cells), bits64(&expected.cells));
    assert_eq!(bits32(&restored.weights), bits32(&expected.weights));
    assert_eq!(restored.mask, expected.mask);
    assert_eq!(restored.ids, expected.ids);
    assert_eq!(restored.deltas, expected.deltas);
    assert_eq!(
        (restored.origin.0.to_bits(), restored.origin.1.to_bits()),
        (expected.origin.0.to_bits(), expected.origin.1.to_bits())
    );
    // The bulk cells are little-endian bytes on the wire whatever the host: the first cell's
    // bytes follow the byte-count varint at the start of the body.
    let cells = &body(&bytes)[2..10];
    assert_eq!(cells, SPECIAL_F64[0].to_le_bytes());
}

#[test]
fn every_golden_file_is_checked() {
    if blessing() {
        return;
    }
    let dir = golden_path("");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".img"))
        .collect();
    found.sort();
    let mut expected: Vec<String> = GOLDEN_FILES.iter().map(|name| name.to_string()).collect();
    expected.sort();
    assert_eq!(
        found, expected,
        "golden files without a test, or tests without a file"
    );
}
