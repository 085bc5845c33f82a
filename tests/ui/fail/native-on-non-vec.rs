use cosmic::Migratable;

#[derive(Migratable)]
struct Grid {
    #[migratable(native)]
    cells: [u32; 4],
}

fn main() {}
