//! Native images: plain-old-data fields stored as memory, read back only where the guard holds.
//!
//! Runs on every ISA CI reaches (x86-64 natively, aarch64 and s390x under QEMU): round trips of
//! `Pod` and checked element types and of bulk fields (raw in the host's byte order), refusal
//! on each field of the guard, and refusal of element bits that are not valid values.

use cosmic::bytemuck::{self, CheckedBitPattern, NoUninit, Pod, Zeroable};
use cosmic::image::{
    self, Arch, CaptureError, Encoding, Endian, ImageWriter, Isa, NativeMismatch, RestoreError,
};
use cosmic::Migratable;
use cosmic_tests::{body, header_len, reseal_body, reseal_header, BUILD_ID_OFFSET, CHECKSUM_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Migratable, Pod, Zeroable)]
#[bytemuck(crate = "cosmic::bytemuck")]
#[repr(C)]
struct Particle {
    position: [f32; 3],
    velocity: [f32; 3],
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Migratable)]
#[migratable(name = "native_image::Simulation")]
struct Simulation {
    step: u64,
    label: String,
    #[migratable(native)]
    particles: Vec<Particle>,
    temperatures: Vec<f64>,
}

/// The same state without `native`, under the same wire name: its portable images must be
/// the same bytes.
mod plain {
    use super::Particle;
    use cosmic::Migratable;

    #[derive(Debug, Clone, PartialEq, Migratable)]
    #[migratable(name = "native_image::Simulation")]
    pub(super) struct Simulation {
        pub(super) step: u64,
        pub(super) label: String,
        pub(super) particles: Vec<Particle>,
        pub(super) temperatures: Vec<f64>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Migratable, NoUninit, CheckedBitPattern)]
#[bytemuck(crate = "cosmic::bytemuck")]
#[repr(u8)]
enum Kind {
    Rock = 1,
    Water = 2,
    Air = 7,
}

#[derive(Debug, Clone, Copy, PartialEq, Migratable, NoUninit, CheckedBitPattern)]
#[bytemuck(crate = "cosmic::bytemuck")]
#[repr(C)]
struct Tile {
    value: u32,
    letter: char,
    kind: Kind,
    alive: bool,
    spare: u16,
}

#[derive(Debug, Clone, PartialEq, Migratable)]
struct Grid {
    #[migratable(native)]
    tiles: Vec<Tile>,
}

fn simulation(count: usize) -> Simulation {
    Simulation {
        step: 41,
        label: "bench".into(),
        particles: (0..count)
            .map(|i| Particle {
                position: [i as f32, -(i as f32), 0.5],
                velocity: [1.0, 2.0, i as f32 * 0.25],
                id: i as u64 * 3 + 1,
            })
            .collect(),
        temperatures: (0..count).map(|i| i as f64 / 7.0).collect(),
    }
}

fn grid() -> Grid {
    let kinds = [Kind::Rock, Kind::Water, Kind::Air];
    Grid {
        tiles: (0..500u32)
            .map(|i| Tile {
                value: i * 11,
                letter: char::from_u32(0x41 + i % 26).unwrap(),
                kind: kinds[i as usize % 3],
                alive: i % 2 == 0,
                spare: 0,
            })
            .collect(),
    }
}

fn native_of<T: Migratable>(state: &T) -> Vec<u8> {
    let mut writer = ImageWriter::new();
    writer
        .capture_native(state)
        .unwrap_or_else(|error| panic!("native capture failed: {error}"));
    writer.take()
}

