//! proptest strategies for random clusters: namespaces, pods (labels,
//! named ports, v4/v6 addresses from small documentation ranges, local or
//! remote, some host-network or terminated), and policies (selectors with
//! every operator, ipBlocks with excepts that overlap across policies,
//! numeric, ranged and named ports, every policyTypes form), and
//! ClusterNetworkPolicies (both tiers, tied priorities, both subject kinds,
//! every peer kind but `domainNames`, numeric, ranged and named ports), and
//! Nodes (labels, v4/v6 addresses, some shared with this node or pods).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_compiler::api::ClusterNetworkPolicy;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use super::{Cluster, NODE, OTHER_NODE, ip};

pub const NAMESPACES: [&str; 3] = ["a", "b", "c"];
pub const POD_SLOTS: usize = 6;
pub const PROBE_PORTS: [u16; 9] = [9, 10, 53, 80, 81, 100, 180, 5353, 8080];

/// The `i`th v4/v6 address of the pod range (0..16), or the node's.
pub fn v4(i: u8) -> String {
    format!("192.0.2.{i}")
}
pub fn v6(i: u8) -> String {
    format!("2001:db8::{i:x}")
}
pub fn hosts() -> Vec<IpAddr> {
    vec![ip("192.0.2.15"), ip("2001:db8::f")]
}

fn kv_map(
    keys: &'static [&'static str],
    vals: &'static [&'static str],
    max: usize,
) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(select(keys), select(vals), 0..=max).prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        )
    })
}

pub fn arb_selector(
    keys: &'static [&'static str],
    vals: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    let expr = (
        select(keys),
        select(&["In", "NotIn", "Exists", "DoesNotExist"][..]),
        prop::sample::subsequence(vals.to_vec(), 1..=2),
    )
        .prop_map(|(k, op, vs)| match op {
            "In" | "NotIn" => json!({"key": k, "operator": op, "values": vs}),
            _ => json!({"key": k, "operator": op}),
        });
    (
        prop::option::weighted(0.6, kv_map(keys, vals, 2)),
        prop::collection::vec(expr, 0..=2),
    )
        .prop_map(|(ml, ex)| {
            let mut o = serde_json::Map::new();
            if let Some(ml) = ml {
                o.insert("matchLabels".into(), ml);
            }
            if !ex.is_empty() {
                o.insert("matchExpressions".into(), json!(ex));
            }
            Value::Object(o)
        })
}

const POD_KEYS: &[&str] = &["app", "tier"];
const POD_VALS: &[&str] = &["web", "db"];
const NS_KEYS: &[&str] = &["team", "env"];
const NS_VALS: &[&str] = &["x", "y"];

pub fn arb_namespace() -> impl Strategy<Value = Namespace> {
    (select(&NAMESPACES[..]), kv_map(NS_KEYS, NS_VALS, 2)).prop_map(|(n, l)| {
        serde_json::from_value(json!({"metadata": {"name": n, "labels": l}})).unwrap()
    })
}

fn arb_named_ports() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::option::of(select(&[80, 8080][..])),
        prop::option::of(select(&[53, 5353][..])),
        prop::option::of(select(&[9, 10][..])),
    )
        .prop_map(|(h, d, s)| {
            let mut v = vec![json!({"containerPort": 81})];
            if let Some(p) = h {
                v.push(json!({"name": "http", "containerPort": p}));
            }
            if let Some(p) = d {
                v.push(json!({"name": "dns", "protocol": "UDP", "containerPort": p}));
            }
            if let Some(p) = s {
                v.push(json!({"name": "sctp-p", "protocol": "SCTP", "containerPort": p}));
            }
            v
        })
}

