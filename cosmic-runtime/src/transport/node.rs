//! Node identity: the name a host goes by, and what a channel learns about its peer.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use super::error::{NodeNameError, NodeNameRule};
use super::identity::PublicKey;

/// The longest node name, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 128;

/// The name of a host in a cluster ("alpha", "node-7.rack-2"): 1 to [`MAX_NODE_NAME_LEN`]
/// bytes of UTF-8 that read safely in logs and can name a file:
/// - no whitespace and no control characters;
/// - no path separators (`/`, `\\`), and neither `.` nor `..`;
/// - no invisible characters that change how text around them reads: the Unicode
///   bidirectional controls (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), and
///   the zero-width characters U+200B to U+200D, U+2060 and U+FEFF.
///
/// A name that breaks a rule gets a [`NodeNameError`] naming the rule, and for a character,
/// the character (escaped) and its position. Peers exchange names in the hello, inside the
/// encrypted channel, and the same rules apply to the names they announce.
///
/// ```
/// use cosmic_runtime::transport::NodeName;
///
/// let name: NodeName = "alpha".parse()?;
/// assert_eq!(name.as_str(), "alpha");
/// assert!(NodeName::new("two words").is_err());
/// let error = NodeName::new("../etc").unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     r#"invalid node name "../etc": character '/' at position 2 is a path separator"#
/// );
/// # Ok::<(), cosmic_runtime::transport::NodeNameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// Checks and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<NodeName, NodeNameError> {
        let name = name.into();
        match check(&name) {
            Err(reason) => Err(NodeNameError { name, reason }),
            Ok(()) => Ok(NodeName(name)),
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

/// The rules of [`NodeName`], in the order they are checked.
fn check(name: &str) -> Result<(), NodeNameRule> {
    if name.is_empty() {
        return Err(NodeNameRule::Empty);
    }
    if name.len() > MAX_NODE_NAME_LEN {
        return Err(NodeNameRule::TooLong {
            length: name.len(),
            max: MAX_NODE_NAME_LEN,
        });
    }
    for (position, character) in name.chars().enumerate() {
        if let Some(what) = forbidden(character) {
            return Err(NodeNameRule::Character {
                character,
                position,
                what,
            });
        }
    }
    if name == "." || name == ".." {
        return Err(NodeNameRule::DotName);
    }
    Ok(())
}

/// What kind of forbidden character `c` is, if it is one.
fn forbidden(c: char) -> Option<&'static str> {
    if c == '/' || c == '\\' {
        Some("a path separator")
    } else if c.is_control() {
        Some("a control character")
    } else if c.is_whitespace() {
        Some("whitespace")
    } else if matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    {
        Some("a Unicode bidirectional control")
    } else if matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}') {
        Some("an invisible zero-width character")
    } else {
        None
    }
}

/// What a channel learned about its peer during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's name, proven: it signed the handshake with the key this host trusts for
    /// that name.
    pub node: NodeName,
    /// The peer's host public key (the one trusted for `node`).
    pub public_key: PublicKey,
    /// The peer's TCP address.
    pub addr: SocketAddr,
    /// The protocol version both sides speak.
    pub protocol_version: u32,
    /// The peer's kind of machine and build, as its hello says (a trusted peer's word: it
    /// decides only whether moves to it are native, and the peer checks native images itself).
    pub isa: crate::image::Isa,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(NodeName::new("alpha").is_ok());
        assert!(NodeName::new("node-7.rack_2:east").is_ok());
        assert!(NodeName::new("ünïcode").is_ok());
        assert!(NodeName::new("...").is_ok());
        assert!(NodeName::new(".hidden").is_ok());
        for bad in ["", "a b", "tab\there", "bell\u{7}", "line\n", ".", ".."] {
            let err = NodeName::new(bad).unwrap_err();
            assert_eq!(err.name, bad);
        }
        assert!(NodeName::new("x".repeat(MAX_NODE_NAME_LEN)).is_ok());
        let err = NodeName::new("x".repeat(MAX_NODE_NAME_LEN + 1)).unwrap_err();
        assert_eq!(
            err.reason,
            NodeNameRule::TooLong {
                length: MAX_NODE_NAME_LEN + 1,
                max: MAX_NODE_NAME_LEN
            }
        );
    }

    #[test]
    fn a_forbidden_character_is_named_with_its_position() {
        for (name, character, position, what) in [
            ("a/b", '/', 1, "a path separator"),
            ("..\\x", '\\', 2, "a path separator"),
            ("nul\0", '\0', 3, "a control character"),
            ("del\u{7f}", '\u{7f}', 3, "a control character"),
            ("é\u{85}", '\u{85}', 1, "a control character"),
            ("nb\u{a0}sp", '\u{a0}', 2, "whitespace"),
            (
                "evil\u{202E}txt.exe",
                '\u{202E}',
                4,
                "a Unicode bidirectional control",
            ),
            (
                "\u{2066}x",
                '\u{2066}',
                0,
                "a Unicode bidirectional control",
            ),
            (
                "a\u{2069}",
                '\u{2069}',
                1,
                "a Unicode bidirectional control",
            ),
            (
                "a\u{200E}",
                '\u{200E}',
                1,
                "a Unicode bidirectional control",
            ),
            (
                "a\u{200F}",
                '\u{200F}',
                1,
                "a Unicode bidirectional control",
            ),
            (
                "a\u{061C}",
                '\u{061C}',
                1,
                "a Unicode bidirectional control",
            ),
            (
                "zero\u{200B}width",
                '\u{200B}',
                4,
                "an invisible zero-width character",
            ),
            (
                "\u{FEFF}bom",
                '\u{FEFF}',
                0,
                "an invisible zero-width character",
            ),
        ] {
            let err = NodeName::new(name).unwrap_err();
            assert_eq!(
                err.reason,
                NodeNameRule::Character {
                    character,
                    position,
                    what
                },
                "{name:?}"
            );
            // Escaped in the message, so the message itself reads safely.
            let message = err.to_string();
            assert!(message.contains(&format!("{character:?}")), "{message}");
            assert!(
                !message.contains(character) || character.is_ascii_graphic(),
                "{message:?}"
            );
        }
        assert_eq!(
            NodeName::new("a/b").unwrap_err().to_string(),
            r#"invalid node name "a/b": character '/' at position 1 is a path separator"#
        );
    }

    #[test]
    fn dot_names_are_refused() {
        for name in [".", ".."] {
            assert_eq!(
                NodeName::new(name).unwrap_err().reason,
                NodeNameRule::DotName
            );
        }
    }
}