fn native_with_isa<T: Migratable>(state: &T, isa: Isa) -> Vec<u8> {
    let mut writer = ImageWriter::with_isa(isa);
    writer
        .capture_native(state)
        .unwrap_or_else(|error| panic!("native capture failed: {error}"));
    writer.take()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[test]
fn a_native_image_holds_the_elements_memory_and_restores_exactly() {
    let state = simulation(3000);
    let bytes = native_of(&state);
    let header = image::inspect(&bytes).unwrap();
    assert_eq!(header.encoding, Encoding::Native);
    assert_eq!(header.isa, Isa::host());
    assert_ne!(header.layout, 0);
    let memory: &[u8] = bytemuck::cast_slice(&state.particles);
    assert!(
        find(body(&bytes), memory).is_some(),
        "the particles' memory is in the body as it is"
    );
    let floats: &[u8] = bytemuck::cast_slice(&state.temperatures);
    assert!(
        find(body(&bytes), floats).is_some(),
        "a bulk field is raw memory in the host's byte order"
    );
    let back: Simulation = image::restore(&bytes).unwrap();
    assert_eq!(back, state);
}

#[test]
fn marking_a_field_native_changes_neither_portable_images_nor_the_fingerprint() {
    let state = simulation(200);
    let twin = plain::Simulation {
        step: state.step,
        label: state.label.clone(),
        particles: state.particles.clone(),
        temperatures: state.temperatures.clone(),
    };
    let portable = image::capture(&state).unwrap();
    assert_eq!(portable, image::capture(&twin).unwrap());
    let back: plain::Simulation = image::restore(&portable).unwrap();
    assert_eq!(back, twin);
    let back: Simulation = image::restore(&portable).unwrap();
    assert_eq!(back, state);
    let native = image::inspect(&native_of(&state)).unwrap();
    assert_eq!(
        native.fingerprint,
        image::inspect(&portable).unwrap().fingerprint
    );
}

#[test]
fn checked_elements_round_trip_and_invalid_bits_are_refused_with_the_element() {
    let state = grid();
    let bytes = native_of(&state);
    let back: Grid = image::restore(&bytes).unwrap();
    assert_eq!(back, state);
    // Found by its wire name, as a receiving host decodes it.
    let any = image::restore_any(&bytes).unwrap();
    assert_eq!(any.header.encoding, Encoding::Native);
    assert_eq!(*any.state.downcast::<Grid>().unwrap(), state);

    let memory: Vec<u8> = bytemuck::cast_slice::<Tile, u8>(&state.tiles).to_vec();
    let start = header_len(&bytes) + find(body(&bytes), &memory).expect("tiles are raw");
    let size = size_of::<Tile>();
    let offsets = [
        (
            "a char that is no scalar value",
            4usize,
            &0xD800u32.to_ne_bytes()[..],
        ),
        ("an enum tag of no variant", 8, &[3u8][..]),
        ("a bool that is neither 0 nor 1", 9, &[2u8][..]),
    ];
    for (what, offset, bad) in offsets {
        let mut broken = bytes.clone();
        let at = start + 17 * size + offset;
        broken[at..at + bad.len()].copy_from_slice(bad);
        reseal_body(&mut broken);
        match image::restore::<Grid>(&broken) {
            Err(RestoreError::NativeInvalid { type_name, reason }) => {
                assert!(type_name.ends_with("Grid"), "{type_name}");
                assert!(
                    reason.contains("element 17 of 500") && reason.contains("Tile"),
                    "{what}: {reason}"
                );
            }
            other => panic!("{what}: expected NativeInvalid, got {other:?}"),
        }
    }
}

#[test]
fn a_byte_count_that_is_not_whole_elements_is_refused() {
    let state = Grid {
        tiles: grid().tiles[..3].to_vec(),
    };
    let bytes = native_of(&state);
    let body_start = header_len(&bytes);
    // The body is the varint byte count (3 tiles of 12 bytes) then the memory: claim one byte
    // less and drop one, so the framing stays consistent and only the element count is wrong.
    assert_eq!(size_of::<Tile>(), 12);
    assert_eq!(bytes[body_start], 36);
    let mut body = body(&bytes).to_vec();
    body[0] = 35;
    body.pop();
    let broken = cosmic_tests::with_body(&bytes, &body);
    match image::restore::<Grid>(&broken) {
        Err(RestoreError::NativeInvalid { reason, .. }) => {
            assert!(reason.contains("not a whole number"), "{reason}")
        }
        other => panic!("expected NativeInvalid, got {other:?}"),
    }
}

/// Every field of the guard, changed alone, gets the image refused before decoding, naming it.
#[test]
fn a_native_image_from_another_kind_of_machine_or_build_is_never_decoded() {
    let state = simulation(10);
    let host = Isa::host();
    let other_arch = if host.arch == Arch::X86_64 {
        Arch::Aarch64
    } else {
        Arch::X86_64
    };
    let other_endian = match host.endian {
        Endian::Little => Endian::Big,
        Endian::Big => Endian::Little,
    };
    let cases = [
        (
            Isa {
                arch: other_arch,
                ..host
            },
            NativeMismatch::Arch {
                image: other_arch,
                host: host.arch,
            },
            "it was written on",
        ),
        (
            Isa {
                endian: other_endian,
                ..host
            },
            NativeMismatch::Endian {
                image: other_endian,
                host: host.endian,
            },
            "-endian",
        ),
        (
            Isa {
                pointer_width: 16,
                ..host
            },
            NativeMismatch::PointerWidth {
                image: 16,
                host: host.pointer_width,
            },
            "16-bit pointers",
        ),
        (
            Isa {
                build_id: host.build_id ^ 1,
                ..host
            },
            NativeMismatch::BuildId {
                image: host.build_id ^ 1,
                host: host.build_id,
            },
            "written by build",
        ),
    ];
    for (isa, expected, words) in cases {
        let bytes = native_with_isa(&state, isa);
        match image::restore::<Simulation>(&bytes) {
            Err(error @ RestoreError::NativeMismatch { .. }) => {
                let RestoreError::NativeMismatch { mismatch, .. } = &error else {
                    unreachable!()
                };
                assert_eq!(*mismatch, expected);
                let text = cosmic::ErrorChain(&error).to_string();
                assert!(text.contains(words), "{text}");
                assert!(text.contains("cannot be read on this host"), "{text}");
            }
            other => panic!("{expected:?}: expected NativeMismatch, got {other:?}"),
        }
    }

    // A writer whose build id is unknown cannot capture natively at all...
    let mut unknown = ImageWriter::with_isa(Isa {
        build_id: 0,
        ..host
    });
    assert!(matches!(
        unknown.capture_native(&state),
        Err(CaptureError::NativeUnavailable { .. })
    ));
    // ...and an image that says so anyway is refused.
    let mut bytes = native_of(&state);
    bytes[BUILD_ID_OFFSET..BUILD_ID_OFFSET + 8].copy_from_slice(&0u64.to_le_bytes());
    reseal_header(&mut bytes);
    assert!(matches!(
        image::restore::<Simulation>(&bytes),
        Err(RestoreError::NativeMismatch {
            mismatch: NativeMismatch::UnknownWriterBuild,
            ..
        })
    ));

    // The layout fingerprint: the last eight bytes before the header's checksum.
    let mut bytes = native_of(&state);
    let at = header_len(&bytes) - CHECKSUM_LEN - 8;
    bytes[at] ^= 0x40;
    reseal_header(&mut bytes);
    match image::restore::<Simulation>(&bytes) {
        Err(RestoreError::NativeMismatch {
            mismatch: NativeMismatch::Layout { .. },
            ..
        }) => {}
        other => panic!("expected a layout mismatch, got {other:?}"),
    }
}

#[test]
fn state_without_native_fields_captures_natively_too() {
    let values: Vec<u64> = (0..1000).collect();
    let bytes = native_of(&values);
    assert_eq!(image::inspect(&bytes).unwrap().encoding, Encoding::Native);
    let back: Vec<u64> = image::restore(&bytes).unwrap();
    assert_eq!(back, values);
}

mod mutations {
    //! The native decoder under random damage: bytes of the body (element memory, byte
    //! counts, the fields around them) overwritten, inserted and removed, with both checksums
    //! re-sealed so that every image reaches the decoder. No outcome is a panic; a restore that
    //! succeeds gives back a valid state; an untouched image restores exactly.

    use super::*;
    use cosmic_tests::with_body;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::Config;

    #[derive(Debug, Clone)]
    enum Damage {
        Set(Index, u8),
        Insert(Index, Vec<u8>),
        Remove(Index, usize),
        Truncate(Index),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            4 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Damage::Set(at, byte)),
            1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..12))
                .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
            1 => (any::<Index>(), 1usize..16).prop_map(|(at, n)| Damage::Remove(at, n)),
            1 => any::<Index>().prop_map(Damage::Truncate),
        ]
    }

    fn apply(body: &mut Vec<u8>, damage: &Damage) {
        if body.is_empty() {
            return;
        }
        match damage {
            Damage::Set(at, byte) => {
                let at = at.index(body.len());
                body[at] = *byte;
            }
            Damage::Insert(at, bytes) => {
                let at = at.index(body.len() + 1);
                body.splice(at..at, bytes.iter().copied());
            }
            Damage::Remove(at, n) => {
                let at = at.index(body.len());
                let end = (at + n).min(body.len());
                body.drain(at..end);
            }
            Damage::Truncate(at) => body.truncate(at.index(body.len())),
        }
    }

    fn tiles() -> impl Strategy<Value = Grid> {
        proptest::collection::vec(
            (any::<u32>(), any::<char>(), 0..3usize, any::<bool>()),
            0..40,
        )
        .prop_map(|tiles| Grid {
            tiles: tiles
                .into_iter()
                .map(|(value, letter, kind, alive)| Tile {
                    value,
                    letter,
                    kind: [Kind::Rock, Kind::Water, Kind::Air][kind],
                    alive,
                    spare: 0,
                })
                .collect(),
        })
    }

    proptest! {
        #![proptest_config(Config { cases: 512, ..Config::default() })]

        #[test]
        fn damaged_native_bodies_are_refused_or_decode_to_valid_state(
            grid in tiles(),
            damages in proptest::collection::vec(damage(), 0..4),
        ) {
            let image = native_of(&grid);
            let mut body = body(&image).to_vec();
            for damage in &damages {
                apply(&mut body, damage);
            }
            let damaged = with_body(&image, &body);
            match image::restore::<Grid>(&damaged) {
                // Every decoded value is a valid `Tile` (its checks ran), or the bytes were
                // left as they were.
                Ok(back) => {
                    if damages.is_empty() {
                        prop_assert_eq!(back, grid);
                    }
                }
                Err(
                    RestoreError::NativeInvalid { .. }
                    | RestoreError::Decode { .. }
                    | RestoreError::BodyTrailingBytes { .. },
                ) => {}
                Err(other) => prop_assert!(false, "unexpected error: {other:?}"),
            }
            prop_assert!(image::inspect(&damaged).is_ok());
        }

        #[test]
        fn damaged_particle_bodies_never_panic(
            count in 0usize..64,
            damages in proptest::collection::vec(damage(), 1..4),
        ) {
            let image = native_of(&simulation(count));
            let mut body = body(&image).to_vec();
            for damage in &damages {
                apply(&mut body, damage);
            }
            let damaged = with_body(&image, &body);
            let _ = image::restore::<Simulation>(&damaged);
            let _ = image::restore_any(&damaged);
        }
    }
}
