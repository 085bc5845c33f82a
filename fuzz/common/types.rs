//! The state types the fuzz targets decode: a realistic task state that uses every kind of
//! item `#[derive(Migratable)]` supports, plus the older layouts an image may carry.
//!
//! Wire names are prefixed with `fuzz::` so that they never collide with a type of the library.

use std::collections::BTreeMap;

use cosmic::Migratable;

/// A nested named struct.
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::Point")]
pub struct Point {
    pub x: f64,
    pub y: f32,
    pub tag: char,
}

/// A tuple struct with a bulk `Vec<u8>`.
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::Tile")]
pub struct Tile(pub u16, pub Vec<u8>);

/// A unit struct.
#[derive(Migratable, Debug, Clone, Copy, PartialEq, Default)]
#[migratable(name = "fuzz::Marker")]
pub struct Marker;

/// An enum with every kind of variant.
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::Phase")]
pub enum Phase {
    /// Unit.
    #[default]
    Idle,
    /// Newtype.
    Warmup(u32),
    /// Struct variant, with a nested struct.
    Run { rate: f32, steps: u64, at: Point },
    /// Tuple variant.
    Pair(i64, String),
    /// A single bulk field: a tuple variant of one element, not a newtype.
    Samples(Vec<f64>),
    /// Another unit, after the data variants.
    Done,
}

/// Version 1 of `Counter`, kept to read old images (`upgrade_from`).
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::Counter")]
pub struct CounterV1 {
    pub count: u32,
}

/// Version 2: wider count and a unit, upgraded from `CounterV1` through `From`.
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::Counter", version = 2, upgrade_from = CounterV1)]
pub struct Counter {
    pub count: u64,
    pub unit: String,
}

impl From<CounterV1> for Counter {
    fn from(old: CounterV1) -> Self {
        Counter {
            count: old.count.into(),
            unit: "items".to_owned(),
        }
    }
}

/// A recursive type: a body can nest it as deep as its length allows.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(name = "fuzz::Tree")]
pub enum Tree {
    Leaf(i32),
    Node(Box<Tree>, Box<Tree>),
}

/// The task state, version 2.
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::State", version = 2)]
pub struct State {
    pub step: u64,
    pub index: usize,
    pub big: u128,
    pub small: i8,
    pub grid: Vec<f64>,
    pub raw: Vec<u8>,
    #[migratable(bulk)]
    pub ints: Vec<i32>,
    pub names: BTreeMap<String, u32>,
    pub phase: Phase,
    pub history: Vec<Phase>,
    pub origin: Point,
    pub note: Option<String>,
    pub counter: Counter,
    pub tree: Option<Box<Tree>>,
    pub pair: (u16, bool),
    pub bytes4: [u8; 4],
    pub marker: Marker,
    pub tile: Tile,
    /// Added in version 2.
    #[migratable(since = 2, default)]
    pub label: String,
    /// Removed in version 2.
    #[migratable(until = 2, default = "legacy_default")]
    pub legacy: u32,
    /// Never encoded; rebuilt from `Default`.
    #[migratable(skip)]
    pub cache: Vec<u64>,
}

pub fn legacy_default() -> u32 {
    7
}

/// The version 1 layout of `State`, as version 1 of the program declared it.
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::State", version = 1)]
pub struct V1State {
    pub step: u64,
    pub index: usize,
    pub big: u128,
    pub small: i8,
    pub grid: Vec<f64>,
    pub raw: Vec<u8>,
    #[migratable(bulk)]
    pub ints: Vec<i32>,
    pub names: BTreeMap<String, u32>,
    pub phase: Phase,
    pub history: Vec<Phase>,
    pub origin: Point,
    pub note: Option<String>,
    pub counter: Counter,
    pub tree: Option<Box<Tree>>,
    pub pair: (u16, bool),
    pub bytes4: [u8; 4],
    pub marker: Marker,
    pub tile: Tile,
    pub legacy: u32,
}

/// Builds a `State` from bytes: every byte string gives a value, so the fuzzer can steer the
/// values that get captured (the `image_mutate` target) without an `Arbitrary` impl.
pub struct Builder<'a> {
    bytes: &'a [u8],
}

