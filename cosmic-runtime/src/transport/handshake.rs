//! Opening a channel: TCP, then the Noise handshake, then the hello exchange (protocol version
//! and node name, the first encrypted message each way). The responder's side is in two
//! halves, waiting for the proof of the key ([`await_proof`]) and the rest ([`respond`]), so
//! that a listener can keep connections that proved nothing apart, under a shorter deadline.
//!
//! The responder speaks last at every step: it sends its Noise message only after the
//! initiator's has proved the key, and its hello only after the initiator's hello has proved
//! that the initiator completed the key agreement (a replayed first message cannot). So a peer
//! without the key receives nothing but, at most, nothing at all; and nothing about tasks ever
//! crosses a channel before both hellos.
//!
//! The hello's compatibility rule: whatever a later version changes, its hello starts with the
//! protocol version as a postcard `u32`, so that every version can name the other's.

use std::net::SocketAddr;

use serde::Serialize;
use tokio::net::TcpStream;

use super::config::ChannelConfig;
use super::error::{ChannelError, HandshakeError, HandshakeStep};
use super::frame::{self, FramedStream, MAX_HELLO_FRAME};
use super::key::ClusterKey;
use super::node::{NodeName, PeerInfo};
use super::noise::{self, TAG_LEN};
use super::sealed::SealedStream;

/// The first encrypted message each way.
#[derive(Debug, Serialize)]
struct Hello {
    /// First, always: see the module docs.
    protocol_version: u32,
    node: String,
}

/// Which side of the handshake this node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Opened the connection.
    Initiator,
    /// Accepted it.
    Responder,
}

/// Runs the initiator's side on a fresh connection: the Noise handshake, then the hellos.
pub(crate) async fn initiate(
    stream: TcpStream,
    addr: SocketAddr,
    key: &ClusterKey,
    local: &NodeName,
    config: &ChannelConfig,
) -> Result<(SealedStream, PeerInfo), HandshakeError> {
    let mut framed = framing(stream);
    let transport = noise::initiate(&mut framed, key).await?;
    exchange_hellos(framed, transport, addr, Role::Initiator, local, config).await
}

/// An incoming connection whose first Noise message proved the cluster key; nothing has been
/// sent to it yet.
pub(crate) struct ProvenConnection {
    framed: FramedStream,
    initiation: noise::ProvenInitiation,
    addr: SocketAddr,
}

