use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 2)]
struct Solver {
    residual: f64,
    #[migratable(skip, since = 2)]
    scratch: Vec<f64>,
}

fn main() {}
