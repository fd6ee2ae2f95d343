//! The Kubernetes object `ClusterNetworkPolicy` of the network-policy-api
//! project (`policy.networking.k8s.io/v1alpha2`, release v0.2.0), as serde
//! types: the shape the API server stores, field for field, for the agent
//! to parse watch events, YAML or JSON into. Nothing here validates; see
//! [`crate::Compiler::apply_cluster_policy`] for the rules (`validate_cluster.rs`).
//!
//! Parsing is deliberately lenient, so that validation, not serde, decides
//! what an object means:
//!
//! * Unknown fields are tolerated everywhere (as the API's Go types do).
//! * Fields the CRD requires are `Option`s (or lists that may be empty):
//!   a missing one is a validation error with its field path, not a parse
//!   failure of the whole object.
//! * Enumerations keep values this version does not know
//!   ([`Tier::Other`], [`ClusterNetworkPolicyRuleAction::Other`]).
//! * The one-of structs (peers, protocol entries, ports) keep the fields
//!   they do not know in `unknown`: the API asks implementations to "fail
//!   closed" on a peer of a kind they do not know, which they can only do
//!   if they see it.
//!
//! The Go types have one struct per protocol (`ClusterNetworkPolicyProtocolTCP`,
//! `...UDP`, `...SCTP`) with the same fields; here they are one struct,
//! [`ClusterNetworkPolicyProtocolPorts`], under those names as aliases.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// `apiVersion` of the objects these types describe.
pub const API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";
/// `kind` of the objects these types describe.
pub const KIND: &str = "ClusterNetworkPolicy";

/// Fields of a one-of struct this version does not know, by name.
pub type UnknownFields = BTreeMap<String, serde_json::Value>;

/// A cluster-wide network policy (cluster-scoped, short name `cnp`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicy {
    /// `policy.networking.k8s.io/v1alpha2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `ClusterNetworkPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard object metadata (no namespace: the object is cluster-scoped).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired behaviour.
    #[serde(default)]
    pub spec: ClusterNetworkPolicySpec,
    /// Status reported by implementations: kept as given, never read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A list of [`ClusterNetworkPolicy`] (`ClusterNetworkPolicyList`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyList {
    /// `policy.networking.k8s.io/v1alpha2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `ClusterNetworkPolicyList`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard list metadata.
    #[serde(default)]
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    /// The policies.
    #[serde(default)]
    pub items: Vec<ClusterNetworkPolicy>,
}

impl k8s_openapi::Resource for ClusterNetworkPolicy {
    const API_VERSION: &'static str = API_VERSION;
    const GROUP: &'static str = "policy.networking.k8s.io";
    const KIND: &'static str = KIND;
    const VERSION: &'static str = "v1alpha2";
    const URL_PATH_SEGMENT: &'static str = "clusternetworkpolicies";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::ListableResource for ClusterNetworkPolicy {
    const LIST_KIND: &'static str = "ClusterNetworkPolicyList";
}

impl k8s_openapi::Metadata for ClusterNetworkPolicy {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `spec` of a [`ClusterNetworkPolicy`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    /// `Admin` (before NetworkPolicy) or `Baseline` (after it). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Precedence within the tier, `0..=1000`, lower first. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// The pods the policy applies to. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<ClusterNetworkPolicySubject>,
    /// Ingress rules in precedence order (at most 25).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<ClusterNetworkPolicyIngressRule>,
    /// Egress rules in precedence order (at most 25).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<ClusterNetworkPolicyEgressRule>,
}

/// `spec.tier`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Tier {
    /// `Admin`.
    Admin,
    /// `Baseline`.
    Baseline,
    /// A value this version does not know (invalid).
    Other(String),
}

impl From<String> for Tier {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Admin" => Tier::Admin,
            "Baseline" => Tier::Baseline,
            _ => Tier::Other(s),
        }
    }
}

impl From<Tier> for String {
    fn from(t: Tier) -> Self {
        match t {
            Tier::Admin => "Admin".into(),
            Tier::Baseline => "Baseline".into(),
            Tier::Other(s) => s,
        }
    }
}

