//! Rule-level attribution: why a flow between two ends is allowed or
//! denied, read from the compiler's validated model (the same objects the
//! maps are compiled from, so the answer agrees with the datapath).
//!
//! A flow `from → to` is judged twice, as the datapath does: by the egress
//! policies of `from` (if it is a pod) and by the ingress policies of `to`
//! (if it is a pod). For each side the answer names the policies that
//! select the pod in that direction (isolating it), and every
//! `(policy, rule, peer, port)` that allows the flow, or that none does.
//! Audited policies (see [`crate::audit`]) are reported beside the enforced
//! ones and never change the verdict.
//!
//! ClusterNetworkPolicies are walked as the datapath walks them: the node's
//! exemption, then the Admin tier's first matching rule (by priority, then
//! name, then written order), then NetworkPolicy for a pod it isolates,
//! then the Baseline tier's first matching rule. Each side names the
//! deciding rule of each tier, or that none matched; a `nodes` peer is
//! named as such ([`PeerMatch::Nodes`]). Audited ClusterNetworkPolicies
//! are not enforced: where one selects the pod, the walk is done again
//! with them enforced too ([`Judgement::audit_decided_by`], the datapath's
//! audit view).
//!
//! The matching mirrors the compiled entries exactly, including their one
//! conservative corner (egress named ports towards ipBlocks match only if
//! every address of every pod sharing the destination's identity lies in
//! the rule's blocks; see `rules.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use palisade_common::{direction, proto};

use crate::cluster::{self, TierRuleName};
use crate::engine::Engine;
use crate::identity::IdentityKey;
use crate::inspect::{self, PolicyName};
use crate::ipcache::Claim;
use crate::model::{
    Action, ClusterPolicyObj, NamedPorts, Peers, PolicyObj, PolicyRef, Tier, resolve_named,
};
use crate::ports::class_index;
use crate::rules::World;
use crate::state::PodRef;

/// One end of a flow as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// A pod by namespace and name (its address of the query's family).
    Pod(PodRef),
    /// An address (resolved to the pod or node owning it, if any).
    Addr(IpAddr),
}

/// What to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The sender.
    pub from: Side,
    /// The receiver.
    pub to: Side,
    /// IP protocol number (6, 17, 132, or anything else for "other").
    pub protocol: u8,
    /// Destination port (ignored for protocols without ports).
    pub port: u16,
    /// Judge traffic from this node's addresses by policy (the agent's
    /// `--enforce-host`); otherwise it is exempt from ingress policy.
    pub enforce_host: bool,
}

/// What an end of the flow turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// A live pod.
    Pod(PodRef),
    /// An address of this node.
    Host,
    /// Any other address.
    Address,
}

/// A resolved end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// The address used.
    pub addr: IpAddr,
    /// What owns it.
    pub kind: PeerKind,
}

/// Which peer of a rule matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerMatch {
    /// The rule has no `from`/`to`: every peer.
    All,
    /// The `n`th podSelector/namespaceSelector peer of the rule (counting
    /// only such peers, in order).
    Selector(usize),
    /// The `n`th ipBlock peer of the rule (counting only ipBlocks; a
    /// ClusterNetworkPolicy's `networks` peers count one per CIDR).
    Block(usize),
    /// The `n`th `nodes` peer of a ClusterNetworkPolicy rule (counting
    /// only such peers): it selects a node that has the peer's address.
    Nodes(usize),
}

/// Which port of a rule matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// The rule has no ports: every protocol and port.
    Any,
    /// A numeric port or range of the rule (merged with its neighbours of
    /// the same protocol).
    Range(u16, u16),
    /// A named port, resolved on the destination pod.
    Named(String, u16),
}

/// One rule that allows the flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    /// The policy.
    pub policy: PolicyName,
    /// Index in `spec.ingress` or `spec.egress`.
    pub rule: usize,
    /// The peer.
    pub peer: PeerMatch,
    /// The port.
    pub port: PortMatch,
}

/// The first rule of a ClusterNetworkPolicy tier that matches the flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierMatch {
    /// The rule, as monitor names it.
    pub rule: TierRuleName,
    /// The peer that matched.
    pub peer: PeerMatch,
    /// The port that matched.
    pub port: PortMatch,
    /// The first matching rule of every other policy of the tier with the
    /// same priority (the API leaves their order undefined; Palisade
    /// consults them by name, so `rule` decides).
    pub ties: Vec<TierRuleName>,
}

