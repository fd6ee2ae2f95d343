//! Offline input: manifest files fed to a fresh compiler, no agent, no
//! root. The node name is irrelevant to `explain` (it judges every pod).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_compiler::{Compiler, PolicyName};

use crate::source::yaml::{ManifestError, parse_manifest};
use crate::source::{Object, PodInfo};

/// Manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file does not parse.
    #[error(transparent)]
    Parse(#[from] ManifestError),
    /// Nothing to read.
    #[error("no manifest files (*.yaml, *.yml) in {0}")]
    Empty(PathBuf),
}

/// The `*.yaml`/`*.yml` files of a directory, sorted.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && !n.starts_with('.') && (n.ends_with(".yaml") || n.ends_with(".yml"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::Empty(dir.to_path_buf()));
    }
    Ok(files)
}

/// The NetworkPolicies as written, by name.
pub type RawPolicies = BTreeMap<PolicyName, NetworkPolicy>;

/// A compiler fed with the files' objects (committed), the policies as
/// written, and warnings (files skipped, objects rejected).
pub fn load_files(files: &[PathBuf]) -> Result<(Compiler, RawPolicies, Vec<String>), LoadError> {
    let mut c = Compiler::new("");
    let mut raw = BTreeMap::new();
    let mut objects = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|source| LoadError::Read {
            path: f.clone(),
            source,
        })?;
        match parse_manifest(f, &text) {
            Ok(o) => objects.extend(o),
            // Not every YAML beside the manifests is one: say so, go on.
            Err(e) => warnings.push(format!("skipped: {e}")),
        }
    }
    // Namespaces first, then pods, then policies: the order does not change
    // the result, but rejections read better.
    objects.sort_by_key(|o| match o {
        Object::Namespace(_) => 0,
        Object::Pod(_) | Object::Node(_) => 1,
        Object::NetworkPolicy(_) | Object::ClusterNetworkPolicy(_) => 2,
        Object::Unenforced(_) => 3,
    });
    let mut placeholders = 0u32;
    for o in &objects {
        let r = match o {
            Object::Namespace(n) => c.apply_namespace(n),
            Object::Pod(p) if !p.has_ips() => {
                // Manifests as written have no status: give the pod
                // addresses of its own so it can be judged and matched.
                placeholders += 1;
                c.apply_pod(&with_placeholder(p, placeholders))
            }
            Object::Pod(p) => c.apply_pod(&p.to_pod()),
            Object::NetworkPolicy(np) => {
                raw.insert(
                    PolicyName::new(
                        np.metadata.namespace.clone().unwrap_or_default(),
                        np.metadata.name.clone().unwrap_or_default(),
                    ),
                    np.as_ref().clone(),
                );
                c.apply_policy(np)
            }
            Object::ClusterNetworkPolicy(cnp) => c.apply_cluster_policy(cnp),
            Object::Node(n) => c.apply_node(n),
            Object::Unenforced(u) => {
                warnings.push(format!("NOT ENFORCED by Palisade: {u}"));
                Ok(())
            }
        };
        if let Err(e) = r {
            warnings.push(format!("ignored (rejected): {e}"));
        }
    }
    if placeholders > 0 {
        warnings.push(format!(
            "{placeholders} pod(s) without status.podIPs judged with placeholder addresses (240.0.0.0/8, fd00:240::/32)"
        ));
    }
    c.commit();
    Ok((c, raw, warnings))
}

fn with_placeholder(p: &PodInfo, n: u32) -> k8s_openapi::api::core::v1::Pod {
    let mut p = p.clone();
    let v4 = std::net::Ipv4Addr::from(0xF000_0000u32 | n).to_string();
    let v6 = format!("fd00:240::{n:x}");
    p.set_ips([v4, v6]);
    p.to_pod()
}
