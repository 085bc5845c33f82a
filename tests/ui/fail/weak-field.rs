use cosmic::Migratable;
use std::rc::Weak;

#[derive(Migratable)]
struct Node {
    value: i64,
    parent: Weak<u8>,
}

fn main() {}
