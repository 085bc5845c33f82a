//! Speed of moving tasks between hosts against their physical baselines.
//!
//! `cargo bench -p cosmic --bench migrate [-- --mib N --tasks N --rounds N --only SUBSTRING]`
//!
//! Two runtimes in this process, `alpha` and `beta` (three in `under-attack`), are hosts that
//! know each other and talk over the secure channel on 127.0.0.1. Every case times the project's operation and its
//! baseline in this process, interleaved (rotating which goes first each round), after one
//! untimed warm-up round, and prints the medians in one line per case:
//!
//! `<bench>/<case>: bytes=<n> median=<seconds>s baseline=<name> baseline_median=<seconds>s ratio=<x>`
//!
//! followed on the same line by extra `key=value` pairs (among them `paired_ratio`, the median of
//! the ratios of samples taken in the same round, less disturbed by load that comes and goes
//! on a shared machine), and by a `<bench>/<case> detail:` line with the spread (min..max) of
//! each side. Everything that is timed runs on a worker of the 2-worker tokio runtime (also
//! the baselines' clients), timed inside the worker task.
//!
//! - `migrate/small`: `TaskHandle::migrate_to` of a paused task with 1 KiB of state (a bulk
//!   `Vec<u8>`), alpha to beta, then beta to alpha, and so on, both hosts with a
//!   `MemoryStore`; each call returns once the move is committed and the peer answered that
//!   the task runs there. The task arrives running; it is paused again on its new host
//!   outside the timing. Baseline: one round trip of the image's size over a raw tokio TCP
//!   connection on loopback (send the request, read a reply of the same size from an echo
//!   task), kept open like the runtime's channels. Each round moves the task 20 times and does
//!   as many round trips. Also timed in the same rounds: one round trip of the same bytes over
//!   a `SecureChannel` (`send_bytes`, then `recv_bytes` of the echo), the unit a hand-off is
//!   made of (offer, image, decision: three of them, and the stores' work), and the decode of
//!   the image on tokio's blocking pool (`spawn_blocking`), as the destination does it. A move
//!   wakes several threads (the task's driver, the peer's server, the blocking pool); on a VM
//!   whose other vCPU is idle each wake-up costs tens of microseconds more than on a busy one,
//!   so this median can be twice as high on an idle machine as on a loaded one.
//! - `migrate/small-durable`: the same moves with a `FileStore` on each host (in a folder
//!   under `CARGO_TARGET_TMPDIR`), where the hand-off's records are fsynced, 5 moves a round.
//!   Same baseline; also timed in the same rounds, one `File::create` + `write_all` +
//!   `sync_all` of the image in the same folder (`write_fsync_median`), to say how many fsyncs
//!   a move costs.
//! - `migrate/large-256m`: the same with 256 MiB of state (`--mib`), one move per round, over
//!   the secure channel, `MemoryStore` on both sides (no disk). Baseline: a raw tokio TCP send
//!   of the image's bytes over loopback in 256 KiB writes, timed until the receiver, reading
//!   into a reused buffer, has all of them. Also timed in the same rounds, to split the cost:
//!   the capture alone (`ImageWriter::capture` + `take`, as the driver does), the image's
//!   verification alone (`image::inspect`, done by the source after the capture and by the
//!   destination before the decode), the same bytes through a `SecureChannel` alone
//!   (`send_bytes` into `recv_into` a new buffer of the image's size, as the destination
//!   receives) and the decode alone (`image::restore`, which verifies once more); `parts_sum`
//!   adds them up as a move does them, `rest` is the move's median beyond it. Memory: `VmHWM`
//!   is reset before each move; `peak_mib` is the highest it reached during a move, `growth`
//!   how far above the resident size before the move (in MiB and in copies of the image).
//! - `migrate/large-256m-native`: the same between hosts of one kind and build (two runtimes
//!   in this process), for a task whose 256 MiB are a `#[migratable(native)]` `Vec` of
//!   32-byte particles: the move sends a native image (the memory as it is). `large-256m`
//!   itself is portable (hosts built with `native_moves(false)`): its `Vec<u8>` is raw bytes
//!   in either encoding.
//! - `migrate/drain-1000`: `Runtime::migrate_to` drains `--tasks` (1000) paused small tasks
//!   from alpha to beta, 16 at a time (`drain_concurrency`); then they are paused on beta and
//!   drained back the same way (a second sample of the round). Baseline: as many raw TCP round
//!   trips of the image's size, over 16 connections used at once. 3 rounds.
//! - `migrate/under-attack`: an honest small move to a host under attack by peers without the
//!   key. Three hosts, `alpha` (the source), `beta` (under attack) and `gamma` (idle), each
//!   with a `MemoryStore` and built with `reuse_peer_connections(false)`, so that every move
//!   opens a fresh connection and handshake (TCP connect, Noise, hellos with the host keys'
//!   signatures). The attack: 1,000 connections to beta's listening address, half silent,
//!   half trickling a byte every 100 ms, each reconnecting 100 ms after beta closed it, from
//!   a tokio runtime of their own (one thread, `attack-worker`), with `RLIMIT_NOFILE` raised
//!   (the limit is printed); the timing starts once every attacker connected and the attack
//!   ran 2 s more. Each round moves the paused task (1 KiB of state) from alpha to beta 20
//!   times, and from alpha to gamma as many times, each move followed by an untimed move
//!   back to alpha; the baseline is the move to the idle host (`move-to-idle-host`). Also
//!   timed in the same rounds: a bare `SecureChannel::connect` as alpha to beta and to gamma
//!   (`handshake_ratio`). Extra pairs: the connections the attack opened per second while
//!   timed and how many it held at the end, the moves that failed (each printed; its sample
//!   counts as infinitely slow, and it is not retried), and the CPU, in cores, used by the
//!   attack's threads and by the rest of the process (the hosts) while timed and during the
//!   2 s before (`settle_*`, no moves: what the attack alone costs beta), the connections
//!   the kernel dropped from full listen queues while timed (`listen_overflows`, counted for
//!   the whole machine: a dropped SYN costs its sender a 1 s retransmission); `p90` of both
//!   sides; and, timed before the attack starts (5 rounds of the same moves, both
//!   destinations pooled, not interleaved with the rest), `before_attack_median`, to show
//!   what the attack costs the whole machine, the idle host included. 40 rounds.
//!
//! `--rounds` sets the number of timed rounds of every case selected.

#[path = "common/mod.rs"]
mod common;

use common::{
    median, paired_ratio, quantile, release_free_memory, reset_peak_memory, rounds, spread,
    status_kib,
};

