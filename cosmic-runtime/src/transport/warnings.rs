//! The transport's warnings about single connections (refused peers, peers that cannot be
//! reached), aggregated through a [`WarnLimiter`]: anyone can open connections in a loop, and
//! one line each would let them flood the log. The first of a kind from a source is logged
//! with its reason; the rest are counted into one line per source and interval.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::config::ChannelConfig;
use super::error::HandshakeError;
use super::node::NodeName;
use crate::log_limit::{Summary, Verdict, WarnLimiter, DEFAULT_CAPACITY};

/// What a refusal of an incoming connection is counted under: why, and the peer's address
/// without the port (a peer opening connections in a loop uses a new port each time).
pub(crate) type RefusalKey = (&'static str, IpAddr);

/// The warnings of [`SecureChannel::connect`](super::SecureChannel::connect) and
/// [`SecureChannel::accept`](super::SecureChannel::accept) called on their own: kind, local
/// node (several hosts may share a process), and peer.
type ChannelKey = (&'static str, NodeName, SocketAddr);

/// Why a handshake failed, in a word or two: what warnings are counted under.
pub(crate) fn kind(error: &HandshakeError) -> &'static str {
    match error {
        HandshakeError::FirstMessageTimeout { .. } => "no first message",
        HandshakeError::Timeout { .. } => "timed out",
        HandshakeError::AuthenticationFailed { .. } => "wrong key",
        HandshakeError::PeerClosed { .. } => "closed by the peer",
        HandshakeError::NotAHandshake { .. } => "not a handshake",
        HandshakeError::VersionMismatch { .. } => "protocol version mismatch",
        HandshakeError::BadHello { .. } => "malformed hello",
        HandshakeError::BadSignature { .. } => "bad host signature",
        HandshakeError::UntrustedHost { .. } => "untrusted host",
        HandshakeError::WrongHostKey { .. } => "wrong host key",
        HandshakeError::RefusedByPeer { .. } => "refused by the peer",
        _ => "handshake failed",
    }
}

/// The kind under which connections dropped to make room for newer ones are counted.
pub(crate) const EVICTED: &str = "dropped for a newer connection";

/// Logs the refusal of an incoming connection from `addr`, if `limiter` says so.
pub(crate) fn refused(
    limiter: &mut WarnLimiter<RefusalKey>,
    local: &NodeName,
    addr: SocketAddr,
    kind: &'static str,
    reason: &dyn std::fmt::Display,
) {
    match limiter.observe((kind, addr.ip()), Instant::now()) {
        Verdict::Log { suppressed } => tracing::warn!(
            peer = %addr,
            local_node = %local,
            kind,
            reason = %reason,
            suppressed,
            "refused an incoming connection"
        ),
        Verdict::Suppress => {
            tracing::debug!(peer = %addr, local_node = %local, kind, reason = %reason, "refused an incoming connection")
        }
    }
}

/// Logs the lines owed for refusals that were counted and not logged.
pub(crate) fn refusal_summaries(local: &NodeName, owed: Vec<Summary<RefusalKey>>) {
    for Summary { key, suppressed } in owed {
        match key {
            Some((kind, ip)) => tracing::warn!(
                peer = %ip,
                local_node = %local,
                kind,
                suppressed,
                "refused more incoming connections"
            ),
            None => tracing::warn!(
                local_node = %local,
                suppressed,
                "refused more incoming connections, from too many addresses to count apart"
            ),
        }
    }
}

/// Which call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// [`SecureChannel::connect`](super::SecureChannel::connect): counted per peer address.
    Connect,
    /// [`SecureChannel::accept`](super::SecureChannel::accept): counted per peer IP address.
    Accept,
}

/// Logs a failure of [`SecureChannel::connect`](super::SecureChannel::connect) or of
/// [`SecureChannel::accept`](super::SecureChannel::accept), through one limiter for the
/// process (they have no owner that outlives one connection).
pub(crate) fn channel_failed(
    side: Side,
    local: &NodeName,
    peer: SocketAddr,
    error: &HandshakeError,
    reason: &dyn std::fmt::Display,
) {
    let (message, source) = match side {
        Side::Connect => ("failed to open a secure channel", peer),
        Side::Accept => (
            "refused an incoming connection",
            SocketAddr::new(peer.ip(), 0),
        ),
    };
    static LIMITER: OnceLock<Mutex<WarnLimiter<ChannelKey>>> = OnceLock::new();
    let limiter = LIMITER.get_or_init(|| {
        Mutex::new(WarnLimiter::new(
            ChannelConfig::DEFAULT.warning_interval,
            DEFAULT_CAPACITY,
        ))
    });
    // A poisoned lock only means another thread panicked while logging: the counts still hold.
    let mut limiter = limiter
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    let kind = kind(error);
    match limiter.observe((kind, local.clone(), source), now) {
        Verdict::Log { suppressed } => tracing::warn!(
            peer = %peer,
            local_node = %local,
            kind,
            reason = %reason,
            suppressed,
            "{message}"
        ),
        Verdict::Suppress => {
            tracing::debug!(peer = %peer, local_node = %local, kind, reason = %reason, "{message}")
        }
    }
    for Summary { key, suppressed } in limiter.due(now) {
        match key {
            Some((kind, local, source)) => tracing::warn!(
                peer = %source,
                local_node = %local,
                kind,
                suppressed,
                "more secure channels failed"
            ),
            None => tracing::warn!(
                suppressed,
                "more secure channels failed, with too many peers to count apart"
            ),
        }
    }
}