/// `spec.subject`: exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySubject {
    /// Every pod of the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace and pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods selected by namespace AND pod labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// Namespaces (empty or absent: every namespace).
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Pods within them (empty: every pod). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// An ingress rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyIngressRule {
    /// An identifier for reports (at most 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ClusterNetworkPolicyRuleAction>,
    /// Sources (1 to 25, ORed). Required.
    #[serde(default)]
    pub from: Vec<ClusterNetworkPolicyIngressPeer>,
    /// Protocol and port matches (1 to 25, ORed); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ClusterNetworkPolicyProtocol>>,
}

/// An egress rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressRule {
    /// An identifier for reports (at most 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ClusterNetworkPolicyRuleAction>,
    /// Destinations (1 to 25, ORed). Required.
    #[serde(default)]
    pub to: Vec<ClusterNetworkPolicyEgressPeer>,
    /// Protocol and port matches (1 to 25, ORed); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ClusterNetworkPolicyProtocol>>,
}

/// A rule's `action`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ClusterNetworkPolicyRuleAction {
    /// `Accept`: allowed, final.
    Accept,
    /// `Deny`: dropped, final.
    Deny,
    /// `Pass`: the next tier decides.
    Pass,
    /// A value this version does not know (invalid).
    Other(String),
}

impl From<String> for ClusterNetworkPolicyRuleAction {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Accept" => Self::Accept,
            "Deny" => Self::Deny,
            "Pass" => Self::Pass,
            _ => Self::Other(s),
        }
    }
}

impl From<ClusterNetworkPolicyRuleAction> for String {
    fn from(a: ClusterNetworkPolicyRuleAction) -> Self {
        match a {
            ClusterNetworkPolicyRuleAction::Accept => "Accept".into(),
            ClusterNetworkPolicyRuleAction::Deny => "Deny".into(),
            ClusterNetworkPolicyRuleAction::Pass => "Pass".into(),
            ClusterNetworkPolicyRuleAction::Other(s) => s,
        }
    }
}

/// A source of an ingress rule: exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyIngressPeer {
    /// Every pod of the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace and pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Peer kinds this version does not know.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// A destination of an egress rule: exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressPeer {
    /// Every pod of the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace and pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Nodes by label (experimental channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs (1 to 25, no duplicates), e.g. `10.0.0.0/8`, `fd00::/8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Cidr>>,
    /// Domain names (1 to 25; experimental channel, Accept rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<DomainName>>,
    /// Peer kinds this version does not know.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// An IP range in CIDR notation (`CIDR` in the Go types).
pub type Cidr = String;

/// A domain name, optionally with a leading `*.` wildcard.
pub type DomainName = String;

/// One entry of a rule's `protocols`: exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyProtocol {
    /// TCP matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ClusterNetworkPolicyProtocolTCP>,
    /// UDP matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ClusterNetworkPolicyProtocolUDP>,
    /// SCTP matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ClusterNetworkPolicyProtocolSCTP>,
    /// A destination container port by name (any protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
    /// Protocol kinds this version does not know.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// The attributes of a `tcp`, `udp` or `sctp` protocol entry (at least one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyProtocolPorts {
    /// The destination port or range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<Port>,
    /// Attributes this version does not know.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `tcp` of a protocol entry.
pub type ClusterNetworkPolicyProtocolTCP = ClusterNetworkPolicyProtocolPorts;
/// `udp` of a protocol entry.
pub type ClusterNetworkPolicyProtocolUDP = ClusterNetworkPolicyProtocolPorts;
/// `sctp` of a protocol entry.
pub type ClusterNetworkPolicyProtocolSCTP = ClusterNetworkPolicyProtocolPorts;

/// A port number or a range: exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// A port, `1..=65535`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    /// An inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
    /// Port kinds this version does not know.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// An inclusive port range, `start < end`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// First port, `1..=65535`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i32>,
    /// Last port, `1..=65535`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i32>,
}