use std::fs::{self, File};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmic::bytemuck::{Pod, Zeroable};
use cosmic::image::{Encoding, ImageWriter};
use cosmic::prelude::*;
use cosmic::transport::{
    ChannelConfig, Credentials, HostKey, NodeName, SecureChannel, SecureListener, TrustedPeers,
};
use cosmic::{CheckpointStore, ClusterKey, FileStore, MemoryStore, TaskId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

const KEY: &[u8] = b"migrate bench cluster key, at least 32 bytes long";
const HOSTS: [&str; 2] = ["alpha", "beta"];
/// State of the small tasks, in bytes.
const SMALL_STATE: usize = 1024;
/// How many tasks a drain moves at once, and the baseline's connections.
const DRAIN_CONCURRENCY: usize = 16;
/// The size of the baseline's writes in `large`.
const RAW_WRITE: usize = 256 << 10;

// ---- the task ---------------------------------------------------------------------------

/// A task that naps in each step and never ends; `data` (a `Vec<u8>`, encoded in bulk) is
/// its size.
#[derive(Migratable, Debug, Clone, PartialEq)]
struct Mover {
    id: u64,
    step: u64,
    /// How long each step sleeps, in milliseconds.
    nap_ms: u64,
    data: Vec<u8>,
}

impl Mover {
    fn new(id: u64, bytes: usize, nap_ms: u64) -> Mover {
        Mover {
            id,
            step: 0,
            nap_ms,
            data: (0..bytes)
                .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
                .collect(),
        }
    }
}

#[async_trait]
impl Task for Mover {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        tokio::time::sleep(Duration::from_millis(self.nap_ms)).await;
        if !self.data.is_empty() {
            let at = self.step as usize % self.data.len();
            self.data[at] = self.data[at].wrapping_add(1);
        }
        self.step += 1;
        Ok(Step::Continue)
    }
}

/// A plain-old-data particle: the element of [`Swarm`]'s native field.
#[derive(Debug, Clone, Copy, PartialEq, Migratable, Pod, Zeroable)]
#[bytemuck(crate = "cosmic::bytemuck")]
#[repr(C)]
struct Particle {
    position: [f32; 3],
    velocity: [f32; 3],
    id: u64,
}

/// A task whose size is a `#[migratable(native)]` field of particles: moved between like
/// hosts, it travels as memory; a portable image encodes each particle's fields.
#[derive(Migratable, Debug, Clone, PartialEq)]
struct Swarm {
    step: u64,
    #[migratable(native)]
    particles: Vec<Particle>,
}

impl Swarm {
    fn new(bytes: usize) -> Swarm {
        Swarm {
            step: 0,
            particles: (0..bytes / size_of::<Particle>())
                .map(|i| {
                    let f = i as f32;
                    Particle {
                        position: [f, -f, 0.5 * f],
                        velocity: [0.25, 1.0 / (f + 1.0), f.sqrt()],
                        id: i as u64,
                    }
                })
                .collect(),
        }
    }
}

#[async_trait]
impl Task for Swarm {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if let Some(particle) = self.particles.get_mut(self.step as usize) {
            particle.position[0] += particle.velocity[0];
        }
        self.step += 1;
        Ok(Step::Continue)
    }
}

// ---- measuring --------------------------------------------------------------------------

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `work` on a worker of `tokio_rt` and waits for it.
fn on_worker<T: Send + 'static>(
    tokio_rt: &tokio::runtime::Runtime,
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    tokio_rt
        .block_on(tokio_rt.spawn(work))
        .expect("a measurement panicked")
}

fn key() -> ClusterKey {
    ClusterKey::from_bytes(KEY).expect("cluster key")
}

/// Two hosts, alpha and beta, that know each other, each on its own store.
async fn hosts<S: CheckpointStore>(
    mut store: impl FnMut(&str) -> S,
    max_image: u64,
    native_moves: bool,
) -> [Runtime; 2] {
    let mut built = Vec::new();
    for name in HOSTS {
        let rt = Runtime::builder()
            .host(name)
            .store(store(name))
            .checkpoint(Policy::OnDemand)
            .listen("127.0.0.1:0")
            .cluster_key(key())
            .register::<Mover>()
            .register::<Swarm>()
            .native_moves(native_moves)
            .max_image_size(max_image.max(1 << 30))
            .drain_concurrency(DRAIN_CONCURRENCY)
            .build()
            .await
            .expect("build a host");
        built.push(rt);
    }
    let [alpha, beta]: [Runtime; 2] = built.try_into().expect("two hosts");
    let alpha_addr = alpha.local_addr().expect("alpha listens");
    let beta_addr = beta.local_addr().expect("beta listens");
    alpha.add_peer("beta", beta_addr).expect("add beta");
    beta.add_peer("alpha", alpha_addr).expect("add alpha");
    // Each made a key pair of its own at build: each trusts the other's public key.
    let name = |name: &str| name.parse::<NodeName>().expect("node name");
    let beta_key = beta.public_key().expect("beta is a host");
    let alpha_key = alpha.public_key().expect("alpha is a host");
    alpha
        .trust_peer(name("beta"), beta_key)
        .expect("trust beta");
    beta.trust_peer(name("alpha"), alpha_key)
        .expect("trust alpha");
    [alpha, beta]
}

/// Moves the paused task `id` from `hosts[from]` to the other host and returns how long
/// `migrate_to` took. The task arrives running; it is paused on its new host afterwards,
/// outside the timing.
async fn move_paused(hosts: [Runtime; 2], from: usize, id: TaskId) -> f64 {
    let to = 1 - from;
    let handle = hosts[from]
        .handle::<u64>(id)
        .expect("a handle on the source");
    let started = Instant::now();
    handle
        .migrate_to(HOSTS[to])
        .await
        .unwrap_or_else(|error| panic!("move {} -> {}: {error}", HOSTS[from], HOSTS[to]));
    let elapsed = started.elapsed().as_secs_f64();
    hosts[to]
        .handle::<u64>(id)
        .expect("a handle on the destination")
        .pause()
        .await
        .expect("pause after the move");
    elapsed
}

/// Pauses every task of `rt` that runs.
async fn pause_all(rt: &Runtime, ids: &[TaskId]) {
    let mut pauses = tokio::task::JoinSet::new();
    for &id in ids {
        let handle = rt.handle::<u64>(id).expect("a handle on the new host");
        pauses.spawn(async move { handle.pause().await.expect("pause") });
    }
    while let Some(paused) = pauses.join_next().await {
        paused.expect("pause task");
    }
}

