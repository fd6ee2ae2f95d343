//! The live overlay (`palisade graph --live`): what the agent saw, laid on
//! the allowed graph. Drops and live connections arrive by address
//! ([`Observed`]); each address is resolved to the survey's end that holds
//! it (a pod's address to its pod's end, a node address to its host end,
//! any other address to the longest named CIDR region containing it, else
//! the world of its family), the same ends the allowed edges join.
//!
//! A drop whose pair policy allows on its protocol and port is counted on
//! the allowed edge (something else dropped it: a revoked connection, a
//! bad source, a malformed packet); any other drop with an end in the
//! scope becomes, or adds to, a *denied attempt* edge between the two
//! nodes, with the ports seen. Allowed edges are marked used when a live
//! connection goes their way on a port they allow, unused otherwise.
//! Observations with no end in the scope are not this graph's business.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use palisade_common::proto;
use palisade_compiler::{Compiler, PodRef};
use serde::{Deserialize, Serialize};

use super::connectivity::{Connectivity, EndKind};
use super::model::{Edge, EdgeKind, PortSpec};

/// Drops of one kind between two addresses, counted over the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenDrop {
    /// The packet's source.
    pub src: IpAddr,
    /// The packet's destination.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
    /// The drop reason (`policy-denied`, ...).
    pub cause: String,
    /// How many.
    pub count: u64,
}

/// A live connection: opened from `src` to `dst` on `protocol`/`port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFlow {
    /// The end that opened it.
    pub src: IpAddr,
    /// The end it was opened to.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
}

/// What the agent saw in the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The window the drops cover, in seconds.
    pub window_seconds: u64,
    /// The drops.
    pub drops: Vec<SeenDrop>,
    /// The live connections.
    pub flows: Vec<SeenFlow>,
    /// Why the counts are incomplete (empty: complete).
    pub partial: Vec<String>,
}

/// A drop resolved to ends: `(from, to, protocol, port, cause, count)`.
type EndDrop = (usize, usize, u8, u16, String, u64);

/// Observations resolved to the survey's ends.
pub(crate) struct EndObserved {
    pub(crate) drops: Vec<EndDrop>,
    /// `(from, to, protocol, port)`.
    pub(crate) flows: Vec<(usize, usize, u8, u16)>,
    pub(crate) window_seconds: u64,
    pub(crate) partial: Vec<String>,
}

/// Resolves addresses to ends (see the module docs).
struct Resolver {
    pods: HashMap<IpAddr, usize>,
    hosts: HashMap<IpAddr, usize>,
    /// `(prefix, end)`, longest prefixes first.
    regions: Vec<(ipnet::IpNet, usize)>,
    /// The world end per family: IPv4, IPv6.
    world: [Option<usize>; 2],
}

impl Resolver {
    fn new(c: &Compiler, conn: &Connectivity) -> Resolver {
        let mut end_of_pod: HashMap<&PodRef, usize> = HashMap::new();
        let mut hosts = HashMap::new();
        let mut regions = Vec::new();
        let mut world = [None, None];
        for (i, e) in conn.ends.iter().enumerate() {
            match &e.kind {
                EndKind::Pods { pods, .. } => {
                    for p in pods {
                        end_of_pod.insert(p, i);
                    }
                }
                EndKind::Host { .. } => {
                    if let Some(a) = e.addr {
                        hosts.insert(a, i);
                    }
                }
                EndKind::Cidr { prefix, .. } => regions.push((*prefix, i)),
                EndKind::World => {
                    if let Some(a) = e.addr {
                        world[usize::from(a.is_ipv6())] = Some(i);
                    }
                }
            }
        }
        regions.sort_by_key(|(p, _)| std::cmp::Reverse(p.prefix_len()));
        let pods = c
            .pod_addresses()
            .into_iter()
            .filter_map(|(a, p)| end_of_pod.get(&p).map(|i| (a, *i)))
            .collect();
        Resolver {
            pods,
            hosts,
            regions,
            world,
        }
    }

    fn end(&self, a: &IpAddr) -> Option<usize> {
        self.pods
            .get(a)
            .or_else(|| self.hosts.get(a))
            .copied()
            .or_else(|| {
                self.regions
                    .iter()
                    .find(|(p, _)| p.contains(a))
                    .map(|(_, i)| *i)
            })
            .or(self.world[usize::from(a.is_ipv6())])
    }
}

