//! Receiving an image streamed after its offer: into one buffer of the offered size (checked
//! against the host's limits before anything is allocated), refusing more than offered, and
//! cutting off a sender that trickles: a transfer must keep a minimum rate, so a stalled
//! sender loses its reservation in seconds rather than holding it until the step's deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;

#[cfg(feature = "fault-injection")]
use super::fault::{FaultPoint, GatedWriter};
use super::node::Node;
use crate::transport::{ChannelError, SecureChannel};

/// The slowest transfer a host keeps receiving: 1 MiB per window of `RATE_WINDOW`.
pub(crate) const MIN_RATE_BYTES: u64 = 1 << 20;
/// How often the rate is checked.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(1);

/// How a receive ended, when the channel itself did not fail.
pub(crate) enum Received {
    /// The image, exactly as long as offered.
    Image(bytes::Bytes),
    /// It ended short of the offered size, after `received` bytes.
    Wrong {
        /// Bytes received.
        received: u64,
    },
    /// The transfer was cut off.
    TooSlow(CutOff),
}

/// Why a transfer was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CutOff {
    /// The step's deadline passed.
    #[error("the image did not arrive in time ({received} of {size} bytes)")]
    Late {
        /// Bytes received.
        received: u64,
        /// Bytes offered.
        size: u64,
    },
    /// The sender fell below the minimum rate.
    #[error("the sender fell below {} KiB/s ({received} of {size} bytes)", MIN_RATE_BYTES >> 10)]
    BelowRate {
        /// Bytes received.
        received: u64,
        /// Bytes offered.
        size: u64,
    },
}

/// Receives an image of `size` bytes within `deadline`, at no less than the minimum rate.
pub(crate) async fn receive(
    node: &Node,
    channel: &mut SecureChannel,
    size: u64,
    deadline: tokio::time::Instant,
) -> Result<Received, ChannelError> {
    let progress = Arc::new(AtomicU64::new(0));
    let mut sink = ImageSink::new(size, Arc::clone(&progress));
    let outcome = {
        #[cfg(feature = "fault-injection")]
        let mut sink = GatedWriter::new(node, FaultPoint::DestMidTransfer, size, &mut sink);
        #[cfg(not(feature = "fault-injection"))]
        let _ = node;
        let transfer = channel.recv_into(&mut sink);
        tokio::pin!(transfer);
        let mut window = tokio::time::interval(RATE_WINDOW);
        window.tick().await;
        let mut last = 0;
        loop {
            tokio::select! {
                result = &mut transfer => break Ok(result),
                _ = tokio::time::sleep_until(deadline) => {
                    let received = progress.load(Ordering::Relaxed);
                    break Err(CutOff::Late { received, size });
                }
                _ = window.tick() => {
                    let now = progress.load(Ordering::Relaxed);
                    if now < size && now - last < MIN_RATE_BYTES.min(size - last) {
                        break Err(CutOff::BelowRate { received: now, size });
                    }
                    last = now;
                }
            }
        }
    };
    match outcome {
        Ok(Ok(length)) if length == size => Ok(Received::Image(bytes::Bytes::from(sink.buffer))),
        Ok(Ok(received)) => Ok(Received::Wrong { received }),
        Ok(Err(error)) => Err(error),
        Err(cut) => Ok(Received::TooSlow(cut)),
    }
}

/// Collects an incoming image into one buffer of the offered size, refusing more.
struct ImageSink {
    buffer: Vec<u8>,
    size: usize,
    progress: Arc<AtomicU64>,
}

impl ImageSink {
    fn new(size: u64, progress: Arc<AtomicU64>) -> Self {
        let size_usize = usize::try_from(size).unwrap_or(0);
        ImageSink {
            // Within the node's limits, checked before: allocate once.
            buffer: crate::memory::vec_with_capacity(size_usize),
            size: size_usize,
            progress,
        }
    }
}

impl AsyncWrite for ImageSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.buffer.len() + buf.len() > this.size {
            // More than offered: refuse rather than grow past the size judged acceptable.
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the image is longer than offered",
            )));
        }
        this.buffer.extend_from_slice(buf);
        this.progress
            .store(this.buffer.len() as u64, Ordering::Relaxed);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
