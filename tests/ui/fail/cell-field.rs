use cosmic::Migratable;
use std::cell::Cell;

#[derive(Migratable)]
struct Counter {
    name: String,
    count: Cell<u64>,
}

fn main() {}
