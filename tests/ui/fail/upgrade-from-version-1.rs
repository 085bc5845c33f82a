use cosmic::Migratable;

#[derive(Migratable)]
struct PointV1 {
    x: i32,
}

#[derive(Migratable)]
#[migratable(upgrade_from = PointV1)]
struct Point {
    x: i32,
    y: i32,
}

impl From<PointV1> for Point {
    fn from(old: PointV1) -> Self {
        Point { x: old.x, y: 0 }
    }
}

fn main() {}
