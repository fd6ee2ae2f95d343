//! The allowed connectivity of a scope, end by end, judged by the
//! compiler's own walk ([`Compiler::side_survey`], the walk
//! [`Compiler::explain`] and the maps are held to): no policy semantics
//! are re-implemented here.
//!
//! **Ends.** Live pods that the datapath cannot tell apart — same identity
//! (namespace, labels, named ports) and same CIDR region for each of their
//! addresses — form one end, judged through one representative pod. Each
//! CIDR region that policies name is an end: a prefix minus the more
//! specific named prefixes inside it, judged at one address of the region
//! that no pod or node holds; so is `world` (per address family: what no
//! prefix holds). Every address of this node and of every known Node is an
//! end of its own (several are merged into one drawn node later when they
//! are judged alike).
//!
//! **Sides and ports.** A flow is allowed when both of its sides allow
//! it: the sender's egress (if it is a pod) and the receiver's ingress (if
//! it is a pod). Each side is judged over whole port ranges (one judgement
//! per interval of the pod's own port boundaries and protocol, other
//! protocols once), with the policies and tiers consulted for the pod
//! found once per pod and direction; the pair's ports are where both
//! sides' intervals overlap, and its rules those of both sides there.
//!
//! **Sharing.** Pods whose sides have equal keys (`SideKey`: the same
//! policies and tiers consulted, the same named ports) share one side.
//! A side sorts its peers into classes that no rule of it tells apart
//! (`SideSurvey::class_of`) and judges each class once. A pair is then
//! its two sides' classes, and pairs judged alike share one [`Allowed`]
//! (rules included), computed once: a whole cluster's pairs cost a few
//! hundred thousand class look-ups and a few thousand judgements.
//!
//! **Pairs.** Every pair with at least one end inside the scope: pods to
//! pods, pods to external ends and back. Two external ends are never
//! judged (no policy of Palisade's sits between them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use palisade_common::{direction, proto};
use palisade_compiler::{
    Compiler, Decider, IdentityInfo, Judgement, PeerKind, PodRef, PortSet, Side, SideKey,
    SidePorts, SideSurvey,
};

use super::model::{PortSpec, RuleRef, Tier};

/// What a graph is drawn for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The pods of one namespace and every peer they reach or are reached
    /// by.
    Namespace(String),
    /// One pod and its peers.
    Pod(PodRef),
    /// Every namespace.
    AllNamespaces,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Namespace(n) => write!(f, "namespace {n}"),
            Scope::Pod(p) => write!(f, "pod {p}"),
            Scope::AllNamespaces => write!(f, "all namespaces (aggregated by namespace)"),
        }
    }
}

/// The scope names nothing the compiler knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// No such namespace.
    #[error("namespace {0} not found")]
    UnknownNamespace(String),
    /// No such pod, or it is not running with an address.
    #[error("pod {0} not found, or not running with an address")]
    UnknownPod(PodRef),
}

/// What an end stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndKind {
    /// Pods judged alike (sorted), of one namespace.
    Pods {
        /// Their namespace.
        namespace: String,
        /// Their labels (`key=value`, sorted).
        labels: Vec<String>,
        /// The pods, sorted.
        pods: Vec<PodRef>,
    },
    /// A named CIDR region: `prefix` without the more specific named
    /// prefixes in `except` (only the largest of them).
    Cidr {
        /// The prefix.
        prefix: IpNet,
        /// The named prefixes carved out of it.
        except: Vec<IpNet>,
    },
    /// An address of this node (`node` empty) or of a known Node.
    Host {
        /// The Node's name.
        node: String,
    },
    /// Every address of a family that no policy names.
    World,
}

/// One end of the survey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// What it stands for.
    pub kind: EndKind,
    /// Whether enforced policies isolate its pods (ingress, egress).
    pub isolated: [bool; 2],
    /// What it is judged as.
    side: Side,
    /// The representative address (external ends).
    pub addr: Option<IpAddr>,
}

/// What policy allows from one end to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    /// Destination ports per protocol: TCP, UDP, SCTP.
    pub ports: [PortSet; 3],
    /// Protocols without ports (ICMP, ...).
    pub other: bool,
    /// The rules that allow it, both ends.
    pub rules: BTreeSet<RuleRef>,
}

