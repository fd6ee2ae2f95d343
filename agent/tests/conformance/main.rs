//! NetworkPolicy and ClusterNetworkPolicy conformance against the real
//! agent.
//!
//! The model of upstream Kubernetes' `test/e2e/network/netpol`: namespaces
//! x, y, z (labelled `ns: <name>`) with pods a, b, c (labelled
//! `pod: <name>`), each serving ports 80 and 81 on TCP, UDP and SCTP under
//! the named ports `serve-<port>-<proto>`. The pods are lab pods spread over
//! two lab nodes, each node running the `palisade` binary.
//!
//! Two tests run the same cases with the same runner; only how objects
//! reach the agents differs ([`Source`]): `conformance` runs the agents
//! with `--manifests` (the state written to manifest files);
//! `conformance_kubernetes` runs them in Kubernetes mode against a real
//! kube-apiserver 1.20.2 with the shipped RBAC, one server for every case,
//! the state written as API objects (`kubernetes.rs`: real Pods with
//! `status.podIPs` patched, Namespaces, NetworkPolicies and
//! ClusterNetworkPolicies created, replaced and deleted per step, then
//! waited for until every agent has seen them), in the default
//! connection-tracking mode only ([`KUBERNETES_CT_MODE`]); the cases it
//! cannot run, and why, are [`MANIFESTS_ONLY`]. The two tests take turns.
//!
//! In manifests mode the suite runs twice, the agents restarted in between
//! (see [`CT_MODES`]):
//! in the default mode, where tracked connections are judged again after
//! each policy change, and with `--ct-revalidate=false`, where a flow the
//! other end has answered lives on, so every probe's new connection must
//! still be judged by the policy in force whatever an earlier probe left
//! in connection tracking (a reused client port, a half-open attempt).
//!
//! The cases: `cases.yaml` holds upstream's e2e tests (each names the test
//! it reproduces, with upstream's truth tables) and a few cases of our own;
//! `cyclonus.rs` builds the cases of the cyclonus generator
//! (network-policy-api policy-assistant) that apply to NetworkPolicy v1,
//! one function per upstream generator function; `cluster_cases.yaml` holds
//! network-policy-api's ClusterNetworkPolicy conformance tests (v0.2.0,
//! Admin and Baseline tiers), mapped onto this model as its header says
//! (`houses: true` starts a case from that mapping, [`HOUSES`]), and a few
//! cases of our own. A case has steps; a step creates, updates or deletes
//! NetworkPolicies and ClusterNetworkPolicies (written to the manifests
//! like the rest), relabels pods or namespaces, and
//! creates or deletes pods and namespaces (the pods of [`EXTRA_PODS`],
//! built with the lab but absent for Kubernetes until created), then the
//! manifests are rewritten, `palisade sync` runs on both agents, each
//! agent's endpoints are checked against the existing pods of its node,
//! and every ordered pair of distinct existing pods is probed (in parallel) for the
//! step's ports/protocols (or, in a step with `to_nodes`, every existing
//! pod towards each lab node's own address, where a host-network server
//! answers on [`HOST_PORTS`]), in IPv4 and in IPv6, and compared with the
//! expected truth table: the upstream one where the case gives it
//! (cross-checked against an independent evaluator, `model.rs`), else the
//! evaluator's, as cyclonus computes it with its matcher. Self pairs are
//! skipped (upstream ignores loopback).
//!
//! The lab nodes exist for Kubernetes as Node objects (in the manifests,
//! labelled `kubernetes.io/os: linux` and `kubernetes.io/hostname`, with
//! their fabric addresses as `InternalIP`s), for ClusterNetworkPolicy
//! `nodes` peers.
//!
//! Prints one line per case and `conformance: N passed, M failed`; fails
//! on any mismatch, except in a case marked `known_failure` (a failure of
//! the agent it shows, reported with its mismatches as `KNOW`; should it
//! pass, `XPAS` says the mark can go; a hand table the evaluator disputes
//! fails all the same). `cases_are_well_formed` and
//! `truth_tables_agree_with_evaluator` need no root: the latter builds
//! every step's state as the suite does and checks each hand table
//! against the evaluator. `PALISADE_CONFORMANCE_FILTER=<substring>` runs only the
//! matching cases; `PALISADE_CONFORMANCE_CT=revalidate|keep` only one
//! mode. `conformance` and `conformance_kubernetes` need root; pick one by
//! test name (`cargo test -p palisade --test conformance
//! conformance_kubernetes`, or `conformance -- --exact`).

#[path = "../support/mod.rs"]
mod support;

mod cyclonus;
mod kubernetes;
mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_lab::addressing::{FIRST_POD, node_v4, node_v6, pod_v4, pod_v6};
use palisade_lab::description::PodDescription;
use palisade_lab::{
    ANSWER_TIMEOUT, AppLab, DEFAULT_TIMEOUT, LabDescription, PortSpec, ProbeKind, ProbeResult,
    ProbeSpec, Protocol, Servers, Services, probe_all, serve,
};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{Agent, Bpffs, NodeDirs};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
const NODES: [&str; 2] = ["n1", "n2"];
/// The ports a host-network server on every lab node serves on TCP, UDP
/// and SCTP: network-policy-api's conformance suite's default
/// `HostNetworkPorts` (34345 to 34352; its `centaur` host-networked pods).
const HOST_PORTS: [u16; 8] = [34345, 34346, 34347, 34348, 34349, 34350, 34351, 34352];
/// How a node is named where pods are named (`ns/pod`): `node/<name>`,
/// which no namespace of the model is called.
const NODE_PREFIX: &str = "node/";

/// The labels of lab node `n` as a Node object.
fn node_labels(n: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/hostname".to_string(), n.to_string()),
    ])
}

/// The lab nodes as Node objects: labels and both addresses (and a
/// hostname, which is not an IP and matches nothing).
fn node_docs(app: &AppLab) -> Vec<Value> {
    NODES
        .iter()
        .map(|n| {
            let node = app.lab().node(n);
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": n, "labels": node_labels(n)},
                   "status": {"addresses": [
                       {"type": "InternalIP", "address": node.ipv4().to_string()},
                       {"type": "InternalIP", "address": node.ipv6().to_string()},
                       {"type": "Hostname", "address": n}]}})
        })
        .collect()
}

/// The agents' connection-tracking modes the suite runs in, in order:
/// (name, extra agent arguments).
const CT_MODES: [(&str, &[&str]); 2] = [("revalidate", &[]), ("keep", &["--ct-revalidate=false"])];