/// Pod in slot `slot` of namespace `ns`. Its addresses come from the
/// slot (`alt` picks the second address of the slot, so pods can move).
pub fn arb_pod(slot: usize, ns: &'static str) -> impl Strategy<Value = Pod> {
    (
        kv_map(POD_KEYS, POD_VALS, 2),
        prop::bool::weighted(0.7),
        select(&["v4", "v6", "dual", "none"][..]),
        any::<bool>(),
        prop::bool::weighted(0.07),
        prop::bool::weighted(0.07),
        arb_named_ports(),
        any::<bool>(),
    )
        .prop_map(
            move |(labels, local, fam, alt, host_net, done, ports, uid2)| {
                let i = slot as u8 + if alt { POD_SLOTS as u8 } else { 0 };
                let ips: Vec<Value> = match fam {
                    "v4" => vec![json!({"ip": v4(i)})],
                    "v6" => vec![json!({"ip": v6(i)})],
                    "dual" => vec![json!({"ip": v4(i)}), json!({"ip": v6(i)})],
                    _ => vec![],
                };
                let name = format!("p{slot}");
                serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": name, "labels": labels,
                             "uid": format!("{ns}-{name}-{}", if uid2 { 2 } else { 1 })},
                "spec": {"nodeName": if local { NODE } else { OTHER_NODE }, "hostNetwork": host_net,
                         "containers": [{"name": "c", "ports": ports}]},
                "status": {"phase": if done { "Succeeded" } else { "Running" }, "podIPs": ips}
            }))
            .unwrap()
            },
        )
}

fn arb_block() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        0usize..7,
        0u8..16,
        prop::collection::vec((1u8..8, 0u8..16), 0..=2),
    )
        .prop_map(|(is6, li, base, excepts)| {
            let lens4 = [0u8, 24, 28, 29, 30, 31, 32];
            let lens6 = [0u8, 64, 120, 124, 125, 126, 127, 128];
            let (len, max) = if is6 {
                (lens6[li], 128u8)
            } else {
                (lens4[li], 32u8)
            };
            let addr = if is6 { v6(base) } else { v4(base) };
            let net: ipnet::IpNet = format!("{addr}/{len}")
                .parse::<ipnet::IpNet>()
                .unwrap()
                .trunc();
            let mut ex = Vec::new();
            for (extra, eb) in excepts {
                let elen = (len as u16 + extra as u16).min(max as u16) as u8;
                if elen <= len {
                    continue;
                }
                let ea = if is6 { v6(eb) } else { v4(eb) };
                let en = format!("{ea}/{elen}")
                    .parse::<ipnet::IpNet>()
                    .unwrap()
                    .trunc();
                if net.contains(&en) {
                    ex.push(json!(en.to_string()));
                }
            }
            json!({"ipBlock": {"cidr": net.to_string(), "except": ex}})
        })
}

fn arb_peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_selector(POD_KEYS, POD_VALS).prop_map(|s| json!({"podSelector": s})),
        arb_selector(NS_KEYS, NS_VALS).prop_map(|s| json!({"namespaceSelector": s})),
        (
            arb_selector(NS_KEYS, NS_VALS),
            arb_selector(POD_KEYS, POD_VALS)
        )
            .prop_map(|(n, p)| json!({"namespaceSelector": n, "podSelector": p})),
        arb_block(),
        arb_block(),
    ]
}

fn arb_port() -> impl Strategy<Value = Value> {
    (
        select(&[None, Some("TCP"), Some("UDP"), Some("SCTP")][..]),
        prop_oneof![
            Just(Value::Null),
            select(&[9, 53, 80, 81, 8080][..]).prop_map(|p| json!(p)),
            select(&["http", "dns", "sctp-p", "nope"][..]).prop_map(|p| json!(p)),
        ],
        select(&[None, Some(0), Some(1), Some(100)][..]),
    )
        .prop_map(|(proto, port, end)| {
            let mut o = serde_json::Map::new();
            if let Some(p) = proto {
                o.insert("protocol".into(), json!(p));
            }
            if let (Some(n), Some(d)) = (port.as_i64(), end) {
                o.insert("endPort".into(), json!(n + d));
            }
            if !port.is_null() {
                o.insert("port".into(), port);
            }
            Value::Object(o)
        })
}

