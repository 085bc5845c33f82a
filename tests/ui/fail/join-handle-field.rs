use cosmic::Migratable;
use std::thread::JoinHandle;

#[derive(Migratable)]
struct Supervisor {
    restarts: u32,
    worker: JoinHandle<()>,
}

fn main() {}