/// Pods a step can create (`create_pods`), with their node: real lab pods,
/// built and serving from the start like the others, but absent from
/// Kubernetes (the manifests, the evaluator, the probes) until a step
/// creates them. Their namespaces other than x, y, z exist only while a
/// step has created them.
const EXTRA_PODS: [(&str, &str, &str); 4] = [
    ("x", "d", "n2"),
    ("y-2", "a", "n1"),
    ("y-2", "b", "n2"),
    ("w", "a", "n1"),
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The upstream test name, or the generator file, function and
    /// description (`cyclonus.rs`), or what a case of our own covers.
    source: String,
    /// Starts from network-policy-api's conformance model mapped onto ours
    /// (see [`houses`] and `cluster_cases.yaml`) rather than the bare
    /// x/y/z model.
    #[serde(default)]
    houses: bool,
    /// A failure of the agent this case shows, in one line: the case runs
    /// and reports its mismatches but does not fail the suite (a pass is
    /// reported too, so the mark can go).
    #[serde(default)]
    known_failure: Option<String>,
    steps: Vec<Step>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    create: Vec<PolicyDoc>,
    /// Same as create: replaces the policy of that namespace/name.
    #[serde(default)]
    update: Vec<PolicyDoc>,
    /// `ns/name` of policies to delete.
    #[serde(default)]
    delete: Vec<String>,
    /// Deletes every NetworkPolicy and ClusterNetworkPolicy.
    #[serde(default)]
    delete_all: bool,
    /// ClusterNetworkPolicies (cluster-scoped) to create.
    #[serde(default)]
    cluster_create: Vec<ClusterPolicyDoc>,
    /// Same as cluster_create: replaces the ClusterNetworkPolicy of that
    /// name.
    #[serde(default)]
    cluster_update: Vec<ClusterPolicyDoc>,
    /// Names of ClusterNetworkPolicies to delete.
    #[serde(default)]
    cluster_delete: Vec<String>,
    /// `ns/pod` → the pod's complete new labels.
    #[serde(default)]
    pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// namespace → its complete new labels (the name label stays).
    #[serde(default)]
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Namespaces to create (one of [`EXTRA_PODS`]' namespaces) → labels.
    /// Applied first.
    #[serde(default)]
    create_namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// `ns/pod` to create (one of [`EXTRA_PODS`], in an existing
    /// namespace) → labels. Applied after `create_namespaces`.
    #[serde(default)]
    create_pods: BTreeMap<String, BTreeMap<String, String>>,
    /// `ns/pod` of pods to delete. Applied after the policy and label
    /// changes.
    #[serde(default)]
    delete_pods: Vec<String>,
    /// Namespaces to delete, with their pods and policies. Applied last.
    #[serde(default)]
    delete_namespaces: Vec<String>,
    /// What to probe and expect; none: the ports/protocols of `probe`,
    /// expected per the evaluator.
    #[serde(default)]
    checks: Vec<Check>,
    /// Without `checks`: what to probe (`tcp/81`, …); none: every
    /// port/protocol.
    #[serde(default)]
    probe: Vec<String>,
    /// Probe from every existing pod to each lab node's address
    /// (`node/n1`, `node/n2` in tables) instead of between pods.
    #[serde(default)]
    to_nodes: bool,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    namespace: String,
    name: String,
    spec: Value,
}

/// A ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`): name and
/// spec.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct ClusterPolicyDoc {
    name: String,
    spec: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    /// `tcp/80`, `udp/81`, `sctp/80`, …
    probe: Vec<String>,
    /// The starting expectation of every pair.
    #[serde(default = "yes")]
    default: bool,
    /// `[from, to, allowed]` applied in order (later wins), as upstream's
    /// `ExpectPeer`/`Expect`/`ExpectAllIngress`/`ExpectAllEgress`: `x/a`,
    /// `x/*`, `*/a`, `*`.
    #[serde(default)]
    expect: Vec<(String, String, bool)>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn name(self) -> &'static str {
        match self {
            Fam::V4 => "v4",
            Fam::V6 => "v6",
        }
    }
}

/// A probed (port, protocol).
#[derive(Clone, Copy)]
struct Pp {
    port: u16,
    proto: Protocol,
}

impl Pp {
    fn parse(s: &str) -> Pp {
        let (proto, port) = s.split_once('/').unwrap_or_else(|| panic!("probe {s:?}"));
        let proto = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => panic!("probe {s:?}: protocol"),
        };
        Pp {
            port: port.parse().unwrap_or_else(|_| panic!("probe {s:?}: port")),
            proto,
        }
    }
    fn all() -> Vec<Pp> {
        PROTOCOLS
            .iter()
            .flat_map(|&proto| PORTS.iter().map(move |&port| Pp { port, proto }))
            .collect()
    }
    fn label(self) -> String {
        format!("{}/{}", self.proto.as_str().to_lowercase(), self.port)
    }
}

fn pattern_matches(pat: &str, pod: &str) -> bool {
    if pat == "*" {
        return true;
    }
    let (pn, pp) = pat
        .split_once('/')
        .unwrap_or_else(|| panic!("pattern {pat:?}"));
    let (n, p) = pod.split_once('/').unwrap();
    (pn == "*" || pn == n) && (pp == "*" || pp == p)
}

fn hand_table(check: &Check, from: &str, to: &str) -> bool {
    let mut v = check.default;
    for (f, t, allowed) in &check.expect {
        if pattern_matches(f, from) && pattern_matches(t, to) {
            v = *allowed;
        }
    }
    v
}

/// The pods every case starts with.
fn base_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}")))
        .collect()
}

fn base_pod_labels(pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("pod".to_string(), pod.to_string())])
}

fn base_ns_labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ns".to_string(), ns.to_string())])
}

/// The ports every pod serves.
fn port_specs() -> Vec<PortSpec> {
    PROTOCOLS
        .iter()
        .flat_map(|&protocol| {
            PORTS.iter().map(move |&port| PortSpec {
                port,
                protocol,
                name: Some(format!("serve-{port}-{}", protocol.as_str().to_lowercase())),
            })
        })
        .collect()
}