/// Resolves `obs` to the ends of `conn`, keeping what touches the scope.
pub(crate) fn resolve(c: &Compiler, conn: &Connectivity, obs: &Observed) -> EndObserved {
    let r = Resolver::new(c, conn);
    let inside: BTreeSet<usize> = conn.inside.iter().copied().collect();
    let touches = |a: usize, b: usize| inside.contains(&a) || inside.contains(&b);
    let mut drops: BTreeMap<(usize, usize, u8, u16, String), u64> = BTreeMap::new();
    for d in &obs.drops {
        if let (Some(a), Some(b)) = (r.end(&d.src), r.end(&d.dst))
            && touches(a, b)
        {
            *drops
                .entry((a, b, d.protocol, d.port, d.cause.clone()))
                .or_default() += d.count;
        }
    }
    let flows = obs
        .flows
        .iter()
        .filter_map(|f| {
            let (a, b) = (r.end(&f.src)?, r.end(&f.dst)?);
            touches(a, b).then_some((a, b, f.protocol, f.port))
        })
        .collect();
    EndObserved {
        drops: drops
            .into_iter()
            .map(|((a, b, p, port, cause), n)| (a, b, p, port, cause, n))
            .collect(),
        flows,
        window_seconds: obs.window_seconds,
        partial: obs.partial.clone(),
    }
}

/// The ports of a denied edge: single ports merged into ranges per
/// protocol; protocols without ports are `other`.
fn port_specs(seen: &BTreeSet<(u8, u16)>) -> Vec<PortSpec> {
    let mut out: Vec<PortSpec> = Vec::new();
    let mut other = false;
    for &(p, port) in seen {
        if !proto::has_ports(p) {
            other = true;
            continue;
        }
        let name = proto::Name(p).to_string();
        if let Some(last) = out.last_mut()
            && last.protocol == name
            && last.last.checked_add(1) == Some(port)
        {
            last.last = port;
            continue;
        }
        out.push(PortSpec {
            protocol: name,
            first: port,
            last: port,
        });
    }
    if other {
        out.push(PortSpec {
            protocol: "other".into(),
            first: 0,
            last: 0,
        });
    }
    out
}

