//! `palisade diff`: which connections a change of manifests opens and
//! closes, per pod pair (and pod ↔ outside region) and port/protocol,
//! grouped into one line per (sender namespace, receiver, ports), and the
//! classic widening mistakes.
//!
//! Both sides are surveyed over the whole cluster by the graph's
//! computation (`graph::survey_regions`), the outside cut into the regions
//! either side's policies name, so every outside end is the same set of
//! addresses on both sides. Pods present on one side only are reported as
//! added or removed, never as opening or closing anything.
//!
//! **Warning.** A NetworkPolicy can only allow. An egress rule to
//! `0.0.0.0/0` (or `::/0`) with `except` — "everything but the metadata
//! server" — written to block something, allows everything else; where
//! other policies had isolated a pod's egress, it opens it. Such a rule is
//! named when it opens something for a pod whose egress was isolated
//! before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_common::direction;
use palisade_compiler::{Compiler, PodRef, PolicyName, PortSet};
use serde::{Deserialize, Serialize};

use crate::graph::{Allowed, Connectivity, EndKind, PortSpec, Scope, ScopeError, survey_regions};

/// One pair whose allowed traffic changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The sender: `NS/POD`, or an outside region (`cidr 10.0.0.0/8`,
    /// `world (IPv4)`, `host 192.0.2.1`).
    pub from: String,
    /// The receiver, named the same way.
    pub to: String,
    /// Newly allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opened: Vec<PortSpec>,
    /// No longer allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<PortSpec>,
}

/// Changes of one kind grouped by sender namespace, receiver and ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `opens` or `closes`.
    pub verb: String,
    /// `NS/*` for pods, else the outside region.
    pub from: String,
    /// `NS/*` for pods, else the outside region.
    pub to: String,
    /// The ports, as written by the graph (`TCP 80`, `any`).
    pub ports: String,
    /// Distinct senders.
    pub sources: usize,
    /// Distinct receivers.
    pub destinations: usize,
}

/// What changed between two sets of manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    /// One line per group of changes.
    pub summary: Vec<Summary>,
    /// Every changed pair.
    pub changes: Vec<Change>,
    /// Pods only after the change.
    pub added_pods: Vec<String>,
    /// Pods only before the change.
    pub removed_pods: Vec<String>,
    /// Widening mistakes (see the module documentation).
    pub warnings: Vec<String>,
    /// Objects rejected on either side (left out: the comparison is
    /// partial).
    pub rejected: Vec<String>,
}

impl DiffReport {
    /// Whether something opens.
    pub fn opens(&self) -> bool {
        self.changes.iter().any(|c| !c.opened.is_empty())
    }

    /// Whether something closes.
    pub fn closes(&self) -> bool {
        self.changes.iter().any(|c| !c.closed.is_empty())
    }

    /// The exit status `palisade diff` documents: 0 no change in
    /// connectivity, 1 something opens, 3 only closes.
    pub fn exit_status(&self) -> u8 {
        if self.opens() {
            1
        } else if self.closes() {
            3
        } else {
            0
        }
    }
}

impl std::fmt::Display for DiffReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.rejected {
            writeln!(f, "PARTIAL: left out (rejected): {r}")?;
        }
        for w in &self.warnings {
            writeln!(f, "WARNING: {w}")?;
        }
        for p in &self.added_pods {
            writeln!(f, "added pod {p}")?;
        }
        for p in &self.removed_pods {
            writeln!(f, "removed pod {p}")?;
        }
        if self.summary.is_empty() {
            writeln!(f, "no change in allowed connectivity")?;
        }
        for s in &self.summary {
            let what = if s.verb == "opens" { "new" } else { "lost" };
            writeln!(
                f,
                "{} {} -> {} on {}: {} source(s), {} {what} destination(s)",
                s.verb, s.from, s.to, s.ports, s.sources, s.destinations
            )?;
        }
        Ok(())
    }
}

/// The ports of `a` not in `b`.
fn minus(a: &PortSet, b: &PortSet) -> PortSet {
    let mut out = PortSet::default();
    for &(lo, hi) in a.ranges() {
        let mut start = lo as u32;
        for &(blo, bhi) in b.ranges() {
            let (blo, bhi) = (blo as u32, bhi as u32);
            if bhi < start || blo > hi as u32 {
                continue;
            }
            if blo > start {
                out.insert(start as u16, (blo - 1) as u16);
            }
            start = bhi + 1;
        }
        if start <= hi as u32 {
            out.insert(start as u16, hi);
        }
    }
    out
}

