//! The agent's configuration: what `palisade agent` was asked to do, with
//! defaults filled in and every value checked before anything is bound,
//! loaded or attached.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::datapath::DatapathLog;

/// Where the agent reads Namespaces, Pods and NetworkPolicies from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// A directory of YAML manifests (no cluster).
    Manifests(PathBuf),
    /// The Kubernetes API (in-cluster config, else kubeconfig).
    Kubernetes,
}

/// What the datapath does with a packet a pod sends from an address that
/// is not its own (`--source-verification`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceVerification {
    /// Drop it (`invalid-source`).
    #[default]
    Enforce,
    /// Pass it, report it as an audit event and count it.
    Audit,
    /// Do not look at sources.
    Off,
}

impl SourceVerification {
    /// The `CONFIG` flag bits of the mode (none: enforce).
    pub fn config_flags(self) -> u32 {
        use palisade_common::config_flags::{SOURCE_VERIFY_AUDIT, SOURCE_VERIFY_OFF};
        match self {
            SourceVerification::Enforce => 0,
            SourceVerification::Audit => SOURCE_VERIFY_AUDIT,
            SourceVerification::Off => SOURCE_VERIFY_OFF,
        }
    }
}

/// The resolved configuration of one agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name (`spec.nodeName` of its pods).
    pub node_name: String,
    /// The object source.
    pub source: SourceConfig,
    /// Runtime state: the allocation table, the control socket.
    pub state_dir: PathBuf,
    /// Pinned maps; pinned links under `links/`.
    pub bpffs_dir: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// `/healthz` and `/readyz` (None: no health server).
    pub health_addr: Option<SocketAddr>,
    /// Endpoints whose policy is not known yet get `POLICY_PENDING`.
    pub default_deny_until_synced: bool,
    /// Judge node-to-pod traffic by policy too.
    pub enforce_host: bool,
    /// Judge tracked connections again after every policy change.
    pub ct_revalidate: bool,
    /// Source verification on the pods' egress.
    pub source_verification: SourceVerification,
    /// How long a `cni_add` for a pod the sources do not know yet waits for
    /// it before attaching the interface as policy-pending.
    pub cni_wait: Duration,
    /// Audit every endpoint (`--audit`): would-drops pass and are reported.
    pub audit: bool,
    /// Drop metrics per pod too (`--metrics-pod-labels`).
    pub metrics_pod_labels: bool,
    /// What the datapath writes to the agent's log (`--datapath-log`).
    pub datapath_log: DatapathLog,
    /// How the Kubernetes source lists and watches.
    pub kube: KubeOptions,
}

/// How the Kubernetes source talks to the API server (advanced options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KubeOptions {
    /// Most objects per list request (`limit`; the rest is fetched with
    /// `continue`), `--kube-page-size`.
    pub page_size: u32,
    /// How long each watch request lasts (`timeoutSeconds`) before it is
    /// renewed from its last resourceVersion, `--kube-watch-timeout-secs`.
    pub watch_timeout_secs: u32,
}

/// Default `--kube-page-size`: as client-go's reflector pages.
pub const DEFAULT_KUBE_PAGE_SIZE: u32 = 500;
/// Default `--kube-watch-timeout-secs` (below the API server's minimum
/// request timeout, as kube-rs and client-go choose).
pub const DEFAULT_KUBE_WATCH_TIMEOUT_SECS: u32 = 290;

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            page_size: DEFAULT_KUBE_PAGE_SIZE,
            watch_timeout_secs: DEFAULT_KUBE_WATCH_TIMEOUT_SECS,
        }
    }
}

/// What the command line gave (before defaults).
#[derive(Clone, Debug, Default)]
pub struct ConfigInput {
    /// `--node-name` / `NODE_NAME`.
    pub node_name: Option<String>,
    /// `--manifests`.
    pub manifests: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--bpffs-dir`.
    pub bpffs_dir: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--health-addr` (`none` disables).
    pub health_addr: Option<String>,
    /// `--default-deny-until-synced`.
    pub default_deny_until_synced: bool,
    /// `--enforce-host`.
    pub enforce_host: bool,
    /// `--ct-revalidate` (default: on).
    pub ct_revalidate: Option<bool>,
    /// `--source-verification`.
    pub source_verification: SourceVerification,
    /// `--cni-wait-ms`.
    pub cni_wait_ms: Option<u64>,
    /// `--audit`.
    pub audit: bool,
    /// `--metrics-pod-labels`.
    pub metrics_pod_labels: bool,
    /// `--datapath-log`.
    pub datapath_log: DatapathLog,
    /// `--kube-page-size`.
    pub kube_page_size: Option<u32>,
    /// `--kube-watch-timeout-secs`.
    pub kube_watch_timeout_secs: Option<u32>,
}

