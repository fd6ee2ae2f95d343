//! `cargo xtask bench agent`: the agent binary at cluster scale — 10 000
//! pods (100 on this node, on interfaces with host routes, the rest
//! remote), 100 namespaces, 2 000 NetworkPolicies, each selecting one local
//! pod, and 200 ClusterNetworkPolicies (both tiers, namespace and pod
//! subjects, pod, namespace and CIDR peers, numbers and ranges, priorities
//! spread over 0-999 with ties) — fed by the manifests source and by a mock
//! Kubernetes API server (plain HTTP, list + chunked watch, the kubeconfig
//! pointing at it).
//!
//! Measured, for one object changed at a time (a NetworkPolicy's port, a
//! ClusterNetworkPolicy's port, a local pod's label), each kind in turn:
//! * manifests, file change → enforced: the file is replaced (rename) and
//!   the agent's `status` polled until its revision moves (the revision is
//!   bumped in the same step as the map writes, and `status` is answered
//!   between steps, so a moved revision means the writes are done);
//!   includes the watcher's quiet time after the last file event;
//! * manifests, file change + `sync`: the time until `sync` answers (its
//!   answer comes once the re-read sources are in the maps);
//! * Kubernetes, watch event → enforced: a `MODIFIED` event pushed on the
//!   NetworkPolicy watch, then `status` polled as above;
//!
//! and the agent process's VmHWM and VmRSS at that size.
//!
//! Needs root (a lab node namespace, a private bpffs). Run with
//! `cargo xtask bench agent`. `PALISADE_BENCH_BIN` runs another agent
//! binary (two builds compared in one session), `PALISADE_BENCH_LOG` sets
//! the agent's `RUST_LOG` and `PALISADE_BENCH_LOGS` keeps its logs there.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade::control::{Request, request};
use palisade_lab::LabSpec;
use palisade_lab::agent_process::AgentProcess;
use palisade_lab::scale::{
    CLUSTER_POLICIES, LOCAL, NAMESPACES, PODS, POLICIES, base_port, cluster_policy, cluster_port,
    labelled_pod, namespace, pod, pod_ip, policy,
};
use serde_json::{Value, json};
use support::{Agent, BIN, Bpffs, NodeDirs};

const POLICIES_PER_FILE: usize = 100;
/// Rounds of each kind of change.
const ROUNDS: usize = 30;

/// The revision, once `status` can be read.
fn revision(a: &Agent) -> u64 {
    request(&a.socket, &Request::Status, Duration::from_secs(30))
        .expect("status")
        .revision
        .unwrap_or(0)
}