fn description() -> LabDescription {
    let mut d = LabDescription {
        name: "conformance".into(),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let ports = port_specs();
    for ns in NAMESPACES {
        d.namespaces.insert(ns.into(), base_ns_labels(ns));
        for (i, p) in PODS.iter().enumerate() {
            d.pods.push(PodDescription {
                name: p.to_string(),
                namespace: ns.into(),
                // a and c on n1, b on n2: pairs cross nodes and stay local.
                node: Some(NODES[i % 2].into()),
                labels: base_pod_labels(p),
                ports: ports.clone(),
            });
        }
    }
    // After the base pods, so these keep their addresses.
    for (ns, p, node) in EXTRA_PODS {
        d.pods.push(PodDescription {
            name: p.to_string(),
            namespace: ns.into(),
            node: Some(node.into()),
            labels: base_pod_labels(p),
            ports: ports.clone(),
        });
    }
    d
}

/// network-policy-api's conformance model (`conformance/base/manifests.yaml`
/// at v0.2.0) on ours: house → (namespace, pods). Each house's namespace and
/// pods get the label `conformance-house: <house>` besides ours (`ns`,
/// `pod`); upstream's pods `<name>-0` and `<name>-1` are our `a` and `b`, and
/// the c pods of x, y, z are a third pod of their house. Ravenclaw is the
/// extra namespace y-2 (created by the case; its pods a on n1 and b on n2).
/// `cluster_cases.yaml` says how ports, named ports and names map.
const HOUSES: [(&str, &str, &[&str]); 4] = [
    ("gryffindor", "x", &["a", "b", "c"]),
    ("slytherin", "y", &["a", "b", "c"]),
    ("hufflepuff", "z", &["a", "b", "c"]),
    ("ravenclaw", "y-2", &["a", "b"]),
];

/// The step that turns the x/y/z model into [`HOUSES`], applied before a
/// `houses` case's first step.
fn houses() -> Step {
    let mut step = Step::default();
    for (house, ns, pods) in HOUSES {
        let mut ns_labels = base_ns_labels(ns);
        ns_labels.insert("conformance-house".into(), house.into());
        if NAMESPACES.contains(&ns) {
            step.namespace_labels.insert(ns.into(), ns_labels);
        } else {
            step.create_namespaces.insert(ns.into(), ns_labels);
        }
        for p in pods {
            let mut labels = base_pod_labels(p);
            labels.insert("conformance-house".into(), house.into());
            let key = format!("{ns}/{p}");
            if NAMESPACES.contains(&ns) {
                step.pod_labels.insert(key, labels);
            } else {
                step.create_pods.insert(key, labels);
            }
        }
    }
    step
}

/// A pod's address (`ns/pod`) in family `fam`.
type AddrOf<'a> = &'a dyn Fn(&str, Fam) -> IpAddr;

/// Replaces the templates of `text` for family `fam`.
fn expand(text: &str, fam: Fam, addr: AddrOf) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let len = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unterminated template in {text}"));
        out.push_str(&template(&rest[start + 2..start + len], fam, addr));
        rest = &rest[start + len + 1..];
    }
    out + rest
}

/// One template: `${ip:x/b}` (the pod's address), `${hostmask}` (32 or
/// 128), `${large:x/b}` (the /4 around the pod's address, as upstream
/// e2e's makeLargeCIDRForIP), `${zeroes:x/b:K}` (the pod's address with
/// its K low bits zeroed, as cyclonus' MakeCIDRFromZeroes), and
/// `${fam:<IPv4 text>|<IPv6 text>}`.
fn template(t: &str, fam: Fam, addr: AddrOf) -> String {
    let bits: u8 = match fam {
        Fam::V4 => 32,
        Fam::V6 => 128,
    };
    let net = |pod: &str, prefix: u8| {
        ipnet::IpNet::new(addr(pod, fam), prefix)
            .unwrap()
            .trunc()
            .to_string()
    };
    match t.split_once(':') {
        None if t == "hostmask" => bits.to_string(),
        Some(("ip", pod)) => addr(pod, fam).to_string(),
        Some(("large", pod)) => net(pod, 4),
        Some(("zeroes", arg)) => {
            let (pod, k) = arg.rsplit_once(':').expect("${zeroes:ns/pod:K}");
            net(pod, bits - k.parse::<u8>().expect("zeroes: K"))
        }
        Some(("fam", alternatives)) => {
            let (v4, v6) = alternatives.split_once('|').expect("${fam:v4|v6}");
            match fam {
                Fam::V4 => v4.to_string(),
                Fam::V6 => v6.to_string(),
            }
        }
        _ => panic!("unknown template ${{{t}}}"),
    }
}