impl<'a> Builder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Builder { bytes }
    }

    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for b in &mut out {
            *b = self.u8();
        }
        out
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn len(&mut self, max: usize) -> usize {
        usize::from(self.u8()) % (max + 1)
    }
    fn string(&mut self) -> String {
        let n = self.len(12);
        (0..n)
            .map(|_| char::from_u32(u32::from(self.u16()) % 0x3000).unwrap_or('?'))
            .collect()
    }
    fn point(&mut self) -> Point {
        Point {
            x: f64::from_bits(self.u64()),
            y: f32::from_bits(self.u32()),
            tag: char::from_u32(self.u32() % 0x11_0000).unwrap_or('\u{fffd}'),
        }
    }
    fn phase(&mut self) -> Phase {
        match self.u8() % 6 {
            0 => Phase::Idle,
            1 => Phase::Warmup(self.u32()),
            2 => Phase::Run {
                rate: f32::from_bits(self.u32()),
                steps: self.u64(),
                at: self.point(),
            },
            3 => Phase::Pair(self.u64() as i64, self.string()),
            4 => {
                let n = self.len(6);
                Phase::Samples((0..n).map(|_| f64::from_bits(self.u64())).collect())
            }
            _ => Phase::Done,
        }
    }
    fn tree(&mut self, depth: u32) -> Tree {
        if depth == 0 || self.u8() % 3 != 0 {
            Tree::Leaf(self.u32() as i32)
        } else {
            Tree::Node(
                Box::new(self.tree(depth - 1)),
                Box::new(self.tree(depth - 1)),
            )
        }
    }

    pub fn state(&mut self) -> State {
        let grid_len = self.len(16);
        let raw_len = self.len(24);
        let ints_len = self.len(8);
        let names_len = self.len(5);
        let history_len = self.len(4);
        State {
            step: self.u64(),
            index: self.u64() as usize,
            big: u128::from(self.u64()) << 64 | u128::from(self.u64()),
            small: self.u8() as i8,
            grid: (0..grid_len).map(|_| f64::from_bits(self.u64())).collect(),
            raw: (0..raw_len).map(|_| self.u8()).collect(),
            ints: (0..ints_len).map(|_| self.u32() as i32).collect(),
            names: (0..names_len)
                .map(|_| (self.string(), self.u32()))
                .collect(),
            phase: self.phase(),
            history: (0..history_len).map(|_| self.phase()).collect(),
            origin: self.point(),
            note: if self.u8() % 2 == 0 {
                None
            } else {
                Some(self.string())
            },
            counter: Counter {
                count: self.u64(),
                unit: self.string(),
            },
            tree: if self.u8() % 2 == 0 {
                None
            } else {
                Some(Box::new(self.tree(4)))
            },
            pair: (self.u16(), self.u8() % 2 == 1),
            bytes4: self.take(),
            marker: Marker,
            tile: Tile(self.u16(), (0..self.len(8)).map(|_| 0xa5).collect()),
            label: self.string(),
            legacy: legacy_default(),
            cache: Vec::new(),
        }
    }
}

/// A fixed, fairly full state for seeds.
pub fn sample_state() -> State {
    State {
        step: 1_000_003,
        index: 42,
        big: u128::MAX - 5,
        small: -3,
        grid: vec![0.0, -1.5, f64::INFINITY, 1e300, f64::MIN_POSITIVE],
        raw: b"raw bytes".to_vec(),
        ints: vec![-1, 0, 1, i32::MAX, i32::MIN],
        names: BTreeMap::from([("alpha".to_owned(), 1), ("βeta".to_owned(), 2)]),
        phase: Phase::Run {
            rate: 0.25,
            steps: 9,
            at: Point {
                x: 1.0,
                y: -2.0,
                tag: 'λ',
            },
        },
        history: vec![
            Phase::Idle,
            Phase::Warmup(3),
            Phase::Pair(-7, "pair".to_owned()),
            Phase::Samples(vec![0.5, 0.75]),
            Phase::Done,
        ],
        origin: Point {
            x: -0.0,
            y: 3.5,
            tag: 'z',
        },
        note: Some("note".to_owned()),
        counter: Counter {
            count: 77,
            unit: "steps".to_owned(),
        },
        tree: Some(Box::new(Tree::Node(
            Box::new(Tree::Leaf(1)),
            Box::new(Tree::Node(
                Box::new(Tree::Leaf(-2)),
                Box::new(Tree::Leaf(3)),
            )),
        ))),
        pair: (65535, true),
        bytes4: [1, 2, 3, 4],
        marker: Marker,
        tile: Tile(9, vec![7; 5]),
        label: "label".to_owned(),
        legacy: legacy_default(),
        cache: Vec::new(),
    }
}

