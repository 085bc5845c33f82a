//! Sealed frames: the framed connection and the Noise session together. Sending encrypts one
//! plaintext into one frame; receiving yields frames still sealed, opened by the caller into
//! the buffer where the plaintext belongs.

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};

use super::error::ChannelError;
use super::frame::{FrameError, FramedStream};
use super::noise::NoiseTransport;

/// A framed connection whose frames are Noise transport messages.
pub(crate) struct SealedStream {
    pub(crate) framed: FramedStream,
    noise: NoiseTransport,
    /// The ciphertext of the frame being sent, reused.
    sealed: Vec<u8>,
}

impl SealedStream {
    pub(crate) fn new(framed: FramedStream, noise: NoiseTransport) -> SealedStream {
        SealedStream {
            framed,
            noise,
            sealed: Vec::new(),
        }
    }

    /// Encrypts `plaintext` into the next frame and queues it; it reaches the socket when the
    /// write buffer fills or at [`flush`](Self::flush).
    pub(crate) async fn feed(&mut self, plaintext: &[u8]) -> Result<(), ChannelError> {
        self.noise.encrypt(plaintext, &mut self.sealed)?;
        self.framed
            .feed(&self.sealed[..])
            .await
            .map_err(|error| frame_error(error, "send"))
    }

    /// Writes every queued frame to the socket.
    pub(crate) async fn flush(&mut self) -> Result<(), ChannelError> {
        SinkExt::<&[u8]>::flush(&mut self.framed)
            .await
            .map_err(|error| frame_error(error, "send"))
    }

    /// The next frame, still sealed; `None` when the connection ended cleanly between frames.
    /// Cancel-safe: a frame that is half read stays buffered.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<BytesMut>, ChannelError> {
        match self.framed.next().await {
            None => Ok(None),
            Some(Ok(frame)) => Ok(Some(frame)),
            Some(Err(error)) => Err(frame_error(error, "receive")),
        }
    }

    /// Authenticates and decrypts `frame` into `out` (at least the frame's length less the
    /// tag); returns the plaintext's length.
    pub(crate) fn open(&mut self, frame: &[u8], out: &mut [u8]) -> Result<usize, ChannelError> {
        self.noise.decrypt(frame, out)
    }

    /// Writes the frames still queued, then closes our direction of the connection (TCP FIN),
    /// so that the peer sees exactly where the stream ended.
    pub(crate) async fn shutdown(&mut self) {
        // Best effort: the peer may already be gone.
        let _ = SinkExt::<&[u8]>::close(&mut self.framed).await;
    }
}

fn frame_error(error: FrameError, operation: &'static str) -> ChannelError {
    match error {
        FrameError::Io(source) => ChannelError::Io { operation, source },
        FrameError::Truncated { buffered } => ChannelError::TruncatedFrame { buffered },
        // A 2-byte length cannot announce more than the Noise limit in force.
        FrameError::TooLong { limit } => ChannelError::Malformed {
            reason: format!("a frame over {limit} bytes"),
        },
    }
}
