//! The transport between hosts: a secure channel over TCP that only holders of the cluster key
//! can open, on which the migration protocol exchanges its messages and streams its images.
//!
//! Where things are:
//! - [`ClusterKey`] (`key.rs`): the shared secret, loaded from a file or an environment
//!   variable, never printed or sent;
//! - [`HostKey`], [`PublicKey`], [`TrustedPeers`], [`Credentials`] (`identity.rs`): each
//!   host's own key pair, the public keys it trusts by name, and all three keys together;
//! - [`NodeName`], [`PeerInfo`] (`node.rs`): who is at each end;
//! - [`ChannelConfig`] (`config.rs`): limits, the handshake's deadline, the protocol version;
//! - `frame.rs`: 2-byte length-prefixed frames, by tokio-util's `LengthDelimitedCodec`;
//! - `noise.rs`: the Noise handshake and the per-frame encryption, through `snow`;
//! - `handshake.rs`: TCP + Noise + the hello (protocol version, node name, public key and the
//!   signature that proves the name);
//! - `record.rs`: how messages of any size travel in frames of at most 64 KiB;
//! - [`SecureChannel`] (`channel.rs`) and [`SecureListener`] (`listener.rs`): the API;
//! - `budget.rs`: the listener's budget of connections that have not proved the key yet;
//! - `warnings.rs`: warnings about single connections, aggregated per source and interval;
//! - `protocol.rs`: the messages of the migration protocol that travel on channels (the wire
//!   format: public for the tests, hidden from these docs);
//! - [`request_move`], [`request_drain`] (`operator.rs`): an operator's requests to a member.
//!
//! # The construction
//!
//! The channel is the Noise protocol `Noise_NNpsk0_25519_AESGCM_BLAKE2s` (Noise
//! specification revision 34, through the `snow` crate), with a pre-shared key derived from the
//! cluster key. Each connection makes fresh X25519 ephemeral keys on both sides; the
//! pre-shared key is mixed in before the first message, so:
//! - only holders of the key complete the handshake, and the key never crosses the wire (not
//!   even hashed: it only keys the handshake's hash chain);
//! - the responder checks the initiator's very first message and sends nothing, not even its
//!   half of the handshake, to a peer without the key (an eavesdropper replaying a recorded
//!   first message gets the second one, which it cannot use without the initiator's ephemeral
//!   key; the responder then waits for the initiator's encrypted hello before anything else);
//! - session keys come from the ephemeral Diffie-Hellman, so a cluster key stolen later does
//!   not decrypt recorded traffic (forward secrecy);
//! - every frame after the handshake is encrypted and authenticated with AES-256-GCM under a
//!   per-direction frame counter, so a changed, replayed, reordered, dropped or cut
//!   frame ends the connection.
//!
//! Names are proven by a second layer, inside the channel: each host has an Ed25519 key pair
//! of its own ([`HostKey`]), and in the hello each side signs a label for its role followed by
//! the Noise handshake hash, which the other side verifies with the public key presented and
//! then checks against its [`TrustedPeers`] (the name announced must be trusted with exactly
//! that key). The trust list is configuration: a key is never trusted because it connected.
//!
//! Why signatures over the handshake hash rather than `XXpsk3` or `KKpsk0` with static keys:
//! `NNpsk0` drops a peer without the cluster key at the very first message, before any
//! Diffie-Hellman work (`XXpsk3` would let it run most of the handshake and obtain the
//! responder's static public key before failing, and costs one more message; `KKpsk0` needs the
//! responder to know the initiator's static key before its first message, when it does not
//! yet know which host is calling). The hash
//! binds each signature to this channel (both ephemeral keys are in it), so it cannot be
//! replayed on another, and the role labels keep it from being reflected to its signer.

//! Why AES-256-GCM, from `ring`: images of hundreds of MiB travel on this channel, and the cipher
//! sets its speed. On this project's x86-64 machines ring's AES-GCM (AES-NI and carry-less
//! multiplication) encrypts at about 4.3 GB/s and decrypts at 6 GB/s, against about 1 GB/s for
//! the pure-Rust ChaCha20-Poly1305 the first version used (measured through snow on 64 KiB
//! messages). ring uses the ARMv8 crypto extensions on aarch64 and its constant-time portable
//! code elsewhere (big-endian s390x included: slower, still correct, tested under QEMU). snow's
//! pure-Rust resolver provides what ring does not: X25519 and BLAKE2s (Noise's hash here; the
//! hash only runs during the handshake). Changing the cipher changes the Noise protocol name, so
//! peers of protocol version 1 (ChaChaPoly) fail the handshake with this one; that is why the
//! version went to 2.

//! The protocol version is exchanged in the first encrypted message each way (the hello); it
//! is not bound into the handshake, so that mismatched peers can still name each other's
//! version in the error rather than fail as if the key were wrong.

mod budget;
mod channel;
mod config;
mod error;
mod frame;
mod handshake;
mod identity;
mod key;
mod listener;
mod node;
mod noise;
mod operator;
// Internal: public for the integration tests and benches only, hidden from the docs.
#[doc(hidden)]
pub mod protocol;
mod record;
mod sealed;
mod secret_file;
mod warnings;

pub use channel::SecureChannel;
pub use config::ChannelConfig;
#[doc(hidden)]
pub use config::PROTOCOL_VERSION;
pub use error::{
    AcceptError, ChannelError, ConnectError, HandshakeError, HandshakeStep, HostKeyError, KeyError,
    ListenError, NodeNameError, NodeNameRule, PublicKeyError,
};
pub use identity::{Credentials, HostKey, PublicKey, TrustedPeers, PUBLIC_KEY_LEN};
pub use key::{ClusterKey, MIN_KEY_LEN};
pub use listener::SecureListener;
pub use node::{NodeName, PeerInfo, MAX_NODE_NAME_LEN};
pub use operator::{request_drain, request_move, DrainAnswer, MoveAnswer};

#[doc(hidden)]
/// The largest payload of one Noise message: the size of the chunks large messages travel in.
pub const CHUNK_SIZE: usize = noise::MAX_PLAINTEXT;
pub(crate) use channel::error_chain;
