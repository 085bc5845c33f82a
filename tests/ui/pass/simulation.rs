// The example of the `Migratable` docs: a versioned struct with a nested enum.
use cosmic::Migratable;
use std::collections::BTreeMap;

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

fn main() {
    let state = Simulation {
        step: 3,
        grid: vec![0.0, 1.5],
        names: BTreeMap::from([("x".to_owned(), 1)]),
        phase: Phase::Run { rate: 0.5 },
        label: "demo".to_owned(),
    };
    let bytes = cosmic::image::capture(&state).unwrap();
    let restored: Simulation = cosmic::image::restore(&bytes).unwrap();
    assert_eq!(restored, state);
}