/// The port-carrying protocols, in [`Allowed::ports`] order.
pub const PORT_PROTOCOLS: [u8; 3] = [proto::TCP, proto::UDP, proto::SCTP];

impl Allowed {
    /// Nothing allowed.
    pub fn is_empty(&self) -> bool {
        !self.other && self.ports.iter().all(PortSet::is_empty)
    }

    /// The same traffic (rules aside).
    pub fn same_traffic(&self, o: &Allowed) -> bool {
        self.other == o.other && self.ports == o.ports
    }

    /// Adds what `o` allows.
    pub fn union_with(&mut self, o: &Allowed) {
        for (a, b) in self.ports.iter_mut().zip(&o.ports) {
            a.union_with(b);
        }
        self.other |= o.other;
        self.rules.extend(o.rules.iter().cloned());
    }

    /// Whether `protocol` (an IP protocol number) to `port` is allowed.
    pub fn allows(&self, protocol: u8, port: u16) -> bool {
        match PORT_PROTOCOLS.iter().position(|p| *p == protocol) {
            Some(i) => self.ports[i].contains(port),
            None => self.other,
        }
    }

    /// The ports as the model writes them: `any 0-65535` when every
    /// protocol and port is allowed, else ranges per protocol and `other`.
    pub fn port_specs(&self) -> Vec<PortSpec> {
        if self.other && self.ports.iter().all(|p| *p == PortSet::all()) {
            return vec![PortSpec {
                protocol: "any".into(),
                first: 0,
                last: u16::MAX,
            }];
        }
        let mut out = Vec::new();
        for (i, set) in self.ports.iter().enumerate() {
            for &(first, last) in set.ranges() {
                out.push(PortSpec {
                    protocol: proto::Name(PORT_PROTOCOLS[i]).to_string(),
                    first,
                    last,
                });
            }
        }
        if self.other {
            out.push(PortSpec {
                protocol: "other".into(),
                first: 0,
                last: 0,
            });
        }
        out
    }
}

/// The survey of one scope.
#[derive(Clone, Debug)]
pub struct Connectivity {
    /// Every end.
    pub ends: Vec<End>,
    /// The ends inside the scope.
    pub inside: Vec<usize>,
    /// What is allowed between judged pairs `(from, to)`; pairs that allow
    /// nothing are absent. Pairs judged alike share one value.
    pub pairs: HashMap<(usize, usize), Arc<Allowed>>,
}

impl Connectivity {
    /// What `from → to` allows (nothing if not judged or nothing allowed).
    pub fn get(&self, from: usize, to: usize) -> Option<&Allowed> {
        self.pairs.get(&(from, to)).map(|a| &**a)
    }
}

fn step(a: IpAddr, up: bool) -> Option<IpAddr> {
    match a {
        IpAddr::V4(v) => {
            let n = u32::from(v);
            let n = if up {
                n.checked_add(1)?
            } else {
                n.checked_sub(1)?
            };
            Some(IpAddr::V4(n.into()))
        }
        IpAddr::V6(v) => {
            let n = u128::from(v);
            let n = if up {
                n.checked_add(1)?
            } else {
                n.checked_sub(1)?
            };
            Some(IpAddr::V6(n.into()))
        }
    }
}

/// An address of `outer` in none of `inner` and not `taken`, if any: the
/// lowest free address is `outer`'s first or follows a covered block.
fn free_address(outer: IpNet, inner: &[IpNet], taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let covered = |a: &IpAddr| taken.contains(a) || inner.iter().any(|n| n.contains(a));
    std::iter::once(outer.network())
        .chain(inner.iter().filter_map(|n| step(n.broadcast(), true)))
        .chain(taken.iter().filter_map(|a| step(*a, true)))
        .find(|a| outer.contains(a) && !covered(a))
}

