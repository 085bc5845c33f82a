//! The knobs of a secure channel: size limits, the handshake's deadlines, the listener's
//! budgets, the protocol version spoken and how often repeated warnings are logged.

use std::time::Duration;

/// The version of the transport protocol this build speaks. Peers exchange it in the hello
/// right after the Noise handshake and refuse each other when it differs. (5: offers carry
/// the task's count of tries after panics; 6: hellos carry the host's kind of machine and
/// build, offers the image's writer and layout, so that moves between like machines are
/// native.)
pub const PROTOCOL_VERSION: u32 = 6;

/// Limits and settings of a [`SecureChannel`](super::SecureChannel) and a
/// [`SecureListener`](super::SecureListener).
///
/// ```
/// use std::time::Duration;
/// use cosmic_runtime::transport::ChannelConfig;
///
/// let mut config = ChannelConfig::default();
/// config.max_message_size = 64 << 20;
/// config.handshake_timeout = Duration::from_secs(2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// The largest message this node accepts, in bytes. A peer announcing a larger one is
    /// refused before anything is allocated for it, and the channel is closed. Applies to
    /// every receive, streamed or not. Default: 1 GiB.
    pub max_message_size: u64,
    /// The longest the TCP connect plus the whole handshake may take; a peer that stalls is
    /// dropped after it. Default: 10 seconds.
    pub handshake_timeout: Duration,
    /// The protocol version announced in the hello. Leave it at [`PROTOCOL_VERSION`]; it is
    /// settable so that tests can play an older or newer peer.
    pub protocol_version: u32,
    /// How long a peer has, from the moment its connection is accepted, to send the first
    /// Noise message, which proves that it holds the cluster key (an honest peer sends it
    /// right after connecting). A connection that proves nothing in this time is dropped.
    /// Bounded by `handshake_timeout`. Default: 1 second.
    pub first_message_timeout: Duration,
    /// How many accepted connections a [`SecureListener`](super::SecureListener) holds that
    /// have not yet proved the key. When a new connection finds them all taken, the oldest
    /// is dropped to make room, so connections that prove nothing cannot keep honest peers
    /// waiting. Default: 256.
    pub max_unauthenticated_connections: usize,
    /// How many handshakes of connections that proved the key a
    /// [`SecureListener`](super::SecureListener) completes at once (the hello exchange).
    /// Further proven connections wait, still counted as unauthenticated. Default: 64.
    pub max_pending_handshakes: usize,
    /// Warnings about connections that repeat (refusals from one address, failures to reach
    /// one peer) are logged the first time, then at most once per this interval with the
    /// number suppressed. Default: 10 seconds.
    pub warning_interval: Duration,
}

impl ChannelConfig {
    /// The defaults listed on each field.
    pub const DEFAULT: ChannelConfig = ChannelConfig {
        max_message_size: 1 << 30,
        handshake_timeout: Duration::from_secs(10),
        protocol_version: PROTOCOL_VERSION,
        first_message_timeout: Duration::from_secs(1),
        max_unauthenticated_connections: 256,
        max_pending_handshakes: 64,
        warning_interval: Duration::from_secs(10),
    };
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig::DEFAULT
    }
}