fn arb_rule(peer_key: &'static str) -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.75, prop::collection::vec(arb_peer(), 0..=3)),
        prop::option::weighted(0.7, prop::collection::vec(arb_port(), 0..=3)),
    )
        .prop_map(move |(peers, ports)| {
            let mut o = serde_json::Map::new();
            if let Some(p) = peers {
                o.insert(peer_key.into(), json!(p));
            }
            if let Some(p) = ports {
                o.insert("ports".into(), json!(p));
            }
            Value::Object(o)
        })
}

const POLICY_TYPES: &[Option<&[&str]>] = &[
    None,
    Some(&["Ingress"]),
    Some(&["Egress"]),
    Some(&["Ingress", "Egress"]),
];

pub fn arb_policy(name: &'static str) -> impl Strategy<Value = NetworkPolicy> {
    (
        select(&NAMESPACES[..]),
        arb_selector(POD_KEYS, POD_VALS),
        select(POLICY_TYPES),
        prop::option::of(prop::collection::vec(arb_rule("from"), 0..=2)),
        prop::option::of(prop::collection::vec(arb_rule("to"), 0..=2)),
    )
        .prop_map(move |(ns, sel, types, ing, eg)| {
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), sel);
            if let Some(t) = types {
                spec.insert("policyTypes".into(), json!(t));
            }
            if let Some(i) = ing {
                spec.insert("ingress".into(), json!(i));
            }
            if let Some(e) = eg {
                spec.insert("egress".into(), json!(e));
            }
            serde_json::from_value(
                json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}),
            )
            .unwrap()
        })
}

pub const POLICY_NAMES: [&str; 5] = ["np0", "np1", "np2", "np3", "np4"];

/// The namespace of each pod slot.
pub fn arb_slot_namespaces() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(select(&NAMESPACES[..]), POD_SLOTS)
}

/// Egress towards ipBlocks (and maybe selectors) on named ports: the
/// shape with the compiler's per-identity address check.
pub fn arb_named_block_policy(name: &'static str) -> impl Strategy<Value = NetworkPolicy> {
    (
        select(&NAMESPACES[..]),
        prop::collection::vec(arb_block(), 1..=2),
        prop::option::of(arb_selector(POD_KEYS, POD_VALS)),
        prop::sample::subsequence(
            vec![
                json!({"port": "http"}),
                json!({"port": "dns", "protocol": "UDP"}),
                json!({"port": 81}),
            ],
            1..=3,
        ),
    )
        .prop_map(move |(ns, blocks, sel, ports)| {
            let mut to = blocks;
            if let Some(s) = sel {
                to.push(json!({"podSelector": s}));
            }
            serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": {
                "podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": to, "ports": ports}]
            }}))
            .unwrap()
        })
}

pub fn arb_cluster() -> impl Strategy<Value = Cluster> {
    arb_cluster_with(false)
}

/// With `named_blocks`, one policy is an [`arb_named_block_policy`].
pub fn arb_cluster_with(named_blocks: bool) -> impl Strategy<Value = Cluster> {
    arb_slot_namespaces().prop_flat_map(move |slots| arb_cluster_in(slots, named_blocks))
}

