//! `palisade cleanup` (or `palisade agent --cleanup`): removes everything
//! Palisade attached and pinned for one node — its link pins (detaching
//! the programs from every pod interface), its map pins, its state — and
//! nothing of any other node. Refuses while that node's agent runs.

use std::path::{Path, PathBuf};

/// What to clean.
#[derive(Clone, Debug)]
pub struct Target {
    /// `<bpffs-dir>` of the node.
    pub bpffs_dir: PathBuf,
    /// `<state-dir>` of the node.
    pub state_dir: PathBuf,
    /// The node's control socket.
    pub socket: PathBuf,
}

/// Cleaning up failed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The node's agent is running.
    #[error("the agent is running (its socket {0} answers); stop it first")]
    Running(PathBuf),
    /// A file could not be removed.
    #[error("removing {path}: {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn rm(path: &Path, removed: &mut Vec<PathBuf>) -> Result<(), CleanupError> {
    let r = if path.is_dir() {
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Ok(()) => {
            removed.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CleanupError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.is_dir())
        .collect();
    v.sort();
    v
}

/// Removes the node's pins and state; returns what was removed.
pub fn run(t: &Target) -> Result<Vec<PathBuf>, CleanupError> {
    if std::os::unix::net::UnixStream::connect(&t.socket).is_ok() {
        return Err(CleanupError::Running(t.socket.clone()));
    }
    let mut removed = Vec::new();
    let links = t.bpffs_dir.join("links");
    // Links first: the programs leave the interfaces before the maps go.
    for f in files(&links) {
        rm(&f, &mut removed)?;
    }
    rm(&links, &mut removed)?;
    for f in files(&t.bpffs_dir) {
        rm(&f, &mut removed)?;
    }
    rm(&t.bpffs_dir, &mut removed)?;
    for name in ["allocations.json", "allocations.json.tmp"] {
        rm(&t.state_dir.join(name), &mut removed)?;
    }
    rm(&t.socket, &mut removed)?;
    if t.state_dir.is_dir() && files(&t.state_dir).is_empty() {
        rm(&t.state_dir, &mut removed)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_the_node_dirs() {
        let root = tempfile::tempdir().unwrap();
        let bpf = root.path().join("bpf/n1");
        let other = root.path().join("bpf/n2");
        let state = root.path().join("state/n1");
        for d in [bpf.join("links"), other.clone(), state.clone()] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(bpf.join("links/caliX_from_pod"), "").unwrap();
        std::fs::write(bpf.join("POLICY"), "").unwrap();
        std::fs::write(other.join("POLICY"), "").unwrap();
        std::fs::write(state.join("allocations.json"), "{}").unwrap();
        let removed = run(&Target {
            bpffs_dir: bpf.clone(),
            state_dir: state.clone(),
            socket: state.join("agent.sock"),
        })
        .unwrap();
        assert_eq!(removed.len(), 6, "{removed:?}");
        assert!(!bpf.exists() && !state.exists());
        assert!(other.join("POLICY").exists());
    }
}
