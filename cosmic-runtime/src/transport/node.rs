//! Node identity: the name a host goes by, and what a channel learns about its peer.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use super::error::NodeNameError;

/// The longest node name, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 128;

/// The name of a host in a cluster ("alpha", "node-7.rack-2"): 1 to [`MAX_NODE_NAME_LEN`]
/// bytes of UTF-8 with no whitespace and no control characters, so that it reads safely in
/// logs. Peers exchange names in the hello, inside the encrypted channel.
///
/// ```
/// use cosmic_runtime::transport::NodeName;
///
/// let name: NodeName = "alpha".parse()?;
/// assert_eq!(name.as_str(), "alpha");
/// assert!(NodeName::new("two words").is_err());
/// # Ok::<(), cosmic_runtime::transport::NodeNameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// Checks and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<NodeName, NodeNameError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("node names are not empty")
        } else if name.len() > MAX_NODE_NAME_LEN {
            Some("node names are at most 128 bytes long")
        } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("node names have no whitespace or control characters")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(NodeNameError { name, reason }),
            None => Ok(NodeName(name)),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = NodeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl TryFrom<String> for NodeName {
    type Error = NodeNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        NodeName::new(s)
    }
}

impl TryFrom<&str> for NodeName {
    type Error = NodeNameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        NodeName::new(s)
    }
}

/// What a channel learned about its peer during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The name the peer announced (authenticated by the cluster key: any holder of the key
    /// may claim any name).
    pub node: NodeName,
    /// The peer's TCP address.
    pub addr: SocketAddr,
    /// The protocol version both sides speak.
    pub protocol_version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(NodeName::new("alpha").is_ok());
        assert!(NodeName::new("node-7.rack_2:east").is_ok());
        assert!(NodeName::new("ünïcode").is_ok());
        for bad in ["", "a b", "tab\there", "bell\u{7}", "line\n"] {
            let err = NodeName::new(bad).unwrap_err();
            assert_eq!(err.name, bad);
        }
        assert!(NodeName::new("x".repeat(MAX_NODE_NAME_LEN)).is_ok());
        assert!(NodeName::new("x".repeat(MAX_NODE_NAME_LEN + 1)).is_err());
    }
}
