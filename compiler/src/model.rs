//! The validated, normalised form of the objects the compiler consumes:
//! what remains of a Namespace, Pod or NetworkPolicy once defaults are
//! applied and the fields that do not matter for enforcement are dropped,
//! and the labels a namespace has when no object for it is known.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use palisade_common::direction;

use crate::ports::PortSet;
use crate::selector::{Labels, Selector};

/// The label the API server sets on every namespace to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The effective labels of a namespace the compiler has no object for: the
/// ones the API server guarantees.
pub(crate) fn default_namespace_labels(name: &str) -> Labels {
    Labels::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())])
}

/// A valid namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceObj {
    /// Effective labels (with [`NAMESPACE_NAME_LABEL`]).
    pub(crate) labels: Labels,
    /// Annotated for audit mode (every policy of the namespace audits).
    pub(crate) audit: bool,
}

/// A pod's named container ports: `(name, protocol class, port)`.
pub(crate) type NamedPorts = BTreeSet<(String, u8, u16)>;

/// The ports a named port resolves to on a pod with these named ports (the
/// name and the protocol must both match; usually zero or one port).
pub(crate) fn resolve_named(
    ports: &NamedPorts,
    name: &str,
    class: u8,
) -> impl Iterator<Item = u16> {
    ports
        .iter()
        .filter(move |(n, c, _)| n == name && *c == class)
        .map(|&(_, _, p)| p)
}

/// A pod, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodObj {
    /// `metadata.uid`: a pod re-created under the same name gets a new
    /// endpoint id.
    pub(crate) uid: Option<String>,
    /// `metadata.labels`.
    pub(crate) labels: Arc<Labels>,
    /// Named container ports of `spec.containers[].ports`.
    pub(crate) named_ports: Arc<NamedPorts>,
    /// `status.podIPs` (or `status.podIP`), sorted, without duplicates.
    pub(crate) ips: Vec<IpAddr>,
    /// `spec.nodeName`.
    pub(crate) node: Option<String>,
    /// `spec.hostNetwork`.
    pub(crate) host_network: bool,
    /// `status.phase` is `Succeeded` or `Failed`.
    pub(crate) terminated: bool,
}

impl PodObj {
    /// Whether the pod is a peer with addresses of its own: running (not
    /// terminated), not host-network, with at least one IP.
    pub(crate) fn live(&self) -> bool {
        !self.host_network && !self.terminated && !self.ips.is_empty()
    }
}

/// A NetworkPolicy, validated, with policyTypes defaulting applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PolicyObj {
    /// `spec.podSelector` (absent = every pod of the namespace).
    pub(crate) pod_selector: Selector,
    /// Rules per [`direction`]: `Some` iff the policy isolates the selected
    /// pods in that direction (then the rules, possibly none, are the
    /// allows).
    pub(crate) rules: [Option<Vec<Rule>>; 2],
    /// Audit mode (`policy.palisade.dev/mode: audit`, see `audit.rs`):
    /// evaluated beside the enforced policies, never enforced.
    pub(crate) audit: bool,
}

impl PolicyObj {
    /// Every prefix the policy mentions (`cidr` and `except` values).
    pub(crate) fn prefixes(&self) -> BTreeSet<IpNet> {
        let mut out = BTreeSet::new();
        for rule in self.rules.iter().flatten().flatten() {
            if let Peers::Listed { blocks, .. } = &rule.peers {
                for b in blocks {
                    out.insert(b.cidr);
                    out.extend(b.except.iter().copied());
                }
            }
        }
        out
    }

    /// Whether some rule can match pods outside the policy's namespace:
    /// namespaceSelector peers, or egress named ports towards any
    /// destination or an ipBlock.
    pub(crate) fn cross_namespace(&self) -> bool {
        self.rules.iter().enumerate().any(|(dir, rules)| {
            rules.iter().flatten().any(|r| match &r.peers {
                Peers::All => dir == direction::EGRESS as usize && !r.ports.named.is_empty(),
                Peers::Listed { selectors, blocks } => {
                    selectors.iter().any(|s| s.namespaces.is_some())
                        || (dir == direction::EGRESS as usize
                            && !r.ports.named.is_empty()
                            && !blocks.is_empty())
                }
            })
        })
    }

