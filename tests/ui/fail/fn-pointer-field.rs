use cosmic::Migratable;

#[derive(Migratable)]
struct Scheduler {
    tick: u64,
    on_tick: fn(u64) -> u64,
}

fn main() {}