/// What exists for Kubernetes during a case, apart from the lab: pods and
/// namespaces with their labels, and the policies. Steps change it; the
/// lab's manifests, the evaluator and the probes follow it.
struct State {
    policies: BTreeMap<(String, String), Value>,
    /// ClusterNetworkPolicies by name.
    cluster_policies: BTreeMap<String, Value>,
    /// The pods that exist for Kubernetes (`ns/pod`): the base pods and
    /// the extra pods created and not deleted since.
    pods: BTreeSet<String>,
    /// The namespaces that exist for Kubernetes.
    namespaces: BTreeSet<String>,
    /// The labels of every lab pod (`ns/pod`), existing or not.
    pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// The labels of x, y, z and of the namespaces created so far.
    ns_labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl State {
    /// Where every case starts: x, y, z with a, b, c, no policy.
    fn new() -> State {
        State {
            policies: BTreeMap::new(),
            cluster_policies: BTreeMap::new(),
            pods: base_pods().into_iter().collect(),
            namespaces: NAMESPACES.iter().map(|n| n.to_string()).collect(),
            pod_labels: description()
                .pods
                .iter()
                .map(|p| (format!("{}/{}", p.namespace, p.name), p.labels.clone()))
                .collect(),
            ns_labels: NAMESPACES
                .iter()
                .map(|n| (n.to_string(), base_ns_labels(n)))
                .collect(),
        }
    }

    /// Where `case` starts.
    fn start(case: &Case, fam: Fam, addr: AddrOf) -> State {
        let mut s = State::new();
        if case.houses {
            s.apply(&houses(), fam, addr);
        }
        s
    }

    fn apply(&mut self, step: &Step, fam: Fam, addr: AddrOf) {
        for (ns, labels) in &step.create_namespaces {
            assert!(
                EXTRA_PODS.iter().any(|(n, _, _)| n == ns),
                "create namespace {ns}: the lab has no pod for it"
            );
            assert!(
                self.namespaces.insert(ns.clone()),
                "create namespace {ns}: it exists"
            );
            self.ns_labels.insert(ns.clone(), labels.clone());
        }
        for (pod, labels) in &step.create_pods {
            let (ns, p) = pod.split_once('/').expect("create_pods: ns/pod");
            assert!(
                EXTRA_PODS.iter().any(|(n, q, _)| (*n, *q) == (ns, p)),
                "create pod {pod}: not a lab pod that can be created"
            );
            assert!(
                self.namespaces.contains(ns),
                "create pod {pod}: no namespace {ns}"
            );
            assert!(self.pods.insert(pod.clone()), "create pod {pod}: it exists");
            self.pod_labels.insert(pod.clone(), labels.clone());
        }
        if step.delete_all {
            self.policies.clear();
            self.cluster_policies.clear();
        }
        for d in &step.delete {
            let (ns, name) = d.split_once('/').expect("delete: ns/name");
            assert!(
                self.policies.remove(&(ns.into(), name.into())).is_some(),
                "delete {d}: no such policy"
            );
        }
        for name in &step.cluster_delete {
            assert!(
                self.cluster_policies.remove(name).is_some(),
                "cluster_delete {name}: no such ClusterNetworkPolicy"
            );
        }
        for doc in step.create.iter().chain(&step.update) {
            let spec: Value =
                serde_json::from_str(&expand(&doc.spec.to_string(), fam, addr)).unwrap();
            let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                "metadata": {"name": doc.name, "namespace": doc.namespace},
                                "spec": spec});
            self.policies
                .insert((doc.namespace.clone(), doc.name.clone()), policy);
        }
        for (docs, create) in [(&step.cluster_create, true), (&step.cluster_update, false)] {
            for doc in docs {
                assert_eq!(
                    self.cluster_policies.contains_key(&doc.name),
                    !create,
                    "ClusterNetworkPolicy {}: cluster_create is for new ones, cluster_update for existing ones",
                    doc.name
                );
                let spec: Value =
                    serde_json::from_str(&expand(&doc.spec.to_string(), fam, addr)).unwrap();
                let policy = json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
                                    "kind": "ClusterNetworkPolicy",
                                    "metadata": {"name": doc.name},
                                    "spec": spec});
                self.cluster_policies.insert(doc.name.clone(), policy);
            }
        }
        for (pod, labels) in &step.pod_labels {
            assert!(self.pod_labels.contains_key(pod), "no pod {pod}");
            self.pod_labels.insert(pod.clone(), labels.clone());
        }
        for (ns, labels) in &step.namespace_labels {
            self.ns_labels.insert(ns.clone(), labels.clone());
        }
        for pod in &step.delete_pods {
            assert!(self.pods.remove(pod), "delete pod {pod}: no such pod");
        }
        for ns in &step.delete_namespaces {
            assert!(
                self.namespaces.remove(ns),
                "delete namespace {ns}: no such namespace"
            );
            // Its pods and policies go with it.
            self.pods.retain(|p| !p.starts_with(&format!("{ns}/")));
            self.policies.retain(|(n, _), _| n != ns);
        }
    }

    fn model_pods(&self, fam: Fam, addr: AddrOf) -> BTreeMap<String, model::MPod> {
        let ports: Vec<(String, u16, String)> = port_specs()
            .iter()
            .map(|s| {
                (
                    s.name.clone().unwrap_or_default(),
                    s.port,
                    s.protocol.as_str().to_string(),
                )
            })
            .collect();
        self.pods
            .iter()
            .map(|key| {
                let (ns, _) = key.split_once('/').unwrap();
                let m = model::MPod {
                    ns: ns.to_string(),
                    labels: self.pod_labels[key].clone(),
                    ip: addr(key, fam),
                    ports: ports.clone(),
                    host: false,
                };
                (key.clone(), m)
            })
            .chain(NODES.iter().map(|n| {
                let key = format!("{NODE_PREFIX}{n}");
                let m = model::MPod {
                    ns: String::new(),
                    labels: model::Labels::new(),
                    ip: addr(&key, fam),
                    ports: Vec::new(),
                    host: true,
                };
                (key, m)
            }))
            .collect()
    }

    /// The lab nodes as Node objects: labels and both addresses.
    fn model_nodes(addr: AddrOf) -> Vec<model::MNode> {
        NODES
            .iter()
            .map(|n| {
                let key = format!("{NODE_PREFIX}{n}");
                model::MNode {
                    labels: node_labels(n),
                    ips: vec![addr(&key, Fam::V4), addr(&key, Fam::V6)],
                }
            })
            .collect()
    }

    fn model_namespaces(&self) -> BTreeMap<String, model::Labels> {
        self.namespaces
            .iter()
            .map(|n| {
                let mut l = self.ns_labels[n].clone();
                l.insert("kubernetes.io/metadata.name".into(), n.clone());
                (n.clone(), l)
            })
            .collect()
    }

    /// The probes of a check with their expectations: the hand table of
    /// `check` where given (a disagreement with the evaluator goes to
    /// `problems`), else the evaluator's. Between pods, or with
    /// `to_nodes` from every pod to every node.
    fn expectations(
        &self,
        check: Option<&Check>,
        pps: &[Pp],
        fams: &[Fam],
        addr: AddrOf,
        to_nodes: bool,
        problems: &mut Vec<String>,
    ) -> Vec<Probe> {
        let policies: Vec<NetworkPolicy> = self
            .policies
            .values()
            .map(|v| serde_json::from_value(v.clone()).expect("policy parses"))
            .collect();
        let cluster_policies: Vec<model::ClusterPolicy> = self
            .cluster_policies
            .values()
            .map(model::ClusterPolicy::from_object)
            .collect();
        let namespaces = self.model_namespaces();
        let nodes = Self::model_nodes(addr);
        let world = model::World {
            namespaces: &namespaces,
            policies: &policies,
            cluster_policies: &cluster_policies,
            nodes: &nodes,
        };
        let targets: Vec<String> = if to_nodes {
            NODES.iter().map(|n| format!("{NODE_PREFIX}{n}")).collect()
        } else {
            self.pods.iter().cloned().collect()
        };
        let mut probes = Vec::new();
        for &fam in fams {
            let mpods = self.model_pods(fam, addr);
            for pp in pps {
                for from in &self.pods {
                    for to in &targets {
                        if from == to {
                            continue; // loopback: ignored, as upstream does
                        }
                        let predicted = model::allowed(
                            &world,
                            &mpods[from],
                            &mpods[to],
                            pp.port,
                            pp.proto.as_str(),
                        );
                        let want = match check {
                            Some(c) => {
                                let hand = hand_table(c, from, to);
                                if hand != predicted {
                                    problems.push(format!(
                                        "truth table says {from} -> {to} {} {} is {}, the evaluator says {}",
                                        pp.label(),
                                        fam.name(),
                                        verdict(hand),
                                        verdict(predicted)
                                    ));
                                }
                                hand
                            }
                            None => predicted,
                        };
                        probes.push(Probe {
                            from: from.clone(),
                            to: to.clone(),
                            fam,
                            pp: *pp,
                            want,
                        });
                    }
                }
            }
        }
        probes
    }
}

/// Whether a case's policies name pod addresses (then it runs once per
/// family).
fn uses_addresses(case: &Case) -> bool {
    case.steps.iter().any(|s| {
        s.create
            .iter()
            .chain(&s.update)
            .map(|d| &d.spec)
            .chain(
                s.cluster_create
                    .iter()
                    .chain(&s.cluster_update)
                    .map(|d| &d.spec),
            )
            .any(|spec| spec.to_string().contains("${"))
    })
}

/// How a case's objects reach the agents: the one thing the two modes do
/// differently.
enum Source {
    /// Manifest files the agents read (`--manifests DIR`).
    Manifests,
    /// A real API server the agents watch (`kubernetes.rs`).
    Kubernetes(Box<kubernetes::Cluster>),
}

struct Env {
    /// Each node's host-network servers ([`HOST_PORTS`]; dropped before
    /// the lab).
    _node_servers: Vec<Servers>,
    app: AppLab,
    dirs: Vec<NodeDirs>,
    agents: Vec<Agent>,
    source: Source,
    state: State,
    /// The last source port a UDP or SCTP probe used, by (from, to,
    /// protocol, port).
    source_ports: std::cell::RefCell<BTreeMap<(String, IpAddr, Protocol, u16), u16>>,
}