impl ProvenConnection {
    /// The peer's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The first half of the responder's side: waits for the initiator's first message (which
/// proves the key) and sends nothing. A listener holds connections in this state in a
/// budget of their own, since anyone can open them.
pub(crate) async fn await_proof(
    stream: TcpStream,
    addr: SocketAddr,
    key: &ClusterKey,
) -> Result<ProvenConnection, HandshakeError> {
    let mut framed = framing(stream);
    let initiation = noise::await_initiation(&mut framed, key).await?;
    Ok(ProvenConnection {
        framed,
        initiation,
        addr,
    })
}

/// The second half of the responder's side: our Noise message, then the hellos.
pub(crate) async fn respond(
    proven: ProvenConnection,
    local: &NodeName,
    config: &ChannelConfig,
) -> Result<(SealedStream, PeerInfo), HandshakeError> {
    let ProvenConnection {
        mut framed,
        initiation,
        addr,
    } = proven;
    let transport = noise::respond(&mut framed, initiation).await?;
    exchange_hellos(framed, transport, addr, Role::Responder, local, config).await
}

fn framing(stream: TcpStream) -> FramedStream {
    // Latency matters more than packet count for request/response exchanges; bulk transfers
    // are batched by the framed writer anyway.
    let _ = stream.set_nodelay(true);
    frame::handshake_framing(stream)
}

/// The hellos, the first encrypted message each way, once the Noise handshake is done.
async fn exchange_hellos(
    mut framed: FramedStream,
    transport: noise::NoiseTransport,
    addr: SocketAddr,
    role: Role,
    local: &NodeName,
    config: &ChannelConfig,
) -> Result<(SealedStream, PeerInfo), HandshakeError> {
    frame::set_max_frame(&mut framed, MAX_HELLO_FRAME);
    let mut sealed = SealedStream::new(framed, transport);

    let ours = Hello {
        protocol_version: config.protocol_version,
        node: local.as_str().to_owned(),
    };
    let theirs = match role {
        Role::Initiator => {
            send_hello(&mut sealed, &ours).await?;
            receive_hello(&mut sealed).await?
        }
        Role::Responder => {
            let theirs = receive_hello(&mut sealed).await?;
            // Sent even when the versions differ, so that the initiator can name both.
            send_hello(&mut sealed, &ours).await?;
            theirs
        }
    };
    // Checked on both sides, each having the other's hello: each names both versions.
    if theirs.protocol_version != config.protocol_version {
        return Err(HandshakeError::VersionMismatch {
            local: config.protocol_version,
            peer: theirs.protocol_version,
        });
    }
    let node = theirs
        .node
        .map_err(|reason| HandshakeError::BadHello { reason })
        .and_then(|node| {
            NodeName::new(node).map_err(|error| HandshakeError::BadHello {
                reason: error.to_string(),
            })
        })?;
    frame::established_framing(&mut sealed.framed);
    Ok((
        sealed,
        PeerInfo {
            node,
            addr,
            protocol_version: theirs.protocol_version,
        },
    ))
}

async fn send_hello(sealed: &mut SealedStream, hello: &Hello) -> Result<(), HandshakeError> {
    let bytes = postcard::to_stdvec(hello).map_err(|error| HandshakeError::BadHello {
        reason: format!("our own hello does not encode: {error}"),
    })?;
    sealed.feed(&bytes).await.map_err(hello_error)?;
    sealed.flush().await.map_err(hello_error)
}

async fn receive_hello(sealed: &mut SealedStream) -> Result<ReceivedHello, HandshakeError> {
    let frame =
        sealed
            .next_frame()
            .await
            .map_err(hello_error)?
            .ok_or(HandshakeError::PeerClosed {
                step: HandshakeStep::Hello,
            })?;
    let mut plaintext = [0u8; MAX_HELLO_FRAME - TAG_LEN];
    let len = sealed.open(&frame, &mut plaintext).map_err(hello_error)?;
    decode_hello(&plaintext[..len])
}

/// A hello as read: the version always, the rest only if it has this version's shape.
#[derive(Debug)]
struct ReceivedHello {
    protocol_version: u32,
    node: Result<String, String>,
}

/// Reads the version first, so that a hello of another version is still named.
fn decode_hello(bytes: &[u8]) -> Result<ReceivedHello, HandshakeError> {
    let (protocol_version, rest) =
        postcard::take_from_bytes::<u32>(bytes).map_err(|error| HandshakeError::BadHello {
            reason: format!("no protocol version: {error}"),
        })?;
    let node = match postcard::take_from_bytes::<String>(rest) {
        Ok((node, [])) => Ok(node),
        Ok((_, extra)) => Err(format!("{} bytes after the node name", extra.len())),
        Err(error) => Err(format!("no node name: {error}")),
    };
    Ok(ReceivedHello {
        protocol_version,
        node,
    })
}

fn hello_error(error: ChannelError) -> HandshakeError {
    let step = HandshakeStep::Hello;
    match error {
        ChannelError::Io { source, .. } => HandshakeError::Io { step, source },
        ChannelError::UnexpectedEof | ChannelError::TruncatedFrame { .. } => {
            HandshakeError::PeerClosed { step }
        }
        // The initiator's hello is the responder's proof that the initiator finished the key
        // agreement: failing it means a replayed or forged first message.
        ChannelError::Tampered { .. }
        | ChannelError::Replayed { .. }
        | ChannelError::OutOfSequence { .. } => HandshakeError::AuthenticationFailed { step },
        ChannelError::Malformed { reason } => HandshakeError::NotAHandshake { step, reason },
        ChannelError::Noise(source) => HandshakeError::Noise { step, source },
        other => HandshakeError::BadHello {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_of_this_version_decodes() {
        let bytes = postcard::to_stdvec(&Hello {
            protocol_version: 1,
            node: "alpha".to_owned(),
        })
        .unwrap();
        let hello = decode_hello(&bytes).unwrap();
        assert_eq!(hello.protocol_version, 1);
        assert_eq!(hello.node.unwrap(), "alpha");
    }

    #[test]
    fn a_hello_of_another_shape_still_names_its_version() {
        // A later version whose hello goes on with fields this one does not know.
        let mut bytes = postcard::to_stdvec(&Hello {
            protocol_version: 9,
            node: "alpha".to_owned(),
        })
        .unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        let hello = decode_hello(&bytes).unwrap();
        assert_eq!(hello.protocol_version, 9);
        assert!(hello.node.is_err());
        let hello = decode_hello(&postcard::to_stdvec(&(9u32, [0xffu8; 4])).unwrap()).unwrap();
        assert_eq!(hello.protocol_version, 9);
        assert!(hello.node.is_err());
    }

    #[test]
    fn a_hello_without_a_version_is_refused() {
        assert!(matches!(
            decode_hello(&[]),
            Err(HandshakeError::BadHello { .. })
        ));
        assert!(matches!(
            decode_hello(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(HandshakeError::BadHello { .. })
        ));
    }
}