/// An echo server on loopback: every connection reads `size` bytes and sends them back,
/// until it is closed.
async fn echo_server(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo server");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            stream.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let mut buffer = vec![0u8; size];
                while stream.read_exact(&mut buffer).await.is_ok() {
                    if stream.write_all(&buffer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the echo server");
    // As the secure channel does.
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// One raw round trip: `request` out, as many bytes back.
async fn round_trip(stream: &mut TcpStream, request: &[u8], reply: &mut [u8]) {
    stream.write_all(request).await.expect("send the request");
    stream.read_exact(reply).await.expect("read the reply");
}

/// A secure channel from "alpha" to a listener of "beta" on loopback, with `serve` answering
/// on the accepted end; channel limits fit messages of `size` bytes.
async fn secure_pair<F, Fut>(size: usize, serve: F) -> SecureChannel
where
    F: FnOnce(SecureChannel) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut config = ChannelConfig::default();
    config.max_message_size = config.max_message_size.max(size as u64);
    let beta: NodeName = "beta".parse().expect("node name");
    let alpha: NodeName = "alpha".parse().expect("node name");
    let loopback = "127.0.0.1:0".parse().expect("address");
    let (alpha_key, beta_key) = (
        HostKey::generate().expect("alpha's key pair"),
        HostKey::generate().expect("beta's key pair"),
    );
    let trusted = TrustedPeers::new();
    trusted.trust(alpha.clone(), alpha_key.public_key());
    trusted.trust(beta.clone(), beta_key.public_key());
    let alpha_credentials = Credentials::new(key(), alpha_key, trusted.clone());
    let beta_credentials = Credentials::new(key(), beta_key, trusted);
    let mut listener = SecureListener::bind(loopback, &beta_credentials, &beta, &config)
        .await
        .expect("bind a secure listener");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (channel, _) = listener.accept().await.expect("accept a secure channel");
        serve(channel).await;
    });
    let (channel, _) = SecureChannel::connect(addr, &alpha_credentials, &alpha, &config)
        .await
        .expect("connect a secure channel");
    channel
}

fn write_fsync(path: &Path, bytes: &[u8]) {
    let mut file = File::create(path).expect("create");
    file.write_all(bytes).expect("write");
    file.sync_all().expect("fsync");
}

/// Whether `folder` is on tmpfs, where fsync costs nothing.
fn on_tmpfs(folder: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(folder.as_os_str().as_bytes()).expect("path");
        let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: statfs fills the struct it is given; the path is NUL-terminated.
        if unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful call (and zeroed before it).
            return unsafe { stat.assume_init() }.f_type as u64 == 0x0102_1994;
        }
    }
    false
}

// ---- cases ------------------------------------------------------------------------------

