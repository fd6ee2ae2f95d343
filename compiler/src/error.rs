//! Rejections: which object was refused, at which field path, and why.
//!
//! Messages read like the API server's: `NetworkPolicy prod/allow-db:
//! spec.ingress[0].ports[1].endPort: 80 must be >= port 8080`.

use std::fmt;

/// Kind of a Kubernetes object the compiler consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `v1/Namespace`.
    Namespace,
    /// `v1/Pod`.
    Pod,
    /// `networking.k8s.io/v1/NetworkPolicy`.
    NetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2/ClusterNetworkPolicy` (cluster-scoped).
    ClusterNetworkPolicy,
    /// `v1/Node` (cluster-scoped).
    Node,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Namespace => "Namespace",
            ObjectKind::Pod => "Pod",
            ObjectKind::NetworkPolicy => "NetworkPolicy",
            ObjectKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            ObjectKind::Node => "Node",
        })
    }
}

/// An object by kind, namespace and name: `Pod prod/web-0`,
/// `Namespace prod`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn new(kind: ObjectKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why an object was rejected. The last valid version of a rejected object
/// stays in force (a new invalid object is not applied at all).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {reason}")]
pub struct CompileError {
    /// The rejected object.
    pub object: ObjectRef,
    /// Field path in API notation, e.g. `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: String,
    /// What is wrong with the field (boxed: keeps `Result`s small).
    pub reason: Box<Reason>,
}

