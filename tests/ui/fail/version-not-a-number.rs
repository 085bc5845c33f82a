use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = "2")]
struct Config {
    retries: u32,
}

fn main() {}
