//! From a survey's ends to the drawn [`Graph`]: which ends become one node,
//! and the edges between nodes.
//!
//! **Workloads.** Pod ends of one namespace with the same workload name
//! are candidates for one node. The workload name is the value of the
//! first of the labels `app.kubernetes.io/name`, `app`, `k8s-app` that the
//! pods carry, else their whole label set (`key=value,...`), else
//! `(no labels)`. Candidates are drawn as one node only when they are
//! interchangeable in the picture: the same isolation, the same traffic to
//! and from every other drawn end, and the same traffic between any two of
//! them (themselves included). Otherwise the candidates are split into
//! interchangeable subsets (`web`, `web (2)`, ...): exactness comes before
//! prettiness. External ends are merged the same way (every `world` end
//! into one `world` node, every node address into one `host` node) when
//! they are judged alike, and split otherwise (`host`, `host:2`, ...). The
//! world node is `world` when it stands for both address families, else
//! `world:ipv4` or `world:ipv6`.
//!
//! **Aggregated** (the whole-cluster view): pods are grouped by namespace
//! without the check, an edge carries the union of what its pods allow,
//! and a namespace whose pods differ in isolation is `partly` isolated.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::connectivity::{Allowed, Connectivity, EndKind, Scope};
use super::model::{Edge, EdgeKind, Graph, Isolation, Node, NodeKind};
use super::overlay::{self, EndObserved};

/// The labels that name a workload, first found wins.
pub const WORKLOAD_LABELS: [&str; 3] = ["app.kubernetes.io/name", "app", "k8s-app"];

fn workload_name(labels: &[String]) -> String {
    for key in WORKLOAD_LABELS {
        let prefix = format!("{key}=");
        if let Some(v) = labels.iter().find_map(|l| l.strip_prefix(&prefix)) {
            return v.to_string();
        }
    }
    if labels.is_empty() {
        "(no labels)".into()
    } else {
        labels.join(",")
    }
}

/// The candidate group of an end: `(kind, namespace, name)`.
fn group_key(kind: &EndKind, aggregated: bool) -> (NodeKind, String, String) {
    match kind {
        EndKind::Pods { namespace, .. } if aggregated => {
            (NodeKind::Namespace, namespace.clone(), namespace.clone())
        }
        EndKind::Pods {
            namespace, labels, ..
        } => (NodeKind::Workload, namespace.clone(), workload_name(labels)),
        EndKind::Cidr { prefix, except } => {
            let mut label = prefix.to_string();
            if !except.is_empty() {
                let ex: Vec<String> = except.iter().map(|e| e.to_string()).collect();
                label.push_str(&format!(" except {}", ex.join(", ")));
            }
            (NodeKind::Cidr, String::new(), label)
        }
        EndKind::Host { .. } => (NodeKind::Host, String::new(), "host".into()),
        EndKind::World => (NodeKind::World, String::new(), "world".into()),
    }
}

fn same(a: Option<&Allowed>, b: Option<&Allowed>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => std::ptr::eq(x, y) || x.same_traffic(y),
        _ => false,
    }
}

/// Splits candidates into interchangeable subsets (see the module docs).
fn split(conn: &Connectivity, drawn: &[usize], members: &[usize]) -> Vec<Vec<usize>> {
    let mut rest: Vec<usize> = members.to_vec();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let f = rest.remove(0);
        let mut group = vec![f];
        let mut left = Vec::new();
        for m in rest {
            let ok = conn.ends[m].isolated == conn.ends[f].isolated
                && drawn
                    .iter()
                    .filter(|x| **x != m && !group.contains(x))
                    .all(|&x| {
                        same(conn.get(m, x), conn.get(f, x)) && same(conn.get(x, m), conn.get(x, f))
                    })
                && group.iter().chain([&m]).all(|&s| {
                    same(conn.get(s, m), conn.get(f, f)) && same(conn.get(m, s), conn.get(f, f))
                });
            if ok {
                group.push(m);
            } else {
                left.push(m);
            }
        }
        out.push(group);
        rest = left;
    }
    out
}

fn isolation(conn: &Connectivity, members: &[usize], dir: usize) -> Isolation {
    let pods: Vec<bool> = members
        .iter()
        .filter(|m| matches!(conn.ends[**m].kind, EndKind::Pods { .. }))
        .map(|m| conn.ends[*m].isolated[dir])
        .collect();
    if pods.is_empty() {
        Isolation::NotApplicable
    } else if pods.iter().all(|i| *i) {
        Isolation::Isolated
    } else if pods.iter().any(|i| *i) {
        Isolation::Partly
    } else {
        Isolation::Open
    }
}

