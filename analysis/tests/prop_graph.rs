//! The graph's edges, expanded back to pod pairs (and pod ↔ outside
//! addresses) × protocols × ports, equal the naive evaluators of
//! NetworkPolicy and ClusterNetworkPolicy tiers the compiler's own tests
//! use (`compiler/tests/common/`, written from the API text and working on
//! the objects, never on the compiler's model). The whole-cluster view,
//! aggregated by namespace, equals the union of every pod's own view
//! (`--pod`) grouped by namespace: ports and rules.

#[path = "../../compiler/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::Cluster;
use common::generate::{NAMESPACES, TIER_PROBE_PORTS, arb_tier_cluster};
use common::tiers::Model;
use ipnet::IpNet;
use palisade_analysis::graph::{Allowed, Graph, NodeKind, PORT_PROTOCOLS, RuleRef, Scope, compute};
use palisade_common::{direction, proto};
use palisade_compiler::{PodRef, PortSet};
use proptest::prelude::*;

fn family(a: &IpAddr) -> u8 {
    if a.is_ipv4() { 4 } else { 6 }
}

/// The ports worth probing: the generator's edges and every edge of the
/// graph's own port ranges (a range merged too far shows there).
fn ports(g: &Graph) -> BTreeSet<u16> {
    let mut out: BTreeSet<u16> = TIER_PROBE_PORTS.into_iter().collect();
    out.extend([0, 1, 65534, 65535]);
    for p in g.edges.iter().flat_map(|e| &e.ports) {
        out.extend([p.first, p.last]);
        out.extend(p.first.checked_sub(1));
        out.extend(p.last.checked_add(1));
    }
    out
}

fn cases(ports: &BTreeSet<u16>) -> Vec<(u8, u16)> {
    let mut v = vec![(common::ICMP, 0)];
    for pr in [proto::TCP, proto::UDP, proto::SCTP] {
        v.extend(ports.iter().map(|p| (pr, *p)));
    }
    v
}

/// What the graph says about `from → to` (node ids).
fn graph_allows(g: &Graph, from: Option<&str>, to: Option<&str>, pr: u8, port: u16) -> bool {
    let (Some(from), Some(to)) = (from, to) else {
        return false;
    };
    g.allowed_edge(from, to)
        .is_some_and(|e| e.ports.iter().any(|p| p.allows(pr, port)))
}

/// The drawn node of an outside address: the CIDR node whose prefix holds
/// it and none of whose exceptions do; else, if no named prefix holds it,
/// the world node of its family; node addresses: the host node listing it.
fn outside_node(g: &Graph, named: &[IpNet], a: IpAddr, host: bool) -> Option<String> {
    if host {
        return g
            .nodes
            .iter()
            .find(|n| n.kind == NodeKind::Host && n.addresses.contains(&a.to_string()))
            .map(|n| n.id.clone());
    }
    let parse = |s: &str| s.trim_matches(',').parse::<IpNet>().ok();
    for n in g.nodes.iter().filter(|n| n.kind == NodeKind::Cidr) {
        let mut words = n.label.split(' ');
        let prefix = words.next().and_then(parse).unwrap();
        let except: Vec<IpNet> = words.filter_map(parse).collect();
        if prefix.contains(&a) && !except.iter().any(|e| e.contains(&a)) {
            return Some(n.id.clone());
        }
    }
    if named.iter().any(|n| n.contains(&a)) {
        return None;
    }
    let fam = if a.is_ipv4() {
        "world:ipv4"
    } else {
        "world:ipv6"
    };
    g.nodes
        .iter()
        .find(|n| n.id == "world" || n.id == fam)
        .map(|n| n.id.clone())
}

/// The address a flow between two pods uses: the sender's IPv4 address if
/// it has one (else its first), and the receiver's of that family.
fn pod_pair_addrs(cl: &Cluster, p: &PodRef, q: &PodRef) -> Option<(IpAddr, IpAddr)> {
    let ips = |r: &PodRef| Cluster::pod_ips(&cl.pods[&(r.namespace.clone(), r.name.clone())]);
    let (pi, qi) = (ips(p), ips(q));
    let a = pi.iter().find(|a| a.is_ipv4()).or(pi.first()).copied()?;
    let b = qi.iter().find(|b| family(b) == family(&a)).copied()?;
    Some((a, b))
}

