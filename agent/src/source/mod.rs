//! Where the agent learns about Namespaces, Pods and NetworkPolicies: a
//! directory of manifests ([`manifests`]) or the Kubernetes API
//! ([`kube`]). Both feed the agent core the same [`SourceUpdate`]s.

pub mod kube;
pub mod manifests;
pub mod yaml;

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use tokio::sync::mpsc;

/// The kinds the compiler consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1/Namespace`.
    Namespace,
    /// `v1/Pod`.
    Pod,
    /// `networking.k8s.io/v1/NetworkPolicy`.
    NetworkPolicy,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
        })
    }
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

/// One object of a kind the compiler consumes.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Namespace.
    Namespace(Arc<Namespace>),
    /// A Pod.
    Pod(Arc<Pod>),
    /// A NetworkPolicy.
    NetworkPolicy(Arc<NetworkPolicy>),
}

impl Object {
    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        let (kind, meta) = match self {
            Object::Namespace(o) => (Kind::Namespace, &o.metadata),
            Object::Pod(o) => (Kind::Pod, &o.metadata),
            Object::NetworkPolicy(o) => (Kind::NetworkPolicy, &o.metadata),
        };
        ObjectKey {
            kind,
            namespace: if kind == Kind::Namespace {
                String::new()
            } else {
                meta.namespace.clone().unwrap_or_default()
            },
            name: meta.name.clone().unwrap_or_default(),
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
