//! `-o table`: truth tables like policy-assistant's probe output, one per
//! port interval and protocol that some edge allows: rows are senders,
//! columns receivers (numbered, with a legend), `.` allowed, `X` denied,
//! `-` not judged (neither end is in the scope, or both are outside the
//! cluster). Pods are listed one by one; aggregated nodes and external
//! nodes are one row each. With the live overlay, a list follows: denied
//! attempts and drops per edge, and the allowed edges unused in the
//! window.

use std::collections::BTreeSet;
use std::fmt::Write;

use palisade_common::proto;

use super::connectivity::PORT_PROTOCOLS;
use super::model::{EdgeKind, Graph, Node, NodeKind};

/// One row/column: a name and the node it belongs to.
struct Entry<'g> {
    name: String,
    node: &'g Node,
}

fn entries(g: &Graph) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    for n in &g.nodes {
        if n.kind == NodeKind::Workload && !n.pods.is_empty() {
            out.extend(n.pods.iter().map(|p| Entry {
                name: p.clone(),
                node: n,
            }));
        } else {
            let name = match n.kind {
                NodeKind::Namespace => format!("namespace {}", n.label),
                _ => n.label.clone(),
            };
            out.push(Entry { name, node: n });
        }
    }
    out
}

/// The probes: `(protocol, first port, last port)` intervals over which
/// every edge is uniform, among those some edge allows; `other` last.
fn probes(g: &Graph) -> Vec<(u8, u16, u16)> {
    let mut out = Vec::new();
    for pr in PORT_PROTOCOLS {
        let name = proto::Name(pr).to_string();
        let mut starts = BTreeSet::from([0u16]);
        for p in g
            .edges
            .iter()
            .filter(|e| e.kind == EdgeKind::Allowed)
            .flat_map(|e| &e.ports)
        {
            if p.protocol == name {
                starts.insert(p.first);
                if let Some(n) = p.last.checked_add(1) {
                    starts.insert(n);
                }
            }
        }
        let starts: Vec<u16> = starts.into_iter().collect();
        for (k, &lo) in starts.iter().enumerate() {
            let hi = starts.get(k + 1).map_or(u16::MAX, |n| n - 1);
            if g.edges
                .iter()
                .filter(|e| e.kind == EdgeKind::Allowed)
                .any(|e| e.ports.iter().any(|p| p.allows(pr, lo)))
            {
                out.push((pr, lo, hi));
            }
        }
    }
    if g.edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Allowed)
        .any(|e| e.ports.iter().any(|p| p.allows(proto::ICMP, 0)))
    {
        out.push((proto::ICMP, 0, 0));
    }
    out
}

fn probe_name(&(pr, lo, hi): &(u8, u16, u16)) -> String {
    if !proto::has_ports(pr) {
        return "other protocols (ICMP, ...)".into();
    }
    let name = proto::Name(pr);
    match (lo, hi) {
        (0, u16::MAX) => format!("{name} every port"),
        (lo, hi) if lo == hi => format!("{name} {lo}"),
        (lo, hi) => format!("{name} {lo}-{hi}"),
    }
}

/// Renders the truth tables. `in_scope` says which nodes the scope is
/// about (pairs with neither end in it were not judged).
pub fn render(g: &Graph, in_scope: &dyn Fn(&Node) -> bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "palisade graph: {}", g.scope);
    if g.partial() {
        let _ = writeln!(
            out,
            "PARTIAL: {} object(s) rejected and left out:",
            g.rejected.len()
        );
        for r in &g.rejected {
            let _ = writeln!(out, "  {r}");
        }
    }
    let es = entries(g);
    let width = es.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let cw = es.len().to_string().len().max(1);
    let _ = writeln!(out, "\nreceivers (columns):");
    for (i, e) in es.iter().enumerate() {
        let _ = writeln!(out, "  {:>cw$}  {}", i + 1, e.name);
    }
    let probes = probes(g);
    if probes.is_empty() {
        let _ = writeln!(out, "\nnothing is allowed");
    }
    for p in &probes {
        let _ = writeln!(
            out,
            "\n{}   (. allowed, X denied, - not judged)",
            probe_name(p)
        );
        let mut head = format!("{:width$} ", "");
        for i in 0..es.len() {
            let _ = write!(head, " {:>cw$}", i + 1);
        }
        let _ = writeln!(out, "{}", head.trim_end());
        for from in &es {
            let _ = write!(out, "{:width$} ", from.name);
            for to in &es {
                let external =
                    |n: &Node| matches!(n.kind, NodeKind::Cidr | NodeKind::Host | NodeKind::World);
                let judged = (in_scope(from.node) || in_scope(to.node))
                    && !(external(from.node) && external(to.node));
                let cell = if !judged {
                    '-'
                } else if g
                    .allowed_edge(&from.node.id, &to.node.id)
                    .is_some_and(|e| e.ports.iter().any(|q| q.allows(p.0, p.1)))
                {
                    '.'
                } else {
                    'X'
                };
                let _ = write!(out, " {cell:>cw$}");
            }
            out.push('\n');
        }
    }
    overlay(g, &mut out);
    out
}

/// The live overlay as a list (nothing without one).
fn overlay(g: &Graph, out: &mut String) {
    let Some(w) = g.window_seconds else {
        return;
    };
    let label = |id: &str| {
        g.nodes
            .iter()
            .find(|n| n.id == id)
            .map_or(id.to_string(), |n| match &n.namespace {
                Some(ns) if n.kind == NodeKind::Workload => format!("{ns}/{}", n.label),
                _ => n.label.clone(),
            })
    };
    let ports = |e: &super::Edge| {
        e.ports
            .iter()
            .map(super::dot::port_text)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let causes = |e: &super::Edge| {
        e.causes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "\nlive, the last {w} s:");
    for p in &g.overlay_partial {
        let _ = writeln!(out, "  PARTIAL: {p}");
    }
    let mut any = false;
    for e in g.edges.iter().filter(|e| e.drops.is_some_and(|n| n > 0)) {
        any = true;
        let kind = match e.kind {
            EdgeKind::Denied => "denied, attempted",
            EdgeKind::Allowed => "allowed, dropped",
        };
        let _ = writeln!(
            out,
            "  {kind}: {} -> {} on {}: {} drop(s) ({})",
            label(&e.from),
            label(&e.to),
            ports(e),
            e.drops.unwrap_or(0),
            causes(e)
        );
    }
    if !any {
        let _ = writeln!(out, "  no drops");
    }
    let unused: Vec<String> = g
        .edges
        .iter()
        .filter(|e| e.used == Some(false))
        .map(|e| {
            format!(
                "  unused: {} -> {} on {}",
                label(&e.from),
                label(&e.to),
                ports(e)
            )
        })
        .collect();
    let used = g.edges.iter().filter(|e| e.used == Some(true)).count();
    let _ = writeln!(
        out,
        "  {used} allowed edge(s) in use, {} unused",
        unused.len()
    );
    for u in unused {
        let _ = writeln!(out, "{u}");
    }
}
