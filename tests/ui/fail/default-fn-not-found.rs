use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 2)]
struct Account {
    balance: i64,
    #[migratable(since = 2, default = "default_currency")]
    currency: String,
}

fn main() {}
