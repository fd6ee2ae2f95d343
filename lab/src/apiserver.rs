//! A real Kubernetes API server for tests: etcd and the pinned
//! `kube-apiserver` (built and cached by `cargo xtask setup`) on loopback,
//! each on a free port, with their data, certificates and logs in a
//! temporary directory. The server makes its own self-signed serving
//! certificate, authenticates bearer tokens from a token file and authorizes
//! with RBAC, as a cluster does. Dropping the [`ApiServer`] stops both
//! processes and removes the directory, also while a test panics.
//!
//! Tests talk to it through [`ApiServer::client`] (an admin client bound to
//! the server's own tokio runtime: run its futures with
//! [`ApiServer::block_on`]) or a kubeconfig ([`ApiServer::kubeconfig`]).
//! [`Forward`] makes the server reachable from inside a lab namespace (an
//! agent on a lab node), and can cut that path to play a network outage.
//! [`ApiServer::etcd_revision`] and [`ApiServer::compact_etcd`] reach etcd
//! itself (its JSON gateway), so a test can compact history away as a
//! cluster's compactor does; [`ApiServerSpec::audit`] makes the server
//! write an audit log of every request ([`ApiServer::audit_events`]), so a
//! test can see what a client asked for (`limit`, `continue`,
//! `allowWatchBookmarks`, `resourceVersion`).
//!
//! Nothing runs a controller-manager or kubelet: no service accounts are
//! created (the ServiceAccount admission plugin is off so pods need none),
//! pod status is whatever a test patches, and a pod with a `nodeName` goes
//! away only when deleted with `gracePeriodSeconds: 0`.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// The Kubernetes version `cargo xtask setup` builds and the tests run.
pub const KUBE_APISERVER_VERSION: &str = "1.20.2";
/// The admin user's bearer token (group `system:masters`).
pub const ADMIN_TOKEN: &str = "palisade-test-admin-token";
/// How long etcd and the API server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped process may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Where `cargo xtask setup` keeps the kube-apiserver it built:
/// `$XDG_CACHE_HOME` (else `~/.cache`) `/palisade/kube-apiserver-<version>/`.
pub fn cached_kube_apiserver() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    cache
        .join("palisade")
        .join(format!("kube-apiserver-{KUBE_APISERVER_VERSION}"))
        .join("kube-apiserver")
}

