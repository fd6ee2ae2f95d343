//! The manifests source: every `*.yaml`/`*.yml` file of one directory
//! (not recursive; names starting with `.` are skipped), watched with
//! `notify`. A file that fails to parse is reported and the previous
//! content of that file stays in force; a deleted file's objects are
//! deleted. When two files define the same object, the one in the file
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
//!
//! When to scan after file events: a file being written must not be read
//! half-written (an editor's truncate-then-write save, a slow copy), and
//! a file renamed away must not read as deleted when it is about to be
//! replaced (editors that keep a backup rename the old file, then write a
//! new one). So the watcher follows writers: data written to a manifest
//! holds the scan until the writer closes the file; a manifest that
//! disappears holds it for [`VANISHED`] unless it comes back. Otherwise a
//! scan follows the last event after [`QUIET`] (one scan for a burst,
//! such as several files written by one tool). Nothing holds a scan for
//! longer than [`SETTLE_MAX`] after the first event (a writer that keeps
//! its file open is then read as it is, and read again when it closes),
//! and a rescan request (`palisade sync`) scans at once. A rename into
//! place, the atomic way to replace a file, is read after [`QUIET`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::yaml::{Documents, ManifestError, parse_manifest_reusing};
use super::{Change, Object, ObjectKey, SourceHandle, SourceProblem, SourceUpdate};

/// Quiet time after the last file event before the directory is scanned
/// (when no writer holds it).
const QUIET: Duration = Duration::from_millis(20);
/// How long a manifest that disappeared (deleted, renamed away) holds the
/// scan, waiting for it to come back.
const VANISHED: Duration = Duration::from_millis(100);
/// Longest file events can delay a scan.
const SETTLE_MAX: Duration = Duration::from_secs(1);
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
                stale: false,
                origin: e.file.display().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

/// What a file event means for the next scan.
#[derive(Debug, PartialEq, Eq)]
enum FsEvent {
    /// Data written to a manifest (or it was truncated): a writer has it
    /// open.
    Writing(PathBuf),
    /// A writer closed a manifest.
    Closed(PathBuf),
    /// A manifest's name went away (deleted, renamed away).
    Vanished(PathBuf),
    /// A manifest's name appeared (created, renamed into place).
    Appeared(PathBuf),
    /// Anything else that may change what a scan reads (other names,
    /// metadata, symlink swaps).
    Other,
    /// Events were lost (queue overflow): what writers do is unknown.
    Lost,
}

/// Classifies a `notify` event; nothing for events that cannot change
/// what a scan reads (opens and reads, the scan's own among them).
fn classify(ev: notify::Event) -> Vec<FsEvent> {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    if ev.need_rescan() {
        return vec![FsEvent::Lost];
    }
    let per_path = |f: fn(PathBuf) -> FsEvent| -> Vec<FsEvent> {
        let mut out: Vec<FsEvent> = ev
            .paths
            .iter()
            .filter(|p| is_manifest(p))
            .map(|p| f(p.clone()))
            .collect();
        if out.len() < ev.paths.len() || out.is_empty() {
            out.push(FsEvent::Other);
        }
        out
    };
    match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => per_path(FsEvent::Closed),
        EventKind::Access(_) => Vec::new(),
        EventKind::Modify(ModifyKind::Data(_)) => per_path(FsEvent::Writing),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
            per_path(FsEvent::Vanished)
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) | EventKind::Create(_) => {
            per_path(FsEvent::Appeared)
        }
        // `Both` follows its `From` and `To`.
        _ => vec![FsEvent::Other],
    }
}

/// Events waiting for a scan, and what holds it.
struct Settle {
    /// Manifests with a writer (data written, not closed yet).
    writing: HashSet<PathBuf>,
    /// Manifests that disappeared, until when they hold the scan.
    vanished: HashMap<PathBuf, Instant>,
    /// The end of the quiet time after the last event.
    quiet_until: Instant,
    /// The latest a scan may wait for.
    limit: Instant,
}