/// [`arb_cluster_with`] for given slot namespaces ([`arb_slot_namespaces`]).
pub fn arb_cluster_in(
    slots: Vec<&'static str>,
    named_blocks: bool,
) -> impl Strategy<Value = Cluster> {
    let pods: Vec<_> = slots
        .iter()
        .enumerate()
        .map(|(i, ns)| prop::option::weighted(0.85, arb_pod(i, ns)))
        .collect();
    (
        prop::collection::vec(arb_namespace(), 0..=3),
        pods,
        prop::sample::subsequence(POLICY_NAMES.to_vec(), 0..=4)
            .prop_flat_map(|names| names.into_iter().map(arb_policy).collect::<Vec<_>>()),
        any::<bool>(),
        arb_named_block_policy("focus"),
    )
        .prop_map(move |(nss, pods, pols, with_hosts, focus)| {
            let mut c = Cluster::default();
            for n in nss {
                c.add_ns(n);
            }
            for p in pods.into_iter().flatten() {
                c.add_pod(p);
            }
            for p in pols {
                c.add_policy(p);
            }
            if named_blocks {
                c.add_policy(focus);
                // Few identities, so an identity often has pods both
                // inside and outside a block.
                for p in c.pods.values_mut() {
                    p.metadata.labels = None;
                    for ct in &mut p.spec.as_mut().unwrap().containers {
                        ct.ports = Some(vec![
                            serde_json::from_value(json!({"name": "http", "containerPort": 80}))
                                .unwrap(),
                        ]);
                    }
                }
            }
            if with_hosts {
                c.hosts = hosts();
            }
            c
        })
}

// ----- ClusterNetworkPolicies --------------------------------------------

/// Names of generated ClusterNetworkPolicies (equal priorities are ordered
/// by name).
pub const CNP_NAMES: [&str; 6] = ["c0", "c1", "c2", "c3", "c4", "c5"];
/// Priorities: a small set, so that ties happen.
pub const CNP_PRIORITIES: [i32; 5] = [0, 10, 10, 500, 1000];
/// Port numbers of `destinationPort.number`.
pub const CNP_NUMBERS: [i32; 6] = [9, 53, 80, 81, 5353, 8080];
/// `destinationPort.range`s (inclusive, start < end).
pub const CNP_RANGES: [(i32, i32); 7] = [
    (9, 10),
    (80, 81),
    (10, 100),
    (1, 80),
    (100, 180),
    (54, 5353),
    (8080, 65535),
];
/// Every port of [`PROBE_PORTS`], [`CNP_NUMBERS`], and each range's edges
/// and their neighbours.
pub const TIER_PROBE_PORTS: [u16; 23] = [
    1, 8, 9, 10, 11, 53, 54, 79, 80, 81, 82, 99, 100, 101, 179, 180, 181, 5352, 5353, 5354, 8079,
    8080, 65535,
];
/// Fixed `networks`: outside ranges, and ranges covering the pods and the
/// node (besides random prefixes around pod addresses).
const CNP_NETWORKS: &[&str] = &[
    "203.0.113.0/24",
    "203.0.113.0/25",
    "198.51.100.0/24",
    "0.0.0.0/0",
    "192.0.2.0/24",
    "2001:db8:ffff::/48",
    "2001:db8::/64",
    "::/0",
];

fn arb_network() -> impl Strategy<Value = String> {
    prop_oneof![
        select(CNP_NETWORKS).prop_map(str::to_string),
        (any::<bool>(), 0usize..6, 0u8..16).prop_map(|(is6, li, base)| {
            let (addr, len) = if is6 {
                (v6(base), [120u8, 124, 125, 126, 127, 128][li])
            } else {
                (v4(base), [24u8, 28, 29, 30, 31, 32][li])
            };
            format!("{addr}/{len}")
                .parse::<ipnet::IpNet>()
                .unwrap()
                .trunc()
                .to_string()
        }),
    ]
}

/// A namespace selector over the generated namespace labels, by name, or
/// of every namespace (often: tier rules should often match).
fn arb_ns_selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => Just(json!({})),
        3 => arb_selector(NS_KEYS, NS_VALS),
        1 => select(&NAMESPACES[..])
            .prop_map(|n| json!({"matchLabels": {"kubernetes.io/metadata.name": n}})),
    ]
}

fn arb_namespaced_pod() -> impl Strategy<Value = Value> {
    let pods = prop_oneof![
        1 => Just(json!({})),
        3 => arb_selector(POD_KEYS, POD_VALS),
    ];
    (arb_ns_selector(), pods).prop_map(|(n, p)| json!({"namespaceSelector": n, "podSelector": p}))
}