/// Polls `status` until the revision passes `r0`; the time since `t0`.
fn wait_revision(a: &Agent, r0: u64, t0: Instant) -> Duration {
    loop {
        if revision(a) > r0 {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "revision stuck at {r0}:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn memory(a: &Agent) -> (u64, u64) {
    let pid = a.process.pid().unwrap();
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |k: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn row(what: &str, mut v: Vec<Duration>) {
    let (p50, p99, max) = (pct(&mut v, 0.5), pct(&mut v, 0.99), pct(&mut v, 1.0));
    println!(
        "{what:<44} n={:<3} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms",
        v.len()
    );
}

fn mem_row(what: &str, (hwm, rss): (u64, u64)) {
    println!(
        "{what:<44} VmHWM {:>6.1} MiB  VmRSS {:>6.1} MiB",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
}

/// The agent binary: this build's, or `PALISADE_BENCH_BIN` (another
/// build, to compare in the same run).
fn bin() -> std::path::PathBuf {
    std::env::var_os("PALISADE_BENCH_BIN").map_or_else(|| BIN.into(), Into::into)
}

/// Copies the agent's log to `PALISADE_BENCH_LOGS/<name>.log` when set
/// (with `PALISADE_BENCH_LOG=warn,palisade::round=debug` it holds each
/// round's phases).
fn keep_log(a: &Agent, name: &str) {
    if let Some(dir) = std::env::var_os("PALISADE_BENCH_LOGS") {
        let path = std::path::Path::new(&dir).join(format!("{name}.log"));
        std::fs::write(&path, a.log_text())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

fn start(cmd: std::process::Command, d: &NodeDirs) -> Agent {
    let t0 = Instant::now();
    let log = std::env::var("PALISADE_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let p = AgentProcess::spawn_command(&bin(), cmd, d, &log).expect("spawn agent");
    let a = Agent::ready(p, Duration::from_secs(300));
    println!(
        "{:<44} {:>7.0} ms",
        "  startup to first sync enforced",
        t0.elapsed().as_secs_f64() * 1e3
    );
    a
}

fn local_endpoints_enforced(a: &Agent) -> usize {
    request(&a.socket, &Request::Status, Duration::from_secs(30))
        .unwrap()
        .endpoints
        .iter()
        .filter(|e| e.state == "enforced")
        .count()
}

fn manifests_bench(lab: &palisade_lab::Lab, d: &NodeDirs) {
    println!("manifests source");
    d.write(
        "00-namespaces.yaml",
        &(0..NAMESPACES).map(namespace).collect::<Vec<_>>(),
    );
    for f in 0..PODS / 1000 {
        d.write(
            &format!("10-pods-{f:02}.yaml"),
            &(f * 1000..(f + 1) * 1000).map(pod).collect::<Vec<_>>(),
        );
    }
    let mut ports: Vec<u32> = (0..POLICIES).map(base_port).collect();
    let write_policies = |f: usize, ports: &[u32]| {
        let docs: Vec<Value> = (f * POLICIES_PER_FILE..(f + 1) * POLICIES_PER_FILE)
            .map(|i| policy(i, ports[i], 1))
            .collect();
        d.write(&format!("20-policies-{f:02}.yaml"), &docs);
    };
    for f in 0..POLICIES / POLICIES_PER_FILE {
        write_policies(f, &ports);
    }
    let mut cports: Vec<u32> = (0..CLUSTER_POLICIES).map(cluster_port).collect();
    let write_cluster = |f: usize, cports: &[u32]| {
        let docs: Vec<Value> = (f * 50..(f + 1) * 50)
            .map(|i| cluster_policy(i, cports[i], 1))
            .collect();
        d.write(&format!("30-cluster-{f:02}.yaml"), &docs);
    };
    for f in 0..CLUSTER_POLICIES / 50 {
        write_cluster(f, &cports);
    }
    // The local pods are the first hundred of the first file.
    let mut roles: Vec<usize> = (0..1000).map(|p| p % 7).collect();
    let write_pods = |roles: &[usize]| {
        let docs: Vec<Value> = (0..1000).map(|p| labelled_pod(p, roles[p])).collect();
        d.write("10-pods-00.yaml", &docs);
    };
    let mut cmd = AgentProcess::command(&bin(), lab.node("n1"), d);
    cmd.arg("--manifests").arg(&d.manifests);
    let a = start(cmd, d);
    assert_eq!(local_endpoints_enforced(&a), LOCAL, "{}", a.log_text());
    let (mut watched, mut synced, mut cluster, mut relabel) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let i = (round * 37) % POLICIES;
        ports[i] += 1000;
        let r0 = revision(&a);
        let t0 = Instant::now();
        write_policies(i / POLICIES_PER_FILE, &ports);
        if round % 2 == 0 {
            watched.push(wait_revision(&a, r0, t0));
        } else {
            a.sync().unwrap_or_else(|e| panic!("{e}"));
            synced.push(t0.elapsed());
            assert!(revision(&a) > r0);
        }
        let c = (round * 13) % CLUSTER_POLICIES;
        cports[c] += 1000;
        let r0 = revision(&a);
        let t0 = Instant::now();
        write_cluster(c / 50, &cports);
        cluster.push(wait_revision(&a, r0, t0));
        let p = (round * 11) % LOCAL;
        roles[p] = (roles[p] + 1) % 7;
        let r0 = revision(&a);
        let t0 = Instant::now();
        write_pods(&roles);
        relabel.push(wait_revision(&a, r0, t0));
    }
    row("  NetworkPolicy file change → enforced (watcher)", watched);
    row("  NetworkPolicy file change + sync → answered", synced);
    row("  ClusterNetworkPolicy file change → enforced", cluster);
    row("  local pod relabel (1000-pod file) → enforced", relabel);
    mem_row("  agent memory", memory(&a));
    keep_log(&a, "manifests");
}

/// The mock API server: lists from memory, watches kept open; `push`
/// sends an event to every watch of one resource.
struct MockApi {
    watches: Arc<Mutex<Vec<(String, TcpStream)>>>,
}

fn list_body(kind: &str, api_version: &str, items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"apiVersion": api_version, "kind": format!("{kind}List"),
                               "metadata": {"resourceVersion": "1"}, "items": items}),
    )
    .unwrap()
}

const PODS_PATH: &str = "/api/v1/pods";
const POLICIES_PATH: &str = "/apis/networking.k8s.io/v1/networkpolicies";
const CLUSTER_POLICIES_PATH: &str =
    "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies";

impl MockApi {
    fn serve(listener: TcpListener) -> MockApi {
        let lists: Arc<Vec<(&str, Vec<u8>)>> = Arc::new(vec![
            (
                "/api/v1/namespaces",
                list_body("Namespace", "v1", (0..NAMESPACES).map(namespace).collect()),
            ),
            (
                PODS_PATH,
                list_body("Pod", "v1", (0..PODS).map(pod).collect()),
            ),
            (
                POLICIES_PATH,
                list_body(
                    "NetworkPolicy",
                    "networking.k8s.io/v1",
                    (0..POLICIES).map(|i| policy(i, base_port(i), 1)).collect(),
                ),
            ),
            (
                CLUSTER_POLICIES_PATH,
                list_body(
                    "ClusterNetworkPolicy",
                    "policy.networking.k8s.io/v1alpha2",
                    (0..CLUSTER_POLICIES)
                        .map(|i| cluster_policy(i, cluster_port(i), 1))
                        .collect(),
                ),
            ),
        ]);
        let watches = Arc::new(Mutex::new(Vec::new()));
        let w = watches.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (lists, w) = (lists.clone(), w.clone());
                std::thread::spawn(move || Self::connection(conn, &lists, &w));
            }
        });
        MockApi { watches }
    }

    fn connection(
        mut conn: TcpStream,
        lists: &[(&str, Vec<u8>)],
        watches: &Mutex<Vec<(String, TcpStream)>>,
    ) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let Some((_, body)) = lists.iter().find(|(p, _)| *p == path) else {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            };
            if query
                .split('&')
                .any(|kv| kv == "watch=true" || kv == "watch=1")
            {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                // Kept for the run (the namespaces' watch stays quiet).
                watches.lock().unwrap().push((path.to_string(), conn));
                return;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if conn.write_all(head.as_bytes()).is_err() || conn.write_all(body).is_err() {
                return;
            }
        }
    }

    /// Sends `event` on every open watch of `path`.
    fn push(&self, path: &str, event: &Value) {
        let data = format!("{}\n", event);
        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
        let mut w = self.watches.lock().unwrap();
        assert!(w.iter().any(|(p, _)| p == path), "no watch of {path} open");
        w.retain_mut(|(p, c)| p != path || c.write_all(chunk.as_bytes()).is_ok());
    }
}

