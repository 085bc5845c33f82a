use cosmic::Migratable;

#[derive(Migratable)]
struct Pipeline {
    stage: u32,
    filter: Box<dyn Fn(f64) -> bool + Send>,
}

fn main() {}