/// `migrate/small` (`durable` false) and `migrate/small-durable`.
fn small(config: &Config, durable: bool) {
    let case = if durable { "small-durable" } else { "small" };
    let (default_rounds, per_round) = if durable { (10, 5) } else { (15, 20) };
    let rounds_count = config.rounds.unwrap_or(default_rounds);
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join("migrate-bench/durable");
    if durable {
        let _ = fs::remove_dir_all(&folder);
        fs::create_dir_all(&folder).expect("create the bench folder");
        if on_tmpfs(&folder) {
            eprintln!(
                "warning: {} is on tmpfs, where fsync costs nothing",
                folder.display()
            );
        }
    }
    let tokio_rt = tokio_runtime();
    let state = Mover::new(0, SMALL_STATE, 1);
    let image = Arc::new(cosmic::image::capture(&state).expect("capture"));
    let size = image.len();
    let (hosts, id, client, secure_client) = tokio_rt.block_on(async {
        let hosts = if durable {
            hosts(
                |name| FileStore::open(folder.join(name)).expect("open a store"),
                0,
                true,
            )
            .await
        } else {
            hosts(|_| MemoryStore::new(), 0, true).await
        };
        let handle = hosts[0].spawn(state).await.expect("spawn");
        handle.pause().await.expect("pause");
        let client = tcp_connect(echo_server(size).await).await;
        let secure = secure_pair(size, |mut channel| async move {
            while let Ok(request) = channel.recv_bytes().await {
                if channel.send_bytes(&request).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let (client, secure) = (Arc::new(Mutex::new(client)), Arc::new(Mutex::new(secure)));
        (hosts, handle.id(), client, secure)
    });

    let mut at = 0usize;
    let mut op = || {
        let (hosts, first) = (hosts.clone(), at);
        at = (at + per_round) % 2;
        on_worker(&tokio_rt, async move {
            let mut samples = Vec::with_capacity(per_round);
            for k in 0..per_round {
                samples.push(move_paused(hosts.clone(), (first + k) % 2, id).await);
            }
            samples
        })
    };
    let mut raw = || {
        let (client, image) = (Arc::clone(&client), Arc::clone(&image));
        on_worker(&tokio_rt, async move {
            let mut stream = client.lock().await;
            let mut reply = vec![0u8; image.len()];
            let mut samples = Vec::with_capacity(per_round);
            for _ in 0..per_round {
                let started = Instant::now();
                round_trip(&mut stream, &image, &mut reply).await;
                samples.push(started.elapsed().as_secs_f64());
            }
            samples
        })
    };
    // The secure channel's part: one round trip of the same bytes over it.
    let mut secure = || {
        let (client, image) = (Arc::clone(&secure_client), Arc::clone(&image));
        on_worker(&tokio_rt, async move {
            let mut channel = client.lock().await;
            let mut samples = Vec::with_capacity(per_round);
            for _ in 0..per_round {
                let started = Instant::now();
                channel.send_bytes(&image).await.expect("secure send");
                let reply = channel.recv_bytes().await.expect("secure reply");
                samples.push(started.elapsed().as_secs_f64());
                assert_eq!(reply.len(), image.len());
            }
            samples
        })
    };
    // The destination's decode of the image, which it runs on tokio's blocking pool.
    let mut blocking_decode = || {
        let image = Arc::clone(&image);
        on_worker(&tokio_rt, async move {
            let mut samples = Vec::with_capacity(per_round);
            for _ in 0..per_round {
                let image = Arc::clone(&image);
                let started = Instant::now();
                let restored = tokio::task::spawn_blocking(move || {
                    cosmic::image::restore::<Mover>(&image).expect("restore")
                })
                .await
                .expect("decode task");
                samples.push(started.elapsed().as_secs_f64());
                drop(restored);
            }
            samples
        })
    };
    let raw_folder = folder.join("raw");
    let mut fsync_seq = 0u64;
    let mut fsync = || {
        fs::create_dir_all(&raw_folder).expect("raw folder");
        (0..per_round)
            .map(|_| {
                fsync_seq += 1;
                let path = raw_folder.join(format!("raw-{}", fsync_seq % 4));
                let started = Instant::now();
                write_fsync(&path, &image);
                started.elapsed().as_secs_f64()
            })
            .collect()
    };
    let samples = if durable {
        rounds(
            rounds_count,
            true,
            &mut [
                &mut op,
                &mut raw,
                &mut secure,
                &mut blocking_decode,
                &mut fsync,
            ],
        )
    } else {
        rounds(
            rounds_count,
            true,
            &mut [&mut op, &mut raw, &mut secure, &mut blocking_decode],
        )
    };
    let (op, raw, secure, decode) = (&samples[0], &samples[1], &samples[2], &samples[3]);
    let extra = match samples.get(4) {
        Some(fsync) => format!(
            " write_fsync_median={:.6}s moves_per_write_fsync={:.2}",
            median(fsync),
            median(op) / median(fsync)
        ),
        None => String::new(),
    };
    println!(
        "migrate/{case}: bytes={size} median={:.6}s baseline=tcp-round-trip baseline_median={:.6}s ratio={:.3} paired_ratio={:.3} moves={} state_bytes={SMALL_STATE} moves_per_s={:.0} secure_round_trip_median={:.6}s move_in_secure_round_trips={:.2} blocking_decode_median={:.6}s{extra}",
        median(op),
        median(raw),
        median(op) / median(raw),
        paired_ratio(op, raw),
        op.len(),
        1.0 / median(op),
        median(secure),
        median(op) / median(secure),
        median(decode),
    );
    println!(
        "migrate/{case} detail: move {} tcp-round-trip {} secure-round-trip {} blocking-decode {}{}; rounds of {per_round}",
        spread(op),
        spread(raw),
        spread(secure),
        spread(decode),
        samples
            .get(4)
            .map(|fsync| format!(" write+fsync {}", spread(fsync)))
            .unwrap_or_default(),
    );
    drop(hosts);
    tokio_rt.shutdown_timeout(Duration::from_secs(5));
    if durable {
        let _ = fs::remove_dir_all(&folder);
    }
}

/// `large-<mib>m`: a portable move of a [`Mover`] (hosts built with `native_moves(false)`);
/// `large-<mib>m-native`: a native move of a [`Swarm`] of the same size between like hosts.
fn large<T: Task<Output = u64> + Clone>(config: &Config, state: T, encoding: Encoding) {
    let native = encoding == Encoding::Native;
    let case = format!(
        "large-{}m{}",
        config.mib,
        if native { "-native" } else { "" }
    );
    let rounds_count = config.rounds.unwrap_or(5);
    let tokio_rt = tokio_runtime();
    // The bench's own copy of the state (for the capture alone) and of its image (for the
    // baselines); the task gets a clone.
    let state = Arc::new(state);
    let image = Arc::new({
        let mut writer = ImageWriter::new();
        writer.capture_with(&*state, encoding).expect("capture");
        writer.take()
    });
    let size = image.len();
    let image_mib = size as f64 / f64::from(1 << 20);
    let (hosts, id) = tokio_rt.block_on(async {
        let hosts = hosts(|_| MemoryStore::new(), size as u64, native).await;
        let handle = hosts[0].spawn((*state).clone()).await.expect("spawn");
        handle.pause().await.expect("pause");
        (hosts, handle.id())
    });

    // The raw baseline: a receiver that reads each transfer into the same buffer and says
    // when it has all of it.
    let (raw_client, raw_done) = tokio_rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (done, done_rx) = mpsc::unbounded_channel::<Instant>();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buffer = vec![0u8; size];
            loop {
                let mut got = 0;
                while got < size {
                    match stream.read(&mut buffer[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                if done.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
        (
            Arc::new(Mutex::new(tcp_connect(addr).await)),
            Arc::new(Mutex::new(done_rx)),
        )
    });
    // The secure channel alone: a receiver that takes each message into a new buffer of
    // the announced size, as the destination's image sink does.
    let (secure_client, secure_done) = tokio_rt.block_on(async {
        let (done, done_rx) = mpsc::unbounded_channel::<Instant>();
        let channel = secure_pair(size, move |mut channel| async move {
            loop {
                let mut sink = Vec::with_capacity(size);
                if channel.recv_into(&mut sink).await.is_err() {
                    return;
                }
                let arrived = Instant::now();
                assert_eq!(sink.len(), size);
                drop(sink);
                if done.send(arrived).is_err() {
                    return;
                }
            }
        })
        .await;
        (Arc::new(Mutex::new(channel)), Arc::new(Mutex::new(done_rx)))
    });
    release_free_memory();

    let mut at = 0usize;
    let mut peaks = Vec::new();
    let mut growths = Vec::new();
    let mut op = || {
        let (hosts, from) = (hosts.clone(), at);
        at = 1 - at;
        release_free_memory();
        let reset = reset_peak_memory();
        let before = status_kib("VmRSS").unwrap_or(0);
        let elapsed = on_worker(&tokio_rt, move_paused(hosts, from, id));
        if reset {
            let peak = status_kib("VmHWM").unwrap_or(0);
            peaks.push(peak as f64 / 1024.0);
            growths.push(peak.saturating_sub(before) as f64 / 1024.0);
        }
        release_free_memory();
        vec![elapsed]
    };
    let mut raw = || {
        let (client, done, image) = (
            Arc::clone(&raw_client),
            Arc::clone(&raw_done),
            Arc::clone(&image),
        );
        vec![on_worker(&tokio_rt, async move {
            let (mut stream, mut done) = (client.lock().await, done.lock().await);
            let started = Instant::now();
            for chunk in image.chunks(RAW_WRITE) {
                stream.write_all(chunk).await.expect("raw send");
            }
            let arrived = done.recv().await.expect("the raw receiver ended");
            arrived.duration_since(started).as_secs_f64()
        })]
    };
    let mut secure = || {
        let (client, done, image) = (
            Arc::clone(&secure_client),
            Arc::clone(&secure_done),
            Arc::clone(&image),
        );
        let elapsed = on_worker(&tokio_rt, async move {
            let (mut channel, mut done) = (client.lock().await, done.lock().await);
            let started = Instant::now();
            channel.send_bytes(&image).await.expect("secure send");
            let arrived = done.recv().await.expect("the secure receiver ended");
            arrived.duration_since(started).as_secs_f64()
        });
        release_free_memory();
        vec![elapsed]
    };
    let mut capture = || {
        let state = Arc::clone(&state);
        let elapsed = on_worker(&tokio_rt, async move {
            let mut writer = ImageWriter::new();
            let started = Instant::now();
            writer.capture_with(&*state, encoding).expect("capture");
            let taken = writer.take();
            let elapsed = started.elapsed().as_secs_f64();
            drop(taken);
            elapsed
        });
        release_free_memory();
        vec![elapsed]
    };
    let mut verify = || {
        let image = Arc::clone(&image);
        vec![on_worker(&tokio_rt, async move {
            let started = Instant::now();
            cosmic::image::inspect(&image).expect("inspect");
            started.elapsed().as_secs_f64()
        })]
    };
    let mut decode = || {
        let image = Arc::clone(&image);
        let elapsed = on_worker(&tokio_rt, async move {
            let started = Instant::now();
            let restored: T = cosmic::image::restore(&image).expect("restore");
            let elapsed = started.elapsed().as_secs_f64();
            drop(restored);
            elapsed
        });
        release_free_memory();
        vec![elapsed]
    };
    let samples = rounds(
        rounds_count,
        true,
        &mut [
            &mut op,
            &mut raw,
            &mut capture,
            &mut verify,
            &mut secure,
            &mut decode,
        ],
    );
    let (op, raw, capture, verify, secure, decode) = (
        &samples[0],
        &samples[1],
        &samples[2],
        &samples[3],
        &samples[4],
        &samples[5],
    );
    // The warm-up move's memory is dropped like its time.
    let (peaks, growths) = (
        &peaks[1.min(peaks.len())..],
        &growths[1.min(growths.len())..],
    );
    let peak_mib = peaks.iter().copied().fold(0.0, f64::max);
    let growth_mib = growths.iter().copied().fold(0.0, f64::max);
    // What the move does in sequence: capture, verify at the source, send, verify and decode
    // at the destination.
    let parts = median(capture) + 2.0 * median(verify) + median(secure) + median(decode);
    println!(
        "migrate/{case}: bytes={size} median={:.6}s baseline=tcp-send baseline_median={:.6}s ratio={:.3} paired_ratio={:.3} mib_per_s={:.0} baseline_mib_per_s={:.0} capture_median={:.6}s verify_median={:.6}s secure_send_median={:.6}s decode_median={:.6}s parts_sum={:.6}s rest={:.6}s peak_mib={peak_mib:.0} growth_mib={growth_mib:.0} growth_copies={:.2}",
        median(op),
        median(raw),
        median(op) / median(raw),
        paired_ratio(op, raw),
        image_mib / median(op),
        image_mib / median(raw),
        median(capture),
        median(verify),
        median(secure),
        median(decode),
        parts,
        median(op) - parts,
        growth_mib / image_mib,
    );
    println!(
        "migrate/{case} detail: move {} tcp-send {} capture {} verify {} secure-send {} decode {}; peak VmHWM per move {} MiB (growth over VmRSS before {} MiB; image {image_mib:.0} MiB; resident outside the moves: the bench's state and image, the raw receive buffer, the task's state and its checkpoint in the store)",
        spread(op),
        spread(raw),
        spread(capture),
        spread(verify),
        spread(secure),
        spread(decode),
        list(peaks),
        list(growths),
    );
    drop((hosts, raw_client, secure_client));
    tokio_rt.shutdown_timeout(Duration::from_secs(5));
    release_free_memory();
}

fn list(values: &[f64]) -> String {
    let values: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    format!("[{}]", values.join(","))
}

fn drain(config: &Config) {
    let tasks = config.tasks.max(1);
    let case = format!("drain-{tasks}");
    let rounds_count = config.rounds.unwrap_or(3);
    let tokio_rt = tokio_runtime();
    // Long naps: the tasks that arrived run until they are paused again, and should cost
    // little meanwhile.
    let nap_ms = 50;
    let image =
        Arc::new(cosmic::image::capture(&Mover::new(0, SMALL_STATE, nap_ms)).expect("capture"));
    let size = image.len();
    let (hosts, clients) = tokio_rt.block_on(async {
        let hosts = hosts(|_| MemoryStore::new(), 0, true).await;
        let mut spawns = tokio::task::JoinSet::new();
        for i in 0..tasks {
            let rt = hosts[0].clone();
            spawns.spawn(async move {
                let handle = rt
                    .spawn(Mover::new(i as u64, SMALL_STATE, nap_ms))
                    .await
                    .expect("spawn");
                handle.pause().await.expect("pause");
            });
        }
        while let Some(spawned) = spawns.join_next().await {
            spawned.expect("spawn task");
        }
        let addr = echo_server(size).await;
        let mut clients = Vec::new();
        for _ in 0..DRAIN_CONCURRENCY {
            clients.push(Mutex::new(tcp_connect(addr).await));
        }
        (hosts, Arc::new(clients))
    });

    let mut at = 0usize;
    let mut op = || {
        let mut samples = Vec::new();
        for _ in 0..2 {
            let hosts = hosts.clone();
            let from = at;
            at = 1 - at;
            samples.push(on_worker(&tokio_rt, async move {
                let started = Instant::now();
                let report = hosts[from]
                    .migrate_to(HOSTS[1 - from])
                    .await
                    .expect("drain");
                let elapsed = started.elapsed().as_secs_f64();
                assert!(
                    report.moved.len() == tasks && report.stayed.is_empty(),
                    "drain {} -> {}: moved {}, ended {}, stayed {:?}",
                    HOSTS[from],
                    HOSTS[1 - from],
                    report.moved.len(),
                    report.ended.len(),
                    report.stayed.first(),
                );
                pause_all(&hosts[1 - from], &report.moved).await;
                elapsed
            }));
        }
        samples
    };
    let mut raw = || {
        (0..2)
            .map(|_| {
                let (clients, image) = (Arc::clone(&clients), Arc::clone(&image));
                on_worker(&tokio_rt, async move {
                    let next = Arc::new(AtomicUsize::new(0));
                    let started = Instant::now();
                    let mut workers = tokio::task::JoinSet::new();
                    for worker in 0..DRAIN_CONCURRENCY {
                        let (clients, image, next) =
                            (Arc::clone(&clients), Arc::clone(&image), Arc::clone(&next));
                        workers.spawn(async move {
                            let mut stream = clients[worker].lock().await;
                            let mut reply = vec![0u8; image.len()];
                            while next.fetch_add(1, Ordering::Relaxed) < tasks {
                                round_trip(&mut stream, &image, &mut reply).await;
                            }
                        });
                    }
                    while let Some(worker) = workers.join_next().await {
                        worker.expect("round trip worker");
                    }
                    started.elapsed().as_secs_f64()
                })
            })
            .collect()
    };
    let samples = rounds(rounds_count, true, &mut [&mut op, &mut raw]);
    let (op, raw) = (&samples[0], &samples[1]);
    println!(
        "migrate/{case}: bytes={} median={:.6}s baseline=tcp-round-trips baseline_median={:.6}s ratio={:.3} paired_ratio={:.3} tasks={tasks} tasks_per_s={:.0} baseline_round_trips_per_s={:.0} concurrency={DRAIN_CONCURRENCY} image_bytes={size}",
        tasks * size,
        median(op),
        median(raw),
        median(op) / median(raw),
        paired_ratio(op, raw),
        tasks as f64 / median(op),
        tasks as f64 / median(raw),
    );
    println!(
        "migrate/{case} detail: drain {} tcp-round-trips {}; two drains (there and back) per round",
        spread(op),
        spread(raw),
    );
    drop(hosts);
    tokio_rt.shutdown_timeout(Duration::from_secs(5));
    release_free_memory();
}

// ---- under attack -----------------------------------------------------------------------

/// The hosts of `under-attack`: the source, the destination under attack, an idle destination.
const ATTACK_HOSTS: [&str; 3] = ["alpha", "beta", "gamma"];
const ALPHA: usize = 0;
const ATTACKED: usize = 1;
const IDLE: usize = 2;
/// Connections without the key held open against the host under attack.
const ATTACKERS: usize = 1000;
/// How long an attacker waits to reconnect once the host closed its connection. Short, so
/// that the attack keeps the host's budget of unproven connections full and churning (the
/// host drops the stalest one for each newcomer); not zero, so that an attacker whose
/// connect fails (out of ports, out of files) does not spin on it. With 1,000 attackers it
/// bounds the attack near 10,000 connections a second, more than one attack thread on this
/// machine can open anyway (see `attack_opened_per_s`).
const ATTACK_PAUSE: Duration = Duration::from_millis(100);
/// How often a trickling attacker sends its next byte.
const TRICKLE_EVERY: Duration = Duration::from_millis(100);
/// The attack's own tokio worker threads. One: the attackers stand for other machines, but
/// here they share the 2 vCPUs with the hosts; one thread keeps what they take to at most a
/// core (`attack_cpu` says how much they took).
const ATTACK_THREADS: usize = 1;
/// The name of the attack's threads, to tell their CPU time from the hosts' (at most 15
/// bytes, as the kernel keeps it).
const ATTACK_THREAD_NAME: &str = "attack-worker";
/// Rounds of the same moves timed before the attack starts (for `before_attack_median`).
const BEFORE_ATTACK_ROUNDS: usize = 5;
/// How long the attack runs, once every attacker connected, before the timing starts.
const ATTACK_SETTLE: Duration = Duration::from_secs(2);

/// Raises the soft limit of open files to 16,384 (or the hard limit, if lower): the
/// attackers' ends of their connections, the host's ends, and the hosts' own files. Returns
/// the limit in force.
fn raise_file_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let wanted = 16_384.min(limit.rlim_max);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    let limit = limit.rlim_cur;
    assert!(
        limit >= 3 * ATTACKERS as libc::rlim_t,
        "RLIMIT_NOFILE {limit} is too low for {ATTACKERS} attackers (both ends of each connection)"
    );
    limit
}

/// Peers without the key, on a tokio runtime of their own: half hold a connection open in
/// silence, half trickle a plausible first frame a byte at a time; each reconnects after
/// `ATTACK_PAUSE` when the host closes its connection.
struct Attack {
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    /// Connections opened so far.
    opened: Arc<AtomicUsize>,
    /// Connections open now, as the attackers see them.
    held: Arc<AtomicUsize>,
    /// Connects that failed.
    failed: Arc<AtomicUsize>,
}

impl Attack {
    fn start(addr: SocketAddr) -> Attack {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(ATTACK_THREADS)
            .thread_name(ATTACK_THREAD_NAME)
            .enable_all()
            .build()
            .expect("the attack's runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        for i in 0..ATTACKERS {
            let (stop, opened, held, failed) = (
                Arc::clone(&stop),
                Arc::clone(&opened),
                Arc::clone(&held),
                Arc::clone(&failed),
            );
            let trickle = i % 2 == 1;
            runtime.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match TcpStream::connect(addr).await {
                        Ok(stream) => {
                            opened.fetch_add(1, Ordering::Relaxed);
                            held.fetch_add(1, Ordering::Relaxed);
                            hold(stream, trickle, &stop).await;
                            held.fetch_sub(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(ATTACK_PAUSE).await;
                }
            });
        }
        Attack {
            runtime,
            stop,
            opened,
            held,
            failed,
        }
    }

    /// Waits until every attacker has had a connection open.
    fn wait_until_all_opened(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.opened.load(Ordering::Relaxed) < ATTACKERS {
            assert!(
                Instant::now() < deadline,
                "the attackers could not connect ({} of {ATTACKERS} did, {} connects failed)",
                self.opened.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed),
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // Drops every attacker's connection.
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

/// Holds a connection until the host closes it: silent, or trickling the start of a
/// plausible handshake frame (a length prefix announcing 48 bytes, then its bytes) a byte
/// every `TRICKLE_EVERY`.
async fn hold(mut stream: TcpStream, trickle: bool, stop: &AtomicBool) {
    let mut buf = [0u8; 64];
    if !trickle {
        let _ = stream.read(&mut buf).await;
        return;
    }
    for byte in [0u8, 48].into_iter().chain(std::iter::repeat(0x5a)) {
        if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).await.is_err() {
            return;
        }
        tokio::select! {
            _ = stream.read(&mut buf) => return,
            () = tokio::time::sleep(TRICKLE_EVERY) => {}
        }
    }
}

/// CPU time (user and system, in seconds) of this process's live threads whose name starts
/// with `prefix`, from `/proc/self/task/*/stat`.
fn threads_cpu(prefix: &str) -> f64 {
    // SAFETY: sysconf only reads a setting.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0u64;
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        // After the name: the state (field 3 of proc(5)), ...; utime and stime are fields 14
        // and 15.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        for at in [11, 12] {
            total += fields
                .get(at)
                .and_then(|field| field.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total as f64 / ticks
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in `/proc/net/netstat`; for the whole network namespace, not
/// only this process).
fn listen_overflows() -> Option<u64> {
    let netstat = fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|name| name == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// How many samples took `limit` seconds or more.
fn at_least(samples: &[f64], limit: f64) -> usize {
    samples.iter().filter(|&&sample| sample >= limit).count()
}

/// CPU time (user and system, in seconds) of the whole process, exited threads included.
fn process_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return f64::NAN;
    }
    // SAFETY: initialised by the successful call (and zeroed before it).
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU used so far: the attack's threads, the rest of the process, and when.
#[derive(Clone, Copy)]
struct CpuMark {
    attack: f64,
    process: f64,
    at: Instant,
}

impl CpuMark {
    fn now() -> CpuMark {
        CpuMark {
            attack: threads_cpu(ATTACK_THREAD_NAME),
            process: process_cpu(),
            at: Instant::now(),
        }
    }

    /// Cores used since `earlier`: by the attack, and by everything else (the hosts, their
    /// blocking pool, the bench).
    fn since(&self, earlier: &CpuMark) -> (f64, f64) {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        let attack = self.attack - earlier.attack;
        let rest = (self.process - earlier.process) - attack;
        (attack / wall, rest / wall)
    }
}

/// Three hosts that each make every conversation over a fresh connection: alpha knows beta
/// and gamma, each of them knows alpha. Alpha proves its name with `alpha_key`.
async fn attack_hosts(alpha_key: &HostKey) -> [Runtime; 3] {
    let mut built = Vec::new();
    for name in ATTACK_HOSTS {
        let mut builder = Runtime::builder()
            .host(name)
            .store(MemoryStore::new())
            .checkpoint(Policy::OnDemand)
            .listen("127.0.0.1:0")
            .cluster_key(key())
            .register::<Mover>()
            .reuse_peer_connections(false);
        if name == ATTACK_HOSTS[ALPHA] {
            builder = builder.host_key(alpha_key.clone());
        }
        built.push(builder.build().await.expect("build a host"));
    }
    let hosts: [Runtime; 3] = built.try_into().expect("three hosts");
    let name = |name: &str| name.parse::<NodeName>().expect("node name");
    let alpha = &hosts[ALPHA];
    let alpha_addr = alpha.local_addr().expect("alpha listens");
    let alpha_public = alpha.public_key().expect("alpha is a host");
    for peer in &hosts[1..] {
        let addr = peer.local_addr().expect("a destination listens");
        let public = peer.public_key().expect("a destination is a host");
        alpha
            .add_peer(peer.host(), addr)
            .expect("add a destination");
        alpha
            .trust_peer(name(peer.host()), public)
            .expect("trust a destination");
        peer.add_peer("alpha", alpha_addr).expect("add alpha");
        peer.trust_peer(name("alpha"), alpha_public)
            .expect("trust alpha");
    }
    hosts
}

/// What went wrong during `under-attack`, counted.
#[derive(Default)]
struct Failures {
    /// Timed moves, by destination (`ATTACKED`, `IDLE`).
    moves: [AtomicUsize; 3],
    /// Untimed moves back to alpha.
    back: AtomicUsize,
    /// Timed handshakes, by destination.
    handshakes: [AtomicUsize; 3],
}

/// `count` timed moves of the paused task `id` from alpha to `hosts[to]`, each followed,
/// untimed, by a move back to alpha (the task is paused on arrival each time). A failed move
/// is counted and printed, its sample infinite (the task stays paused on alpha); a failed
/// move back is counted, printed and tried again.
async fn moves_from_alpha(
    hosts: [Runtime; 3],
    to: usize,
    id: TaskId,
    count: usize,
    failures: Arc<Failures>,
) -> Vec<f64> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let handle = hosts[ALPHA]
            .handle::<u64>(id)
            .expect("the task is on alpha");
        let started = Instant::now();
        let moved = handle.migrate_to(ATTACK_HOSTS[to]).await;
        let elapsed = started.elapsed().as_secs_f64();
        if let Err(error) = moved {
            failures.moves[to].fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "migrate/under-attack: a move alpha -> {} failed after {elapsed:.6}s: {error}",
                ATTACK_HOSTS[to]
            );
            samples.push(f64::INFINITY);
            continue;
        }
        samples.push(elapsed);
        let arrived = hosts[to]
            .handle::<u64>(id)
            .expect("a handle on the destination");
        arrived.pause().await.expect("pause after the move");
        let mut attempts = 0;
        while let Err(error) = arrived.migrate_to(ATTACK_HOSTS[ALPHA]).await {
            failures.back.fetch_add(1, Ordering::Relaxed);
            attempts += 1;
            eprintln!(
                "migrate/under-attack: the untimed move {} -> alpha failed (attempt {attempts}): {error}",
                ATTACK_HOSTS[to]
            );
            assert!(attempts < 5, "the task cannot get back to alpha");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        hosts[ALPHA]
            .handle::<u64>(id)
            .expect("a handle on alpha")
            .pause()
            .await
            .expect("pause on alpha");
    }
    samples
}

/// `count` timed fresh connections with handshakes (TCP connect, Noise, hellos), as alpha,
/// to `addr`; each is closed outside the timing. A failed one is counted and printed, its
/// sample infinite.
async fn handshakes(
    addr: SocketAddr,
    credentials: Credentials,
    to: usize,
    count: usize,
    failures: Arc<Failures>,
) -> Vec<f64> {
    let alpha: NodeName = ATTACK_HOSTS[ALPHA].parse().expect("node name");
    let config = ChannelConfig::default();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        match SecureChannel::connect(addr, &credentials, &alpha, &config).await {
            Ok((channel, _)) => {
                samples.push(started.elapsed().as_secs_f64());
                let _ = channel.close().await;
            }
            Err(error) => {
                failures.handshakes[to].fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "migrate/under-attack: a handshake with {} failed after {:.6}s: {error}",
                    ATTACK_HOSTS[to],
                    started.elapsed().as_secs_f64()
                );
                samples.push(f64::INFINITY);
            }
        }
    }
    samples
}

/// `migrate/under-attack`.
fn under_attack(config: &Config) {
    let per_round = 20;
    let rounds_count = config.rounds.unwrap_or(40);
    let nofile = raise_file_limit();
    eprintln!("migrate/under-attack: RLIMIT_NOFILE {nofile}");
    let tokio_rt = tokio_runtime();
    let state = Mover::new(0, SMALL_STATE, 1);
    let size = cosmic::image::capture(&state).expect("capture").len();
    let alpha_key = HostKey::generate().expect("alpha's key pair");
    let (hosts, id) = tokio_rt.block_on(async {
        let hosts = attack_hosts(&alpha_key).await;
        let handle = hosts[ALPHA].spawn(state).await.expect("spawn");
        handle.pause().await.expect("pause");
        (hosts, handle.id())
    });
    // Alpha's credentials, for the bare handshakes.
    let trusted = TrustedPeers::new();
    for host in &hosts[1..] {
        trusted.trust(
            host.host().parse().expect("node name"),
            host.public_key().expect("a destination is a host"),
        );
    }
    let credentials = Credentials::new(key(), alpha_key, trusted);
    let addrs = hosts
        .each_ref()
        .map(|host| host.local_addr().expect("a host listens"));

    let failures = Arc::new(Failures::default());
    let move_to = |to: usize| {
        let (hosts, failures) = (hosts.clone(), Arc::clone(&failures));
        on_worker(
            &tokio_rt,
            moves_from_alpha(hosts, to, id, per_round, failures),
        )
    };
    let handshake_with = |to: usize| {
        let (credentials, failures) = (credentials.clone(), Arc::clone(&failures));
        on_worker(
            &tokio_rt,
            handshakes(addrs[to], credentials, to, per_round, failures),
        )
    };
    let mut to_attacked = || move_to(ATTACKED);
    let mut to_idle = || move_to(IDLE);
    let mut handshake_attacked = || handshake_with(ATTACKED);
    let mut handshake_idle = || handshake_with(IDLE);

    // The same moves before the attack, to see what the attack costs the whole machine (both
    // destinations share its CPUs): not interleaved with the timed rounds.
    let before = rounds(
        BEFORE_ATTACK_ROUNDS,
        true,
        &mut [&mut to_attacked, &mut to_idle],
    );
    let before_attack: Vec<f64> = before.concat();

    let settle_started = CpuMark::now();
    let attack = Attack::start(addrs[ATTACKED]);
    attack.wait_until_all_opened();
    let settle_from = CpuMark::now();
    std::thread::sleep(ATTACK_SETTLE);
    let settled = CpuMark::now();
    let (settle_attack_cpu, settle_hosts_cpu) = settled.since(&settle_from);
    let all_opened_after = settle_from.at.duration_since(settle_started.at);

    let opened_before = attack.opened.load(Ordering::Relaxed);
    let overflows_before = listen_overflows();
    let cpu_before = CpuMark::now();
    let samples = rounds(
        rounds_count,
        true,
        &mut [
            &mut to_attacked,
            &mut to_idle,
            &mut handshake_attacked,
            &mut handshake_idle,
        ],
    );
    let cpu_after = CpuMark::now();
    let overflows = match (overflows_before, listen_overflows()) {
        (Some(before), Some(after)) => (after - before).to_string(),
        _ => "unknown".to_owned(),
    };
    let opened = attack.opened.load(Ordering::Relaxed) - opened_before;
    let held = attack.held.load(Ordering::Relaxed);
    let connects_failed = attack.failed.load(Ordering::Relaxed);
    let timed_wall = cpu_after.at.duration_since(cpu_before.at).as_secs_f64();
    let (attack_cpu, hosts_cpu) = cpu_after.since(&cpu_before);
    attack.stop();

    let (op, idle, hs, hs_idle) = (&samples[0], &samples[1], &samples[2], &samples[3]);
    let failed_moves = failures.moves[ATTACKED].load(Ordering::Relaxed)
        + failures.moves[IDLE].load(Ordering::Relaxed);
    println!(
        "migrate/under-attack: bytes={size} median={:.6}s baseline=move-to-idle-host baseline_median={:.6}s ratio={:.3} paired_ratio={:.3} p90={:.6}s baseline_p90={:.6}s p90_ratio={:.3} before_attack_median={:.6}s ratio_to_before_attack={:.3} baseline_ratio_to_before_attack={:.3} moves={} state_bytes={SMALL_STATE} attackers={ATTACKERS} attack_opened_per_s={:.0} attack_held_at_end={held} failed_moves={failed_moves} handshake_median={:.6}s idle_handshake_median={:.6}s handshake_ratio={:.3} handshake_paired_ratio={:.3} attack_cpu={:.2} hosts_cpu={:.2} settle_attack_cpu={:.2} settle_hosts_cpu={:.2} listen_overflows={overflows} nofile={nofile}",
        median(op),
        median(idle),
        median(op) / median(idle),
        paired_ratio(op, idle),
        quantile(op, 0.9),
        quantile(idle, 0.9),
        quantile(op, 0.9) / quantile(idle, 0.9),
        median(&before_attack),
        median(op) / median(&before_attack),
        median(idle) / median(&before_attack),
        op.len(),
        opened as f64 / timed_wall,
        median(hs),
        median(hs_idle),
        median(hs) / median(hs_idle),
        paired_ratio(hs, hs_idle),
        attack_cpu,
        hosts_cpu,
        settle_attack_cpu,
        settle_hosts_cpu,
    );
    println!(
        "migrate/under-attack detail: move-to-attacked {} move-to-idle {} handshake-attacked {} handshake-idle {}; before the attack: moves {} (medians: to beta {:.6}s, to gamma {:.6}s); samples of 100 ms or more: moves to beta {}, to gamma {}, handshakes with beta {}, with gamma {}; rounds of {per_round}; failed: moves to beta {} to gamma {}, untimed moves back {}, handshakes with beta {} with gamma {}, attackers' connects {connects_failed}; all {ATTACKERS} attackers connected within {:.2}s, then {:.1}s of attack before the timing; {:.1}s timed; CPU in cores (of 2): attack {ATTACK_THREADS} thread(s), hosts = the rest of the process",
        spread(op),
        spread(idle),
        spread(hs),
        spread(hs_idle),
        spread(&before_attack),
        median(&before[0]),
        median(&before[1]),
        at_least(op, 0.1),
        at_least(idle, 0.1),
        at_least(hs, 0.1),
        at_least(hs_idle, 0.1),
        failures.moves[ATTACKED].load(Ordering::Relaxed),
        failures.moves[IDLE].load(Ordering::Relaxed),
        failures.back.load(Ordering::Relaxed),
        failures.handshakes[ATTACKED].load(Ordering::Relaxed),
        failures.handshakes[IDLE].load(Ordering::Relaxed),
        all_opened_after.as_secs_f64(),
        ATTACK_SETTLE.as_secs_f64(),
        timed_wall,
    );
    drop(hosts);
    tokio_rt.shutdown_timeout(Duration::from_secs(5));
}

// ---- main -------------------------------------------------------------------------------

struct Config {
    mib: usize,
    tasks: usize,
    /// Timed rounds of every case (each case has its own default).
    rounds: Option<usize>,
    only: Vec<String>,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            mib: 256,
            tasks: 1000,
            rounds: None,
            only: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |what: &str| -> usize {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{what} needs a number"))
            };
            match arg.as_str() {
                "--mib" => config.mib = number("--mib").max(1),
                "--tasks" => config.tasks = number("--tasks").max(1),
                "--rounds" => config.rounds = Some(number("--rounds").max(1)),
                "--only" => config
                    .only
                    .push(args.next().expect("--only needs a case name")),
                // `cargo bench` passes `--bench`; other unknown arguments are ignored too.
                _ => {}
            }
        }
        config
    }

    fn wants(&self, case: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| case.contains(only.as_str()))
    }
}

fn main() {
    let config = Config::from_args();
    eprintln!(
        "migrate bench: --mib {} --tasks {} --rounds {}",
        config.mib,
        config.tasks,
        config
            .rounds
            .map_or_else(|| "(per case)".to_owned(), |rounds| rounds.to_string()),
    );
    if config.wants("small") {
        small(&config, false);
    }
    if config.wants("small-durable") {
        small(&config, true);
    }
    let large_case = format!("large-{}m", config.mib);
    if config.wants(&large_case) && config.only.iter().all(|only| !only.ends_with("native")) {
        large(
            &config,
            Mover::new(0, config.mib << 20, 1),
            Encoding::Portable,
        );
    }
    if config.wants(&format!("{large_case}-native")) {
        large(&config, Swarm::new(config.mib << 20), Encoding::Native);
    }
    if config.wants(&format!("drain-{}", config.tasks)) {
        drain(&config);
    }
    if config.wants("under-attack") {
        under_attack(&config);
    }
}
