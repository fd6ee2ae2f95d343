//! The graph's data model: nodes (workloads, external CIDR regions, the
//! node/host, the world), allowed edges with their ports and the rules that
//! allow them, and the live overlay's drop counts. It is also the JSON
//! output (`-o json`) and the input of the other renderers (dot, table,
//! svg, html), so its field names are part of the CLI's interface.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The allowed connectivity of one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// What was drawn, as a user would say it: `namespace production`,
    /// `all namespaces (aggregated by namespace)`, `pod production/web-1`.
    pub scope: String,
    /// Every node, sorted by `id`.
    pub nodes: Vec<Node>,
    /// Every edge, sorted by `(from, to, kind)`.
    pub edges: Vec<Edge>,
    /// Objects left out because they are invalid, each naming the object and
    /// the field (`NetworkPolicy prod/x: spec.ingress[0].ports[1].port: …`).
    /// Non-empty means the picture is partial; renderers say so.
    pub rejected: Vec<String>,
    /// Nodes stand for whole namespaces (the whole-cluster view), not
    /// workloads.
    pub aggregated: bool,
    /// For `--live`: the window the drop counts cover, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// For `--live`: why the overlay's counts are incomplete (drops the
    /// agent could not keep or was not told of); empty when complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlay_partial: Vec<String>,
}

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// Pods of one namespace grouped by owner / selecting labels.
    Workload,
    /// All pods of one namespace (aggregated views).
    Namespace,
    /// An external CIDR region named by some policy (`10.0.0.0/8 except …`).
    Cidr,
    /// This node's (or any node's) addresses.
    Host,
    /// Every address no policy names.
    World,
}

/// Whether policy isolates a node's pods in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// No policy selects them: everything not denied by a cluster tier is
    /// allowed.
    #[default]
    Open,
    /// Every pod of the node is isolated (default deny, then allows).
    Isolated,
    /// Some pods are isolated and some are not (aggregated nodes only).
    Partly,
    /// Not a pod (CIDR, host, world): policy does not isolate it.
    NotApplicable,
}

/// One node of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Stable identifier, unique in the graph: `workload:NS/NAME`,
    /// `namespace:NS`, `cidr:PREFIX[ except …]`, `host`, `world`.
    pub id: String,
    /// What to draw: `web`, `production`, `169.254.0.0/16 except …`.
    pub label: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// The namespace, for workloads and namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pods it stands for (`NS/NAME`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// The labels its pods share (workloads), `key=value`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The addresses it stands for (host nodes: the node addresses),
    /// sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Isolation of its pods for traffic they receive.
    pub ingress: Isolation,
    /// Isolation of its pods for traffic they send.
    pub egress: Isolation,
}

/// Whether an edge is allowed by policy or only seen being dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// Policy allows these ports from `from` to `to`.
    Allowed,
    /// Not allowed, and the agent saw it attempted (`--live` overlay).
    Denied,
}

/// A set of destination ports of one protocol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// `TCP`, `UDP`, `SCTP`, `other` (every protocol without ports: ICMP,
    /// ...; `first` and `last` are 0), or `any` (every protocol, ports or
    /// not).
    pub protocol: String,
    /// First port of the range (0 with `last` 65535: every port).
    pub first: u16,
    /// Last port of the range, inclusive.
    pub last: u16,
}

/// The tier that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// A ClusterNetworkPolicy of the Admin tier.
    Admin,
    /// A NetworkPolicy.
    NetworkPolicy,
    /// A ClusterNetworkPolicy of the Baseline tier.
    Baseline,
    /// No policy decided: allowed by default (pod not isolated, no tier rule
    /// matched), or the node's exemption for host traffic.
    Default,
}

/// One rule behind an edge, at one end.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleRef {
    /// `egress` (decided at the sender) or `ingress` (at the receiver).
    pub direction: String,
    /// The tier whose rule decided.
    pub tier: Tier,
    /// The rule as `monitor` and `explain` name it:
    /// `production/allow-web ingress[0]`,
    /// `ClusterNetworkPolicy admin/deny-metadata egress[0] (priority 10, Deny)`,
    /// `not isolated`.
    pub name: String,
    /// Tier rules passed on the way (`Pass` chains), in walk order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<String>,
}

/// One edge of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Source node id.
    pub from: String,
    /// Destination node id.
    pub to: String,
    /// Allowed, or only seen dropped.
    pub kind: EdgeKind,
    /// The ports (sorted, merged); for a denied edge, the ports seen dropped.
    pub ports: Vec<PortSpec>,
    /// The rules behind it, both ends, sorted.
    pub rules: Vec<RuleRef>,
    /// `--live`: drops seen on this pair in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<u64>,
    /// `--live`: those drops by cause (`policy-denied`, `admin-denied`,
    /// ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub causes: BTreeMap<String, u64>,
    /// `--live`, allowed edges: whether a live connection of the
    /// datapath's connection tracking uses it (`false`: unused in the
    /// window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<bool>,
}
