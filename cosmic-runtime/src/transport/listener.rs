//! [`SecureListener`]: accepts TCP connections and hands out only the ones whose handshake
//! succeeded.
//!
//! Anyone can open a connection, so connections are kept in two groups:
//! - those that have not proved the key yet (their first Noise message has not arrived): at
//!   most [`ChannelConfig::max_unauthenticated_connections`], each for at most
//!   [`ChannelConfig::first_message_timeout`]; when a new connection finds the budget full,
//!   the stalest one is dropped, so peers without the key cannot make honest ones wait. They
//!   receive nothing from us;
//! - those that proved it, whose handshake then completes,
//!   [`ChannelConfig::max_pending_handshakes`] at a time.
//!
//! The listener accepts as fast as connections arrive, so the kernel's backlog never fills
//! with connections nobody looks at. Refusals are logged through a [`WarnLimiter`]: the first
//! of each kind from an address, then one line per interval with the count.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::budget::{Ticket, UnprovenBudget};
use super::channel::{self, SecureChannel};
use super::config::ChannelConfig;
use super::error::{HandshakeError, ListenError};
use super::handshake::ProvenConnection;
use super::identity::Credentials;
use super::node::{NodeName, PeerInfo};
use super::warnings::{self, RefusalKey};
use crate::log_limit::{WarnLimiter, DEFAULT_CAPACITY};

/// What the first half of a handshake gives back: its ticket in the budget, and the proven
/// connection (with the handshake's deadline) or why it was refused.
type Proof = (
    Ticket,
    SocketAddr,
    Result<(ProvenConnection, Instant), HandshakeError>,
);

/// What the second half gives back.
type Completion = (
    SocketAddr,
    Result<(SecureChannel, PeerInfo), HandshakeError>,
);

/// A connection in the unauthenticated budget: how to drop it, and who it is.
#[derive(Debug)]
struct Unproven {
    task: AbortHandle,
    addr: SocketAddr,
}

/// A TCP listener that yields authenticated [`SecureChannel`]s.
///
/// Must be used inside a tokio runtime: each handshake runs as a task of its own.
#[derive(Debug)]
pub struct SecureListener {
    listener: TcpListener,
    credentials: Credentials,
    local: NodeName,
    config: ChannelConfig,
    /// Connections that have not proved the key, each waiting for its first message.
    unproven: JoinSet<Proof>,
    budget: UnprovenBudget<Unproven>,
    /// Handshakes of connections that proved the key.
    proven: JoinSet<Completion>,
    warnings: WarnLimiter<RefusalKey>,
}

impl SecureListener {
    /// Listens on `addr`.
    pub async fn bind(
        addr: SocketAddr,
        credentials: &Credentials,
        local: &NodeName,
        config: &ChannelConfig,
    ) -> Result<SecureListener, ListenError> {
        let listener = listen(addr).map_err(|source| ListenError::Bind { addr, source })?;
        Ok(SecureListener::from_listener(
            listener,
            credentials,
            local,
            config,
        ))
    }

    /// Wraps a listener bound elsewhere.
    pub fn from_listener(
        listener: TcpListener,
        credentials: &Credentials,
        local: &NodeName,
        config: &ChannelConfig,
    ) -> SecureListener {
        SecureListener {
            listener,
            credentials: credentials.clone(),
            local: local.clone(),
            config: config.clone(),
            unproven: JoinSet::new(),
            budget: UnprovenBudget::new(config.max_unauthenticated_connections),
            proven: JoinSet::new(),
            warnings: WarnLimiter::new(config.warning_interval, DEFAULT_CAPACITY),
        }
    }

