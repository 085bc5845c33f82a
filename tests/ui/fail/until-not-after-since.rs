use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 3)]
struct Account {
    balance: i64,
    #[migratable(since = 2, until = 2, default)]
    promo_code: String,
}

fn main() {}
