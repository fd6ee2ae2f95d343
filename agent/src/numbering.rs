//! The record of the compiler's numbering in the state directory
//! (`<state-dir>/allocations.json`): every number the maps can hold, with
//! its meaning (`palisade_compiler::Meaning`), and the agent's policy
//! revision. The numbers are the compiler's own; nothing translates them.
//!
//! The record is written *before* a commit's writes reach the maps (so
//! every number the maps can hold has a recorded meaning, also after a
//! crash part way), atomically (temporary file, fsync, rename). A restarted
//! agent gives it back to the compiler before its first compile
//! (`Compiler::remember_numbering`), so unchanged objects get their old
//! numbers and the first reconcile compares states that agree on every
//! number's meaning; numbers the maps hold that the record does not name
//! are reserved (`Compiler::reserve_numbers`) until the maps no longer
//! hold them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use palisade_compiler::{Compiler, Meaning};
use serde::{Deserialize, Serialize};

/// Reading or writing the record failed.
#[derive(Debug, thiserror::Error)]
#[error("allocation table {path}: {message}")]
pub struct NumberingError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: u32,
    meaning: Meaning,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    revision: u64,
    entries: Vec<Entry>,
}

const FILE_VERSION: u32 = 1;

/// The record as last written, and the compiler's numbering as last read.
#[derive(Debug, Default)]
pub struct NumberRecord {
    /// The agent's policy revision, recorded with the numbers.
    pub revision: u64,
    /// The compiler's numbering, read at its generation.
    numbering: Option<(u64, Vec<(Meaning, u32)>)>,
    /// (revision, numbering generation) the file holds (`None`: not
    /// written by this process yet).
    written: Option<(u64, u64)>,
    /// The entries as JSON, at the numbering generation they were
    /// serialised at (a commit that only moves the revision reuses them).
    entries_json: Option<(u64, Vec<u8>)>,
}

impl NumberRecord {
    /// Path of the record in a state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("allocations.json")
    }

    /// Loads the record (an absent file is an empty one): the revision,
    /// and the numbers with their meanings.
    pub fn load(path: &Path) -> Result<(Self, Vec<(Meaning, u32)>), NumberingError> {
        let err = |message: String| NumberingError {
            path: path.to_path_buf(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((NumberRecord::default(), Vec::new()));
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let f: File = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if f.version != FILE_VERSION {
            return Err(err(format!("unsupported version {}", f.version)));
        }
        let entries = f.entries.into_iter().map(|e| (e.meaning, e.id)).collect();
        Ok((
            NumberRecord {
                revision: f.revision,
                ..Default::default()
            },
            entries,
        ))
    }

    /// The compiler's numbering, read again only when it may have changed
    /// (it is every identity's labels: rebuilding it per commit would cost
    /// more than the commit).
    pub fn numbering(&mut self, compiler: &Compiler) -> &[(Meaning, u32)] {
        let generation = compiler.numbering_generation();
        if self
            .numbering
            .as_ref()
            .is_none_or(|(g, _)| *g != generation)
        {
            self.numbering = Some((generation, compiler.numbering()));
        }
        &self.numbering.as_ref().expect("just read").1
    }

    /// Writes the revision and the compiler's numbering unless the file
    /// already holds exactly these.
    ///
    /// The record is replaced atomically (temporary file, rename), and
    /// synced to disk only when the numbering changed: a commit that only
    /// moves the revision (most commits reuse every number) writes the
    /// same entries again without waiting for the disk. The revision is
    /// not what the write-ahead rule protects (it only keeps `status` and
    /// `sync` answers growing across restarts).
    pub fn save(&mut self, path: &Path, compiler: &Compiler) -> Result<(), NumberingError> {
        let generation = compiler.numbering_generation();
        if self.written == Some((self.revision, generation)) {
            return Ok(());
        }
        let revision = self.revision;
        let err = |message: String| NumberingError {
            path: path.to_path_buf(),
            message,
        };
        let numbering_changed = self.written.is_none_or(|(_, g)| g != generation);
        if self
            .entries_json
            .as_ref()
            .is_none_or(|(g, _)| *g != generation)
        {
            let entries: Vec<Entry> = self
                .numbering(compiler)
                .iter()
                .map(|(meaning, id)| Entry {
                    id: *id,
                    meaning: meaning.clone(),
                })
                .collect();
            let json = serde_json::to_vec(&entries).map_err(|e| err(e.to_string()))?;
            self.entries_json = Some((generation, json));
        }
        let entries = &self.entries_json.as_ref().expect("just set").1;
        // The same document `File` reads back.
        let mut text =
            format!(r#"{{"version":{FILE_VERSION},"revision":{revision},"entries":"#).into_bytes();
        text.extend_from_slice(entries);
        text.push(b'}');
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        file.write_all(&text)
            .and_then(|()| {
                if numbering_changed {
                    file.sync_all()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        self.written = Some((revision, generation));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_what_was_written() {
        let dir = std::env::temp_dir().join(format!("palisade-numbering-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = NumberRecord::path(&dir);
        let numbers = vec![
            (
                Meaning::Cidr {
                    prefix: "10.0.0.0/8".into(),
                },
                1 << 24,
            ),
            (
                Meaning::Endpoint {
                    namespace: "prod".into(),
                    name: "web".into(),
                    uid: "u1".into(),
                },
                3,
            ),
        ];
        let mut c = Compiler::new("n1");
        c.remember_numbering(numbers.clone());
        let mut r = NumberRecord {
            revision: 7,
            ..Default::default()
        };
        r.save(&path, &c).unwrap();
        let (back, entries) = NumberRecord::load(&path).unwrap();
        assert_eq!((back.revision, entries), (7, numbers.clone()));
        // A commit that only moves the revision: the cached entries are
        // written again with the new revision.
        r.revision = 8;
        r.save(&path, &c).unwrap();
        let (back, entries) = NumberRecord::load(&path).unwrap();
        assert_eq!((back.revision, entries), (8, numbers.clone()));
        // A new number: the entries are serialised again.
        c.remember_numbering([(
            Meaning::Cidr {
                prefix: "192.0.2.0/24".into(),
            },
            (1 << 24) + 1,
        )]);
        r.revision = 9;
        r.save(&path, &c).unwrap();
        let (back, entries) = NumberRecord::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.revision, 9);
        assert_eq!(entries.len(), numbers.len() + 1, "{entries:?}");
    }
}
