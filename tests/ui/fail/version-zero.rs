use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 0)]
struct Config {
    retries: u32,
}

fn main() {}
