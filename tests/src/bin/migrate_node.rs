//! A cosmic host as an OS process, driven line by line on stdin, for the multi-process
//! migration tests (`tests/migrate_processes.rs`).
//!
//! `migrate_node --name NAME --listen ADDR --store DIR [--host-key FILE] [--peer NAME=ADDR]...
//! [--trust NAME=PUBLIC_KEY]...`
//!
//! The cluster key is read from the file named by `COSMIC_CLUSTER_KEY_FILE` (never from the
//! command line). The host's own key pair is in `--host-key FILE` (created, mode 0600, if
//! absent; without the option, a new key pair for this run); `--trust NAME=PUBLIC_KEY` (64 hex
//! digits) trusts a peer's public key. At start the node prints `key PUBLIC_KEY` (its own),
//! then `ready ...`. `COSMIC_FAULT=point=action` injects a fault into this host's hand-offs;
//! `COSMIC_MIGRATION_TIMEOUT_MS` shortens the hand-off timeouts; `COSMIC_CHECKPOINT_STEPS`
//! sets the checkpoint interval (default every 10 steps).
//!
//! Commands and answers (one line each; answers to `join` may come later, interleaved):
//! ```text
//! spawn TOTAL LOG STEP_MS BALLAST_BYTES -> spawned ID
//! steps ID                 -> steps ID N
//! migrate ID HOST          -> migrated ID | failed ID REASON
//! join ID                  -> joined ID DIGEST | join-failed ID REASON
//! locate ID                -> located ID HOST STATUS STEPS | locate-failed ID REASON
//! trust NAME PUBLIC_KEY    -> trusted NAME | trust-failed NAME REASON
//! quit                     -> (exits)
//! ```

use std::time::Duration;

use cosmic::checkpoint::FileStore;
use cosmic::runtime::migrate::FaultPlan;
use cosmic::{ClusterKey, HostKey, Policy, Runtime, TaskId};
use cosmic_tests::counter::Counter;
use tokio::io::{AsyncBufReadExt, BufReader};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    cosmic_tests::logging::init(tracing_subscriber::filter::LevelFilter::WARN);
    let args: Vec<String> = std::env::args().collect();
    let name = arg(&args, "--name").expect("--name");
    let listen = arg(&args, "--listen").expect("--listen");
    let store = arg(&args, "--store").expect("--store");
    let key_file = std::env::var("COSMIC_CLUSTER_KEY_FILE").expect("COSMIC_CLUSTER_KEY_FILE");
    let key = ClusterKey::from_file(&key_file).expect("cluster key");
    let mut builder = Runtime::builder()
        .host(&name)
        .store(FileStore::open(&store).expect("store"))
        .checkpoint(match std::env::var("COSMIC_CHECKPOINT_STEPS") {
            Ok(steps) => Policy::every_steps(steps.parse().expect("steps")),
            Err(_) => Policy::every_steps(10),
        })
        .listen(listen)
        .cluster_key(key)
        .register::<Counter>();
    if let Some(file) = arg(&args, "--host-key") {
        builder = builder.host_key(HostKey::load_or_create(&file).expect("host key"));
    }
    for (i, a) in args.iter().enumerate() {
        if a == "--peer" {
            let (peer, addr) = args[i + 1].split_once('=').expect("--peer NAME=ADDR");
            builder = builder.peer(peer, addr);
        }
        if a == "--trust" {
            let (peer, key) = args[i + 1]
                .split_once('=')
                .expect("--trust NAME=PUBLIC_KEY");
            builder = builder.trust_peer(peer, key.parse().expect("--trust: a public key"));
        }
    }
    if let Ok(ms) = std::env::var("COSMIC_MIGRATION_TIMEOUT_MS") {
        builder = builder.migration_timeout(Duration::from_millis(ms.parse().expect("ms")));
    }
    if let Ok(plan) = std::env::var("COSMIC_FAULT") {
        builder = builder.inject_fault(plan.parse::<FaultPlan>().expect("COSMIC_FAULT"));
    }
    let rt = builder.build().await.expect("build the runtime");
    let recovery = rt.recovery();
    println!("key {}", rt.public_key().expect("listening"));
    println!(
        "ready {} resumed={} moved={} in_doubt={} failed={:?}",
        rt.local_addr().expect("listening"),
        recovery.resumed.len(),
        recovery.moved.len(),
        recovery.in_doubt.len(),
        recovery
            .failed
            .iter()
            .map(|(task, error)| format!("{task}: {}", cosmic::ErrorChain(error)))
            .collect::<Vec<_>>()
    );

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let id = |i: usize| -> TaskId { words[i].parse().expect("task id") };
        match words.as_slice() {
            ["spawn", total, log, step_ms, ballast] => {
                let mut counter = Counter::new(
                    total.parse().expect("total"),
                    *log,
                    step_ms.parse().expect("step_ms"),
                );
                counter.ballast = vec![0x5a; ballast.parse().expect("ballast bytes")];
                let handle = rt.spawn(counter).await.expect("spawn");
                println!("spawned {}", handle.id());
            }
            ["steps", _] => {
                let steps = rt.handle::<u64>(id(1)).map_or(0, |h| h.steps_completed());
                println!("steps {} {steps}", id(1));
            }
            ["migrate", _, host] => {
                let native_before = rt.stats().moved_native;
                let answer = match rt.handle::<u64>(id(1)) {
                    Ok(handle) => handle.migrate_to(host).await.map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                match answer {
                    Ok(()) => {
                        // Which encoding the move chose (the runtime's own count says).
                        let native = rt.stats().moved_native > native_before;
                        let encoding = if native { "native" } else { "portable" };
                        println!("migrated {} {encoding}", id(1));
                    }
                    Err(reason) => println!("failed {} {reason}", id(1)),
                }
            }
            ["join", _] => {
                let task = id(1);
                let handle = rt.handle::<u64>(task);
                tokio::spawn(async move {
                    let result = match handle {
                        Ok(handle) => handle.join().await.map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    };
                    match result {
                        Ok(digest) => println!("joined {task} {digest}"),
                        Err(reason) => println!("join-failed {task} {reason}"),
                    }
                });
            }
            ["locate", _] => match rt.locate(id(1)).await {
                Ok(at) => println!(
                    "located {} {} {} {}",
                    id(1),
                    at.host,
                    at.status.to_string().replace(' ', "_"),
                    at.steps
                ),
                Err(error) => println!("locate-failed {} {error}", id(1)),
            },
            ["trust", peer, key] => {
                let trusted = match (peer.parse(), key.parse()) {
                    (Ok(name), Ok(key)) => rt.trust_peer(name, key).map_err(|e| e.to_string()),
                    (Err(error), _) => Err(error.to_string()),
                    (_, Err(error)) => Err(error.to_string()),
                };
                match trusted {
                    Ok(()) => println!("trusted {peer}"),
                    Err(reason) => println!("trust-failed {peer} {reason}"),
                }
            }
            ["quit"] => break,
            _ => println!("unknown command: {line}"),
        }
    }
}