/// Pod `ns/pod`'s (or node `node/<name>`'s) address in the lab.
fn lab_addr(app: &AppLab, pod: &str, fam: Fam) -> IpAddr {
    if let Some(n) = pod.strip_prefix(NODE_PREFIX) {
        let node = app.lab().node(n);
        return match fam {
            Fam::V4 => node.ipv4().into(),
            Fam::V6 => node.ipv6().into(),
        };
    }
    let (n, p) = pod.split_once('/').unwrap();
    let lp = app.pod(n, p);
    match fam {
        Fam::V4 => lp.ipv4().into(),
        Fam::V6 => lp.ipv6().into(),
    }
}

impl Env {
    fn addr(&self, pod: &str, fam: Fam) -> IpAddr {
        lab_addr(&self.app, pod, fam)
    }

    /// Gives the lab the labels of the state, for its manifests.
    fn push_labels(&mut self) {
        for (pod, labels) in &self.state.pod_labels {
            let (ns, p) = pod.split_once('/').unwrap();
            assert!(
                self.app.set_pod_labels(ns, p, labels.clone()),
                "no pod {pod}"
            );
        }
        for (ns, labels) in &self.state.ns_labels {
            self.app.set_namespace_labels(ns, labels.clone());
        }
    }

    /// The manifests of the namespaces and pods that exist, and of the
    /// nodes.
    fn manifests(&self) -> Vec<Value> {
        self.app
            .manifests()
            .into_iter()
            .chain(node_docs(&self.app))
            .filter(|doc| {
                let name = doc["metadata"]["name"].as_str().unwrap_or_default();
                match doc["kind"].as_str() {
                    Some("Namespace") => self.state.namespaces.contains(name),
                    Some("Pod") => {
                        let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
                        self.state.pods.contains(&format!("{ns}/{name}"))
                    }
                    _ => true,
                }
            })
            .collect()
    }

