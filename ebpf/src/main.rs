//! Palisade's TC programs and the maps they share. Only the `#[classifier]`
//! entry points and the `#[map]` statics live here; the pipeline is in
//! [`datapath`]. Layouts and names come from `palisade-common`.
#![no_std]
#![no_main]
// Map calls keep taking keys and values by reference. Passing them by value,
// as this lint suggests, is the same program to a reader but not to LLVM:
// the changed code generation took `palisade_from_pod` past the verifier's
// limit of a million processed instructions (see
// `tests/tests/verifier_budget.rs`).
#![allow(clippy::needless_borrows_for_generic_args)]

mod barrier;
mod conntrack;
mod datapath;
mod decision;
mod events;
mod fastpath;
mod flowcache;
mod frags;
mod ipcache;
mod packet;
mod parse;
mod policy;
mod rare;
mod source;
mod wire;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, TC_ACT_OK},
    macros::{classifier, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::TcContext,
};
use palisade_common::{
    Config, Counter, CtKey4, CtKey6, CtValue, EndpointDropKey, EndpointInfo, EventStats,
    FlowCacheEntry, FragKey, FragValue, IpcacheCacheEntry, IpcacheValue, METRICS_ENTRIES,
    PolicyKey, PolicyValue, PortBitmap, RateLimitState, SourceKey4, SourceKey6, TierTable,
    capacity, direction,
};

/// Local endpoints by host-side interface index.
#[map(name = "ENDPOINTS")]
static ENDPOINTS: HashMap<u32, EndpointInfo> = HashMap::with_max_entries(capacity::ENDPOINTS, 0);

/// (endpoint, peer identity, direction, protocol) → what policies say of
/// each port.
#[map(name = "POLICY_V2")]
static POLICY: HashMap<PolicyKey, PolicyValue> = HashMap::with_max_entries(capacity::POLICY, 0);

/// Multi-range port sets referenced by `PolicyValue::portset`.
#[map(name = "PORTSETS")]
static PORTSETS: HashMap<u32, PortBitmap> =
    HashMap::with_max_entries(capacity::PORTSETS, BPF_F_NO_PREALLOC);

/// ClusterNetworkPolicy code tables referenced by `PolicyValue::tierset`.
#[map(name = "TIERSETS")]
static TIERSETS: HashMap<u32, TierTable> =
    HashMap::with_max_entries(capacity::TIERSETS, BPF_F_NO_PREALLOC);

/// Single IPv4 addresses → identities.
#[map(name = "IPCACHE_EXACT4")]
static IPCACHE_EXACT4: HashMap<[u8; 4], IpcacheValue> =
    HashMap::with_max_entries(capacity::IPCACHE_EXACT, 0);

/// Single IPv6 addresses → identities.
#[map(name = "IPCACHE_EXACT6")]
static IPCACHE_EXACT6: HashMap<[u8; 16], IpcacheValue> =
    HashMap::with_max_entries(capacity::IPCACHE_EXACT, 0);

/// IPv4 CIDR regions.
#[map(name = "IPCACHE_V4")]
static IPCACHE_V4: LpmTrie<[u8; 4], IpcacheValue> =
    LpmTrie::with_max_entries(capacity::IPCACHE_LPM, BPF_F_NO_PREALLOC);

/// IPv6 CIDR regions.
#[map(name = "IPCACHE_V6")]
static IPCACHE_V6: LpmTrie<[u8; 16], IpcacheValue> =
    LpmTrie::with_max_entries(capacity::IPCACHE_LPM, BPF_F_NO_PREALLOC);

/// (interface, IPv4 address or prefix) each local pod may send from.
#[map(name = "SOURCES_V4")]
static SOURCES_V4: LpmTrie<SourceKey4, u8> =
    LpmTrie::with_max_entries(capacity::SOURCES, BPF_F_NO_PREALLOC);

/// (interface, IPv6 address or prefix) each local pod may send from.
#[map(name = "SOURCES_V6")]
static SOURCES_V6: LpmTrie<SourceKey6, u8> =
    LpmTrie::with_max_entries(capacity::SOURCES, BPF_F_NO_PREALLOC);

/// IPv4 connection tracking.
#[map(name = "CT_V4_V2")]
static CT_V4: LruHashMap<CtKey4, CtValue> = LruHashMap::with_max_entries(capacity::CT, 0);

/// IPv6 connection tracking.
#[map(name = "CT_V6_V2")]
static CT_V6: LruHashMap<CtKey6, CtValue> = LruHashMap::with_max_entries(capacity::CT, 0);

/// Per-CPU cache of established flows (see `flowcache`): 2 families x 2
/// directions x `FLOW_CACHE_SLOTS`.
#[map(name = "FLOW_CACHE")]
static FLOW_CACHE: PerCpuArray<FlowCacheEntry> =
    PerCpuArray::with_max_entries(4 * capacity::FLOW_CACHE_SLOTS, 0);

/// Per-CPU cache of resolved addresses (see `ipcache`; never pinned).
#[map(name = "IPCACHE_CACHE")]
static IPCACHE_CACHE: PerCpuArray<IpcacheCacheEntry> =
    PerCpuArray::with_max_entries(capacity::IPCACHE_CACHE_SLOTS, 0);
/// Allowed first fragments.
#[map(name = "FRAGS")]
static FRAGS: LruHashMap<FragKey, FragValue> = LruHashMap::with_max_entries(capacity::FRAGS, 0);

/// Runtime configuration (one entry).
#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Packet/byte counters by direction, verdict and reason.
#[map(name = "METRICS")]
static METRICS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(METRICS_ENTRIES, 0);

/// Drops per endpoint, direction and reason.
#[map(name = "EP_DROPS")]
static EP_DROPS: LruPerCpuHashMap<EndpointDropKey, u64> =
    LruPerCpuHashMap::with_max_entries(capacity::EP_DROPS, 0);

/// What happened to drop events (emitted, rate limited, ring full).
#[map(name = "EVENT_STATS")]
static EVENT_STATS: PerCpuArray<EventStats> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU token bucket of the event rate limiter.
#[map(name = "EVENT_RATE")]
static EVENT_RATE: PerCpuArray<RateLimitState> = PerCpuArray::with_max_entries(1, 0);

/// What happened to datapath log records (written, rate limited, no room
/// in the ring): see `rare`.
#[map(name = "LOG_STATS")]
static LOG_STATS: PerCpuArray<EventStats> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU token bucket of datapath log records (private; never pinned).
#[map(name = "LOG_RATE")]
static LOG_RATE: PerCpuArray<RateLimitState> = PerCpuArray::with_max_entries(1, 0);

/// One packet view per CPU: see `barrier` (private; never pinned).
#[map(name = "PACKET_SCRATCH")]
static PACKET_SCRATCH: PerCpuArray<barrier::Parsed> = PerCpuArray::with_max_entries(1, 0);

/// One number per CPU: see `barrier` (private; never pinned).
#[map(name = "OPAQUE_SCRATCH")]
static OPAQUE_SCRATCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Drop and audit events for `palisade monitor`.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(capacity::EVENTS_BYTES, 0);

/// Host veth TC ingress: packets leaving the pod (its egress policy).
#[classifier]
pub fn palisade_from_pod(ctx: TcContext) -> i32 {
    datapath::handle(&ctx, direction::EGRESS)
}

/// Host veth TC egress: packets entering the pod (its ingress policy).
#[classifier]
pub fn palisade_to_pod(ctx: TcContext) -> i32 {
    datapath::handle(&ctx, direction::INGRESS)
}

/// Passes everything: the baseline benchmarks compare against.
#[classifier]
pub fn palisade_noop(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
