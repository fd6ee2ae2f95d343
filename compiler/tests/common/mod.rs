//! Shared test support, deliberately independent of the compiler's
//! internals: object builders, a simulator of the datapath lookup over a
//! `DesiredState` (as `palisade_common` documents it), a naive evaluator of
//! NetworkPolicy semantics working directly on the Kubernetes objects, a
//! naive evaluator of the ClusterNetworkPolicy tiers around it (`tiers.rs`),
//! and a canonical form of compiled states (ids replaced by what they stand
//! for).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_common::{
    IDENTITY_ANY, IDENTITY_WORLD, IpcacheValue, PolicyKey, direction, endpoint_flags, proto,
    tier_code,
};
use palisade_compiler::api::ClusterNetworkPolicy;
use palisade_compiler::{
    Compiler, DesiredState, EndpointEntry, IdentityInfo, MapOp, PodRef, Tables,
};
use serde_json::{Value, json};

pub mod generate;
pub mod tiers;

pub const NODE: &str = "node-1";
pub const OTHER_NODE: &str = "node-2";
pub const ICMP: u8 = 1;

// ----- builders ----------------------------------------------------------

pub fn labels(kv: &[(&str, &str)]) -> Value {
    Value::Object(kv.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

pub fn ns(name: &str, kv: &[(&str, &str)]) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels(kv)}})).unwrap()
}

/// A running pod. `ports`: (name, protocol, containerPort).
pub fn pod(
    namespace: &str,
    name: &str,
    kv: &[(&str, &str)],
    node: &str,
    ips: &[&str],
    ports: &[(&str, &str, i32)],
) -> Pod {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, c)| json!({"name": n, "protocol": p, "containerPort": c}))
        .collect();
    let ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": name, "uid": format!("uid-{namespace}-{name}"), "labels": labels(kv)},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports}]},
        "status": {"phase": "Running", "podIPs": ips},
    }))
    .unwrap()
}

/// A NetworkPolicy from its JSON `spec`.
/// A Node with labels and `status.addresses` (`(type, address)`).
pub fn node(name: &str, kv: &[(&str, &str)], addresses: &[(&str, &str)]) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels(kv)},
        "status": {"addresses": addresses
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect::<Vec<_>>()},
    }))
    .unwrap()
}

pub fn np(namespace: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(
        json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec}),
    )
    .unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    IpAddr::from_str(s).unwrap()
}

// ----- datapath simulator ------------------------------------------------

/// The ipcache lookup: exact, then longest LPM prefix, then WORLD.
pub fn lookup<K: Ord + Clone, E: Clone>(state: &Tables<K, E>, addr: IpAddr) -> IpcacheValue {
    if let Some(v) = state.exact(&addr) {
        return v;
    }
    match addr {
        IpAddr::V4(a) => {
            for len in (0..=32).rev() {
                let n = Ipv4Net::new(a, len).unwrap().trunc();
                if let Some(v) = state.ipcache_lpm4.get(&n) {
                    return *v;
                }
            }
        }
        IpAddr::V6(a) => {
            for len in (0..=128).rev() {
                let n = Ipv6Net::new(a, len).unwrap().trunc();
                if let Some(v) = state.ipcache_lpm6.get(&n) {
                    return *v;
                }
            }
        }
    }
    IpcacheValue {
        identity: IDENTITY_WORLD,
        cidr_identity: IDENTITY_WORLD,
    }
}

/// The verdict of the datapath for a new flow of the endpoint entry at
/// `pod` (a pod, or a host interface) in `dir` with peer address `peer`.
/// A missing endpoint drops (fail closed). Errors if a policy value names
/// a missing portset. The one simulator of verdicts the ordering tests
/// (commit diffs and reconciles) are held to.
pub fn sim<K: Ord + Clone, E: EndpointEntry + Clone>(
    state: &Tables<K, E>,
    pod: &K,
    dir: u8,
    peer: IpAddr,
    ip_proto: u8,
    port: u16,
) -> Result<bool, String> {
    let Some(ep) = state.endpoints.get(pod) else {
        return Ok(false);
    };
    let isolated = ep.flags() & endpoint_flags::isolated(dir) != 0;
    let tiered = ep.flags() & endpoint_flags::tiered(dir) != 0;
    if !isolated && !tiered {
        return Ok(true);
    }
    let said = says(state, ep.ep_id(), dir, 0, peer, ip_proto, port)?;
    Ok(if tiered { walk(said, isolated) } else { said.0 })
}