/// The v1 layout of the sample.
pub fn sample_v1() -> V1State {
    let s = sample_state();
    V1State {
        step: s.step,
        index: s.index,
        big: s.big,
        small: s.small,
        grid: s.grid,
        raw: s.raw,
        ints: s.ints,
        names: s.names,
        phase: s.phase,
        history: s.history,
        origin: s.origin,
        note: s.note,
        counter: s.counter,
        tree: s.tree,
        pair: s.pair,
        bytes4: s.bytes4,
        marker: s.marker,
        tile: s.tile,
        legacy: 11,
    }
}

// ---- native images ------------------------------------------------------------------------

/// Plain old data: every bit pattern is a value.
#[derive(
    Migratable, Debug, Clone, Copy, PartialEq, cosmic::bytemuck::Pod, cosmic::bytemuck::Zeroable,
)]
#[bytemuck(crate = "cosmic::bytemuck")]
#[migratable(name = "fuzz::Particle")]
#[repr(C)]
pub struct Particle {
    pub position: [f32; 3],
    pub id: u32,
}

/// A fieldless enum: only its tags are values.
#[derive(
    Migratable, Debug, Clone, Copy, PartialEq, bytemuck::NoUninit, bytemuck::CheckedBitPattern,
)]
#[migratable(name = "fuzz::Kind")]
#[repr(u8)]
pub enum Kind {
    Rock = 1,
    Water = 2,
    Air = 9,
}

/// Plain old data whose bits are checked: a bool, a char and an enum tag.
#[derive(
    Migratable, Debug, Clone, Copy, PartialEq, bytemuck::NoUninit, bytemuck::CheckedBitPattern,
)]
#[migratable(name = "fuzz::Square")]
#[repr(C)]
pub struct Square {
    pub value: u32,
    pub letter: char,
    pub kind: Kind,
    pub alive: bool,
    pub spare: u16,
}

/// State with `native` fields, captured as native images by `native_mutate`.
#[derive(Migratable, Debug, Clone, PartialEq, Default)]
#[migratable(name = "fuzz::NativeState")]
pub struct NativeState {
    pub step: u64,
    #[migratable(native)]
    pub particles: Vec<Particle>,
    #[migratable(native)]
    pub squares: Vec<Square>,
    pub samples: Vec<f64>,
    pub label: String,
}

impl Builder<'_> {
    /// A `NativeState` from the remaining bytes.
    pub fn native_state(&mut self) -> NativeState {
        let particles = (0..self.u8() % 24)
            .map(|_| Particle {
                position: [
                    f32::from_bits(self.u32()),
                    self.u8() as f32,
                    -(self.u16() as f32),
                ],
                id: self.u32(),
            })
            .collect();
        let kinds = [Kind::Rock, Kind::Water, Kind::Air];
        let squares = (0..self.u8() % 24)
            .map(|_| Square {
                value: self.u32(),
                letter: char::from_u32(self.u32() % 0x11_0000).unwrap_or('?'),
                kind: kinds[usize::from(self.u8()) % 3],
                alive: self.u8() & 1 == 1,
                spare: 0,
            })
            .collect();
        NativeState {
            step: self.u64(),
            particles,
            squares,
            samples: (0..self.u8() % 8)
                .map(|_| f64::from_bits(self.u64()))
                .collect(),
            label: "n".repeat(usize::from(self.u8() % 5)),
        }
    }
}
