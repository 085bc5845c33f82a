use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 2)]
struct Account {
    balance: i64,
    #[migratable(since = 3, default)]
    currency: String,
}

fn main() {}