/// The named regions and the world, each with a free address.
fn external_ends(prefixes: &[IpNet], taken: &BTreeSet<IpAddr>) -> Vec<End> {
    let mut out = Vec::new();
    let inner_of = |outer: &IpNet| -> Vec<IpNet> {
        prefixes
            .iter()
            .filter(|p| *p != outer && outer.contains(*p))
            .copied()
            .collect()
    };
    let largest = |inner: &[IpNet]| -> Vec<IpNet> {
        inner
            .iter()
            .filter(|p| !inner.iter().any(|q| q != *p && q.contains(*p)))
            .copied()
            .collect()
    };
    for prefix in prefixes {
        let inner = inner_of(prefix);
        if let Some(addr) = free_address(*prefix, &inner, taken) {
            out.push(End {
                kind: EndKind::Cidr {
                    prefix: *prefix,
                    except: largest(&inner),
                },
                isolated: [false; 2],
                side: Side::Addr(addr),
                addr: Some(addr),
            });
        }
    }
    for all in ["0.0.0.0/0", "::/0"] {
        let all: IpNet = all.parse().expect("a valid prefix");
        let inner = inner_of(&all);
        if prefixes.contains(&all) {
            continue;
        }
        if let Some(addr) = free_address(all, &inner, taken) {
            out.push(End {
                kind: EndKind::World,
                isolated: [false; 2],
                side: Side::Addr(addr),
                addr: Some(addr),
            });
        }
    }
    out
}

/// Pod ends: live pods grouped by identity and the regions of their
/// addresses; with `alone`, that pod is an end by itself.
fn pod_ends(c: &Compiler, prefixes: &[IpNet], alone: Option<&PodRef>) -> Vec<End> {
    let mut addrs: BTreeMap<PodRef, Vec<IpAddr>> = BTreeMap::new();
    for (a, p) in c.pod_addresses() {
        addrs.entry(p).or_default().push(a);
    }
    let region = |a: &IpAddr| {
        prefixes
            .iter()
            .filter(|p| p.contains(a))
            .max_by_key(|p| p.prefix_len())
            .copied()
    };
    // Identity, the region of each address, alone.
    type Class = (u32, Vec<Option<IpNet>>, bool);
    let mut classes: BTreeMap<Class, Vec<PodRef>> = BTreeMap::new();
    for (pod, mut ips) in addrs {
        let Some(id) = c.pod_identity(&pod) else {
            continue;
        };
        ips.sort();
        let regions = ips.iter().map(region).collect();
        let single = alone == Some(&pod);
        classes.entry((id, regions, single)).or_default().push(pod);
    }
    classes
        .into_iter()
        .map(|((id, _, _), pods)| {
            let rep = pods[0].clone();
            let labels = match c.identity(id) {
                Some(IdentityInfo::Pod { labels, .. }) => {
                    labels.iter().map(|(k, v)| format!("{k}={v}")).collect()
                }
                _ => Vec::new(),
            };
            let isolated =
                [direction::INGRESS, direction::EGRESS].map(|d| !c.selecting(&rep, d).0.is_empty());
            End {
                kind: EndKind::Pods {
                    namespace: rep.namespace.clone(),
                    labels,
                    pods,
                },
                isolated,
                side: Side::Pod(rep),
                addr: None,
            }
        })
        .collect()
}

/// This node's and every known Node's addresses.
fn host_ends(c: &Compiler) -> Vec<End> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let this = c.host_addresses().into_iter().map(|a| (String::new(), a));
    let nodes = c
        .nodes()
        .into_iter()
        .flat_map(|(n, addrs)| addrs.into_iter().map(move |a| (n.clone(), a)));
    for (node, addr) in this.chain(nodes) {
        if seen.insert(addr) {
            out.push(End {
                kind: EndKind::Host { node },
                isolated: [false; 2],
                side: Side::Addr(addr),
                addr: Some(addr),
            });
        }
    }
    out
}

/// The rules behind one allowed side, as reports name them.
fn rule_refs(j: &Judgement, out: &mut BTreeSet<RuleRef>) {
    let dir = direction::as_str(j.direction).to_string();
    let passed: Vec<String> = j
        .admin
        .iter()
        .filter(|m| m.rule.action == "Pass")
        .map(|m| m.rule.to_string())
        .collect();
    let mut push = |tier: Tier, name: String| {
        out.insert(RuleRef {
            direction: dir.clone(),
            tier,
            name,
            passed: passed.clone(),
        });
    };
    match j.decided_by() {
        Decider::Host => push(Tier::Default, "traffic from the node (exempt)".into()),
        Decider::Admin(_) => {
            if let Some(m) = &j.admin {
                push(Tier::Admin, m.rule.to_string());
            }
        }
        Decider::NetworkPolicy(_) => {
            for m in &j.allowed_by {
                push(
                    Tier::NetworkPolicy,
                    format!("{} {dir}[{}]", m.policy, m.rule),
                );
            }
        }
        Decider::Baseline(_) => {
            if let Some(m) = &j.baseline {
                push(Tier::Baseline, m.rule.to_string());
            }
        }
        Decider::Default => push(Tier::Default, "not isolated".into()),
    }
}

