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
//! [`Compiler::apply_pod`], [`Compiler::apply_policy`],
//! [`Compiler::apply_cluster_policy`] (create or update; ClusterNetworkPolicy
//! objects are the [`api`] types), [`Compiler::apply_node`] (what `nodes`
//! peers select) or the `delete_*` functions, then call [`Compiler::commit`] to get the
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
//! * **ClusterNetworkPolicies** ([`api::ClusterNetworkPolicy`],
//!   `policy.networking.k8s.io/v1alpha2`): validated against the v0.2.0
//!   CRD and its CEL rules (`validate_cluster.rs`, which also documents
//!   the fail-closed reading of peers of unknown kinds and what is refused:
//!   `domainNames` peers). A `nodes` peer matches every address of
//!   `status.addresses` of every Node it selects, as `/32` and `/128`
//!   regions, following Node changes. Every local pod a policy's subject
//!   selects gets `TIERED_*` flags in the directions it has rules, and its
//!   entries carry each tier's first matching rule per port as a tier code
//!   (`cluster.rs`); [`Compiler::tier_rules`] names the codes.
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

// Modules, from the bottom up: each group depends only on earlier groups
// (`tests/module_layers.rs` checks that the module graph has no cycle).
// Every module's `//!` says what it owns.

// Vocabulary: ids, ports, names, errors, selectors, objects, map contents.
pub mod api;
mod error;
mod ids;
mod idset;
mod ports;
mod syntax;
mod verdicts;

mod selector;

mod model;
mod portsets;
mod state;

// Reading objects; ordering writes (make before break), a commit's diff.
mod order;
mod validate;
mod validate_cluster;

mod diff;

// Registries and compiled rules.
mod cidr;

mod identity;

mod rules;

mod audit;
mod endpoints;
mod ipcache;
mod policies;

mod dirty;

mod membership;

// The engine, its commit and its readers.
mod engine;

mod cluster;
mod ties;

mod commit;
mod inspect;
mod numbering;
mod survey;

mod explain;

// The public operations.
mod compiler;

pub use cluster::TierRuleName;
pub use compiler::Compiler;
pub use diff::Diff;
pub use error::{CompileError, ObjectKind, ObjectRef, Reason};
pub use explain::{
    Decider, End, ExplainError, Explanation, Judgement, PeerKind, PeerMatch, PortMatch, Query,
    RuleMatch, Side, TierMatch,
};
pub use identity::IdentityInfo;
pub use inspect::{ClusterPolicySummary, PolicyName, PolicySummary};
pub use model::NAMESPACE_NAME_LABEL;
pub use numbering::Meaning;
pub use order::{Changes, PolicyChange, order, reconcile};
pub use ports::PortSet;
pub use state::{DesiredState, Endpoint, EndpointEntry, MapOp, PodRef, Tables, Write};
pub use survey::{SideKey, SidePorts, SideSurvey};
pub use ties::PriorityOverlap;
pub use validate::{MODE_ANNOTATION, MODE_AUDIT};
pub use verdicts::{PortCodes, Verdicts};
