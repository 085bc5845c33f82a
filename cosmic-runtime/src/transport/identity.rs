//! Host identity: each host's own Ed25519 key pair ([`HostKey`]), the public keys of the hosts
//! it trusts, by name ([`TrustedPeers`]), and the three together with the cluster key
//! ([`Credentials`]), which is what opening a channel takes.
//!
//! The cluster key decides who may speak at all (a peer without it is dropped at the first
//! Noise message, before any Diffie-Hellman work); the host key proves which host is speaking.
//! In the hello, each side signs the Noise handshake hash (with a label saying which side it
//! plays) and the other side checks the signature against the public key trusted for the name
//! announced. A key becomes trusted only by configuration ([`TrustedPeers::trust`],
//! `Builder::trust_peer`), never by connecting.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

use super::error::{HandshakeError, HostKeyError, PublicKeyError};
use super::key::ClusterKey;
use super::node::NodeName;
use super::secret_file;

/// The length of a [`PublicKey`], in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// The length of an Ed25519 signature, in bytes.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// The longest host key file read (a PKCS#8 v2 Ed25519 document is 83 bytes).
const MAX_HOST_KEY_FILE: u64 = 4096;

/// The public half of a host's key: an Ed25519 public key, 32 bytes.
///
/// It is what peers know a host by. It prints (`Display`, `Debug`) and parses (`FromStr`) as
/// 64 hexadecimal digits, lowercase when printed; parsing also accepts uppercase and ignores
/// whitespace around the digits (a key pasted from a file with its newline).
///
/// ```
/// use cosmic_runtime::transport::{HostKey, PublicKey};
///
/// let key = HostKey::generate()?.public_key();
/// let text = key.to_string();
/// assert_eq!(text.len(), 64);
/// assert_eq!(text.parse::<PublicKey>()?, key);
/// assert!("3f2a".parse::<PublicKey>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// A public key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> PublicKey {
        PublicKey(bytes)
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Whether `signature` is this key's signature of `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// As its 64 hex digits (what the coordinator publishes and config files hold).
impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyError;

    fn from_str(text: &str) -> Result<PublicKey, PublicKeyError> {
        let text = text.trim();
        let digits = text.as_bytes();
        if digits.len() != 2 * PUBLIC_KEY_LEN {
            return Err(PublicKeyError::Length {
                digits: text.chars().count(),
            });
        }
        // Every byte before the first bad one is an ASCII digit, so `position` is a character
        // boundary.
        let nibble = |position: usize| {
            (digits[position] as char)
                .to_digit(16)
                .map(|digit| digit as u8)
                .ok_or_else(|| PublicKeyError::NotHex {
                    character: text[position..].chars().next().unwrap_or('?'),
                    position,
                })
        };
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (nibble(2 * i)? << 4) | nibble(2 * i + 1)?;
        }
        Ok(PublicKey(bytes))
    }
}

/// A host's own key pair: Ed25519, from `ring`. It proves the host's name to its peers: in each
/// handshake the host signs the channel's handshake hash, and peers check the signature against
/// the public key they were configured to trust for that name.
///
/// Handle it like the cluster key: keep it in a file readable only by the host's user
/// ([`from_file`](Self::from_file) refuses others), or let [`load_or_create`](Self::load_or_create)
/// make one. Give peers only its [`public_key`](Self::public_key). The file holds a PKCS#8 v2
/// document (the format of `ring::signature::Ed25519KeyPair::generate_pkcs8`, and of
/// `openssl genpkey -algorithm ed25519 -outform DER` once converted to v2).
///
/// The secret stays inside ring's key pair (which does not wipe it when dropped); the bytes of
/// the file are read into a buffer wiped after parsing. Clones share one key pair. `Debug`
/// prints only the public key.
#[derive(Clone)]
pub struct HostKey {
    pair: Arc<Ed25519KeyPair>,
    public: PublicKey,
}

impl HostKey {
    /// A new random key pair (for a host whose key nobody needs to know in advance: tests, or a
    /// host that prints its key for the operator to distribute).
    pub fn generate() -> Result<HostKey, HostKeyError> {
        let document = Zeroizing::new(generate_pkcs8()?);
        HostKey::from_material(&document, || "a freshly generated key".to_owned())
    }

