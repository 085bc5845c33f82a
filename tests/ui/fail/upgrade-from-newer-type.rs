use cosmic::Migratable;

#[derive(Migratable)]
#[migratable(version = 3)]
struct PointV3 {
    x: i32,
}

#[derive(Migratable)]
#[migratable(version = 2, upgrade_from = PointV3)]
struct Point {
    x: i32,
    y: i32,
}

impl From<PointV3> for Point {
    fn from(old: PointV3) -> Self {
        Point { x: old.x, y: 0 }
    }
}

fn main() {}
