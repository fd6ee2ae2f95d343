//! Installing the plugin on a node, as the DaemonSet's init container does
//! (`palisade-cni install`): the binary is copied into the CNI bin
//! directory, and our entry is appended to the `plugins` list of the
//! node's CNI configuration — the first `*.conf`/`*.conflist`/`*.json` file
//! of the configuration directory in name order, which is the one
//! container runtimes use; it must be a plugin list (`.conflist`). Re-running replaces our entry (idempotent);
//! `--uninstall` removes it. Files are written beside their target and
//! renamed over it, so a runtime never reads half a file.
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
//!   {"type": "calico", "...": "..."},
//!   {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}},
//!   {"type": "palisade-cni", "agentSocket": "/run/palisade/agent.sock", "agentTimeoutMs": 10000}]}
//! ```

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Our plugin's `type` (and binary name).
pub const PLUGIN_TYPE: &str = "palisade-cni";

/// What to install where.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// The CNI binary directory (`/opt/cni/bin` on the host).
    pub bin_dir: PathBuf,
    /// The CNI configuration directory (`/etc/cni/net.d` on the host).
    pub conf_dir: PathBuf,
    /// `agentSocket` of our entry.
    pub agent_socket: String,
    /// `agentTimeoutMs` of our entry.
    pub agent_timeout_ms: u64,
    /// Remove our entry instead (the binary stays: pods being deleted may
    /// still call it).
    pub uninstall: bool,
}

/// Installing failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file or directory could not be read or written.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No CNI configuration yet (the primary CNI writes it).
    #[error(
        "{0}: no *.conf, *.conflist or *.json CNI configuration (is the primary CNI installed?)"
    )]
    NoConfig(PathBuf),
    /// The configuration cannot take a chained plugin.
    #[error("{path}: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Our entry in the plugin list.
pub fn entry(agent_socket: &str, agent_timeout_ms: u64) -> Value {
    json!({"type": PLUGIN_TYPE, "agentSocket": agent_socket, "agentTimeoutMs": agent_timeout_ms})
}

fn is_ours(p: &Value) -> bool {
    p.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

/// Adds `ours` at the end of `conf`'s plugin list, or replaces an entry of
/// ours already there (in place); the result is unchanged when already
/// installed.
pub fn patch(conf: &Value, ours: &Value) -> Result<Value, String> {
    let Value::Object(m) = conf else {
        return Err("not a JSON object".into());
    };
    let mut out = m.clone();
    let plugins = match m.get("plugins") {
        Some(Value::Array(p)) => p.clone(),
        Some(_) => return Err("`plugins` is not a list".into()),
        // Runtimes read a `.conf` as one plugin (a list there is not
        // loaded), so a single-plugin configuration cannot be chained
        // in place.
        None => {
            return Err(
                "a single-plugin configuration (no `plugins` list): write it as a .conflist to chain palisade-cni"
                    .into(),
            );
        }
    };
    if plugins.first().is_some_and(is_ours) || plugins.is_empty() {
        return Err(format!(
            "{PLUGIN_TYPE} cannot come first: it chains after the plugin that creates the pod's interface"
        ));
    }
    let mut plugins = plugins;
    match plugins.iter().position(is_ours) {
        Some(i) => plugins[i] = ours.clone(),
        None => plugins.push(ours.clone()),
    }
    out.insert("plugins".into(), Value::Array(plugins));
    Ok(Value::Object(out))
}

/// Removes our entries from `conf`'s plugin list.
pub fn unpatch(conf: &Value) -> Value {
    let mut out = conf.clone();
    if let Some(Value::Array(p)) = out.get_mut("plugins") {
        p.retain(|e| !is_ours(e));
    }
    out
}

/// The configuration file runtimes use: the first by name.
pub fn primary_config(conf_dir: &Path) -> Result<PathBuf, InstallError> {
    let rd = std::fs::read_dir(conf_dir).map_err(|source| InstallError::Io {
        path: conf_dir.into(),
        what: "read directory",
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| ["conf", "conflist", "json"].contains(&e))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .ok_or_else(|| InstallError::NoConfig(conf_dir.into()))
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io = |what| {
        move |source| InstallError::Io {
            path: path.into(),
            what,
            source,
        }
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.palisade-tmp"));
    std::fs::write(&tmp, bytes).map_err(io("write temporary file"))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))?;
    std::fs::rename(&tmp, path).map_err(io("rename into place"))
}

/// What [`install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The binary written (None on uninstall).
    pub binary: Option<PathBuf>,
    /// The configuration file patched.
    pub config: PathBuf,
    /// Whether that file changed.
    pub changed: bool,
}

