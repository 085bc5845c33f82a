// `crate = "..."` names the facade by another path (here, through a re-export).
mod reexport {
    pub use cosmic as state_machine;
}

#[derive(cosmic::Migratable, Debug, PartialEq)]
#[migratable(crate = "::cosmic")]
struct Absolute {
    value: u32,
}

#[derive(cosmic::Migratable, Debug, PartialEq)]
#[migratable(crate = "crate::reexport::state_machine")]
enum Renamed {
    A(Absolute),
    B,
}

fn main() {
    let state = Renamed::A(Absolute { value: 4 });
    let bytes = cosmic::image::capture(&state).unwrap();
    let restored: Renamed = cosmic::image::restore(&bytes).unwrap();
    assert_eq!(restored, state);
}
