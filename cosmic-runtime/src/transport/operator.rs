//! An operator's requests to a cluster member over a [`SecureChannel`]: move one of its tasks
//! (`cosmic migrate`), or drain it (`cosmic drain`). Only a task's owner holds its token, so
//! the operator asks the owner; the member answers a channel whose name and key it trusts, as
//! it would a peer's.

use super::protocol::Request;
pub use super::protocol::{DrainAnswer, MoveAnswer};
use super::{ChannelError, SecureChannel};
use crate::task::TaskId;

/// The largest answer read (a drain's report of many tasks).
const MAX_ANSWER: u64 = 64 << 20;

/// Asks the member at the other end of `channel` to move `task`, which it owns, to member
/// `to`; the answer comes once the move is decided (the member's own deadlines bound it; a
/// caller that cannot wait that long puts a timeout around this).
pub async fn request_move(
    channel: &mut SecureChannel,
    task: TaskId,
    to: &str,
) -> Result<MoveAnswer, ChannelError> {
    let request = Request::MoveTask {
        task,
        to: to.to_owned(),
    };
    channel.send(&request).await?;
    channel.recv_within(MAX_ANSWER).await
}

/// Asks the member at the other end of `channel` to take no new tasks and move every task
/// away: to `to`, or spread by load over the other trusted live members. It stays a member.
/// The answer comes once every move is decided.
pub async fn request_drain(
    channel: &mut SecureChannel,
    to: Option<&str>,
) -> Result<DrainAnswer, ChannelError> {
    let request = Request::Drain {
        to: to.map(str::to_owned),
    };
    channel.send(&request).await?;
    channel.recv_within(MAX_ANSWER).await
}
