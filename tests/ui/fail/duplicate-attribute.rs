use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 2)]
#[migratable(version = 3)]
struct Config {
    retries: u32,
}

fn main() {}