    /// A key pair from a PKCS#8 v2 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<HostKey, HostKeyError> {
        HostKey::from_material(pkcs8, || "bytes given by the program".to_owned())
    }

    /// A key pair read from a file holding a PKCS#8 v2 document. On Unix, a file whose mode
    /// gives the group or other users any access is refused with [`HostKeyError::SharedFile`]:
    /// make it `chmod 600`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<HostKey, HostKeyError> {
        let path = path.as_ref();
        let read_error = |source| HostKeyError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // The mode of the file opened, not of the path (which could be swapped meanwhile).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(read_error)?.permissions().mode();
            let permissions = mode & 0o777;
            if permissions & 0o077 != 0 {
                return Err(HostKeyError::SharedFile {
                    path: path.to_owned(),
                    mode: permissions,
                });
            }
        }
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_HOST_KEY_FILE)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        HostKey::from_material(&bytes, || format!("file {}", path.display()))
    }

    /// The key pair in the file at `path`, created first if there is no such file: a new
    /// random key written with mode 0600 (on Unix), atomically (written to a temporary file
    /// in the same folder, then linked into place, so a concurrent reader never sees half a
    /// key and two hosts racing end up with the same key).
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<HostKey, HostKeyError> {
        let path = path.as_ref();
        match std::fs::symlink_metadata(path) {
            Ok(_) => return HostKey::from_file(path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(HostKeyError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        match HostKey::create(path, false) {
            Err(HostKeyError::Exists { .. }) => HostKey::from_file(path),
            made => made,
        }
    }

    /// A new random key pair, written to a new file at `path` with mode 0600 (on Unix; never
    /// readable by others, not even while it is written) and atomically (written under a
    /// temporary name in the same folder, then put in place). If a file is there already, it
    /// is replaced (atomically: readers see the old key or the new one) if `replace`, else
    /// left alone and [`HostKeyError::Exists`] returned.
    pub fn create(path: impl AsRef<Path>, replace: bool) -> Result<HostKey, HostKeyError> {
        let path = path.as_ref();
        let document = Zeroizing::new(generate_pkcs8()?);
        let existing = if replace {
            secret_file::Existing::Replace
        } else {
            secret_file::Existing::Keep
        };
        match secret_file::write(path, &document, existing) {
            Ok(()) => HostKey::from_material(&document, || format!("file {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(HostKeyError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(source) => Err(HostKeyError::Write {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn from_material(pkcs8: &[u8], origin: impl Fn() -> String) -> Result<HostKey, HostKeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|error| HostKeyError::Invalid {
            origin: origin(),
            reason: error.to_string(),
        })?;
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(HostKey {
            pair: Arc::new(pair),
            public: PublicKey(public),
        })
    }

    /// The public key: what peers trust this host by.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostKey(public: {}, secret: <redacted>)", self.public)
    }
}

fn generate_pkcs8() -> Result<Vec<u8>, HostKeyError> {
    let document =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| HostKeyError::Random)?;
    // ring's document itself is not wiped when dropped; the copies we make are.
    Ok(document.as_ref().to_vec())
}

/// The hosts this one trusts, by name: each name maps to the one public key that may use it.
///
/// Clones share one list, so a listener and the connections a host opens see the same list,
/// and a key trusted after they started counts for their next handshakes. A host absent from
/// the list is refused, whatever key it presents: a key is trusted only by configuration,
/// never by connecting.
///
/// ```
/// use cosmic_runtime::transport::{HostKey, TrustedPeers};
///
/// let beta = HostKey::generate()?;
/// let trusted = TrustedPeers::new();
/// trusted.trust("beta".parse()?, beta.public_key());
/// assert_eq!(trusted.get("beta"), Some(beta.public_key()));
/// assert_eq!(trusted.get("gamma"), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct TrustedPeers {
    keys: Arc<RwLock<HashMap<NodeName, PublicKey>>>,
}

impl TrustedPeers {
    /// An empty list: every peer is refused until trusted.
    pub fn new() -> TrustedPeers {
        TrustedPeers::default()
    }

    /// Trusts `key` for host `name` (replacing the key trusted before, which is returned).
    pub fn trust(&self, name: NodeName, key: PublicKey) -> Option<PublicKey> {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, key)
    }

    /// Stops trusting host `name`; returns the key it had.
    pub fn remove(&self, name: &str) -> Option<PublicKey> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let name = NodeName::new(name).ok()?;
        keys.remove(&name)
    }

    /// The key trusted for host `name`.
    pub fn get(&self, name: &str) -> Option<PublicKey> {
        let name = NodeName::new(name).ok()?;
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .copied()
    }

    /// The names trusted, sorted.
    pub fn names(&self) -> Vec<NodeName> {
        let mut names: Vec<NodeName> = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Whether `node` may present `key`: refused with a message naming the host, the keys and
    /// what to do, if not.
    pub(crate) fn check(&self, node: &NodeName, key: &PublicKey) -> Result<(), HandshakeError> {
        let trusted = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied();
        match trusted {
            Some(trusted) if trusted == *key => Ok(()),
            Some(trusted) => Err(HandshakeError::WrongHostKey {
                node: node.clone(),
                presented: *key,
                trusted,
            }),
            None => Err(HandshakeError::UntrustedHost {
                node: node.clone(),
                key: *key,
            }),
        }
    }
}

impl fmt::Debug for TrustedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<_> = keys.iter().collect();
        entries.sort();
        f.debug_map().entries(entries).finish()
    }
}