/// Whether the audit view of the endpoint entry at `pod` would deny a new
/// flow in `dir` with peer `peer` (false where it has no view there), as
/// the datapath reads the view's entries for a flow policy lets through.
pub fn sim_view<K: Ord + Clone, E: EndpointEntry + Clone>(
    state: &Tables<K, E>,
    pod: &K,
    dir: u8,
    peer: IpAddr,
    ip_proto: u8,
    port: u16,
) -> Result<bool, String> {
    let Some(ep) = state.endpoints.get(pod) else {
        return Ok(false);
    };
    let flags = ep.flags();
    let view_isolated = flags & endpoint_flags::view_isolated(dir) != 0;
    if flags & endpoint_flags::view_tiered(dir) != 0 {
        let isolated = flags & endpoint_flags::isolated(dir) != 0 || view_isolated;
        let said = says(state, ep.ep_id(), dir, 1, peer, ip_proto, port)?;
        return Ok(!walk(said, isolated));
    }
    if view_isolated {
        return Ok(!says(state, ep.ep_id(), dir, 1, peer, ip_proto, port)?.0);
    }
    Ok(false)
}

/// The tiers' walk over what the entries say.
fn walk((allowed, admin, baseline): (bool, u32, u32), isolated: bool) -> bool {
    match tier_code::action(admin) {
        tier_code::ACCEPT => true,
        tier_code::DENY => false,
        _ if isolated => allowed,
        _ => tier_code::action(baseline) != tier_code::DENY,
    }
}

/// What the entries of `view` say of a flow: (NetworkPolicy allows, Admin
/// code, Baseline code), over the peer's identity, its CIDR identity and
/// any peer.
fn says<K: Ord + Clone, E: EndpointEntry + Clone>(
    state: &Tables<K, E>,
    ep_id: u32,
    dir: u8,
    view: u8,
    peer: IpAddr,
    ip_proto: u8,
    port: u16,
) -> Result<(bool, u32, u32), String> {
    let v = lookup(state, peer);
    let class = proto::policy_class(ip_proto);
    let port = if proto::has_ports(ip_proto) { port } else { 0 };
    let mut ids = vec![v.identity];
    if v.cidr_identity != v.identity {
        ids.push(v.cidr_identity);
    }
    ids.push(IDENTITY_ANY);
    let (mut allowed, mut admin, mut baseline) = (false, tier_code::NONE, tier_code::NONE);
    for id in ids {
        let key = PolicyKey {
            ep_id,
            identity: id,
            direction: dir,
            proto: class,
            view,
            _pad: 0,
        };
        if let Some(val) = state.policy.get(&key) {
            let says = state
                .value_says(val)
                .ok_or_else(|| format!("{key:?} references a missing table: {val:?}"))?;
            allowed |= says.allow.contains(port);
            let codes = says.codes.get(port);
            admin = admin.max(codes.admin);
            baseline = baseline.max(codes.baseline);
        }
    }
    Ok((allowed, admin, baseline))
}

// ----- the cluster and the naive evaluator -------------------------------

#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: BTreeMap<(String, String), Pod>,
    pub policies: BTreeMap<(String, String), NetworkPolicy>,
    pub hosts: Vec<IpAddr>,
    /// ClusterNetworkPolicies by name (none unless a test adds them).
    pub cnps: BTreeMap<String, ClusterNetworkPolicy>,
    /// Node objects by name (what `nodes` peers select).
    pub nodes: BTreeMap<String, Node>,
}