/// Default health address: loopback only, a port no common node daemon uses.
pub const DEFAULT_HEALTH_ADDR: &str = "127.0.0.1:9890";
/// Default root of the per-node state directories.
pub const DEFAULT_STATE_ROOT: &str = "/run/palisade";
/// Default root of the per-node bpffs directories.
pub const DEFAULT_BPFFS_ROOT: &str = "/sys/fs/bpf/palisade";
/// Whether tracked connections are judged again after a policy change by
/// default: yes, so that a policy change, once enforced, applies to every
/// flow (fail closed: revoked access stops, also for open connections).
pub const DEFAULT_CT_REVALIDATE: bool = true;
/// Default `cni_add` wait for an unknown pod.
pub const DEFAULT_CNI_WAIT: Duration = Duration::from_secs(5);

/// A configuration value is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No node name given and the hostname could not be read.
    #[error("--node-name: not given, NODE_NAME unset, and the hostname is unreadable: {0}")]
    NoNodeName(std::io::Error),
    /// The node name cannot name a node (or a directory).
    #[error(
        "--node-name {0:?}: must be 1..=253 characters of [a-z0-9.-], starting and ending alphanumeric"
    )]
    InvalidNodeName(String),
    /// `--manifests` is not a readable directory.
    #[error("--manifests {path}: {reason}")]
    Manifests {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A path option is relative.
    #[error("{flag} {path}: must be an absolute path")]
    RelativePath {
        /// The option.
        flag: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// `--health-addr` does not parse.
    #[error("--health-addr {value:?}: expected IP:PORT or `none` ({reason})")]
    HealthAddr {
        /// The value given.
        value: String,
        /// The parse error.
        reason: String,
    },
    /// A Kubernetes source option is out of range.
    #[error("{flag} {value}: must be between {min} and {max}")]
    OutOfRange {
        /// The option.
        flag: &'static str,
        /// The value given.
        value: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// The socket path is too long for a unix socket address.
    #[error("--socket {0}: longer than the 107 bytes a unix socket path may have")]
    SocketPathTooLong(PathBuf),
}

/// Whether `name` is a valid Kubernetes node name (DNS subdomain).
pub fn valid_node_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// This machine's hostname.
pub fn hostname() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).to_lowercase())
}

fn absolute(flag: &'static str, p: PathBuf) -> Result<PathBuf, ConfigError> {
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(ConfigError::RelativePath { flag, path: p })
    }
}

/// The node name: given, else the hostname.
pub fn resolve_node_name(given: Option<String>) -> Result<String, ConfigError> {
    let name = match given.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => hostname().map_err(ConfigError::NoNodeName)?,
    };
    if !valid_node_name(&name) {
        return Err(ConfigError::InvalidNodeName(name));
    }
    Ok(name)
}

/// Default state directory of a node.
pub fn default_state_dir(node: &str) -> PathBuf {
    Path::new(DEFAULT_STATE_ROOT).join(node)
}

/// Default bpffs directory of a node.
pub fn default_bpffs_dir(node: &str) -> PathBuf {
    Path::new(DEFAULT_BPFFS_ROOT).join(node)
}