/// Copies `binary` into the bin directory and patches the primary
/// configuration (or, with `uninstall`, only unpatches it).
pub fn install(opts: &InstallOptions, binary: &Path) -> Result<Installed, InstallError> {
    let installed_bin = if opts.uninstall {
        None
    } else {
        let bytes = std::fs::read(binary).map_err(|source| InstallError::Io {
            path: binary.into(),
            what: "read",
            source,
        })?;
        let target = opts.bin_dir.join(PLUGIN_TYPE);
        write_atomic(&target, &bytes, 0o755)?;
        Some(target)
    };
    let path = primary_config(&opts.conf_dir)?;
    let text = std::fs::read(&path).map_err(|source| InstallError::Io {
        path: path.clone(),
        what: "read",
        source,
    })?;
    let conf: Value = serde_json::from_slice(&text).map_err(|e| InstallError::Unusable {
        path: path.clone(),
        reason: format!("not JSON: {e}"),
    })?;
    let new = if opts.uninstall {
        unpatch(&conf)
    } else {
        patch(&conf, &entry(&opts.agent_socket, opts.agent_timeout_ms)).map_err(|reason| {
            InstallError::Unusable {
                path: path.clone(),
                reason,
            }
        })?
    };
    let changed = new != conf;
    if changed {
        let mut bytes = serde_json::to_vec_pretty(&new).expect("serializes");
        bytes.push(b'\n');
        write_atomic(&path, &bytes, 0o644)?;
    }
    Ok(Installed {
        binary: installed_bin,
        config: path,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_once_and_replaces_in_place() {
        let calico = json!({"cniVersion": "0.3.1", "name": "k8s-pod-network", "plugins": [
            {"type": "calico", "ipam": {"type": "calico-ipam"}},
            {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}]});
        let ours = entry("/run/palisade/agent.sock", 10_000);
        let once = patch(&calico, &ours).unwrap();
        assert_eq!(once["plugins"].as_array().unwrap().len(), 3);
        assert_eq!(once["plugins"][2], ours);
        assert_eq!(once["plugins"][0], calico["plugins"][0]);
        assert_eq!(patch(&once, &ours).unwrap(), once);
        let slower = entry("/run/palisade/agent.sock", 20_000);
        let again = patch(&once, &slower).unwrap();
        assert_eq!(again["plugins"].as_array().unwrap().len(), 3);
        assert_eq!(again["plugins"][2]["agentTimeoutMs"], 20_000);
        assert_eq!(unpatch(&again), calico);
    }

    #[test]
    fn unusable_configs() {
        let ptp = json!({"cniVersion": "1.0.0", "name": "net", "type": "ptp"});
        let e = patch(&ptp, &entry("/s", 1)).unwrap_err();
        assert!(e.contains("single-plugin"), "{e}");
        assert!(patch(&json!({"plugins": []}), &entry("/s", 1)).is_err());
        assert!(patch(&json!({"plugins": {}}), &entry("/s", 1)).is_err());
        assert!(patch(&json!([1]), &entry("/s", 1)).is_err());
    }

    #[test]
    fn installs_into_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let (bin, conf) = (tmp.path().join("bin"), tmp.path().join("net.d"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        let src = tmp.path().join("palisade-cni-src");
        std::fs::write(&src, b"#!binary").unwrap();
        let opts = InstallOptions {
            bin_dir: bin.clone(),
            conf_dir: conf.clone(),
            agent_socket: "/run/palisade/agent.sock".into(),
            agent_timeout_ms: 10_000,
            uninstall: false,
        };
        assert!(matches!(
            install(&opts, &src),
            Err(InstallError::NoConfig(_))
        ));
        let primary = json!({"cniVersion": "1.0.0", "name": "k", "plugins": [{"type": "ptp"}]});
        std::fs::write(conf.join("10-k.conflist"), primary.to_string()).unwrap();
        std::fs::write(conf.join("99-other.conflist"), "{}").unwrap();
        let r = install(&opts, &src).unwrap();
        assert!(r.changed);
        assert_eq!(r.config, conf.join("10-k.conflist"));
        assert_eq!(std::fs::read(bin.join(PLUGIN_TYPE)).unwrap(), b"#!binary");
        let written: Value =
            serde_json::from_slice(&std::fs::read(conf.join("10-k.conflist")).unwrap()).unwrap();
        assert_eq!(written["plugins"][1]["type"], PLUGIN_TYPE);
        assert!(!install(&opts, &src).unwrap().changed);
        assert_eq!(
            std::fs::read_to_string(conf.join("99-other.conflist")).unwrap(),
            "{}"
        );
        let un = install(
            &InstallOptions {
                uninstall: true,
                ..opts
            },
            &src,
        )
        .unwrap();
        assert!(un.changed);
        let back: Value =
            serde_json::from_slice(&std::fs::read(conf.join("10-k.conflist")).unwrap()).unwrap();
        assert_eq!(back, primary);
        let leftovers: Vec<_> = std::fs::read_dir(&conf)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("palisade-tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
