use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 2)]
enum Phase {
    Warmup,
    #[migratable(since = 2)]
    Cooldown,
}

fn main() {}
