//! The cluster key: the one secret every host of a cluster holds. The secure channel derives
//! its Noise pre-shared key from it; the key itself is never sent, logged or printed.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use blake2::{Blake2s256, Digest};
use zeroize::Zeroizing;

use super::error::KeyError;
use super::secret_file;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The random bytes in a key made by [`ClusterKey::create`].
const GENERATED_KEY_LEN: usize = 32;

/// The longest key file read; anything longer is taken for a wrong file.
const MAX_KEY_LEN: usize = 64 << 10;

/// Separates this use of the key from any other use a cluster may make of the same secret.
const KDF_CONTEXT: &[u8] = b"cosmic/transport/v1 cluster key to Noise PSK";

/// The secret shared by the hosts of a cluster; only peers holding the same key can open a
/// [`SecureChannel`](super::SecureChannel) with each other.
///
/// The key is at least [`MIN_KEY_LEN`] bytes. A key that is printable text (such as the output
/// of `openssl rand -hex 32`) has the whitespace around it trimmed, so a trailing newline in a
/// file or variable does not matter; any other key (such as `head -c 32 /dev/urandom`) is used
/// byte for byte. Keep it in a file readable only by the hosts' user, or in an environment
/// variable; never on a command line, where other users of the machine can read it.
///
/// The key is reduced to a 32-byte Noise pre-shared key with BLAKE2s under a fixed context
/// string, and only that is kept in memory, wiped when the last clone is dropped. `Debug`
/// prints `ClusterKey(<redacted>)`; there is no `Display`.
///
/// ```
/// use cosmic_runtime::transport::ClusterKey;
///
/// let key = ClusterKey::from_bytes(b"a key of at least thirty-two bytes, shared by all hosts")?;
/// assert_eq!(format!("{key:?}"), "ClusterKey(<redacted>)");
/// assert!(ClusterKey::from_bytes(b"too short").is_err());
/// # Ok::<(), cosmic_runtime::transport::KeyError>(())
/// ```
#[derive(Clone)]
pub struct ClusterKey {
    psk: Arc<Zeroizing<[u8; 32]>>,
}

impl ClusterKey {
    /// A key from its bytes (see the type's docs for how text keys are trimmed).
    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterKey, KeyError> {
        ClusterKey::from_material(bytes, || "bytes given by the program".to_owned())
    }

    /// A key read from a file. On Unix, a file whose mode gives the group or other users any
    /// access (`mode & 0o077 != 0`) is refused with [`KeyError::SharedFile`]: make it
    /// `chmod 600`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ClusterKey, KeyError> {
        let path = path.as_ref();
        let read_error = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // The mode of the file opened, not of the path (which could be swapped meanwhile).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(read_error)?.permissions().mode();
            refuse_shared(path, mode)?;
        }
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        ClusterKey::from_material(&bytes, || format!("file {}", path.display()))
    }

    /// A key read from an environment variable.
    pub fn from_env(var: &str) -> Result<ClusterKey, KeyError> {
        let value = std::env::var_os(var).ok_or_else(|| KeyError::EnvMissing {
            var: var.to_owned(),
        })?;
        #[cfg(unix)]
        let bytes = Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(value));
        #[cfg(not(unix))]
        let bytes = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| KeyError::EnvNotUnicode {
                    var: var.to_owned(),
                })?
                .into_bytes(),
        );
        ClusterKey::from_material(&bytes, || format!("environment variable `{var}`"))
    }

    /// A new random key, written to a new file at `path`: 32 bytes from the system's random
    /// number generator, as 64 hexadecimal digits and a newline (a text key, like the output of
    /// `openssl rand -hex 32`, so it can also be put in an environment variable). The file
    /// has mode 0600 (on Unix; never readable by others, not even while it is written) and is
    /// written atomically (under a temporary name in the same folder, then put in place). If a
    /// file is there already, it is replaced (atomically) if `replace`, else left alone and
    /// [`KeyError::Exists`] returned.
    pub fn create(path: impl AsRef<Path>, replace: bool) -> Result<ClusterKey, KeyError> {
        let path = path.as_ref();
        let mut random = Zeroizing::new([0u8; GENERATED_KEY_LEN]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random[..])
            .map_err(|_| KeyError::Random)?;
        let mut text = Zeroizing::new(Vec::with_capacity(2 * GENERATED_KEY_LEN + 1));
        for byte in random.iter() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            text.push(HEX[usize::from(byte >> 4)]);
            text.push(HEX[usize::from(byte & 0xf)]);
        }
        text.push(b'\n');
        let existing = if replace {
            secret_file::Existing::Replace
        } else {
            secret_file::Existing::Keep
        };
        match secret_file::write(path, &text, existing) {
            Ok(()) => ClusterKey::from_material(&text, || format!("file {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(KeyError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(source) => Err(KeyError::Write {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn from_material(raw: &[u8], origin: impl Fn() -> String) -> Result<ClusterKey, KeyError> {
        if raw.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                origin: origin(),
                limit: MAX_KEY_LEN,
            });
        }
        let material = trim_text_key(raw);
        if material.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                origin: origin(),
                length: material.len(),
                min: MIN_KEY_LEN,
            });
        }
        let mut psk = Zeroizing::new([0u8; 32]);
        let mut hasher = Blake2s256::new();
        hasher.update(KDF_CONTEXT);
        hasher.update(material);
        psk.copy_from_slice(&hasher.finalize());
        Ok(ClusterKey { psk: Arc::new(psk) })
    }

    /// The Noise pre-shared key derived from the cluster key.
    pub(crate) fn psk(&self) -> &[u8; 32] {
        &self.psk
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// A key made only of printable ASCII and whitespace is text: trim the whitespace around it.
fn trim_text_key(raw: &[u8]) -> &[u8] {
    if raw
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        raw.trim_ascii()
    } else {
        raw
    }
}

