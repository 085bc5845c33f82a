//! Opening a channel: TCP, then the Noise handshake, then the hello exchange (the first
//! encrypted message each way: protocol version, node name, the host's public key and its
//! signature of the handshake). The responder's side is in two halves, waiting for the proof of
//! the cluster key ([`await_proof`]) and the rest ([`respond`]), so that a listener can keep
//! connections that proved nothing apart, under a shorter deadline.
//!
//! The responder speaks last at every step: it sends its Noise message only after the
//! initiator's has proved the key, and its hello only after the initiator's hello has proved
//! that the initiator completed the key agreement (a replayed first message cannot). So a peer
//! without the key receives nothing but, at most, nothing at all; and nothing about tasks ever
//! crosses a channel before both hellos.
//!
//! Names are proven, not claimed: each side signs, with its host key (Ed25519), a role label
//! (`cosmic initiator` / `cosmic responder`) followed by the Noise handshake hash. The hash
//! covers both ephemeral keys and the pre-shared key's use, so a signature is worth nothing
//! on any other channel (replay), and the label keeps a responder from sending the initiator's
//! own signature back (reflection). Each side verifies the other's signature with the public
//! key in its hello, then checks its trust list: the name announced must be trusted with exactly
//! that key. A responder that refuses the initiator says why in its hello (the initiator then
//! fails with [`HandshakeError::RefusedByPeer`]); an initiator that refuses the responder
//! closes the channel with the reason.
//!
//! The hello's compatibility rule: whatever a later version changes, its hello starts with the
//! protocol version as a postcard `u32`, so that every version can name the other's.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::config::ChannelConfig;
use super::error::{ChannelError, HandshakeError, HandshakeStep};
use super::frame::{self, FramedStream, MAX_HELLO_FRAME};
use super::identity::{Credentials, HostKey, PublicKey, TrustedPeers, PUBLIC_KEY_LEN};
use super::key::ClusterKey;
use super::node::{NodeName, PeerInfo};
use super::noise::{self, TAG_LEN};
use super::record;
use super::sealed::SealedStream;
use crate::image::Isa;

/// What the initiator signs, before the handshake hash.
const INITIATOR_LABEL: &[u8; 16] = b"cosmic initiator";
/// What the responder signs, before the handshake hash.
const RESPONDER_LABEL: &[u8; 16] = b"cosmic responder";

/// The longest refusal reason sent in a hello; longer ones are cut (at a character boundary).
const MAX_REFUSAL: usize = 1024;

/// The first encrypted message each way.
#[derive(Debug, Serialize)]
struct Hello<'a> {
    /// First, always: see the module docs.
    protocol_version: u32,
    node: &'a str,
    /// The sender's host public key.
    public_key: [u8; PUBLIC_KEY_LEN],
    /// Its Ed25519 signature of its role's label and the handshake hash.
    signature: &'a [u8],
    /// Set only in a responder's hello: why it refuses the initiator.
    refusal: Option<&'a str>,
    /// The sender's kind of machine and build: a move between like machines is native.
    isa: Isa,
}

/// What follows the version in a hello of this version.
#[derive(Debug, Deserialize)]
struct HelloBody {
    node: String,
    public_key: [u8; PUBLIC_KEY_LEN],
    signature: Vec<u8>,
    refusal: Option<String>,
    isa: Isa,
}

/// Which side of the handshake this node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Opened the connection.
    Initiator,
    /// Accepted it.
    Responder,
}

impl Role {
    fn label(self) -> &'static [u8; 16] {
        match self {
            Role::Initiator => INITIATOR_LABEL,
            Role::Responder => RESPONDER_LABEL,
        }
    }

    fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

/// What the side playing `role` signs on the channel whose handshake hash is `hash`.
fn signed_message(role: Role, hash: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(16 + hash.len());
    message.extend_from_slice(role.label());
    message.extend_from_slice(hash);
    message
}

