//! Label sets. Every value comes from an enum (or names a namespace/pod),
//! so a series' cardinality is bounded by the code, never by traffic.

use palisade_common::{DropReason, ForwardReason, direction};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use std::fmt::Write as _;

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),* }
        impl $name {
            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl EncodeLabelValue for $name {
            fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                e.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// Traffic direction of the local pod.
    Direction { /// Into the pod.
        Ingress => "ingress", /// Out of the pod.
        Egress => "egress" }
);

impl Direction {
    /// From `palisade_common::direction`.
    pub const fn from_u8(d: u8) -> Self {
        if d == direction::INGRESS {
            Direction::Ingress
        } else {
            Direction::Egress
        }
    }
}

label_enum!(
    /// Drop or would-drop.
    Verdict { /// Dropped.
        Dropped => "dropped", /// Would have been dropped; passed (audit).
        Audit => "audit" }
);

label_enum!(
    /// Endpoint state.
    EndpointState { /// Entry and programs in place, policy compiled.
        Enforced => "enforced", /// CNI-announced, policy unknown yet.
        Pending => "pending", /// No host interface found yet.
        NoInterface => "no-interface", /// Anything else.
        Other => "other" }
);

label_enum!(
    /// Identity kind.
    IdentityKindLabel { /// Pod identities.
        Pod => "pod", /// CIDR regions.
        Cidr => "cidr" }
);

label_enum!(
    /// Policy mode.
    PolicyMode { /// Enforced.
        Enforce => "enforce", /// Audited (`policy.palisade.dev/mode: audit`).
        Audit => "audit" }
);

label_enum!(
    /// A ClusterNetworkPolicy tier.
    TierLabel { /// `tier: Admin`.
        Admin => "admin", /// `tier: Baseline`.
        Baseline => "baseline" }
);

label_enum!(
    /// What kind of source problem.
    SourceProblemKind { /// A file that does not parse.
        File => "file", /// A Namespace rejected.
        Namespace => "namespace", /// A Pod rejected.
        Pod => "pod", /// A NetworkPolicy rejected.
        NetworkPolicy => "networkpolicy", /// A ClusterNetworkPolicy rejected.
        ClusterNetworkPolicy => "clusternetworkpolicy", /// A Node rejected.
        Node => "node" }
);

label_enum!(
    /// BPF maps.
    MapLabel {
        /// ENDPOINTS.
        Endpoints => "ENDPOINTS", /// POLICY.
        Policy => "POLICY", /// PORTSETS.
        Portsets => "PORTSETS", /// TIERSETS.
        Tiersets => "TIERSETS", /// IPCACHE_EXACT4.
        IpcacheExact4 => "IPCACHE_EXACT4", /// IPCACHE_EXACT6.
        IpcacheExact6 => "IPCACHE_EXACT6", /// IPCACHE_V4.
        IpcacheV4 => "IPCACHE_V4", /// IPCACHE_V6.
        IpcacheV6 => "IPCACHE_V6", /// SOURCES_V4.
        SourcesV4 => "SOURCES_V4", /// SOURCES_V6.
        SourcesV6 => "SOURCES_V6", /// CT_V4.
        CtV4 => "CT_V4", /// CT_V6.
        CtV6 => "CT_V6", /// FRAGS.
        Frags => "FRAGS", /// EP_DROPS.
        EpDrops => "EP_DROPS" }
);

impl MapLabel {
    /// Every map with a capacity worth watching.
    pub const ALL: [MapLabel; 13] = [
        MapLabel::Endpoints,
        MapLabel::Policy,
        MapLabel::Portsets,
        MapLabel::IpcacheExact4,
        MapLabel::IpcacheExact6,
        MapLabel::IpcacheV4,
        MapLabel::IpcacheV6,
        MapLabel::SourcesV4,
        MapLabel::SourcesV6,
        MapLabel::CtV4,
        MapLabel::CtV6,
        MapLabel::Frags,
        MapLabel::EpDrops,
    ];
}

label_enum!(
    /// What happened to a datapath event.
    EventOutcome { /// Written to the ring.
        Emitted => "emitted", /// Suppressed by the rate limit.
        RateLimited => "rate_limited", /// Lost: the ring was full.
        RingFull => "ring_full" }
);

/// A drop reason as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct DropReasonLabel(pub DropReason);
impl EncodeLabelValue for DropReasonLabel {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        e.write_str(self.0.as_str())
    }
}

/// A forward reason as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ForwardReasonLabel(pub ForwardReason);
impl EncodeLabelValue for ForwardReasonLabel {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        e.write_str(self.0.as_str())
    }
}

/// `{direction, reason}` of drops and audits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// Direction.
    pub direction: Direction,
    /// Reason.
    pub reason: DropReasonLabel,
}

/// `{direction, reason}` of forwarded packets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// Direction.
    pub direction: Direction,
    /// Reason.
    pub reason: ForwardReasonLabel,
}

/// Drops of a namespace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct NamespaceDropLabels {
    /// Namespace of the local pod.
    pub namespace: String,
    /// Direction.
    pub direction: Direction,
    /// Reason (`DropReason::as_str`).
    pub reason: &'static str,
    /// Dropped or audit.
    pub verdict: Verdict,
}

/// Drops of a pod (opt-in).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PodDropLabels {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Direction.
    pub direction: Direction,
    /// Reason.
    pub reason: &'static str,
    /// Dropped or audit.
    pub verdict: Verdict,
}

/// `{outcome}` of events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// What happened.
    pub outcome: EventOutcome,
}

/// `{map}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabels {
    /// The map.
    pub map: MapLabel,
}

/// `{state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointStateLabels {
    /// State.
    pub state: EndpointState,
}

/// `{kind}` of identities.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabels {
    /// Kind.
    pub kind: IdentityKindLabel,
}

/// `{mode}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// Mode.
    pub mode: PolicyMode,
}

/// `{kind}` of source problems.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceProblemLabels {
    /// Kind.
    pub kind: SourceProblemKind,
}

/// `{tier}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    /// The tier.
    pub tier: TierLabel,
}

/// `{kind, api_version}` of unenforced policy objects.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnenforcedLabels {
    /// `kind`.
    pub kind: String,
    /// `apiVersion`.
    pub api_version: String,
}

/// `{version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// `CARGO_PKG_VERSION`.
    pub version: &'static str,
}

label_enum!(
    /// A kind the Kubernetes source watches.
    SourceKind { /// `v1/Namespace`.
        Namespace => "Namespace", /// `v1/Pod`.
        Pod => "Pod", /// `networking.k8s.io/v1/NetworkPolicy`.
        NetworkPolicy => "NetworkPolicy", /// `policy.networking.k8s.io/v1alpha2/ClusterNetworkPolicy`.
        ClusterNetworkPolicy => "ClusterNetworkPolicy", /// `v1/Node`.
        Node => "Node", /// Policy objects of kinds not enforced.
        Unenforced => "unenforced" }
);

/// `{kind}` of the source's watcher metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceKindLabels {
    /// The watched kind.
    pub kind: SourceKind,
}