fn kube_bench(lab: &palisade_lab::Lab, d: &NodeDirs) {
    println!("Kubernetes source (mock API server, plain HTTP)");
    let node = lab.node("n1");
    let listener = node
        .run(|| TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let api = MockApi::serve(listener);
    let kubeconfig = d.state.with_extension("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: bench\n  user:\n    token: bench\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: bench\n\
             current-context: mock\n"
        ),
    )
    .unwrap();
    let mut cmd = AgentProcess::command(&bin(), node, d);
    cmd.env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let a = start(cmd, d);
    assert_eq!(local_endpoints_enforced(&a), LOCAL, "{}", a.log_text());
    let (mut lat, mut cluster, mut relabel) = (vec![], vec![], vec![]);
    let mut ports: Vec<u32> = (0..POLICIES).map(base_port).collect();
    let mut cports: Vec<u32> = (0..CLUSTER_POLICIES).map(cluster_port).collect();
    let mut roles: Vec<usize> = (0..LOCAL).map(|p| p % 7).collect();
    for round in 0..ROUNDS {
        let rv = 100 + round as u64;
        let i = (round * 37) % POLICIES;
        ports[i] += 1000;
        let r0 = revision(&a);
        let t0 = Instant::now();
        api.push(
            POLICIES_PATH,
            &json!({"type": "MODIFIED", "object": policy(i, ports[i], rv)}),
        );
        lat.push(wait_revision(&a, r0, t0));
        let c = (round * 13) % CLUSTER_POLICIES;
        cports[c] += 1000;
        let r0 = revision(&a);
        let t0 = Instant::now();
        api.push(
            CLUSTER_POLICIES_PATH,
            &json!({"type": "MODIFIED", "object": cluster_policy(c, cports[c], rv)}),
        );
        cluster.push(wait_revision(&a, r0, t0));
        let p = (round * 11) % LOCAL;
        roles[p] = (roles[p] + 1) % 7;
        let mut obj = labelled_pod(p, roles[p]);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let r0 = revision(&a);
        let t0 = Instant::now();
        api.push(PODS_PATH, &json!({"type": "MODIFIED", "object": obj}));
        relabel.push(wait_revision(&a, r0, t0));
    }
    row("  NetworkPolicy watch event → enforced", lat);
    row("  ClusterNetworkPolicy watch event → enforced", cluster);
    row("  local pod relabel watch event → enforced", relabel);
    mem_row("  agent memory", memory(&a));
    keep_log(&a, "kubernetes");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    let lab = LabSpec::new(&format!("pbn{}", std::process::id() % 100_000))
        .node("n1")
        .up()
        .expect("lab up");
    // Local pods: a host veth each with a host route, as a routed CNI
    // leaves them (the pod ends stay in the node namespace: no traffic is
    // sent, only the agent's attach and map writes are measured).
    let mut batch = Vec::new();
    for p in 0..LOCAL {
        batch.push(format!("link add bp{p} type veth peer name bq{p}"));
        batch.push(format!("link set bq{p} up"));
        batch.push(format!("link set bp{p} up"));
        batch.push(format!("route add {}/32 dev bp{p}", pod_ip(p)));
    }
    palisade_lab::netns::ip_batch(lab.node("n1").netns(), &batch).expect("local pod links");
    println!(
        "agent at {PODS} pods ({LOCAL} local), {NAMESPACES} namespaces, {POLICIES} NetworkPolicies, \
         {CLUSTER_POLICIES} ClusterNetworkPolicies; {ROUNDS} changes of each kind"
    );
    for (name, f) in [
        ("m", manifests_bench as fn(&palisade_lab::Lab, &NodeDirs)),
        ("k", kube_bench),
    ] {
        let bpffs = Bpffs::mount();
        let tmp = tempfile::tempdir().unwrap();
        let d = NodeDirs::new(tmp.path(), &bpffs, &format!("n1{name}"));
        let d = NodeDirs(palisade_lab::agent_process::NodeDirs {
            node: "n1".into(),
            ..d.0
        });
        f(&lab, &d);
    }
}