fn meta_key(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl Cluster {
    pub fn add_ns(&mut self, n: Namespace) {
        self.namespaces.insert(n.metadata.name.clone().unwrap(), n);
    }
    pub fn add_pod(&mut self, p: Pod) {
        self.pods.insert(meta_key(&p.metadata), p);
    }
    pub fn add_policy(&mut self, p: NetworkPolicy) {
        self.policies.insert(meta_key(&p.metadata), p);
    }
    pub fn add_cnp(&mut self, p: ClusterNetworkPolicy) {
        self.cnps.insert(p.metadata.name.clone().unwrap(), p);
    }
    pub fn add_node(&mut self, n: Node) {
        self.nodes.insert(n.metadata.name.clone().unwrap(), n);
    }

    /// Every address of a Node's `status.addresses` that is an IP.
    pub fn node_ips(n: &Node) -> Vec<IpAddr> {
        n.status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|a| IpAddr::from_str(&a.address).ok())
            .collect()
    }

    /// Compiles the cluster from scratch (everything applied, one commit).
    /// Panics if an object is rejected.
    pub fn compile(&self) -> Compiler {
        self.compile_after(|_| {})
    }

    /// [`Cluster::compile`] on a compiler `prepare` set up first (a
    /// restarted agent gives back its numbering before any object).
    pub fn compile_after(&self, prepare: impl FnOnce(&mut Compiler)) -> Compiler {
        self.compile_on(NODE, prepare)
    }

    /// [`Cluster::compile_after`] for the node named `node`.
    pub fn compile_on(&self, node: &str, prepare: impl FnOnce(&mut Compiler)) -> Compiler {
        let mut c = Compiler::new(node);
        prepare(&mut c);
        for n in self.namespaces.values() {
            c.apply_namespace(n).unwrap();
        }
        for p in self.pods.values() {
            c.apply_pod(p).unwrap();
        }
        for p in self.policies.values() {
            c.apply_policy(p).unwrap();
        }
        for p in self.cnps.values() {
            c.apply_cluster_policy(p).unwrap();
        }
        for n in self.nodes.values() {
            c.apply_node(n).unwrap();
        }
        c.set_host_addresses(self.hosts.clone());
        c.commit();
        c
    }

    pub fn pod_ips(p: &Pod) -> Vec<IpAddr> {
        let s = p.status.as_ref();
        let mut v: Vec<IpAddr> = s
            .and_then(|s| s.pod_ips.clone())
            .unwrap_or_default()
            .iter()
            .map(|i| ip(&i.ip))
            .collect();
        if v.is_empty()
            && let Some(one) = s.and_then(|s| s.pod_ip.clone())
        {
            v.push(ip(&one));
        }
        v
    }

    pub fn pod_live(p: &Pod) -> bool {
        let spec = p.spec.as_ref().unwrap();
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        !spec.host_network.unwrap_or(false)
            && phase != "Succeeded"
            && phase != "Failed"
            && !Self::pod_ips(p).is_empty()
    }

    /// Local pods the datapath judges.
    pub fn endpoints(&self) -> Vec<PodRef> {
        self.pods
            .iter()
            .filter(|(_, p)| {
                Self::pod_live(p) && p.spec.as_ref().unwrap().node_name.as_deref() == Some(NODE)
            })
            .map(|((n, m), _)| PodRef::new(n.clone(), m.clone()))
            .collect()
    }

    /// The pod owning an address: none if it is a node address, else the
    /// live pod with the smallest namespace/name among those using it.
    pub fn owner(&self, addr: IpAddr) -> Option<&Pod> {
        if self.hosts.contains(&addr) {
            return None;
        }
        self.pods
            .values()
            .find(|p| Self::pod_live(p) && Self::pod_ips(p).contains(&addr))
    }

    pub fn ns_labels(&self, name: &str) -> BTreeMap<String, String> {
        let mut l = self
            .namespaces
            .get(name)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        l.entry("kubernetes.io/metadata.name".into())
            .or_insert_with(|| name.to_string());
        l
    }

    /// Every address worth probing: pod and node addresses, and the edges
    /// of every prefix in a policy.
    pub fn probe_addresses(&self) -> BTreeSet<IpAddr> {
        let mut out: BTreeSet<IpAddr> = self.hosts.iter().copied().collect();
        for p in self.pods.values() {
            out.extend(Self::pod_ips(p));
        }
        for pol in self.policies.values() {
            let spec = pol.spec.clone().unwrap_or_default();
            let peers = spec
                .ingress
                .iter()
                .flatten()
                .flat_map(|r| r.from.clone().unwrap_or_default())
                .chain(
                    spec.egress
                        .iter()
                        .flatten()
                        .flat_map(|r| r.to.clone().unwrap_or_default()),
                );
            for peer in peers {
                if let Some(b) = peer.ip_block {
                    for c in std::iter::once(b.cidr).chain(b.except.unwrap_or_default()) {
                        if let Ok(n) = IpNet::from_str(&c) {
                            out.insert(n.network());
                            out.insert(n.broadcast());
                        }
                    }
                }
            }
        }
        out.extend(["203.0.113.7", "2001:db8:ffff::7"].map(ip));
        for n in self.nodes.values() {
            out.extend(Self::node_ips(n));
        }
        if !self.cnps.is_empty() {
            out.extend(tiers::network_edges(self.cnps.values()));
            out.extend(tiers::OUTSIDERS.map(ip));
        }
        out
    }

    fn sel(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
        for (k, v) in sel.match_labels.iter().flatten() {
            if labels.get(k) != Some(v) {
                return false;
            }
        }
        for e in sel.match_expressions.iter().flatten() {
            let vals = e.values.clone().unwrap_or_default();
            let ok = match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| vals.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !vals.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                op => panic!("operator {op}"),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn pod_labels(p: &Pod) -> BTreeMap<String, String> {
        p.metadata.labels.clone().unwrap_or_default()
    }

    fn named_ports(p: &Pod) -> BTreeSet<(String, String, i32)> {
        p.spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .flat_map(|c| c.ports.clone().unwrap_or_default())
            .filter_map(|cp| {
                cp.name.map(|n| {
                    (
                        n,
                        cp.protocol.unwrap_or_else(|| "TCP".into()),
                        cp.container_port,
                    )
                })
            })
            .collect()
    }

    fn types(pol: &NetworkPolicy) -> (bool, bool) {
        let spec = pol.spec.clone().unwrap_or_default();
        let t = spec.policy_types.unwrap_or_default();
        if t.is_empty() {
            (true, !spec.egress.unwrap_or_default().is_empty())
        } else {
            (
                t.iter().any(|x| x == "Ingress"),
                t.iter().any(|x| x == "Egress"),
            )
        }
    }

    fn block_contains(b: &k8s_openapi::api::networking::v1::IPBlock, a: IpAddr) -> bool {
        let c = IpNet::from_str(&b.cidr).unwrap();
        c.contains(&a)
            && !b
                .except
                .iter()
                .flatten()
                .any(|e| IpNet::from_str(e).unwrap().contains(&a))
    }

    fn peer_selects(&self, policy_ns: &str, peer: &NetworkPolicyPeer, q: &Pod) -> bool {
        if peer.ip_block.is_some() {
            return false;
        }
        let qns = q.metadata.namespace.clone().unwrap();
        let ns_ok = match &peer.namespace_selector {
            None => qns == policy_ns,
            Some(s) => Self::sel(s, &self.ns_labels(&qns)),
        };
        ns_ok
            && peer
                .pod_selector
                .as_ref()
                .is_none_or(|s| Self::sel(s, &Self::pod_labels(q)))
    }

    fn port_entry_matches(
        e: &NetworkPolicyPort,
        ip_proto: u8,
        port: u16,
        dst: Option<&Pod>,
    ) -> bool {
        let p = e.protocol.clone().unwrap_or_else(|| "TCP".into());
        let want = match p.as_str() {
            "TCP" => proto::TCP,
            "UDP" => proto::UDP,
            "SCTP" => proto::SCTP,
            other => panic!("protocol {other}"),
        };
        if ip_proto != want {
            return false;
        }
        match &e.port {
            None => true,
            Some(IntOrString::Int(n)) => {
                let end = e.end_port.unwrap_or(*n);
                (*n..=end).contains(&(port as i32))
            }
            Some(IntOrString::String(name)) => dst.is_some_and(|d| {
                Self::named_ports(d)
                    .iter()
                    .any(|(n, pr, c)| n == name && *pr == p && *c == port as i32)
            }),
        }
    }

    /// Every pod with the same namespace, labels and named ports as `q`
    /// has all its addresses in one of `blocks`.
    fn identity_group_inside(
        &self,
        q: &Pod,
        blocks: &[k8s_openapi::api::networking::v1::IPBlock],
    ) -> bool {
        let key = |p: &Pod| {
            (
                p.metadata.namespace.clone(),
                Self::pod_labels(p),
                Self::named_ports(p),
            )
        };
        let qk = key(q);
        self.pods
            .values()
            .filter(|p| Self::pod_live(p) && key(p) == qk)
            .all(|p| {
                Self::pod_ips(p)
                    .iter()
                    .all(|a| blocks.iter().any(|b| Self::block_contains(b, *a)))
            })
    }

    /// The NetworkPolicies selecting `local` in `dir` (isolating it).
    pub fn np_selecting(&self, local: &PodRef, dir: u8) -> Vec<&NetworkPolicy> {
        let me = &self.pods[&(local.namespace.clone(), local.name.clone())];
        let mine = Self::pod_labels(me);
        self.policies
            .values()
            .filter(|p| p.metadata.namespace.as_deref() == Some(local.namespace.as_str()))
            .filter(|p| {
                let s = p
                    .spec
                    .clone()
                    .unwrap_or_default()
                    .pod_selector
                    .unwrap_or_default();
                Self::sel(&s, &mine)
            })
            .filter(|p| {
                let (i, e) = Self::types(p);
                if dir == direction::INGRESS { i } else { e }
            })
            .collect()
    }

    /// Naive verdict for a new flow of local pod `local` in `dir` with peer
    /// address `peer`: `(exact, conservative)`. `exact` is the letter of
    /// the API; `conservative` additionally applies the compiler's
    /// documented restriction for egress named ports reached only through
    /// an ipBlock (every pod of the destination's identity must be inside
    /// the rule's blocks).
    pub fn naive(
        &self,
        local: &PodRef,
        dir: u8,
        peer: IpAddr,
        ip_proto: u8,
        port: u16,
    ) -> (bool, bool) {
        let me = &self.pods[&(local.namespace.clone(), local.name.clone())];
        let selecting = self.np_selecting(local, dir);
        if selecting.is_empty() {
            return (true, true);
        }
        let peer_pod = self.owner(peer);
        let (mut exact, mut conservative) = (false, false);
        for pol in selecting {
            let pns = pol.metadata.namespace.clone().unwrap();
            let spec = pol.spec.clone().unwrap_or_default();
            let rules: Vec<(Vec<NetworkPolicyPeer>, Vec<NetworkPolicyPort>)> =
                if dir == direction::INGRESS {
                    spec.ingress
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| (r.from.unwrap_or_default(), r.ports.unwrap_or_default()))
                        .collect()
                } else {
                    spec.egress
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| (r.to.unwrap_or_default(), r.ports.unwrap_or_default()))
                        .collect()
                };
            for (peers, ports) in rules {
                let all = peers.is_empty();
                let sel_ok =
                    peer_pod.is_some_and(|q| peers.iter().any(|p| self.peer_selects(&pns, p, q)));
                let blocks: Vec<_> = peers.iter().filter_map(|p| p.ip_block.clone()).collect();
                let block_ok = blocks.iter().any(|b| Self::block_contains(b, peer));
                if !(all || sel_ok || block_ok) {
                    continue;
                }
                if ports.is_empty() {
                    exact = true;
                    conservative = true;
                    continue;
                }
                let dst = if dir == direction::INGRESS {
                    Some(me)
                } else {
                    peer_pod
                };
                for e in &ports {
                    if !Self::port_entry_matches(e, ip_proto, port, dst) {
                        continue;
                    }
                    exact = true;
                    let named = matches!(e.port, Some(IntOrString::String(_)));
                    let only_block = dir == direction::EGRESS && named && !all && !sel_ok;
                    if !only_block
                        || peer_pod.is_some_and(|q| self.identity_group_inside(q, &blocks))
                    {
                        conservative = true;
                    }
                }
            }
        }
        (exact, conservative)
    }
}