impl TierMatch {
    fn action(&self) -> Action {
        match self.rule.action {
            "Accept" => Action::Accept,
            "Pass" => Action::Pass,
            _ => Action::Deny,
        }
    }
}

/// The verdict of one side (one pod, one direction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The pod judged.
    pub pod: PodRef,
    /// `palisade_common::direction`.
    pub direction: u8,
    /// Enforced policies selecting the pod in this direction.
    pub selecting: Vec<PolicyName>,
    /// Audited policies selecting the pod in this direction.
    pub audited: Vec<PolicyName>,
    /// Traffic from this node, exempt from ingress policy.
    pub host_exempt: bool,
    /// Enforced rules allowing the flow.
    pub allowed_by: Vec<RuleMatch>,
    /// Audited rules allowing the flow.
    pub audit_allowed_by: Vec<RuleMatch>,
    /// The Admin-tier ClusterNetworkPolicies selecting the pod in this
    /// direction, in the order they are consulted.
    pub admin_selecting: Vec<String>,
    /// The Admin tier's first matching rule.
    pub admin: Option<TierMatch>,
    /// The Baseline-tier ClusterNetworkPolicies selecting the pod in this
    /// direction, in the order they are consulted.
    pub baseline_selecting: Vec<String>,
    /// The Baseline tier's first matching rule.
    pub baseline: Option<TierMatch>,
    /// Audited ClusterNetworkPolicies selecting the pod in this direction
    /// (both tiers, by name).
    pub audited_cluster: Vec<String>,
    /// With audited ClusterNetworkPolicies enforced too: the Admin tier's
    /// first matching rule (`None` also when `audited_cluster` is empty).
    pub audit_admin: Option<TierMatch>,
    /// Same for the Baseline tier.
    pub audit_baseline: Option<TierMatch>,
}

impl Judgement {
    /// Whether enforced policies isolate the pod in this direction.
    pub fn isolated(&self) -> bool {
        !self.selecting.is_empty()
    }

    /// Which step of the walk decides this side.
    pub fn decided_by(&self) -> Decider {
        if self.host_exempt {
            return Decider::Host;
        }
        match self.admin.as_ref().map(TierMatch::action) {
            Some(Action::Accept) => return Decider::Admin(true),
            Some(Action::Deny) => return Decider::Admin(false),
            Some(Action::Pass) | None => {}
        }
        if self.isolated() {
            return Decider::NetworkPolicy(!self.allowed_by.is_empty());
        }
        match self.baseline.as_ref().map(TierMatch::action) {
            Some(Action::Deny) => Decider::Baseline(false),
            Some(_) => Decider::Baseline(true),
            None => Decider::Default,
        }
    }

    /// Whether the flow passes this side.
    pub fn allowed(&self) -> bool {
        match self.decided_by() {
            Decider::Host | Decider::Default => true,
            Decider::Admin(a) | Decider::NetworkPolicy(a) | Decider::Baseline(a) => a,
        }
    }

    /// Which step of the walk would decide this side if audited policies
    /// were enforced too (`None` when no audited policy selects the pod
    /// here): the datapath's audit view.
    pub fn audit_decided_by(&self) -> Option<Decider> {
        if self.audited.is_empty() && self.audited_cluster.is_empty() {
            return None;
        }
        if self.host_exempt {
            return Some(Decider::Host);
        }
        let (admin, baseline) = if self.audited_cluster.is_empty() {
            (&self.admin, &self.baseline)
        } else {
            (&self.audit_admin, &self.audit_baseline)
        };
        match admin.as_ref().map(TierMatch::action) {
            Some(Action::Accept) => return Some(Decider::Admin(true)),
            Some(Action::Deny) => return Some(Decider::Admin(false)),
            Some(Action::Pass) | None => {}
        }
        if self.isolated() || !self.audited.is_empty() {
            let allowed = !self.allowed_by.is_empty() || !self.audit_allowed_by.is_empty();
            return Some(Decider::NetworkPolicy(allowed));
        }
        Some(match baseline.as_ref().map(TierMatch::action) {
            Some(Action::Deny) => Decider::Baseline(false),
            Some(_) => Decider::Baseline(true),
            None => Decider::Default,
        })
    }

