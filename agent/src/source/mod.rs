//! Where the agent learns about Namespaces, Pods, NetworkPolicies,
//! ClusterNetworkPolicies and Nodes (what their `nodes` peers select; and the policy objects of kinds it does not
//! enforce, so that it can say so): a directory of manifests
//! ([`manifests`]) or the Kubernetes API ([`kube`]). Both feed the agent
//! core the same [`SourceUpdate`]s.

pub mod kube;
pub mod kube_unenforced;
pub mod manifests;
pub mod pod;
pub mod yaml;

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, NodeStatus, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use palisade_compiler::api::ClusterNetworkPolicy;
use tokio::sync::mpsc;

pub use pod::PodInfo;

/// The kinds the compiler consumes, and [`Kind::Unenforced`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1/Namespace`.
    Namespace,
    /// `v1/Pod`.
    Pod,
    /// `networking.k8s.io/v1/NetworkPolicy`.
    NetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2/ClusterNetworkPolicy`.
    ClusterNetworkPolicy,
    /// `v1/Node` (what ClusterNetworkPolicy `nodes` peers select).
    Node,
    /// A network policy object of a kind Palisade does not enforce
    /// ([`UnenforcedPolicy`]): kept only to be reported.
    Unenforced,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            Kind::Node => "Node",
            Kind::Unenforced => "unenforced policy",
        })
    }
}

/// A network policy object of a kind Palisade does not enforce
/// (AdminNetworkPolicy and BaselineAdminNetworkPolicy v1alpha1, a vendor's
/// policy CRD, a NetworkPolicy of another API group): enforcement the
/// operator may believe in and does not have, so it is never passed over
/// silently (see [`is_policy_kind`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnenforcedPolicy {
    /// `apiVersion` (`group/version`).
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace` (empty for cluster-scoped objects).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl UnenforcedPolicy {
    /// `kind.group` as kubectl names resources (`AdminNetworkPolicy.policy.networking.k8s.io`).
    pub fn kind_group(&self) -> String {
        match self.api_version.rsplit_once('/') {
            Some((group, _)) => format!("{}.{group}", self.kind),
            None => self.kind.clone(),
        }
    }
}

impl fmt::Display for UnenforcedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) ", self.kind, self.api_version)?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        f.write_str(&self.name)
    }
}

/// Whether an object of `kind` is a network policy of some implementation:
/// its kind names a network policy (`NetworkPolicy`,
/// `AdminNetworkPolicy`, `CiliumClusterwideNetworkPolicy`,
/// `GlobalNetworkPolicy`, `MultiNetworkPolicy`, ...).
pub fn is_policy_kind(kind: &str) -> bool {
    kind.contains("NetworkPolic")
}

/// An object by kind, namespace (empty for namespaces) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// `metadata.namespace` (empty for Namespaces).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One object of a kind the compiler consumes, as the agent keeps it:
/// without what enforcement never reads (see [`Object::namespace`],
/// [`Object::pod`], [`Object::policy`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Namespace.
    Namespace(Arc<Namespace>),
    /// A Pod: the fields the compiler reads.
    Pod(Arc<PodInfo>),
    /// A NetworkPolicy.
    NetworkPolicy(Arc<NetworkPolicy>),
    /// A ClusterNetworkPolicy.
    ClusterNetworkPolicy(Arc<ClusterNetworkPolicy>),
    /// A Node: its name, labels and `status.addresses` only.
    Node(Arc<Node>),
    /// A policy object Palisade does not enforce.
    Unenforced(Arc<UnenforcedPolicy>),
}

/// Drops from an object's metadata what the agent never reads: managed
/// fields, and the annotations other than the audit-mode one and the
/// allowed source prefixes (others can be large:
/// `kubectl.kubernetes.io/last-applied-configuration` repeats the whole
/// object).
fn slim_meta(m: &mut ObjectMeta) {
    m.managed_fields = None;
    if let Some(a) = &mut m.annotations {
        a.retain(|k, _| {
            k == palisade_compiler::MODE_ANNOTATION || k == crate::agent::ALLOWED_SOURCES_ANNOTATION
        });
        if a.is_empty() {
            m.annotations = None;
        }
    }
}

impl Object {
    /// A Namespace: its metadata slimmed (labels, the audit-mode and the
    /// allowed-source-prefixes annotations stay).
    pub fn namespace(mut ns: Namespace) -> Object {
        slim_meta(&mut ns.metadata);
        Object::Namespace(Arc::new(ns))
    }

