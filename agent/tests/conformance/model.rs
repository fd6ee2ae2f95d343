//! An independent evaluator of NetworkPolicy v1 (as cyclonus' matcher)
//! and ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`, from the
//! API's documented semantics): given namespaces, pods (labels, addresses,
//! named ports) and policies, is a connection from pod `src` to pod `dst`
//! (or to an address of a node) on (port, protocol) allowed? It computes the truth tables of the
//! cyclonus generator's cases (`cyclonus.rs`) and of our own, and
//! cross-checks the hand-written upstream tables. It shares no code with
//! the compiler: it reads ClusterNetworkPolicies with its own types.
//!
//! Each direction is judged on its own, egress at `src` then ingress at
//! `dst`, and both must allow. In a direction, for the pod at that end:
//! 1. Admin tier: the Admin policies whose subject selects the pod, by
//!    ascending priority (ties by name, Palisade's deterministic order),
//!    each one's rules of that direction in order; the first rule whose
//!    peers and protocols match decides: Accept allows (NetworkPolicy and
//!    Baseline are skipped), Deny denies, Pass skips the rest of the Admin
//!    tier.
//! 2. NetworkPolicy: if any NetworkPolicy selects the pod for that
//!    direction, they decide (some rule of one of them must allow).
//! 3. Baseline tier, the same walk as Admin: Deny denies; Accept or Pass
//!    allows.
//! 4. Else allowed.
//!
//! Peers: `namespaces` (every pod of the selected namespaces), `pods`
//! (namespace AND pod selector), `networks` (CIDRs, which match pod
//! addresses too). Protocols: none matches every port of every protocol;
//! else any entry: `tcp`/`udp`/`sctp` with a destination port `number`
//! or `range` (inclusive; the CRD requires one of them), or a
//! `destinationNamedPort`, resolved on the destination pod (its port of
//! that name, on that port's protocol). `nodes` (egress only): every
//! address in `status.addresses` of every Node its selector selects
//! (empty: every node), whatever is behind the address. `domainNames`
//! peers are not modelled (Palisade rejects them).
//!
//! A destination that is a node's address (a host-networked server) is
//! not a pod: no ingress policy applies to it, pod and namespace peers
//! never match it, `networks`/`ipBlock` and `nodes` peers do.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

pub type Labels = BTreeMap<String, String>;

/// A pod as the evaluator sees it.
pub struct MPod {
    pub ns: String,
    pub labels: Labels,
    pub ip: IpAddr,
    /// (name, port, protocol)
    pub ports: Vec<(String, u16, String)>,
    /// An address of a node, not a pod (`ns` and `labels` empty, no
    /// ports).
    pub host: bool,
}

/// A Node: its labels and the IP addresses of `status.addresses`.
pub struct MNode {
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
}

pub struct World<'a> {
    /// Namespace labels, including `kubernetes.io/metadata.name`.
    pub namespaces: &'a BTreeMap<String, Labels>,
    pub policies: &'a [NetworkPolicy],
    pub cluster_policies: &'a [ClusterPolicy],
    pub nodes: &'a [MNode],
}

/// A ClusterNetworkPolicy: its name and spec, in the evaluator's own types
/// (unknown fields are refused, so a typo in a case fails).
pub struct ClusterPolicy {
    pub name: String,
    pub spec: CnpSpec,
}

