//! Key files for the demonstrations, made as an operator would provision hosts (the `cosmic
//! keygen` command does the same for real deployments).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a new cluster key to `DIR/cluster.key`, mode 0600 from the start (a key file
/// readable by others is refused by `ClusterKey::from_file`).
pub fn write_cluster_key(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("cluster.key");
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    // A new file, so that the mode below applies.
    if path.exists() {
        std::fs::remove_file(&path).map_err(cannot)?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open.open(&path).map_err(cannot)?;
    writeln!(file, "{}", demo_key()).map_err(cannot)?;
    Ok(path)
}

/// 64 hex digits for a demonstration key. std's `RandomState` is seeded from the operating
/// system's randomness; the time and process id make each key differ further.
fn demo_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (0..4u8)
        .map(|part| {
            let mut hasher = state.build_hasher();
            hasher.write_u128(now);
            hasher.write_u32(std::process::id());
            hasher.write_u8(part);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