fn check_namespace(cl: &Cluster, ns: &str) -> Result<(), String> {
    let c = cl.compile();
    if !c.has_namespace(ns) {
        // Nothing lives there: the graph is refused (tested by the CLI).
        return Ok(());
    }
    let g = compute(&c, &Scope::Namespace(ns.into()), Vec::new()).map_err(|e| e.to_string())?;
    let cases = cases(&ports(&g));
    let live: Vec<PodRef> = cl
        .pods
        .iter()
        .filter(|(_, p)| Cluster::pod_live(p))
        .map(|((n, m), _)| PodRef::new(n.clone(), m.clone()))
        .collect();
    let node = |p: &PodRef| g.node_of_pod(&p.to_string()).map(|n| n.id.clone());
    let flow = |what: String, pr: u8, port: u16, want: bool| {
        format!("{what} {pr}/{port}: the model says {want}\ngraph: {g:#?}")
    };
    for p in &live {
        for q in &live {
            if p.namespace != ns && q.namespace != ns {
                continue;
            }
            for &(pr, port) in &cases {
                let want = pod_pair_addrs(cl, p, q).is_some_and(|(a, b)| {
                    cl.tiered(p, direction::EGRESS, b, pr, port, Model::Faithful)
                        .allowed()
                        && cl
                            .tiered(q, direction::INGRESS, a, pr, port, Model::Faithful)
                            .allowed()
                });
                let got = graph_allows(&g, node(p).as_deref(), node(q).as_deref(), pr, port);
                if got != want {
                    return Err(flow(format!("{p} -> {q}"), pr, port, want));
                }
            }
        }
    }
    let nodes: BTreeSet<IpAddr> = cl.nodes.values().flat_map(Cluster::node_ips).collect();
    let hosts: BTreeSet<IpAddr> = cl.hosts.iter().copied().chain(nodes).collect();
    // Which prefixes are named decides only where an address is drawn.
    let named = c.region_prefixes();
    let mut outside = cl.probe_addresses();
    outside.extend(common::tiers::network_edges(cl.cnps.values()));
    outside.extend(
        common::tiers::OUTSIDERS
            .iter()
            .map(|a| a.parse::<IpAddr>().unwrap()),
    );
    for a in outside {
        if live.iter().any(|p| {
            Cluster::pod_ips(&cl.pods[&(p.namespace.clone(), p.name.clone())]).contains(&a)
        }) {
            continue;
        }
        let host = hosts.contains(&a);
        let on = outside_node(&g, &named, a, host);
        for p in live.iter().filter(|p| p.namespace == ns) {
            let has_family = Cluster::pod_ips(&cl.pods[&(p.namespace.clone(), p.name.clone())])
                .iter()
                .any(|x| family(x) == family(&a));
            for &(pr, port) in &cases {
                let out = has_family
                    && cl
                        .tiered(p, direction::EGRESS, a, pr, port, Model::Faithful)
                        .allowed();
                // Traffic from this node is exempt from ingress policy.
                let this_node = cl.hosts.contains(&a);
                let into = has_family
                    && (this_node
                        || cl
                            .tiered(p, direction::INGRESS, a, pr, port, Model::Faithful)
                            .allowed());
                let got_out = graph_allows(&g, node(p).as_deref(), on.as_deref(), pr, port);
                if got_out != out {
                    return Err(flow(format!("{p} -> {a} ({on:?})"), pr, port, out));
                }
                let got_in = graph_allows(&g, on.as_deref(), node(p).as_deref(), pr, port);
                if got_in != into {
                    return Err(flow(format!("{a} ({on:?}) -> {p}"), pr, port, into));
                }
            }
        }
    }
    Ok(())
}

