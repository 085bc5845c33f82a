use cosmic::Migratable;
use std::sync::Arc;

#[derive(Migratable)]
struct Model {
    epoch: u32,
    weights: Arc<Vec<f32>>,
}

fn main() {}
