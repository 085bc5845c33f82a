use cosmic::Migratable;
use std::fs::File;

#[derive(Migratable)]
struct Logger {
    lines: u64,
    output: File,
}

fn main() {}