// ----- Nodes ---------------------------------------------------------------

/// Names of generated Node objects.
pub const NODE_NAMES: [&str; 3] = ["n0", "n1", "n2"];
const NODE_KEYS: &[&str] = &["kubernetes.io/os", "role"];
const NODE_VALS: &[&str] = &["linux", "infra"];
/// Node addresses: this node's ([`hosts`]), outside ones of both
/// families, and pod addresses (which a node may well list too).
const NODE_ADDRS: &[&str] = &[
    "192.0.2.15",
    "2001:db8::f",
    "198.51.100.20",
    "2001:db8:1::20",
    "203.0.113.20",
    "198.51.100.21",
    "192.0.2.3",
    "2001:db8::4",
];

/// A Node named `name`: labels over [`NODE_KEYS`], 0 to 3 IP addresses of
/// [`NODE_ADDRS`] (InternalIP or ExternalIP) and sometimes a Hostname
/// entry (not an IP: matches nothing).
pub fn arb_node(name: &'static str) -> impl Strategy<Value = Node> {
    (
        kv_map(NODE_KEYS, NODE_VALS, 2),
        prop::collection::btree_set(select(NODE_ADDRS), 0..=3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(labels, addrs, external, hostname)| {
            let ty = if external { "ExternalIP" } else { "InternalIP" };
            let mut list: Vec<Value> = addrs
                .into_iter()
                .map(|a| json!({"type": ty, "address": a}))
                .collect();
            if hostname {
                list.push(json!({"type": "Hostname", "address": name}));
            }
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"addresses": list},
            }))
            .unwrap()
        })
}

/// 0 to 3 Nodes with distinct names.
pub fn arb_nodes() -> impl Strategy<Value = Vec<Node>> {
    prop::sample::subsequence(NODE_NAMES.to_vec(), 0..=3)
        .prop_flat_map(|names| names.into_iter().map(arb_node).collect::<Vec<_>>())
}

fn arb_cnp_peer(egress: bool) -> impl Strategy<Value = Value> {
    let selectors = prop_oneof![
        arb_ns_selector().prop_map(|s| json!({"namespaces": s})),
        arb_namespaced_pod().prop_map(|p| json!({"pods": p})),
    ];
    let networks = prop::collection::btree_set(arb_network(), 1..=2)
        .prop_map(|n| json!({"networks": n.into_iter().collect::<Vec<_>>()}));
    let nodes = prop_oneof![
        1 => Just(json!({})),
        2 => arb_selector(NODE_KEYS, NODE_VALS),
    ]
    .prop_map(|s| json!({"nodes": s}));
    if egress {
        prop_oneof![4 => selectors, 2 => networks, 1 => nodes].boxed()
    } else {
        selectors.boxed()
    }
}

fn arb_protocol_entry() -> impl Strategy<Value = Value> {
    let protos = select(&["tcp", "udp", "sctp"][..]);
    prop_oneof![
        (protos.clone(), select(&CNP_NUMBERS[..]))
            .prop_map(|(p, n)| json!({p: {"destinationPort": {"number": n}}})),
        (protos, select(&CNP_RANGES[..])).prop_map(
            |(p, (a, b))| json!({p: {"destinationPort": {"range": {"start": a, "end": b}}}})
        ),
        select(&["http", "dns", "sctp-p", "nope"][..])
            .prop_map(|n| json!({"destinationNamedPort": n})),
    ]
}

