//! The cluster's members as peers of this host's transport: a member becomes a peer (its
//! address known, its key trusted) only if an operator trusted its published key
//! ([`Coordinator::trust`](super::Coordinator::trust), `cosmic host add`); joining alone never
//! makes a host trusted. A member whose published key differs from the trusted one is
//! reported, aggregated, and left out.

use std::sync::Arc;

use super::coordinator::Member;
use crate::runtime::migrate::node::Node;
use crate::runtime::RuntimeInner;
use crate::transport::protocol::Request;
use crate::transport::{NodeName, PublicKey};

/// The members whose published key is the one an operator trusted for their name.
pub(crate) fn trusted_members(
    members: Vec<Member>,
    trusted: &[(String, PublicKey)],
) -> Vec<Member> {
    members
        .into_iter()
        .filter(|m| {
            trusted
                .iter()
                .any(|(name, key)| *name == m.record.name && *key == m.record.public_key)
        })
        .collect()
}

impl Node {
    /// Trusts the operator's list, and knows the addresses of the trusted members.
    pub(crate) fn learn_members(
        &self,
        me: &str,
        members: &[Member],
        trusted: &[(String, PublicKey)],
    ) {
        for (name, key) in trusted {
            if let Ok(name) = NodeName::new(name.as_str()) {
                self.key.trusted.trust(name, *key);
            }
        }
        for member in members {
            let record = &member.record;
            if record.name == me {
                continue;
            }
            let trusted_key = trusted
                .iter()
                .find(|(name, _)| *name == record.name)
                .map(|(_, key)| *key);
            match trusted_key {
                Some(key) if key == record.public_key => match record.addr.parse() {
                    Ok(addr) => self.add_peer(record.name.clone(), addr),
                    Err(_) => self.warn_about(
                        "a member publishes an address that does not parse",
                        &record.name,
                        &record.addr,
                    ),
                },
                Some(key) => self.warn_about(
                    "a member's published key is not the one trusted for its name; ignoring it",
                    &record.name,
                    &format!("published {}, trusted {key}", record.public_key),
                ),
                None => self.warn_about(
                    "a member is not trusted (an operator adds it with `cosmic host add NAME KEY`); ignoring it",
                    &record.name,
                    &record.public_key,
                ),
            }
        }
    }

    /// Tells `to` that a task was moved to it, so that it scans now. Best effort: its next
    /// scan finds the task anyway.
    pub(crate) fn nudge(&self, runtime: &Arc<RuntimeInner>, to: &str) {
        let Some(addr) = self.peer_addr(to) else {
            return;
        };
        let runtime = Arc::downgrade(runtime);
        tokio::spawn(async move {
            let Some(rt) = runtime.upgrade() else { return };
            let Some(node) = &rt.node else { return };
            let Ok((mut channel, _)) = node.channel(addr).await else {
                return;
            };
            if channel.send(&Request::Adopt).await.is_ok() {
                node.park(addr, channel);
            }
        });
    }
}
