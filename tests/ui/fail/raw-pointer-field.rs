use cosmic::Migratable;

#[derive(Migratable)]
struct Cursor {
    position: u64,
    next: *const u8,
}

fn main() {}
