// A type that already derives serde keeps its own impls with `use_serde`.
use cosmic::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Migratable, Serialize, Deserialize, Debug, PartialEq)]
#[migratable(use_serde)]
#[serde(rename_all = "camelCase")]
struct Settings {
    verbose_output: bool,
    level: u8,
}

fn main() {
    let state = Settings {
        verbose_output: true,
        level: 3,
    };
    let bytes = cosmic::image::capture(&state).unwrap();
    let restored: Settings = cosmic::image::restore(&bytes).unwrap();
    assert_eq!(restored, state);
}
