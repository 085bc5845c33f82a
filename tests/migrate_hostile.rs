//! A host under connections from peers without the cluster key: idle ones, ones that trickle
//! bytes, ones that send garbage in a loop. Real TCP on 127.0.0.1 against a real
//! `SecureListener` and a real `Runtime` host. Each test prints the figure it measures;
//! timings are printed, never asserted tightly (machines are noisy): what is asserted is that
//! honest peers get through, within a generous deadline, and that the log stays short.
#![cfg(unix)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cosmic::checkpoint::FileStore;
use cosmic::{Policy, Runtime};
use cosmic_runtime::transport::{
    ChannelConfig, ClusterKey, Credentials, HandshakeError, NodeName, SecureChannel, SecureListener,
};
use cosmic_tests::counter::{Counter, TempDir};
use cosmic_tests::identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const KEY: &[u8] = b"migrate-hostile test cluster key, 32+ bytes";

/// Keyless connections held open or trickled against the host.
const ATTACKERS: usize = 1000;

/// How long an honest handshake or move may take, however loaded the machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// The tests each load the machine; one at a time keeps their figures meaningful.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The credentials of test host `name`: the cluster key, its key pair, and the trust of the
/// other test hosts.
fn key(name: &str) -> Credentials {
    identity::credentials(ClusterKey::from_bytes(KEY).unwrap(), name)
}

fn node(name: &str) -> NodeName {
    name.parse().unwrap()
}

/// Keyless peers: each holds a connection open, idle or sending a byte now and then, and opens
/// a new one when the host closes it (after a pause, so as not to run out of ports).
struct Attack {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
    tasks: JoinSet<()>,
}

