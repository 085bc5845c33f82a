//! Errors of the transport, one enum per kind of operation: loading the keys, naming a node,
//! opening a channel (connect, accept, listen) and using it (send, receive).
//!
//! No message here ever holds key material: errors are logged and may be shown to users.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::identity::PublicKey;
use super::node::NodeName;

/// Error returned by the constructors of [`ClusterKey`](super::ClusterKey).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be opened or read.
    #[error("failed to read the cluster key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The key file's mode lets the group or other users read or change it (Unix): the key
    /// is refused, as ssh refuses such private keys.
    #[error(
        "the cluster key file {} has mode {mode:03o}: other users may read or change it; restrict it to its owner with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    SharedFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The environment variable is not set.
    #[error("environment variable `{var}` (the cluster key) is not set")]
    EnvMissing {
        /// The variable.
        var: String,
    },
    /// The environment variable is not valid Unicode, on a platform where that is required.
    #[error("environment variable `{var}` (the cluster key) is not valid Unicode")]
    EnvNotUnicode {
        /// The variable.
        var: String,
    },
    /// The key is shorter than [`MIN_KEY_LEN`](super::MIN_KEY_LEN).
    #[error(
        "the cluster key from {origin} is {length} bytes long; at least {min} bytes are needed"
    )]
    TooShort {
        /// Where the key came from (a file, a variable).
        origin: String,
        /// Its length, after trimming the whitespace around a text key.
        length: usize,
        /// The minimum.
        min: usize,
    },
    /// The key is longer than any key file should be: most likely the wrong file.
    #[error("the cluster key from {origin} is over {limit} bytes long: is it the right file?")]
    TooLong {
        /// Where the key came from.
        origin: String,
        /// The limit.
        limit: usize,
    },
    /// A new key file was not written because a file is already there.
    #[error("the cluster key file {} already exists", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A new key file could not be written.
    #[error("failed to create the cluster key file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The system's random number generator failed.
    #[error("the system's random number generator failed while making a cluster key")]
    Random,
}

/// Error returned by the constructors of [`HostKey`](super::HostKey).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// The key file could not be opened or read.
    #[error("failed to read the host key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The key file's mode lets the group or other users read or change it (Unix): the key
    /// is refused, as ssh refuses such private keys.
    #[error(
        "the host key file {} has mode {mode:03o}: other users may read or change it; restrict it to its owner with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    SharedFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A new key file was not written because a file is already there.
    #[error("the host key file {} already exists", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A new key file could not be written.
    #[error("failed to create the host key file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not a PKCS#8 v2 Ed25519 key pair.
    #[error("the host key from {origin} is not a PKCS#8 v2 Ed25519 key pair: {reason}")]
    Invalid {
        /// Where the key came from (a file, the program).
        origin: String,
        /// What ring reported.
        reason: String,
    },
    /// The system's random number generator failed.
    #[error("the system's random number generator failed while making a host key")]
    Random,
}

/// Error returned when text is not a [`PublicKey`](super::PublicKey) (64 hexadecimal digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// Not 64 characters long.
    #[error("a host public key is 64 hexadecimal digits; this one has {digits} characters")]
    Length {
        /// The characters given (whitespace around them not counted).
        digits: usize,
    },
    /// A character that is not a hexadecimal digit.
    #[error("a host public key is 64 hexadecimal digits; {character:?} at position {position} is not one")]
    NotHex {
        /// The character.
        character: char,
        /// Its position, in bytes.
        position: usize,
    },
}

/// Error returned when a string is not a valid [`NodeName`](super::NodeName).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node name {name:?}: {reason}")]
#[non_exhaustive]
pub struct NodeNameError {
    /// The refused name.
    pub name: String,
    /// Which rule it breaks.
    pub reason: NodeNameRule,
}

