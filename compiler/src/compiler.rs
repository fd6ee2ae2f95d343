//! The [`Compiler`]: the crate's public operations, in one place. It owns
//! the engine, the committed output, the revision counter and the list of
//! rejected objects; every operation validates (`validate.rs`,
//! `validate_cluster.rs`), updates the
//! engine (`engine.rs`), commits (`commit.rs`) or reads (`inspect.rs`,
//! `explain.rs`, `identity.rs`) by delegation.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::commit::{self, Output};
use crate::diff::Diff;
use crate::engine::Engine;
use crate::error::{CompileError, ObjectKind, ObjectRef};
use crate::explain::{self, End, ExplainError, Explanation, Query, Side};
use crate::identity::{self, IdentityInfo};
use crate::inspect::{self, PolicyName, PolicySummary};
use crate::model::PolicyRef;
use crate::numbering::{self, Meaning};
use crate::state::{DesiredState, EndpointEntry, PodRef, Tables};
use crate::survey::SideSurvey;
use crate::{api, validate, validate_cluster};

/// The compiler for one node. See the crate documentation.
#[derive(Debug)]
pub struct Compiler {
    engine: Engine,
    out: Output,
    revision: u64,
    rejections: BTreeMap<ObjectRef, CompileError>,
}

impl Compiler {
    /// A compiler for the node named `node_name` (`spec.nodeName` of its
    /// pods), with empty state.
    pub fn new(node_name: impl Into<String>) -> Self {
        Compiler {
            engine: Engine::new(node_name.into()),
            out: Output::default(),
            revision: 0,
            rejections: BTreeMap::new(),
        }
    }

    /// The node this compiler compiles for.
    pub fn node_name(&self) -> &str {
        &self.engine.node
    }

    fn record<T>(&mut self, obj: ObjectRef, r: Result<T, CompileError>) -> Result<T, CompileError> {
        match &r {
            Ok(_) => {
                self.rejections.remove(&obj);
            }
            Err(e) => {
                self.rejections.insert(obj, e.clone());
            }
        }
        r
    }