// ----- canonical form ----------------------------------------------------

/// An identity by what it stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Id {
    Any,
    Host,
    World,
    Pod(
        String,
        BTreeMap<String, String>,
        BTreeSet<(String, u8, u16)>,
    ),
    Cidr(IpNet),
    Unknown(u32),
}

pub fn canon_id(c: &Compiler, id: u32) -> Id {
    match c.identity(id) {
        Some(IdentityInfo::Any) => Id::Any,
        Some(IdentityInfo::Host) => Id::Host,
        Some(IdentityInfo::World) => Id::World,
        Some(IdentityInfo::Pod {
            namespace,
            labels,
            named_ports,
        }) => Id::Pod(namespace, labels, named_ports),
        Some(IdentityInfo::Cidr(n)) => Id::Cidr(n),
        None => Id::Unknown(id),
    }
}

/// A policy key by meaning: (endpoint pod, peer, direction, class).
pub type CanonKey = (PodRef, Id, u8, u8);

/// An entry by meaning: the allowed port ranges and the tier code segments.
pub type CanonPorts = (Vec<(u16, u16)>, Vec<(u16, palisade_common::TierCodes)>);

/// A compiled state with every id replaced by its meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canon {
    pub endpoints: BTreeMap<PodRef, (Id, u32, Vec<IpAddr>)>,
    pub policy: BTreeMap<CanonKey, CanonPorts>,
    pub exact: BTreeMap<IpAddr, (Id, Id)>,
    pub lpm: BTreeMap<IpNet, Id>,
}