/// The rule of [`NodeName`](super::NodeName) that a name breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeNameRule {
    /// The name is empty.
    #[error("node names are not empty")]
    Empty,
    /// The name is longer than [`MAX_NODE_NAME_LEN`](super::MAX_NODE_NAME_LEN).
    #[error("node names are at most {max} bytes long; this one is {length}")]
    TooLong {
        /// Its length in bytes.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The name is `.` or `..`, which mean folders in paths.
    #[error("node names are not `.` or `..`")]
    DotName,
    /// A character that is not allowed in a name.
    #[error("character {character:?} at position {position} is {what}")]
    Character {
        /// The character.
        character: char,
        /// Its position in the name, in characters from 0.
        position: usize,
        /// What kind of character it is ("a path separator", "a control character"...).
        what: &'static str,
    },
}

/// The step of the handshake at which it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeStep {
    /// Opening the TCP connection.
    Connect,
    /// The first Noise message (initiator to responder), which proves the pre-shared key.
    NoiseInitiation,
    /// The second Noise message (responder to initiator), which completes the key agreement.
    NoiseResponse,
    /// The first encrypted message each way: protocol version, node name, public key and the
    /// signature that proves the name.
    Hello,
}

impl fmt::Display for HandshakeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeStep::Connect => "TCP connect",
            HandshakeStep::NoiseInitiation => "first Noise handshake message",
            HandshakeStep::NoiseResponse => "second Noise handshake message",
            HandshakeStep::Hello => "hello exchange",
        })
    }
}

/// Why a handshake failed; the `source` of [`ConnectError::Handshake`] and
/// [`AcceptError::Handshake`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The socket failed.
    #[error("I/O error during the {step}")]
    Io {
        /// Where.
        step: HandshakeStep,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The handshake did not finish in time.
    #[error("the handshake did not finish within {after:?}")]
    Timeout {
        /// The configured limit.
        after: Duration,
    },
    /// The peer sent no valid first handshake message in time: a connection that proved
    /// nothing, dropped before anything was sent to it.
    #[error("the peer sent no first handshake message within {after:?}")]
    FirstMessageTimeout {
        /// [`ChannelConfig::first_message_timeout`](super::ChannelConfig::first_message_timeout).
        after: Duration,
    },
    /// The peer's handshake message failed authentication: the peer does not hold this cluster
    /// key (or is not a cosmic node at all).
    #[error("the {step} failed authentication: the peer does not hold this cluster key")]
    AuthenticationFailed {
        /// Where.
        step: HandshakeStep,
    },
    /// The peer closed the connection in the middle of the handshake. When it happens while
    /// waiting for the [`NoiseResponse`](HandshakeStep::NoiseResponse), the peer most likely
    /// refused our key: a responder sends nothing to a peer it could not authenticate.
    #[error("the peer closed the connection during the {step}: it most likely does not hold this cluster key")]
    PeerClosed {
        /// Where.
        step: HandshakeStep,
    },
    /// The peer sent something that is not a handshake message of this protocol (a frame of
    /// the wrong size, a plain-text client, a port scanner).
    #[error("the peer sent bytes that are not a cosmic handshake during the {step}: {reason}")]
    NotAHandshake {
        /// Where.
        step: HandshakeStep,
        /// What was wrong.
        reason: String,
    },
    /// Both sides hold the key but speak different protocol versions.
    #[error("protocol version mismatch: the peer speaks cosmic protocol version {peer}, this node speaks version {local}")]
    VersionMismatch {
        /// Ours.
        local: u32,
        /// The peer's.
        peer: u32,
    },
    /// The peer authenticated but its hello is malformed (a bug, or a newer peer that broke
    /// the hello's compatibility rule).
    #[error("the peer's hello is malformed: {reason}")]
    BadHello {
        /// What was wrong.
        reason: String,
    },
    /// The peer's signature of the handshake does not verify with the public key it presented:
    /// it does not hold that key's private half (or the channel was tampered with).
    #[error("host `{node}` presented key {key} but its signature of this handshake does not verify with it")]
    BadSignature {
        /// The name it announced.
        node: NodeName,
        /// The key it presented.
        key: PublicKey,
    },
    /// The peer proved a key, but no key is trusted for the name it announced.
    #[error("host `{node}` (key {key}) is not trusted here: if that is its key, add it with Builder::trust_peer or Runtime::trust_peer")]
    UntrustedHost {
        /// The name it announced.
        node: NodeName,
        /// The key it proved.
        key: PublicKey,
    },
    /// The peer proved a key, but not the one trusted for the name it announced: another host
    /// posing as it, or a host whose key changed.
    #[error("host `{node}` presented key {presented}, which is not the key trusted for it ({trusted}); if `{node}` has a new key, update the trusted key (Builder::trust_peer), otherwise another host is posing as `{node}`")]
    WrongHostKey {
        /// The name it announced.
        node: NodeName,
        /// The key it proved.
        presented: PublicKey,
        /// The key trusted for that name.
        trusted: PublicKey,
    },
    /// The responder refused us after our hello (it does not trust our name and key), and said
    /// why in its hello.
    #[error("the peer refused this host, saying: {reason}")]
    RefusedByPeer {
        /// The peer's reason.
        reason: String,
    },
    /// The Noise library refused an operation (it should not happen; kept for diagnosis).
    #[error("the Noise protocol failed during the {step}")]
    Noise {
        /// Where.
        step: HandshakeStep,
        /// What snow reported.
        #[source]
        source: snow::Error,
    },
}

