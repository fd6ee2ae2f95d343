//! A container runtime's side of CNI, for tests that must meet real plugins:
//! the project's libcni driver (`lab/cni-runtime/main.go`, a few lines of Go
//! around the library containerd and CRI-O run chains with), a plugin chain
//! written as a network configuration list, and pod sandboxes (network
//! namespaces) that the chain wires and that serve and probe like lab pods.
//!
//! The driver is built on first use with Debian's Go and libcni source
//! (`golang-go`, `golang-github-appc-cni-dev`; `cargo xtask setup` installs
//! them), offline, into a directory the caller names. The chain runs inside a
//! lab node's namespace, as the runtime on that node would: the host side of
//! each pod's veth lands there, routed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{Netns, NetnsError};
use crate::topology::{Endpoint, Lab, Node};

/// The driver's source, inside this crate.
const DRIVER_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cni-runtime/main.go");
/// Where Debian installs Go library sources (libcni among them).
const DEBIAN_GOPATH: &str = "/usr/share/gocode";
/// libcni inside [`DEBIAN_GOPATH`].
const LIBCNI_SOURCE: &str = "/usr/share/gocode/src/github.com/containernetworking/cni/libcni";
/// Where Debian's `containernetworking-plugins` installs the reference
/// plugins (`ptp`, `host-local`, …).
pub const DEBIAN_PLUGIN_DIR: &str = "/usr/lib/cni";
/// How long a sandbox's addresses may stay tentative (IPv6 DAD) after ADD.
const ADDRESS_READY_TIMEOUT: Duration = Duration::from_secs(10);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// What failed while building the driver or running the chain.
#[derive(Debug, thiserror::Error)]
pub enum CniRuntimeError {
    /// Go or libcni's source is not installed.
    #[error(
        "{what} is missing: run `cargo xtask setup` (Debian packages golang-go, golang-github-appc-cni-dev)"
    )]
    Missing {
        /// The missing part.
        what: String,
    },
    /// `go build` of the driver failed.
    #[error("building the CNI driver from {source_path} failed: {stderr}")]
    Build {
        /// The driver's source.
        source_path: String,
        /// What the Go toolchain printed.
        stderr: String,
    },
    /// The chain reported an error for an operation.
    #[error("CNI {op} of sandbox {container_id} failed: {stderr}")]
    Plugin {
        /// `add`, `check` or `del`.
        op: &'static str,
        /// The sandbox's container id.
        container_id: String,
        /// The plugin error libcni passed on.
        stderr: String,
    },
    /// ADD printed something that is not a CNI result.
    #[error("CNI add of sandbox {container_id}: result not understood ({why}): {stdout}")]
    Result {
        /// The sandbox's container id.
        container_id: String,
        /// What was wrong.
        why: String,
        /// What the driver printed.
        stdout: String,
    },
    /// A namespace operation failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A file could not be written or a program not started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CniRuntimeError {
    let what = what.into();
    move |source| CniRuntimeError::Io { what, source }
}

/// The built libcni driver.
#[derive(Clone, Debug)]
pub struct Driver {
    path: PathBuf,
}

