use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 2)]
struct Account {
    balance: i64,
    #[migratable(until = 3, default)]
    legacy_id: u32,
}

fn main() {}
