use cosmic::Migratable;
use std::time::Instant;

#[derive(Migratable)]
struct Timer {
    laps: u32,
    started: Instant,
}

fn main() {}