fn difference(a: &Allowed, b: &Allowed) -> Allowed {
    let mut out = Allowed::default();
    for i in 0..3 {
        out.ports[i] = minus(&a.ports[i], &b.ports[i]);
    }
    out.other = a.other && !b.other;
    out.rules = a.rules.clone();
    out
}

/// An end as the report names it: its pods, or the outside region.
fn names(conn: &Connectivity, i: usize) -> Vec<String> {
    let e = &conn.ends[i];
    match &e.kind {
        EndKind::Pods { pods, .. } => pods.iter().map(|p| p.to_string()).collect(),
        EndKind::Cidr { prefix, except } => {
            let mut s = format!("cidr {prefix}");
            if !except.is_empty() {
                let ex: Vec<String> = except.iter().map(|x| x.to_string()).collect();
                s.push_str(&format!(" except {}", ex.join(", ")));
            }
            vec![s]
        }
        EndKind::World => match e.addr {
            Some(IpAddr::V6(_)) => vec!["world (IPv6)".into()],
            _ => vec!["world (IPv4)".into()],
        },
        EndKind::Host { .. } => vec![format!(
            "host {}",
            e.addr.map(|a| a.to_string()).unwrap_or_default()
        )],
    }
}

/// Allowed traffic per named pair.
fn expand(conn: &Connectivity) -> BTreeMap<(String, String), Allowed> {
    let mut out = BTreeMap::new();
    for (&(a, b), allowed) in &conn.pairs {
        let (fa, tb) = (names(conn, a), names(conn, b));
        for f in &fa {
            for t in &tb {
                out.insert((f.clone(), t.clone()), Allowed::clone(allowed));
            }
        }
    }
    out
}

fn group_of(name: &str) -> String {
    match name.split_once('/') {
        Some((ns, _)) if !name.starts_with("cidr ") && !name.contains(' ') => format!("{ns}/*"),
        _ => name.to_string(),
    }
}

fn ports_text(p: &[PortSpec]) -> String {
    let v: Vec<String> = p
        .iter()
        .map(|p| match p.protocol.as_str() {
            "any" => "any port".to_string(),
            "other" => "other protocols".to_string(),
            _ if p.first == 0 && p.last == u16::MAX => format!("{} any port", p.protocol),
            _ if p.first == p.last => format!("{} {}", p.protocol, p.first),
            _ => format!("{} {}-{}", p.protocol, p.first, p.last),
        })
        .collect();
    v.join(", ")
}

/// Egress rules to everything but some exceptions: `(name as reports
/// write it, what it allows)`.
fn allow_all_except(after: &BTreeMap<PolicyName, NetworkPolicy>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, np) in after {
        let rules = np.spec.as_ref().and_then(|s| s.egress.as_ref());
        for (i, r) in rules.into_iter().flatten().enumerate() {
            for peer in r.to.iter().flatten() {
                let Some(b) = &peer.ip_block else { continue };
                let all = b.cidr.parse::<IpNet>().is_ok_and(|n| n.prefix_len() == 0);
                let except = b.except.clone().unwrap_or_default();
                if all && !except.is_empty() {
                    out.push((
                        format!("{name} egress[{i}]"),
                        format!("{} except {}", b.cidr, except.join(", ")),
                    ));
                }
            }
        }
    }
    out
}

