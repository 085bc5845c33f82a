//! The Noise protocol (through `snow`): the two-message handshake that proves both sides hold
//! the cluster key and agrees fresh session keys, then the transport state that encrypts and
//! authenticates every later frame.
//!
//! The transport counts frames with an implicit nonce (Noise's `CipherState`), so a replayed,
//! reordered or dropped frame fails authentication exactly like a tampered one. Once a frame
//! has failed, the channel is dead anyway; before reporting, the failure is diagnosed by trying
//! the nonces near the expected one, so the error says "replayed frame 3" rather than just
//! "tampered".

use futures_util::{SinkExt, StreamExt};

use super::error::{ChannelError, HandshakeError, HandshakeStep};
use super::frame::{FrameError, FramedStream, MAX_HANDSHAKE_FRAME, MAX_NOISE_MESSAGE};
use super::key::ClusterKey;

/// The Noise protocol name; see the module docs of [`transport`](super) for the choice.
pub(crate) const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";

/// Bound into the handshake hash: a Noise peer of another application that happens to use the
/// same key and pattern still fails the handshake.
const PROLOGUE: &[u8] = b"cosmic secure channel";

/// The AEAD tag every transport message carries.
pub(crate) const TAG_LEN: usize = 16;

/// The most plaintext one transport message carries.
pub(crate) const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;

/// How far from the expected nonce a failed frame's nonce is looked for when diagnosing.
const DIAGNOSIS_WINDOW: u64 = 64;

fn handshake_state(
    key: &ClusterKey,
    initiator: bool,
    step: HandshakeStep,
) -> Result<snow::HandshakeState, HandshakeError> {
    let noise = |source| HandshakeError::Noise { step, source };
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(noise)?;
    // ring for AES-GCM; snow's pure-Rust resolver for what ring lacks (X25519, BLAKE2s).
    let resolver = snow::resolvers::FallbackResolver::new(
        Box::new(snow::resolvers::RingResolver),
        Box::new(snow::resolvers::DefaultResolver),
    );
    let builder = snow::Builder::with_resolver(params, Box::new(resolver))
        .psk(0, key.psk())
        .map_err(noise)?
        .prologue(PROLOGUE)
        .map_err(noise)?;
    if initiator {
        builder.build_initiator().map_err(noise)
    } else {
        builder.build_responder().map_err(noise)
    }
}

/// Runs the initiator's side of the handshake: `-> psk, e` then `<- e, ee`.
pub(crate) async fn initiate(
    framed: &mut FramedStream,
    key: &ClusterKey,
) -> Result<NoiseTransport, HandshakeError> {
    let mut state = handshake_state(key, true, HandshakeStep::NoiseInitiation)?;
    write_handshake_message(framed, &mut state, HandshakeStep::NoiseInitiation).await?;
    read_handshake_message(framed, &mut state, HandshakeStep::NoiseResponse).await?;
    into_transport(state, HandshakeStep::NoiseResponse)
}

/// The responder's handshake after the initiator's first message proved the key, before
/// anything was sent back.
pub(crate) struct ProvenInitiation {
    state: snow::HandshakeState,
}

/// Runs the first half of the responder's side: reads the initiator's first message, which
/// proves that it holds the key. Nothing is sent.
pub(crate) async fn await_initiation(
    framed: &mut FramedStream,
    key: &ClusterKey,
) -> Result<ProvenInitiation, HandshakeError> {
    let mut state = handshake_state(key, false, HandshakeStep::NoiseInitiation)?;
    read_handshake_message(framed, &mut state, HandshakeStep::NoiseInitiation).await?;
    Ok(ProvenInitiation { state })
}

/// Runs the second half of the responder's side: `<- e, ee`.
pub(crate) async fn respond(
    framed: &mut FramedStream,
    proven: ProvenInitiation,
) -> Result<NoiseTransport, HandshakeError> {
    let mut state = proven.state;
    write_handshake_message(framed, &mut state, HandshakeStep::NoiseResponse).await?;
    into_transport(state, HandshakeStep::NoiseResponse)
}

async fn write_handshake_message(
    framed: &mut FramedStream,
    state: &mut snow::HandshakeState,
    step: HandshakeStep,
) -> Result<(), HandshakeError> {
    let mut message = [0u8; MAX_HANDSHAKE_FRAME];
    let len = state
        .write_message(&[], &mut message)
        .map_err(|source| HandshakeError::Noise { step, source })?;
    framed
        .send(&message[..len])
        .await
        .map_err(|error| frame_error(error, step))
}

