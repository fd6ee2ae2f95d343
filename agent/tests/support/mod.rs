//! Shared by the privileged agent tests: a private bpffs mount, the agent
//! binary started inside a lab node's network namespace, manifests as JSON
//! documents (YAML 1.2 is a superset of JSON), and reachability checks.
#![allow(dead_code)]

pub mod apiserver;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::control::{Request, Response, request};
use palisade_lab::agent_process::AgentProcess;
use palisade_lab::{ANSWER_TIMEOUT, DEFAULT_TIMEOUT, Node, Pod, ProbeResult, ProbeSpec, probe_all};
use serde_json::{Value, json};

/// The agent binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A private bpf filesystem mounted on a temporary directory; unmounting
/// releases every pin (maps freed, links detached), also on panic.
pub struct Bpffs(pub palisade_lab::agent_process::Bpffs);

impl Bpffs {
    pub fn mount() -> Bpffs {
        let dir = std::env::temp_dir().join(format!(
            "palisade-bpffs-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Bpffs(palisade_lab::agent_process::Bpffs::mount(dir).expect("mount bpffs"))
    }
}

/// Per-node agent directories.
pub struct NodeDirs(pub palisade_lab::agent_process::NodeDirs);

impl std::ops::Deref for NodeDirs {
    type Target = palisade_lab::agent_process::NodeDirs;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for NodeDirs {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl NodeDirs {
    pub fn new(root: &Path, bpffs: &Bpffs, node: &str) -> NodeDirs {
        NodeDirs(palisade_lab::agent_process::NodeDirs::new(root, &bpffs.0, node).unwrap())
    }

    /// Replaces the manifests with `docs` in one file (written then renamed,
    /// as config management tools do).
    pub fn write(&self, file: &str, docs: &[Value]) {
        self.0.write(file, docs).unwrap();
    }

    pub fn write_raw(&self, file: &str, text: &str) {
        std::fs::write(self.manifests.join(file), text).unwrap();
    }
}

/// A running agent; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Agent {
    pub process: AgentProcess,
    pub socket: PathBuf,
}

impl Agent {
    /// Starts the agent in the node's namespace and waits (bounded) until
    /// its first sync is enforced.
    pub fn start(node: &Node, d: &NodeDirs, extra: &[&str]) -> Agent {
        let p = AgentProcess::spawn(
            Path::new(BIN),
            node,
            d,
            extra,
            "info,palisade::agent::commit=debug",
        )
        .expect("spawn agent");
        Agent::ready(p, Duration::from_secs(30))
    }

    /// Waits (bounded) until the started agent's first sync is enforced.
    pub fn ready(process: AgentProcess, within: Duration) -> Agent {
        let mut a = Agent {
            socket: process.socket().to_owned(),
            process,
        };
        a.wait_ready(within);
        a
    }

    pub fn wait_ready(&mut self, within: Duration) {
        let socket = self.socket.clone();
        self.process
            .wait_until(within, |_| {
                request(&socket, &Request::Status, Duration::from_secs(5))
                    .is_ok_and(|r| r.synced == Some(true))
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    pub fn status(&self) -> Response {
        request(&self.socket, &Request::Status, Duration::from_secs(10)).expect("status")
    }

    /// `palisade sync --socket …`: the revision, or the CLI's error output.
    pub fn sync(&self) -> Result<u64, String> {
        self.process.sync()
    }

    pub fn sync_ok(&self) -> u64 {
        self.sync()
            .unwrap_or_else(|e| panic!("sync failed: {e}\n{}", self.log_text()))
    }

    /// SIGTERM and wait (bounded); returns the exit status success.
    pub fn stop(&mut self) -> bool {
        self.process.stop()
    }

    /// SIGKILL: nothing runs on the way out.
    pub fn crash(&mut self) {
        self.process.crash();
    }
}

/// The agent's (interface, state) for `pod` (`ns/name`), if it lists it.
pub fn endpoint_state(agent: &Agent, pod: &str) -> Option<(Option<String>, String)> {
    agent
        .status()
        .endpoints
        .into_iter()
        .find(|e| e.pod == pod)
        .map(|e| (e.interface, e.state))
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": labels}})
}

/// A pod manifest for a lab pod (its real addresses), with a uid.
pub fn pod(p: &Pod, k8s_ns: &str, name: &str, uid: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": k8s_ns, "uid": uid, "labels": labels},
           "spec": {"nodeName": p.node(), "containers": [{"name": "c", "image": "x",
                    "ports": [{"name": "http", "containerPort": 80}]}]},
           "status": {"phase": "Running", "podIP": p.ipv4().to_string(),
                      "podIPs": [{"ip": p.ipv4().to_string()}, {"ip": p.ipv6().to_string()}]}})
}

pub fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A probe kind and port.
#[derive(Clone, Copy, Debug)]
pub enum P {
    Tcp(u16),
    Udp(u16),
    Sctp(u16),
}

/// One expectation: from, to (address), what, reachable.
pub type Case<'a> = (&'a Pod, IpAddr, P, bool);

fn spec(from: &Pod, to: IpAddr, p: P, reach: bool) -> ProbeSpec {
    let s = match p {
        P::Tcp(port) => ProbeSpec::tcp(from, to, port),
        P::Udp(port) => ProbeSpec::udp(from, to, port),
        P::Sctp(port) => ProbeSpec::sctp(from, to, port),
    };
    s.timeout(if reach {
        ANSWER_TIMEOUT
    } else {
        DEFAULT_TIMEOUT
    })
}

/// Probes every case (in parallel); returns the mismatches.
pub fn mismatches(cases: &[Case<'_>]) -> Vec<String> {
    let specs: Vec<ProbeSpec> = cases
        .iter()
        .map(|(f, t, p, r)| spec(f, *t, *p, *r))
        .collect();
    let results = probe_all(&specs);
    cases
        .iter()
        .zip(results)
        .filter(|((_, _, _, want), got)| got.reached() != *want)
        .map(|((f, t, p, want), got)| {
            format!(
                "{} -> {t} {p:?}: want {}, got {got:?}",
                f.name(),
                if *want { "reach" } else { "blocked" }
            )
        })
        .collect()
}

/// Asserts reachability, with the agent logs on failure.
pub fn expect(step: &str, agents: &[&Agent], cases: &[Case<'_>]) {
    let bad = mismatches(cases);
    if !bad.is_empty() {
        let logs: Vec<String> = agents.iter().map(|a| a.log_text()).collect();
        panic!(
            "{step}: {} of {} probes wrong:\n  {}\nagent logs:\n{}",
            bad.len(),
            cases.len(),
            bad.join("\n  "),
            logs.join("\n----\n")
        );
    }
}

/// Both address families of a pod.
pub fn both(p: &Pod) -> [IpAddr; 2] {
    [p.ipv4().into(), p.ipv6().into()]
}

pub fn reached(r: &ProbeResult) -> bool {
    r.reached()
}