    /// The address listened on (to learn the port after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next peer that completes the handshake. Refused connections are logged (repeats
    /// aggregated) and skipped. Cancel-safe: handshakes in progress go on and are returned by
    /// a later call. Dropping the listener abandons them.
    ///
    /// Connections that fail before they are accepted (reset by the peer) are skipped; other
    /// errors of the operating system (out of file descriptors) are returned, and the listener
    /// stays usable.
    pub async fn accept(&mut self) -> Result<(SecureChannel, PeerInfo), ListenError> {
        loop {
            let room_to_finish = self.proven.len() < self.config.max_pending_handshakes.max(1);
            let summaries_due = self.warnings.next_due();
            tokio::select! {
                // Finished work first, so that a connection that proved the key leaves the
                // budget before newer connections can push it out.
                biased;
                Some(done) = self.proven.join_next() => match done {
                    Ok((_, Ok(opened))) => return Ok(opened),
                    Ok((addr, Err(error))) => self.refused(addr, &error),
                    Err(error) => self.task_failed(error),
                },
                Some(done) = self.unproven.join_next(), if room_to_finish => match done {
                    Ok(proof) => self.proved(proof),
                    Err(error) => self.task_failed(error),
                },
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, addr)) => self.admit(stream, addr),
                    Err(error) if is_per_connection(&error) => {
                        tracing::debug!(error = %error, "a connection was reset before it was accepted");
                    }
                    Err(error) => {
                        // Out of file descriptors, most likely: give one back for the next
                        // connection, taken from those that proved nothing.
                        if let Some(stalest) = self.budget.evict_stalest() {
                            self.evicted(stalest);
                        }
                        return Err(ListenError::Accept(error));
                    }
                },
                () = sleep_until(summaries_due), if summaries_due.is_some() => {
                    let owed = self.warnings.due(std::time::Instant::now());
                    warnings::refusal_summaries(&self.local, owed);
                }
            }
        }
    }

    /// Starts waiting for a new connection's proof of the key, dropping the stalest
    /// unproven connection if the budget is full.
    fn admit(&mut self, stream: TcpStream, addr: SocketAddr) {
        let ticket = self.budget.issue();
        let key = self.credentials.cluster_key.clone();
        let config = self.config.clone();
        let task = self.unproven.spawn(async move {
            let deadline = Instant::now() + config.handshake_timeout;
            let proof = channel::await_proof(stream, addr, &key, &config).await;
            (ticket, addr, proof.map(|proven| (proven, deadline)))
        });
        if let Some(stalest) = self.budget.admit(ticket, Unproven { task, addr }) {
            self.evicted(stalest);
        }
    }

    /// Drops a connection that proved nothing, to make room.
    fn evicted(&mut self, stalest: Unproven) {
        stalest.task.abort();
        let reason = format!(
            "it had not proved the key when room was needed (at most {} such connections)",
            self.config.max_unauthenticated_connections.max(1)
        );
        warnings::refused(
            &mut self.warnings,
            &self.local,
            stalest.addr,
            warnings::EVICTED,
            &reason,
        );
    }

    /// A connection's first message arrived (or did not): finish its handshake, or log why not.
    fn proved(&mut self, (ticket, addr, proof): Proof) {
        if self.budget.release(ticket).is_none() {
            // Dropped to make room before its result was read; already counted.
            return;
        }
        match proof {
            Ok((proven, deadline)) => {
                let local = self.local.clone();
                let config = self.config.clone();
                let credentials = self.credentials.clone();
                self.proven.spawn(async move {
                    (
                        addr,
                        channel::finish_accept(proven, &credentials, &local, &config, deadline)
                            .await,
                    )
                });
            }
            Err(error) => self.refused(addr, &error),
        }
    }

    fn refused(&mut self, addr: SocketAddr, error: &HandshakeError) {
        let reason = channel::error_chain(error);
        warnings::refused(
            &mut self.warnings,
            &self.local,
            addr,
            warnings::kind(error),
            &reason,
        );
    }

    fn task_failed(&self, error: tokio::task::JoinError) {
        // Aborted to make room for a newer connection: already counted.
        if !error.is_cancelled() {
            tracing::error!(error = %error, "a handshake task ended abnormally");
        }
    }
}

impl Drop for SecureListener {
    fn drop(&mut self) {
        // (The handshakes end with their join sets.) The counts not yet logged would be lost otherwise.
        let owed = self.warnings.flush();
        warnings::refusal_summaries(&self.local, owed);
    }
}

async fn sleep_until(when: Option<std::time::Instant>) {
    if let Some(when) = when {
        tokio::time::sleep_until(Instant::from_std(when)).await;
    }
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// How many connections the kernel queues for the accept loop. Anyone can open connections in
/// a loop; with tokio's default (1,024) a flood filled the queue and an honest peer's SYN was
/// dropped, costing it the kernel's 1 s retransmission. The kernel caps it at `somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

/// Binds `addr` with a deep accept queue (and `SO_REUSEADDR`, as `TcpListener::bind` does on
/// Unix, so a restarted host can listen again at once).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
