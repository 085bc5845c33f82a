//! Task identity.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A task's identity, unique across hosts and restarts: 64 random bits, written as 16 hex
/// digits (`Display` and `FromStr`).
///
/// ```
/// use cosmic_runtime::task::TaskId;
///
/// let id: TaskId = "00000000000000ff".parse()?;
/// assert_eq!(id, TaskId::from_raw(255));
/// assert_eq!(id.as_u64(), 255);
/// assert_eq!(id.to_string(), "00000000000000ff");
/// assert!("ff".parse::<TaskId>().is_err());
/// # Ok::<(), cosmic_runtime::task::ParseTaskIdError>(())
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The task id of these 64 bits (an id read from elsewhere, or a fixed one in a test).
    pub const fn from_raw(bits: u64) -> TaskId {
        TaskId(bits)
    }

    /// The id's 64 bits.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A new random id.
    pub fn random() -> TaskId {
        // `RandomState` is seeded from the OS; hashing a counter and the time under it gives
        // well-spread ids without another dependency.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        TaskId(hasher.finish())
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({self})")
    }
}

/// Error returned by parsing a [`TaskId`] from text.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a task id (16 hex digits)")]
pub struct ParseTaskIdError(String);

impl FromStr for TaskId {
    type Err = ParseTaskIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 16 {
            return Err(ParseTaskIdError(text.to_owned()));
        }
        u64::from_str_radix(text, 16)
            .map(TaskId)
            .map_err(|_| ParseTaskIdError(text.to_owned()))
    }
}
