//! Fault injection at the steps of the hand-off, for the fault tests: a runtime built with a
//! [`FaultPlan`] kills its own process, stalls, drops the connection or corrupts the image at
//! one named step.
//!
//! Compiled only with the `fault-injection` cargo feature of `cosmic-runtime` (forwarded by
//! the `cosmic` facade), which is off by default: a default build has no gate at any step of
//! the hand-off, no code that SIGKILLs its own process and no `MigrateError::Injected`, so
//! what runs in production is exactly the normal hand-off, not the normal hand-off behind
//! checks that a plan is absent. Each point in `source.rs` and `server.rs` is one statement
//! under `#[cfg(feature = "fault-injection")]`; the mid-transfer points wrap the image's
//! reader or writer (`GatedReader`, `GatedWriter`). raft-rs keeps its failpoints (the
//! `fail` crate) behind a feature the same way. `cosmic-tests` turns the feature on for the
//! fault tests (`migrate_node`'s `COSMIC_FAULT=point=action`, `migrate_hosts`). The public
//! types are hidden from the docs.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::node::Node;

/// A step of the hand-off where a fault can be injected.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Source: the image is captured, the offer not yet sent.
    SourceBeforeOffer,
    /// Destination: the offer arrived, not yet answered.
    DestAfterOffer,
    /// Source: the image is being sent (half of it is out).
    SourceMidTransfer,
    /// Destination: half of the image has arrived.
    DestMidTransfer,
    /// Destination: its prepared copy is durable, `Prepared` not yet sent.
    DestAfterPrepare,
    /// Source: `Prepared` arrived, the commit record not yet written.
    SourceAfterPrepared,
    /// Source: the commit record is durable, `Commit` not yet sent.
    SourceAfterCommit,
    /// Destination: `Commit` arrived, its owner record not yet written.
    DestAfterCommit,
    /// Destination: the task runs, `Started` not yet sent.
    DestAfterStart,
}

impl FaultPoint {
    /// Every point, in protocol order.
    pub const ALL: [FaultPoint; 9] = [
        FaultPoint::SourceBeforeOffer,
        FaultPoint::DestAfterOffer,
        FaultPoint::SourceMidTransfer,
        FaultPoint::DestMidTransfer,
        FaultPoint::DestAfterPrepare,
        FaultPoint::SourceAfterPrepared,
        FaultPoint::SourceAfterCommit,
        FaultPoint::DestAfterCommit,
        FaultPoint::DestAfterStart,
    ];

    /// The point's name, as in `COSMIC_FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::SourceBeforeOffer => "source-before-offer",
            FaultPoint::DestAfterOffer => "dest-after-offer",
            FaultPoint::SourceMidTransfer => "source-mid-transfer",
            FaultPoint::DestMidTransfer => "dest-mid-transfer",
            FaultPoint::DestAfterPrepare => "dest-after-prepare",
            FaultPoint::SourceAfterPrepared => "source-after-prepared",
            FaultPoint::SourceAfterCommit => "source-after-commit",
            FaultPoint::DestAfterCommit => "dest-after-commit",
            FaultPoint::DestAfterStart => "dest-after-start",
        }
    }

    /// Whether the source side runs this point.
    pub fn on_source(self) -> bool {
        self.name().starts_with("source")
    }
}

/// What happens at the fault point.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultAction {
    /// SIGKILL this process.
    Kill,
    /// Never go on (the peer's timeouts must fire).
    Stall,
    /// Drop the connection.
    Drop,
    /// Flip a bit of the image body (source points before the transfer only).
    Corrupt,
}

impl FaultAction {
    /// Every action.
    pub const ALL: [FaultAction; 4] = [
        FaultAction::Kill,
        FaultAction::Stall,
        FaultAction::Drop,
        FaultAction::Corrupt,
    ];

    /// The action's name, as in `COSMIC_FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            FaultAction::Kill => "kill",
            FaultAction::Stall => "stall",
            FaultAction::Drop => "drop",
            FaultAction::Corrupt => "corrupt",
        }
    }
}

/// One fault: an action at a point, injected the first time a hand-off passes it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    /// Where.
    pub point: FaultPoint,
    /// What.
    pub action: FaultAction,
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.point.name(), self.action.name())
    }
}

/// Error returned by parsing a [`FaultPlan`] (`point=action`).
#[doc(hidden)]
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a fault plan (point=action, e.g. dest-after-prepare=kill)")]
pub struct ParseFaultError(String);

impl FromStr for FaultPlan {
    type Err = ParseFaultError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseFaultError(text.to_owned());
        let (point, action) = text.split_once('=').ok_or_else(error)?;
        let point = FaultPoint::ALL
            .into_iter()
            .find(|p| p.name() == point)
            .ok_or_else(error)?;
        let action = FaultAction::ALL
            .into_iter()
            .find(|a| a.name() == action)
            .ok_or_else(error)?;
        Ok(FaultPlan { point, action })
    }
}

/// What the protocol code must do after passing a point.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Nothing: go on.
    None,
    /// End the conversation as if the connection dropped.
    Drop,
    /// Corrupt the image before sending it.
    Corrupt,
}

/// A host's planned fault, if any, and whether it has fired (it fires once).
#[derive(Debug, Default)]
pub(crate) struct Injector {
    plan: Option<FaultPlan>,
    fired: AtomicBool,
}