/// This side's signature for the channel whose handshake hash is `hash`.
fn sign(key: &HostKey, role: Role, hash: &[u8]) -> [u8; 64] {
    key.sign(&signed_message(role, hash))
}

/// Checks the peer's hello on the channel whose handshake hash is `hash`: the signature with
/// the key it presents, then that key against the one trusted for the name it announces.
fn verify_peer(
    body: HelloBody,
    peer_role: Role,
    hash: &[u8],
    trusted: &TrustedPeers,
) -> Result<(NodeName, PublicKey), HandshakeError> {
    let node = NodeName::new(body.node).map_err(|error| HandshakeError::BadHello {
        reason: error.to_string(),
    })?;
    let key = PublicKey::from_bytes(body.public_key);
    if !key.verifies(&signed_message(peer_role, hash), &body.signature) {
        return Err(HandshakeError::BadSignature { node, key });
    }
    trusted.check(&node, &key)?;
    Ok((node, key))
}

/// Runs the initiator's side on a fresh connection: the Noise handshake, then the hellos.
pub(crate) async fn initiate(
    stream: TcpStream,
    addr: SocketAddr,
    credentials: &Credentials,
    local: &NodeName,
    config: &ChannelConfig,
) -> Result<(SealedStream, PeerInfo), HandshakeError> {
    let mut framed = framing(stream);
    let transport = noise::initiate(&mut framed, &credentials.cluster_key).await?;
    exchange_hellos(
        framed,
        transport,
        addr,
        Role::Initiator,
        credentials,
        local,
        config,
    )
    .await
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
    credentials: &Credentials,
    local: &NodeName,
    config: &ChannelConfig,
) -> Result<(SealedStream, PeerInfo), HandshakeError> {
    let ProvenConnection {
        mut framed,
        initiation,
        addr,
    } = proven;
    let transport = noise::respond(&mut framed, initiation).await?;
    exchange_hellos(
        framed,
        transport,
        addr,
        Role::Responder,
        credentials,
        local,
        config,
    )
    .await
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
    credentials: &Credentials,
    local: &NodeName,
    config: &ChannelConfig,
) -> Result<(SealedStream, PeerInfo), HandshakeError> {
    frame::set_max_frame(&mut framed, MAX_HELLO_FRAME);
    let hash = transport.handshake_hash().to_vec();
    let mut sealed = SealedStream::new(framed, transport);
    let signature = sign(&credentials.host_key, role, &hash);
    let ours = |refusal| Hello {
        protocol_version: config.protocol_version,
        node: local.as_str(),
        public_key: *credentials.host_key.public_key().as_bytes(),
        signature: &signature,
        refusal,
        isa: Isa::host(),
    };
    // Checked on both sides, each having the other's hello: each names both versions.
    let same_version = |theirs: &ReceivedHello| {
        if theirs.protocol_version == config.protocol_version {
            Ok(())
        } else {
            Err(HandshakeError::VersionMismatch {
                local: config.protocol_version,
                peer: theirs.protocol_version,
            })
        }
    };
    let (node, public_key, protocol_version, isa) = match role {
        Role::Initiator => {
            send_hello(&mut sealed, &ours(None)).await?;
            let theirs = receive_hello(&mut sealed).await?;
            same_version(&theirs)?;
            let body = theirs
                .body
                .map_err(|reason| HandshakeError::BadHello { reason })?;
            if let Some(reason) = body.refusal {
                return Err(HandshakeError::RefusedByPeer { reason });
            }
            let isa = body.isa;
            match verify_peer(body, role.peer(), &hash, &credentials.trusted) {
                Ok((node, key)) => (node, key, theirs.protocol_version, isa),
                Err(error) => {
                    // Best effort: the responder learns why, rather than just that we left.
                    let reason = format!("{local} refused this host: {error}");
                    if sealed.feed(&record::close(Some(&reason))).await.is_ok() {
                        let _ = sealed.flush().await;
                    }
                    return Err(error);
                }
            }
        }
        Role::Responder => {
            let theirs = receive_hello(&mut sealed).await?;
            let protocol_version = theirs.protocol_version;
            let verdict = same_version(&theirs).and_then(|()| {
                let body = theirs
                    .body
                    .map_err(|reason| HandshakeError::BadHello { reason })?;
                let isa = body.isa;
                verify_peer(body, role.peer(), &hash, &credentials.trusted)
                    .map(|(node, key)| (node, key, isa))
            });
            // Sent even when the versions differ, so that the initiator can name both; when
            // we refuse the initiator, the hello says why (the initiator sees the version
            // mismatch for itself).
            let refusal = match &verdict {
                Err(HandshakeError::VersionMismatch { .. }) | Ok(_) => None,
                Err(error) => Some(truncate(error.to_string())),
            };
            send_hello(&mut sealed, &ours(refusal.as_deref())).await?;
            let (node, key, isa) = verdict?;
            (node, key, protocol_version, isa)
        }
    };
    frame::established_framing(&mut sealed.framed);
    Ok((
        sealed,
        PeerInfo {
            node,
            public_key,
            addr,
            protocol_version,
            isa,
        },
    ))
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_REFUSAL {
        let mut end = MAX_REFUSAL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

async fn send_hello(sealed: &mut SealedStream, hello: &Hello<'_>) -> Result<(), HandshakeError> {
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
    body: Result<HelloBody, String>,
}

/// Reads the version first, so that a hello of another version is still named.
fn decode_hello(bytes: &[u8]) -> Result<ReceivedHello, HandshakeError> {
    let (protocol_version, rest) =
        postcard::take_from_bytes::<u32>(bytes).map_err(|error| HandshakeError::BadHello {
            reason: format!("no protocol version: {error}"),
        })?;
    let body = match postcard::take_from_bytes::<HelloBody>(rest) {
        Ok((body, [])) => Ok(body),
        Ok((_, extra)) => Err(format!("{} bytes after the hello", extra.len())),
        Err(error) => Err(format!("no node name, public key and signature: {error}")),
    };
    Ok(ReceivedHello {
        protocol_version,
        body,
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

    fn hello_bytes(version: u32, node: &str, key: &HostKey, refusal: Option<&str>) -> Vec<u8> {
        postcard::to_stdvec(&Hello {
            protocol_version: version,
            node,
            public_key: *key.public_key().as_bytes(),
            signature: &[7u8; 64],
            refusal,
            isa: Isa::host(),
        })
        .unwrap()
    }

    #[test]
    fn a_hello_of_this_version_decodes() {
        let key = HostKey::generate().unwrap();
        let bytes = hello_bytes(1, "alpha", &key, Some("no"));
        let hello = decode_hello(&bytes).unwrap();
        assert_eq!(hello.protocol_version, 1);
        let body = hello.body.unwrap();
        assert_eq!(body.node, "alpha");
        assert_eq!(body.public_key, *key.public_key().as_bytes());
        assert_eq!(body.signature, [7u8; 64]);
        assert_eq!(body.refusal.as_deref(), Some("no"));
        assert_eq!(body.isa, Isa::host());
    }

    #[test]
    fn a_hello_of_another_shape_still_names_its_version() {
        // A later version whose hello goes on with fields this one does not know.
        let key = HostKey::generate().unwrap();
        let mut bytes = hello_bytes(9, "alpha", &key, None);
        bytes.extend_from_slice(&[1, 2, 3]);
        let hello = decode_hello(&bytes).unwrap();
        assert_eq!(hello.protocol_version, 9);
        assert!(hello.body.is_err());
        let hello = decode_hello(&postcard::to_stdvec(&(9u32, [0xffu8; 4])).unwrap()).unwrap();
        assert_eq!(hello.protocol_version, 9);
        assert!(hello.body.is_err());
        // The hello of version 2 (version and name only) names its version too.
        let hello = decode_hello(&postcard::to_stdvec(&(2u32, "alpha")).unwrap()).unwrap();
        assert_eq!(hello.protocol_version, 2);
        assert!(hello.body.is_err());
    }

    /// Two channels between the same pair of hosts, and the two hosts' keys, trusted.
    fn two_channels() -> (Vec<u8>, Vec<u8>, HostKey, HostKey, TrustedPeers) {
        let cluster = ClusterKey::from_bytes(b"the cluster key of the hello's tests").unwrap();
        let (one, _) = noise::memory_pair(&cluster, &cluster).unwrap();
        let (two, _) = noise::memory_pair(&cluster, &cluster).unwrap();
        let (alpha, beta) = (HostKey::generate().unwrap(), HostKey::generate().unwrap());
        let trusted = TrustedPeers::new();
        trusted.trust("alpha".parse().unwrap(), alpha.public_key());
        trusted.trust("beta".parse().unwrap(), beta.public_key());
        (
            one.handshake_hash().to_vec(),
            two.handshake_hash().to_vec(),
            alpha,
            beta,
            trusted,
        )
    }

    fn body(node: &str, key: &HostKey, signature: [u8; 64]) -> HelloBody {
        HelloBody {
            node: node.to_owned(),
            public_key: *key.public_key().as_bytes(),
            signature: signature.to_vec(),
            refusal: None,
            isa: Isa::host(),
        }
    }

    #[test]
    fn a_signature_proves_the_name_on_its_own_channel_only() {
        let (one, two, alpha, _, trusted) = two_channels();
        let signature = sign(&alpha, Role::Initiator, &one);
        let (node, key) = verify_peer(
            body("alpha", &alpha, signature),
            Role::Initiator,
            &one,
            &trusted,
        )
        .unwrap();
        assert_eq!((node.as_str(), key), ("alpha", alpha.public_key()));
        // The same hello replayed on another channel between the same hosts.
        let err = verify_peer(
            body("alpha", &alpha, signature),
            Role::Initiator,
            &two,
            &trusted,
        )
        .unwrap_err();
        assert!(
            matches!(&err, HandshakeError::BadSignature { node, key } if node.as_str() == "alpha" && *key == alpha.public_key()),
            "{err:?}"
        );
        println!("checked: alpha's signature of channel one does not verify on channel two: {err}");
    }

    #[test]
    fn a_signature_cannot_be_reflected_to_its_signer() {
        let (one, _, alpha, _, trusted) = two_channels();
        // The initiator's signature, sent back by the responder as its own.
        let signature = sign(&alpha, Role::Initiator, &one);
        let err = verify_peer(
            body("alpha", &alpha, signature),
            Role::Responder,
            &one,
            &trusted,
        )
        .unwrap_err();
        assert!(
            matches!(err, HandshakeError::BadSignature { .. }),
            "{err:?}"
        );
        println!("checked: a reflected initiator signature fails as the responder's: {err}");
    }

    #[test]
    fn a_name_is_refused_unless_trusted_with_the_key_that_signed() {
        let (one, _, alpha, beta, trusted) = two_channels();
        // Beta, with its own key, posing as alpha.
        let signature = sign(&beta, Role::Initiator, &one);
        let err = verify_peer(
            body("alpha", &beta, signature),
            Role::Initiator,
            &one,
            &trusted,
        )
        .unwrap_err();
        assert!(
            matches!(err, HandshakeError::WrongHostKey { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&alpha.public_key().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&beta.public_key().to_string()),
            "{message}"
        );
        // A name nobody trusted.
        let err = verify_peer(
            body("gamma", &beta, signature),
            Role::Initiator,
            &one,
            &trusted,
        )
        .unwrap_err();
        assert!(
            matches!(err, HandshakeError::UntrustedHost { .. }),
            "{err:?}"
        );
        // A signature of the wrong length.
        let mut short = body("alpha", &alpha, sign(&alpha, Role::Initiator, &one));
        short.signature.pop();
        let err = verify_peer(short, Role::Initiator, &one, &trusted).unwrap_err();
        assert!(
            matches!(err, HandshakeError::BadSignature { .. }),
            "{err:?}"
        );
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
