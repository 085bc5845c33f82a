use cosmic::Migratable;

#[derive(Migratable)]
struct Histogram {
    #[migratable(bulk)]
    buckets: [u32; 16],
}

fn main() {}