    /// The tier rule that would decide this side with audited policies
    /// enforced too, if a tier decides.
    pub fn audit_rule(&self) -> Option<&TierMatch> {
        let (admin, baseline) = if self.audited_cluster.is_empty() {
            (&self.admin, &self.baseline)
        } else {
            (&self.audit_admin, &self.audit_baseline)
        };
        match self.audit_decided_by()? {
            Decider::Admin(_) => admin.as_ref(),
            Decider::Baseline(_) => baseline.as_ref(),
            _ => None,
        }
    }

    /// Whether the flow would pass this side if audited policies were
    /// enforced too (`None` when no audited policy selects the pod here).
    pub fn audit_allowed(&self) -> Option<bool> {
        self.audit_decided_by().map(|d| match d {
            Decider::Host | Decider::Default => true,
            Decider::Admin(a) | Decider::NetworkPolicy(a) | Decider::Baseline(a) => a,
        })
    }
}

/// The step of the walk that decides one side, and whether it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decider {
    /// The node's traffic to its pods: exempt.
    Host,
    /// The Admin tier's first matching rule (Accept or Deny).
    Admin(bool),
    /// NetworkPolicy, which isolates the pod.
    NetworkPolicy(bool),
    /// The Baseline tier's first matching rule.
    Baseline(bool),
    /// Nothing decides: Kubernetes' default, allowed.
    Default,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The sender.
    pub from: End,
    /// The receiver.
    pub to: End,
    /// The sender's egress policy (if the sender is a pod).
    pub egress: Option<Judgement>,
    /// The receiver's ingress policy (if the receiver is a pod).
    pub ingress: Option<Judgement>,
}

impl Explanation {
    /// Whether the flow is allowed (both sides).
    pub fn allowed(&self) -> bool {
        self.egress.as_ref().is_none_or(Judgement::allowed)
            && self.ingress.as_ref().is_none_or(Judgement::allowed)
    }
}

/// The question cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// No such pod (or it was rejected).
    #[error("pod {0} not found")]
    UnknownPod(PodRef),
    /// The pod has no address of the needed family.
    #[error("pod {pod} has no IPv{family} address (not running, host network, or no IP yet)")]
    NoAddress {
        /// The pod.
        pod: PodRef,
        /// 4 or 6.
        family: u8,
    },
    /// The two ends have different address families.
    #[error("{from} and {to} are of different address families")]
    FamilyMismatch {
        /// Sender address.
        from: IpAddr,
        /// Receiver address.
        to: IpAddr,
    },
}

fn family(a: &IpAddr) -> u8 {
    if a.is_ipv4() { 4 } else { 6 }
}

fn resolve(e: &Engine, side: &Side, want: Option<u8>) -> Result<End, ExplainError> {
    match side {
        Side::Pod(p) => {
            let st = e
                .pods
                .get(p)
                .ok_or_else(|| ExplainError::UnknownPod(p.clone()))?;
            let fam = want.unwrap_or(4);
            let addr = st
                .identity
                .and(st.obj.ips.iter().find(|a| family(a) == fam))
                .or_else(|| {
                    // No preference given: any family will do.
                    want.is_none()
                        .then(|| st.identity.and(st.obj.ips.first()))
                        .flatten()
                })
                .ok_or_else(|| ExplainError::NoAddress {
                    pod: p.clone(),
                    family: fam,
                })?;
            Ok(End {
                addr: *addr,
                kind: PeerKind::Pod(p.clone()),
            })
        }
        Side::Addr(a) => {
            let kind = match e.ipcache.claim(a) {
                Some(Claim::Host) => PeerKind::Host,
                Some(Claim::Pod(p)) if e.pods.get(p).is_some_and(|s| s.identity.is_some()) => {
                    PeerKind::Pod(p.clone())
                }
                _ => PeerKind::Address,
            };
            Ok(End { addr: *a, kind })
        }
    }
}

/// One peer of a rule that matches a flow's peer, ports aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PeerHit {
    peer: PeerMatch,
    /// Whether the rule's named ports may match this way (numeric ports
    /// always may): egress named ports only ever match pods, and towards
    /// ipBlocks only the pods of `World::named_block_matches`.
    named: bool,
}

/// What matching needs of a flow's peer, looked up once.
struct PeerFacts<'e> {
    addr: IpAddr,
    id: Option<u32>,
    key: Option<&'e IdentityKey>,
}

