//! Everything the Palisade eBPF programs and the agent must agree on: map names,
//! key and value layouts, reserved identities, drop reasons, the drop/audit event
//! record and the datapath configuration.
//!
//! Every type here is `#[repr(C)]` with explicit padding fields, so the byte
//! layout the kernel hashes or compares is fully defined (uninitialised padding
//! in a hash key would make equal keys miss). Sizes and alignments are checked
//! at compile time at the bottom of each module. With the `user` feature every
//! type implements [`aya::Pod`] so the agent can read and write the maps.
//!
//! # How a packet is judged
//!
//! ```text
//!  ENDPOINTS[ifindex] ──► which pod, its identity, isolation per direction
//!  parse ──► tuple (family, saddr, daddr, proto, sport, dport)
//!  egress: SOURCES_V4|V6[ifindex, saddr] (LPM) miss ──► invalid-source
//!  FLOW_CACHE[per CPU, tuple hash] live ──► established: pass
//!  CT_V4|V6[ordered tuple, ifindex, dir of lo→hi] hit
//!        ──► established (opener's way) or reply: pass
//!  IPCACHE_CACHE[per CPU, address hash] of this generation, else
//!  IPCACHE_EXACT / IPCACHE_V4|V6 (LPM) ──► peer {identity, cidr_identity}
//!  POLICY[{ep, identity, dir, proto}] for identity in
//!        [peer identity, peer cidr identity, ANY]   (at most 3 hash lookups)
//!        ──► port range or PORTSETS bitmap ──► allow: create CT entry
//!        ──► no match: drop, event on EVENTS, counters in METRICS
//! ```
#![no_std]

pub mod config;
pub mod event;
pub mod identity;
pub mod maps;
pub mod reason;

pub use config::*;
pub use event::*;
pub use identity::*;
pub use maps::*;
pub use reason::*;

/// Traffic direction, always from the local pod's point of view.
///
/// The program on the host side of the pod's veth sees the pod's *egress* on
/// its TC ingress hook and the pod's *ingress* on its TC egress hook.
pub mod direction {
    /// Traffic entering the pod (judged by the pod's ingress policy).
    pub const INGRESS: u8 = 0;
    /// Traffic leaving the pod (judged by the pod's egress policy).
    pub const EGRESS: u8 = 1;
    /// Number of directions (array dimension).
    pub const COUNT: usize = 2;

    /// `"ingress"` or `"egress"`, for logs, metrics labels and `monitor`.
    pub const fn as_str(dir: u8) -> &'static str {
        if dir == INGRESS { "ingress" } else { "egress" }
    }
}

/// Address family tags stored in keys and events.
pub mod family {
    /// IPv4: the address occupies the first 4 bytes of a `[u8; 16]`.
    pub const V4: u8 = 4;
    /// IPv6.
    pub const V6: u8 = 6;
}

/// IP protocol numbers the datapath treats specially.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// Policy-key protocol class for every protocol a NetworkPolicy port
    /// cannot name (ICMP, ICMPv6, GRE, ESP, ...). Only rules without `ports`
    /// (all protocols) produce entries with this class; the port is ignored.
    pub const OTHER: u8 = 255;

    /// The protocol class used in [`crate::PolicyKey::proto`] for an IP
    /// protocol number.
    pub const fn policy_class(ip_proto: u8) -> u8 {
        match ip_proto {
            TCP | UDP | SCTP => ip_proto,
            _ => OTHER,
        }
    }

    /// True for the protocols whose header starts with 16-bit source and
    /// destination ports.
    pub const fn has_ports(ip_proto: u8) -> bool {
        matches!(ip_proto, TCP | UDP | SCTP)
    }

    /// How people write protocol `.0` (an IP protocol number or a policy
    /// class): `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6`, `other` for
    /// [`OTHER`], else `proto-N`. The one spelling every command, log and
    /// event uses.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Name(pub u8);

    impl core::fmt::Display for Name {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.0 {
                TCP => f.write_str("TCP"),
                UDP => f.write_str("UDP"),
                SCTP => f.write_str("SCTP"),
                ICMP => f.write_str("ICMP"),
                ICMPV6 => f.write_str("ICMPv6"),
                OTHER => f.write_str("other"),
                n => write!(f, "proto-{n}"),
            }
        }
    }
}

