//! The manifests source: every `*.yaml`/`*.yml` file of one directory
//! (not recursive; names starting with `.` are skipped), watched with
//! `notify` and debounced. A file that fails to parse is reported and the
//! previous content of that file stays in force; a deleted file's objects
//! are deleted. When two files define the same object, the one in the file
//! whose name sorts last wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::yaml::{ManifestError, parse_manifest};
use super::{Change, Object, ObjectKey, SourceHandle, SourceProblem, SourceUpdate};

/// Quiet time after a file event before the directory is rescanned.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest a burst of events can delay a rescan.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// The directory's state as last read.
#[derive(Debug, Default)]
pub struct ManifestDir {
    dir: PathBuf,
    /// Last good content of each file.
    files: BTreeMap<PathBuf, Vec<Object>>,
    /// Files whose current content does not parse.
    errors: BTreeMap<PathBuf, ManifestError>,
    /// What was last reported to the core.
    emitted: BTreeMap<ObjectKey, Object>,
}

fn is_manifest(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

impl ManifestDir {
    /// A source for `dir` (nothing read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManifestDir {
            dir: dir.into(),
            ..Default::default()
        }
    }

    /// Re-reads the directory; returns the changes since the last scan.
    pub fn scan(&mut self) -> Vec<Change> {
        let mut present = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let p = e.path();
                    if is_manifest(&p) && p.is_file() {
                        present.push(p);
                    }
                }
            }
            Err(e) => {
                // Keep everything in force: an unreadable directory is not
                // an empty one.
                warn!(dir = %self.dir.display(), error = %e, "cannot read the manifests directory");
                return Vec::new();
            }
        }
        present.sort();
        self.files.retain(|p, _| present.contains(p));
        self.errors.retain(|p, _| present.contains(p));
        for path in &present {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    // Vanished between listing and reading (a rename in
                    // progress): the next event rescans.
                    debug!(file = %path.display(), error = %e, "unreadable manifest");
                    continue;
                }
            };
            match parse_manifest(path, &text) {
                Ok(objs) => {
                    if self.errors.remove(path).is_some() {
                        info!(file = %path.display(), "manifest parses again");
                    }
                    self.files.insert(path.clone(), objs);
                }
                Err(e) => {
                    if self.errors.get(path) != Some(&e) {
                        warn!(file = %path.display(), document = e.document, line = e.line,
                              field = e.field.as_deref().unwrap_or(""), error = %e,
                              "manifest rejected; its previous content stays in force");
                    }
                    self.errors.insert(path.clone(), e);
                }
            }
        }
        let mut view: BTreeMap<ObjectKey, Object> = BTreeMap::new();
        for objs in self.files.values() {
            for o in objs {
                view.insert(o.key(), o.clone());
            }
        }
        let mut changes = Vec::new();
        for (k, _) in self.emitted.iter() {
            if !view.contains_key(k) {
                changes.push(Change::Delete(k.clone()));
            }
        }
        for (k, o) in &view {
            if self.emitted.get(k) != Some(o) {
                changes.push(Change::Upsert(o.clone()));
            }
        }
        self.emitted = view;
        changes
    }

    /// The files that currently fail to parse.
    pub fn problems(&self) -> Vec<SourceProblem> {
        self.errors
            .values()
            .map(|e| SourceProblem {
                origin: e.file.display().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

/// Starts watching `dir`; the first update (synced) carries the initial
/// scan.
pub fn spawn(dir: PathBuf) -> Result<SourceHandle, notify::Error> {
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = fs_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let (tx, updates) = mpsc::channel(16);
    let (rescan, mut rescan_rx) = mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (unwatched) when the task ends
        let mut src = ManifestDir::new(dir);
        let changes = src.scan();
        let first = SourceUpdate {
            changes,
            synced: true,
            token: None,
            problems: Some(src.problems()),
        };
        if tx.send(first).await.is_err() {
            return;
        }
        loop {
            let token = tokio::select! {
                ev = fs_rx.recv() => {
                    if ev.is_none() { return; }
                    // Debounce: wait for quiet, at most DEBOUNCE_MAX.
                    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
                    loop {
                        match tokio::time::timeout_at(
                            deadline.min(tokio::time::Instant::now() + DEBOUNCE),
                            fs_rx.recv(),
                        ).await {
                            Ok(Some(())) => continue,
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                    None
                }
                t = rescan_rx.recv() => match t { Some(t) => Some(t), None => return },
            };
            let changes = src.scan();
            let update = SourceUpdate {
                changes,
                synced: true,
                token,
                problems: Some(src.problems()),
            };
            if tx.send(update).await.is_err() {
                return;
            }
        }
    });
    Ok(SourceHandle { updates, rescan })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, team: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{team: {team}}}\n"
        )
    }

    #[test]
    fn bad_file_keeps_previous_content_and_deleted_file_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, ns("x", "1")).unwrap();
        std::fs::write(dir.path().join(".a.yaml.swp"), "garbage: [").unwrap();
        let mut src = ManifestDir::new(dir.path());
        let c = src.scan();
        assert_eq!(c.len(), 1);
        assert!(src.problems().is_empty());

        std::fs::write(&a, "apiVersion: v1\nkind: Namespace\nmetadata: [\n").unwrap();
        assert!(src.scan().is_empty(), "previous content stays");
        let p = src.problems();
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("a.yaml: line"), "{}", p[0]);

        std::fs::write(&a, ns("x", "2")).unwrap();
        let c = src.scan();
        assert!(matches!(&c[..], [Change::Upsert(_)]), "{c:?}");
        assert!(src.problems().is_empty());

        std::fs::remove_file(&a).unwrap();
        let c = src.scan();
        assert!(
            matches!(&c[..], [Change::Delete(k)] if k.name == "x"),
            "{c:?}"
        );
    }
}
