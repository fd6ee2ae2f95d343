//! The record the datapath writes to the `EVENTS` ring buffer for each
//! reported drop or audit (would-drop), and the per-CPU state of the event
//! rate limiter.

use core::mem::{align_of, size_of};

/// Version of [`DropEvent`]'s layout; readers skip records of other versions.
pub const DROP_EVENT_VERSION: u8 = 2;

/// What a [`DropEvent`] reports.
pub mod event_kind {
    /// The packet was dropped.
    pub const DROP: u8 = 1;
    /// The packet would have been dropped and was passed (audit).
    pub const AUDIT: u8 = 2;
}

/// One drop or would-drop. 80 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// Host-side interface the packet crossed.
    pub ifindex: u32,
    /// Endpoint id (0 if the interface has no endpoint entry).
    pub ep_id: u32,
    /// Identity of the packet's source (the pod's own for egress).
    pub src_identity: u32,
    /// Identity of the packet's destination (the pod's own for ingress).
    pub dst_identity: u32,
    /// Source address (IPv4 in the first word).
    pub saddr: crate::Addr,
    /// Destination address.
    pub daddr: crate::Addr,
    /// Source port, host order (0 when the protocol has none).
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// `skb->len`.
    pub pkt_len: u32,
    /// [`DROP_EVENT_VERSION`].
    pub version: u8,
    /// [`event_kind`].
    pub kind: u8,
    /// [`crate::DropReason`] value.
    pub reason: u8,
    /// [`crate::direction`].
    pub direction: u8,
    /// IP protocol number (0 if not parsed).
    pub proto: u8,
    /// [`crate::family`] (0 if not IP).
    pub family: u8,
    /// TCP flags byte, ICMP type, or the type of SCTP's first chunk, when
    /// present.
    pub l4_flags: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
    /// For `admin-denied` and `baseline-denied`: the deciding rule's
    /// `tier_code` (the agent names the rule); 0 otherwise.
    pub rule_code: u32,
    /// Explicit padding; always zero.
    pub _pad2: u32,
}

/// `EVENT_STATS[0]` (per CPU): what happened to events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events written to the ring.
    pub emitted: u64,
    /// Events suppressed by the per-CPU rate limit.
    pub rate_limited: u64,
    /// Events lost because the ring was full.
    pub ring_full: u64,
}

/// `EVENT_RATE[0]` (per CPU): token bucket state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitState {
    /// Time of the last refill (`bpf_ktime_get_coarse_ns`).
    pub last_ns: u64,
    /// Tokens available, in millionths of an event.
    pub tokens_micro: u64,
}

const _: () = {
    assert!(size_of::<DropEvent>() == 80 && align_of::<DropEvent>() == 8);
    assert!(size_of::<EventStats>() == 24);
    assert!(size_of::<RateLimitState>() == 16);
};
