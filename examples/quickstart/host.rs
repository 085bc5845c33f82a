//! One host of the quickstart, as its own process: a cosmic runtime that is a member of the
//! cluster (by default the embedded coordinator in a shared folder and checkpoints in a shared
//! `FileStore`; see `backend.rs`),
//! reporting on stdout what the orchestrator needs to tell the story:
//!
//! ```text
//! READY <name> <addr>
//! SPAWNED <task> <limit>
//! EVENT <ms> <task> <what> <detail...>     taken from Runtime::cluster_events
//! STATS <checkpoints written> <tasks running>
//! LEFT <moved> <left behind> <ms>          after a SIGTERM, before exiting 0
//! ```

use std::path::Path;
use std::time::Duration;

use cosmic::cluster::{ClusterConfig, ClusterEventKind};
use cosmic::{ClusterKey, HostKey, Policy, Runtime};
use cosmic_examples::primes::PrimeSum;

use crate::{Setup, KEY_FILE_VAR};

/// Runs the host `name` until SIGTERM (leaves the cluster, exits 0) or SIGKILL.
pub(crate) fn run(name: &str, dir: &Path, spawn: &[u64]) -> Result<(), String> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {}", cosmic::ErrorChain(&e)))?;
    tokio.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("cannot watch SIGTERM: {}", cosmic::ErrorChain(&e)))?;
        let rt = build(name, dir).await?;
        println!(
            "READY {name} {}",
            rt.local_addr().map_or("-".into(), |a| a.to_string())
        );
        for limit in spawn {
            let handle = rt
                .spawn(PrimeSum::new(*limit, Setup::SEGMENT))
                .await
                .map_err(|e| format!("spawn: {}", cosmic::ErrorChain(&e)))?;
            println!("SPAWNED {} {limit}", handle.id());
        }
        let mut reported = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    reported = report(&rt, reported);
                }
                _ = terminate.recv() => {
                    let report = rt.leave(Setup::LEAVE_DEADLINE).await.map_err(|e| format!("leave: {}", cosmic::ErrorChain(&e)))?;
                    self::report(&rt, reported);
                    println!(
                        "LEFT {} {} {}",
                        report.moved.len(),
                        report.left_behind.len(),
                        report.elapsed.as_millis()
                    );
                    return Ok(());
                }
            }
        }
    })
}

async fn build(name: &str, dir: &Path) -> Result<Runtime, String> {
    let key_file = std::env::var_os(KEY_FILE_VAR).ok_or(format!("{KEY_FILE_VAR} is not set"))?;
    let cluster_key =
        ClusterKey::from_file(key_file).map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    let host_key = HostKey::from_file(dir.join("keys").join(format!("{name}.key")))
        .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
    let coordinator = crate::backend::coordinator(dir).await?;
    let store = crate::backend::store(dir)?;
    Runtime::builder()
        .host(name)
        .store_shared(store)
        .checkpoint(Policy::every(Setup::CHECKPOINT_EVERY))
        .listen("127.0.0.1:0")
        .cluster_key(cluster_key)
        .host_key(host_key)
        .register::<PrimeSum>()
        .cluster(
            ClusterConfig::shared(coordinator)
                .lease_ttl(Setup::LEASE)
                .scan_every(Setup::SCAN)
                .capacity(1),
        )
        .build()
        .await
        .map_err(|e| format!("cannot start host {name}: {}", cosmic::ErrorChain(&e)))
}

/// Prints the cluster events not printed yet, and the counters; returns how many are printed.
fn report(rt: &Runtime, reported: usize) -> usize {
    let events = rt.cluster_events();
    for event in events.iter().skip(reported) {
        let (what, detail) = match &event.kind {
            ClusterEventKind::Balanced { to, reason } => ("balanced", format!("{to} {reason}")),
            ClusterEventKind::Drained { to } => ("drained", to.clone()),
            ClusterEventKind::TookOver { from, steps } => (
                "took-over",
                format!("{} {steps}", from.as_deref().unwrap_or("-")),
            ),
            ClusterEventKind::Arrived { steps } => ("arrived", steps.to_string()),
            ClusterEventKind::Fenced => ("fenced", String::new()),
            ClusterEventKind::Released { reason } => ("released", reason.clone()),
            _ => ("other", String::new()),
        };
        println!(
            "EVENT {} {} {what} {detail}",
            event.at.as_millis(),
            event.task
        );
    }
    let stats = rt.stats();
    println!("STATS {} {}", stats.checkpoints_written, stats.running);
    events.len()
}