impl<'e> PeerFacts<'e> {
    fn new(e: &'e Engine, peer: &End) -> Self {
        let id = match &peer.kind {
            PeerKind::Pod(p) => e.pods.get(p).and_then(|s| s.identity),
            _ => None,
        };
        PeerFacts {
            addr: peer.addr,
            id,
            key: id
                .and_then(|id| e.identities.by_id.get(&id))
                .map(|i| &i.key),
        }
    }
}

/// For each rule of `pol` (in `policy_ns`) in `dir`, in written order, the
/// peers of the rule that match `peer`, ports aside: the half of the
/// matching that depends on the peer and not on the port.
fn peer_hits(
    world: &World<'_>,
    policy_ns: &str,
    pol: &PolicyObj,
    dir: u8,
    peer: &PeerFacts<'_>,
) -> Vec<Vec<PeerHit>> {
    let ingress = dir == direction::INGRESS;
    pol.rules[dir as usize]
        .iter()
        .flatten()
        .map(|rule| {
            let named = !rule.ports.named.is_empty();
            let mut hits = Vec::new();
            match &rule.peers {
                Peers::All => hits.push(PeerHit {
                    peer: PeerMatch::All,
                    named: named && (ingress || peer.id.is_some()),
                }),
                Peers::Listed { selectors, blocks } => {
                    if let Some(key) = peer.key {
                        for (j, sel) in selectors.iter().enumerate() {
                            if world.peer_selector_matches(policy_ns, sel, key) {
                                hits.push(PeerHit {
                                    peer: PeerMatch::Selector(j),
                                    named,
                                });
                            }
                        }
                    }
                    for (k, b) in blocks.iter().enumerate() {
                        if b.contains_addr(&peer.addr) {
                            let named = named
                                && (ingress
                                    || peer
                                        .id
                                        .is_some_and(|id| world.named_block_matches(rule, id)));
                            hits.push(PeerHit {
                                peer: PeerMatch::Block(k),
                                named,
                            });
                        }
                    }
                }
            }
            hits
        })
        .collect()
}

/// The rules of `pol` in `dir` that allow `protocol` to `port`, given the
/// peers of each rule that match the flow's peer ([`peer_hits`]) and the
/// named ports of the destination (on which named ports resolve).
fn rules_matching(
    policy: &PolicyName,
    pol: &PolicyObj,
    dir: u8,
    hits: &[Vec<PeerHit>],
    dest_named: Option<&NamedPorts>,
    protocol: u8,
    port: u16,
) -> Vec<RuleMatch> {
    let class = proto::policy_class(protocol);
    let port = if proto::has_ports(protocol) { port } else { 0 };
    let mut out = Vec::new();
    for ((ri, rule), hits) in pol.rules[dir as usize]
        .iter()
        .flatten()
        .enumerate()
        .zip(hits)
    {
        if hits.is_empty() {
            continue;
        }
        let numeric = &rule.ports.numeric[class_index(class)];
        let numeric_hit = numeric
            .ranges()
            .iter()
            .find(|(lo, hi)| (*lo..=*hi).contains(&port))
            .map(|&(lo, hi)| {
                if rule.ports.named.is_empty() && numeric.ranges() == [(0, u16::MAX)] {
                    PortMatch::Any
                } else {
                    PortMatch::Range(lo, hi)
                }
            });
        let named_hit = || -> Option<PortMatch> {
            let on = dest_named?;
            rule.ports.named.iter().find_map(|(name, c)| {
                (*c == class)
                    .then(|| resolve_named(on, name, class).find(|p| *p == port))
                    .flatten()
                    .map(|p| PortMatch::Named(name.clone(), p))
            })
        };
        for h in hits {
            let port = numeric_hit
                .clone()
                .or_else(|| h.named.then(named_hit).flatten());
            if let Some(port) = port {
                out.push(RuleMatch {
                    policy: policy.clone(),
                    rule: ri,
                    peer: h.peer,
                    port,
                });
            }
        }
    }
    out
}

/// What one side's walk needs to know of a peer, found once per peer:
/// the peers of every rule consulted that match it, the nodes peers
/// holding its address, whether it is this node, and (egress) the named
/// ports it serves. Every judgement of the side, for every protocol and
/// port, is a function of its view: peers with equal views are judged
/// alike ([`SideContext::judge_view`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PeerView {
    host: bool,
    /// Egress, when a rule of the side names ports: the peer's named ports.
    dest_named: Option<Arc<NamedPorts>>,
    enforced: Vec<Vec<Vec<PeerHit>>>,
    audited: Vec<Vec<Vec<PeerHit>>>,
    admin: Vec<TierHits>,
    baseline: Vec<TierHits>,
    audit_tiers: Option<(Vec<TierHits>, Vec<TierHits>)>,
}