pub fn canon(c: &Compiler) -> Canon {
    let s = c.state();
    let by_ep: BTreeMap<u32, PodRef> = s
        .endpoints
        .iter()
        .map(|(p, e)| (e.ep_id, p.clone()))
        .collect();
    Canon {
        endpoints: s
            .endpoints
            .iter()
            .map(|(p, e)| (p.clone(), (canon_id(c, e.identity), e.flags, e.ips.clone())))
            .collect(),
        policy: s
            .policy
            .iter()
            .map(|(k, v)| {
                let pod = by_ep
                    .get(&k.ep_id)
                    .cloned()
                    .unwrap_or_else(|| PodRef::new("?", k.ep_id.to_string()));
                let ports = s
                    .value_says(v)
                    .map(|p| (p.allow.ranges().to_vec(), p.codes.segments().to_vec()))
                    .unwrap_or_default();
                ((pod, canon_id(c, k.identity), k.direction, k.proto), ports)
            })
            .collect(),
        exact: s
            .ipcache_exact4
            .iter()
            .map(|(a, v)| (IpAddr::V4(*a), *v))
            .chain(s.ipcache_exact6.iter().map(|(a, v)| (IpAddr::V6(*a), *v)))
            .map(|(a, v)| (a, (canon_id(c, v.identity), canon_id(c, v.cidr_identity))))
            .collect(),
        lpm: s
            .ipcache_lpm4
            .iter()
            .map(|(n, v)| (IpNet::V4(*n), *v))
            .chain(s.ipcache_lpm6.iter().map(|(n, v)| (IpNet::V6(*n), *v)))
            .map(|(n, v)| (n, canon_id(c, v.identity)))
            .collect(),
    }
}

