//! The manifests source: every `*.yaml`/`*.yml` file of one directory
//! (not recursive; names starting with `.` are skipped), watched with
//! `notify` and debounced. A file that fails to parse is reported and the
//! previous content of that file stays in force; a deleted file's objects
//! are deleted. When two files define the same object, the one in the file
//! whose name sorts last wins (within a file, the last document wins).
//!
//! Scans are incremental: each file's metadata (device, inode, size,
//! mtime and ctime to the nanosecond) and a hash of its content are kept
//! with its parsed objects. A scan stats every file and reads only those
//! whose metadata changed, or whose mtime is too recent to rule out a
//! same-tick rewrite (then the content hash decides); it parses only the
//! documents of those files whose text changed, and reports only the
//! objects that were added, changed or removed. No file text is kept after
//! parsing.

use std::collections::BTreeMap;
use std::hash::{Hash as _, Hasher as _};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::yaml::{Documents, ManifestError, parse_manifest_reusing};
use super::{Change, Object, ObjectKey, SourceHandle, SourceProblem, SourceUpdate};

/// Quiet time after a file event before the directory is rescanned.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest a burst of events can delay a rescan.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// A file whose mtime is within this of the time it was read may be
/// rewritten without its metadata changing (coarse timestamps): its
/// content is hashed again on the next scans until it is older.
const RACY: Duration = Duration::from_secs(2);

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileMeta {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileMeta {
    fn of(m: &std::fs::Metadata) -> Self {
        FileMeta {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// What was last read of a file.
#[derive(Debug)]
struct Seen {
    meta: FileMeta,
    hash: u64,
    /// The mtime was too close to the read to trust the metadata alone.
    racy: bool,
}

impl Seen {
    /// Whether the file must be read again.
    fn stale(&self, meta: &FileMeta) -> bool {
        self.racy || self.meta != *meta
    }
}

/// A file's last good content.
#[derive(Debug)]
struct FileState {
    /// What was read (the good content, or a later one that failed).
    seen: Seen,
    /// Objects of the last content that parsed (the last document wins).
    objects: BTreeMap<ObjectKey, Object>,
    /// The documents of that content (reused by the next parse).
    documents: Documents,
}

/// The directory's state as last read.
#[derive(Debug, Default)]
pub struct ManifestDir {
    dir: PathBuf,
    /// Last good content of each file.
    files: BTreeMap<Arc<Path>, FileState>,
    /// Files whose current content does not parse.
    errors: BTreeMap<PathBuf, ManifestError>,
    /// Which files define each object, sorted (the last one wins); the
    /// paths are those of `files`, shared.
    owners: BTreeMap<ObjectKey, Vec<Arc<Path>>>,
    /// Files parsed so far (for tests).
    parses: u64,
}

fn is_manifest(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

fn content_hash(text: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Reads a file with the metadata of the handle read from.
fn read(path: &Path) -> std::io::Result<(FileMeta, Vec<u8>, bool)> {
    let now = SystemTime::now();
    let mut f = std::fs::File::open(path)?;
    let m = f.metadata()?;
    let racy = m
        .modified()
        .map(|t| !matches!(now.duration_since(t), Ok(d) if d >= RACY))
        .unwrap_or(true);
    let mut buf = Vec::with_capacity(m.len() as usize + 1);
    f.read_to_end(&mut buf)?;
    Ok((FileMeta::of(&m), buf, racy))
}

/// A file's new state found by a scan.
enum Update {
    /// New objects and documents (the file parses).
    Parsed(BTreeMap<ObjectKey, Object>, Documents),
    /// The file is gone.
    Removed,
}

impl ManifestDir {
    /// A source for `dir` (nothing read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManifestDir {
            dir: dir.into(),
            ..Default::default()
        }
    }

    /// The object currently in force for `key`, if any.
    fn winner(&self, key: &ObjectKey) -> Option<&Object> {
        let path = self.owners.get(key)?.last()?;
        self.files.get(&**path)?.objects.get(key)
    }

    /// Re-reads what changed in the directory; returns the changes since
    /// the last scan.
    pub fn scan(&mut self) -> Vec<Change> {
        let mut present = BTreeMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let p = e.path();
                    if !is_manifest(&p) {
                        continue;
                    }
                    // Follows symlinks, as reading does.
                    if let Ok(m) = std::fs::metadata(&p)
                        && m.is_file()
                    {
                        present.insert(p, FileMeta::of(&m));
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
        let mut updates: Vec<(PathBuf, Update)> = Vec::new();
        for p in self.files.keys() {
            if !present.contains_key(&**p) {
                updates.push((p.to_path_buf(), Update::Removed));
            }
        }
        self.errors.retain(|p, _| present.contains_key(p));
        for (path, meta) in &present {
            let state = self.files.get_mut(path.as_path());
            if let Some(s) = &state
                && !s.seen.stale(meta)
            {
                continue;
            }
            let (meta, text, racy) = match read(path) {
                Ok(r) => r,
                Err(e) => {
                    // Vanished between listing and reading (a rename in
                    // progress): the next event rescans.
                    debug!(file = %path.display(), error = %e, "unreadable manifest");
                    continue;
                }
            };
            let hash = content_hash(&text);
            let no_documents = Documents::new();
            let known = match state {
                Some(s) => {
                    let same = s.seen.hash == hash && s.seen.meta.size == meta.size;
                    s.seen = Seen { meta, hash, racy };
                    if same {
                        continue; // touched, or re-checked: same content
                    }
                    &s.documents
                }
                None => &no_documents,
            };
            let parsed = std::str::from_utf8(&text)
                .map_err(|e| ManifestError {
                    file: path.clone(),
                    document: 1,
                    object: None,
                    field: None,
                    line: 1,
                    message: format!("not UTF-8: {e}"),
                })
                .and_then(|t| {
                    self.parses += 1;
                    parse_manifest_reusing(path, t, known)
                });
            drop(text);
            match parsed {
                Ok((objs, documents)) => {
                    if self.errors.remove(path).is_some() {
                        info!(file = %path.display(), "manifest parses again");
                    }
                    let objects: BTreeMap<ObjectKey, Object> =
                        objs.into_iter().map(|o| (o.key(), o)).collect();
                    self.files
                        .entry(Arc::from(path.as_path()))
                        .or_insert_with(|| FileState {
                            seen: Seen { meta, hash, racy },
                            objects: BTreeMap::new(),
                            documents: Documents::new(),
                        });
                    updates.push((path.clone(), Update::Parsed(objects, documents)));
                }
                Err(e) => {
                    if self.errors.get(path) != Some(&e) {
                        warn!(file = %path.display(), document = e.document, line = e.line,
                              field = e.field.as_deref().unwrap_or(""), error = %e,
                              "manifest rejected; its previous content stays in force");
                    }
                    self.errors.insert(path.clone(), e);
                    // A new file that never parsed: remember what was read
                    // so that it is not parsed again until it changes.
                    self.files
                        .entry(Arc::from(path.as_path()))
                        .or_insert_with(|| FileState {
                            seen: Seen { meta, hash, racy },
                            objects: BTreeMap::new(),
                            documents: Documents::new(),
                        });
                }
            }
        }
        self.apply(updates)
    }

    /// Installs the files' new objects; returns the changes of the objects
    /// in force.
    fn apply(&mut self, updates: Vec<(PathBuf, Update)>) -> Vec<Change> {
        // The objects that may change, with what was in force before.
        let mut before: BTreeMap<ObjectKey, Option<Object>> = BTreeMap::new();
        for (path, u) in &updates {
            let old = self.files.get(path.as_path()).map(|s| &s.objects);
            let touch = |k: &ObjectKey, before: &mut BTreeMap<ObjectKey, Option<Object>>| {
                if !before.contains_key(k) {
                    before.insert(k.clone(), self.winner(k).cloned());
                }
            };
            if let Some(old) = old {
                for (k, o) in old {
                    let same = match u {
                        Update::Parsed(new, _) => new.get(k) == Some(o),
                        Update::Removed => false,
                    };
                    if !same {
                        touch(k, &mut before);
                    }
                }
            }
            if let Update::Parsed(new, _) = u {
                for (k, o) in new {
                    if old.and_then(|old| old.get(k)) != Some(o) {
                        touch(k, &mut before);
                    }
                }
            }
        }
        for (path, u) in updates {
            let path = path.as_path();
            let old = match u {
                Update::Removed => self.files.remove(path).map(|s| s.objects),
                Update::Parsed(new, documents) => self.files.get_mut(path).map(|s| {
                    s.documents = documents;
                    std::mem::replace(&mut s.objects, new)
                }),
            }
            .unwrap_or_default();
            for k in old.keys() {
                if let Some(files) = self.owners.get_mut(k) {
                    files.retain(|p| **p != *path);
                    if files.is_empty() {
                        self.owners.remove(k);
                    }
                }
            }
            if let Some((p, s)) = self.files.get_key_value(path) {
                for k in s.objects.keys() {
                    let files = self.owners.entry(k.clone()).or_default();
                    if let Err(i) = files.binary_search(p) {
                        files.insert(i, p.clone());
                    }
                }
            }
        }
        let mut changes = Vec::new();
        for (k, old) in before {
            match (old, self.winner(&k)) {
                (Some(_), None) => changes.push(Change::Delete(k)),
                (old, Some(new)) if old.as_ref() != Some(new) => {
                    changes.push(Change::Upsert(new.clone()))
                }
                _ => {}
            }
        }
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

/// Whether a `notify` event may mean a changed file (reads do not).
fn relevant(ev: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match ev.kind {
        EventKind::Access(k) => k == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

/// Starts watching `dir`; the first update (synced) carries the initial
/// scan. File events are debounced; a rescan request ends the wait, and
/// one scan answers every event and request queued before it.
pub fn spawn(dir: PathBuf) -> Result<SourceHandle, notify::Error> {
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|ev| relevant(&ev)) {
            let _ = fs_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let (tx, updates) = mpsc::channel(16);
    let (rescan, mut rescan_rx) = mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (unwatched) when the task ends
        let mut src = ManifestDir::new(dir);
        // Events of the initial scan's own time are covered by it.
        while fs_rx.try_recv().is_ok() {}
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
            let mut token = tokio::select! {
                ev = fs_rx.recv() => {
                    if ev.is_none() { return; }
                    // Debounce: wait for quiet, at most DEBOUNCE_MAX, or
                    // for a rescan request (its scan covers the events).
                    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
                    let mut token = None;
                    loop {
                        let quiet = deadline.min(tokio::time::Instant::now() + DEBOUNCE);
                        tokio::select! {
                            r = tokio::time::timeout_at(quiet, fs_rx.recv()) => match r {
                                Ok(Some(())) => continue,
                                Ok(None) => return,
                                Err(_) => break,
                            },
                            t = rescan_rx.recv() => match t {
                                Some(t) => { token = Some(t); break; }
                                None => return,
                            },
                        }
                    }
                    token
                }
                t = rescan_rx.recv() => match t { Some(t) => Some(t), None => return },
            };
            // Coalesce: whatever is queued now is covered by this scan
            // (tokens only grow; answering the largest answers all).
            while fs_rx.try_recv().is_ok() {}
            while let Ok(t) = rescan_rx.try_recv() {
                token = Some(token.map_or(t, |x| x.max(t)));
            }
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

    fn upserted(c: &[Change]) -> Vec<String> {
        c.iter()
            .map(|c| match c {
                Change::Upsert(o) => format!("+{}", o.key()),
                Change::Delete(k) => format!("-{k}"),
                Change::Replace { kind, .. } => format!("={kind}"),
            })
            .collect()
    }

    #[test]
    fn incremental_scan() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, ns("x", "1") + "---\n" + &ns("y", "1")).unwrap();
        std::fs::write(&b, ns("z", "1")).unwrap();
        let mut src = ManifestDir::new(dir.path());
        assert_eq!(src.scan().len(), 3);
        assert_eq!(src.parses, 2);

        // Unchanged files are not parsed again (recent ones are hashed).
        assert!(src.scan().is_empty());
        assert_eq!(src.parses, 2);

        // Replaced by rename, same size, within the same second: only the
        // changed object is reported.
        let tmp = dir.path().join(".a.yaml.tmp");
        std::fs::write(&tmp, ns("x", "2") + "---\n" + &ns("y", "1")).unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert_eq!(upserted(&src.scan()), ["+Namespace x"]);
        assert_eq!(src.parses, 3);

        // Rewritten in place, same size, right away.
        std::fs::write(&a, ns("x", "3") + "---\n" + &ns("y", "1")).unwrap();
        assert_eq!(upserted(&src.scan()), ["+Namespace x"]);

        // A parse error keeps the file's previous objects, and is not
        // parsed again while unchanged.
        std::fs::write(&a, "kind: Namespace\nmetadata: [\n").unwrap();
        assert!(src.scan().is_empty());
        assert_eq!(src.problems().len(), 1);
        let n = src.parses;
        assert!(src.scan().is_empty());
        assert_eq!(src.parses, n);
        assert_eq!(src.problems().len(), 1);

        // b.yaml sorts last: its version of y wins, and a's comes back
        // when b drops it.
        std::fs::write(&b, ns("z", "1") + "---\n" + &ns("y", "9")).unwrap();
        assert_eq!(upserted(&src.scan()), ["+Namespace y"]);
        match src.winner(&Object::key(&ns_obj("y"))) {
            Some(Object::Namespace(n)) => {
                assert_eq!(n.metadata.labels.as_ref().unwrap()["team"], "9".to_string())
            }
            o => panic!("{o:?}"),
        }
        std::fs::write(&b, ns("z", "1")).unwrap();
        assert_eq!(upserted(&src.scan()), ["+Namespace y"]);

        // A deleted file removes its objects (a's last good content).
        std::fs::remove_file(&a).unwrap();
        assert_eq!(upserted(&src.scan()), ["-Namespace x", "-Namespace y"]);
        assert!(src.problems().is_empty());
        assert!(src.scan().is_empty());
    }

    fn ns_obj(name: &str) -> Object {
        let mut n = k8s_openapi::api::core::v1::Namespace::default();
        n.metadata.name = Some(name.into());
        Object::Namespace(std::sync::Arc::new(n))
    }
}
