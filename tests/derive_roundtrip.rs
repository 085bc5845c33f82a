//! Round trips of derived types through images: every shape the derive supports.

use std::collections::BTreeMap;

use cosmic::image;
use cosmic::Migratable;

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

#[test]
fn simulation_round_trips() {
    let sim = Simulation {
        step: 7,
        grid: vec![1.5, -2.25, f64::NAN.copysign(1.0)],
        names: [("a".to_owned(), 1), ("b".to_owned(), 2)].into(),
        phase: Phase::Run { rate: 0.5 },
        label: "hello".into(),
    };
    let bytes = image::capture(&sim).unwrap();
    let back: Simulation = image::restore(&bytes).unwrap();
    assert_eq!(back.step, 7);
    assert_eq!(back.names, sim.names);
    assert_eq!(back.phase, sim.phase);
    assert_eq!(back.label, "hello");
    assert_eq!(back.grid[..2], sim.grid[..2]);
    assert_eq!(back.grid[2].to_bits(), sim.grid[2].to_bits());
}