/// Structural invariants of a committed state.
pub fn check_invariants(c: &Compiler) {
    let s = c.state();
    let ep_ids: BTreeSet<u32> = s.endpoints.values().map(|e| e.ep_id).collect();
    assert_eq!(ep_ids.len(), s.endpoints.len(), "endpoint ids are unique");
    assert!(!ep_ids.contains(&0), "ep_id 0 is never used");
    let views: BTreeMap<u32, u32> = s.endpoints.values().map(|e| (e.ep_id, e.flags)).collect();
    let mut used = BTreeSet::new();
    for (k, v) in &s.policy {
        assert!(ep_ids.contains(&k.ep_id), "entry {k:?} of no endpoint");
        assert_eq!(k._pad, 0);
        // Audit-view entries only where the endpoint has a view.
        let view_bits =
            endpoint_flags::view_isolated(k.direction) | endpoint_flags::view_tiered(k.direction);
        assert!(
            k.view == 0 || (k.view == 1 && views[&k.ep_id] & view_bits != 0),
            "{k:?} of an endpoint without that view"
        );
        assert!(
            !matches!(
                canon_id(c, k.identity),
                Id::Unknown(_) | Id::Host | Id::World
            ),
            "{k:?}"
        );
        if v.portset != 0 {
            used.insert(v.portset);
            let set = s.portsets.get(&v.portset).expect("portset present");
            assert!(set.as_single_range().is_none(), "single ranges are inline");
        } else {
            // `lo > hi` allows nothing: such an entry is there for its
            // ClusterNetworkPolicy codes.
            let codes = v.tierset != 0
                || (v.tier_lo <= v.tier_hi && v.codes != palisade_common::TierCodes::NONE);
            assert!(
                v.port_lo <= v.port_hi || codes,
                "entry {k:?} says nothing: {v:?}"
            );
        }
        if v.tierset != 0 {
            assert!(s.tiersets.contains_key(&v.tierset), "tierset present");
        }
    }
    assert_eq!(
        used,
        s.portsets.keys().copied().collect(),
        "every portset is used"
    );
    let sets: BTreeSet<_> = s.portsets.values().collect();
    assert_eq!(sets.len(), s.portsets.len(), "portsets are deduplicated");
    for e in s.endpoints.values() {
        assert!(matches!(canon_id(c, e.identity), Id::Pod(..)));
    }
}

