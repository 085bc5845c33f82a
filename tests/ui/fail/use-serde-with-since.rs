use cosmic::Migratable;
use serde::{Deserialize, Serialize};

#[derive(Migratable, Serialize, Deserialize)]
#[migratable(use_serde, version = 2)]
struct Settings {
    verbose: bool,
    #[migratable(since = 2, default)]
    #[serde(default)]
    theme: String,
}

fn main() {}
