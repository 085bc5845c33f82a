//! Moves choose their encoding: native between hosts of one kind and build (here, two hosts in
//! one process), portable when told to. The task's `native` field crosses as memory and the
//! result is bit-exact; the destination writes a portable checkpoint at once, so that the
//! store never holds only a native image of the task for long. (Moves between unlike machines,
//! which must be portable, are in `migrate_processes`' cross-ISA test.)

use std::time::Duration;

use cosmic::bytemuck::{Pod, Zeroable};
use cosmic::checkpoint::FileStore;
use cosmic::image::{self, Encoding};
use cosmic::prelude::*;
use cosmic::{ClusterKey, TaskStatus};
use cosmic_tests::counter::TempDir;
use cosmic_tests::identity;

const KEY: &[u8] = b"native-moves test cluster key, 32+ bytes long";

#[derive(Debug, Clone, Copy, PartialEq, Migratable, Pod, Zeroable)]
#[bytemuck(crate = "cosmic::bytemuck")]
#[repr(C)]
struct Particle {
    position: [f32; 3],
    velocity: [f32; 3],
    id: u64,
}

/// Particles drifting for `total` steps; the output folds in every particle's bits.
#[derive(Debug, Clone, PartialEq, Migratable)]
struct Swarm {
    total: u64,
    done: u64,
    #[migratable(native)]
    particles: Vec<Particle>,
}

impl Swarm {
    fn new(count: usize, total: u64) -> Swarm {
        Swarm {
            total,
            done: 0,
            particles: (0..count)
                .map(|i| Particle {
                    position: [i as f32, 0.0, -(i as f32)],
                    velocity: [0.25, (i % 7) as f32 * 0.125, 1.0 / (i as f32 + 1.0)],
                    id: i as u64,
                })
                .collect(),
        }
    }

    fn advance(&mut self) {
        for particle in &mut self.particles {
            for axis in 0..3 {
                particle.position[axis] += particle.velocity[axis];
                particle.velocity[axis] *= 0.999;
            }
        }
        self.done += 1;
    }

    fn digest(&self) -> u64 {
        self.particles.iter().fold(self.done, |digest, particle| {
            let bits = cosmic::bytemuck::bytes_of(particle);
            bits.iter().fold(digest, |d, byte| {
                (d ^ *byte as u64).wrapping_mul(0x100_0000_01b3)
            })
        })
    }
}

#[async_trait]
impl Task for Swarm {
    type Output = u64;

    async fn step(&mut self, _: &mut StepContext) -> Result<Step<u64>, TaskError> {
        self.advance();
        tokio::time::sleep(Duration::from_millis(3)).await;
        if self.done >= self.total {
            return Ok(Step::Done(self.digest()));
        }
        Ok(Step::Continue)
    }
}

fn expected(count: usize, total: u64) -> u64 {
    let mut swarm = Swarm::new(count, total);
    while swarm.done < total {
        swarm.advance();
    }
    swarm.digest()
}

struct Host {
    rt: Runtime,
    dir: TempDir,
}

async fn host(name: &str, native_moves: bool) -> Host {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), name);
    let rt = Runtime::builder()
        .host(name)
        .store(FileStore::open(dir.path()).unwrap())
        .checkpoint(Policy::every_steps(1_000_000))
        .listen("127.0.0.1:0")
        .cluster_key(ClusterKey::from_bytes(KEY).unwrap())
        .migration_timeout(Duration::from_secs(10))
        .native_moves(native_moves)
        .register::<Swarm>()
        .build()
        .await
        .unwrap();
    Host { rt, dir }
}

fn connect(a: &Host, b: &Host) {
    a.rt.add_peer(b.rt.host(), b.rt.local_addr().unwrap())
        .unwrap();
    b.rt.add_peer(a.rt.host(), a.rt.local_addr().unwrap())
        .unwrap();
    identity::introduce(&a.rt, &b.rt);
    identity::introduce(&b.rt, &a.rt);
}

/// The encodings of the images of `Swarm` in a host's store.
fn stored_encodings(dir: &std::path::Path) -> Vec<Encoding> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(header) = std::fs::read(&path)
                .map_err(drop)
                .and_then(|bytes| image::inspect(&bytes).map_err(drop))
            {
                if header.type_name.ends_with("Swarm") {
                    found.push(header.encoding);
                }
            }
        }
    }
    found
}

async fn move_once(native_moves: bool) -> (Host, Host) {
    let (count, total) = (20_000, 300);
    let alpha = host("alpha", native_moves).await;
    let beta = host("beta", true).await;
    connect(&alpha, &beta);
    let handle = alpha.rt.spawn(Swarm::new(count, total)).await.unwrap();
    while handle.steps_completed() < 20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.migrate_to("beta").await.unwrap();
    assert_eq!(handle.status(), TaskStatus::Moved("beta".into()));
    if native_moves {
        // The arrival was stored as it came (native); a portable checkpoint follows at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let encodings = stored_encodings(beta.dir.path());
            if encodings.contains(&Encoding::Portable) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no portable checkpoint on beta after a native arrival: {encodings:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(handle.join().await.unwrap(), expected(count, total));
    (alpha, beta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_between_hosts_of_one_kind_and_build_is_native_and_bit_exact() {
    let (alpha, beta) = move_once(true).await;
    let stats = alpha.rt.stats();
    assert_eq!((stats.moved_native, stats.moved_portable), (1, 0));
    assert_eq!(beta.rt.stats().moved_native, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_told_not_to_moves_portable() {
    let (alpha, _beta) = move_once(false).await;
    let stats = alpha.rt.stats();
    assert_eq!((stats.moved_native, stats.moved_portable), (0, 1));
}
