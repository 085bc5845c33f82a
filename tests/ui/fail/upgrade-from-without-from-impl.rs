use cosmic::Migratable;

#[derive(Migratable)]
struct PointV1 {
    x: i32,
}

#[derive(Migratable)]
#[migratable(version = 2, upgrade_from = PointV1)]
struct Point {
    x: i32,
    y: i32,
}

fn main() {}