    fn meta_ref(kind: ObjectKind, meta: &ObjectMeta) -> ObjectRef {
        ObjectRef::new(
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    // ----- objects --------------------------------------------------------

    /// Creates or updates a namespace.
    pub fn apply_namespace(&mut self, ns: &Namespace) -> Result<(), CompileError> {
        let mut obj = Self::meta_ref(ObjectKind::Namespace, &ns.metadata);
        obj.namespace.clear();
        let (name, ns) = self.record(obj, validate::namespace(ns))?;
        self.engine.set_namespace(&name, Some(ns));
        Ok(())
    }

    /// Deletes a namespace (its pods and policies are deleted by their own
    /// events).
    pub fn delete_namespace(&mut self, name: &str) {
        self.rejections
            .remove(&ObjectRef::new(ObjectKind::Namespace, "", name));
        self.engine.set_namespace(name, None);
    }

    /// Creates or updates a pod.
    pub fn apply_pod(&mut self, pod: &Pod) -> Result<(), CompileError> {
        let obj = Self::meta_ref(ObjectKind::Pod, &pod.metadata);
        let (key, p) = self.record(obj, validate::pod(pod))?;
        self.engine.set_pod(key, Some(p));
        Ok(())
    }

    /// Deletes a pod.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        self.rejections
            .remove(&ObjectRef::new(ObjectKind::Pod, namespace, name));
        self.engine.set_pod(PodRef::new(namespace, name), None);
    }

    /// Creates or updates a NetworkPolicy.
    pub fn apply_policy(&mut self, policy: &NetworkPolicy) -> Result<(), CompileError> {
        let obj = Self::meta_ref(ObjectKind::NetworkPolicy, &policy.metadata);
        let (key, p) = self.record(obj.clone(), validate::policy(policy))?;
        let applied = self
            .engine
            .set_policy(key, Some(p))
            .map_err(|reason| CompileError {
                object: obj.clone(),
                field: "spec".into(),
                reason: Box::new(reason),
            });
        self.record(obj, applied)
    }

    /// Deletes a NetworkPolicy.
    pub fn delete_policy(&mut self, namespace: &str, name: &str) {
        self.rejections
            .remove(&ObjectRef::new(ObjectKind::NetworkPolicy, namespace, name));
        // Removing never needs a new identity, so it cannot fail.
        let _ = self.engine.set_policy(
            PolicyRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            None,
        );
    }

    /// Creates or updates a ClusterNetworkPolicy. An invalid object is
    /// listed among the rejections and changes nothing: the last valid
    /// version of it stays in force.
    pub fn apply_cluster_policy(
        &mut self,
        policy: &api::ClusterNetworkPolicy,
    ) -> Result<(), CompileError> {
        // Cluster-scoped: a namespace in the metadata is an error, never
        // part of the name.
        let mut obj = Self::meta_ref(ObjectKind::ClusterNetworkPolicy, &policy.metadata);
        obj.namespace.clear();
        let (name, p) = self.record(obj.clone(), validate_cluster::cluster_policy(policy))?;
        let applied = self
            .engine
            .set_cluster_policy(name, Some(p))
            .map_err(|reason| CompileError {
                object: obj.clone(),
                field: "spec".into(),
                reason: Box::new(reason),
            });
        self.record(obj, applied)
    }

    /// Deletes a ClusterNetworkPolicy.
    pub fn delete_cluster_policy(&mut self, name: &str) {
        self.rejections
            .remove(&ObjectRef::new(ObjectKind::ClusterNetworkPolicy, "", name));
        // Removing never needs a new identity, so it cannot fail.
        let _ = self.engine.set_cluster_policy(name.to_string(), None);
    }

    /// Creates or updates a Node (its labels and addresses are what
    /// ClusterNetworkPolicy `nodes` peers match). An invalid object is
    /// listed among the rejections and changes nothing: the last valid
    /// version of it stays in force.
    pub fn apply_node(&mut self, node: &Node) -> Result<(), CompileError> {
        let mut obj = Self::meta_ref(ObjectKind::Node, &node.metadata);
        obj.namespace.clear();
        let (name, n) = self.record(obj.clone(), validate::node(node))?;
        let applied = self
            .engine
            .set_node(&name, Some(n))
            .map_err(|reason| CompileError {
                object: obj.clone(),
                field: "status.addresses".into(),
                reason: Box::new(reason),
            });
        self.record(obj, applied)
    }

    /// Deletes a Node.
    pub fn delete_node(&mut self, name: &str) {
        self.rejections
            .remove(&ObjectRef::new(ObjectKind::Node, "", name));
        // Removing never needs a new identity, so it cannot fail.
        let _ = self.engine.set_node(name, None);
    }

    /// Every known Node (valid and applied) with its addresses.
    pub fn nodes(&self) -> Vec<(String, Vec<IpAddr>)> {
        self.engine
            .nodes
            .iter()
            .map(|(n, o)| (n.clone(), o.addrs.iter().copied().collect()))
            .collect()
    }

    /// Every enforced ClusterNetworkPolicy rule, with the code the
    /// datapath reports when it decides a flow.
    pub fn tier_rules(&self) -> Vec<crate::TierRuleName> {
        crate::cluster::tier_rules(&self.engine)
    }

    /// A ClusterNetworkPolicy's tier, rules and selected local endpoints.
    /// `None` if unknown (never applied, deleted or rejected).
    pub fn cluster_policy_summary(&self, name: &str) -> Option<crate::ClusterPolicySummary> {
        inspect::cluster_policy_summary(&self.engine, name)
    }

    /// Pairs of enforced ClusterNetworkPolicies of one tier with the same
    /// priority whose rules act differently on some traffic of a local
    /// pod: there Palisade's order (by name), not the API, decides. See
    /// [`crate::PriorityOverlap`].
    pub fn priority_overlaps(&self) -> Vec<crate::PriorityOverlap> {
        crate::ties::priority_overlaps(&self.engine)
    }

    /// Sets this node's addresses (ipcache identity `IDENTITY_HOST`).
    pub fn set_host_addresses(&mut self, addrs: Vec<IpAddr>) {
        self.engine.set_host_addresses(addrs.into_iter().collect());
    }

    /// Audit every endpoint (the agent's `--audit`): all policies stay in
    /// the maps and every endpoint gets `AUDIT_INGRESS | AUDIT_EGRESS`, so
    /// would-drops pass and are reported. Takes effect at the next commit.
    pub fn set_audit_all(&mut self, on: bool) {
        self.engine.set_audit_all(on);
    }

    // ----- commits --------------------------------------------------------

    /// Computes the operations that bring the maps from the last committed
    /// state to the current one, in a safe order, and commits them.
    pub fn commit(&mut self) -> Diff {
        let ops = commit::commit(&mut self.engine, &mut self.out);
        if !ops.is_empty() {
            self.revision += 1;
        }
        Diff {
            revision: self.revision,
            ops,
        }
    }

    // ----- numbering ------------------------------------------------------

    /// Every number in use (as of the last commit) or remembered and not
    /// claimed yet, with its meaning: what to record before a commit's
    /// writes reach the maps (see `ids.rs`, `numbering.rs`).
    pub fn numbering(&self) -> Vec<(Meaning, u32)> {
        numbering::numbering(&self.engine, &self.out)
    }

    /// A count that moves whenever [`Compiler::numbering`] may have
    /// changed (it stands still otherwise).
    pub fn numbering_generation(&self) -> u64 {
        numbering::generation(&self.engine, &self.out)
    }

    /// Gives back numbers recorded by a previous process: each is handed
    /// out only to its meaning. Call before applying any object.
    pub fn remember_numbering(&mut self, entries: impl IntoIterator<Item = (Meaning, u32)>) {
        numbering::remember(&mut self.engine, &mut self.out, entries);
    }

    /// Keeps every number `tables` (what the maps hold) uses and nothing
    /// here does from being handed out, until [`Compiler::settle_numbering`].
    pub fn reserve_numbers<K, E: EndpointEntry>(&mut self, tables: &Tables<K, E>) {
        numbering::reserve(&mut self.engine, &mut self.out, tables);
    }

    /// The maps hold exactly the last commit: forgets unclaimed remembered
    /// numbers and ends every reservation.
    pub fn settle_numbering(&mut self) {
        numbering::settle(&mut self.engine, &mut self.out);
    }

    /// The state as of the last commit.
    pub fn state(&self) -> &DesiredState {
        &self.out.state
    }

    /// Number of commits that produced operations.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Objects currently rejected, with the reason. An object leaves the
    /// list when a valid version is applied or it is deleted.
    pub fn rejections(&self) -> &BTreeMap<ObjectRef, CompileError> {
        &self.rejections
    }

    // ----- reads ----------------------------------------------------------

    /// What identity `id` stands for (as of the engine's current model).
    pub fn identity(&self, id: u32) -> Option<IdentityInfo> {
        identity::describe(id, &self.engine.identities, &self.engine.ipcache.regions)
    }

    /// Whether every endpoint audits.
    pub fn audit_all(&self) -> bool {
        self.engine.audit.all
    }

    /// Explains the verdict for a new flow `from → to` (see `explain.rs`).
    /// Uses the model as of the last applied objects; call after
    /// [`Compiler::commit`] for an answer that matches the maps.
    pub fn explain(&self, q: &Query) -> Result<Explanation, ExplainError> {
        explain::explain(&self.engine, q)
    }

    /// Policies selecting `pod` in `dir` (`palisade_common::direction`):
    /// `(enforced, audited)`. Empty if the pod is unknown.
    pub fn selecting(&self, pod: &PodRef, dir: u8) -> (Vec<PolicyName>, Vec<PolicyName>) {
        inspect::selecting(&self.engine, pod, dir)
    }

    /// Whether the compiler knows the pod (valid and applied).
    pub fn has_pod(&self, pod: &PodRef) -> bool {
        inspect::has_pod(&self.engine, pod)
    }

    /// Whether the compiler knows the namespace (an object was applied, or
    /// some pod or policy lives in it).
    pub fn has_namespace(&self, ns: &str) -> bool {
        inspect::has_namespace(&self.engine, ns)
    }

    /// The valid NetworkPolicies, counted by mode: (enforced, audited).
    /// ClusterNetworkPolicies are not counted (see [`Compiler::tier_rules`]).
    pub fn policy_modes(&self) -> (usize, usize) {
        inspect::policy_modes(&self.engine)
    }

    /// The namespaces that have valid policies.
    pub fn policy_namespaces(&self) -> impl Iterator<Item = &str> {
        inspect::policy_namespaces(&self.engine)
    }

    /// Every valid NetworkPolicy, by name (ClusterNetworkPolicies are not
    /// listed).
    pub fn policies(&self) -> Vec<PolicyName> {
        inspect::policies(&self.engine)
    }

    /// The policy's entries as compiled for this node: per local endpoint
    /// it selects, the directions it isolates. `None` if unknown.
    pub fn policy_summary(&self, name: &PolicyName) -> Option<PolicySummary> {
        inspect::policy_summary(&self.engine, name)
    }

    /// Every address the ipcache gives to a live pod, with that pod (the
    /// claim that wins, as in the maps). For tools naming flow ends.
    pub fn pod_addresses(&self) -> Vec<(IpAddr, PodRef)> {
        inspect::pod_addresses(&self.engine)
    }

    /// This node's addresses as last set.
    pub fn host_addresses(&self) -> Vec<IpAddr> {
        inspect::host_addresses(&self.engine)
    }

    /// The pod's identity, if it is live (see the crate documentation):
    /// pods with the same identity and CIDR region are judged alike.
    pub fn pod_identity(&self, pod: &PodRef) -> Option<u32> {
        self.engine.pods.get(pod)?.identity
    }

    /// Where the verdict of `pod`'s traffic in `dir` may change with the
    /// destination port: per TCP, UDP and SCTP, the sorted first ports of
    /// the intervals within which every port is judged alike (see
    /// `survey.rs`).
    pub fn port_boundaries(&self, pod: &PodRef, dir: u8) -> [Vec<u16>; 3] {
        crate::survey::port_boundaries(&self.engine, pod, dir)
    }

    /// One side of every flow of `pod` in `dir` (its egress as sender,
    /// its ingress as receiver), judged per peer over whole port ranges
    /// (see `survey.rs`); `enforce_host` as in [`Query`].
    pub fn side_survey(&self, pod: &PodRef, dir: u8, enforce_host: bool) -> SideSurvey<'_> {
        SideSurvey::new(&self.engine, pod, dir, enforce_host)
    }

    /// The two ends of a flow `from → to` as [`Compiler::explain`] resolves
    /// them (one address family: an address side decides it, else the
    /// sender's IPv4 address first).
    pub fn resolve_flow(&self, from: &Side, to: &Side) -> Result<(End, End), ExplainError> {
        explain::resolve_flow(&self.engine, from, to)
    }

    /// Every CIDR prefix valid policies name, sorted: the regions of the
    /// ipcache (an external address belongs to the most specific one that
    /// holds it, else to the world).
    pub fn region_prefixes(&self) -> Vec<ipnet::IpNet> {
        crate::survey::region_prefixes(&self.engine)
    }

    /// Every known pod (valid and applied), live or not.
    pub fn pods(&self) -> Vec<PodRef> {
        inspect::pods(&self.engine)
    }
}