/// What a host needs to open channels: the cluster key (who may speak at all), its own key
/// pair (who it is) and the peers it trusts (who they are).
///
/// Cheap to clone: the keys are shared, and so is the trust list (see [`TrustedPeers`]).
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The key every host of the cluster holds.
    pub cluster_key: ClusterKey,
    /// This host's own key pair.
    pub host_key: HostKey,
    /// The hosts this one accepts, by name and public key.
    pub trusted: TrustedPeers,
}

impl Credentials {
    /// Bundles the three.
    pub fn new(cluster_key: ClusterKey, host_key: HostKey, trusted: TrustedPeers) -> Credentials {
        Credentials {
            cluster_key,
            host_key,
            trusted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_print_and_parse_as_hex() {
        let key = PublicKey::from_bytes(*b"\x3f\x2a0123456789abcdef0123456789abcd");
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("3f2a3031"), "{text}");
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(
            format!("  {}\n", text.to_uppercase())
                .parse::<PublicKey>()
                .unwrap(),
            key
        );
        assert_eq!(format!("{key:?}"), format!("PublicKey({text})"));
        let err = "3f2a".parse::<PublicKey>().unwrap_err();
        assert_eq!(err, PublicKeyError::Length { digits: 4 });
        let mut bad = text.clone();
        bad.replace_range(10..11, "g");
        let err = bad.parse::<PublicKey>().unwrap_err();
        assert_eq!(
            err,
            PublicKeyError::NotHex {
                character: 'g',
                position: 10
            }
        );
        let err = "é".repeat(32).parse::<PublicKey>().unwrap_err();
        assert!(matches!(err, PublicKeyError::NotHex { position: 0, .. }));
    }

    #[test]
    fn host_keys_sign_and_debug_shows_only_the_public_key() {
        let key = HostKey::generate().unwrap();
        let other = HostKey::generate().unwrap();
        assert_ne!(key.public_key(), other.public_key());
        let signature = key.sign(b"message");
        assert!(key.public_key().verifies(b"message", &signature));
        assert!(!key.public_key().verifies(b"massage", &signature));
        assert!(!other.public_key().verifies(b"message", &signature));
        assert_eq!(
            format!("{key:?}"),
            format!("HostKey(public: {}, secret: <redacted>)", key.public_key())
        );
        assert!(matches!(
            HostKey::from_pkcs8(b"not a key"),
            Err(HostKeyError::Invalid { .. })
        ));
    }

    #[test]
    fn the_trust_list_names_the_host_and_both_keys() {
        let trusted = TrustedPeers::new();
        let beta: NodeName = "beta".parse().unwrap();
        let (right, wrong) = (
            HostKey::generate().unwrap().public_key(),
            HostKey::generate().unwrap().public_key(),
        );
        let err = trusted.check(&beta, &right).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, HandshakeError::UntrustedHost { .. }));
        assert!(message.contains("`beta`") && message.contains(&right.to_string()));
        assert!(message.contains("trust_peer"), "{message}");
        assert_eq!(trusted.trust(beta.clone(), right), None);
        trusted.check(&beta, &right).unwrap();
        let err = trusted.clone().check(&beta, &wrong).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, HandshakeError::WrongHostKey { .. }));
        assert!(message.contains("`beta`"), "{message}");
        assert!(message.contains(&right.to_string()), "{message}");
        assert!(message.contains(&wrong.to_string()), "{message}");
        assert_eq!(trusted.remove("beta"), Some(right));
        assert!(trusted.names().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_created_private_and_shared_ones_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cosmic-host-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alpha.key");
        let _ = std::fs::remove_file(&path);
        let created = HostKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = HostKey::load_or_create(&path).unwrap();
        assert_eq!(created.public_key(), loaded.public_key());
        assert_eq!(
            HostKey::from_file(&path).unwrap().public_key(),
            created.public_key()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = HostKey::from_file(&path).unwrap_err();
        assert!(
            matches!(&err, HostKeyError::SharedFile { mode: 0o644, path: p } if p == &path),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
        // No leftovers of the temporary file.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn create_refuses_an_existing_file_unless_asked_to_replace_it() {
        let dir = std::env::temp_dir().join(format!("cosmic-host-key-new-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("beta.key");
        let first = HostKey::create(&path, false).unwrap();
        assert_eq!(
            HostKey::from_file(&path).unwrap().public_key(),
            first.public_key()
        );
        let err = HostKey::create(&path, false).unwrap_err();
        assert!(
            matches!(&err, HostKeyError::Exists { path: p } if p == &path),
            "{err:?}"
        );
        assert_eq!(
            HostKey::from_file(&path).unwrap().public_key(),
            first.public_key()
        );
        let second = HostKey::create(&path, true).unwrap();
        assert_ne!(second.public_key(), first.public_key());
        assert_eq!(
            HostKey::from_file(&path).unwrap().public_key(),
            second.public_key()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