impl Attack {
    fn start(addr: SocketAddr, peers: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for i in 0..peers {
            let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
            let trickle = i % 2 == 1;
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(stream) = TcpStream::connect(addr).await {
                        opened.fetch_add(1, Ordering::Relaxed);
                        hold(stream, trickle, &stop).await;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        Attack {
            stop,
            opened,
            tasks,
        }
    }

    /// Waits until every attacker has had a connection open at least once, then long enough
    /// for the host to have dropped some (past the first message's deadline), so that the
    /// attack is in its steady state of reconnections.
    async fn wait_until_all_opened(&self, peers: usize) {
        let deadline = Instant::now() + GENEROUS;
        while self.opened.load(Ordering::Relaxed) < peers as u64 {
            assert!(Instant::now() < deadline, "the attackers could not connect");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.opened.load(Ordering::Relaxed)
    }
}

/// Holds a connection until the host closes it: silent, or trickling the start of a plausible
/// handshake frame (a length prefix announcing 48 bytes, then a byte at a time).
async fn hold(mut stream: TcpStream, trickle: bool, stop: &AtomicBool) {
    let mut buf = [0u8; 64];
    if !trickle {
        let _ = stream.read(&mut buf).await;
        return;
    }
    let frame: Vec<u8> = [0u8, 48].into_iter().chain([0x5a; 48]).collect();
    for byte in frame {
        if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).await.is_err() {
            return;
        }
        tokio::select! {
            _ = stream.read(&mut buf) => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let _ = stream.read(&mut buf).await;
}

/// A listener that answers every channel it opens with its peer's name, then closes it.
fn serve(mut listener: SecureListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((mut channel, peer)) => {
                    tokio::spawn(async move {
                        let _ = channel.send(peer.node.as_str()).await;
                        let _ = channel.close().await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
}

/// One honest handshake over a fresh connection, and the echo: how long it took.
async fn honest_exchange(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let (mut channel, _) = tokio::time::timeout(
        GENEROUS,
        SecureChannel::connect(
            addr,
            &key("honest"),
            &node("honest"),
            &ChannelConfig::default(),
        ),
    )
    .await
    .expect("the honest handshake did not finish within 10 s")
    .expect("the honest handshake failed");
    let echoed: String = channel.recv().await.unwrap();
    assert_eq!(echoed, "honest");
    started.elapsed()
}

async fn median_exchange(addr: SocketAddr, rounds: usize) -> Duration {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        times.push(honest_exchange(addr).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times.sort();
    times[rounds / 2]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_handshake_gets_through_1000_keyless_connections() {
    let _serial = SERIAL.lock().await;
    cosmic_tests::files::raise_file_limit(4 * ATTACKERS as libc::rlim_t);
    let listener = SecureListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        &key("host"),
        &node("host"),
        &ChannelConfig::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener);

    let idle = median_exchange(addr, 5).await;
    let attack = Attack::start(addr, ATTACKERS);
    attack.wait_until_all_opened(ATTACKERS).await;
    let loaded = median_exchange(addr, 5).await;
    let opened = attack.stop().await;
    server.abort();
    println!(
        "honest fresh-connection handshake under {ATTACKERS} keyless connections (idle or \
         trickling; {opened} opened in all): {:.1} ms vs idle {:.1} ms (ratio {:.1})",
        millis(loaded),
        millis(idle),
        loaded.as_secs_f64() / idle.as_secs_f64()
    );
}

struct Host {
    rt: Runtime,
    dir: TempDir,
}

async fn host(name: &str) -> Host {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), name);
    let rt = Runtime::builder()
        .host(name)
        .store(FileStore::open(dir.path()).unwrap())
        .checkpoint(Policy::every_steps(10))
        .listen("127.0.0.1:0")
        .cluster_key(ClusterKey::from_bytes(KEY).unwrap())
        .host_key(identity::host_key(name))
        .migration_timeout(Duration::from_secs(5))
        .register::<Counter>()
        .build()
        .await
        .unwrap();
    Host { rt, dir }
}

/// Spawns a counter on `from` and moves it to `to` over a fresh connection: how long the move
/// took.
async fn move_once(from: &Host, to: &Host) -> Duration {
    from.rt
        .add_peer(to.rt.host(), to.rt.local_addr().unwrap())
        .unwrap();
    identity::introduce(&from.rt, &to.rt);
    let log = from.dir.path().join("steps.log");
    let handle = from
        .rt
        .spawn(Counter::new(1_000_000, log.to_str().unwrap(), 1))
        .await
        .unwrap();
    while handle.steps_completed() < 5 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = Instant::now();
    tokio::time::timeout(GENEROUS, handle.migrate_to(to.rt.host()))
        .await
        .expect("the honest move did not finish within 10 s")
        .expect("the honest move failed");
    let took = started.elapsed();
    let _ = handle.cancel().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_move_gets_through_1000_keyless_connections() {
    let _serial = SERIAL.lock().await;
    cosmic_tests::files::raise_file_limit(4 * ATTACKERS as libc::rlim_t);
    let target = host("target").await;
    let warm_up_source = host("source-warm-up").await;
    let idle_source = host("source-idle").await;
    let loaded_source = host("source-loaded").await;
    // The first move of the process pays for code paths run once; each source then moves
    // over a connection of its own, opened for the move.
    move_once(&warm_up_source, &target).await;
    let idle = move_once(&idle_source, &target).await;

    let attack = Attack::start(target.rt.local_addr().unwrap(), ATTACKERS);
    attack.wait_until_all_opened(ATTACKERS).await;
    let loaded = move_once(&loaded_source, &target).await;
    let opened = attack.stop().await;
    println!(
        "honest move over a fresh connection under {ATTACKERS} keyless connections ({opened} \
         opened in all): {:.1} ms vs idle {:.1} ms (ratio {:.1})",
        millis(loaded),
        millis(idle),
        loaded.as_secs_f64() / idle.as_secs_f64()
    );
}

/// Counts the transport's WARN lines about refusals, and what they stand for.
#[derive(Default)]
struct RefusalLines {
    warn_lines: u64,
    /// Refusals the lines account for: one for each first occurrence, plus `suppressed`.
    accounted: u64,
    /// Every refusal, logged or not (suppressed ones are `debug`).
    refusals: u64,
}

struct CountRefusals(Arc<Mutex<RefusalLines>>);

#[derive(Default)]
struct Fields {
    message: String,
    suppressed: u64,
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "suppressed" {
            self.suppressed = value;
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for CountRefusals {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let mut lines = self.0.lock().unwrap();
        match fields.message.as_str() {
            "refused an incoming connection" => {
                lines.refusals += 1;
                if level == tracing::Level::WARN {
                    lines.warn_lines += 1;
                    lines.accounted += 1 + fields.suppressed;
                }
            }
            message if message.starts_with("refused more incoming connections") => {
                lines.warn_lines += 1;
                lines.accounted += fields.suppressed;
            }
            _ if level == tracing::Level::WARN => lines.warn_lines += 1,
            _ => {}
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// One keyless peer: sends a well-formed but unauthenticated first message, waits for the
/// host to close.
async fn refused_once(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let frame: Vec<u8> = [0u8, 48].into_iter().chain([0x5a; 48]).collect();
    stream.write_all(&frame).await.unwrap();
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf).await.unwrap_or(0);
    assert_eq!(read, 0, "a peer without the key received bytes");
}

// On one thread, so that the subscriber sees every task's events.
#[tokio::test(flavor = "current_thread")]
async fn thousands_of_refusals_make_a_few_lines_with_their_count() {
    const REFUSALS: u64 = 2000;
    let _serial = SERIAL.lock().await;
    cosmic_tests::files::raise_file_limit(4 * ATTACKERS as libc::rlim_t);
    let counts = Arc::new(Mutex::new(RefusalLines::default()));
    let _logging = tracing::subscriber::set_default(CountRefusals(Arc::clone(&counts)));
    // Whether a log line is wanted is cached per call site for the whole process: a line
    // first reached by another test, while no subscriber listened, would stay off here.
    tracing::callsite::rebuild_interest_cache();

    let mut listener = SecureListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        &key("host"),
        &node("host"),
        &ChannelConfig::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tokio::select! {
            _ = listener.accept() => panic!("a peer without the key got a channel"),
            _ = stopped => drop(listener),
        }
    });

    let started = Instant::now();
    let mut peers = JoinSet::new();
    for i in 0..REFUSALS {
        if i >= 50 {
            peers.join_next().await.unwrap().unwrap();
        }
        peers.spawn(refused_once(addr));
    }
    while let Some(done) = peers.join_next().await {
        done.unwrap();
    }
    // The last refusals are counted once their handshake tasks are reaped.
    let deadline = Instant::now() + GENEROUS;
    while counts.lock().unwrap().refusals < REFUSALS {
        assert!(Instant::now() < deadline, "refusals went uncounted");
        tokio::task::yield_now().await;
    }
    // Dropping the listener logs the counts still owed.
    stop.send(()).unwrap();
    server.await.unwrap();
    let lines = counts.lock().unwrap();
    println!(
        "{REFUSALS} keyless connections refused in {:.1} s: {} WARN lines, accounting for {} \
         refusals",
        started.elapsed().as_secs_f64(),
        lines.warn_lines,
        lines.accounted
    );
    assert_eq!(lines.refusals, REFUSALS);
    assert!(lines.warn_lines <= 5, "{} WARN lines", lines.warn_lines);
    assert_eq!(lines.accounted, REFUSALS);
}

#[tokio::test]
async fn peers_of_another_protocol_version_both_name_both_versions() {
    let _serial = SERIAL.lock().await;
    let mut newer = ChannelConfig::default();
    newer.protocol_version = cosmic_runtime::transport::PROTOCOL_VERSION + 1;
    let older = ChannelConfig::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        SecureChannel::accept(stream, &key("older"), &node("older"), &older).await
    });
    let ours = newer.protocol_version;
    let theirs = cosmic_runtime::transport::PROTOCOL_VERSION;
    let refused = SecureChannel::connect(addr, &key("newer"), &node("newer"), &newer)
        .await
        .unwrap_err();
    let message = refused.handshake_error().unwrap().to_string();
    println!("newer side: {message}");
    assert!(
        matches!(refused.handshake_error(), Some(HandshakeError::VersionMismatch { local, peer }) if *local == ours && *peer == theirs),
        "{refused:?}"
    );
    assert!(
        message.contains(&format!("version {ours}"))
            && message.contains(&format!("version {theirs}")),
        "{message}"
    );
    let refused = server.await.unwrap().unwrap_err();
    let message = refused.handshake_error().unwrap().to_string();
    println!("older side: {message}");
    assert!(
        matches!(refused.handshake_error(), Some(HandshakeError::VersionMismatch { local, peer }) if *local == theirs && *peer == ours),
        "{refused:?}"
    );
}