    /// Whether some rule has an ipBlock peer.
    pub(crate) fn has_blocks(&self) -> bool {
        self.rules
            .iter()
            .flatten()
            .flatten()
            .any(|r| r.blocks().next().is_some())
    }

    /// Whether some egress rule combines ipBlock peers with named ports.
    pub(crate) fn has_named_blocks(&self) -> bool {
        self.rules[direction::EGRESS as usize]
            .iter()
            .flatten()
            .any(|r| r.is_named_block_rule(direction::EGRESS as usize))
    }
}

/// One ingress or egress rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    /// `from` / `to`.
    pub(crate) peers: Peers,
    /// `ports`.
    pub(crate) ports: RulePorts,
}

impl Rule {
    /// The rule's ipBlock peers.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = &IpBlock> {
        match &self.peers {
            Peers::All => [].iter(),
            Peers::Listed { blocks, .. } => blocks.iter(),
        }
    }

    /// Whether this is an egress rule with named ports and ipBlock peers:
    /// the one shape that needs a per-identity address check.
    pub(crate) fn is_named_block_rule(&self, dir: usize) -> bool {
        dir == direction::EGRESS as usize
            && !self.ports.named.is_empty()
            && self.blocks().next().is_some()
    }
}

/// The peers of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peers {
    /// `from`/`to` absent or empty: every source/destination, pods or not.
    All,
    /// A list of peers, ORed.
    Listed {
        /// podSelector / namespaceSelector peers.
        selectors: Vec<PeerSelector>,
        /// ipBlock peers.
        blocks: Vec<IpBlock>,
    },
}

/// A podSelector and/or namespaceSelector peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerSelector {
    /// `namespaceSelector`; `None` means the policy's own namespace.
    pub(crate) namespaces: Option<Selector>,
    /// `podSelector`; absent means every pod.
    pub(crate) pods: Selector,
}

/// An ipBlock peer (prefixes truncated to their network address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IpBlock {
    /// `cidr`.
    pub(crate) cidr: IpNet,
    /// `except`, each strictly inside `cidr`.
    pub(crate) except: Vec<IpNet>,
}

impl IpBlock {
    /// Whether the block allows every address of the region `net`
    /// (`net ⊆ cidr` and `net ⊄ e` for every except `e`). With all mentioned
    /// prefixes registered as regions this equals "the address is in
    /// `cidr \ ∪except`" for the addresses whose region is `net`.
    pub(crate) fn allows_region(&self, net: &IpNet) -> bool {
        self.cidr.contains(net) && !self.except.iter().any(|e| e.contains(net))
    }

    /// Whether `addr ∈ cidr \ ∪except`.
    pub(crate) fn contains_addr(&self, addr: &IpAddr) -> bool {
        self.cidr.contains(addr) && !self.except.iter().any(|e| e.contains(addr))
    }
}

/// The ports of a rule, per protocol class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RulePorts {
    /// Numeric ports per class of [`crate::ports::CLASSES`] (a rule without
    /// ports has all four classes full).
    pub(crate) numeric: [PortSet; 4],
    /// Named ports: `(name, protocol class)`.
    pub(crate) named: Vec<(String, u8)>,
}

impl RulePorts {
    /// Every port of every protocol, other protocols included.
    pub(crate) fn all() -> RulePorts {
        RulePorts {
            numeric: std::array::from_fn(|_| PortSet::all()),
            named: Vec::new(),
        }
    }
}

