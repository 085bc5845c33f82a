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

/// Starts asking the source of the arrival of `task` how its hand-off ended.
pub(crate) fn spawn(runtime: Weak<RuntimeInner>, task: TaskId) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(20);
        loop {
            let Some(rt) = runtime.upgrade() else { return };
            let Some(node) = &rt.node else { return };
            let Some((handoff, from, from_addr)) = node
                .arriving()
                .prepared
                .get(&task)
                .map(|a| (a.handoff, a.from.clone(), a.from_addr.clone()))
            else {
                return;
            };
            match ask(&rt, task, handoff, &from_addr).await {
                Ok(Resolution::Committed) => {
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

async fn ask(
    runtime: &Arc<RuntimeInner>,
    task: TaskId,
    handoff: u64,
    from_addr: &str,
) -> Result<Resolution, String> {
    let node = runtime.node.as_ref().ok_or("not a host")?;
    let addr = from_addr
        .parse()
        .map_err(|_| format!("bad source address `{from_addr}`"))?;
    let conversation = async {
        let mut channel = node.fresh_channel(addr).await.map_err(|e| e.to_string())?;
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
