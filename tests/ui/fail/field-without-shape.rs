use cosmic::Migratable;

struct Handle {
    id: u32,
}

#[derive(Migratable)]
struct Job {
    attempts: u32,
    handle: Handle,
}

fn main() {
    let job = Job {
        attempts: 0,
        handle: Handle { id: 1 },
    };
    let _ = cosmic::image::capture(&job);
}