/// A NetworkPolicy by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PolicyRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// A Node, validated: what a ClusterNetworkPolicy `nodes` peer matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeObj {
    /// `metadata.labels`.
    pub(crate) labels: Labels,
    /// Every IP address of `status.addresses` (any type), sorted, without
    /// duplicates.
    pub(crate) addrs: BTreeSet<IpAddr>,
}

/// A ClusterNetworkPolicy tier (`spec.tier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Tier {
    /// Before NetworkPolicy: final unless a rule passes.
    Admin,
    /// After NetworkPolicy, for pods no NetworkPolicy isolates.
    Baseline,
}

impl Tier {
    /// How reports name the tier: `admin` or `baseline`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "admin",
            Tier::Baseline => "baseline",
        }
    }
}

/// A ClusterNetworkPolicy rule's `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Action {
    /// Allowed; no later rule or tier is consulted.
    Accept,
    /// Dropped; no later rule or tier is consulted.
    Deny,
    /// The rest of this tier is skipped: the next tier decides.
    Pass,
}

/// A ClusterNetworkPolicy's `spec.subject`: the pods it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    /// `namespaces`: every pod of the matching namespaces.
    Namespaces(Selector),
    /// `pods`: pods matching `pods` in namespaces matching `namespaces`.
    Pods {
        /// `namespaceSelector` (empty: every namespace).
        namespaces: Selector,
        /// `podSelector`.
        pods: Selector,
    },
}

impl Subject {
    /// Whether a pod with `labels` in a namespace with `ns_labels` is a subject.
    pub(crate) fn matches(&self, ns_labels: &Labels, labels: &Labels) -> bool {
        match self {
            Subject::Namespaces(ns) => ns.matches(ns_labels),
            Subject::Pods { namespaces, pods } => {
                namespaces.matches(ns_labels) && pods.matches(labels)
            }
        }
    }
}

/// One ClusterNetworkPolicy rule, in the shape the NetworkPolicy rules
/// are compiled from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TierRule {
    /// `name` (for reports; not unique).
    pub(crate) name: Option<String>,
    /// `action`.
    pub(crate) action: Action,
    /// Peers and ports. `namespaces` and `pods` peers are
    /// [`PeerSelector`]s whose `namespaces` is always `Some` (there is no
    /// "own namespace"); `networks` are [`IpBlock`]s without `except`;
    /// [`Peers::All`] only stands for the fail-closed reading of a Deny or
    /// Pass rule with a peer (or protocol entry) of a kind this version
    /// does not know: the API's "Deny all", so the action is then Deny and
    /// every port matches; the same reading of an Accept rule matches
    /// nothing (`Listed` without peers). `protocols` absent: every port of
    /// every protocol (all four classes full), as a NetworkPolicy rule
    /// without ports. See `validate_cluster.rs`.
    pub(crate) rule: Rule,
    /// The `nodes` peers' selectors, in written order (never with
    /// [`Peers::All`]): every address of every node one of them selects
    /// joins `rule`'s blocks as a `/32` or `/128` when the engine shapes
    /// the rule (`cluster.rs`).
    pub(crate) nodes: Vec<Selector>,
}

/// A ClusterNetworkPolicy, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClusterPolicyObj {
    /// `spec.tier`.
    pub(crate) tier: Tier,
    /// `spec.priority`, `0..=1000` (lower is consulted first).
    pub(crate) priority: u16,
    /// `spec.subject`.
    pub(crate) subject: Subject,
    /// `spec.ingress` and `spec.egress` by [`direction`], in written order
    /// (earlier rules are consulted first). No rules in a direction: the
    /// policy does not affect it.
    pub(crate) rules: [Vec<TierRule>; 2],
    /// Audit mode (`policy.palisade.dev/mode: audit`).
    pub(crate) audit: bool,
}

impl ClusterPolicyObj {
    /// Whether some rule has a `nodes` peer.
    pub(crate) fn has_nodes(&self) -> bool {
        self.rules.iter().flatten().any(|r| !r.nodes.is_empty())
    }
}
