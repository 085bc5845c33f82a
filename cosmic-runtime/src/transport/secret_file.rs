//! Writing key files: a new file that only its owner can read from the moment it exists
//! (created with mode 0600 on Unix, never wider, whatever the umask), written whole under a
//! temporary name in the same folder, then put in place in one step, so that no reader ever
//! sees half a key.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What to do when a file is already at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Fail with `io::ErrorKind::AlreadyExists` (the file there wins a race, too).
    Keep,
    /// Replace it atomically: a reader sees the old file or the new one.
    Replace,
}

/// Writes `contents` to a new file at `path` as described in the module docs.
pub(crate) fn write(path: &Path, contents: &[u8], existing: Existing) -> io::Result<()> {
    let temporary = temporary_path(path);
    let written = (|| {
        let mut open = OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let mut file = open.open(&temporary)?;
        // Exactly 0600: the umask may have taken the owner's write bit too.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        match existing {
            // Fails if a file appeared meanwhile: the first one written wins.
            Existing::Keep => fs::hard_link(&temporary, path),
            Existing::Replace => fs::rename(&temporary, path),
        }
    })();
    let _ = fs::remove_file(&temporary);
    written?;
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
        // Make the new name durable; best effort (not every system allows it).
        let _ = fs::File::open(folder).and_then(|folder| folder.sync_all());
    }
    Ok(())
}

/// A name beside `path`, hidden, that no other writer uses.
fn temporary_path(path: &Path) -> PathBuf {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{file_name}.tmp-{}-{:016x}",
        std::process::id(),
        crate::task::TaskId::random().0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_private_files_and_replaces_only_when_asked() {
        let dir = std::env::temp_dir().join(format!("cosmic-secret-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        write(&path, b"first", Existing::Keep).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = write(&path, b"second", Existing::Keep).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write(&path, b"second", Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        // No temporary file is left behind, after a success or a refusal.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key"]);
        // A missing folder is an error, not a panic.
        assert!(write(&dir.join("missing/key"), b"x", Existing::Keep).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
