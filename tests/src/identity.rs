//! Host identities for the tests: one Ed25519 key pair per host name, made the first time the
//! name is asked for and kept for the whole test process (a host restarted by a test keeps its
//! key, as a real host keeps its key file), and one trust list in which every such host trusts
//! every other. Tests about refusals make their own keys and lists instead.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cosmic::transport::{ClusterKey, Credentials, HostKey, NodeName, TrustedPeers};

struct Hosts {
    keys: Mutex<HashMap<String, HostKey>>,
    trusted: TrustedPeers,
}

fn hosts() -> &'static Hosts {
    static HOSTS: OnceLock<Hosts> = OnceLock::new();
    HOSTS.get_or_init(|| Hosts {
        keys: Mutex::new(HashMap::new()),
        trusted: TrustedPeers::new(),
    })
}

/// The key pair of test host `name` (the same one every time in this process); it is trusted
/// in [`trusted`] from the moment it exists.
pub fn host_key(name: &str) -> HostKey {
    let hosts = hosts();
    let mut keys = hosts.keys.lock().unwrap_or_else(|p| p.into_inner());
    keys.entry(name.to_owned())
        .or_insert_with(|| {
            let key = HostKey::generate().expect("generate a host key");
            let node = NodeName::new(name).expect("a test host name");
            hosts.trusted.trust(node, key.public_key());
            key
        })
        .clone()
}

/// The trust list of every test host made by [`host_key`] (shared: keys made later count).
pub fn trusted() -> TrustedPeers {
    hosts().trusted.clone()
}

/// What test host `name` opens channels with: `cluster_key`, its key pair, the shared list.
pub fn credentials(cluster_key: ClusterKey, name: &str) -> Credentials {
    Credentials::new(cluster_key, host_key(name), trusted())
}

/// Makes hosts `a` and `b` trust each other's public keys (as an operator would configure
/// them), so that channels between them open in both directions.
pub fn introduce(a: &cosmic::Runtime, b: &cosmic::Runtime) {
    for (trusting, trusted) in [(a, b), (b, a)] {
        let name = NodeName::new(trusted.host()).expect("a host name");
        let key = trusted.public_key().expect("a host (built with `listen`)");
        trusting.trust_peer(name, key).expect("a host");
    }
}
