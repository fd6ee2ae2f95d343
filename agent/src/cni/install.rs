//! Installing the plugin on a node, as the DaemonSet's init container does
//! (`palisade-cni install`): the binary is copied into the CNI bin
//! directory, and our entry is appended to the `plugins` list of the
//! node's CNI configuration — the first `*.conf`/`*.conflist`/`*.json` file
//! of the configuration directory in name order, which is the one
//! container runtimes use; it must be a plugin list (`.conflist`). Re-running replaces our entry (idempotent);
//! `--uninstall` removes it. Files are written beside their target and
//! renamed over it, so a runtime never reads half a file.
//!
//! A primary CNI rewrites its configuration when its own agent restarts
//! or upgrades (Calico's and Cilium's installers write a fresh file),
//! dropping our entry: pods created after that would run unenforced.
//! [`watch`] (`palisade-cni install --watch`, run as a long-lived
//! container beside the agent, as Cilium's agent keeps its chained
//! configuration) watches the configuration directory and puts the entry
//! back after every change, with the same idempotent, atomic patch; each
//! repair is reported (logged by the command).
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
    let (config, changed) = patch_config(opts)?;
    Ok(Installed {
        binary: installed_bin,
        config,
        changed,
    })
}

/// Patches (or with `uninstall` unpatches) the primary configuration;
/// the file and whether it changed.
fn patch_config(opts: &InstallOptions) -> Result<(PathBuf, bool), InstallError> {
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
    Ok((path, changed))
}

/// How often [`watch`] checks the configuration even without a change
/// notice (a missed event, a directory replaced).
pub const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// Changes arriving this close together are handled in one pass (an
/// installer writing several files).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

/// Keeps our entry in the primary configuration until `stop` is set: a
/// pass at once, then one after every change in the configuration
/// directory (our own temporary files aside) and every
/// [`RECHECK_EVERY`]. Each pass is the idempotent [`install`] patch
/// (nothing written when the entry is there); `report` gets every pass
/// that changed the file or failed (no configuration yet, an unusable
/// one: retried on the next change).
pub fn watch(
    opts: &InstallOptions,
    stop: &std::sync::atomic::AtomicBool,
    report: &mut dyn FnMut(Result<PathBuf, InstallError>),
) -> Result<(), InstallError> {
    use notify::Watcher as _;
    use std::sync::atomic::Ordering;
    let (tx, rx) = std::sync::mpsc::channel();
    let notify_err = |e: notify::Error| InstallError::Io {
        path: opts.conf_dir.clone(),
        what: "watch directory",
        source: std::io::Error::other(e),
    };
    let mut watcher = notify::recommended_watcher(tx).map_err(notify_err)?;
    watcher
        .watch(&opts.conf_dir, notify::RecursiveMode::NonRecursive)
        .map_err(notify_err)?;
    let mut last_error = None;
    let mut pass = |last_error: &mut Option<String>| match patch_config(opts) {
        Ok((path, true)) => {
            *last_error = None;
            report(Ok(path));
        }
        Ok((_, false)) => *last_error = None,
        Err(e) => {
            // Reported once per distinct error, not every recheck.
            let text = e.to_string();
            if last_error.as_deref() != Some(text.as_str()) {
                *last_error = Some(text);
                report(Err(e));
            }
        }
    };
    pass(&mut last_error);
    let mut last_pass = std::time::Instant::now();
    // Bounded by `stop`: each wait is at most 200 ms.
    while !stop.load(Ordering::Relaxed) {
        let changed = match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(ev) => relevant(&ev),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if !changed && last_pass.elapsed() < RECHECK_EVERY {
            continue;
        }
        if changed {
            std::thread::sleep(SETTLE);
            while rx.try_recv().is_ok() {}
        }
        pass(&mut last_error);
        last_pass = std::time::Instant::now();
    }
    Ok(())
}

/// A change notice worth a pass: not only our own temporary files.
fn relevant(ev: &notify::Result<notify::Event>) -> bool {
    let Ok(ev) = ev else { return true };
    if matches!(ev.kind, notify::EventKind::Access(_)) {
        return false;
    }
    ev.paths.is_empty()
        || ev.paths.iter().any(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".palisade-tmp"))
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

    /// A primary CNI rewriting its configuration without our entry (in
    /// place, or as a new file sorting first) gets it back, once: our own
    /// write does not set off another.
    #[test]
    fn watch_repairs_rewritten_configurations() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        let opts = InstallOptions {
            bin_dir: tmp.path().into(),
            conf_dir: conf.clone(),
            agent_socket: "/run/palisade/agent.sock".into(),
            agent_timeout_ms: 10_000,
            uninstall: false,
        };
        let primary = |mtu: u32| json!({"cniVersion": "1.0.0", "name": "k", "plugins": [{"type": "ptp", "mtu": mtu}]});
        let ours_last = |path: &Path| {
            let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap_or_default())
                .unwrap_or_default();
            let p = v["plugins"].as_array().cloned().unwrap_or_default();
            p.last().is_some_and(is_ours) && p.iter().filter(|e| is_ours(e)).count() == 1
        };
        let stop = AtomicBool::new(false);
        let reports = std::sync::Mutex::new(Vec::<String>::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                watch(&opts, &stop, &mut |r| {
                    reports.lock().unwrap().push(match r {
                        Ok(p) => format!("repaired {}", p.display()),
                        Err(e) => format!("error {e}"),
                    })
                })
                .unwrap()
            });
            let wait = |what: &str, f: &dyn Fn() -> bool| {
                let t0 = Instant::now();
                while !f() {
                    assert!(
                        t0.elapsed() < Duration::from_secs(5),
                        "{what}: {:?}",
                        reports.lock().unwrap()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            };
            // No configuration yet: reported, then installed once it comes.
            wait("no config reported", &|| {
                reports
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r| r.contains("no *.conf"))
            });
            let file = conf.join("10-k.conflist");
            std::fs::write(&file, primary(1500).to_string()).unwrap();
            wait("installed", &|| ours_last(&file));
            // Rewritten in place, without our entry.
            std::fs::write(&file, primary(1400).to_string()).unwrap();
            wait("repaired in place", &|| ours_last(&file));
            let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            assert_eq!(
                v["plugins"][0]["mtu"], 1400,
                "the primary's new content kept"
            );
            // A new file that sorts first: that one is used, and patched.
            let first = conf.join("05-new.conflist");
            std::fs::write(&first, primary(9000).to_string()).unwrap();
            wait("new first file patched", &|| ours_last(&first));
            // Settled: no further writes (our own do not trigger passes).
            let n = reports.lock().unwrap().len();
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(
                reports.lock().unwrap().len(),
                n,
                "{:?}",
                reports.lock().unwrap()
            );
            stop.store(true, Ordering::Relaxed);
        });
        let r = reports.into_inner().unwrap();
        assert_eq!(
            r.iter().filter(|l| l.starts_with("repaired")).count(),
            3,
            "{r:?}"
        );
        let leftovers = std::fs::read_dir(&conf)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("palisade-tmp"))
            .count();
        assert_eq!(leftovers, 0);
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
