//! The directories the agent trusts: its state directory (allocation table,
//! CNI records), the control socket's directory and the manifests
//! directory. What is in them decides what the datapath enforces, and the
//! socket is how a CNI plugin learns that a pod is enforced, so anyone who
//! can write them can loosen enforcement.
//!
//! This module owns how they are created (private: 0700) and the check an
//! agent running as root makes before it reads or binds anything in them:
//! a directory writable by everyone, or owned by another user (who can
//! make it so), is refused with its path and the fix. Fail closed: an
//! agent that cannot trust its inputs does not start.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// Mode of the directories the agent creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// A trusted directory is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Everyone may write to it.
    #[error(
        "{flag} {path}: world-writable (mode {mode:04o}), so any user could change what the agent enforces; run `chmod o-w {path}` (0700 is best) or choose another directory"
    )]
    WorldWritable {
        /// The option naming the directory.
        flag: &'static str,
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another user owns it (and may make it writable at any time).
    #[error(
        "{flag} {path}: owned by uid {uid}, not root, so that user could change what the agent enforces; run `chown root {path}` or choose another directory"
    )]
    NotOwnedByRoot {
        /// The option naming the directory.
        flag: &'static str,
        /// The directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// It cannot be read or created.
    #[error("{flag} {path}: {source}")]
    Io {
        /// The option naming the directory.
        flag: &'static str,
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Whether this process runs as root (the checks apply to root only: an
/// unprivileged agent cannot load programs, and other users' directories
/// are theirs to trust).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Checks an existing directory an agent running as root is about to
/// trust (`as_root`; nothing to check otherwise).
pub fn check(flag: &'static str, path: &Path, as_root: bool) -> Result<(), DirError> {
    let meta = std::fs::metadata(path).map_err(|source| DirError::Io {
        flag,
        path: path.to_path_buf(),
        source,
    })?;
    if !as_root {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(DirError::WorldWritable {
            flag,
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.uid() != 0 {
        return Err(DirError::NotOwnedByRoot {
            flag,
            path: path.to_path_buf(),
            uid: meta.uid(),
        });
    }
    Ok(())
}

/// Checks `path` if it exists, else creates it (and missing parents)
/// private to the agent's user (0700).
pub fn ensure_private(flag: &'static str, path: &Path, as_root: bool) -> Result<(), DirError> {
    if path.exists() {
        return check(flag, path, as_root);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
        .map_err(|source| DirError::Io {
            flag,
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn world_writable_directories_are_refused_as_root() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("state");
        std::fs::create_dir(&d).unwrap();
        for mode in [0o777, 0o1777, 0o703] {
            chmod(&d, mode);
            let e = check("--state-dir", &d, true).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("--state-dir {}: world-writable", d.display())),
                "{text}"
            );
            assert!(
                text.contains(&format!("chmod o-w {}", d.display())),
                "{text}"
            );
            // Not root: not ours to judge.
            assert!(check("--state-dir", &d, false).is_ok());
        }
        for mode in [0o700, 0o755, 0o770] {
            chmod(&d, mode);
            let owned_by_root = std::fs::metadata(&d).unwrap().uid() == 0;
            assert_eq!(
                check("--state-dir", &d, true).is_ok(),
                owned_by_root,
                "{mode:o}"
            );
        }
    }

    #[test]
    fn created_directories_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b");
        ensure_private("--socket", &d, false).unwrap();
        for p in [tmp.path().join("a"), d.clone()] {
            let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", p.display());
        }
        let e = check("--manifests", &tmp.path().join("missing"), true).unwrap_err();
        assert!(e.to_string().starts_with("--manifests "), "{e}");
    }
}