/// Map names as they appear in the object file and under the pin directory.
/// Names are at most 15 bytes (the kernel's limit); a `_Vn` suffix marks a
/// layout change, so an upgraded agent never reinterprets an old map.
pub mod map_names {
    /// `HashMap<u32 ifindex, EndpointInfo>`.
    pub const ENDPOINTS: &str = "ENDPOINTS";
    /// `HashMap<PolicyKey, PolicyValue>` (`_V2`: values with tier codes;
    /// version 1 held NetworkPolicy ports only).
    pub const POLICY: &str = "POLICY_V2";
    /// `HashMap<u32, PortBitmap>` (no pre-allocation).
    pub const PORTSETS: &str = "PORTSETS";
    /// `HashMap<u32, TierTable>` (no pre-allocation).
    pub const TIERSETS: &str = "TIERSETS";
    /// `HashMap<[u8; 4], IpcacheValue>`: single IPv4 addresses (pods, nodes).
    pub const IPCACHE_EXACT4: &str = "IPCACHE_EXACT4";
    /// `HashMap<[u8; 16], IpcacheValue>`: single IPv6 addresses.
    pub const IPCACHE_EXACT6: &str = "IPCACHE_EXACT6";
    /// `LpmTrie<[u8; 4], IpcacheValue>`: IPv4 CIDR regions.
    pub const IPCACHE_V4: &str = "IPCACHE_V4";
    /// `LpmTrie<[u8; 16], IpcacheValue>`: IPv6 CIDR regions.
    pub const IPCACHE_V6: &str = "IPCACHE_V6";
    /// `LpmTrie<SourceKey4, u8>`: the IPv4 addresses and prefixes each
    /// local pod may send from, by host interface.
    pub const SOURCES_V4: &str = "SOURCES_V4";
    /// `LpmTrie<SourceKey6, u8>`: the same for IPv6.
    pub const SOURCES_V6: &str = "SOURCES_V6";
    /// `LruHashMap<CtKey4, CtValue>`: IPv4 connection tracking (`_V2`: keys
    /// with ordered ends; version 1 keyed by the opener's tuple).
    pub const CT_V4: &str = "CT_V4_V2";
    /// `LruHashMap<CtKey6, CtValue>`: IPv6 connection tracking.
    pub const CT_V6: &str = "CT_V6_V2";
    /// `PerCpuArray<FlowCacheEntry>`: the established-flow cache (never
    /// pinned: a new program load starts with an empty cache).
    pub const FLOW_CACHE: &str = "FLOW_CACHE";
    /// `PerCpuArray<IpcacheCacheEntry>`: resolved addresses (never pinned:
    /// a new program load starts with an empty cache).
    pub const IPCACHE_CACHE: &str = "IPCACHE_CACHE";
    /// `LruHashMap<FragKey, FragValue>`: state of allowed first fragments.
    pub const FRAGS: &str = "FRAGS";
    /// `Array<Config>` with one entry.
    pub const CONFIG: &str = "CONFIG";
    /// `PerCpuArray<Counter>`, indexed by [`crate::metrics_index`].
    pub const METRICS: &str = "METRICS";
    /// `LruPerCpuHashMap<EndpointDropKey, u64>`: drops per endpoint.
    pub const EP_DROPS: &str = "EP_DROPS";
    /// `PerCpuArray<EventStats>` with one entry.
    pub const EVENT_STATS: &str = "EVENT_STATS";
    /// `PerCpuArray<RateLimitState>` with one entry.
    pub const EVENT_RATE: &str = "EVENT_RATE";
    /// `RingBuf` of [`crate::DropEvent`].
    pub const EVENTS: &str = "EVENTS";
    /// `PerCpuArray<EventStats>` with one entry: datapath log records
    /// written, rate limited, or not written for want of room (never
    /// pinned: it counts for the load whose records the agent reads).
    pub const LOG_STATS: &str = "LOG_STATS";
    /// `PerCpuArray<RateLimitState>` with one entry: the datapath log's
    /// token bucket (never pinned).
    pub const LOG_RATE: &str = "LOG_RATE";
    /// `aya-log`'s ring of datapath log records (never pinned).
    pub const AYA_LOGS: &str = "AYA_LOGS";
}

/// Program names in the object file.
pub mod program_names {
    /// Attached to the TC ingress hook of the host-side veth: the pod's egress.
    pub const FROM_POD: &str = "palisade_from_pod";
    /// Attached to the TC egress hook of the host-side veth: the pod's ingress.
    pub const TO_POD: &str = "palisade_to_pod";
    /// A program that passes every packet: the baseline in benchmarks.
    pub const NOOP: &str = "palisade_noop";
    /// Every program.
    pub const ALL: [&str; 3] = [FROM_POD, TO_POD, NOOP];
}

#[cfg(feature = "user")]
mod pod_impls {
    //! `aya::Pod` for every map key and value: all are `#[repr(C)]`, `Copy`
    //! and have no implicit padding (checked by the size assertions).
    use super::*;

    macro_rules! pod {
        ($($t:ty),* $(,)?) => { $(unsafe impl aya::Pod for $t {})* };
    }
    pod!(
        EndpointInfo,
        PolicyKey,
        PolicyValue,
        PortBitmap,
        TierCodes,
        TierTable,
        IpcacheValue,
        SourceKey4,
        SourceKey6,
        CtKey4,
        CtKey6,
        CtValue,
        FlowCacheEntry,
        IpcacheCacheEntry,
        FragKey,
        FragValue,
        Counter,
        EndpointDropKey,
        Config,
        DropEvent,
        EventStats,
        RateLimitState,
    );
}
