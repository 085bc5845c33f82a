use cosmic::Migratable;

#[derive(Migratable)]
struct Greeting {
    count: u32,
    text: &'static str,
}

fn main() {}