/// Applies ops to a copy of `old`, checking after each that no probe is
/// allowed unless `old` or `new` allows it. Returns the final state.
pub fn replay_checked(
    old: &DesiredState,
    new: &DesiredState,
    ops: &[MapOp],
    probes: &Probes,
) -> DesiredState {
    try_replay(old, new, ops, probes).unwrap_or_else(|e| panic!("{e}"))
}

/// [`replay_checked`], returning the first violation instead of panicking.
/// Only the probes that neither `old` nor `new` allows are evaluated after
/// each op (the others cannot be violated); instead of probing for
/// references to missing tables, every written policy value must name
/// tables present, and no table may go while a value names it.
pub fn try_replay(
    old: &DesiredState,
    new: &DesiredState,
    ops: &[MapOp],
    probes: &Probes,
) -> Result<DesiredState, String> {
    let verdicts = |s: &DesiredState, probes: &[&(PodRef, u8, IpAddr, u8, u16)]| {
        probes
            .iter()
            .map(|(p, d, a, pr, port)| sim(s, p, *d, *a, *pr, *port))
            .collect::<Result<Vec<bool>, String>>()
    };
    let all: Vec<_> = probes.iter().collect();
    let vo = verdicts(old, &all)?;
    let vn = verdicts(new, &all)?;
    let denied: Vec<_> = all
        .iter()
        .zip(vo.iter().zip(&vn))
        .filter(|(_, (o, n))| !**o && !**n)
        .map(|(p, _)| *p)
        .collect();
    let mut cur = old.clone();
    for (i, op) in ops.iter().enumerate() {
        let before = cur.clone();
        cur.apply(op);
        if before == cur {
            return Err(format!("op {i} {op:?} changes nothing"));
        }
        let dangling = match op {
            MapOp::PolicyUpsert { value, .. } => cur.value_says(value).is_none(),
            MapOp::PortsetRemove { id } => cur.policy.values().any(|v| v.portset == *id),
            MapOp::TiersetRemove { id } => cur.policy.values().any(|v| v.tierset == *id),
            _ => false,
        };
        if dangling {
            return Err(format!(
                "after op {i} {op:?}: a policy value names a missing table"
            ));
        }
        let vc = verdicts(&cur, &denied).map_err(|e| format!("after op {i} {op:?}: {e}"))?;
        if let Some(j) = vc.iter().position(|v| *v) {
            return Err(format!(
                "after op {i} {op:?}: {:?} allowed, but neither before nor after the diff\nops: {ops:#?}",
                denied[j]
            ));
        }
    }
    Ok(cur)
}

pub type Probes = Vec<(PodRef, u8, IpAddr, u8, u16)>;

/// Probes for every endpoint of `a` or `b`, both directions, every address
/// of both states (and LPM edges), the given ports.
pub fn probes(
    a: &DesiredState,
    b: &DesiredState,
    extra: &BTreeSet<IpAddr>,
    ports: &[u16],
) -> Probes {
    let mut pods: BTreeSet<PodRef> = a.endpoints.keys().cloned().collect();
    pods.extend(b.endpoints.keys().cloned());
    let mut addrs: BTreeSet<IpAddr> = extra.clone();
    for s in [a, b] {
        addrs.extend(s.ipcache_exact4.keys().map(|x| IpAddr::V4(*x)));
        addrs.extend(s.ipcache_exact6.keys().map(|x| IpAddr::V6(*x)));
        for n in s.ipcache_lpm4.keys() {
            addrs.insert(IpAddr::V4(n.network()));
            addrs.insert(IpAddr::V4(n.broadcast()));
        }
        for n in s.ipcache_lpm6.keys() {
            addrs.insert(IpAddr::V6(n.network()));
            addrs.insert(IpAddr::V6(n.broadcast()));
        }
    }
    let mut out = Vec::new();
    for p in &pods {
        for d in [direction::INGRESS, direction::EGRESS] {
            for a in &addrs {
                for pr in [proto::TCP, proto::UDP, proto::SCTP] {
                    for port in ports {
                        out.push((p.clone(), d, *a, pr, *port));
                    }
                }
                out.push((p.clone(), d, *a, ICMP, 0));
            }
        }
    }
    out
}
