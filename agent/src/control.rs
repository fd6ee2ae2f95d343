//! The control socket: a unix stream socket speaking JSON lines, one
//! request and one response per connection. Used by `palisade sync`, the
//! tests, and (its `cni_*` operations) by a CNI plugin.
//!
//! ```text
//! → {"op":"sync"}
//! ← {"ok":true,"revision":7}
//! → {"op":"cni_add","container_id":"c1","netns":"/var/run/netns/x","ifname":"eth0",
//!    "host_ifname":"cali12","ips":["10.1.0.5/32"],"pod_namespace":"prod","pod_name":"web"}
//! ← {"ok":true,"revision":8,"policy":"enforced","ifindex":12}
//! ← {"ok":false,"error":"..."}
//! ```
//!
//! Every answer comes once its effect is in the datapath: `sync` once the
//! sources were re-read and the result written to the maps; `cni_add` once
//! the pod's interface has its `ENDPOINTS` entry and both programs attached
//! (`"policy":"enforced"`: compiled from the pod's policies;
//! `"policy":"pending"`: the sources did not know the pod within the
//! agent's `--cni-wait-ms`, so it carries `POLICY_PENDING` with
//! `--default-deny-until-synced`, else passes until its policy is known).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The arguments of the `cni_*` operations (the CNI plugin's view of a
/// pod's network attachment).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniArgs {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (informational).
    #[serde(default)]
    pub netns: Option<String>,
    /// `CNI_IFNAME` inside the pod (informational).
    #[serde(default)]
    pub ifname: Option<String>,
    /// The host-side interface, when the plugin knows it; otherwise the
    /// agent finds it from the host routes of `ips`.
    #[serde(default)]
    pub host_ifname: Option<String>,
    /// The pod's addresses (`a.b.c.d` or `a.b.c.d/len`).
    #[serde(default)]
    pub ips: Vec<String>,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: String,
    /// `K8S_POD_NAME`.
    pub pod_name: String,
    /// `K8S_POD_UID`, when the runtime passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

impl CniArgs {
    /// The addresses, prefix lengths dropped.
    pub fn addresses(&self) -> Result<Vec<IpAddr>, String> {
        self.ips
            .iter()
            .map(|s| {
                let a = s.split('/').next().unwrap_or("");
                a.parse::<IpAddr>().map_err(|e| format!("ips: {s:?}: {e}"))
            })
            .collect()
    }
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Re-read the sources; answer once the result is in the maps.
    Sync,
    /// A pod's interface was created.
    CniAdd(CniArgs),
    /// A pod's interface is being deleted.
    CniDel(CniArgs),
    /// Is the pod's interface enforced?
    CniCheck(CniArgs),
    /// The agent's state (revision, endpoints, problems).
    Status,
    /// Stream drop/audit events (JSON lines, see `crate::monitor`) until
    /// the client closes the connection.
    Monitor(crate::monitor::MonitorFilter),
    /// Local endpoints in detail (`data`: a list).
    Endpoints,
    /// What a policy compiled to (`data`).
    PolicyGet {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// What a ClusterNetworkPolicy compiled to (`data`).
    ClusterPolicyGet {
        /// Name (cluster-scoped).
        name: String,
    },
    /// Why a flow is allowed or denied (`data`), see `crate::explain`.
    Explain(crate::explain::ExplainRequest),
    /// The graph of a scope with the live overlay (`data`: the graph's
    /// JSON, `palisade graph -o json`).
    Graph(GraphRequest),
}

/// `palisade graph --live`: the scope (exactly one of `namespace`, `pod`,
/// `all_namespaces`) and the drops' window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphRequest {
    /// The pods of this namespace and their peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One pod (`NAMESPACE/NAME`) and its peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Every namespace, aggregated by namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_namespaces: bool,
    /// How far back drops count, in seconds (default 300; capped at what
    /// the agent keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
}

impl GraphRequest {
    /// The scope it names.
    pub fn scope(&self) -> Result<palisade_analysis::graph::Scope, String> {
        use palisade_analysis::graph::Scope;
        match (&self.namespace, &self.pod, self.all_namespaces) {
            (Some(ns), None, false) if !ns.is_empty() => Ok(Scope::Namespace(ns.clone())),
            (None, Some(p), false) => match p.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok(Scope::Pod(palisade_compiler::PodRef::new(ns, name)))
                }
                _ => Err(format!("--pod {p:?}: expected NAMESPACE/NAME")),
            },
            (None, None, true) => Ok(Scope::AllNamespaces),
            _ => Err(
                "graph: give exactly one scope: -n NAMESPACE, --pod NAMESPACE/NAME or --all-namespaces"
                    .into(),
            ),
        }
    }
}

/// One local endpoint in a status answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// `namespace/name`.
    pub pod: String,
    /// Host-side interface, if found.
    pub interface: Option<String>,
    /// `enforced`, `pending` (CNI, policy unknown), `no-interface`.
    pub state: String,
}