async fn read_handshake_message(
    framed: &mut FramedStream,
    state: &mut snow::HandshakeState,
    step: HandshakeStep,
) -> Result<(), HandshakeError> {
    let frame = match framed.next().await {
        None => return Err(HandshakeError::PeerClosed { step }),
        Some(Err(error)) => return Err(frame_error(error, step)),
        Some(Ok(frame)) => frame,
    };
    let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
    match state.read_message(&frame, &mut payload) {
        Ok(0) => Ok(()),
        // Authenticated, so a holder of the key, but not speaking this protocol.
        Ok(len) => Err(HandshakeError::NotAHandshake {
            step,
            reason: format!("unexpected {len}-byte payload in a handshake message"),
        }),
        Err(snow::Error::Decrypt) => Err(HandshakeError::AuthenticationFailed { step }),
        Err(snow::Error::Input) => Err(HandshakeError::NotAHandshake {
            step,
            reason: format!(
                "a {}-byte frame is too short for a handshake message",
                frame.len()
            ),
        }),
        Err(source) => Err(HandshakeError::Noise { step, source }),
    }
}

fn into_transport(
    state: snow::HandshakeState,
    step: HandshakeStep,
) -> Result<NoiseTransport, HandshakeError> {
    // The hash of the whole handshake, taken before transport mode: what each side signs to
    // prove its host key on this channel and no other.
    let handshake_hash = state.get_handshake_hash().to_vec();
    let state = state
        .into_transport_mode()
        .map_err(|source| HandshakeError::Noise { step, source })?;
    Ok(NoiseTransport {
        state,
        handshake_hash,
    })
}

fn frame_error(error: FrameError, step: HandshakeStep) -> HandshakeError {
    use std::io::ErrorKind;
    match error {
        FrameError::TooLong { limit } => HandshakeError::NotAHandshake {
            step,
            reason: format!("it announced a frame over the handshake's limit of {limit} bytes"),
        },
        FrameError::Truncated { .. } => HandshakeError::PeerClosed { step },
        FrameError::Io(source)
            if matches!(
                source.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            HandshakeError::PeerClosed { step }
        }
        FrameError::Io(source) => HandshakeError::Io { step, source },
    }
}

/// The session after the handshake: one cipher each way, each with its own frame counter.
pub(crate) struct NoiseTransport {
    state: snow::TransportState,
    /// The Noise handshake hash `h` at the end of the handshake: the same on both sides of
    /// one channel, different on every other (it covers both ephemeral keys).
    handshake_hash: Vec<u8>,
}

impl NoiseTransport {
    /// The handshake hash of this channel (channel binding for the hello's signatures).
    pub(crate) fn handshake_hash(&self) -> &[u8] {
        &self.handshake_hash
    }

