//! Read-only views of the engine's model for tools (`palisade explain`,
//! `policy get`, `endpoint list`, the monitor): policies by name
//! ([`PolicyName`]), which of them select a pod, what a policy compiles to
//! on this node ([`PolicySummary`]), and which pods and addresses are
//! known.

use std::net::IpAddr;

use crate::audit::is_audited;
use crate::cluster::{self, TierRuleName};
use crate::engine::Engine;
use crate::ipcache::Claim;
use crate::model::PolicyRef;
use crate::state::PodRef;

/// A NetworkPolicy by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyName {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl PolicyName {
    /// A policy name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PolicyName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl PolicyName {
    fn key(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// What [`crate::Compiler::policy_summary`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySummary {
    /// In audit mode.
    pub audited: bool,
    /// Per direction (ingress, egress): `Some(number of rules)` iff the
    /// policy isolates the selected pods in that direction.
    pub isolates: [Option<usize>; 2],
    /// Local endpoints it selects.
    pub selected_local: Vec<PodRef>,
}

/// What [`crate::Compiler::cluster_policy_summary`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPolicySummary {
    /// `admin` or `baseline`.
    pub tier: &'static str,
    /// `spec.priority`.
    pub priority: u16,
    /// In audit mode.
    pub audited: bool,
    /// Its rules, ingress then egress, each with the code the datapath
    /// reports when the rule decides a flow.
    pub rules: Vec<TierRuleName>,
    /// Local endpoints its subject selects.
    pub selected_local: Vec<PodRef>,
    /// The other enforced policies of its tier with the same priority,
    /// by name (the order in which the tier consults them).
    pub same_priority: Vec<String>,
}

/// Policies of `pod`'s namespace selecting it in `dir`, split into
/// (enforced, audited).
pub(crate) fn selecting(e: &Engine, pod: &PodRef, dir: u8) -> (Vec<PolicyName>, Vec<PolicyName>) {
    let (mut enforced, mut audited) = (Vec::new(), Vec::new());
    let Some(st) = e.pods.get(pod) else {
        return (enforced, audited);
    };
    // A local endpoint keeps the policies whose podSelector selects it;
    // other pods are matched against those of their namespace.
    let candidates = match e.eps.get(pod) {
        Some(ep) => Some(&ep.selecting),
        None => e.policies.of_namespace(&pod.namespace),
    };
    for r in candidates.into_iter().flatten() {
        let Some(p) = e.policies.get(r) else {
            continue;
        };
        if p.obj.rules[dir as usize].is_some() && p.obj.pod_selector.matches(&st.obj.labels) {
            let name = PolicyName::new(&r.namespace, &r.name);
            if is_audited(p, &e.audit) {
                audited.push(name);
            } else {
                enforced.push(name);
            }
        }
    }
    (enforced, audited)
}

/// Whether the pod is known (valid and applied).
pub(crate) fn has_pod(e: &Engine, pod: &PodRef) -> bool {
    e.pods.contains_key(pod)
}

/// Whether the namespace is known (an object was applied, or some pod or
/// policy lives in it).
pub(crate) fn has_namespace(e: &Engine, ns: &str) -> bool {
    e.namespaces.contains_key(ns)
        || e.policies.of_namespace(ns).is_some()
        || e.pods.keys().any(|p| p.namespace == ns)
}

/// The valid NetworkPolicies, counted by mode: (enforced, audited).
pub(crate) fn policy_modes(e: &Engine) -> (usize, usize) {
    // The store holds ClusterNetworkPolicies too; `len` does not count them.
    let audited = e
        .policies
        .iter()
        .filter(|(r, p)| !r.is_cluster() && is_audited(p, &e.audit))
        .count();
    (e.policies.len() - audited, audited)
}

/// The namespaces that have valid policies.
pub(crate) fn policy_namespaces(e: &Engine) -> impl Iterator<Item = &str> {
    e.policies.namespaces().map(String::as_str)
}

/// Every valid NetworkPolicy, by name.
pub(crate) fn policies(e: &Engine) -> Vec<PolicyName> {
    e.policies
        .iter()
        .filter(|(r, _)| !r.is_cluster())
        .map(|(r, _)| PolicyName::new(&r.namespace, &r.name))
        .collect()
}

/// The policy's mode, isolated directions and selected local endpoints.
pub(crate) fn policy_summary(e: &Engine, name: &PolicyName) -> Option<PolicySummary> {
    let p = e.policies.get(&name.key())?;
    Some(PolicySummary {
        audited: is_audited(p, &e.audit),
        isolates: [
            p.obj.rules[0].as_ref().map(Vec::len),
            p.obj.rules[1].as_ref().map(Vec::len),
        ],
        selected_local: p.selected.iter().cloned().collect(),
    })
}

/// The ClusterNetworkPolicy's tier, rules and selected local endpoints.
pub(crate) fn cluster_policy_summary(e: &Engine, name: &str) -> Option<ClusterPolicySummary> {
    let p = e.cluster_policies.get(name)?;
    let positions = cluster::positions(&e.cluster_policies);
    let position = positions.get(name).copied().unwrap_or_default();
    let rules = (0..2u8)
        .flat_map(|dir| (0..p.rules[dir as usize].len()).map(move |i| (dir, i)))
        .map(|(dir, i)| cluster::rule_name(name, p, position, dir, i))
        .collect();
    let same_priority = e
        .cluster_policies
        .iter()
        .filter(|(n, q)| {
            n.as_str() != name && !q.audit && q.tier == p.tier && q.priority == p.priority
        })
        .map(|(n, _)| n.clone())
        .collect();
    Some(ClusterPolicySummary {
        tier: p.tier.as_str(),
        priority: p.priority,
        audited: p.audit,
        rules,
        selected_local: e
            .policies
            .get(&PolicyRef::cluster(name))
            .map(|st| st.selected.iter().cloned().collect())
            .unwrap_or_default(),
        same_priority,
    })
}

/// Every address the ipcache gives to a live pod, with that pod.
pub(crate) fn pod_addresses(e: &Engine) -> Vec<(IpAddr, PodRef)> {
    e.ipcache
        .claimed()
        .filter_map(|(a, c)| match c {
            Claim::Pod(p) if e.pods.get(p)?.identity.is_some() => Some((*a, p.clone())),
            _ => None,
        })
        .collect()
}

/// This node's addresses as last set.
pub(crate) fn host_addresses(e: &Engine) -> Vec<IpAddr> {
    e.ipcache.host().iter().copied().collect()
}

/// Every known pod (valid and applied), live or not.
pub(crate) fn pods(e: &Engine) -> Vec<PodRef> {
    e.pods.keys().cloned().collect()
}