/// Compares two compiled sets of manifests. `after_policies` are the
/// NetworkPolicies as written on the new side (for the warnings).
pub fn diff(
    before: &Compiler,
    after: &Compiler,
    after_policies: &BTreeMap<PolicyName, NetworkPolicy>,
) -> Result<DiffReport, ScopeError> {
    let mut prefixes: Vec<IpNet> = before.region_prefixes();
    prefixes.extend(after.region_prefixes());
    let b = survey_regions(before, &Scope::AllNamespaces, &prefixes)?;
    let a = survey_regions(after, &Scope::AllNamespaces, &prefixes)?;
    let pods = |c: &Compiler| -> BTreeSet<String> {
        c.pods()
            .into_iter()
            .filter(|p| c.pod_identity(p).is_some())
            .map(|p| p.to_string())
            .collect()
    };
    let (pb, pa) = (pods(before), pods(after));
    let only = |x: &BTreeSet<String>, y: &BTreeSet<String>| -> Vec<String> {
        x.difference(y).cloned().collect()
    };
    let mut report = DiffReport {
        added_pods: only(&pa, &pb),
        removed_pods: only(&pb, &pa),
        ..DiffReport::default()
    };
    let one_sided: BTreeSet<&String> = report
        .added_pods
        .iter()
        .chain(&report.removed_pods)
        .collect();
    let (eb, ea) = (expand(&b), expand(&a));
    let keys: BTreeSet<&(String, String)> = eb.keys().chain(ea.keys()).collect();
    let none = Allowed::default();
    let mut opened_rules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in keys {
        if one_sided.contains(&key.0) || one_sided.contains(&key.1) {
            continue;
        }
        let (x, y) = (eb.get(key).unwrap_or(&none), ea.get(key).unwrap_or(&none));
        let opened = difference(y, x);
        let closed = difference(x, y);
        if opened.is_empty() && closed.is_empty() {
            continue;
        }
        if !opened.is_empty() {
            for r in &opened.rules {
                opened_rules
                    .entry(r.name.clone())
                    .or_default()
                    .insert(key.0.clone());
            }
        }
        report.changes.push(Change {
            from: key.0.clone(),
            to: key.1.clone(),
            opened: if opened.is_empty() {
                Vec::new()
            } else {
                opened.port_specs()
            },
            closed: if closed.is_empty() {
                Vec::new()
            } else {
                closed.port_specs()
            },
        });
    }
    // Summaries.
    type Group = (String, String, String, String);
    let mut groups: BTreeMap<Group, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for c in &report.changes {
        for (verb, ports) in [("opens", &c.opened), ("closes", &c.closed)] {
            if ports.is_empty() {
                continue;
            }
            let g = groups
                .entry((
                    verb.to_string(),
                    group_of(&c.from),
                    group_of(&c.to),
                    ports_text(ports),
                ))
                .or_default();
            g.0.insert(c.from.clone());
            g.1.insert(c.to.clone());
        }
    }
    report.summary = groups
        .into_iter()
        .map(|((verb, from, to, ports), (s, d))| Summary {
            verb,
            from,
            to,
            ports,
            sources: s.len(),
            destinations: d.len(),
        })
        .collect();
    // Warnings: allow-all-except rules opening egress isolated before.
    for (rule, what) in allow_all_except(after_policies) {
        let Some(senders) = opened_rules.get(&rule) else {
            continue;
        };
        let isolated: Vec<&String> = senders
            .iter()
            .filter(|s| {
                s.split_once('/').is_some_and(|(ns, name)| {
                    !before
                        .selecting(&PodRef::new(ns, name), direction::EGRESS)
                        .0
                        .is_empty()
                })
            })
            .collect();
        if isolated.is_empty() {
            continue;
        }
        let list: Vec<&str> = isolated.iter().map(|s| s.as_str()).collect();
        report.warnings.push(format!(
            "NetworkPolicy {rule} allows egress to {what}: a NetworkPolicy only allows, so it \
             opens egress for {} pod(s) other policies had isolated ({}); to block \
             destinations, use a ClusterNetworkPolicy Deny",
            list.len(),
            list.join(", ")
        ));
    }
    let mut rejected: Vec<String> = before
        .rejections()
        .values()
        .map(|e| format!("before: {e}"))
        .chain(after.rejections().values().map(|e| format!("after: {e}")))
        .collect();
    rejected.sort();
    report.rejected = rejected;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::minus;
    use palisade_compiler::PortSet;

    #[test]
    fn minus_cuts_ranges() {
        let a = PortSet::from_ranges([(0, 100), (200, 300)]);
        let b = PortSet::from_ranges([(0, 10), (50, 60), (250, 400)]);
        assert_eq!(minus(&a, &b).ranges(), [(11, 49), (61, 100), (200, 249)]);
        assert!(minus(&b, &PortSet::all()).is_empty());
        assert_eq!(minus(&PortSet::all(), &PortSet::default()), PortSet::all());
    }
}