    /// Checks that each agent enforces exactly the existing pods of its
    /// node, on their host interfaces, and has TCX links pinned on those
    /// interfaces only: a created pod is attached, a deleted one detached.
    fn check_endpoints(&self) -> Result<(), String> {
        for (a, d) in self.agents.iter().zip(&self.dirs) {
            let want: BTreeMap<String, String> = self
                .app
                .pods()
                .iter()
                .filter(|p| p.node == d.node)
                .map(|p| (format!("{}/{}", p.namespace, p.name), p))
                .filter(|(k, _)| self.state.pods.contains(k))
                .map(|(k, p)| (k, self.app.lab().pod(&p.lab_name).host_veth().to_string()))
                .collect();
            let status = a.status();
            let got: BTreeMap<String, String> = status
                .endpoints
                .iter()
                .map(|e| {
                    (
                        e.pod.clone(),
                        format!("{} {}", e.interface.as_deref().unwrap_or("-"), e.state),
                    )
                })
                .collect();
            let want_status: BTreeMap<String, String> = want
                .iter()
                .map(|(k, i)| (k.clone(), format!("{i} enforced")))
                .collect();
            if got != want_status {
                return Err(format!(
                    "node {}: agent endpoints {got:?}, expected {want_status:?}",
                    d.node
                ));
            }
            let pinned: BTreeSet<String> = std::fs::read_dir(d.bpffs.join("links"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            let want_pins: BTreeSet<String> = want
                .values()
                .flat_map(|i| [format!("{i}_from_pod"), format!("{i}_to_pod")])
                .collect();
            if pinned != want_pins {
                return Err(format!(
                    "node {}: pinned links {pinned:?}, expected {want_pins:?}",
                    d.node
                ));
            }
        }
        Ok(())
    }

    /// Hands the state's objects to the agents (manifest files, or API
    /// writes the agents are then seen to have read) and syncs every
    /// agent.
    fn sync(&mut self) -> Result<(), String> {
        self.push_labels();
        match &mut self.source {
            Source::Manifests => self.write_manifests(),
            Source::Kubernetes(cluster) => {
                let state = &self.state;
                let objects = kubernetes::objects(
                    &self.app,
                    &|ns| state.namespaces.contains(ns),
                    &|pod| state.pods.contains(pod),
                    state.policies.values().cloned(),
                    state.cluster_policies.values().cloned(),
                );
                cluster.deliver(&objects, &self.agents)?;
            }
        }
        for a in &self.agents {
            a.sync()
                .map_err(|e| format!("palisade sync: {e}\n{}", a.log_text()))?;
        }
        self.check_endpoints()
    }

    /// Writes the manifests of the state.
    fn write_manifests(&self) {
        let files: [(&str, Vec<Value>); 2] = [
            (
                "10-policies.yaml",
                self.state.policies.values().cloned().collect(),
            ),
            (
                "20-cluster-policies.yaml",
                self.state.cluster_policies.values().cloned().collect(),
            ),
        ];
        for d in &self.dirs {
            d.write("00-lab.yaml", &self.manifests());
            for (file, docs) in &files {
                if docs.is_empty() {
                    let _ = std::fs::remove_file(d.manifests.join(file));
                } else {
                    d.write(file, docs);
                }
            }
        }
    }
}

/// One probe of a check, with its expectation.
struct Probe {
    from: String,
    to: String,
    fam: Fam,
    pp: Pp,
    want: bool,
}

struct Outcome {
    probes: usize,
    problems: Vec<String>,
    /// How many of the problems are hand tables the evaluator disputes (a
    /// mistake in the case, never the agent's).
    disputed: usize,
}

fn run_check(
    env: &Env,
    check: Option<&Check>,
    pps: &[Pp],
    fams: &[Fam],
    to_nodes: bool,
    out: &mut Outcome,
) {
    let addr = |pod: &str, fam: Fam| env.addr(pod, fam);
    let before = out.problems.len();
    let probes = env
        .state
        .expectations(check, pps, fams, &addr, to_nodes, &mut out.problems);
    out.disputed += out.problems.len() - before;
    // Connectionless probes each get a source port no earlier probe of the
    // same pair, protocol and port used: a datagram on the tuple of a flow
    // an earlier probe left answered belongs to that flow (and with
    // `--ct-revalidate=false` passes as it), so it would not be a new flow.
    // A TCP SYN is judged as new whatever its port.
    let mut source_ports = env.source_ports.borrow_mut();
    let sports: Vec<u16> = probes
        .iter()
        .map(|p| {
            let dst = env.addr(&p.to, p.fam);
            let next = source_ports
                .entry((p.from.clone(), dst, p.pp.proto, p.pp.port))
                .or_insert(0);
            *next += 1;
            // 28 000 probes of one tuple before a port comes back: more
            // than a run makes.
            32_768 + *next % 28_000
        })
        .collect();
    drop(source_ports);
    let specs: Vec<ProbeSpec> = probes
        .iter()
        .zip(&sports)
        .map(|(p, &sport)| {
            let (n, name) = p.from.split_once('/').unwrap();
            let src = env.app.pod(n, name);
            let dst = env.addr(&p.to, p.fam);
            let s = match p.pp.proto {
                Protocol::Tcp => ProbeSpec::tcp(src, dst, p.pp.port),
                Protocol::Udp => ProbeSpec::udp_from(src, sport, dst, p.pp.port),
                Protocol::Sctp => ProbeSpec::new(
                    src,
                    dst,
                    ProbeKind::Sctp {
                        sport,
                        dport: p.pp.port,
                    },
                ),
            };
            s.timeout(if p.want {
                ANSWER_TIMEOUT
            } else {
                DEFAULT_TIMEOUT
            })
        })
        .collect();
    let results = probe_all(&specs);
    out.probes += probes.len();
    for (p, r) in probes.iter().zip(&results) {
        if let ProbeResult::Failed(e) = r {
            out.problems.push(format!("probe could not run: {e}"));
        } else if r.reached() != p.want {
            out.problems.push(format!(
                "{} -> {} {} {}: expected {}, observed {} ({r:?})",
                p.from,
                p.to,
                p.pp.label(),
                p.fam.name(),
                verdict(p.want),
                verdict(r.reached())
            ));
        }
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "blocked" }
}

/// What a step probes: its checks (each with its hand table), or else the
/// ports/protocols of `probe` (all by default) with the evaluator's table.
fn step_checks<'a>(case: &Case, step: &'a Step) -> Vec<(Option<&'a Check>, Vec<Pp>)> {
    if step.checks.is_empty() {
        let pps = if step.probe.is_empty() {
            Pp::all()
        } else {
            step.probe.iter().map(|s| Pp::parse(s)).collect()
        };
        return vec![(None, pps)];
    }
    assert!(step.probe.is_empty(), "{}: probe and checks", case.name);
    step.checks
        .iter()
        .map(|c| (Some(c), c.probe.iter().map(|s| Pp::parse(s)).collect()))
        .collect()
}

fn run_case(env: &mut Env, case: &Case, fams: &[Fam]) -> Outcome {
    let mut out = Outcome {
        probes: 0,
        problems: Vec::new(),
        disputed: 0,
    };
    let app = &env.app;
    let addr = |pod: &str, fam: Fam| lab_addr(app, pod, fam);
    env.state = State::start(case, fams[0], &addr);
    for (i, step) in case.steps.iter().enumerate() {
        let app = &env.app;
        let addr = |pod: &str, fam: Fam| lab_addr(app, pod, fam);
        env.state.apply(step, fams[0], &addr);
        if let Err(e) = env.sync() {
            out.problems.push(format!("step {}: {e}", i + 1));
            return out;
        }
        let before = out.problems.len();
        for (check, pps) in step_checks(case, step) {
            run_check(env, check, &pps, fams, step.to_nodes, &mut out);
        }
        for p in &mut out.problems[before..] {
            *p = format!("step {}: {p}", i + 1);
        }
    }
    out
}

/// The cases of `cases.yaml`, then the generated ones, then the
/// ClusterNetworkPolicy cases of `cluster_cases.yaml`.
fn all_cases() -> Vec<Case> {
    let mut cases: Vec<Case> =
        serde_yaml_ng::from_str(include_str!("cases.yaml")).expect("cases.yaml parses");
    cases.extend(cyclonus::cases());
    cases.extend(cluster_cases());
    cases
}

fn cluster_cases() -> Vec<Case> {
    serde_yaml_ng::from_str(include_str!("cluster_cases.yaml")).expect("cluster_cases.yaml parses")
}

/// The ClusterNetworkPolicy conformance tests of network-policy-api v0.2.0
/// (`conformance/tests`, by ShortName) that `cluster_cases.yaml` ports, one
/// case each.
const CLUSTER_PORTED: [&str; 24] = [
    "CNPAdminTierIngressTCP",
    "CNPAdminTierIngressUDP",
    "CNPAdminTierIngressSCTP",
    "CNPAdminTierEgressTCP",
    "CNPAdminTierEgressUDP",
    "CNPAdminTierEgressSCTP",
    "CNPAdminTierGress",
    "CNPAdminTierEgressInlineCIDRPeers",
    "CNPAdminTierPriorityField",
    "CNPAdminTierIntegration",
    "CNPAdminTierEgressNamedPort",
    "CNPAdminTierIngressNamedPort",
    "CNPAdminTierEgressNodePeers",
    "CNPBaselineTierIngressTCP",
    "CNPBaselineTierIngressUDP",
    "CNPBaselineTierIngressSCTP",
    "CNPBaselineTierEgressTCP",
    "CNPBaselineTierEgressUDP",
    "CNPBaselineTierEgressSCTP",
    "CNPBaselineTierGress",
    "CNPBaselineTierEgressInlineCIDRPeers",
    "CNPBaselineTierEgressNamedPort",
    "CNPBaselineTierIngressNamedPort",
    "CNPBaselineTierEgressNodePeers",
];

/// Needs no root: case names are unique (the filter can pick any one), the
/// generated cases per upstream file are as `cyclonus.rs` lists them, and
/// `cluster_cases.yaml` ports each upstream test of [`CLUSTER_PORTED`] once.
#[test]
fn cases_are_well_formed() {
    let cases = all_cases();
    let mut names = BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name.as_str()), "duplicate case {}", c.name);
        assert!(!c.steps.is_empty(), "{}: no steps", c.name);
    }
    let counts = cyclonus::counts(&cases);
    let want: BTreeMap<String, usize> = [
        ("targetcases.go", 6),
        ("rulescases.go", 4),
        ("peerscases.go", 112),
        ("portprotocolcases.go", 70),
        ("examplecases.go", 1),
        ("actioncases.go", 6),
        ("conflictcases.go", 16),
        ("namespacecases.go", 2),
    ]
    .into_iter()
    .map(|(f, n)| (f.to_string(), n))
    .collect();
    assert_eq!(counts, want);
    let ported: Vec<&str> = cluster_cases()
        .iter()
        .filter_map(|c| {
            c.source
                .strip_prefix("network-policy-api v0.2.0 conformance/tests ")
                .map(|r| r.split(' ').next().unwrap())
                .map(|f| CLUSTER_PORTED.into_iter().find(|p| *p == f).unwrap_or("?"))
        })
        .collect();
    let mut sorted = ported.clone();
    sorted.sort();
    let mut want: Vec<&str> = CLUSTER_PORTED.to_vec();
    want.sort();
    assert_eq!(sorted, want, "upstream tests ported by cluster_cases.yaml");
}