impl Driver {
    /// Builds the driver into `out_dir` (Go's build cache lives there too,
    /// so a rebuild takes about a second). Safe to call from parallel
    /// tests: each builds to its own file and renames it into place.
    pub fn build(out_dir: &Path) -> Result<Driver, CniRuntimeError> {
        if !Path::new(LIBCNI_SOURCE).is_dir() {
            return Err(CniRuntimeError::Missing {
                what: format!("libcni's source ({LIBCNI_SOURCE})"),
            });
        }
        std::fs::create_dir_all(out_dir).map_err(io(format!("create {}", out_dir.display())))?;
        let path = out_dir.join("cni-runtime");
        let tmp = out_dir.join(format!(
            ".cni-runtime.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let out = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&tmp)
            .arg(DRIVER_SOURCE)
            .env("GO111MODULE", "off")
            .env("GOPATH", DEBIAN_GOPATH)
            .env("GOCACHE", out_dir.join("go-cache"))
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => CniRuntimeError::Missing {
                    what: "the Go toolchain (`go`)".into(),
                },
                _ => CniRuntimeError::Io {
                    what: "run go build".into(),
                    source: e,
                },
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(CniRuntimeError::Build {
                source_path: DRIVER_SOURCE.into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        std::fs::rename(&tmp, &path).map_err(io(format!("rename to {}", path.display())))?;
        Ok(Driver { path })
    }

    /// The driver binary.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A plugin chain as a runtime holds it: the configuration list, the
/// directories plugins are searched in, and libcni's result cache (CHECK
/// and DEL read the cached ADD result, as with containerd).
#[derive(Debug)]
pub struct Chain {
    driver: Driver,
    conflist: PathBuf,
    bin_dirs: String,
    cache_dir: PathBuf,
}

impl Chain {
    /// Writes `conflist` into `dir` and keeps libcni's cache there.
    pub fn new(
        driver: Driver,
        dir: &Path,
        conflist: &Value,
        bin_dirs: &[&Path],
    ) -> Result<Chain, CniRuntimeError> {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let path = dir.join("chain.conflist");
        std::fs::write(&path, conflist.to_string())
            .map_err(io(format!("write {}", path.display())))?;
        let bin_dirs: Vec<&str> = bin_dirs.iter().filter_map(|d| d.to_str()).collect();
        Ok(Chain {
            driver,
            conflist: path,
            bin_dirs: bin_dirs.join(":"),
            cache_dir: dir.join("cache"),
        })
    }

    /// The chain configured by the file at `conflist` as it is on disk at
    /// each call (as a runtime reads its configuration directory), with
    /// libcni's cache in `cache_dir`.
    pub fn at(driver: Driver, conflist: &Path, cache_dir: &Path, bin_dirs: &[&Path]) -> Chain {
        let bin_dirs: Vec<&str> = bin_dirs.iter().filter_map(|d| d.to_str()).collect();
        Chain {
            driver,
            conflist: conflist.into(),
            bin_dirs: bin_dirs.join(":"),
            cache_dir: cache_dir.into(),
        }
    }

    fn run(
        &self,
        node: &Node,
        op: &'static str,
        sandbox: &Sandbox,
        args: &[(&str, &str)],
    ) -> Result<Output, CniRuntimeError> {
        let driver = self.driver.path.to_str().unwrap_or_default();
        let out = node
            .command(driver)
            .arg(op)
            .arg(&self.conflist)
            .arg(&self.bin_dirs)
            .arg(&self.cache_dir)
            .arg(&sandbox.container_id)
            .arg(sandbox.netns_path())
            .arg("eth0")
            .args(args.iter().map(|(k, v)| format!("{k}={v}")))
            .output()
            .map_err(io(format!("run {driver} {op}")))?;
        if !out.status.success() {
            return Err(CniRuntimeError::Plugin {
                op,
                container_id: sandbox.container_id.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        Ok(out)
    }

    /// ADD through the whole chain, run in `node`'s namespace; `args` are
    /// the runtime's `CNI_ARGS`. Records the result's addresses and host
    /// interface in `sandbox` and waits (bounded) until its addresses are
    /// usable. Returns the chain's final result.
    pub fn add(
        &self,
        node: &Node,
        sandbox: &mut Sandbox,
        args: &[(&str, &str)],
    ) -> Result<Value, CniRuntimeError> {
        let out = self.run(node, "add", sandbox, args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let bad = |why: &str| CniRuntimeError::Result {
            container_id: sandbox.container_id.clone(),
            why: why.into(),
            stdout: stdout.clone(),
        };
        let result: Value = serde_json::from_str(&stdout).map_err(|e| bad(&e.to_string()))?;
        let addrs = result["ips"]
            .as_array()
            .ok_or_else(|| bad("no ips"))?
            .iter()
            .map(|ip| {
                ip["address"]
                    .as_str()
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| bad("an ips[].address is not an address"))
            })
            .collect::<Result<Vec<IpAddr>, _>>()?;
        let host_ifname = result["interfaces"]
            .as_array()
            .and_then(|is| is.iter().find(|i| i.get("sandbox").is_none()))
            .and_then(|i| i["name"].as_str())
            .map(str::to_owned);
        sandbox.addrs = addrs;
        sandbox.host_ifname = host_ifname;
        sandbox.wait_addresses_ready(node)?;
        Ok(result)
    }

    /// CHECK through the whole chain (libcni passes the cached ADD result).
    pub fn check(
        &self,
        node: &Node,
        sandbox: &Sandbox,
        args: &[(&str, &str)],
    ) -> Result<(), CniRuntimeError> {
        self.run(node, "check", sandbox, args).map(drop)
    }

    /// DEL through the whole chain, in reverse order.
    pub fn del(
        &self,
        node: &Node,
        sandbox: &Sandbox,
        args: &[(&str, &str)],
    ) -> Result<(), CniRuntimeError> {
        self.run(node, "del", sandbox, args).map(drop)
    }
}

/// A pod sandbox: a network namespace the runtime created (deleted when
/// dropped), which a chain's ADD gives an `eth0` and addresses.
#[derive(Debug)]
pub struct Sandbox {
    container_id: String,
    label: String,
    addrs: Vec<IpAddr>,
    host_ifname: Option<String>,
    netns: Netns,
}

impl Sandbox {
    /// An empty sandbox for pod `label` (`namespace/name`) with container id
    /// `container_id`, named after the lab so that the lab's stale-namespace
    /// cleanup finds it.
    pub fn create(lab: &Lab, container_id: &str, label: &str) -> Result<Sandbox, CniRuntimeError> {
        let netns = Netns::create(&format!("{}-sbx-{container_id}", lab.id()))?;
        Ok(Sandbox {
            container_id: container_id.into(),
            label: label.into(),
            addrs: Vec::new(),
            host_ifname: None,
            netns,
        })
    }

    /// The runtime's container id.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// `/var/run/netns/<name>`, the `CNI_NETNS` of this sandbox.
    pub fn netns_path(&self) -> PathBuf {
        crate::netns::netns_path(self.netns.name())
    }

    /// The addresses the last ADD gave (empty before).
    pub fn ips(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// The address of `family` the last ADD gave.
    pub fn ip(&self, v6: bool) -> Option<IpAddr> {
        self.addrs.iter().copied().find(|a| a.is_ipv6() == v6)
    }

    /// The host side of the pod's veth, as the last ADD reported it.
    pub fn host_ifname(&self) -> Option<&str> {
        self.host_ifname.as_deref()
    }

    /// Waits until no address is tentative on either side of the veth, so
    /// that the first probe is not lost to duplicate address detection.
    fn wait_addresses_ready(&self, node: &Node) -> Result<(), CniRuntimeError> {
        let deadline = Instant::now() + ADDRESS_READY_TIMEOUT;
        // Bounded by the deadline; each round runs two `ip`.
        loop {
            let inside = self.netns.ip(&["-o", "addr", "show", "dev", "eth0"])?;
            let outside = match &self.host_ifname {
                Some(h) => crate::netns::ip(&["-n", node.netns(), "-o", "addr", "show", "dev", h])?,
                None => String::new(),
            };
            if !inside.contains("tentative") && !outside.contains("tentative") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NetnsError::NotReady {
                    netns: self.netns.name().into(),
                    what: "eth0's addresses (duplicate address detection)".into(),
                    timeout_ms: ADDRESS_READY_TIMEOUT.as_millis(),
                }
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Endpoint for Sandbox {
    fn netns(&self) -> &str {
        self.netns.name()
    }
    fn label(&self) -> String {
        self.label.clone()
    }
    fn addrs(&self) -> Vec<IpAddr> {
        self.addrs.clone()
    }
}
