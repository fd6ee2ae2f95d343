//! Why a packet was dropped (or would have been, in audit mode), and why one
//! was forwarded. Values are stable forever: monitors and dashboards key on
//! them; a retired value stays reserved and is never reused.

/// Why a packet was dropped. `#[repr(u8)]`; value `0` is never a drop.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No policy entry allows the flow and the pod is isolated.
    PolicyDenied = 1,
    /// A header ends before the packet does (or the packet is too short to
    /// hold the header its previous header announces).
    Truncated = 2,
    /// A header field is invalid (IP version, IHL < 5, bad lengths).
    Malformed = 3,
    /// A non-first IP fragment with no state from an allowed first fragment.
    FragmentNoState = 4,
    /// Not IPv4, IPv6 or ARP, to or from an isolated pod.
    UnsupportedL3 = 5,
    /// The interface carries Palisade's program but no endpoint entry
    /// (fail closed).
    UnknownEndpoint = 6,
    /// An established connection that a policy change no longer allows
    /// (only with connection revalidation enabled).
    PolicyRevoked = 7,
    /// More IPv6 extension headers than the datapath walks.
    ExtensionHeaderLimit = 8,
    /// The endpoint's policy is not computed yet and the agent runs with
    /// `--default-deny-until-synced`.
    PolicyPending = 9,
    /// The datapath could not reach its own per-CPU scratch memory, which
    /// cannot happen (a fixed index of a fixed-size array); dropping is the
    /// fail-closed answer to a packet that was not judged.
    Internal = 10,
    /// An IP packet from a pod whose source address is not one of the
    /// pod's own (nor inside a prefix its namespace may send from):
    /// spoofed, or sent from an address the agent does not know the pod
    /// has (see `ebpf/src/source.rs`).
    InvalidSource = 11,
    /// A ClusterNetworkPolicy rule of the Admin tier denies the flow (the
    /// event's `rule_code` names the rule).
    AdminDenied = 12,
    /// A ClusterNetworkPolicy rule of the Baseline tier denies the flow
    /// (the pod is isolated by no NetworkPolicy in that direction).
    BaselineDenied = 13,
}

/// Number of slots reserved per direction for reasons (array dimension).
pub const REASON_SLOTS: usize = 16;

impl DropReason {
    /// Every reason, in value order.
    pub const ALL: [DropReason; 13] = [
        DropReason::PolicyDenied,
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::FragmentNoState,
        DropReason::UnsupportedL3,
        DropReason::UnknownEndpoint,
        DropReason::PolicyRevoked,
        DropReason::ExtensionHeaderLimit,
        DropReason::PolicyPending,
        DropReason::Internal,
        DropReason::InvalidSource,
        DropReason::AdminDenied,
        DropReason::BaselineDenied,
    ];

    /// Stable, lowercase, dash-separated name used in `monitor` output and
    /// as the `reason` metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::PolicyDenied => "policy-denied",
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::FragmentNoState => "fragment-no-state",
            DropReason::UnsupportedL3 => "unsupported-l3",
            DropReason::UnknownEndpoint => "unknown-endpoint",
            DropReason::PolicyRevoked => "policy-revoked",
            DropReason::ExtensionHeaderLimit => "ipv6-extension-header-limit",
            DropReason::PolicyPending => "policy-pending",
            DropReason::Internal => "internal",
            DropReason::InvalidSource => "invalid-source",
            DropReason::AdminDenied => "admin-denied",
            DropReason::BaselineDenied => "baseline-denied",
        }
    }

    /// The reason with this wire value, if any.
    pub const fn from_u8(v: u8) -> Option<DropReason> {
        match v {
            1 => Some(DropReason::PolicyDenied),
            2 => Some(DropReason::Truncated),
            3 => Some(DropReason::Malformed),
            4 => Some(DropReason::FragmentNoState),
            5 => Some(DropReason::UnsupportedL3),
            6 => Some(DropReason::UnknownEndpoint),
            7 => Some(DropReason::PolicyRevoked),
            8 => Some(DropReason::ExtensionHeaderLimit),
            9 => Some(DropReason::PolicyPending),
            10 => Some(DropReason::Internal),
            11 => Some(DropReason::InvalidSource),
            12 => Some(DropReason::AdminDenied),
            13 => Some(DropReason::BaselineDenied),
            _ => None,
        }
    }
}

/// Why a packet was forwarded. Values are stable.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardReason {
    /// Matched a connection-tracking entry (either direction) or is an ICMP
    /// error related to one.
    Established = 0,
    /// A new flow allowed by a policy entry.
    PolicyAllowed = 1,
    /// A new flow to or from a pod not isolated in that direction.
    NotIsolated = 2,
    /// ARP, IPv6 neighbour discovery, or non-IP to a non-isolated pod.
    AlwaysAllowed = 3,
    /// From this node to a local pod (kubelet probes) while host traffic is
    /// exempt.
    Host = 4,
    /// A later fragment of an allowed first fragment.
    Fragment = 5,
    /// A would-drop let through because the endpoint is in audit mode.
    Audited = 6,
}

impl ForwardReason {
    /// Every reason, in value order.
    pub const ALL: [ForwardReason; 7] = [
        ForwardReason::Established,
        ForwardReason::PolicyAllowed,
        ForwardReason::NotIsolated,
        ForwardReason::AlwaysAllowed,
        ForwardReason::Host,
        ForwardReason::Fragment,
        ForwardReason::Audited,
    ];

    /// Stable label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ForwardReason::Established => "established",
            ForwardReason::PolicyAllowed => "policy-allowed",
            ForwardReason::NotIsolated => "not-isolated",
            ForwardReason::AlwaysAllowed => "always-allowed",
            ForwardReason::Host => "host",
            ForwardReason::Fragment => "fragment",
            ForwardReason::Audited => "audited",
        }
    }
}

/// What a [`crate::Counter`] slot in `METRICS` counts.
pub mod verdict {
    /// Forwarded; the slot's reason is a [`super::ForwardReason`].
    pub const FORWARDED: u8 = 0;
    /// Dropped; the slot's reason is a [`super::DropReason`].
    pub const DROPPED: u8 = 1;
    /// Would have been dropped (audit); reason is a [`super::DropReason`].
    pub const AUDIT: u8 = 2;
    /// Number of verdict kinds (array dimension).
    pub const COUNT: usize = 3;
}

/// Index into `METRICS` for a (direction, verdict, reason) triple.
pub const fn metrics_index(direction: u8, verdict: u8, reason: u8) -> u32 {
    ((direction as u32 * verdict::COUNT as u32 + verdict as u32) * REASON_SLOTS as u32)
        + (reason as u32 & (REASON_SLOTS as u32 - 1))
}

/// Number of entries in `METRICS`.
pub const METRICS_ENTRIES: u32 = (crate::direction::COUNT * verdict::COUNT * REASON_SLOTS) as u32;