impl ClusterPolicy {
    /// From a whole object (`metadata.name`, `spec`).
    pub fn from_object(doc: &serde_json::Value) -> ClusterPolicy {
        let name = doc["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let spec = serde_json::from_value(doc["spec"].clone())
            .unwrap_or_else(|e| panic!("ClusterNetworkPolicy {name}: {e}"));
        ClusterPolicy { name, spec }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpSpec {
    /// `Admin` or `Baseline`.
    pub tier: String,
    pub priority: i32,
    pub subject: CnpSubject,
    #[serde(default)]
    pub ingress: Vec<CnpRule>,
    #[serde(default)]
    pub egress: Vec<CnpRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpSubject {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacedPod {
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    pub pod_selector: LabelSelector,
}

/// An ingress rule (`from`) or an egress rule (`to`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpRule {
    #[serde(default)]
    pub name: String,
    /// `Accept`, `Deny` or `Pass`.
    pub action: String,
    #[serde(default)]
    pub from: Vec<CnpPeer>,
    #[serde(default)]
    pub to: Vec<CnpPeer>,
    #[serde(default)]
    pub protocols: Vec<CnpProtocol>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpPeer {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
    #[serde(default)]
    pub networks: Vec<String>,
    pub nodes: Option<LabelSelector>,
    pub domain_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpProtocol {
    pub tcp: Option<CnpPorts>,
    pub udp: Option<CnpPorts>,
    pub sctp: Option<CnpPorts>,
    pub destination_named_port: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpPorts {
    pub destination_port: Option<CnpPort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpPort {
    pub number: Option<i32>,
    pub range: Option<CnpRange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpRange {
    pub start: i32,
    pub end: i32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Accept,
    Deny,
    Pass,
}

pub fn selects(sel: &LabelSelector, labels: &Labels) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    labels_ok && exprs_ok
}

fn types(p: &NetworkPolicy) -> (bool, bool) {
    let spec = p.spec.as_ref().expect("spec");
    match &spec.policy_types {
        Some(t) => (
            t.iter().any(|x| x == "Ingress"),
            t.iter().any(|x| x == "Egress"),
        ),
        None => (true, spec.egress.is_some()),
    }
}

fn ports_match(
    ports: &Option<Vec<NetworkPolicyPort>>,
    server: &MPod,
    port: u16,
    proto: &str,
) -> bool {
    let Some(ports) = ports.as_ref().filter(|p| !p.is_empty()) else {
        return true;
    };
    ports.iter().any(|p| {
        let pproto = p.protocol.as_deref().unwrap_or("TCP");
        if pproto != proto {
            return false;
        }
        match &p.port {
            None => true,
            Some(IntOrString::Int(n)) => match p.end_port {
                Some(end) => (*n..=end).contains(&i32::from(port)),
                None => *n == i32::from(port),
            },
            Some(IntOrString::String(name)) => server
                .ports
                .iter()
                .any(|(n, num, pr)| n == name && pr == proto && *num == port),
        }
    })
}

fn peer_matches(w: &World, peer: &NetworkPolicyPeer, policy_ns: &str, other: &MPod) -> bool {
    if let Some(b) = &peer.ip_block {
        let net: ipnet::IpNet = b.cidr.parse().expect("cidr");
        if !net.contains(&other.ip) {
            return false;
        }
        return !b.except.iter().flatten().any(|e| {
            let e: ipnet::IpNet = e.parse().expect("except cidr");
            e.contains(&other.ip)
        });
    }
    if other.host {
        return false;
    }
    let ns_ok = match &peer.namespace_selector {
        None => other.ns == policy_ns,
        Some(s) => selects(s, &w.namespaces[&other.ns]),
    };
    let pod_ok = peer
        .pod_selector
        .as_ref()
        .is_none_or(|s| selects(s, &other.labels));
    ns_ok && pod_ok
}

fn peers_match(
    w: &World,
    peers: &Option<Vec<NetworkPolicyPeer>>,
    policy_ns: &str,
    other: &MPod,
) -> bool {
    match peers.as_ref().filter(|p| !p.is_empty()) {
        None => true,
        Some(peers) => peers.iter().any(|p| peer_matches(w, p, policy_ns, other)),
    }
}

/// The NetworkPolicy tier for `pod` in one direction (`ingress`: `pod`
/// is the destination and `other` the source; else `pod` is the source):
/// `None` when no NetworkPolicy selects `pod` for that direction, else
/// whether one of their rules allows. `dst` resolves named ports.
fn np_direction(
    w: &World,
    pod: &MPod,
    other: &MPod,
    dst: &MPod,
    port: u16,
    proto: &str,
    ingress: bool,
) -> Option<bool> {
    let ns_of = |p: &NetworkPolicy| p.metadata.namespace.clone().unwrap_or_default();
    let selecting: Vec<&NetworkPolicy> = w
        .policies
        .iter()
        .filter(|p| ns_of(p) == pod.ns)
        .filter(|p| {
            p.spec
                .as_ref()
                .expect("spec")
                .pod_selector
                .as_ref()
                .is_none_or(|s| selects(s, &pod.labels))
        })
        .filter(|p| {
            let (i, e) = types(p);
            if ingress { i } else { e }
        })
        .collect();
    if selecting.is_empty() {
        return None;
    }
    Some(selecting.iter().any(|p| {
        let spec = p.spec.as_ref().unwrap();
        if ingress {
            spec.ingress.iter().flatten().any(|r| {
                ports_match(&r.ports, dst, port, proto) && peers_match(w, &r.from, &ns_of(p), other)
            })
        } else {
            spec.egress.iter().flatten().any(|r| {
                ports_match(&r.ports, dst, port, proto) && peers_match(w, &r.to, &ns_of(p), other)
            })
        }
    }))
}

fn namespaced_pod_selects(w: &World, sel: &NamespacedPod, pod: &MPod) -> bool {
    selects(&sel.namespace_selector, &w.namespaces[&pod.ns])
        && selects(&sel.pod_selector, &pod.labels)
}

fn subject_selects(w: &World, s: &CnpSubject, pod: &MPod) -> bool {
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => selects(ns, &w.namespaces[&pod.ns]),
        (None, Some(p)) => namespaced_pod_selects(w, p, pod),
        _ => panic!("a subject sets exactly one of namespaces, pods"),
    }
}

fn cluster_peer_matches(w: &World, peer: &CnpPeer, other: &MPod) -> bool {
    assert!(
        peer.domain_names.is_none(),
        "domainNames peers are not modelled"
    );
    let set = usize::from(peer.namespaces.is_some())
        + usize::from(peer.pods.is_some())
        + usize::from(peer.nodes.is_some())
        + usize::from(!peer.networks.is_empty());
    assert_eq!(set, 1, "a peer sets exactly one field");
    if let Some(sel) = &peer.nodes {
        return w
            .nodes
            .iter()
            .any(|n| selects(sel, &n.labels) && n.ips.contains(&other.ip));
    }
    if other.host && (peer.namespaces.is_some() || peer.pods.is_some()) {
        return false;
    }
    if let Some(ns) = &peer.namespaces {
        return selects(ns, &w.namespaces[&other.ns]);
    }
    if let Some(p) = &peer.pods {
        return namespaced_pod_selects(w, p, other);
    }
    peer.networks.iter().any(|c| {
        let net: ipnet::IpNet = c.parse().expect("networks: CIDR");
        net.contains(&other.ip)
    })
}

fn cluster_protocols_match(protocols: &[CnpProtocol], dst: &MPod, port: u16, proto: &str) -> bool {
    if protocols.is_empty() {
        return true;
    }
    protocols.iter().any(|p| {
        let by_proto = [("TCP", &p.tcp), ("UDP", &p.udp), ("SCTP", &p.sctp)];
        let set = by_proto.iter().filter(|(_, x)| x.is_some()).count()
            + usize::from(p.destination_named_port.is_some());
        assert_eq!(set, 1, "a protocol entry sets exactly one field");
        if let Some(name) = &p.destination_named_port {
            return dst
                .ports
                .iter()
                .any(|(n, num, pr)| n == name && pr == proto && *num == port);
        }
        by_proto.iter().any(|(pr, x)| {
            let Some(ports) = x else { return false };
            if *pr != proto {
                return false;
            }
            match &ports.destination_port {
                None => {
                    panic!("tcp, udp and sctp need a destinationPort (the CRD's MinProperties=1)")
                }
                Some(CnpPort {
                    number: Some(n),
                    range: None,
                }) => *n == i32::from(port),
                Some(CnpPort {
                    number: None,
                    range: Some(r),
                }) => (r.start..=r.end).contains(&i32::from(port)),
                Some(_) => panic!("a destinationPort sets exactly one of number, range"),
            }
        })
    })
}

/// The first matching rule's action in `tier` for `pod` in one direction
/// (see [`np_direction`] for the arguments), or `None` if no rule matches.
#[allow(clippy::too_many_arguments)]
fn tier_action(
    w: &World,
    tier: &str,
    pod: &MPod,
    other: &MPod,
    dst: &MPod,
    port: u16,
    proto: &str,
    ingress: bool,
) -> Option<Action> {
    let mut policies: Vec<&ClusterPolicy> = w
        .cluster_policies
        .iter()
        .filter(|p| p.spec.tier == tier && subject_selects(w, &p.spec.subject, pod))
        .collect();
    policies.sort_by(|a, b| (a.spec.priority, &a.name).cmp(&(b.spec.priority, &b.name)));
    for p in policies {
        let rules = if ingress {
            &p.spec.ingress
        } else {
            &p.spec.egress
        };
        for r in rules {
            let peers = if ingress { &r.from } else { &r.to };
            if peers.iter().any(|x| cluster_peer_matches(w, x, other))
                && cluster_protocols_match(&r.protocols, dst, port, proto)
            {
                return Some(match r.action.as_str() {
                    "Accept" => Action::Accept,
                    "Deny" => Action::Deny,
                    "Pass" => Action::Pass,
                    a => panic!("{}: rule {:?}: unknown action {a}", p.name, r.name),
                });
            }
        }
    }
    None
}

/// One direction through the tiers (see the module's documentation).
fn direction(
    w: &World,
    pod: &MPod,
    other: &MPod,
    dst: &MPod,
    port: u16,
    proto: &str,
    ingress: bool,
) -> bool {
    match tier_action(w, "Admin", pod, other, dst, port, proto, ingress) {
        Some(Action::Accept) => return true,
        Some(Action::Deny) => return false,
        Some(Action::Pass) | None => {}
    }
    if let Some(v) = np_direction(w, pod, other, dst, port, proto, ingress) {
        return v;
    }
    tier_action(w, "Baseline", pod, other, dst, port, proto, ingress) != Some(Action::Deny)
}

/// Whether `src` may open a connection to `dst` on `port`/`proto`.
pub fn allowed(w: &World, src: &MPod, dst: &MPod, port: u16, proto: &str) -> bool {
    for p in w.cluster_policies {
        assert!(
            matches!(p.spec.tier.as_str(), "Admin" | "Baseline"),
            "{}: unknown tier {}",
            p.name,
            p.spec.tier
        );
    }
    direction(w, src, dst, dst, port, proto, false)
        && (dst.host || direction(w, dst, src, dst, port, proto, true))
}