/// Refuses a key file that the group or other users may read or write.
#[cfg(unix)]
fn refuse_shared(path: &Path, mode: u32) -> Result<(), KeyError> {
    let permissions = mode & 0o777;
    if permissions & 0o077 != 0 {
        return Err(KeyError::SharedFile {
            path: path.to_owned(),
            mode: permissions,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn debug_never_shows_the_key() {
        let key = ClusterKey::from_bytes(KEY).unwrap();
        let printed = format!("{key:?} {key:#?}");
        assert!(!printed.contains("0123"), "{printed}");
        assert_eq!(format!("{key:?}"), "ClusterKey(<redacted>)");
    }

    #[test]
    fn short_keys_are_refused() {
        let err = ClusterKey::from_bytes(&KEY[..31]).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::TooShort {
                    length: 31,
                    min: 32,
                    ..
                }
            ),
            "{err:?}"
        );
        // Whitespace around a text key does not count.
        let mut padded = b"   ".to_vec();
        padded.extend_from_slice(&KEY[..31]);
        padded.extend_from_slice(b"\n\n");
        assert!(ClusterKey::from_bytes(&padded).is_err());
    }

    #[test]
    fn text_keys_are_trimmed_and_binary_keys_are_not() {
        let plain = ClusterKey::from_bytes(KEY).unwrap();
        let mut line = KEY.to_vec();
        line.extend_from_slice(b"\r\n");
        assert_eq!(ClusterKey::from_bytes(&line).unwrap().psk(), plain.psk());

        let mut binary = vec![0xffu8; 32];
        binary.push(b'\n');
        let with_newline = ClusterKey::from_bytes(&binary).unwrap();
        let without = ClusterKey::from_bytes(&binary[..32]).unwrap();
        assert_ne!(with_newline.psk(), without.psk());
    }

    #[test]
    fn different_keys_give_different_psks_and_the_psk_is_not_the_key() {
        let a = ClusterKey::from_bytes(KEY).unwrap();
        let b = ClusterKey::from_bytes(b"1123456789abcdef0123456789abcdef").unwrap();
        assert_ne!(a.psk(), b.psk());
        assert_ne!(&a.psk()[..], KEY);
    }

    /// Writes a key file only its owner can read, as deployments must.
    fn write_private(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_others_can_open_are_refused() {
        let path = Path::new("/etc/cosmic/cluster.key");
        for mode in [0o600, 0o400, 0o700, 0o100600] {
            assert!(refuse_shared(path, mode).is_ok(), "{mode:o}");
        }
        for mode in [0o644, 0o640, 0o604, 0o602, 0o620, 0o610, 0o666, 0o100644] {
            let err = refuse_shared(path, mode).unwrap_err();
            assert!(
                matches!(err, KeyError::SharedFile { mode: m, .. } if m == mode & 0o777),
                "{err:?}"
            );
        }
        let message = refuse_shared(path, 0o100644).unwrap_err().to_string();
        assert_eq!(
            message,
            "the cluster key file /etc/cosmic/cluster.key has mode 644: other users may read or \
             change it; restrict it to its owner with `chmod 600 /etc/cosmic/cluster.key`"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused_when_loaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cosmic-key-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        write_private(&path, KEY);
        assert!(ClusterKey::from_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = ClusterKey::from_file(&path).unwrap_err();
        assert!(
            matches!(&err, KeyError::SharedFile { mode: 0o640, path: p } if p == &path),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn created_keys_are_private_random_text_and_load_back() {
        let dir = std::env::temp_dir().join(format!("cosmic-key-create-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        let made = ClusterKey::create(&path, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65, "{text:?}");
        assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(ClusterKey::from_file(&path).unwrap().psk(), made.psk());
        let again = ClusterKey::create(&path, false).unwrap_err();
        assert!(
            matches!(&again, KeyError::Exists { path: p } if p == &path),
            "{again:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let replaced = ClusterKey::create(&path, true).unwrap();
        assert_ne!(replaced.psk(), made.psk());
        assert_eq!(ClusterKey::from_file(&path).unwrap().psk(), replaced.psk());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_load_from_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("cosmic-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        write_private(&path, &[KEY, b"\n"].concat());
        let from_file = ClusterKey::from_file(&path).unwrap();
        assert_eq!(from_file.psk(), ClusterKey::from_bytes(KEY).unwrap().psk());

        let missing = ClusterKey::from_file(dir.join("missing.key")).unwrap_err();
        assert!(matches!(missing, KeyError::Read { .. }), "{missing:?}");

        write_private(&path, &vec![b'k'; MAX_KEY_LEN + 1]);
        let huge = ClusterKey::from_file(&path).unwrap_err();
        assert!(matches!(huge, KeyError::TooLong { .. }), "{huge:?}");
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = ClusterKey::from_env("COSMIC_TEST_KEY_THAT_IS_NEVER_SET").unwrap_err();
        assert!(
            matches!(missing, KeyError::EnvMissing { .. }),
            "{missing:?}"
        );
    }
}