/// Needs no root: every hand-written truth table (upstream's, mapped onto
/// our model, and our own) agrees with the evaluator (which reads every
/// case's policies, hand table or not), each step's state
/// built as the suite builds it, with addresses laid out as the lab lays
/// them (node i, k-th pod: 198.18.i.k, 2001:db8:i::k).
#[test]
fn truth_tables_agree_with_evaluator() {
    let d = description();
    let mut next: BTreeMap<&str, u8> = BTreeMap::new();
    let mut slot: BTreeMap<String, (u8, u8)> = BTreeMap::new();
    for p in &d.pods {
        let node = p.node.as_deref().unwrap();
        let i = NODES.iter().position(|n| *n == node).unwrap() as u8 + 1;
        let k = next.entry(node).or_insert(FIRST_POD);
        slot.insert(format!("{}/{}", p.namespace, p.name), (i, *k));
        *k += 1;
    }
    let addr = |pod: &str, fam: Fam| -> IpAddr {
        if let Some(n) = pod.strip_prefix(NODE_PREFIX) {
            let i = NODES.iter().position(|m| *m == n).unwrap() as u8 + 1;
            return match fam {
                Fam::V4 => node_v4(i).into(),
                Fam::V6 => node_v6(i).into(),
            };
        }
        let (i, k) = slot[pod];
        match fam {
            Fam::V4 => pod_v4(i, k).into(),
            Fam::V6 => pod_v6(i, k).into(),
        }
    };
    let mut problems = Vec::new();
    let mut tables = 0;
    for case in all_cases() {
        for fam in [Fam::V4, Fam::V6] {
            let mut state = State::start(&case, fam, &addr);
            for (i, step) in case.steps.iter().enumerate() {
                state.apply(step, fam, &addr);
                for (check, pps) in step_checks(&case, step) {
                    // Without a hand table, the evaluator's still runs:
                    // a policy it cannot read fails here.
                    tables += usize::from(check.is_some());
                    let mut p = Vec::new();
                    state.expectations(check, &pps, &[fam], &addr, step.to_nodes, &mut p);
                    problems.extend(
                        p.into_iter()
                            .map(|p| format!("{} step {}: {p}", case.name, i + 1)),
                    );
                }
            }
        }
    }
    assert!(tables > 0);
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The suite's results so far.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    /// Failed cases (`name [families] (mode)`).
    failures: Vec<String>,
    /// Cases marked `known_failure` that failed, with the reason.
    known: Vec<String>,
    /// Cases marked `known_failure` that passed.
    unexpected_passes: Vec<String>,
    /// (passed, failed, known failures) by connection-tracking mode and
    /// families (`v4`, `v6`, `v4+v6`).
    by_run: BTreeMap<(String, String), (usize, usize, usize)>,
    /// Cases not run in this mode, with the reason.
    skipped: Vec<String>,
}

/// How the agents get their objects, as the suite runs them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Manifests,
    Kubernetes,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Manifests => "manifests",
            Mode::Kubernetes => "kubernetes",
        }
    }
}

/// Why a case cannot run in Kubernetes mode: the field came with 1.21, and
/// the 1.20 API server drops it from the policy it stores (checked when the
/// mode starts), so the agents would enforce a different policy.
const END_PORT_1_21: &str =
    "NetworkPolicy endPort came with Kubernetes 1.21: the 1.20 API server drops it";

/// Cases that run in manifests mode only, with the reason: what the
/// Kubernetes mode's API server (1.20) cannot hold.
/// `manifests_only_cases_are_listed` checks the list against the cases.
const MANIFESTS_ONLY: [(&str, &str); 13] = [
    ("ports-end-port", END_PORT_1_21),
    ("cyclonus-ports-ingress-tcp-53-80", END_PORT_1_21),
    ("cyclonus-ports-ingress-tcp-53-84", END_PORT_1_21),
    ("cyclonus-ports-ingress-udp-53-80", END_PORT_1_21),
    ("cyclonus-ports-ingress-udp-53-84", END_PORT_1_21),
    ("cyclonus-ports-ingress-sctp-53-80", END_PORT_1_21),
    ("cyclonus-ports-ingress-sctp-53-84", END_PORT_1_21),
    ("cyclonus-ports-egress-tcp-53-80", END_PORT_1_21),
    ("cyclonus-ports-egress-tcp-53-84", END_PORT_1_21),
    ("cyclonus-ports-egress-udp-53-80", END_PORT_1_21),
    ("cyclonus-ports-egress-udp-53-84", END_PORT_1_21),
    ("cyclonus-ports-egress-sctp-53-80", END_PORT_1_21),
    ("cyclonus-ports-egress-sctp-53-84", END_PORT_1_21),
];

/// Why `case` does not run in `mode`, if it does not.
fn not_in_mode(case: &Case, mode: Mode) -> Option<&'static str> {
    if mode != Mode::Kubernetes {
        return None;
    }
    MANIFESTS_ONLY
        .iter()
        .find(|(name, _)| case.name == *name)
        .map(|(_, why)| *why)
}

/// Needs no root: the cases [`MANIFESTS_ONLY`] keeps out of Kubernetes
/// mode are exactly those whose policies use a field the 1.20 API server
/// drops (`endPort`), and each entry names a case.
#[test]
fn manifests_only_cases_are_listed() {
    let cases = all_cases();
    let listed: BTreeSet<&str> = MANIFESTS_ONLY.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        listed.len(),
        MANIFESTS_ONLY.len(),
        "MANIFESTS_ONLY repeats a case"
    );
    let using: BTreeSet<&str> = cases
        .iter()
        .filter(|c| {
            c.steps.iter().any(|s| {
                s.create
                    .iter()
                    .chain(&s.update)
                    .any(|d| d.spec.to_string().contains("\"endPort\""))
            })
        })
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        listed, using,
        "MANIFESTS_ONLY against the cases using endPort"
    );
}

/// Manifests mode, both connection-tracking modes.
#[test]
fn conformance() {
    run_suite(Mode::Manifests);
}

/// Kubernetes mode: the agents watch a real kube-apiserver 1.20.2 (one for
/// every case) with the shipped RBAC; in the default connection-tracking
/// mode only ([`KUBERNETES_CT_MODE`]).
#[test]
fn conformance_kubernetes() {
    if palisade_lab::apiserver::skip_without_apiserver("conformance_kubernetes") {
        return;
    }
    run_suite(Mode::Kubernetes);
}

/// Kubernetes mode runs the agents' default connection-tracking mode only,
/// what a deployment runs: the mode changes the datapath, which manifests
/// mode covers in both, not how objects reach the agents, and one mode
/// keeps CI's wall time bounded.
const KUBERNETES_CT_MODE: &str = "revalidate";

