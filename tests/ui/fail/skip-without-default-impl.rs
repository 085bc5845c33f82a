use cosmic::Migratable;

struct Connection;

#[derive(Migratable)]
struct Client {
    requests: u64,
    #[migratable(skip)]
    connection: Connection,
}

fn main() {}
