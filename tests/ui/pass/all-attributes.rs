// Every attribute, used as documented.
use cosmic::Migratable;

#[derive(Migratable, Debug, PartialEq)]
#[migratable(version = 2, name = "example.Old")]
struct OldJob {
    id: u64,
    #[migratable(since = 2, default = "default_priority")]
    priority: u8,
}

fn default_priority() -> u8 {
    5
}

#[derive(Migratable, Debug, PartialEq)]
#[migratable(version = 4, name = "example.Job", upgrade_from = OldJob)]
struct Job {
    id: u64,
    priority: u8,
    #[migratable(since = 3, until = 4, default)]
    legacy_owner: String,
    #[migratable(since = 3, default)]
    samples: Vec<f64>,
    #[migratable(bulk)]
    counts: Vec<u32>,
    #[migratable(opaque = "std.time.SystemTime.v1")]
    created: std::time::SystemTime,
    #[migratable(skip)]
    cache: Vec<String>,
    #[migratable(skip, default = "default_scratch")]
    scratch: Vec<u8>,
}

fn default_scratch() -> Vec<u8> {
    Vec::with_capacity(64)
}

impl From<OldJob> for Job {
    fn from(old: OldJob) -> Self {
        Job {
            id: old.id,
            priority: old.priority,
            legacy_owner: String::new(),
            samples: Vec::new(),
            counts: Vec::new(),
            created: std::time::UNIX_EPOCH,
            cache: Vec::new(),
            scratch: default_scratch(),
        }
    }
}

fn main() {
    let state = Job {
        id: 9,
        priority: 1,
        legacy_owner: String::new(),
        samples: vec![0.5],
        counts: vec![1, 2, 3],
        created: std::time::UNIX_EPOCH,
        cache: vec!["dropped".to_owned()],
        scratch: Vec::new(),
    };
    let bytes = cosmic::image::capture(&state).unwrap();
    let restored: Job = cosmic::image::restore(&bytes).unwrap();
    assert_eq!(restored.id, 9);
    assert_eq!(restored.counts, vec![1, 2, 3]);
    assert!(restored.cache.is_empty());
    assert_eq!(restored.scratch.capacity(), 64);
}
