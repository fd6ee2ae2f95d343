//! A naive evaluator of ClusterNetworkPolicy tiers, written from the API's
//! semantics and working directly on the objects
//! (`palisade_compiler::api::ClusterNetworkPolicy`, Pods, Namespaces),
//! never on the compiler's model. For a local pod, a direction, a peer
//! address, a protocol and a port:
//!
//! 1. **Admin tier**: the enforced Admin policies whose subject selects the
//!    pod, by ascending `priority`, equal priorities by ascending name
//!    (Palisade's documented choice; the API leaves it undefined), the
//!    rules of one policy in written order. The first rule whose peers and
//!    protocols match decides: Accept allows, Deny denies, Pass skips the
//!    rest of the tier.
//! 2. **NetworkPolicy**: if some NetworkPolicy selects the pod in that
//!    direction, the naive NetworkPolicy evaluator (`Cluster::naive`, its
//!    conservative reading, which the compiler documents) decides.
//! 3. **Baseline tier**: ordered as the Admin tier; the first matching rule
//!    decides: Deny denies, Accept or Pass allow.
//! 4. Otherwise allowed.
//!
//! A rule matches when one of its peers matches the peer and one of its
//! `protocols` entries matches (none given: every protocol and port):
//! `namespaces` selects every live pod of the matching namespaces, `pods`
//! the live pods matching both selectors, `networks` every address inside
//! one of the CIDRs (pod, node or outside address alike), `nodes` every
//! IP address in `status.addresses` of the Node objects its selector
//! selects (empty: every node); `tcp`/`udp`/`sctp`
//! match that protocol on the port or inclusive range, and
//! `destinationNamedPort` a container port of that name on the destination
//! pod (the local pod for ingress, the peer pod for egress), with the
//! container port's protocol and number. Audited policies
//! (`policy.palisade.dev/mode: audit`) are not enforced: skipped.
//!
//! [`Model`] can also evaluate deliberately wrong semantics, for the tests
//! that show a property can fail.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use palisade_common::{direction, proto};
use palisade_compiler::PodRef;
use palisade_compiler::api::{
    ClusterNetworkPolicy, ClusterNetworkPolicyProtocol, ClusterNetworkPolicyRuleAction,
    NamespacedPod, Port, Tier,
};

use super::Cluster;

/// Addresses outside every pod range, probed when a cluster has
/// ClusterNetworkPolicies (some inside the generated networks).
pub const OUTSIDERS: [&str; 3] = ["198.51.100.9", "203.0.113.200", "2001:db8:1::9"];

/// The first and last address of every `networks` CIDR of `cnps`.
pub fn network_edges<'a>(cnps: impl Iterator<Item = &'a ClusterNetworkPolicy>) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    for p in cnps {
        for r in &p.spec.egress {
            for peer in &r.to {
                for n in peer.networks.iter().flatten() {
                    let n = IpNet::from_str(n).unwrap();
                    out.insert(n.network());
                    out.insert(n.broadcast());
                }
            }
        }
    }
    out
}

/// Which semantics to evaluate: the API's, or a deliberately broken one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The semantics of the module documentation.
    Faithful,
    /// Higher priorities first.
    ReversedPriorities,
    /// Equal priorities by descending name.
    NamesDescending,
    /// An Admin Pass accepts.
    PassAsAccept,
    /// The Baseline tier before NetworkPolicy.
    BaselineFirst,
    /// A `nodes` peer matches only its nodes' IPv4 addresses.
    NodesV4Only,
    /// A `nodes` peer selects every node, whatever its labels.
    NodesIgnoreSelector,
}

/// A rule's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Accept,
    Deny,
    Pass,
}

impl Act {
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Accept => "Accept",
            Act::Deny => "Deny",
            Act::Pass => "Pass",
        }
    }
}

/// The first matching rule of a tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The policy's name.
    pub policy: String,
    /// The rule's index in its direction.
    pub index: usize,
    pub action: Act,
}

/// The step of the walk that decides, and whether it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Admin(bool),
    NetworkPolicy(bool),
    Baseline(bool),
    Default,
}

/// The model's answer for one side of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierVerdict {
    /// The Admin tier's first matching rule.
    pub admin: Option<Hit>,
    /// Whether NetworkPolicies isolate the pod in this direction.
    pub isolated: bool,
    /// The Baseline tier's first matching rule.
    pub baseline: Option<Hit>,
    /// What decides.
    pub step: Step,
}

impl TierVerdict {
    pub fn allowed(&self) -> bool {
        match self.step {
            Step::Default => true,
            Step::Admin(a) | Step::NetworkPolicy(a) | Step::Baseline(a) => a,
        }
    }
}