/// What is wrong with a field (mirrors `k8s.io/kubernetes` networking and
/// core validation).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// A required field is absent or empty.
    #[error("required value")]
    Required,
    /// A CIDR that does not parse.
    #[error("invalid CIDR {value:?}: {detail}")]
    InvalidCidr {
        /// The value as given.
        value: String,
        /// Parser detail.
        detail: String,
    },
    /// An `except` entry not strictly inside its `cidr`.
    #[error("{except:?} must be a strict subset of cidr {cidr:?}")]
    ExceptNotStrictSubset {
        /// The except value.
        except: String,
        /// The block's cidr.
        cidr: String,
    },
    /// A protocol other than TCP, UDP or SCTP.
    #[error("unsupported protocol {value:?}: must be one of TCP, UDP, SCTP")]
    UnsupportedProtocol {
        /// The value as given.
        value: String,
    },
    /// A port number outside `1..=65535`.
    #[error("{value} must be between 1 and 65535, inclusive")]
    PortOutOfRange {
        /// The value as given.
        value: i64,
    },
    /// `endPort` below `port`.
    #[error("{end} must be >= port {port}")]
    EndPortBelowPort {
        /// The endPort.
        end: i32,
        /// The port.
        port: i32,
    },
    /// `endPort` together with a named port.
    #[error("{end} may not be specified when port is non-numeric")]
    EndPortWithNamedPort {
        /// The endPort.
        end: i32,
    },
    /// `endPort` without `port`.
    #[error("{end} may not be specified when port is not specified")]
    EndPortWithoutPort {
        /// The endPort.
        end: i32,
    },
    /// A port name that is not an IANA service name.
    #[error("invalid port name {name:?}: {detail}")]
    InvalidPortName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        detail: &'static str,
    },
    /// A peer with neither podSelector, namespaceSelector nor ipBlock.
    #[error("must specify a peer")]
    EmptyPeer,
    /// A peer with ipBlock and a selector.
    #[error("may not specify both ipBlock and another peer")]
    IpBlockWithOtherPeer,
    /// A selector operator other than In, NotIn, Exists, DoesNotExist.
    #[error(
        "{op:?} is not a valid selector operator: must be one of In, NotIn, Exists, DoesNotExist"
    )]
    InvalidOperator {
        /// The operator as given.
        op: String,
    },
    /// In/NotIn without values.
    #[error("must be specified when operator is {op}")]
    ValuesRequired {
        /// The operator.
        op: String,
    },
    /// Exists/DoesNotExist with values.
    #[error("may not be specified when operator is {op}")]
    ValuesForbidden {
        /// The operator.
        op: String,
    },
    /// A label key that is not a qualified name.
    #[error("invalid label key {key:?}: {detail}")]
    InvalidLabelKey {
        /// The key as given.
        key: String,
        /// Which rule it breaks.
        detail: &'static str,
    },
    /// A label value that is not a valid label value.
    #[error("invalid label value {value:?}: {detail}")]
    InvalidLabelValue {
        /// The value as given.
        value: String,
        /// Which rule it breaks.
        detail: &'static str,
    },
    /// More than two policyTypes.
    #[error("may not specify more than two policyTypes (got {count})")]
    TooManyPolicyTypes {
        /// How many were given.
        count: usize,
    },
    /// A policyType other than Ingress or Egress.
    #[error("unsupported policy type {value:?}: must be one of Ingress, Egress")]
    UnsupportedPolicyType {
        /// The value as given.
        value: String,
    },
    /// An address that does not parse.
    #[error("invalid IP address {value:?}")]
    InvalidIp {
        /// The value as given.
        value: String,
    },
    /// A value outside an enumeration.
    #[error("unsupported value {value:?}: must be one of {allowed}")]
    UnsupportedValue {
        /// The value as given.
        value: String,
        /// The values allowed, comma-separated.
        allowed: &'static str,
    },
    /// A number outside its range.
    #[error("{value} must be between {min} and {max}, inclusive")]
    OutOfRange {
        /// The value as given.
        value: i64,
        /// The smallest allowed.
        min: i64,
        /// The largest allowed.
        max: i64,
    },
    /// A list with fewer items than required (absent counts as empty).
    #[error("must have at least {min} item(s)")]
    TooFewItems {
        /// The least number of items.
        min: usize,
    },
    /// A list with more items than allowed.
    #[error("must have at most {max} items (got {count})")]
    TooManyItems {
        /// How many were given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A string longer than allowed.
    #[error("must be no more than {max} characters (got {len})")]
    TooLong {
        /// Its length in characters.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A one-of struct without exactly one field set.
    #[error("must specify exactly one of {allowed} (got {})", if given.is_empty() { "none".to_string() } else { given.join(", ") })]
    ExactlyOneOf {
        /// The fields it may have.
        allowed: &'static str,
        /// The fields it has.
        given: Vec<String>,
    },
    /// A port range whose start is not below its end.
    #[error("start port {start} must be less than end port {end}")]
    RangeNotIncreasing {
        /// `start`.
        start: i32,
        /// `end`.
        end: i32,
    },
    /// The same value twice in a list that is a set.
    #[error("duplicate value {value:?}")]
    Duplicate {
        /// The value.
        value: String,
    },
    /// A named port in an egress rule towards peers without named ports.
    #[error(
        "networks/nodes/domainNames peers cannot be used with destinationNamedPort: they have no named ports"
    )]
    NamedPortWithoutPods,
    /// A field this version of Palisade does not enforce: the whole object
    /// is refused rather than enforced in part.
    #[error("{what} are not supported yet")]
    NotSupported {
        /// What, e.g. `nodes peers`.
        what: &'static str,
    },
    /// A namespace on a cluster-scoped object.
    #[error("not allowed: {kind} is cluster-scoped")]
    ClusterScoped {
        /// The object's kind.
        kind: ObjectKind,
    },
    /// No identity number is left (only with billions of distinct prefixes).
    #[error("identity space exhausted")]
    IdentitiesExhausted,
}

/// A [`Reason`] at a field path, before the object is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) reason: Reason,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, reason: Reason) -> Self {
        FieldError {
            field: field.into(),
            reason,
        }
    }

    pub(crate) fn on(self, object: ObjectRef) -> CompileError {
        CompileError {
            object,
            field: self.field,
            reason: Box::new(self.reason),
        }
    }
}