/// [`peer_hits`] of one ClusterNetworkPolicy, and per rule the first of
/// its `nodes` peers that selects a node holding the peer's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TierHits {
    rules: Vec<Vec<PeerHit>>,
    nodes: Vec<Option<usize>>,
}

/// The ClusterNetworkPolicies of one tier consulted for a side, in order,
/// with their NetworkPolicy-shaped rules.
struct TierContext<'e> {
    names: Vec<String>,
    policies: Vec<(&'e str, &'e ClusterPolicyObj, u32, PolicyObj)>,
}

impl<'e> TierContext<'e> {
    fn new(e: &'e Engine, tier: Tier, dir: u8, local: &PodRef, with_audited: bool) -> Self {
        let consulted = cluster::consulted(e, tier, dir, local, with_audited);
        TierContext {
            names: consulted.iter().map(|(n, _, _)| n.to_string()).collect(),
            policies: consulted
                .into_iter()
                .map(|(n, p, pos)| (n, p, pos, cluster::shape(p, &e.nodes)))
                .collect(),
        }
    }
}

/// Everything judging one side (one pod, one direction) needs that does
/// not depend on the peer or the port: the policies selecting the pod and
/// the tiers consulted for it, found once and reused for every peer and
/// port (a survey judges thousands). [`judge`] is this plus one
/// [`SideContext::judge`].
pub(crate) struct SideContext<'e> {
    e: &'e Engine,
    world: World<'e>,
    local: PodRef,
    dir: u8,
    pub(crate) selecting: Vec<PolicyName>,
    pub(crate) audited: Vec<PolicyName>,
    enforced_objs: Vec<(PolicyName, &'e PolicyObj)>,
    audited_objs: Vec<(PolicyName, &'e PolicyObj)>,
    admin: TierContext<'e>,
    baseline: TierContext<'e>,
    pub(crate) audited_cluster: Vec<String>,
    /// With audited ClusterNetworkPolicies (only when some select the pod).
    audit_tiers: Option<(TierContext<'e>, TierContext<'e>)>,
    /// The pod's named ports (ingress named ports resolve on them).
    local_named: Option<Arc<NamedPorts>>,
    /// Whether some rule consulted names ports (egress: they resolve on
    /// the peer, which its view then carries).
    names_ports: bool,
}

impl<'e> SideContext<'e> {
    pub(crate) fn new(e: &'e Engine, local: &PodRef, dir: u8) -> Self {
        let (selecting, audited) = inspect::selecting(e, local, dir);
        let objs = |names: &[PolicyName]| -> Vec<(PolicyName, &'e PolicyObj)> {
            names
                .iter()
                .filter_map(|n| {
                    let key = PolicyRef {
                        namespace: n.namespace.clone(),
                        name: n.name.clone(),
                    };
                    e.policies.get(&key).map(|p| (n.clone(), &*p.obj))
                })
                .collect()
        };
        let mut audited_cluster: Vec<String> = [Tier::Admin, Tier::Baseline]
            .into_iter()
            .flat_map(|t| cluster::consulted(e, t, dir, local, true))
            .filter(|(_, p, _)| p.audit)
            .map(|(n, _, _)| n.to_string())
            .collect();
        audited_cluster.sort();
        let audit_tiers = (!audited_cluster.is_empty()).then(|| {
            (
                TierContext::new(e, Tier::Admin, dir, local, true),
                TierContext::new(e, Tier::Baseline, dir, local, true),
            )
        });
        let admin = TierContext::new(e, Tier::Admin, dir, local, false);
        let baseline = TierContext::new(e, Tier::Baseline, dir, local, false);
        let enforced_objs = objs(&selecting);
        let audited_objs = objs(&audited);
        let names_ports = {
            let tiers = [&admin, &baseline]
                .into_iter()
                .chain(audit_tiers.iter().flat_map(|(a, b)| [a, b]));
            enforced_objs
                .iter()
                .chain(&audited_objs)
                .map(|(_, p)| *p)
                .chain(tiers.flat_map(|t| t.policies.iter().map(|c| &c.3)))
                .flat_map(|p| p.rules[dir as usize].iter().flatten())
                .any(|r| !r.ports.named.is_empty())
        };
        SideContext {
            e,
            world: e.world(),
            local: local.clone(),
            dir,
            enforced_objs,
            audited_objs,
            selecting,
            audited,
            admin,
            baseline,
            audited_cluster,
            audit_tiers,
            local_named: e.pods.get(local).map(|s| s.obj.named_ports.clone()),
            names_ports,
        }
    }

    /// Whether enforced policies isolate the pod in this direction.
    pub(crate) fn isolated(&self) -> bool {
        !self.selecting.is_empty()
    }

    /// The Admin-tier ClusterNetworkPolicies consulted, in order.
    pub(crate) fn admin_names(&self) -> &[String] {
        &self.admin.names
    }

    /// The Baseline-tier ClusterNetworkPolicies consulted, in order.
    pub(crate) fn baseline_names(&self) -> &[String] {
        &self.baseline.names
    }

    fn tier_hits(&self, t: &TierContext<'_>, peer: &PeerFacts<'_>) -> Vec<TierHits> {
        let (e, dir) = (self.e, self.dir);
        t.policies
            .iter()
            .map(|(_, p, _, shaped)| {
                let rules = peer_hits(&self.world, "", shaped, dir, peer);
                // Blocks past a rule's own `networks` are its nodes'
                // addresses: the nodes peer is named (preferred over a
                // network that also holds the address).
                let nodes = rules
                    .iter()
                    .zip(&p.rules[dir as usize])
                    .map(|(hits, rule)| {
                        if hits.is_empty() {
                            return None;
                        }
                        rule.nodes.iter().position(|sel| {
                            e.nodes
                                .values()
                                .any(|n| sel.matches(&n.labels) && n.addrs.contains(&peer.addr))
                        })
                    })
                    .collect();
                TierHits { rules, nodes }
            })
            .collect()
    }

    /// What this side's walk needs to know of `peer` (see [`PeerView`]).
    pub(crate) fn view(&self, peer: &End) -> PeerView {
        let facts = PeerFacts::new(self.e, peer);
        let hits = |objs: &[(PolicyName, &PolicyObj)]| -> Vec<Vec<Vec<PeerHit>>> {
            objs.iter()
                .map(|(n, p)| peer_hits(&self.world, &n.namespace, p, self.dir, &facts))
                .collect()
        };
        PeerView {
            host: peer.kind == PeerKind::Host,
            dest_named: (self.dir == direction::EGRESS && self.names_ports)
                .then(|| facts.key.map(|k| k.named_ports.clone()))
                .flatten(),
            enforced: hits(&self.enforced_objs),
            audited: hits(&self.audited_objs),
            admin: self.tier_hits(&self.admin, &facts),
            baseline: self.tier_hits(&self.baseline, &facts),
            audit_tiers: self
                .audit_tiers
                .as_ref()
                .map(|(a, b)| (self.tier_hits(a, &facts), self.tier_hits(b, &facts))),
        }
    }

    /// The named ports of the flow's destination, as seen by `view`.
    fn dest_named<'v>(&'v self, view: &'v PeerView) -> Option<&'v NamedPorts> {
        if self.dir == direction::INGRESS {
            self.local_named.as_deref()
        } else {
            view.dest_named.as_deref()
        }
    }

    fn rules_of(
        &self,
        objs: &[(PolicyName, &PolicyObj)],
        hits: &[Vec<Vec<PeerHit>>],
        view: &PeerView,
        protocol: u8,
        port: u16,
    ) -> Vec<RuleMatch> {
        objs.iter()
            .zip(hits)
            .flat_map(|((n, p), hits)| {
                rules_matching(n, p, self.dir, hits, self.dest_named(view), protocol, port)
            })
            .collect()
    }

    /// The first matching rule of a tier, with its ties.
    fn tier_match(
        &self,
        t: &TierContext<'_>,
        hits: &[TierHits],
        view: &PeerView,
        protocol: u8,
        port: u16,
    ) -> Option<TierMatch> {
        let dir = self.dir;
        let first_hit = |((name, p, position, shaped), th): (
            &(&str, &ClusterPolicyObj, u32, PolicyObj),
            &TierHits,
        )| {
            let policy = PolicyName::new("", *name);
            let hits = rules_matching(
                &policy,
                shaped,
                dir,
                &th.rules,
                self.dest_named(view),
                protocol,
                port,
            );
            let first = hits.iter().map(|m| m.rule).min()?;
            let own = match &p.rules[dir as usize][first].rule.peers {
                Peers::Listed { blocks, .. } => blocks.len(),
                Peers::All => 0,
            };
            let node_peer = th.nodes[first];
            let mut hits: Vec<RuleMatch> = hits.into_iter().filter(|m| m.rule == first).collect();
            for m in &mut hits {
                if let (PeerMatch::Block(k), Some(j)) = (m.peer, node_peer)
                    && k >= own
                {
                    m.peer = PeerMatch::Nodes(j);
                }
            }
            let m = hits
                .iter()
                .find(|m| matches!(m.peer, PeerMatch::Nodes(_)))
                .or(hits.first())?
                .clone();
            Some((
                p.priority,
                cluster::rule_name(name, p, *position, dir, m.rule),
                m,
            ))
        };
        let hits: Vec<_> = t.policies.iter().zip(hits).filter_map(first_hit).collect();
        hits.first().map(|(priority, rule, m)| TierMatch {
            rule: rule.clone(),
            peer: m.peer,
            port: m.port.clone(),
            ties: hits[1..]
                .iter()
                .take_while(|(p, _, _)| p == priority)
                .map(|(_, r, _)| r.clone())
                .collect(),
        })
    }

    /// Judges this side of the flow with a peer seen as `view`, for
    /// `protocol` to `port`.
    pub(crate) fn judge_view(
        &self,
        view: &PeerView,
        protocol: u8,
        port: u16,
        enforce_host: bool,
    ) -> Judgement {
        let (audit_admin, audit_baseline) = match (&self.audit_tiers, &view.audit_tiers) {
            (Some((a, b)), Some((ha, hb))) => (
                self.tier_match(a, ha, view, protocol, port),
                self.tier_match(b, hb, view, protocol, port),
            ),
            _ => (None, None),
        };
        Judgement {
            audited_cluster: self.audited_cluster.clone(),
            audit_admin,
            audit_baseline,
            pod: self.local.clone(),
            direction: self.dir,
            admin_selecting: self.admin.names.clone(),
            admin: self.tier_match(&self.admin, &view.admin, view, protocol, port),
            baseline_selecting: self.baseline.names.clone(),
            baseline: self.tier_match(&self.baseline, &view.baseline, view, protocol, port),
            allowed_by: self.rules_of(&self.enforced_objs, &view.enforced, view, protocol, port),
            audit_allowed_by: self.rules_of(
                &self.audited_objs,
                &view.audited,
                view,
                protocol,
                port,
            ),
            selecting: self.selecting.clone(),
            audited: self.audited.clone(),
            host_exempt: self.dir == direction::INGRESS && view.host && !enforce_host,
        }
    }

    /// Judges this side of the flow with `peer` (`q`'s protocol and port).
    pub(crate) fn judge(&self, peer: &End, q: &Query) -> Judgement {
        self.judge_view(&self.view(peer), q.protocol, q.port, q.enforce_host)
    }
}

fn judge(e: &Engine, local: &PodRef, dir: u8, peer: &End, q: &Query) -> Judgement {
    SideContext::new(e, local, dir).judge(peer, q)
}

/// The addresses and owners of a flow's two ends, of one family: an
/// address side decides it; pods follow (the sender's IPv4 address first).
pub(crate) fn resolve_flow(e: &Engine, from: &Side, to: &Side) -> Result<(End, End), ExplainError> {
    let fam = match (from, to) {
        (Side::Addr(a), _) | (_, Side::Addr(a)) => Some(family(a)),
        _ => None,
    };
    let from = resolve(e, from, fam)?;
    let to = resolve(e, to, Some(fam.unwrap_or(family(&from.addr))))?;
    if family(&from.addr) != family(&to.addr) {
        return Err(ExplainError::FamilyMismatch {
            from: from.addr,
            to: to.addr,
        });
    }
    Ok((from, to))
}

/// Explains the verdict for a new flow `from → to` (see the module docs).
pub(crate) fn explain(e: &Engine, q: &Query) -> Result<Explanation, ExplainError> {
    let (from, to) = resolve_flow(e, &q.from, &q.to)?;
    let egress = match &from.kind {
        PeerKind::Pod(p) => Some(judge(e, p, direction::EGRESS, &to, q)),
        _ => None,
    };
    let ingress = match &to.kind {
        PeerKind::Pod(p) => Some(judge(e, p, direction::INGRESS, &from, q)),
        _ => None,
    };
    Ok(Explanation {
        from,
        to,
        egress,
        ingress,
    })
}