/// A peer of either direction.
enum PeerRef<'a> {
    Namespaces(&'a LabelSelector),
    Pods(&'a NamespacedPod),
    Networks(&'a [String]),
    Nodes(&'a LabelSelector),
}

/// A rule of either direction.
struct RuleRef<'a> {
    action: Act,
    peers: Vec<PeerRef<'a>>,
    protocols: Option<&'a [ClusterNetworkPolicyProtocol]>,
}

fn act(a: Option<&ClusterNetworkPolicyRuleAction>) -> Act {
    match a {
        Some(ClusterNetworkPolicyRuleAction::Accept) => Act::Accept,
        Some(ClusterNetworkPolicyRuleAction::Deny) => Act::Deny,
        Some(ClusterNetworkPolicyRuleAction::Pass) => Act::Pass,
        other => panic!("the model knows no action {other:?}"),
    }
}

fn rules(p: &ClusterNetworkPolicy, dir: u8) -> Vec<RuleRef<'_>> {
    if dir == direction::INGRESS {
        p.spec
            .ingress
            .iter()
            .map(|r| RuleRef {
                action: act(r.action.as_ref()),
                peers: r
                    .from
                    .iter()
                    .map(|peer| match (&peer.namespaces, &peer.pods) {
                        (Some(n), None) => PeerRef::Namespaces(n),
                        (None, Some(p)) => PeerRef::Pods(p),
                        _ => panic!("the model knows no peer {peer:?}"),
                    })
                    .collect(),
                protocols: r.protocols.as_deref(),
            })
            .collect()
    } else {
        p.spec
            .egress
            .iter()
            .map(|r| RuleRef {
                action: act(r.action.as_ref()),
                peers: r
                    .to
                    .iter()
                    .map(
                        |peer| match (&peer.namespaces, &peer.pods, &peer.networks, &peer.nodes) {
                            (Some(n), None, None, None) => PeerRef::Namespaces(n),
                            (None, Some(p), None, None) => PeerRef::Pods(p),
                            (None, None, Some(n), None) => PeerRef::Networks(n),
                            (None, None, None, Some(n)) => PeerRef::Nodes(n),
                            _ => panic!("the model knows no peer {peer:?}"),
                        },
                    )
                    .collect(),
                protocols: r.protocols.as_deref(),
            })
            .collect()
    }
}

pub fn is_audit(p: &ClusterNetworkPolicy) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("policy.palisade.dev/mode"))
        .is_some_and(|m| m == "audit")
}

fn proto_number(p: &str) -> u8 {
    match p {
        "TCP" => proto::TCP,
        "UDP" => proto::UDP,
        "SCTP" => proto::SCTP,
        other => panic!("protocol {other}"),
    }
}

fn port_matches(p: Option<&Port>, port: u16) -> bool {
    let p = p.expect("destinationPort is required");
    let port = port as i32;
    match (p.number, &p.range) {
        (Some(n), None) => n == port,
        (None, Some(r)) => (r.start.unwrap()..=r.end.unwrap()).contains(&port),
        _ => panic!("the model knows no port {p:?}"),
    }
}

fn protocols_match(
    list: Option<&[ClusterNetworkPolicyProtocol]>,
    ip_proto: u8,
    port: u16,
    dst: Option<&Pod>,
) -> bool {
    let Some(list) = list else {
        return true;
    };
    list.iter().any(|e| {
        for (pp, pr) in [
            (&e.tcp, proto::TCP),
            (&e.udp, proto::UDP),
            (&e.sctp, proto::SCTP),
        ] {
            if let Some(pp) = pp {
                return pr == ip_proto && port_matches(pp.destination_port.as_ref(), port);
            }
        }
        let Some(name) = &e.destination_named_port else {
            panic!("the model knows no protocol entry {e:?}");
        };
        dst.is_some_and(|d| {
            Cluster::named_ports(d)
                .iter()
                .any(|(n, p, c)| n == name && proto_number(p) == ip_proto && *c == port as i32)
        })
    })
}

impl Cluster {
    fn subject_selects(&self, p: &ClusterNetworkPolicy, pod: &Pod) -> bool {
        let ns = self.ns_labels(pod.metadata.namespace.as_deref().unwrap());
        let s = p.spec.subject.as_ref().expect("subject is required");
        match (&s.namespaces, &s.pods) {
            (Some(n), None) => Self::sel(n, &ns),
            (None, Some(p)) => {
                Self::sel(&p.namespace_selector, &ns)
                    && Self::sel(
                        p.pod_selector.as_ref().expect("podSelector is required"),
                        &Self::pod_labels(pod),
                    )
            }
            _ => panic!("the model knows no subject {s:?}"),
        }
    }