    /// A Pod: what the compiler reads of it.
    pub fn pod(p: Pod) -> Object {
        Object::Pod(Arc::new(PodInfo::from(p)))
    }

    /// A NetworkPolicy: its metadata slimmed (the spec stays whole).
    pub fn policy(mut np: NetworkPolicy) -> Object {
        slim_meta(&mut np.metadata);
        Object::NetworkPolicy(Arc::new(np))
    }

    /// A ClusterNetworkPolicy: its metadata slimmed and its status
    /// dropped (the spec stays whole).
    pub fn cluster_policy(mut cnp: ClusterNetworkPolicy) -> Object {
        slim_meta(&mut cnp.metadata);
        cnp.status = None;
        Object::ClusterNetworkPolicy(Arc::new(cnp))
    }

    /// A Node: only what `nodes` peers read (name, namespace, labels,
    /// `status.addresses`): a Node's status is large and changes often
    /// (conditions, images).
    pub fn node(n: Node) -> Object {
        let metadata = ObjectMeta {
            name: n.metadata.name,
            namespace: n.metadata.namespace,
            labels: n.metadata.labels,
            ..ObjectMeta::default()
        };
        let addresses = n.status.and_then(|s| s.addresses);
        Object::Node(Arc::new(Node {
            metadata,
            spec: None,
            status: Some(NodeStatus {
                addresses,
                ..NodeStatus::default()
            }),
        }))
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Pod(_) => Kind::Pod,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::ClusterNetworkPolicy(_) => Kind::ClusterNetworkPolicy,
            Object::Node(_) => Kind::Node,
            Object::Unenforced(_) => Kind::Unenforced,
        }
    }

    /// The object's key. An unenforced object's name is
    /// `kind.group/name`, so that objects of different kinds never share
    /// a key.
    pub fn key(&self) -> ObjectKey {
        let key = |kind, namespace: &Option<String>, name: &Option<String>| ObjectKey {
            kind,
            namespace: namespace.clone().unwrap_or_default(),
            name: name.clone().unwrap_or_default(),
        };
        match self {
            Object::Namespace(o) => key(Kind::Namespace, &None, &o.metadata.name),
            Object::Pod(o) => key(Kind::Pod, &o.namespace, &o.name),
            Object::NetworkPolicy(o) => {
                key(Kind::NetworkPolicy, &o.metadata.namespace, &o.metadata.name)
            }
            Object::ClusterNetworkPolicy(o) => {
                key(Kind::ClusterNetworkPolicy, &None, &o.metadata.name)
            }
            Object::Node(o) => key(Kind::Node, &None, &o.metadata.name),
            Object::Unenforced(u) => ObjectKey {
                kind: Kind::Unenforced,
                namespace: u.namespace.clone(),
                name: format!("{}/{}", u.kind_group(), u.name),
            },
        }
    }
}

/// A change to the set of objects.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Created or updated.
    Upsert(Object),
    /// Deleted.
    Delete(ObjectKey),
    /// Every object of `kind` is now exactly `objects` (a relist): objects
    /// of that kind not listed are deleted.
    Replace {
        /// The kind.
        kind: Kind,
        /// All its objects.
        objects: Vec<Object>,
    },
}

/// A problem a source wants the operator to see (and `palisade sync` to
/// report): the previous content of the faulty input stays in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceProblem {
    /// The source cannot follow changes (it may not watch a resource):
    /// what is enforced may be out of date, so the agent is not ready.
    pub stale: bool,
    /// Where (file, document, object).
    pub origin: String,
    /// What.
    pub message: String,
}

impl fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// What a source sends the agent core.
#[derive(Debug, Default)]
pub struct SourceUpdate {
    /// Changes, in order.
    pub changes: Vec<Change>,
    /// After these changes the source reflects its input completely (the
    /// first one of these allows the first compile).
    pub synced: bool,
    /// Answers the rescan request with this token (see [`SourceHandle`]).
    pub token: Option<u64>,
    /// The source's current problems (replaces the previous list), if
    /// they were re-evaluated.
    pub problems: Option<Vec<SourceProblem>>,
}

/// The agent core's side of a running source: updates arrive on
/// `updates`; `rescan` asks the source to re-read its input now and answer
/// with a [`SourceUpdate`] carrying the token.
pub struct SourceHandle {
    /// Updates from the source.
    pub updates: mpsc::Receiver<SourceUpdate>,
    /// Rescan requests to the source.
    pub rescan: mpsc::UnboundedSender<u64>,
}
