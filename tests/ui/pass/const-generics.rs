// Const parameters are part of the type's wire name, and arrays of any length are fields
// (serde itself has impls only up to length 32), encoded as serde encodes arrays.
use cosmic::Migratable;

#[derive(Migratable, Debug, PartialEq)]
struct Ring<T, const N: usize> {
    slots: [T; N],
    head: usize,
}

#[derive(Migratable, Debug, PartialEq)]
struct Block {
    bytes: [u8; 64],
    matrix: [[f32; 2]; 2],
}

fn main() {
    let state = Ring {
        slots: [1u16, 2, 3, 4],
        head: 2,
    };
    let bytes = cosmic::image::capture(&state).unwrap();
    let restored: Ring<u16, 4> = cosmic::image::restore(&bytes).unwrap();
    assert_eq!(restored, state);
    assert!(cosmic::image::restore::<Ring<u16, 5>>(&bytes).is_err());
    assert_ne!(Ring::<u16, 4>::type_name(), Ring::<u16, 5>::type_name());

    // The same bytes as serde's encoding of an array.
    let serde_bytes = postcard::to_allocvec(&([1u16, 2, 3, 4], 2usize)).unwrap();
    assert_eq!(postcard::to_allocvec(&state).unwrap(), serde_bytes);

    let block = Block {
        bytes: [7; 64],
        matrix: [[1.0, 2.0], [3.0, 4.0]],
    };
    let bytes = cosmic::image::capture(&block).unwrap();
    assert_eq!(cosmic::image::restore::<Block>(&bytes).unwrap(), block);
}
