//! Framing: every Noise message travels as one frame, a 2-byte big-endian length then that
//! many bytes (the framing the Noise specification suggests), cut by tokio-util's
//! `LengthDelimitedCodec`. This wrapper only sets the limits and turns the codec's errors into
//! ones the channel can tell apart.

use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

/// The largest Noise message, tag included (Noise specification, section 3).
pub(crate) const MAX_NOISE_MESSAGE: usize = 65_535;

/// The largest frame accepted before the peer is authenticated. The handshake's two messages
/// are 48 bytes each (an ephemeral key and an empty payload's tag); this bounds what an
/// unauthenticated peer can make us buffer.
pub(crate) const MAX_HANDSHAKE_FRAME: usize = 128;

/// The largest frame accepted during the hello exchange, the first encrypted message each way:
/// room for a hello many times the current one (a later version's hello must still be read
/// far enough to name its version).
pub(crate) const MAX_HELLO_FRAME: usize = 4096;

/// Bytes buffered before the framed writer flushes to the socket: a few full frames per
/// write system call.
const WRITE_BATCH: usize = 256 << 10;

/// A TCP connection cut into frames.
pub(crate) type FramedStream = Framed<TcpStream, FrameCodec>;

/// `LengthDelimitedCodec` with a 2-byte length and a settable maximum.
#[derive(Debug)]
pub(crate) struct FrameCodec {
    inner: LengthDelimitedCodec,
    /// Whether the inner codec consumed a frame's length and waits for its bytes.
    in_frame: bool,
}

/// A frame that could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The socket failed.
    Io(io::Error),
    /// The peer announced a frame over the current maximum.
    TooLong {
        /// The maximum in force.
        limit: usize,
    },
    /// The connection ended in the middle of a frame.
    Truncated {
        /// The bytes of it that arrived.
        buffered: usize,
    },
}

impl From<io::Error> for FrameError {
    fn from(error: io::Error) -> Self {
        FrameError::Io(error)
    }
}

impl FrameCodec {
    /// A codec that accepts frames of up to `max_frame` bytes.
    fn new(max_frame: usize) -> FrameCodec {
        FrameCodec {
            inner: LengthDelimitedCodec::builder()
                .length_field_length(2)
                .big_endian()
                .max_frame_length(max_frame)
                .new_codec(),
            in_frame: false,
        }
    }
}

/// Frames a fresh connection, with the handshake's small frame limit.
pub(crate) fn handshake_framing(stream: TcpStream) -> FramedStream {
    Framed::new(stream, FrameCodec::new(MAX_HANDSHAKE_FRAME))
}

/// Sets the largest frame accepted from now on.
pub(crate) fn set_max_frame(framed: &mut FramedStream, max_frame: usize) {
    framed.codec_mut().inner.set_max_frame_length(max_frame);
}

/// Raises the limits once the hellos are exchanged: full Noise messages, written in batches.
pub(crate) fn established_framing(framed: &mut FramedStream) {
    set_max_frame(framed, MAX_NOISE_MESSAGE);
    framed.set_backpressure_boundary(WRITE_BATCH);
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let before = src.len();
        let decoded = self.inner.decode(src);
        match &decoded {
            Ok(Some(_)) => self.in_frame = false,
            Ok(None) if src.len() < before => self.in_frame = true,
            _ => {}
        }
        decoded.map_err(|error| {
            let too_long = error
                .get_ref()
                .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>());
            if too_long {
                FrameError::TooLong {
                    limit: self.inner.max_frame_length(),
                }
            } else {
                FrameError::Io(error)
            }
        })
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.in_frame => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        Ok(self.inner.encode(frame, dst)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_a_two_byte_length() {
        let mut codec = FrameCodec::new(MAX_NOISE_MESSAGE);
        let mut buf = BytesMut::new();
        codec.encode(&b"hello"[..], &mut buf).unwrap();
        assert_eq!(&buf[..], b"\x00\x05hello");
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_length() {
        let mut codec = FrameCodec::new(MAX_HANDSHAKE_FRAME);
        // "GE" of an HTTP request read as a length: 0x4745 bytes.
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        match codec.decode(&mut buf) {
            Err(FrameError::TooLong { limit }) => assert_eq!(limit, MAX_HANDSHAKE_FRAME),
            other => panic!("expected TooLong, got {other:?}"),
        }
    }

    #[test]
    fn a_partial_frame_at_the_end_is_truncated() {
        let mut codec = FrameCodec::new(MAX_NOISE_MESSAGE);
        let mut buf = BytesMut::from(&b"\x00\x10abc"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        match codec.decode_eof(&mut buf) {
            Err(FrameError::Truncated { buffered }) => assert_eq!(buffered, 3),
            other => panic!("expected Truncated, got {other:?}"),
        }
        // The length arrived, none of the bytes.
        let mut codec = FrameCodec::new(MAX_NOISE_MESSAGE);
        let mut buf = BytesMut::from(&b"\x00\x10"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated { buffered: 0 })
        ));
        let mut empty = BytesMut::new();
        let mut fresh = FrameCodec::new(MAX_NOISE_MESSAGE);
        assert!(fresh.decode_eof(&mut empty).unwrap().is_none());
    }
}