impl AgentConfig {
    /// Fills in defaults and checks every value.
    pub fn resolve(input: ConfigInput) -> Result<Self, ConfigError> {
        let node_name = resolve_node_name(input.node_name)?;
        let source = match input.manifests {
            Some(dir) => {
                let meta = std::fs::metadata(&dir).map_err(|e| ConfigError::Manifests {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
                if !meta.is_dir() {
                    return Err(ConfigError::Manifests {
                        path: dir,
                        reason: "not a directory".into(),
                    });
                }
                SourceConfig::Manifests(dir)
            }
            None => SourceConfig::Kubernetes,
        };
        let state_dir = absolute(
            "--state-dir",
            input
                .state_dir
                .unwrap_or_else(|| default_state_dir(&node_name)),
        )?;
        let bpffs_dir = absolute(
            "--bpffs-dir",
            input
                .bpffs_dir
                .unwrap_or_else(|| default_bpffs_dir(&node_name)),
        )?;
        let socket = absolute(
            "--socket",
            input.socket.unwrap_or_else(|| state_dir.join("agent.sock")),
        )?;
        if socket.as_os_str().len() > 107 {
            return Err(ConfigError::SocketPathTooLong(socket));
        }
        let health = input
            .health_addr
            .unwrap_or_else(|| DEFAULT_HEALTH_ADDR.to_string());
        let health_addr = if health.eq_ignore_ascii_case("none") {
            None
        } else {
            Some(
                health
                    .parse::<SocketAddr>()
                    .map_err(|e| ConfigError::HealthAddr {
                        value: health.clone(),
                        reason: e.to_string(),
                    })?,
            )
        };
        let range = |flag, value: Option<u32>, default, min, max| match value {
            None => Ok(default),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(value) => Err(ConfigError::OutOfRange {
                flag,
                value,
                min,
                max,
            }),
        };
        let kube = KubeOptions {
            page_size: range(
                "--kube-page-size",
                input.kube_page_size,
                DEFAULT_KUBE_PAGE_SIZE,
                1,
                100_000,
            )?,
            watch_timeout_secs: range(
                "--kube-watch-timeout-secs",
                input.kube_watch_timeout_secs,
                DEFAULT_KUBE_WATCH_TIMEOUT_SECS,
                1,
                3600,
            )?,
        };
        Ok(AgentConfig {
            kube,
            node_name,
            source,
            state_dir,
            bpffs_dir,
            socket,
            health_addr,
            default_deny_until_synced: input.default_deny_until_synced,
            enforce_host: input.enforce_host,
            ct_revalidate: input.ct_revalidate.unwrap_or(DEFAULT_CT_REVALIDATE),
            source_verification: input.source_verification,
            cni_wait: input
                .cni_wait_ms
                .map_or(DEFAULT_CNI_WAIT, Duration::from_millis),
            audit: input.audit,
            metrics_pod_labels: input.metrics_pod_labels,
            datapath_log: input.datapath_log,
        })
    }

    /// Where pinned links live.
    pub fn links_dir(&self) -> PathBuf {
        self.bpffs_dir.join("links")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(valid_node_name("node-1.example"));
        for bad in ["", "Node", "a/b", "-a", "a-", "a..b", "../x"] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_follow_the_node_name() {
        let c = AgentConfig::resolve(ConfigInput {
            node_name: Some("n1".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/run/palisade/n1"));
        assert_eq!(c.bpffs_dir, PathBuf::from("/sys/fs/bpf/palisade/n1"));
        assert_eq!(c.socket, PathBuf::from("/run/palisade/n1/agent.sock"));
        assert_eq!(c.health_addr, Some(DEFAULT_HEALTH_ADDR.parse().unwrap()));
        // Health and /metrics answer on loopback only unless asked.
        assert!(c.health_addr.unwrap().ip().is_loopback());
        assert!(c.ct_revalidate, "revalidation is the default");
        assert_eq!(c.source, SourceConfig::Kubernetes);
        assert_eq!(c.kube, KubeOptions::default());
        assert_eq!(c.kube.page_size, 500);
    }

    #[test]
    fn bad_values_are_named() {
        let e = AgentConfig::resolve(ConfigInput {
            node_name: Some("n1".into()),
            health_addr: Some("localhost".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("--health-addr \"localhost\""),
            "{e}"
        );
        let e = AgentConfig::resolve(ConfigInput {
            node_name: Some("n1".into()),
            manifests: Some("/nonexistent/palisade".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("--manifests /nonexistent"), "{e}");
        let e = AgentConfig::resolve(ConfigInput {
            node_name: Some("n1".into()),
            state_dir: Some("rel".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "--state-dir rel: must be an absolute path");
        let e = AgentConfig::resolve(ConfigInput {
            node_name: Some("n1".into()),
            kube_page_size: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--kube-page-size 0: must be between 1 and 100000"
        );
        let c = AgentConfig::resolve(ConfigInput {
            node_name: Some("n1".into()),
            kube_page_size: Some(2),
            kube_watch_timeout_secs: Some(3),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.kube,
            KubeOptions {
                page_size: 2,
                watch_timeout_secs: 3
            }
        );
    }
}