/// A response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Success.
    pub ok: bool,
    /// The policy revision in the datapath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `cni_add`: `enforced` or `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `cni_add`/`cni_check`: the host-side interface index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// `status`: the sources have been read completely at least once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<bool>,
    /// `status`: local endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointStatus>,
    /// `status`/`sync`: current problems (unparsable manifests, rejected
    /// objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// `endpoints`, `policy_get`, `explain`: the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Response {
    /// A failure.
    pub fn error(msg: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Default::default()
        }
    }
}

/// A request with the channel its answer goes back on.
pub type Call = (Request, oneshot::Sender<Response>);

/// The control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("no agent is listening on {path} ({source}); is `palisade agent` running?")]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another agent already listens on it.
    #[error("control socket {0}: another agent is already listening on it")]
    InUse(PathBuf),
    /// Talking to the agent failed.
    #[error("control socket {path}: {what}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The answer did not parse.
    #[error("control socket {path}: bad answer {line:?}: {message}")]
    BadAnswer {
        /// The socket.
        path: PathBuf,
        /// The answer.
        line: String,
        /// The parse error.
        message: String,
    },
}

/// Sends one request and waits (at most `timeout`) for the answer.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let io = |what| {
        move |source| ControlError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let mut stream = UnixStream::connect(path).map_err(|source| ControlError::NotRunning {
        path: path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(io("set timeout"))?;
    let mut line = serde_json::to_string(req).expect("requests serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io("send"))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io("read answer"))?;
    serde_json::from_str(answer.trim()).map_err(|e| ControlError::BadAnswer {
        path: path.to_path_buf(),
        line: answer.clone(),
        message: e.to_string(),
    })
}

/// Binds the socket (replacing a stale one, refusing a live one) in its
/// directory, which the caller has made private (`crate::dirs`), and makes
/// it root-only (0600): whoever can connect can tell a CNI plugin that a
/// pod is enforced.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |what| {
        move |source| ControlError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io("remove stale socket"))?;
    }
    let l = UnixListener::bind(path).map_err(io("bind"))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod 0600"))?;
    Ok(l)
}

/// Serves connections: each request is passed to the core on `calls` and
/// its answer written back; `monitor` requests are streamed from `hub`.
pub async fn serve(
    listener: UnixListener,
    calls: mpsc::Sender<Call>,
    hub: Option<std::sync::Arc<crate::monitor::Hub>>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(error) => {
                warn!(%error, "control socket accept failed");
                continue;
            }
        };
        let calls = calls.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut reader =
                tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, MAX_REQUEST));
            let mut line = String::new();
            let resp = match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
                Err(_) => Response::error("no request within 10 s"),
                Ok(Err(e)) => Response::error(format!("reading the request: {e}")),
                Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
                    Err(e) => Response::error(format!("bad request: {e}")),
                    Ok(Request::Monitor(filter)) => match hub {
                        Some(hub) => {
                            crate::monitor::stream::serve(hub, filter, reader, w).await;
                            return;
                        }
                        None => Response::error("this agent does not serve monitors"),
                    },
                    Ok(req) => {
                        debug!(?req, "control request");
                        let (tx, rx) = oneshot::channel();
                        if calls.send((req, tx)).await.is_err() {
                            Response::error("the agent is shutting down")
                        } else {
                            rx.await
                                .unwrap_or_else(|_| Response::error("the agent is shutting down"))
                        }
                    }
                },
            };
            let mut out = serde_json::to_string(&resp).expect("responses serialize");
            out.push('\n');
            let _ = w.write_all(out.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"sync"}"#).unwrap();
        assert_eq!(r, Request::Sync);
        let r: Request = serde_json::from_str(
            r#"{"op":"cni_add","container_id":"c","ips":["10.0.0.1/32","2001:db8::1"],"pod_namespace":"p","pod_name":"w"}"#,
        )
        .unwrap();
        let Request::CniAdd(a) = r else { panic!() };
        assert_eq!(a.addresses().unwrap().len(), 2);
        let ok = Response {
            ok: true,
            revision: Some(3),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"ok":true,"revision":3}"#
        );
    }

    #[test]
    fn graph_request_names_exactly_one_scope() {
        use palisade_analysis::graph::Scope;
        let r: Request =
            serde_json::from_str(r#"{"op":"graph","namespace":"prod","window_seconds":60}"#)
                .unwrap();
        let Request::Graph(g) = r else { panic!() };
        assert_eq!(g.scope(), Ok(Scope::Namespace("prod".into())));
        assert_eq!(g.window_seconds, Some(60));
        let pod = GraphRequest {
            pod: Some("prod/web".into()),
            ..Default::default()
        };
        assert!(matches!(pod.scope(), Ok(Scope::Pod(_))));
        for bad in [
            GraphRequest::default(),
            GraphRequest {
                pod: Some("web".into()),
                ..Default::default()
            },
            GraphRequest {
                namespace: Some("a".into()),
                all_namespaces: true,
                ..Default::default()
            },
        ] {
            assert!(bad.scope().is_err(), "{bad:?}");
        }
    }
}
