use cosmic::Migratable;
use std::cell::RefCell;

#[derive(Migratable)]
struct Journal {
    id: u32,
    entries: RefCell<Vec<String>>,
}

fn main() {}