    fn peer_matches(
        &self,
        peer: &PeerRef,
        addr: IpAddr,
        peer_pod: Option<&Pod>,
        model: Model,
    ) -> bool {
        match peer {
            PeerRef::Namespaces(s) => peer_pod.is_some_and(|q| {
                Self::sel(s, &self.ns_labels(q.metadata.namespace.as_deref().unwrap()))
            }),
            PeerRef::Pods(np) => peer_pod.is_some_and(|q| {
                Self::sel(
                    &np.namespace_selector,
                    &self.ns_labels(q.metadata.namespace.as_deref().unwrap()),
                ) && Self::sel(
                    np.pod_selector.as_ref().expect("podSelector is required"),
                    &Self::pod_labels(q),
                )
            }),
            PeerRef::Networks(nets) => nets
                .iter()
                .any(|n| IpNet::from_str(n).unwrap().contains(&addr)),
            PeerRef::Nodes(s) => {
                if model == Model::NodesV4Only && addr.is_ipv6() {
                    return false;
                }
                self.nodes.values().any(|n| {
                    (model == Model::NodesIgnoreSelector
                        || Self::sel(s, &n.metadata.labels.clone().unwrap_or_default()))
                        && Self::node_ips(n).contains(&addr)
                })
            }
        }
    }

    /// The enforced policies of `tier` whose subject selects `me`, in the
    /// order `model` consults them.
    fn consulted(
        &self,
        tier: &Tier,
        me: &Pod,
        model: Model,
    ) -> Vec<(&String, &ClusterNetworkPolicy)> {
        let mut pols: Vec<_> = self
            .cnps
            .iter()
            .filter(|(_, p)| p.spec.tier.as_ref() == Some(tier))
            .filter(|(_, p)| !is_audit(p) && self.subject_selects(p, me))
            .collect();
        let prio = |p: &ClusterNetworkPolicy| p.spec.priority.expect("priority is required");
        match model {
            Model::ReversedPriorities => pols.sort_by_key(|(n, p)| (Reverse(prio(p)), *n)),
            Model::NamesDescending => pols.sort_by_key(|(n, p)| (prio(p), Reverse(*n))),
            _ => pols.sort_by_key(|(n, p)| (prio(p), *n)),
        }
        pols
    }

    #[allow(clippy::too_many_arguments)]
    fn first_hit(
        &self,
        tier: &Tier,
        me: &Pod,
        dir: u8,
        peer: IpAddr,
        ip_proto: u8,
        port: u16,
        model: Model,
    ) -> Option<Hit> {
        let peer_pod = self.owner(peer);
        let dst = if dir == direction::INGRESS {
            Some(me)
        } else {
            peer_pod
        };
        for (name, p) in self.consulted(tier, me, model) {
            for (index, r) in rules(p, dir).into_iter().enumerate() {
                if r.peers
                    .iter()
                    .any(|x| self.peer_matches(x, peer, peer_pod, model))
                    && protocols_match(r.protocols, ip_proto, port, dst)
                {
                    return Some(Hit {
                        policy: name.clone(),
                        index,
                        action: r.action,
                    });
                }
            }
        }
        None
    }

    /// The tiered verdict for a new flow of pod `local` (any pod of the
    /// cluster, local or not) in `dir` with peer address `peer`.
    pub fn tiered(
        &self,
        local: &PodRef,
        dir: u8,
        peer: IpAddr,
        ip_proto: u8,
        port: u16,
        model: Model,
    ) -> TierVerdict {
        let me = &self.pods[&(local.namespace.clone(), local.name.clone())];
        let admin = self.first_hit(&Tier::Admin, me, dir, peer, ip_proto, port, model);
        let baseline = self.first_hit(&Tier::Baseline, me, dir, peer, ip_proto, port, model);
        let isolated = !self.np_selecting(local, dir).is_empty();
        let np = || Step::NetworkPolicy(self.naive(local, dir, peer, ip_proto, port).1);
        let base = || match baseline.as_ref().map(|h| h.action) {
            Some(Act::Deny) => Some(Step::Baseline(false)),
            Some(Act::Accept | Act::Pass) => Some(Step::Baseline(true)),
            None => None,
        };
        let admin_act = admin.as_ref().map(|h| match (model, h.action) {
            (Model::PassAsAccept, Act::Pass) => Act::Accept,
            (_, a) => a,
        });
        let step = match admin_act {
            Some(Act::Accept) => Step::Admin(true),
            Some(Act::Deny) => Step::Admin(false),
            Some(Act::Pass) | None => {
                if model == Model::BaselineFirst {
                    base().unwrap_or_else(|| if isolated { np() } else { Step::Default })
                } else if isolated {
                    np()
                } else {
                    base().unwrap_or(Step::Default)
                }
            }
        };
        TierVerdict {
            admin,
            isolated,
            baseline,
            step,
        }
    }
}