/// Lays `obs` on `edges` (the allowed edges between the nodes `node_of`
/// names): drop counts and causes, denied attempts, used or unused.
pub(crate) fn apply(
    conn: &Connectivity,
    node_of: &BTreeMap<usize, usize>,
    node_ids: &[String],
    edges: &mut Vec<Edge>,
    obs: &EndObserved,
) {
    let mut index: HashMap<(String, String), usize> = edges
        .iter()
        .enumerate()
        .map(|(i, e)| ((e.from.clone(), e.to.clone()), i))
        .collect();
    for e in edges.iter_mut() {
        e.used = Some(false);
    }
    let ids = |a: usize, b: usize| -> Option<(String, String)> {
        Some((
            node_ids[*node_of.get(&a)?].clone(),
            node_ids[*node_of.get(&b)?].clone(),
        ))
    };
    let mut denied_ports: BTreeMap<usize, BTreeSet<(u8, u16)>> = BTreeMap::new();
    for (a, b, p, port, cause, n) in &obs.drops {
        let Some((from, to)) = ids(*a, *b) else {
            continue;
        };
        let allowed = conn.get(*a, *b).is_some_and(|x| x.allows(*p, *port));
        let i = if allowed {
            match index.get(&(from.clone(), to.clone())) {
                Some(i) => *i,
                None => continue,
            }
        } else {
            let i = edges.len();
            let i = *index
                .entry((format!("denied:{from}"), to.clone()))
                .or_insert(i);
            if i == edges.len() {
                edges.push(Edge {
                    from,
                    to,
                    kind: EdgeKind::Denied,
                    ports: Vec::new(),
                    rules: Vec::new(),
                    drops: Some(0),
                    causes: BTreeMap::new(),
                    used: None,
                });
            }
            denied_ports.entry(i).or_default().insert((*p, *port));
            i
        };
        let e = &mut edges[i];
        e.drops = Some(e.drops.unwrap_or(0) + n);
        *e.causes.entry(cause.clone()).or_default() += n;
    }
    for (i, seen) in denied_ports {
        edges[i].ports = port_specs(&seen);
    }
    for (a, b, p, port) in &obs.flows {
        if !conn.get(*a, *b).is_some_and(|x| x.allows(*p, *port)) {
            continue;
        }
        if let Some((from, to)) = ids(*a, *b)
            && let Some(&i) = index.get(&(from, to))
        {
            edges[i].used = Some(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{EdgeKind, Graph, Scope, compute_observed};
    use palisade_compiler::Compiler;
    use serde_json::json;

    fn cluster() -> Compiler {
        let mut c = Compiler::new("n1");
        c.apply_namespace(&serde_json::from_value(json!({"metadata": {"name": "prod"}})).unwrap())
            .unwrap();
        c.apply_namespace(&serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap())
            .unwrap();
        for (ns, name, ip) in [
            ("prod", "web", "10.0.0.1"),
            ("prod", "db", "10.0.0.2"),
            ("other", "x", "10.0.1.1"),
        ] {
            let pod = json!({"metadata": {"name": name, "namespace": ns, "uid": name,
                                          "labels": {"app": name}},
                             "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
                             "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
            c.apply_pod(&serde_json::from_value(pod).unwrap()).unwrap();
        }
        let policy = json!({"metadata": {"name": "db", "namespace": "prod"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                  "ports": [{"protocol": "TCP", "port": 5432}]}]}});
        c.apply_policy(&serde_json::from_value(policy).unwrap())
            .unwrap();
        let deny_all = json!({"metadata": {"name": "deny-all", "namespace": "other"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}});
        c.apply_policy(&serde_json::from_value(deny_all).unwrap())
            .unwrap();
        c.commit();
        c
    }

    fn seen(src: &str, dst: &str, port: u16, cause: &str, count: u64) -> SeenDrop {
        SeenDrop {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: proto::TCP,
            port,
            cause: cause.into(),
            count,
        }
    }

    fn graph(obs: &Observed) -> Graph {
        compute_observed(
            &cluster(),
            &Scope::Namespace("prod".into()),
            Vec::new(),
            Some(obs),
        )
        .unwrap()
    }

    const WEB: &str = "workload:prod/web";
    const DB: &str = "workload:prod/db";

    #[test]
    fn drops_land_on_denied_attempts_or_their_allowed_edge() {
        let obs = Observed {
            window_seconds: 300,
            drops: vec![
                seen("10.0.0.1", "10.0.0.2", 80, "policy-denied", 3),
                seen("10.0.0.1", "10.0.0.2", 81, "policy-denied", 1),
                seen("10.0.0.1", "10.0.0.2", 443, "policy-denied", 2),
                seen("10.0.0.1", "10.0.0.2", 5432, "policy-revoked", 1),
                seen("203.0.113.9", "10.0.0.2", 5432, "policy-denied", 2),
                // Neither end in the scope: not this graph's.
                seen("192.0.2.1", "192.0.2.2", 80, "policy-denied", 9),
            ],
            flows: vec![SeenFlow {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                protocol: proto::TCP,
                port: 5432,
            }],
            partial: vec!["1 drop(s) not counted".into()],
        };
        let g = graph(&obs);
        assert_eq!(g.window_seconds, Some(300));
        assert_eq!(g.overlay_partial, obs.partial);
        let denied = g.denied_edge(WEB, DB).expect("web -> db denied attempts");
        assert_eq!(denied.drops, Some(6));
        assert_eq!(denied.causes, BTreeMap::from([("policy-denied".into(), 6)]));
        let ports: Vec<String> = denied
            .ports
            .iter()
            .map(crate::graph::dot::port_text)
            .collect();
        assert_eq!(ports, ["TCP 80-81", "TCP 443"]);
        let allowed = g.allowed_edge(WEB, DB).expect("web -> db allowed on 5432");
        assert_eq!(allowed.drops, Some(1));
        assert_eq!(
            allowed.causes,
            BTreeMap::from([("policy-revoked".into(), 1)])
        );
        assert_eq!(allowed.used, Some(true));
        // db's egress is open: allowed, and nothing uses it.
        let back = g.allowed_edge(DB, WEB).expect("db -> web allowed");
        assert_eq!((back.used, back.drops), (Some(false), None));
        let world = g
            .edges
            .iter()
            .find(|e| e.kind == EdgeKind::Denied && e.to == DB && e.from.starts_with("world"))
            .expect("world -> db denied attempts");
        assert_eq!(world.drops, Some(2));
        let total: u64 = g.edges.iter().filter_map(|e| e.drops).sum();
        assert_eq!(total, 9, "the out-of-scope drops are not drawn");
        // The allowed graph is the offline one.
        let offline =
            crate::graph::compute(&cluster(), &Scope::Namespace("prod".into()), Vec::new())
                .unwrap();
        let allowed_of = |g: &Graph| -> Vec<(String, String, Vec<PortSpec>)> {
            g.edges
                .iter()
                .filter(|e| e.kind == EdgeKind::Allowed)
                .map(|e| (e.from.clone(), e.to.clone(), e.ports.clone()))
                .collect()
        };
        assert_eq!(allowed_of(&g), allowed_of(&offline));
        assert!(
            offline
                .edges
                .iter()
                .all(|e| e.used.is_none() && e.drops.is_none())
        );
    }

    #[test]
    fn a_denied_peer_outside_the_drawn_graph_is_drawn() {
        // other/x is isolated both ways: offline, prod's graph has no x.
        let obs = Observed {
            window_seconds: 60,
            drops: vec![seen("10.0.1.1", "10.0.0.2", 22, "policy-denied", 4)],
            flows: Vec::new(),
            partial: Vec::new(),
        };
        let offline = graph(&Observed::default());
        assert!(offline.node_of_pod("other/x").is_none(), "{offline:#?}");
        let g = graph(&obs);
        let x = g.node_of_pod("other/x").expect("x drawn for its attempt");
        let e = g.denied_edge(&x.id, DB).expect("x -> db denied attempt");
        assert_eq!(e.drops, Some(4));
    }
}
