use cosmic::Migratable;

#[derive(Migratable)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
