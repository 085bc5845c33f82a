//! The knobs of a secure channel: size limits, the handshake's deadline and the protocol
//! version spoken.

use std::time::Duration;

/// The version of the transport protocol this build speaks. Peers exchange it in the hello
/// right after the Noise handshake and refuse each other when it differs.
pub const PROTOCOL_VERSION: u32 = 2;

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
    /// How many incoming handshakes a [`SecureListener`](super::SecureListener) runs at once;
    /// further connections wait in the kernel's backlog. Default: 64.
    pub max_pending_handshakes: usize,
}

impl ChannelConfig {
    /// The defaults listed on each field.
    pub const DEFAULT: ChannelConfig = ChannelConfig {
        max_message_size: 1 << 30,
        handshake_timeout: Duration::from_secs(10),
        protocol_version: PROTOCOL_VERSION,
        max_pending_handshakes: 64,
    };
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig::DEFAULT
    }
}
