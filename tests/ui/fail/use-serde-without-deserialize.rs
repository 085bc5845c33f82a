use cosmic::Migratable;

#[derive(Migratable, serde::Serialize)]
#[migratable(use_serde)]
struct Settings {
    verbose: bool,
}

fn main() {}
