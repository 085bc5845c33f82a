use cosmic::Migratable;
use std::rc::Rc;

#[derive(Migratable)]
struct Cache {
    hits: u64,
    shared: Rc<Vec<u8>>,
}

// Types and code that use `Cache` see no follow-on errors (no missing `Send`, `Serialize` or
// `Migratable` impls): the derive's error is the only one.
#[derive(Migratable)]
struct Service {
    cache: Cache,
}

fn main() {
    let service = Service {
        cache: Cache {
            hits: 0,
            shared: Rc::new(Vec::new()),
        },
    };
    let _ = cosmic::image::capture(&service);
    let _ = cosmic::image::restore::<Cache>(&[]);
}