/// Why the API server could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// A binary is missing: `cargo xtask setup` has not run.
    #[error("{what} not found at {path} (run `cargo xtask setup`)")]
    Missing {
        /// Which program.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A process did not become ready, or exited.
    #[error("{what} not ready: {why}\n--- {log}:\n{tail}")]
    NotReady {
        /// Which process.
        what: &'static str,
        /// What was seen.
        why: String,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
    /// The kubeconfig could not be read or turned into a client.
    #[error("client from {path}: {message}")]
    Client {
        /// The kubeconfig.
        path: PathBuf,
        /// kube's error.
        message: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApiServerError {
    let what = what.into();
    move |source| ApiServerError::Io { what, source }
}

/// Whether the cluster tests should skip rather than fail: the API server
/// binary is absent and this is not CI (`CI` unset). In CI a missing binary
/// is an error the test reports. Prints why it skips.
pub fn skip_without_apiserver(test: &str) -> bool {
    let bin = cached_kube_apiserver();
    if bin.exists() {
        return false;
    }
    if std::env::var_os("CI").is_some() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: no kube-apiserver at {} (run `cargo xtask setup`; with CI set this fails)",
        bin.display()
    );
    true
}

/// A user of the token file.
#[derive(Clone, Debug)]
pub struct TokenUser {
    /// The bearer token.
    pub token: String,
    /// The user name RBAC subjects match.
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
}

/// What to start: extra token users besides the admin.
#[derive(Clone, Debug, Default)]
pub struct ApiServerSpec {
    users: Vec<TokenUser>,
    etcd_args: Vec<String>,
    apiserver_args: Vec<String>,
    audit: bool,
}

impl ApiServerSpec {
    /// The admin user only.
    pub fn new() -> ApiServerSpec {
        ApiServerSpec::default()
    }

    /// Adds a token user `name` in `groups`.
    pub fn user(mut self, token: &str, name: &str, groups: &[&str]) -> ApiServerSpec {
        self.users.push(TokenUser {
            token: token.into(),
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
        self
    }

    /// A user as a pod with service account `ns/name` is seen (a token
    /// file stands in for the token controller, which does not run).
    pub fn service_account(self, token: &str, ns: &str, name: &str) -> ApiServerSpec {
        let user = format!("system:serviceaccount:{ns}:{name}");
        let ns_group = format!("system:serviceaccounts:{ns}");
        self.user(
            token,
            &user,
            &["system:serviceaccounts", &ns_group, "system:authenticated"],
        )
    }

    /// Extra etcd flags (e.g. `--auto-compaction-retention`).
    pub fn etcd_arg(mut self, arg: &str) -> ApiServerSpec {
        self.etcd_args.push(arg.into());
        self
    }

    /// Extra kube-apiserver flags (e.g. `--watch-cache=false`, so watches
    /// are served from etcd and compaction reaches them).
    pub fn apiserver_arg(mut self, arg: &str) -> ApiServerSpec {
        self.apiserver_args.push(arg.into());
        self
    }

    /// Writes an audit log of every request at `Metadata` level (who,
    /// verb, request URI with its query, response code).
    pub fn audit(mut self) -> ApiServerSpec {
        self.audit = true;
        self
    }

    /// Starts etcd and the API server; ready when this returns.
    pub fn start(self) -> Result<ApiServer, ApiServerError> {
        ApiServer::start(self)
    }
}

/// A running etcd and kube-apiserver; both stopped and their directory
/// removed when dropped.
pub struct ApiServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    etcd_url: String,
    etcd_port: u16,
    extra_args: Vec<String>,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    runtime: tokio::runtime::Runtime,
    client: Option<kube::Client>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A free loopback port (bound then released; the processes bind it soon
/// after, and parallel tests each get their own).
fn free_port() -> Result<u16, ApiServerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(l.local_addr().map_err(io("local address"))?.port())
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn stop_child(child: &mut Option<Child>) {
    let Some(mut c) = child.take() else { return };
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    // Bounded by the deadline.
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl ApiServer {
    fn start(spec: ApiServerSpec) -> Result<ApiServer, ApiServerError> {
        let bin = cached_kube_apiserver();
        if !bin.exists() {
            return Err(ApiServerError::Missing {
                what: "kube-apiserver",
                path: bin,
            });
        }
        let dir = std::env::temp_dir().join(format!(
            "palisade-apiserver-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("certs"))
            .map_err(io(format!("create {}", dir.display())))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(io("tokio runtime"))?;
        // From here on, Drop cleans up whatever was started.
        let mut s = ApiServer {
            dir,
            bin,
            port: free_port()?,
            etcd_url: String::new(),
            etcd_port: 0,
            extra_args: spec.apiserver_args.clone(),
            etcd: None,
            apiserver: None,
            runtime,
            client: None,
        };
        s.start_etcd(&spec.etcd_args)?;
        s.write_files(&spec.users)?;
        if spec.audit {
            let policy = s.dir.join("audit-policy.yaml");
            std::fs::write(
                &policy,
                "apiVersion: audit.k8s.io/v1\nkind: Policy\n\
                 omitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )
            .map_err(io(format!("write {}", policy.display())))?;
            s.extra_args.extend([
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", s.audit_log().display()),
            ]);
        }
        s.start_apiserver()?;
        let client = s.client_for(ADMIN_TOKEN)?;
        s.client = Some(client);
        Ok(s)
    }

    fn start_etcd(&mut self, extra: &[String]) -> Result<(), ApiServerError> {
        let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(ApiServerError::Missing {
                what: "etcd",
                path: PathBuf::from("/usr/bin/etcd"),
            })?;
        let (client, peer) = (free_port()?, free_port()?);
        self.etcd_url = format!("http://127.0.0.1:{client}");
        self.etcd_port = client;
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = self.dir.join("etcd.log");
        let log = std::fs::File::create(&log_path).map_err(io("create etcd.log"))?;
        let child = Command::new(etcd)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={}", self.etcd_url))
            .arg(format!("--advertise-client-urls={}", self.etcd_url))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("etcd.log"))?)
            .stderr(log)
            .spawn()
            .map_err(io("run etcd"))?;
        self.etcd = Some(child);
        // Ready once its client port answers /health with "true".
        let deadline = Instant::now() + READY_TIMEOUT;
        // Bounded by the deadline.
        loop {
            if let Some(Ok(Some(st))) = self.etcd.as_mut().map(Child::try_wait) {
                return Err(ApiServerError::NotReady {
                    what: "etcd",
                    why: format!("exited ({st})"),
                    log: log_path.display().to_string(),
                    tail: log_tail(&log_path, 30),
                });
            }
            if http_get(client, "/health").is_some_and(|b| b.contains("\"health\":\"true\"")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ApiServerError::NotReady {
                    what: "etcd",
                    why: format!("/health not true within {READY_TIMEOUT:?}"),
                    log: log_path.display().to_string(),
                    tail: log_tail(&log_path, 30),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn write_files(&self, users: &[TokenUser]) -> Result<(), ApiServerError> {
        let mut tokens = format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n");
        for u in users {
            tokens.push_str(&format!(
                "{},{},{},\"{}\"\n",
                u.token,
                u.name,
                u.name,
                u.groups.join(",")
            ));
        }
        let path = self.dir.join("tokens.csv");
        std::fs::write(&path, tokens).map_err(io(format!("write {}", path.display())))?;
        // The service account signing key 1.20 requires (nothing here
        // issues tokens with it, but the flags are mandatory).
        let key = self.dir.join("sa.key");
        let out = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .output()
            .map_err(io("run openssl genrsa"))?;
        if !out.status.success() {
            return Err(ApiServerError::Io {
                what: "openssl genrsa".into(),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
        Ok(())
    }

    /// Starts kube-apiserver (again, after [`ApiServer::stop_apiserver`]:
    /// same port, same certificate, same etcd) and waits until `/readyz`
    /// answers `ok`.
    pub fn start_apiserver(&mut self) -> Result<(), ApiServerError> {
        let d = &self.dir;
        let log_path = d.join("kube-apiserver.log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("open kube-apiserver.log"))?;
        let key = d.join("sa.key");
        let child = Command::new(&self.bin)
            .arg(format!("--etcd-servers={}", self.etcd_url))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.port))
            // 1.20 still serves plain HTTP on 8080 unless told not to.
            .arg("--insecure-port=0")
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            // No controller creates service accounts; pods need none.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", key.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                key.display()
            ))
            // Only an allocation range for Service objects: no traffic.
            .arg("--service-cluster-ip-range=10.96.0.0/24")
            .arg("--profiling=false")
            .arg("--v=1")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("kube-apiserver.log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("run {}", self.bin.display())))?;
        self.apiserver = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        // Bounded by the deadline.
        loop {
            if let Some(Ok(Some(st))) = self.apiserver.as_mut().map(Child::try_wait) {
                return Err(ApiServerError::NotReady {
                    what: "kube-apiserver",
                    why: format!("exited ({st})"),
                    log: log_path.display().to_string(),
                    tail: log_tail(&log_path, 30),
                });
            }
            if self.ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ApiServerError::NotReady {
                    what: "kube-apiserver",
                    why: format!("/readyz not ok within {READY_TIMEOUT:?}"),
                    log: log_path.display().to_string(),
                    tail: log_tail(&log_path, 30),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `/readyz` answers `ok` (through a fresh client: the
    /// certificate appears only once the server has started).
    pub fn ready(&self) -> bool {
        if !self.ca_file().exists() {
            return false;
        }
        let Ok(client) = self.client_for(ADMIN_TOKEN) else {
            return false;
        };
        self.runtime.block_on(async {
            let req = http::Request::get("/readyz").body(Vec::new());
            let Ok(req) = req else { return false };
            matches!(
                tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await,
                Ok(Ok(t)) if t.trim() == "ok"
            )
        })
    }

    /// Stops kube-apiserver (SIGTERM, bounded); etcd keeps running.
    pub fn stop_apiserver(&mut self) {
        stop_child(&mut self.apiserver);
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding logs, certificates and kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's self-signed certificate and the CA that signed it, as
    /// it wrote them: what clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs").join("apiserver.crt")
    }

    /// The audit log ([`ApiServerSpec::audit`]).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The audit events logged so far, oldest first (none without
    /// [`ApiServerSpec::audit`]).
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// etcd's current revision (the newest resourceVersion).
    pub fn etcd_revision(&self) -> Result<u64, ApiServerError> {
        // The key "\0": any range answers with the store's header.
        let body = self.etcd_post("/v3/kv/range", r#"{"key":"AA=="}"#)?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| ApiServerError::Io {
            what: format!("etcd range answer {body:?}"),
            source: std::io::Error::other(e),
        })?;
        v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| ApiServerError::Io {
                what: format!("etcd range answer {body:?}"),
                source: std::io::Error::other("no header.revision"),
            })
    }

    /// Compacts etcd's history up to `revision` (as the API server's
    /// compactor does every 5 minutes): watches and `continue` tokens from
    /// before it are answered `410 Gone` from then on.
    pub fn compact_etcd(&self, revision: u64) -> Result<(), ApiServerError> {
        let body = self.etcd_post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )?;
        if body.contains("\"error\"") {
            return Err(ApiServerError::Io {
                what: format!("etcd compaction to {revision}"),
                source: std::io::Error::other(body),
            });
        }
        Ok(())
    }

    fn etcd_post(&self, path: &str, json: &str) -> Result<String, ApiServerError> {
        http_post(self.etcd_port, path, json).ok_or_else(|| ApiServerError::Io {
            what: format!("POST etcd {path}"),
            source: std::io::Error::other("no answer"),
        })
    }

    /// The API server's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("kube-apiserver.log")).unwrap_or_default()
    }

    /// Writes a kubeconfig for `token` reaching the server at `addr`
    /// (127.0.0.1 on its port, or a [`Forward`]'s); returns its path.
    pub fn kubeconfig_at(&self, token: &str, addr: SocketAddr) -> Result<PathBuf, ApiServerError> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        self.write_kubeconfig(&format!("kubeconfig-{n}"), token, addr)
    }

    fn write_kubeconfig(
        &self,
        name: &str,
        token: &str,
        addr: SocketAddr,
    ) -> Result<PathBuf, ApiServerError> {
        let path = self.dir.join(name);
        let text = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": format!("https://{addr}"),
                "certificate-authority": self.ca_file(),
            }}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
            "current-context": "test",
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&text).unwrap_or_default())
            .map_err(io(format!("write {}", path.display())))?;
        Ok(path)
    }

    /// A kubeconfig for `token` at the server's own address.
    pub fn kubeconfig(&self, token: &str) -> Result<PathBuf, ApiServerError> {
        self.kubeconfig_at(token, SocketAddr::from(([127, 0, 0, 1], self.port)))
    }

    /// A client authenticated with `token`, bound to this server's runtime.
    pub fn client_for(&self, token: &str) -> Result<kube::Client, ApiServerError> {
        // One file per token, rewritten: readiness polls make many clients.
        let path = self.write_kubeconfig(
            &format!("client-{token}.kubeconfig"),
            token,
            SocketAddr::from(([127, 0, 0, 1], self.port)),
        )?;
        let err = |e: &dyn std::fmt::Display| ApiServerError::Client {
            path: path.clone(),
            message: e.to_string(),
        };
        let kc = Kubeconfig::read_from(&path).map_err(|e| err(&e))?;
        let _guard = self.runtime.enter();
        let config = self
            .runtime
            .block_on(kube::Config::from_custom_kubeconfig(
                kc,
                &KubeConfigOptions::default(),
            ))
            .map_err(|e| err(&e))?;
        kube::Client::try_from(config).map_err(|e| err(&e))
    }

    /// The admin client (group `system:masters`).
    pub fn client(&self) -> kube::Client {
        self.client.clone().expect("client is set once started")
    }

    /// Runs `f` on the server's runtime, where its clients live.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.client = None;
        stop_child(&mut self.apiserver);
        stop_child(&mut self.etcd);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP GET on loopback `port` (etcd's health endpoint); the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// A plain HTTP POST of a JSON body on loopback `port` (etcd's gateway);
/// the response body.
fn http_post(port: u16, path: &str, json: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// A TCP port inside another network namespace (a lab node's loopback)
/// forwarding to an address in this one (the API server): how an agent in
/// a lab node reaches the server. [`Forward::cut`] closes every connection
/// and refuses new ones until [`Forward::restore`]: a network outage.
/// Stops (its thread and connections) when dropped.
#[derive(Debug)]
pub struct Forward {
    addr: SocketAddr,
    state: Arc<ForwardState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct ForwardState {
    stop: AtomicBool,
    cut: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

impl ForwardState {
    fn close_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Forward {
    /// Forwards connections accepted on `listener` (bound inside the other
    /// namespace: a socket stays in the namespace it was made in) to
    /// `target`.
    pub fn start(listener: TcpListener, target: SocketAddr) -> Result<Forward, ApiServerError> {
        let addr = listener.local_addr().map_err(io("forward address"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("forward nonblocking"))?;
        let state = Arc::new(ForwardState::default());
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            while !st.stop.load(Ordering::Relaxed) {
                let (inbound, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                if st.cut.load(Ordering::Relaxed) {
                    // Refused as an unreachable server would be.
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = inbound.set_nonblocking(false);
                let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                else {
                    continue;
                };
                let pairs = [(&inbound, &outbound), (&outbound, &inbound)];
                let mut ok = true;
                for (from, to) in pairs {
                    match (from.try_clone(), to.try_clone()) {
                        (Ok(mut r), Ok(mut w)) => {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut r, &mut w);
                                let _ = w.shutdown(Shutdown::Write);
                            });
                        }
                        _ => ok = false,
                    }
                }
                if ok {
                    let mut conns = st.conns.lock().unwrap_or_else(|e| e.into_inner());
                    conns.push(inbound);
                    conns.push(outbound);
                }
            }
            st.close_all();
        });
        Ok(Forward {
            addr,
            state,
            thread: Some(thread),
        })
    }

    /// The address it listens on (inside the other namespace).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::Relaxed);
        self.state.close_all();
    }

    /// Forwards again after [`Forward::cut`].
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.state.close_all();
    }
}
