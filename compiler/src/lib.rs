//! Palisade's NetworkPolicy compiler: a pure, synchronous module that turns
//! cluster state (Namespaces, Pods, `networking.k8s.io/v1` NetworkPolicies,
//! this node's addresses) into the contents of the datapath maps for one
//! node, and every change into a minimal, safely ordered diff.
//!
//! # Use
//!
//! ```
//! use palisade_compiler::{Compiler, MapOp};
//! # use k8s_openapi::api::core::v1::Namespace;
//! let mut c = Compiler::new("node-1");
//! # let ns = Namespace { metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
//! #     name: Some("prod".into()), ..Default::default() }, ..Default::default() };
//! c.apply_namespace(&ns).unwrap();          // also apply_pod, apply_policy
//! c.set_host_addresses(vec!["192.0.2.10".parse().unwrap()]);
//! let diff = c.commit();                      // ordered MapOps since the last commit
//! for op in &diff.ops {
//!     match op {
//!         MapOp::IpcacheExactUpsert { .. } => { /* write IPCACHE_EXACT4/6 */ }
//!         _ => { /* ... */ }
//!     }
//! }
//! assert_eq!(c.state().ipcache_exact4.len(), 1); // the committed desired state
//! ```
//!
//! Feed every watch event to [`Compiler::apply_namespace`],
//! [`Compiler::apply_pod`], [`Compiler::apply_policy`] (create or update) or
//! the `delete_*` functions, then call [`Compiler::commit`] to get the
//! [`Diff`]: apply its [`MapOp`]s in order. Batching many events before one
//! commit is cheaper than committing after each (the initial sync should
//! apply everything, then commit once). [`Compiler::state`] is the state
//! after the last commit (for a full resync of the maps:
//! [`DesiredState::full_sync_ops`]).
//!
//! # What is compiled
//!
//! * **Endpoints** ([`DesiredState::endpoints`]): every *local* pod
//!   (`spec.nodeName` = the node, an address in `status.podIPs`/`podIP`, not
//!   `hostNetwork`, phase not `Succeeded`/`Failed`) gets an [`Endpoint`]:
//!   `ep_id` (never 0, stable for the pod's life — a new UID is a new life),
//!   its identity, isolation flags and addresses. The agent maps pods to
//!   interfaces.
//! * **Identities** (`palisade_common::identity`): pods get one identity per
//!   (namespace, label set, named-port signature); CIDR regions get one per
//!   prefix mentioned by a valid policy (`cidr` or `except`). All are
//!   refcounted and stable while used; [`Compiler::identity`] describes one.
//!
//!   The named-port signature (the sorted `(name, protocol, containerPort)`
//!   of the pod's named container ports) is part of the pod identity so that
//!   egress rules with named ports stay exact: egress entries are keyed by
//!   the peer's identity and a named port resolves on the destination pod,
//!   so if two pods with equal labels served `http` on 80 and 8080 and shared
//!   an identity, the entry `(identity, TCP, {80, 8080})` would let traffic
//!   reach either pod on either port.
//! * **Ipcache**: every live pod address of the cluster → `{pod identity,
//!   region of the address}` (the region: most specific mentioned prefix,
//!   else `IDENTITY_WORLD`); this node's addresses → `{IDENTITY_HOST,
//!   region}`; every region prefix → `{region, region}` in the LPM maps. An
//!   address claimed by several objects goes to the node if it is one of its
//!   addresses, else to the pod with the smallest namespace/name.
//! * **Policy** ([`DesiredState::policy`]): for each local endpoint, each
//!   direction in which a policy of its namespace selects it (policyTypes,
//!   with API defaulting), the union of what all rules of all selecting
//!   policies allow: one entry per (ep, peer identity or `IDENTITY_ANY`,
//!   direction, protocol class, view 0). A set of ports that is one range is
//!   stored inline, any other set as a deduplicated, refcounted bitmap in
//!   [`DesiredState::portsets`]. A rule without ports allows TCP, UDP and
//!   SCTP `0..=65535` and `proto::OTHER`; a port without number allows the
//!   whole protocol; protocols default to TCP.
//!
//! Peers: `from`/`to` empty → `IDENTITY_ANY`; podSelector/namespaceSelector
//! peers → the pod identities they match (namespace labels include
//! `kubernetes.io/metadata.name`; a namespace not seen yet has only that
//! label); ipBlock peers → the regions `R ⊆ cidr`, `R ⊄ except` — exact also
//! when policies mention overlapping prefixes, and matching pod addresses
//! too through their `cidr_identity`. Named ports resolve on the
//! destination: the local pod for ingress, the peer identity for egress;
//! for egress towards ipBlocks or "everything" they can only match pods
//! (rules of `rules.rs` document the exact, conservative treatment).
//!
//! # Invalid objects
//!
//! Objects are validated as the API server would ([`CompileError`] names the
//! object and the field path). A rejected object never loosens enforcement:
//! the last valid version stays in force, a new invalid object is not
//! applied. [`Compiler::rejections`] lists the current rejections.
//!
//! # Diffs
//!
//! A commit emits only entries whose value changes, ordered so that no
//! intermediate state allows a flow that neither the old nor the new state
//! allows (`diff.rs` documents the rules: new portsets first, ipcache
//! switches between the writes for the identities they move, isolation set
//! after the entries that lift it, removals last).
//! [`Diff::revision`] counts commits that produced operations.