impl Settle {
    fn new(now: Instant) -> Self {
        Settle {
            writing: HashSet::new(),
            vanished: HashMap::new(),
            quiet_until: now,
            limit: now + SETTLE_MAX,
        }
    }

    fn note(&mut self, ev: FsEvent, now: Instant) {
        match ev {
            FsEvent::Writing(p) => {
                self.vanished.remove(&p);
                self.writing.insert(p);
            }
            FsEvent::Closed(p) | FsEvent::Appeared(p) => {
                self.vanished.remove(&p);
                // A name that appears is a new file: if a writer had the
                // old one open, it no longer writes to this name.
                self.writing.remove(&p);
            }
            FsEvent::Vanished(p) => {
                self.writing.remove(&p);
                self.vanished.insert(p, now + VANISHED);
            }
            FsEvent::Other => {}
            FsEvent::Lost => {
                self.writing.clear();
                self.vanished.clear();
            }
        }
        self.quiet_until = now + QUIET;
    }

    /// When the scan may run.
    fn ready_at(&self) -> Instant {
        if !self.writing.is_empty() {
            return self.limit;
        }
        let held = self.vanished.values().copied().max();
        self.quiet_until
            .max(held.unwrap_or(self.quiet_until))
            .min(self.limit)
    }
}

/// Starts watching `dir`; the first update (synced) carries the initial
/// scan. File events are followed as the module documentation says; a
/// rescan request scans at once, and one scan answers every event and
/// request queued before it.
pub fn spawn(dir: PathBuf) -> Result<SourceHandle, notify::Error> {
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<FsEvent>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        for e in classify(ev) {
            let _ = fs_tx.send(e);
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
        let mut settle: Option<Settle> = None;
        let mut token: Option<u64> = None;
        loop {
            let wake = settle.as_ref().map(Settle::ready_at);
            tokio::select! {
                ev = fs_rx.recv() => {
                    let Some(ev) = ev else { return };
                    let now = Instant::now();
                    settle.get_or_insert_with(|| Settle::new(now)).note(ev, now);
                    continue;
                }
                t = rescan_rx.recv() => match t {
                    Some(t) => token = Some(token.map_or(t, |x| x.max(t))),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
            // Whatever is queued now is covered by this scan, unless it
            // holds it (a writer just started): then wait for that too.
            // Tokens only grow; answering the largest answers all.
            let now = Instant::now();
            while let Ok(ev) = fs_rx.try_recv() {
                settle.get_or_insert_with(|| Settle::new(now)).note(ev, now);
            }
            while let Ok(t) = rescan_rx.try_recv() {
                token = Some(token.map_or(t, |x| x.max(t)));
            }
            if token.is_none() && settle.as_ref().is_some_and(|s| s.ready_at() > now) {
                continue;
            }
            settle = None;
            let t = std::time::Instant::now();
            let changes = src.scan();
            debug!(target: "palisade::round", scan_us = t.elapsed().as_micros() as u64,
                   changes = changes.len(), "manifests scanned");
            let update = SourceUpdate {
                changes,
                synced: true,
                token: token.take(),
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

    async fn recv(h: &mut SourceHandle) -> SourceUpdate {
        tokio::time::timeout(Duration::from_secs(10), h.updates.recv())
            .await
            .expect("an update")
            .expect("source alive")
    }

    fn two(team_x: &str) -> String {
        ns("x", team_x) + "---\n" + &ns("y", "1")
    }

    /// A watched directory whose `a.yaml` holds namespaces x and y, after
    /// the watcher reported them.
    async fn watching_two_namespaces() -> (tempfile::TempDir, PathBuf, SourceHandle) {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, two("1")).unwrap();
        let mut h = spawn(dir.path().to_path_buf()).unwrap();
        assert_eq!(recv(&mut h).await.changes.len(), 2);
        (dir, a, h)
    }

    #[tokio::test]
    async fn a_file_being_written_is_read_once_closed() {
        use std::io::Write as _;
        let (_dir, a, mut h) = watching_two_namespaces().await;

        // Truncated, then written in two parts with a pause far longer
        // than the quiet time: the first part alone parses (one document),
        // and reading it would delete y until the rest is written.
        let mut f = std::fs::File::create(&a).unwrap();
        f.write_all((ns("x", "2") + "---\n").as_bytes()).unwrap();
        tokio::time::sleep(QUIET * 10).await;
        assert!(h.updates.try_recv().is_err(), "read while being written");
        f.write_all(ns("y", "1").as_bytes()).unwrap();
        drop(f);
        let u = recv(&mut h).await;
        assert_eq!(upserted(&u.changes), ["+Namespace x"]);

        // A writer that keeps the file open is read after SETTLE_MAX (and
        // again when it closes).
        let t0 = Instant::now();
        let mut f = std::fs::File::create(&a).unwrap();
        f.write_all(two("3").as_bytes()).unwrap();
        let u = recv(&mut h).await;
        assert!(t0.elapsed() >= SETTLE_MAX / 2, "{:?}", t0.elapsed());
        assert_eq!(upserted(&u.changes), ["+Namespace x"]);
        drop(f);
        assert!(recv(&mut h).await.changes.is_empty());
    }

    #[tokio::test]
    async fn replaced_files_are_not_read_as_deleted() {
        let (dir, a, mut h) = watching_two_namespaces().await;

        // Written beside, renamed into place: read after the quiet time.
        let tmp = dir.path().join(".a.yaml.tmp");
        std::fs::write(&tmp, two("2")).unwrap();
        let t0 = Instant::now();
        std::fs::rename(&tmp, &a).unwrap();
        let u = recv(&mut h).await;
        assert_eq!(upserted(&u.changes), ["+Namespace x"]);
        assert!(t0.elapsed() < SETTLE_MAX, "{:?}", t0.elapsed());

        // Saved the way editors that keep a backup do: the old file renamed
        // away, a new one written under the name. Never a deletion.
        std::fs::rename(&a, dir.path().join("a.yaml~")).unwrap();
        std::fs::write(&a, two("3")).unwrap();
        let u = recv(&mut h).await;
        assert_eq!(upserted(&u.changes), ["+Namespace x"]);

        // Deleted for good: its objects are.
        std::fs::remove_file(&a).unwrap();
        let u = recv(&mut h).await;
        assert_eq!(upserted(&u.changes), ["-Namespace x", "-Namespace y"]);
    }

    #[test]
    fn settle_holds_for_writers_and_vanished_names() {
        let t = Instant::now();
        let a = PathBuf::from("/m/a.yaml");
        let mut s = Settle::new(t);
        s.note(FsEvent::Other, t);
        assert_eq!(s.ready_at(), t + QUIET);
        s.note(FsEvent::Writing(a.clone()), t);
        assert_eq!(s.ready_at(), t + SETTLE_MAX);
        s.note(FsEvent::Closed(a.clone()), t);
        assert_eq!(s.ready_at(), t + QUIET);
        s.note(FsEvent::Vanished(a.clone()), t);
        assert_eq!(s.ready_at(), t + VANISHED);
        s.note(FsEvent::Appeared(a.clone()), t);
        assert_eq!(s.ready_at(), t + QUIET);
        // Never past the limit, however busy.
        let late = t + SETTLE_MAX * 2;
        s.note(FsEvent::Other, late);
        assert_eq!(s.ready_at(), t + SETTLE_MAX);
    }

    fn ns_obj(name: &str) -> Object {
        let mut n = k8s_openapi::api::core::v1::Namespace::default();
        n.metadata.name = Some(name.into());
        Object::Namespace(std::sync::Arc::new(n))
    }
}