/// The two suite tests share the machine's two cores and probe timeouts:
/// one at a time.
static ONE_SUITE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_suite(mode: Mode) {
    let _one = ONE_SUITE.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let cases = all_cases();
    let filter = std::env::var("PALISADE_CONFORMANCE_FILTER").unwrap_or_default();
    let tag = match mode {
        Mode::Manifests => "pcf",
        Mode::Kubernetes => "pck",
    };
    let prefix = format!("{tag}{}", std::process::id() % 100_000);
    let app = AppLab::up(&description(), &prefix).expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<NodeDirs> = NODES
        .iter()
        .map(|n| NodeDirs::new(tmp.path(), &bpffs, n))
        .collect();
    let source = match mode {
        Mode::Manifests => Source::Manifests,
        Mode::Kubernetes => {
            let cluster = kubernetes::Cluster::start();
            // The lab nodes do not change: created once, before any agent.
            cluster
                .create_nodes(&node_docs(&app))
                .unwrap_or_else(|e| panic!("the lab's Node objects: {e}"));
            Source::Kubernetes(Box::new(cluster))
        }
    };
    let services = HOST_PORTS
        .iter()
        .fold(Services::new(), |s, &p| s.tcp(p).udp(p).sctp(p));
    let node_servers = NODES
        .iter()
        .map(|n| serve(app.lab().node(n), &services).expect("node servers"))
        .collect();
    let mut env = Env {
        app,
        _node_servers: node_servers,
        dirs,
        agents: Vec::new(),
        source,
        state: State::new(),
        source_ports: Default::default(),
    };
    // The objects every case starts from, before any agent runs.
    env.sync()
        .unwrap_or_else(|e| panic!("the starting objects: {e}"));
    println!(
        "conformance ({}): lab up with {} pods ({} of them created by steps) on {} nodes in {:.1} s",
        mode.name(),
        env.app.pods().len(),
        EXTRA_PODS.len(),
        NODES.len(),
        started.elapsed().as_secs_f64()
    );
    let only = std::env::var("PALISADE_CONFORMANCE_CT").unwrap_or_default();
    let ct_modes: Vec<_> = CT_MODES
        .iter()
        .filter(|(name, _)| mode == Mode::Manifests || *name == KUBERNETES_CT_MODE)
        .filter(|(name, _)| only.is_empty() || only == *name)
        .collect();
    if ct_modes.is_empty() {
        println!(
            "conformance ({}): PALISADE_CONFORMANCE_CT={only:?}: not run",
            mode.name()
        );
        return;
    }
    let mut tally = Tally::default();
    for (ct, args) in ct_modes {
        let t = Instant::now();
        // Stop the previous mode's agents first: one agent per node.
        env.agents.clear();
        let nodes: Vec<&palisade_lab::Node> = NODES.iter().map(|n| env.app.lab().node(n)).collect();
        env.agents = match &mut env.source {
            Source::Manifests => nodes
                .iter()
                .zip(&env.dirs)
                .map(|(n, d)| Agent::start(n, d, args))
                .collect(),
            Source::Kubernetes(cluster) => nodes
                .iter()
                .zip(&env.dirs)
                .map(|(n, d)| cluster.start_agent(n, d, args))
                .collect(),
        };
        println!(
            "conformance ({}): connection tracking {ct} (agent arguments {args:?})",
            mode.name()
        );
        run_cases(&mut env, &cases, &filter, mode, ct, &mut tally);
        println!(
            "conformance ({}): connection tracking {ct}: {:.1} s",
            mode.name(),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "conformance ({}): total {:.1} s",
        mode.name(),
        started.elapsed().as_secs_f64()
    );
    if let Source::Kubernetes(cluster) = &env.source {
        println!("conformance (kubernetes): {}", cluster.fence_report());
    }
    if !tally.skipped.is_empty() {
        println!(
            "conformance ({}): {} cases not in this mode (the skip lines above say why)",
            mode.name(),
            tally.skipped.len()
        );
    }
    for k in &tally.known {
        println!("conformance: known failure: {k}");
    }
    for k in &tally.unexpected_passes {
        println!("conformance: passed though marked known_failure (remove the mark?): {k}");
    }
    for ((ct, fams), (passed, failed, known)) in &tally.by_run {
        println!(
            "conformance ({}): {ct} [{fams}]: {passed} passed, {failed} failed, {known} known failures",
            mode.name()
        );
    }
    println!(
        "conformance ({}): {} passed, {} failed",
        mode.name(),
        tally.passed,
        tally.failed
    );
    assert!(
        tally.passed + tally.failed + tally.known.len() > 0,
        "no case matched {filter:?}"
    );
    assert!(
        tally.failures.is_empty(),
        "failed cases: {:?}",
        tally.failures
    );
}

/// Runs the cases matching `filter` against the running agents.
fn run_cases(env: &mut Env, cases: &[Case], filter: &str, mode: Mode, ct: &str, tally: &mut Tally) {
    for case in cases.iter().filter(|c| c.name.contains(filter)) {
        if let Some(why) = not_in_mode(case, mode) {
            tally.skipped.push(format!("{}: {why}", case.name));
            println!("skip {:<44} {why}", case.name);
            continue;
        }
        // Cases whose policies name pod addresses run once per family;
        // the others probe both families in one run.
        let runs: Vec<Vec<Fam>> = if uses_addresses(case) {
            vec![vec![Fam::V4], vec![Fam::V6]]
        } else {
            vec![vec![Fam::V4, Fam::V6]]
        };
        for fams in runs {
            let t = Instant::now();
            let out = run_case(env, case, &fams);
            let fam_label: Vec<&str> = fams.iter().map(|f| f.name()).collect();
            let ok = out.problems.is_empty();
            let label = format!(
                "{} [{}] ({}, {ct})",
                case.name,
                fam_label.join("+"),
                mode.name()
            );
            let run = tally
                .by_run
                .entry((ct.to_string(), fam_label.join("+")))
                .or_default();
            match (ok, case.known_failure.is_some() && out.disputed == 0) {
                (true, _) => run.0 += 1,
                (false, false) => run.1 += 1,
                (false, true) => run.2 += 1,
            }
            // A known failure is the agent's: a hand table the evaluator
            // disputes fails whatever the mark.
            let known = case.known_failure.as_ref().filter(|_| out.disputed == 0);
            println!(
                "{} {:<44} [{}] {:>4} probes {:>5.1} s  {}",
                match (ok, known) {
                    (true, None) => "ok  ",
                    (true, Some(_)) => "XPAS",
                    (false, None) => "FAIL",
                    (false, Some(_)) => "KNOW",
                },
                case.name,
                fam_label.join("+"),
                out.probes,
                t.elapsed().as_secs_f64(),
                case.source
            );
            if let (false, Some(why)) = (ok, known) {
                println!("       known failure: {why}");
            }
            for p in out.problems.iter().take(12) {
                println!("       {p}");
            }
            if out.problems.len() > 12 {
                println!("       … {} more", out.problems.len() - 12);
            }
            match (ok, known) {
                (true, None) => tally.passed += 1,
                (true, Some(_)) => {
                    tally.passed += 1;
                    tally.unexpected_passes.push(label);
                }
                (false, None) => {
                    tally.failed += 1;
                    tally.failures.push(label);
                }
                (false, Some(why)) => tally.known.push(format!("{label}: {why}")),
            }
        }
    }
}