mod audit;
mod cidr;
mod commit;
mod diff;
mod engine;
mod error;
mod explain;
mod identity;
mod ids;
mod idset;
mod model;
mod ports;
mod portsets;
mod rules;
mod selector;
mod state;
mod syntax;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_common::{IDENTITY_ANY, IDENTITY_HOST, IDENTITY_WORLD, IdentityKind, identity_kind};

pub use audit::{MODE_ANNOTATION, MODE_AUDIT};
pub use diff::{Diff, MapOp};
pub use error::{CompileError, ObjectKind, ObjectRef, Reason};
pub use explain::{
    End, ExplainError, Explanation, Judgement, PeerKind, PeerMatch, PolicyName, PolicySummary,
    PortMatch, Query, RuleMatch, Side,
};
pub use ports::PortSet;
pub use state::{DesiredState, Endpoint, PodRef};
pub use validate::NAMESPACE_NAME_LABEL;

use commit::Output;
use engine::Engine;
use model::PolicyRef;

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityInfo {
    /// `IDENTITY_ANY`.
    Any,
    /// `IDENTITY_HOST`.
    Host,
    /// `IDENTITY_WORLD`.
    World,
    /// Pods of a namespace with a label set and named-port signature.
    Pod {
        /// Namespace.
        namespace: String,
        /// Labels.
        labels: BTreeMap<String, String>,
        /// Named ports: `(name, protocol class, port)`.
        named_ports: BTreeSet<(String, u8, u16)>,
    },
    /// A CIDR region.
    Cidr(IpNet),
}

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

    fn meta_ref(
        kind: ObjectKind,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> ObjectRef {
        ObjectRef::new(
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// Creates or updates a namespace.
    pub fn apply_namespace(&mut self, ns: &Namespace) -> Result<(), CompileError> {
        let mut obj = Self::meta_ref(ObjectKind::Namespace, &ns.metadata);
        obj.namespace.clear();
        let (name, labels) = self.record(obj, validate::namespace(ns))?;
        self.engine.set_namespace(&name, Some(labels));
        self.engine.set_namespace_audit(
            &name,
            audit::mode_is_audit(ns.metadata.annotations.as_ref()),
        );
        Ok(())
    }

    /// Deletes a namespace (its pods and policies are deleted by their own
    /// events).
    pub fn delete_namespace(&mut self, name: &str) {
        self.rejections
            .remove(&ObjectRef::new(ObjectKind::Namespace, "", name));
        self.engine.set_namespace(name, None);
        self.engine.set_namespace_audit(name, false);
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

    /// Sets this node's addresses (ipcache identity `IDENTITY_HOST`).
    pub fn set_host_addresses(&mut self, addrs: Vec<IpAddr>) {
        self.engine.set_host_addresses(addrs.into_iter().collect());
    }

    /// Computes the operations that bring the maps from the last committed
    /// state to the current one, in a safe order, and commits them.
    pub fn commit(&mut self) -> Diff {
        let ops = self.engine.commit(&mut self.out);
        if !ops.is_empty() {
            self.revision += 1;
        }
        Diff {
            revision: self.revision,
            ops,
        }
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

    /// What identity `id` stands for (as of the engine's current model).
    pub fn identity(&self, id: u32) -> Option<IdentityInfo> {
        match identity_kind(id) {
            IdentityKind::Any => Some(IdentityInfo::Any),
            IdentityKind::Host => Some(IdentityInfo::Host),
            IdentityKind::World => Some(IdentityInfo::World),
            IdentityKind::Reserved => None,
            IdentityKind::Pod => self
                .engine
                .identities
                .by_id
                .get(&id)
                .map(|i| IdentityInfo::Pod {
                    namespace: i.key.namespace.clone(),
                    labels: i.key.labels.as_ref().clone(),
                    named_ports: i.key.named_ports.as_ref().clone(),
                }),
            IdentityKind::Cidr => self.engine.regions.net(id).map(IdentityInfo::Cidr),
        }
    }
}

const _: () = assert!(IDENTITY_ANY == 0 && IDENTITY_HOST == 1 && IDENTITY_WORLD == 2);
