//! [`SecureListener`]: accepts TCP connections and hands out only the ones whose handshake
//! succeeded. Handshakes run concurrently (a stalled peer delays no one), a bounded number at
//! a time; refused peers are logged and never reach the caller.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::channel::SecureChannel;
use super::config::ChannelConfig;
use super::error::{AcceptError, ListenError};
use super::key::ClusterKey;
use super::node::{NodeName, PeerInfo};

/// A TCP listener that yields authenticated [`SecureChannel`]s.
///
/// Must be used inside a tokio runtime: each handshake runs as a task of its own.
#[derive(Debug)]
pub struct SecureListener {
    listener: TcpListener,
    key: ClusterKey,
    local: NodeName,
    config: ChannelConfig,
    handshakes: JoinSet<Result<(SecureChannel, PeerInfo), AcceptError>>,
}

impl SecureListener {
    /// Listens on `addr`.
    pub async fn bind(
        addr: SocketAddr,
        key: &ClusterKey,
        local: &NodeName,
        config: &ChannelConfig,
    ) -> Result<SecureListener, ListenError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        Ok(SecureListener::from_listener(listener, key, local, config))
    }

    /// Wraps a listener bound elsewhere.
    pub fn from_listener(
        listener: TcpListener,
        key: &ClusterKey,
        local: &NodeName,
        config: &ChannelConfig,
    ) -> SecureListener {
        SecureListener {
            listener,
            key: key.clone(),
            local: local.clone(),
            config: config.clone(),
            handshakes: JoinSet::new(),
        }
    }

    /// The address listened on (to learn the port after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next peer that completes the handshake. Refused connections are logged by
    /// [`SecureChannel::accept`] and skipped. Cancel-safe: handshakes in progress go on and
    /// are returned by a later call. Dropping the listener abandons them.
    ///
    /// Connections that fail before they are accepted (reset by the peer) are skipped; other
    /// errors of the operating system (out of file descriptors) are returned, and the listener
    /// stays usable.
    pub async fn accept(&mut self) -> Result<(SecureChannel, PeerInfo), ListenError> {
        loop {
            let room = self.handshakes.len() < self.config.max_pending_handshakes.max(1);
            tokio::select! {
                accepted = self.listener.accept(), if room => match accepted {
                    Ok((stream, _)) => {
                        let key = self.key.clone();
                        let local = self.local.clone();
                        let config = self.config.clone();
                        self.handshakes.spawn(async move {
                            SecureChannel::accept(stream, &key, &local, &config).await
                        });
                    }
                    Err(error) if is_per_connection(&error) => {
                        tracing::debug!(error = %error, "a connection was reset before it was accepted");
                    }
                    Err(error) => return Err(ListenError::Accept(error)),
                },
                Some(done) = self.handshakes.join_next() => match done {
                    Ok(Ok(opened)) => return Ok(opened),
                    // Already logged, with the peer's address.
                    Ok(Err(_refused)) => {}
                    Err(error) => {
                        tracing::error!(error = %error, "a handshake task ended abnormally");
                    }
                },
            }
        }
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