/// Error returned by [`SecureChannel::connect`](super::SecureChannel::connect).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection could not be opened.
    #[error("failed to connect to {addr}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The connection opened but the secure handshake failed.
    #[error("secure handshake with {addr} failed")]
    Handshake {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: HandshakeError,
    },
}

impl ConnectError {
    /// The handshake's error, when the connection opened.
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        match self {
            ConnectError::Handshake { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Error returned by [`SecureChannel::accept`](super::SecureChannel::accept).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The peer's address could not be read: the connection is already gone.
    #[error("failed to read the address of an incoming connection")]
    PeerAddress(#[source] io::Error),
    /// The secure handshake with the peer failed; the connection is closed.
    #[error("refused connection from {addr}: secure handshake failed")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: HandshakeError,
    },
}

impl AcceptError {
    /// The handshake's error, if the handshake started.
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        match self {
            AcceptError::Handshake { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Error returned by [`SecureListener::bind`](super::SecureListener::bind) and
/// [`SecureListener::accept`](super::SecureListener::accept).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The address could not be bound.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The operating system failed to accept a connection (out of file descriptors, ...).
    /// The listener stays usable.
    #[error("failed to accept a connection")]
    Accept(#[source] io::Error),
}

/// Error returned by the send and receive operations of
/// [`SecureChannel`](super::SecureChannel).
///
/// Every error but [`Encode`](ChannelError::Encode) and [`Decode`](ChannelError::Decode) leaves
/// the channel unusable: what was on the wire can no longer be trusted to be in step, so later calls fail
/// with [`ChannelError::Unusable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The socket failed.
    #[error("failed to {operation} on the secure channel")]
    Io {
        /// "send" or "receive".
        operation: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The peer closed the channel cleanly (with an authenticated close record).
    #[error("the peer closed the channel{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        /// The reason the peer gave, if any.
        reason: Option<String>,
    },
    /// The connection ended between two messages without the peer's close record: the peer
    /// crashed, or a third party cut the connection.
    #[error("the connection ended without the peer closing the channel")]
    UnexpectedEof,
    /// The connection ended in the middle of a frame.
    #[error("the connection ended in the middle of a frame ({buffered} bytes of it received)")]
    TruncatedFrame {
        /// The bytes of the incomplete frame that arrived.
        buffered: usize,
    },
    /// The connection ended in the middle of a message.
    #[error(
        "the connection ended in the middle of a message: {received} of {expected} bytes received"
    )]
    TruncatedMessage {
        /// The bytes of the message that arrived.
        received: u64,
        /// Its announced size.
        expected: u64,
    },
    /// A frame failed authentication: its bytes were changed on the way, or were never sent
    /// by the peer.
    #[error("frame {sequence} failed authentication: it was tampered with or forged")]
    Tampered {
        /// The sequence number the frame should have had (frames are counted from 0 after the
        /// Noise handshake, hello included).
        sequence: u64,
    },
    /// A frame that was already received arrived again.
    #[error("replayed frame: expected frame {expected}, received frame {received} again")]
    Replayed {
        /// The sequence number expected.
        expected: u64,
        /// The sequence number of the frame that arrived again.
        received: u64,
    },
    /// A later frame arrived before the expected one: a frame was dropped or the frames were
    /// reordered.
    #[error("frame out of sequence: expected frame {expected}, received frame {received} (a frame was dropped or reordered)")]
    OutOfSequence {
        /// The sequence number expected.
        expected: u64,
        /// The sequence number of the frame that arrived.
        received: u64,
    },
    /// The peer announced a message over this node's limit; nothing was allocated for it and
    /// the channel is closed.
    #[error("the peer announced a message of {announced} bytes, over the limit of {limit} bytes")]
    MessageTooLarge {
        /// The announced size.
        announced: u64,
        /// [`ChannelConfig::max_message_size`](super::ChannelConfig::max_message_size).
        limit: u64,
    },
    /// An authenticated record is not well formed: the peer has a bug (or is a newer peer
    /// that broke compatibility).
    #[error("malformed record from the peer: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// A value could not be encoded; nothing was sent and the channel stays usable.
    #[error("failed to encode a message of type `{type_name}`")]
    Encode {
        /// The type.
        type_name: &'static str,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// A message arrived whole but does not decode as the type asked for (or leaves bytes
    /// over); the channel stays usable.
    #[error("failed to decode a message of {length} bytes as `{type_name}`")]
    Decode {
        /// The type asked for.
        type_name: &'static str,
        /// The message's size.
        length: usize,
        /// What postcard reported, or `None` when bytes were left over.
        #[source]
        source: Option<postcard::Error>,
    },
    /// The reader given to [`send_from`](super::SecureChannel::send_from) failed or ended
    /// before the announced length; the peer sees a truncated message.
    #[error("the payload source failed after {read} of {expected} bytes")]
    Source {
        /// Bytes read before the failure.
        read: u64,
        /// The announced length.
        expected: u64,
        /// The reader's error ([`io::ErrorKind::UnexpectedEof`] when it ended early).
        #[source]
        source: io::Error,
    },
    /// The writer given to [`recv_into`](super::SecureChannel::recv_into) failed.
    #[error("failed to write a received message after {written} bytes")]
    Sink {
        /// Bytes written before the failure.
        written: u64,
        /// The writer's error.
        #[source]
        source: io::Error,
    },
    /// The channel failed earlier, was closed, or an operation was cancelled in the middle of
    /// a message.
    #[error("the channel is no longer usable: an earlier operation failed, was cancelled midway, or it was closed")]
    Unusable,
    /// The Noise library refused an operation (nonce space exhausted; it should not happen).
    #[error("the Noise protocol failed")]
    Noise(#[source] snow::Error),
}

impl ChannelError {
    /// Whether this error means the bytes on the wire were changed, replayed, reordered, dropped
    /// or cut short: an attack or a broken network, not a bug of either side.
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            ChannelError::Tampered { .. }
                | ChannelError::Replayed { .. }
                | ChannelError::OutOfSequence { .. }
                | ChannelError::TruncatedFrame { .. }
                | ChannelError::TruncatedMessage { .. }
                | ChannelError::UnexpectedEof
        )
    }
}