/// One side's allowed intervals of a protocol: `(first, last, rules)`.
type Intervals<'a> = Vec<(u16, u16, Option<&'a Judgement>)>;

/// A side's allowed intervals, or every port when there is no side (the
/// end is not a pod: nothing of Palisade's judges it).
fn intervals(side: Option<&SidePorts>, i: usize) -> Intervals<'_> {
    match side {
        Some(s) => s.ports[i]
            .iter()
            .map(|(lo, hi, j)| (*lo, *hi, Some(j)))
            .collect(),
        None => vec![(0, u16::MAX, None)],
    }
}

/// What both sides of a pair allow: each side's allowed intervals of a
/// protocol overlapped, with the rules of both sides there (no side: the
/// end is not a pod, nothing of Palisade's judges it).
fn combine(egress: Option<&SidePorts>, ingress: Option<&SidePorts>) -> Allowed {
    let mut out = Allowed::default();
    fn other(s: Option<&SidePorts>) -> Option<Option<&Judgement>> {
        s.map(|s| s.other.as_ref())
    }
    match (other(egress), other(ingress)) {
        (Some(None), _) | (_, Some(None)) => {}
        (e, i) => {
            out.other = true;
            for j in e.into_iter().chain(i).flatten() {
                rule_refs(j, &mut out.rules);
            }
        }
    }
    for i in 0..PORT_PROTOCOLS.len() {
        let es = intervals(egress, i);
        let is = intervals(ingress, i);
        let (mut x, mut y) = (0, 0);
        while x < es.len() && y < is.len() {
            let (elo, ehi, ej) = es[x];
            let (ilo, ihi, ij) = is[y];
            let (lo, hi) = (elo.max(ilo), ehi.min(ihi));
            if lo <= hi {
                out.ports[i].insert(lo, hi);
                for j in [ej, ij].into_iter().flatten() {
                    rule_refs(j, &mut out.rules);
                }
            }
            if ehi < ihi {
                x += 1;
            } else {
                y += 1;
            }
        }
    }
    out
}

/// One side of a pair as judged: (side, class of the peer in it).
type Judged = Option<(usize, usize)>;

struct Judge<'c> {
    c: &'c Compiler,
    /// The distinct sides (pods whose sides have equal keys share one).
    sides: Vec<SideSurvey<'c>>,
    by_key: HashMap<SideKey, usize>,
    /// Each pod end's side per direction (ingress, egress), built on
    /// first use.
    side_of: HashMap<(usize, u8), usize>,
    /// The class of a peer end (with the flow's address family: IPv4) in
    /// a side.
    class_of: HashMap<(usize, usize, bool), usize>,
    /// What a pair allows, by how its two sides judged it: pairs judged
    /// alike share one value.
    allowed: HashMap<(Judged, Judged), Option<Arc<Allowed>>>,
}

