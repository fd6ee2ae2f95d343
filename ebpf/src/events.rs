//! Counting and reporting verdicts: per-CPU packet/byte counters for every
//! verdict, per-endpoint drop counters, and drop/audit records on the ring
//! buffer behind a per-CPU token bucket so a flood can neither fill the ring
//! nor burn the CPU (suppressed events are counted, never silently lost).

use aya_ebpf::helpers::{bpf_ktime_get_ns, generated::bpf_ktime_get_coarse_ns};
use palisade_common::{
    Config, DROP_EVENT_VERSION, DropEvent, EndpointDropKey, EndpointInfo, RateLimitState, defaults,
    direction, metrics_index,
};

use crate::{EP_DROPS, EVENT_RATE, EVENT_STATS, EVENTS, METRICS, packet::Packet};

const MICRO: u64 = 1_000_000;
/// Longest refill interval considered (keeps the arithmetic in range).
const MAX_REFILL_NS: u64 = 10_000_000_000;

/// Adds one packet of `len` bytes to the (direction, verdict, reason) slot.
#[inline(always)]
pub fn count(dir: u8, verdict: u8, reason: u8, len: u32) {
    if let Some(c) = METRICS.get_ptr_mut(metrics_index(dir, verdict, reason)) {
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len as u64;
        }
    }
}

/// Counts a drop (or would-drop) against its endpoint.
#[inline(always)]
pub fn count_endpoint(ep_id: u32, dir: u8, verdict: u8, reason: u8) {
    if ep_id == 0 {
        return;
    }
    let key = EndpointDropKey {
        ep_id,
        direction: dir,
        reason,
        verdict,
        _pad: 0,
    };
    match EP_DROPS.get_ptr_mut(&key) {
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = EP_DROPS.insert(&key, &1, 0);
        }
    }
}

/// Takes one token from a per-CPU bucket refilled at `rate` a second up
/// to `burst`; false when the limit is hit. The one token bucket of the
/// datapath: drop and audit events here, log records in `rare`.
#[inline(always)]
pub fn take_token(state: &mut RateLimitState, rate: u32, burst: u32, now: u64) -> bool {
    let cap = burst as u64 * MICRO;
    let mut elapsed = now.wrapping_sub(state.last_ns);
    if elapsed > MAX_REFILL_NS {
        elapsed = MAX_REFILL_NS;
    }
    // rate events/s = rate * 1e6 micro-events per 1e9 ns.
    let mut tokens = state.tokens_micro + elapsed * rate as u64 / 1000;
    if tokens > cap {
        tokens = cap;
    }
    state.last_ns = now;
    if tokens < MICRO {
        state.tokens_micro = tokens;
        return false;
    }
    state.tokens_micro = tokens - MICRO;
    true
}

/// Takes one token from this CPU's event bucket (`EVENT_RATE`, the rate
/// and burst `CONFIG` sets); false when the limit is hit.
#[inline(always)]
fn take_event_token(cfg: &Config, now: u64) -> bool {
    let Some(state) = EVENT_RATE.get_ptr_mut(0) else {
        return false;
    };
    let rate = if cfg.events_per_sec == 0 {
        defaults::EVENTS_PER_SEC
    } else {
        cfg.events_per_sec
    };
    let burst = if cfg.events_burst == 0 {
        defaults::EVENTS_BURST
    } else {
        cfg.events_burst
    };
    take_token(unsafe { &mut *state }, rate, burst, now)
}

/// Everything a drop or audit record says.
pub struct Report<'a> {
    /// `event_kind::DROP` or `event_kind::AUDIT`.
    pub kind: u8,
    /// `DropReason` value.
    pub reason: u8,
    /// Direction.
    pub dir: u8,
    /// Interface.
    pub ifindex: u32,
    /// Endpoint (zeroed when unknown).
    pub ep: &'a EndpointInfo,
    /// Parsed packet, if parsing got that far.
    pub pkt: Option<&'a Packet>,
    /// Peer identity (0 when not looked up).
    pub peer_identity: u32,
    /// `skb->len`.
    pub len: u32,
    /// `bpf_ktime_get_coarse_ns()` if the caller has it (0: read it here).
    pub now: u64,
    /// The tier rule that decided (`DropEvent::rule_code`).
    pub rule_code: u32,
}

/// Writes a record to the ring, subject to the rate limit.
#[inline(always)]
pub fn report(cfg: &Config, r: &Report) {
    // The limiter runs on the coarse clock the pipeline already read (a
    // flood is almost all suppressed events: no second clock read for
    // those); only an emitted record gets a precise timestamp.
    let coarse = if r.now != 0 {
        r.now
    } else {
        unsafe { bpf_ktime_get_coarse_ns() }
    };
    let Some(stats) = EVENT_STATS.get_ptr_mut(0) else {
        return;
    };
    let stats = unsafe { &mut *stats };
    if !take_event_token(cfg, coarse) {
        stats.rate_limited += 1;
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        stats.ring_full += 1;
        return;
    };
    let (src_identity, dst_identity) = if r.dir == direction::INGRESS {
        (r.peer_identity, r.ep.identity)
    } else {
        (r.ep.identity, r.peer_identity)
    };
    // Fill the reserved record in place: the BPF stack is too small for a copy.
    let ev: &mut DropEvent = unsafe { &mut *entry.as_mut_ptr() };
    ev.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    ev.ifindex = r.ifindex;
    ev.ep_id = r.ep.ep_id;
    ev.src_identity = src_identity;
    ev.dst_identity = dst_identity;
    ev.pkt_len = r.len;
    ev.version = DROP_EVENT_VERSION;
    ev.kind = r.kind;
    ev.reason = r.reason;
    ev.direction = r.dir;
    ev._pad = 0;
    ev.rule_code = r.rule_code;
    ev._pad2 = 0;
    match r.pkt {
        Some(p) => {
            ev.saddr = p.saddr;
            ev.daddr = p.daddr;
            ev.sport = p.sport;
            ev.dport = p.dport;
            ev.proto = p.proto;
            ev.family = p.family;
            ev.l4_flags = p.l4_flags;
        }
        None => {
            ev.saddr = [0; 4];
            ev.daddr = [0; 4];
            ev.sport = 0;
            ev.dport = 0;
            ev.proto = 0;
            ev.family = 0;
            ev.l4_flags = 0;
        }
    }
    entry.submit(0);
    stats.emitted += 1;
}
