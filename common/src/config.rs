//! The datapath's runtime configuration: the single entry of `CONFIG`.
//!
//! Every field's zero value means "the built-in default", so a freshly loaded
//! object behaves sensibly before the agent writes its configuration.

use core::mem::size_of;

/// `CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Bumped by the agent after every policy sync that changed the maps.
    /// With [`config_flags::CT_REVALIDATE`], connections judged under an
    /// older epoch are judged again on their next packet.
    pub policy_epoch: u32,
    /// [`config_flags`] bits.
    pub flags: u32,
    /// Drop/audit events per second per CPU (token bucket rate).
    /// 0 = [`defaults::EVENTS_PER_SEC`].
    pub events_per_sec: u32,
    /// Token bucket depth. 0 = [`defaults::EVENTS_BURST`].
    pub events_burst: u32,
    /// Seconds a TCP connection may stay half-open (SYN seen, no reply).
    pub tcp_syn_timeout_s: u32,
    /// Seconds an established TCP connection may stay idle.
    pub tcp_established_timeout_s: u32,
    /// Seconds a closing (FIN/RST seen) TCP connection is kept.
    pub tcp_close_timeout_s: u32,
    /// Seconds a UDP flow may stay idle.
    pub udp_timeout_s: u32,
    /// Seconds an SCTP association may stay idle.
    pub sctp_timeout_s: u32,
    /// Seconds any other flow (ICMP echo, ...) may stay idle.
    pub other_timeout_s: u32,
    /// Seconds the state of a fragmented datagram is kept.
    pub frag_timeout_s: u32,
    /// Bumped by whoever writes the ipcache maps, after the writes: the
    /// per-CPU `IPCACHE_CACHE` slots stamped with an older generation no
    /// longer answer (see `IpcacheCacheEntry`).
    pub ipcache_generation: u32,
}

/// Bits of [`Config::flags`].
pub mod config_flags {
    /// Revalidate established connections against the current policy after
    /// every policy change (off: established connections survive changes,
    /// as in Cilium and Calico, until they close or idle out).
    pub const CT_REVALIDATE: u32 = 1 << 0;
    /// Judge traffic from this node to local pods by policy too (off: node
    /// to pod traffic is allowed, so kubelet probes work under default deny).
    pub const ENFORCE_HOST: u32 = 1 << 1;
    /// Pass packets on an interface with Palisade's program but no endpoint
    /// entry (off: drop them, fail closed).
    pub const UNKNOWN_ENDPOINT_PASS: u32 = 1 << 2;
    /// Source verification on the pods' egress reports a packet from an
    /// address that is not the pod's (`invalid-source`) as an audit event
    /// and passes it. Neither this nor [`SOURCE_VERIFY_OFF`]: such packets
    /// are dropped (the default, so a zero configuration enforces).
    pub const SOURCE_VERIFY_AUDIT: u32 = 1 << 3;
    /// Source verification is skipped altogether (wins over
    /// [`SOURCE_VERIFY_AUDIT`]).
    pub const SOURCE_VERIFY_OFF: u32 = 1 << 4;
}

/// Built-in defaults used when a [`Config`] field is zero.
pub mod defaults {
    /// Events per second per CPU.
    pub const EVENTS_PER_SEC: u32 = 1000;
    /// Token bucket depth.
    pub const EVENTS_BURST: u32 = 200;
    /// Half-open TCP, seconds.
    pub const TCP_SYN_TIMEOUT_S: u32 = 60;
    /// Established TCP, seconds (6 hours, like Cilium).
    pub const TCP_ESTABLISHED_TIMEOUT_S: u32 = 21_600;
    /// Closing TCP, seconds.
    pub const TCP_CLOSE_TIMEOUT_S: u32 = 10;
    /// UDP, seconds.
    pub const UDP_TIMEOUT_S: u32 = 60;
    /// SCTP, seconds.
    pub const SCTP_TIMEOUT_S: u32 = 3600;
    /// Other protocols, seconds.
    pub const OTHER_TIMEOUT_S: u32 = 60;
    /// Fragment state, seconds (Linux's `ipfrag_time`).
    pub const FRAG_TIMEOUT_S: u32 = 30;
    /// Datapath log records (`--datapath-log`) per second per CPU.
    pub const DATAPATH_LOG_PER_SEC: u32 = 20;
    /// Datapath log token bucket depth.
    pub const DATAPATH_LOG_BURST: u32 = 50;
}

const _: () = assert!(size_of::<Config>() == 48);
