//! `palisade diff`: the connections a change of manifests opens and
//! closes, offline (no agent, no root). The comparison lives in
//! `palisade_analysis::diff`; this loads both sides with the loader
//! `explain` and `graph` use.

use std::path::{Path, PathBuf};

use palisade_analysis::diff::{DiffReport, diff};
use palisade_analysis::graph::ScopeError;

use crate::explain::{LoadError, load_files, manifest_files};

/// The new side.
#[derive(Clone, Debug)]
pub enum After {
    /// Every manifest of a directory.
    Dir(PathBuf),
    /// The old directory with these files changed: a file replaces the
    /// old one of the same name, or is added.
    Changed(Vec<PathBuf>),
}

/// `palisade diff` failed.
#[derive(Debug, thiserror::Error)]
pub enum DiffRunError {
    /// Loading manifests failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The comparison failed.
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

fn after_files(before: &[PathBuf], changed: &[PathBuf]) -> Vec<PathBuf> {
    let name = |p: &Path| p.file_name().map(|n| n.to_os_string());
    let mut out: Vec<PathBuf> = before
        .iter()
        .filter(|b| !changed.iter().any(|c| name(c) == name(b)))
        .cloned()
        .collect();
    out.extend(changed.iter().cloned());
    out
}

/// Compares the manifests of `before` with `after`; warnings (files
/// skipped, kinds not enforced) are returned beside, per side.
pub fn run(before: &Path, after: &After) -> Result<(DiffReport, Vec<String>), DiffRunError> {
    let old = manifest_files(before)?;
    let new = match after {
        After::Dir(d) => manifest_files(d)?,
        After::Changed(files) => after_files(&old, files),
    };
    let (cb, _, wb) = load_files(&old)?;
    let (ca, raw, wa) = load_files(&new)?;
    let report = diff(&cb, &ca, &raw)?;
    let warnings = wb
        .into_iter()
        .map(|w| format!("before: {w}"))
        .chain(wa.into_iter().map(|w| format!("after: {w}")))
        .collect();
    Ok((report, warnings))
}