/// The names a node's traffic is compared under across views: pods by
/// namespace, node addresses one by one, the world per family, CIDR
/// regions by their id (one node per named prefix in every view). With
/// `coarse`, every node address is `host` and both families `world`: a
/// view may draw several of them as one node when they allow the same
/// traffic, and then its edge carries the rules of all of them.
fn compared_as(g: &Graph, id: &str, coarse: bool) -> Vec<String> {
    let n = g
        .nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("edge end {id} is not a node"));
    match n.kind {
        NodeKind::Workload | NodeKind::Namespace => {
            vec![format!(
                "namespace:{}",
                n.namespace.as_deref().unwrap_or("")
            )]
        }
        NodeKind::Host if coarse => vec!["host".into()],
        NodeKind::Host => n.addresses.iter().map(|a| format!("host {a}")).collect(),
        NodeKind::World if coarse => vec!["world".into()],
        NodeKind::World if id == "world" => vec!["world:ipv4".into(), "world:ipv6".into()],
        NodeKind::World | NodeKind::Cidr => vec![id.to_string()],
    }
}

/// Every edge of `g` under the compared names: its traffic (rules apart)
/// under the fine names, its rules under the coarse ones; edges meeting
/// under one name pair are unioned.
#[derive(Default)]
struct Expanded {
    traffic: BTreeMap<(String, String), Allowed>,
    rules: BTreeMap<(String, String), BTreeSet<RuleRef>>,
}

fn expand(g: &Graph, out: &mut Expanded) {
    for e in &g.edges {
        let mut traffic = Allowed::default();
        for p in &e.ports {
            match p.protocol.as_str() {
                "any" => {
                    traffic.other = true;
                    traffic.ports = std::array::from_fn(|_| PortSet::all());
                }
                "other" => traffic.other = true,
                name => {
                    let i = PORT_PROTOCOLS
                        .iter()
                        .position(|pr| proto::Name(*pr).to_string() == name)
                        .unwrap_or_else(|| panic!("unknown protocol {name}"));
                    traffic.ports[i].insert(p.first, p.last);
                }
            }
        }
        for from in compared_as(g, &e.from, false) {
            for to in compared_as(g, &e.to, false) {
                let t = out.traffic.entry((from.clone(), to)).or_default();
                t.union_with(&traffic);
            }
        }
        for from in compared_as(g, &e.from, true) {
            for to in compared_as(g, &e.to, true) {
                let r = out.rules.entry((from.clone(), to)).or_default();
                r.extend(e.rules.iter().cloned());
            }
        }
    }
}

/// Where two maps differ, if they do.
fn differ<V: PartialEq + std::fmt::Debug>(
    got: &BTreeMap<(String, String), V>,
    want: &BTreeMap<(String, String), V>,
    same: impl Fn(&V, &V) -> bool,
) -> Option<String> {
    got.keys().chain(want.keys()).find_map(|key| {
        let (g, w) = (got.get(key), want.get(key));
        let ok = matches!((g, w), (Some(g), Some(w)) if same(g, w));
        (!ok).then(|| {
            format!(
                "{} -> {}: the whole-cluster view has {g:?}, the pods' own views {w:?}",
                key.0, key.1
            )
        })
    })
}

fn check_aggregated(cl: &Cluster) -> Result<(), String> {
    let c = cl.compile();
    let all = compute(&c, &Scope::AllNamespaces, Vec::new()).map_err(|e| e.to_string())?;
    if !all.aggregated || all.nodes.iter().any(|n| n.kind == NodeKind::Workload) {
        return Err(format!("not aggregated by namespace: {all:#?}"));
    }
    let mut got = Expanded::default();
    expand(&all, &mut got);
    let mut want = Expanded::default();
    for ((ns, name), p) in &cl.pods {
        if !Cluster::pod_live(p) {
            continue;
        }
        let pod = PodRef::new(ns.clone(), name.clone());
        // A pod the compiler does not run (no address yet) has no view.
        if let Ok(g) = compute(&c, &Scope::Pod(pod), Vec::new()) {
            expand(&g, &mut want);
        }
    }
    let bad = differ(&got.traffic, &want.traffic, Allowed::same_traffic)
        .or_else(|| differ(&got.rules, &want.rules, |a, b| a == b));
    if let Some(bad) = bad {
        return Err(format!("{bad}\nwhole-cluster view: {all:#?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn whole_cluster_view_is_the_pods_views_by_namespace(cluster in arb_tier_cluster()) {
        check_aggregated(&cluster).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn graph_edges_equal_the_naive_evaluators(cluster in arb_tier_cluster()) {
        for ns in NAMESPACES {
            check_namespace(&cluster, ns).map_err(TestCaseError::fail)?;
        }
    }
}