impl Judge<'_> {
    /// The class of `peer` (end `peer_end`) in the side of `pod` (end
    /// `end`) in `dir`.
    fn class(
        &mut self,
        end: usize,
        pod: &PodRef,
        dir: u8,
        peer_end: usize,
        peer: &palisade_compiler::End,
    ) -> (usize, usize) {
        let side = match self.side_of.get(&(end, dir)) {
            Some(&s) => s,
            None => {
                let survey = self.c.side_survey(pod, dir, false);
                let s = match self.by_key.get(survey.key()) {
                    Some(&s) => s,
                    None => {
                        self.by_key.insert(survey.key().clone(), self.sides.len());
                        self.sides.push(survey);
                        self.sides.len() - 1
                    }
                };
                self.side_of.insert((end, dir), s);
                s
            }
        };
        let key = (side, peer_end, peer.addr.is_ipv4());
        let class = match self.class_of.get(&key) {
            Some(&k) => k,
            None => {
                let k = self.sides[side].class_of(peer);
                self.class_of.insert(key, k);
                k
            }
        };
        (side, class)
    }

    /// What `from → to` allows: each side judged over whole port ranges
    /// (egress at the sender, ingress at the receiver), the flow allowed
    /// where both are, with the rules of both sides.
    fn pair(&mut self, ends: &[End], a: usize, b: usize) -> Option<Arc<Allowed>> {
        // Ends without an address family in common never meet.
        let (from, to) = self.c.resolve_flow(&ends[a].side, &ends[b].side).ok()?;
        let egress = match &from.kind {
            PeerKind::Pod(p) => Some(self.class(a, p, direction::EGRESS, b, &to)),
            _ => None,
        };
        if let Some((s, k)) = egress
            && self.sides[s].class(k).is_empty()
        {
            return None;
        }
        let ingress = match &to.kind {
            PeerKind::Pod(p) => Some(self.class(b, p, direction::INGRESS, a, &from)),
            _ => None,
        };
        if let Some(known) = self.allowed.get(&(egress, ingress)) {
            return known.clone();
        }
        let side = |j: Judged| j.map(|(s, k)| self.sides[s].class(k));
        let allowed = combine(side(egress), side(ingress));
        let allowed = (!allowed.is_empty()).then(|| Arc::new(allowed));
        self.allowed.insert((egress, ingress), allowed.clone());
        allowed
    }
}

/// Surveys `scope`: its ends, their peers, and what is allowed between them.
pub fn survey(c: &Compiler, scope: &Scope) -> Result<Connectivity, ScopeError> {
    survey_regions(c, scope, &[])
}

/// [`survey`] with the external regions cut finer by `extra` prefixes too
/// (to compare two compilers end by end: `palisade diff`).
pub fn survey_regions(
    c: &Compiler,
    scope: &Scope,
    extra: &[IpNet],
) -> Result<Connectivity, ScopeError> {
    let mut prefixes = c.region_prefixes();
    prefixes.extend(extra.iter().copied());
    prefixes.sort();
    prefixes.dedup();
    let alone = match scope {
        Scope::Pod(p) => Some(p),
        _ => None,
    };
    let mut ends = pod_ends(c, &prefixes, alone);
    let inside: Vec<usize> = ends
        .iter()
        .enumerate()
        .filter(|(_, e)| match (&e.kind, scope) {
            (EndKind::Pods { namespace, .. }, Scope::Namespace(n)) => namespace == n,
            (EndKind::Pods { pods, .. }, Scope::Pod(p)) => pods.len() == 1 && pods[0] == *p,
            (EndKind::Pods { .. }, Scope::AllNamespaces) => true,
            _ => false,
        })
        .map(|(i, _)| i)
        .collect();
    match scope {
        Scope::Namespace(n) if inside.is_empty() && !c.has_namespace(n) => {
            return Err(ScopeError::UnknownNamespace(n.clone()));
        }
        Scope::Pod(p) if inside.is_empty() => return Err(ScopeError::UnknownPod(p.clone())),
        _ => {}
    }
    let hosts = host_ends(c);
    let mut taken: BTreeSet<IpAddr> = c.pod_addresses().into_iter().map(|(a, _)| a).collect();
    taken.extend(hosts.iter().filter_map(|h| h.addr));
    ends.extend(external_ends(&prefixes, &taken));
    ends.extend(hosts);
    let is_inside: BTreeSet<usize> = inside.iter().copied().collect();
    let mut judge = Judge {
        c,
        sides: Vec::new(),
        by_key: HashMap::new(),
        side_of: HashMap::new(),
        class_of: HashMap::new(),
        allowed: HashMap::new(),
    };
    let mut pairs = HashMap::new();
    for &a in &inside {
        for b in 0..ends.len() {
            let mut todo = vec![(a, b)];
            if !is_inside.contains(&b) {
                todo.push((b, a));
            }
            for (x, y) in todo {
                if let Some(allowed) = judge.pair(&ends, x, y) {
                    pairs.insert((x, y), allowed);
                }
            }
        }
    }
    Ok(Connectivity {
        ends,
        inside,
        pairs,
    })
}
