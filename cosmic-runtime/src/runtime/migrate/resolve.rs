//! Settling a hand-off in doubt: the destination holds a prepared copy but lost the source
//! before hearing its decision (the connection dropped, the source or this host crashed). The
//! source's durable commit record decides, so the destination asks the source until it gets
//! an answer, across restarts of either side. Until then the task runs nowhere new: it runs
//! on the source (which did not commit) or, if the source committed, it waits here.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::arrival;
use crate::runtime::RuntimeInner;
use crate::task::TaskId;
use crate::transport::protocol::{Request, Resolution};

/// Starts asking the source of the arrival of `task` by hand-off `handoff` how it ended; gives
/// up when that arrival is gone (settled, or replaced by a newer offer).
pub(crate) fn spawn(runtime: Weak<RuntimeInner>, task: TaskId, handoff: u64) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(20);
        // Once the source said Committed, only the local commit is retried: a source without
        // a store that restarted meanwhile would answer Aborted to a second question.
        let mut committed = false;
        loop {
            let Some(rt) = runtime.upgrade() else { return };
            let Some(node) = &rt.node else { return };
            let Some((from, from_addr)) = node
                .arriving()
                .prepared
                .get(&task)
                .filter(|a| a.handoff == handoff)
                .map(|a| (a.from.clone(), a.from_addr.clone()))
            else {
                return;
            };
            let answer = if committed {
                Ok(Resolution::Committed)
            } else {
                ask(&rt, task, handoff, &from, &from_addr).await
            };
            match answer {
                Ok(Resolution::Committed) => {
                    committed = true;
                    let Some((arrival, _starting)) = node.take_arrival(task, handoff) else {
                        return;
                    };
                    tracing::info!(%task, %from, "the source committed the hand-off in doubt");
                    match arrival::commit(&rt, task, arrival).await {
                        Ok(_) => return,
                        Err((arrival, error)) => {
                            tracing::error!(%task, %error, "could not record an arrived task; retrying");
                            node.arriving().prepared.insert(task, arrival);
                        }
                    }
                }
                Ok(Resolution::Aborted) => {
                    if let Some((arrival, _claim)) = node.take_arrival(task, handoff) {
                        arrival::abort(&rt, task, arrival).await;
                    }
                    return;
                }
                Ok(Resolution::Pending) => {}
                Err(reason) => {
                    tracing::debug!(%task, %from, %reason, "cannot reach the source of a hand-off in doubt yet");
                }
            }
            drop(rt);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    });
}

/// Asks the source `from` about the hand-off, at the address its offer gave and, failing
/// that, at the address configured for a peer of that name. Only an answer from a host that
/// authenticated as `from` counts: any other host would answer Aborted (it never decided).
async fn ask(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    handoff: u64,
    from: &str,
    from_addr: &str,
) -> Result<Resolution, String> {
    let node = runtime.node.as_ref().ok_or("not a host")?;
    let mut addrs = Vec::new();
    if let Ok(addr) = from_addr.parse::<std::net::SocketAddr>() {
        addrs.push(addr);
    }
    if let Some(addr) = node.peer_addr(from).filter(|a| !addrs.contains(a)) {
        addrs.push(addr);
    }
    let mut reasons = Vec::new();
    for addr in addrs {
        match ask_at(node, task, handoff, from, addr).await {
            Ok(answer) => return Ok(answer),
            Err(reason) => reasons.push(format!("{addr}: {reason}")),
        }
    }
    if reasons.is_empty() {
        reasons.push(format!(
            "no usable address for `{from}` (offer gave `{from_addr}`)"
        ));
    }
    Err(reasons.join("; "))
}

async fn ask_at(
    node: &super::node::Node,
    task: TaskId,
    handoff: u64,
    from: &str,
    addr: std::net::SocketAddr,
) -> Result<Resolution, String> {
    let conversation = async {
        let mut channel = node.fresh_channel(addr).await.map_err(|e| e.to_string())?;
        if channel.peer().node.as_str() != from {
            return Err(format!(
                "the host there is `{}`, not the source `{from}`",
                channel.peer().node
            ));
        }
        channel
            .send(&Request::Resolve { task, handoff })
            .await
            .map_err(|e| e.to_string())?;
        let answer = channel
            .recv_within::<Resolution>(super::MAX_CONTROL_SIZE)
            .await
            .map_err(|e| e.to_string())?;
        let _ = channel.close().await;
        Ok(answer)
    };
    tokio::time::timeout(node.config.step_timeout, conversation)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}
