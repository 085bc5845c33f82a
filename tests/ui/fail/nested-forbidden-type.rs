use cosmic::Migratable;
use std::rc::Rc;

#[derive(Migratable)]
struct Inventory {
    count: u32,
    items: Vec<Option<Rc<str>>>,
}

fn main() {}