/// Draws the survey: nodes, edges, the scope's name and the rejected
/// objects; with `observed`, the live overlay too (the ends of denied
/// attempts are drawn as well).
pub(crate) fn build(
    conn: &Connectivity,
    scope: &Scope,
    rejected: Vec<String>,
    observed: Option<&EndObserved>,
) -> Graph {
    let aggregated = *scope == Scope::AllNamespaces;
    let inside: BTreeSet<usize> = conn.inside.iter().copied().collect();
    // Drawn: the scope's ends and every end they exchange traffic with.
    let mut drawn: BTreeSet<usize> = inside.clone();
    for &(a, b) in conn.pairs.keys() {
        if inside.contains(&a) || inside.contains(&b) {
            drawn.insert(a);
            drawn.insert(b);
        }
    }
    for (a, b, ..) in observed.iter().flat_map(|o| &o.drops) {
        drawn.insert(*a);
        drawn.insert(*b);
    }
    let drawn: Vec<usize> = drawn.into_iter().collect();
    let mut candidates: BTreeMap<(NodeKind, String, String), Vec<usize>> = BTreeMap::new();
    for &i in &drawn {
        candidates
            .entry(group_key(&conn.ends[i].kind, aggregated))
            .or_default()
            .push(i);
    }
    let mut nodes = Vec::new();
    let mut node_of: BTreeMap<usize, usize> = BTreeMap::new();
    let mut members_of: Vec<Vec<usize>> = Vec::new();
    for ((kind, namespace, name), members) in candidates {
        let groups = if kind == NodeKind::Namespace {
            vec![members]
        } else {
            split(conn, &drawn, &members)
        };
        let several = groups.len() > 1;
        for (k, group) in groups.into_iter().enumerate() {
            let suffix = match (several, kind) {
                // One world end per family: say which unless both.
                (_, NodeKind::World) => {
                    let v6 = |m: &usize| matches!(conn.ends[*m].addr, Some(IpAddr::V6(_)));
                    match (group.iter().any(|m| !v6(m)), group.iter().any(v6)) {
                        (true, true) => String::new(),
                        (false, _) => " (IPv6)".into(),
                        (_, false) => " (IPv4)".into(),
                    }
                }
                (false, _) => String::new(),
                (true, _) if k == 0 => String::new(),
                (true, _) => format!(" ({})", k + 1),
            };
            let label = format!("{name}{suffix}");
            let id = match kind {
                NodeKind::Workload => format!("workload:{namespace}/{label}"),
                NodeKind::Namespace => format!("namespace:{namespace}"),
                NodeKind::Cidr => format!("cidr:{label}"),
                NodeKind::Host | NodeKind::World => {
                    let tail: String = suffix.chars().filter(|c| c.is_alphanumeric()).collect();
                    let base = if kind == NodeKind::Host {
                        "host"
                    } else {
                        "world"
                    };
                    if tail.is_empty() {
                        base.to_string()
                    } else {
                        format!("{base}:{}", tail.to_lowercase())
                    }
                }
            };
            let mut pods: Vec<String> = Vec::new();
            let mut shared: Option<BTreeSet<String>> = None;
            for m in &group {
                if let EndKind::Pods {
                    pods: ps, labels, ..
                } = &conn.ends[*m].kind
                {
                    pods.extend(ps.iter().map(|p| p.to_string()));
                    let ls: BTreeSet<String> = labels.iter().cloned().collect();
                    shared = Some(match shared {
                        None => ls,
                        Some(s) => s.intersection(&ls).cloned().collect(),
                    });
                }
            }
            pods.sort();
            for m in &group {
                node_of.insert(*m, nodes.len());
            }
            nodes.push(Node {
                id,
                label,
                kind,
                namespace: (!namespace.is_empty()).then(|| namespace.clone()),
                pods,
                labels: if kind == NodeKind::Workload {
                    shared.unwrap_or_default().into_iter().collect()
                } else {
                    Vec::new()
                },
                addresses: if kind == NodeKind::Host {
                    let mut a: Vec<IpAddr> =
                        group.iter().filter_map(|m| conn.ends[*m].addr).collect();
                    a.sort();
                    a.iter().map(|a| a.to_string()).collect()
                } else {
                    Vec::new()
                },
                ingress: isolation(conn, &group, 0),
                egress: isolation(conn, &group, 1),
            });
            members_of.push(group);
        }
    }
    let mut by_pair: BTreeMap<(usize, usize), Allowed> = BTreeMap::new();
    // Pairs judged alike share one value: each is added to an edge once.
    let mut added: HashSet<(usize, usize, *const Allowed)> = HashSet::new();
    for (&(a, b), allowed) in &conn.pairs {
        if !(inside.contains(&a) || inside.contains(&b)) {
            continue;
        }
        let (Some(&na), Some(&nb)) = (node_of.get(&a), node_of.get(&b)) else {
            continue;
        };
        if added.insert((na, nb, Arc::as_ptr(allowed))) {
            by_pair.entry((na, nb)).or_default().union_with(allowed);
        }
    }
    let mut edges: Vec<Edge> = by_pair
        .into_iter()
        .map(|((a, b), allowed)| Edge {
            from: nodes[a].id.clone(),
            to: nodes[b].id.clone(),
            kind: EdgeKind::Allowed,
            ports: allowed.port_specs(),
            rules: allowed.rules.into_iter().collect(),
            drops: None,
            causes: BTreeMap::new(),
            used: None,
        })
        .collect();
    if let Some(o) = observed {
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        overlay::apply(conn, &node_of, &ids, &mut edges, o);
    }
    edges.sort_by(|x, y| (&x.from, &x.to, x.kind).cmp(&(&y.from, &y.to, y.kind)));
    nodes.sort_by(|x, y| x.id.cmp(&y.id));
    Graph {
        scope: scope.to_string(),
        nodes,
        edges,
        rejected,
        aggregated,
        window_seconds: observed.map(|o| o.window_seconds),
        overlay_partial: observed.map(|o| o.partial.clone()).unwrap_or_default(),
    }
}