    /// Encrypts `plaintext` (at most [`MAX_PLAINTEXT`] bytes) into `out`, replacing its contents.
    pub(crate) fn encrypt(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ChannelError> {
        debug_assert!(plaintext.len() <= MAX_PLAINTEXT);
        out.clear();
        out.resize(plaintext.len() + TAG_LEN, 0);
        let len = self
            .state
            .write_message(plaintext, out)
            .map_err(ChannelError::Noise)?;
        out.truncate(len);
        Ok(())
    }

    /// Authenticates and decrypts the next frame into `out`, which must hold at least
    /// `frame.len() - TAG_LEN` bytes; returns the plaintext's length.
    pub(crate) fn decrypt(&mut self, frame: &[u8], out: &mut [u8]) -> Result<usize, ChannelError> {
        debug_assert!(out.len() + TAG_LEN >= frame.len());
        match self.state.read_message(frame, out) {
            Ok(len) => Ok(len),
            Err(snow::Error::Decrypt) => Err(self.diagnose(frame, out)),
            Err(snow::Error::Input) => Err(ChannelError::Malformed {
                reason: format!("a frame of {} bytes is over the Noise limit", frame.len()),
            }),
            Err(error) => Err(ChannelError::Noise(error)),
        }
    }

    /// Finds out why a frame failed: a frame that authenticates under an earlier nonce was
    /// replayed, under a later one arrived out of sequence; otherwise it was tampered with.
    fn diagnose(&mut self, frame: &[u8], scratch: &mut [u8]) -> ChannelError {
        let expected = self.state.receiving_nonce();
        let mut verdict = ChannelError::Tampered { sequence: expected };
        for distance in 1..=DIAGNOSIS_WINDOW {
            if let Some(earlier) = expected.checked_sub(distance) {
                self.state.set_receiving_nonce(earlier);
                if self.state.read_message(frame, scratch).is_ok() {
                    verdict = ChannelError::Replayed {
                        expected,
                        received: earlier,
                    };
                    break;
                }
            }
            let later = expected + distance;
            self.state.set_receiving_nonce(later);
            if self.state.read_message(frame, scratch).is_ok() {
                verdict = ChannelError::OutOfSequence {
                    expected,
                    received: later,
                };
                break;
            }
        }
        self.state.set_receiving_nonce(expected);
        verdict
    }

    /// The sequence number the next frame sent will have.
    #[cfg(test)]
    pub(crate) fn sending_sequence(&self) -> u64 {
        self.state.sending_nonce()
    }
}

/// A session pair made in memory, without sockets (unit tests of this module and of the
/// hello).
#[cfg(test)]
pub(crate) fn memory_pair(
    initiator_key: &ClusterKey,
    responder_key: &ClusterKey,
) -> Result<(NoiseTransport, NoiseTransport), HandshakeError> {
    let mut i = handshake_state(initiator_key, true, HandshakeStep::NoiseInitiation)?;
    let mut r = handshake_state(responder_key, false, HandshakeStep::NoiseInitiation)?;
    let mut msg = [0u8; MAX_HANDSHAKE_FRAME];
    let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
    let len = i.write_message(&[], &mut msg).unwrap();
    assert_eq!(len, 48, "e (32 bytes) and the empty payload's tag");
    r.read_message(&msg[..len], &mut payload).map_err(|_| {
        HandshakeError::AuthenticationFailed {
            step: HandshakeStep::NoiseInitiation,
        }
    })?;
    let len = r.write_message(&[], &mut msg).unwrap();
    i.read_message(&msg[..len], &mut payload).unwrap();
    Ok((
        into_transport(i, HandshakeStep::NoiseResponse)?,
        into_transport(r, HandshakeStep::NoiseResponse)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(
        initiator_key: &[u8],
        responder_key: &[u8],
    ) -> Result<(NoiseTransport, NoiseTransport), HandshakeError> {
        memory_pair(
            &ClusterKey::from_bytes(initiator_key).unwrap(),
            &ClusterKey::from_bytes(responder_key).unwrap(),
        )
    }

    #[test]
    fn both_sides_share_the_handshake_hash_and_no_other_channel_does() {
        let (a, b) = pair(KEY, KEY).unwrap();
        let (c, _) = pair(KEY, KEY).unwrap();
        assert_eq!(a.handshake_hash().len(), 32);
        assert_eq!(a.handshake_hash(), b.handshake_hash());
        assert_ne!(a.handshake_hash(), c.handshake_hash());
    }

    const KEY: &[u8] = b"the cluster key of these unit tests";

    #[test]
    fn a_wrong_key_fails_the_first_message() {
        let err = pair(KEY, b"another cluster key, just as long!!")
            .err()
            .unwrap();
        assert!(matches!(err, HandshakeError::AuthenticationFailed { .. }));
    }

    #[test]
    fn frames_fail_with_the_right_diagnosis() {
        let (mut a, mut b) = pair(KEY, KEY).unwrap();
        let mut frames = Vec::new();
        for i in 0..5u8 {
            let mut out = Vec::new();
            a.encrypt(&[i; 100], &mut out).unwrap();
            assert_ne!(&out[..100], &[i; 100][..], "encrypted");
            frames.push(out);
        }
        assert_eq!(a.sending_sequence(), 5);
        let mut plain = vec![0u8; MAX_NOISE_MESSAGE];
        assert_eq!(b.decrypt(&frames[0], &mut plain).unwrap(), 100);
        assert_eq!(&plain[..100], &[0u8; 100][..]);
        assert_eq!(b.decrypt(&frames[1], &mut plain).unwrap(), 100);

        // Frame 1 again: a replay.
        let err = b.decrypt(&frames[1], &mut plain).unwrap_err();
        assert!(
            matches!(
                err,
                ChannelError::Replayed {
                    expected: 2,
                    received: 1
                }
            ),
            "{err:?}"
        );
        // Frame 3 before 2: out of sequence.
        let err = b.decrypt(&frames[3], &mut plain).unwrap_err();
        assert!(
            matches!(
                err,
                ChannelError::OutOfSequence {
                    expected: 2,
                    received: 3
                }
            ),
            "{err:?}"
        );
        // A flipped bit.
        let mut flipped = frames[2].clone();
        flipped[7] ^= 0x10;
        let err = b.decrypt(&flipped, &mut plain).unwrap_err();
        assert!(
            matches!(err, ChannelError::Tampered { sequence: 2 }),
            "{err:?}"
        );
        // A frame cut short, and one shorter than a tag.
        let err = b.decrypt(&frames[2][..50], &mut plain).unwrap_err();
        assert!(
            matches!(err, ChannelError::Tampered { sequence: 2 }),
            "{err:?}"
        );
        let err = b.decrypt(&frames[2][..5], &mut plain).unwrap_err();
        assert!(
            matches!(err, ChannelError::Tampered { sequence: 2 }),
            "{err:?}"
        );
        // The diagnosis left the counter where it was: the real frame 2 still opens.
        assert_eq!(b.decrypt(&frames[2], &mut plain).unwrap(), 100);
    }

    #[test]
    fn each_direction_has_its_own_keys() {
        let (mut a, mut b) = pair(KEY, KEY).unwrap();
        let mut out = Vec::new();
        a.encrypt(b"to b", &mut out).unwrap();
        let mut plain = vec![0u8; 64];
        // a cannot open its own frame: it is keyed for the other direction.
        assert!(a.decrypt(&out, &mut plain).is_err());
        assert_eq!(b.decrypt(&out, &mut plain).unwrap(), 4);
    }
}