impl Injector {
    pub(crate) fn new(plan: Option<FaultPlan>) -> Self {
        Injector {
            plan,
            fired: AtomicBool::new(false),
        }
    }

    /// Whether a fault is planned at `point` (so that the code path with the hook is taken).
    pub(crate) fn plans(&self, point: FaultPoint) -> bool {
        self.plan.is_some_and(|plan| plan.point == point)
    }

    /// Runs the plan's action if `point` is its point and it has not fired yet. Kill and
    /// stall never return.
    pub(crate) async fn at(&self, point: FaultPoint) -> Injected {
        let Some(plan) = self.plan.filter(|plan| plan.point == point) else {
            return Injected::None;
        };
        if self.fired.swap(true, Ordering::SeqCst) {
            return Injected::None;
        }
        tracing::warn!(fault = %plan, "injecting a fault");
        match plan.action {
            FaultAction::Kill => {
                // SAFETY: kill(2) on our own pid with a valid signal number.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                std::future::pending().await
            }
            FaultAction::Stall => std::future::pending().await,
            FaultAction::Drop => Injected::Drop,
            FaultAction::Corrupt => Injected::Corrupt,
        }
    }
}

/// A fault point in the middle of a stream (the image as it is sent or received): the stream
/// lets bytes through up to the midpoint, then passes the point before letting more through.
struct Midpoint<'a> {
    node: &'a Node,
    point: FaultPoint,
    at: u64,
    state: MidpointState,
}

enum MidpointState {
    Before,
    Passed,
    /// Stalled (or killed): nothing passes any more. The fault's future is not kept, so the
    /// stall has to be remembered.
    Stalled,
}

impl<'a> Midpoint<'a> {
    /// The midpoint of a stream of `total` bytes; already passed unless a fault is planned there.
    fn new(node: &'a Node, point: FaultPoint, total: u64) -> Self {
        let state = if node.plans(point) {
            MidpointState::Before
        } else {
            MidpointState::Passed
        };
        Midpoint {
            node,
            point,
            at: total / 2,
            state,
        }
    }

    /// How many of `wanted` bytes at stream position `position` may pass now: all of them
    /// once the point is passed, only those up to the midpoint before it. Fails with
    /// `ConnectionAborted` for an injected drop; pending forever for a stall.
    fn poll_allow(
        &mut self,
        cx: &mut Context<'_>,
        position: u64,
        wanted: usize,
    ) -> Poll<std::io::Result<usize>> {
        use std::future::Future as _;
        match self.state {
            MidpointState::Passed => return Poll::Ready(Ok(wanted)),
            MidpointState::Stalled => return Poll::Pending,
            MidpointState::Before => {}
        }
        let short = self.at.saturating_sub(position);
        if short > 0 {
            return Poll::Ready(Ok(wanted.min(usize::try_from(short).unwrap_or(usize::MAX))));
        }
        let fault = self.node.fault(self.point);
        let mut fault = std::pin::pin!(fault);
        match fault.as_mut().poll(cx) {
            Poll::Ready(Injected::Drop) => {
                Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()))
            }
            Poll::Ready(_) => {
                self.state = MidpointState::Passed;
                Poll::Ready(Ok(wanted))
            }
            Poll::Pending => {
                self.state = MidpointState::Stalled;
                Poll::Pending
            }
        }
    }
}

/// Reads an image for `send_from`, passing the mid-transfer fault point `point` halfway.
pub(crate) struct GatedReader<'a> {
    image: &'a [u8],
    at: usize,
    midpoint: Midpoint<'a>,
}

impl<'a> GatedReader<'a> {
    pub(crate) fn new(node: &'a Node, point: FaultPoint, image: &'a [u8]) -> Self {
        GatedReader {
            image,
            at: 0,
            midpoint: Midpoint::new(node, point, image.len() as u64),
        }
    }
}

impl AsyncRead for GatedReader<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let wanted = buf.remaining().min(this.image.len() - this.at);
        let n = std::task::ready!(this.midpoint.poll_allow(cx, this.at as u64, wanted))?;
        buf.put_slice(&this.image[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Writes an incoming image of `total` bytes into `inner`, passing the mid-transfer fault
/// point `point` halfway.
pub(crate) struct GatedWriter<'a, W> {
    inner: W,
    written: u64,
    midpoint: Midpoint<'a>,
}

impl<'a, W> GatedWriter<'a, W> {
    pub(crate) fn new(node: &'a Node, point: FaultPoint, total: u64, inner: W) -> Self {
        GatedWriter {
            inner,
            written: 0,
            midpoint: Midpoint::new(node, point, total),
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for GatedWriter<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let allowed = std::task::ready!(this.midpoint.poll_allow(cx, this.written, buf.len()))?;
        let n =
            std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_write(cx, &buf[..allowed]))?;
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_print() {
        for point in FaultPoint::ALL {
            for action in FaultAction::ALL {
                let plan = FaultPlan { point, action };
                assert_eq!(plan.to_string().parse::<FaultPlan>().unwrap(), plan);
            }
        }
        assert!("nowhere=kill".parse::<FaultPlan>().is_err());
        assert!("dest-after-offer".parse::<FaultPlan>().is_err());
    }
}
