use cosmic::Migratable;
use std::rc::Rc;

#[derive(Migratable)]
#[migratable(version = 0)]
struct Worker {
    shared: Rc<String>,
    #[migratable(bogus)]
    steps: u64,
}

fn main() {}
