//! Writes the seed corpus of the fuzz targets: valid images of the fuzz types, and a few
//! images that are valid up to one specific check, so that libFuzzer starts next to every
//! error path instead of at random bytes.
//!
//! Run from the repository root (stable or nightly; no sanitizer needed):
//!     cargo run --manifest-path fuzz/Cargo.toml --bin make_seeds
//! It rewrites `fuzz/seeds/image_decode/`, `fuzz/seeds/image_mutate/` and
//! `fuzz/seeds/native_mutate/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cosmic::image::{capture, ImageWriter, Isa};

#[path = "../../common/mod.rs"]
mod common;

use common::types::{self, Builder, Counter, CounterV1, Marker, Phase, Point, State, Tile, Tree};
use common::RawHeader;

/// Where the writer's build id sits in a header (see docs/format.md).
const BUILD_ID_OFFSET: usize = 18;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, depth, out] = args.as_slice() {
        // `make_seeds --tree-depth N FILE`: a `fuzz::Tree` image nested N deep, for probing
        // the decoder's recursion (not a seed: a deep one overflows the stack).
        assert_eq!(flag, "--tree-depth");
        let depth: usize = depth.parse().expect("a depth");
        fs::write(out, tree_image(depth)).expect("write tree image");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let decode = root.join("image_decode");
    let mutate = root.join("image_mutate");
    let native_mutate = root.join("native_mutate");
    for dir in [&decode, &mutate, &native_mutate] {
        if dir.exists() {
            fs::remove_dir_all(dir).expect("remove old seeds");
        }
        fs::create_dir_all(dir).expect("create seed dir");
    }
    let mut seeds = Seeds {
        dir: decode,
        count: 0,
    };

    // Valid images. A fixed ISA keeps the files byte-identical wherever they are made.
    let isa = Isa {
        arch: cosmic::image::Arch::X86_64,
        endian: cosmic::image::Endian::Little,
        pointer_width: 64,
        build_id: 0,
    };
    let mut writer = ImageWriter::with_isa(isa);
    let put = |seeds: &mut Seeds, name: &str, bytes: &[u8]| seeds.write(name, bytes);
    let full = types::sample_state();
    put(&mut seeds, "state_full", writer.capture(&full).unwrap());
    put(
        &mut seeds,
        "state_default",
        writer.capture(&State::default()).unwrap(),
    );
    put(
        &mut seeds,
        "state_v1",
        writer.capture(&types::sample_v1()).unwrap(),
    );
    put(
        &mut seeds,
        "state_v1_default",
        writer.capture(&types::V1State::default()).unwrap(),
    );
    put(
        &mut seeds,
        "phase_run",
        writer.capture(&full.phase).unwrap(),
    );
    put(
        &mut seeds,
        "phase_samples",
        writer.capture(&Phase::Samples(vec![1.0, 2.0])).unwrap(),
    );
    put(
        &mut seeds,
        "phase_pair",
        writer.capture(&Phase::Pair(-1, "p".into())).unwrap(),
    );
    put(
        &mut seeds,
        "tree",
        writer.capture(full.tree.as_deref().unwrap()).unwrap(),
    );
    put(
        &mut seeds,
        "counter_v2",
        writer.capture(&full.counter).unwrap(),
    );
    put(
        &mut seeds,
        "counter_v1",
        writer.capture(&CounterV1 { count: 5 }).unwrap(),
    );
    put(
        &mut seeds,
        "point",
        writer.capture(&Point::default()).unwrap(),
    );
    put(
        &mut seeds,
        "tile",
        writer.capture(&Tile(3, vec![1, 2, 3])).unwrap(),
    );
    put(&mut seeds, "marker", writer.capture(&Marker).unwrap());
    let pairs: Vec<(String, u32)> = full.names.clone().into_iter().collect();
    put(&mut seeds, "std_pairs", writer.capture(&pairs).unwrap());
    put(&mut seeds, "std_u64", writer.capture(&7u64).unwrap());
    for (i, fill) in [[0x00u8; 64], [0xffu8; 64], [0x5au8; 64]]
        .iter()
        .enumerate()
    {
        let state = Builder::new(fill).state();
        put(
            &mut seeds,
            &format!("state_built_{i}"),
            writer.capture(&state).unwrap(),
        );
    }

    // Images valid up to one check, each reaching a different error.
    let image = writer.capture(&full).unwrap().to_vec();
    let (header, body) = common::split(&image);
    let raw = RawHeader::of(&header);

    // A `fuzz::State` v1 image whose `Counter` is at v1: decoded through `upgrade_from`.
    let mut table: BTreeMap<String, u32> = header.versions.clone();
    table.insert("fuzz::State".into(), 1);
    table.insert("fuzz::Counter".into(), 1);
    let mut old = raw.clone();
    old.type_version = 1;
    old.fingerprint = common::state_fingerprint(&table).expect("v1 table is known");
    old.versions = table.clone().into_iter().collect();
    // Its body: the v1 layout, with the counter as a bare u32 varint.
    let mut v1 = types::sample_v1();
    v1.tree = None;
    let v1_body = v1_body_with_old_counter(&v1);
    seeds.write("state_v1_counter_v1", &old.image(&v1_body));

    // Version too new (the State entry at 3, and a nested type too new).
    let mut newer = raw.clone();
    newer.type_version = 3;
    newer.versions = with(&header.versions, "fuzz::State", 3);
    seeds.write("state_v3_too_new", &newer.image(body));
    let mut nested = raw.clone();
    nested.versions = with(&header.versions, "fuzz::Point", 9);
    seeds.write("state_point_v9_too_new", &nested.image(body));
    let mut zero = raw.clone();
    zero.versions = with(&header.versions, "fuzz::Phase", 0);
    seeds.write("state_phase_v0", &zero.image(body));
    // Fingerprint mismatch.
    let mut print = raw.clone();
    print.fingerprint ^= 1;
    seeds.write("state_fingerprint_mismatch", &print.image(body));
    // Unknown type, native encoding, other ISA, big tables.
    let mut unknown = raw.clone();
    unknown.type_name = "fuzz::Nope".into();
    unknown.versions = with(&header.versions, "fuzz::Nope", 2);
    seeds.write("unknown_type", &unknown.image(body));
    let mut native = raw.clone();
    native.encoding = 1;
    seeds.write("native_encoding", &native.image(body));
    let mut foreign = raw.clone();
    (foreign.arch, foreign.endian, foreign.pointer_width) = (3, 1, 32);
    seeds.write("state_s390x_32bit", &foreign.image(body));
    // Checksums and lengths wrong by one thing each.
    let mut bad = image.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    seeds.write("bad_body_checksum", &bad);
    let mut bad = image.clone();
    bad[header.header_len - 1] ^= 0xff;
    seeds.write("bad_header_checksum", &bad);
    seeds.write("truncated_body", &image[..image.len() - 9]);
    seeds.write("truncated_header", &image[..header.header_len - 2]);
    seeds.write("magic_only", &common::MAGIC);
    let mut trailing = image.clone();
    trailing.extend_from_slice(b"tail");
    seeds.write("trailing_bytes", &trailing);
    let mut body_trailing = body.to_vec();
    body_trailing.extend_from_slice(&[0, 0, 0]);
    seeds.write("body_trailing_bytes", &raw.image(&body_trailing));
    // A body that announces a huge sequence: must fail without allocating for it.
    let mut huge = raw.clone();
    huge.fingerprint = header.fingerprint.0;
    let mut huge_body = vec![0u8; 4]; // step, index, big, small
    huge_body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // grid: 4 GiB of bytes
    seeds.write("state_huge_grid_len", &huge.image(&huge_body));
    let map_image = capture(&pairs).unwrap();
    let (map_header, _) = common::split(&map_image);
    let mut map = RawHeader::of(&map_header);
    map.build_id = 0;
    seeds.write(
        "std_pairs_huge_len",
        &map.image(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    );
    // Recursion through `Tree::Node`.
    seeds.write("tree_depth_200", &tree_image(200));
    // A body over the small limits but inside the defaults.
    let big = State {
        raw: vec![1; 200],
        ..State::default()
    };
    seeds.write("state_over_small_limits", writer.capture(&big).unwrap());
    // A header length over the default limit.
    let mut long = image.clone();
    long[common::HEADER_LEN_OFFSET..common::HEADER_LEN_OFFSET + 4]
        .copy_from_slice(&(1u32 << 20).to_le_bytes());
    seeds.write("header_len_over_limit", &long);
    // Native images: readable only by the build that wrote them, so from any other binary
    // (every fuzz target) these stop at the guard: the writer's build is unknown (0), or
    // another one. `native_mutate` writes the native images it decodes itself.
    // (A writer refuses to write native images under build id 0: that one is forged.)
    let native_state = Builder::new(&[0x5a; 160]).native_state();
    let mut other_build = ImageWriter::with_isa(Isa {
        build_id: 0x5eed_5eed_5eed_5eed,
        ..isa
    });
    let native_image = other_build.capture_native(&native_state).unwrap().to_vec();
    put(&mut seeds, "native_other_build", &native_image);
    let mut unknown_build = native_image;
    unknown_build[BUILD_ID_OFFSET..BUILD_ID_OFFSET + 8].fill(0);
    common::reseal(&mut unknown_build, common::Reseal::Header);
    put(&mut seeds, "native_unknown_build", &unknown_build);
    put(
        &mut seeds,
        "native_state_portable",
        writer.capture(&native_state).unwrap(),
    );
    // (Inputs that crashed the decoder are written to fuzz/regressions/ below, not here: a seed
    // that crashes stops libFuzzer at start-up.)

    regressions(&image, header.header_len);

    // `image_mutate` inputs: [root, forge, reseal, mutation count = 0, edit count = 0, ...].
    let mut seeds = Seeds {
        dir: mutate,
        count: 0,
    };
    for root in 0..10u8 {
        for fill in [0x00u8, 0x5a, 0xff] {
            let mut input = vec![root, 0, 0, 0, 0];
            input.extend(std::iter::repeat_n(fill, 96));
            seeds.write(&format!("root{root}_fill{fill:02x}"), &input);
        }
    }

    // `native_mutate` inputs: [forge, reseal, mutation count, (kind, at: u16, value: u64)...,
    // then the state's bytes]. Untouched (forge 0 asks for the round trip), then one of each
    // mutation kind, a forged guard and a forged encoding, with a state that has elements.
    let mut seeds = Seeds {
        dir: native_mutate,
        count: 0,
    };
    let state_bytes = [0x5au8; 160];
    let mut native_input = |name: &str, forge: u8, ops: &[(u8, u16, u64)]| {
        let mut input = vec![forge, 7, ops.len() as u8];
        for &(kind, at, value) in ops {
            input.push(kind);
            input.extend_from_slice(&at.to_le_bytes());
            input.extend_from_slice(&value.to_le_bytes());
        }
        input.extend_from_slice(&state_bytes);
        seeds.write(name, &input);
    };
    native_input("untouched", 0, &[]);
    native_input("forged_guard", 1, &[]);
    native_input("forged_encoding", 2, &[]);
    for kind in 0..8u8 {
        native_input(
            &format!("mutation_kind{kind}"),
            3,
            &[(kind, 5, 0x0102_0304_0506_0702)],
        );
    }
    let _ = Counter::default();
}

/// Rewrites the reproducers of the crashes found so far in `fuzz/regressions/` (files copied
/// there from `fuzz/artifacts/` are left alone).
fn regressions(image: &[u8], header_len: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    fs::create_dir_all(&dir).expect("create regressions dir");
    let write = |name: &str, bytes: &[u8]| fs::write(dir.join(name), bytes).expect("write");
    // `ImageHeader::image_len` adds the body length to the header length unchecked: with
    // `max_body_bytes` near `u64::MAX` the sum overflows (a panic with overflow checks).
    let mut overflow = image.to_vec();
    overflow[common::BODY_LEN_OFFSET..common::BODY_LEN_OFFSET + 8]
        .copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    common::reseal(&mut overflow, common::Reseal::Header);
    write("body_len_overflow.bin", &overflow);
    // The same without overflow checks: the sum wraps to exactly the input's length (a header
    // alone, body length 2^64 - 4), so `verify` slices the body as `[header_len..header_len - 4]`.
    let mut wraps = image[..header_len].to_vec();
    wraps[common::BODY_LEN_OFFSET..common::BODY_LEN_OFFSET + 8]
        .copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    common::reseal(&mut wraps, common::Reseal::Header);
    write("body_len_wraps_to_input_len.bin", &wraps);
    // Unbounded recursion in the derived `Deserialize`: 100 000 nested `Tree::Node`s (300 KB)
    // overflow the main thread's 8 MiB stack in the fuzz build (address sanitizer) and in a
    // debug build (which already fails at 10 000); a plain release build needs about
    // 1 000 000 (3 MB: `make_seeds --tree-depth 1000000 FILE`), a 2 MiB thread far fewer.
    write("tree_depth_100000.bin", &tree_image(100_000));
}

/// A `fuzz::Tree` image nested `depth` deep: `Node` (tag 1) `depth` times down the left,
/// every other child a `Leaf(0)` (tag 0, value 0).
fn tree_image(depth: usize) -> Vec<u8> {
    let image = capture(&Tree::Leaf(0)).unwrap();
    let (header, _) = common::split(&image);
    let mut raw = RawHeader::of(&header);
    raw.build_id = 0;
    let mut body = vec![1u8; depth];
    body.extend(std::iter::repeat_n([0u8, 0], depth + 1).flatten());
    raw.image(&body)
}

/// The v1 body of `State` with a `Counter` written in its v1 layout (a bare `u32`).
fn v1_body_with_old_counter(v1: &types::V1State) -> Vec<u8> {
    // Encode the v1 state, then swap the counter's encoding: it is the fields up to `counter`,
    // then `counter`, then the rest. Encode the parts separately to find the boundaries.
    let before = types::V1State {
        counter: Counter::default(),
        ..v1.clone()
    };
    let image = capture(&before).unwrap();
    let (_, body) = common::split(&image);
    // Counter::default() encodes as [0 (count), 0 (unit length)]; CounterV1 { count } as a
    // single varint. Find the prefix by encoding everything before the counter as a tuple.
    let prefix = postcard_prefix(v1);
    let mut out = body[..prefix].to_vec();
    let count = v1.counter.count as u32;
    let mut v = count;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out.extend_from_slice(&body[prefix + 2..]);
    out
}

/// The encoded length of the `V1State` fields before `counter`.
fn postcard_prefix(v1: &types::V1State) -> usize {
    let with_counter = |count: u64| {
        let state = types::V1State {
            counter: Counter {
                count,
                unit: String::new(),
            },
            ..v1.clone()
        };
        let image = capture(&state).unwrap();
        let (_, body) = common::split(&image);
        body.to_vec()
    };
    let a = with_counter(0);
    let b = with_counter(1);
    a.iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .expect("the counter differs")
}

fn with(table: &BTreeMap<String, u32>, name: &str, version: u32) -> Vec<(String, u32)> {
    let mut table = table.clone();
    table.insert(name.to_owned(), version);
    table.into_iter().collect()
}

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn write(&mut self, name: &str, bytes: &[u8]) {
        self.count += 1;
        let path = self.dir.join(format!("{:02}_{name}.bin", self.count));
        fs::write(&path, bytes).expect("write seed");
    }
}