fn arb_cnp_rule(egress: bool) -> impl Strategy<Value = Value> {
    (
        select(&["Accept", "Deny", "Pass"][..]),
        prop::collection::vec(arb_cnp_peer(egress), 1..=3),
        prop::option::weighted(0.6, prop::collection::vec(arb_protocol_entry(), 1..=3)),
        any::<bool>(),
    )
        .prop_map(move |(action, mut peers, protocols, keep_networks)| {
            let mut protocols = protocols;
            let is_net = |p: &Value| p.get("networks").is_some() || p.get("nodes").is_some();
            let is_named = |e: &Value| e.get("destinationNamedPort").is_some();
            // Validation rejects named ports in a rule with networks
            // or nodes peers: drop one or the other.
            if let Some(list) = &mut protocols
                && list.iter().any(is_named)
                && peers.iter().any(is_net)
            {
                if keep_networks || peers.iter().all(is_net) {
                    list.retain(|e| !is_named(e));
                    if list.is_empty() {
                        protocols = None;
                    }
                } else {
                    peers.retain(|p| !is_net(p));
                }
            }
            let mut o = serde_json::Map::new();
            o.insert("action".into(), json!(action));
            o.insert((if egress { "to" } else { "from" }).into(), json!(peers));
            if let Some(p) = protocols {
                o.insert("protocols".into(), json!(p));
            }
            Value::Object(o)
        })
}

/// A valid, enforced ClusterNetworkPolicy named `name`: either tier, a
/// priority of [`CNP_PRIORITIES`], a `namespaces` or `pods` subject, and
/// in each direction no rules or 1 to 3 (so a policy may have rules in one
/// direction only). One in ten is annotated for audit (not enforced).
pub fn arb_cnp(name: &'static str) -> impl Strategy<Value = ClusterNetworkPolicy> {
    (
        prop::bool::weighted(0.1),
        select(&["Admin", "Baseline"][..]),
        select(&CNP_PRIORITIES[..]),
        prop_oneof![
            arb_ns_selector().prop_map(|s| json!({"namespaces": s})),
            arb_namespaced_pod().prop_map(|p| json!({"pods": p})),
        ],
        prop::option::weighted(0.65, prop::collection::vec(arb_cnp_rule(false), 1..=3)),
        prop::option::weighted(0.65, prop::collection::vec(arb_cnp_rule(true), 1..=3)),
    )
        .prop_map(move |(audit, tier, priority, subject, ingress, egress)| {
            let mut spec = serde_json::Map::new();
            spec.insert("tier".into(), json!(tier));
            spec.insert("priority".into(), json!(priority));
            spec.insert("subject".into(), subject);
            if let Some(i) = ingress {
                spec.insert("ingress".into(), json!(i));
            }
            if let Some(e) = egress {
                spec.insert("egress".into(), json!(e));
            }
            let mut metadata = json!({"name": name});
            if audit {
                metadata["annotations"] = json!({"policy.palisade.dev/mode": "audit"});
            }
            serde_json::from_value(json!({
                "apiVersion": "policy.networking.k8s.io/v1alpha2",
                "kind": "ClusterNetworkPolicy",
                "metadata": metadata,
                "spec": spec,
            }))
            .unwrap()
        })
}

/// 0 to 5 ClusterNetworkPolicies with distinct names.
pub fn arb_cnps() -> impl Strategy<Value = Vec<ClusterNetworkPolicy>> {
    prop::sample::subsequence(CNP_NAMES.to_vec(), 0..=5)
        .prop_flat_map(|names| names.into_iter().map(arb_cnp).collect::<Vec<_>>())
}

/// A random cluster ([`arb_cluster`]) with 0 to 5 ClusterNetworkPolicies
/// and 0 to 3 Nodes.
pub fn arb_tier_cluster() -> impl Strategy<Value = Cluster> {
    (arb_cluster(), arb_cnps(), arb_nodes()).prop_map(|(mut c, cnps, nodes)| {
        for p in cnps {
            c.add_cnp(p);
        }
        for n in nodes {
            c.add_node(n);
        }
        c
    })
}

/// Pod labels as [`arb_pod`] draws them (for relabelling).
pub fn arb_pod_labels() -> impl Strategy<Value = Value> {
    kv_map(POD_KEYS, POD_VALS, 2)
}
