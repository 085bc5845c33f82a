use cosmic::Migratable;

#[derive(Migratable)]
struct Config {
    #[migratable(rename = "tries")]
    retries: u32,
}

fn main() {}
