//! The established-flow cache: a per-CPU, direct-mapped table of flows
//! whose conntrack entry needs no write for now, so that the common packet
//! (an ACK or data segment of a busy connection, a datagram of a UDP flow)
//! is passed after one array access instead of a hash lookup in the LRU
//! conntrack map. Layout and the rules that keep it exact are on
//! `palisade_common::FlowCacheEntry`.
//!
//! Only [`hit`] and [`remember`] touch the cache; the full path in
//! `datapath` stays the single source of truth: a slot is filled from a
//! conntrack entry that the full path has just matched and updated, or
//! created for a new flow it allowed, and it is only consulted for packets
//! that would leave that entry unchanged.

use aya_ebpf::helpers::generated::bpf_jiffies64;
use palisade_common::{Config, CtValue, FlowCacheEntry, capacity, ct_flags, proto};

use crate::{
    FLOW_CACHE, conntrack,
    packet::Packet,
    wire::{
        sctp_chunk::{INIT as SCTP_INIT, INIT_ACK as SCTP_INIT_ACK},
        tcp_flags::{FIN as TCP_FIN, RST as TCP_RST, SYN as TCP_SYN},
    },
};

/// The longest a jiffy lasts: Linux's lowest `HZ` is 100. Converting a
/// time budget to jiffies with this length never overstates it.
const MAX_JIFFY_NS: u64 = 10_000_000;

/// The jiffies counter. The verifier inlines this helper into one load
/// (where `bpf_ktime_get_coarse_ns` is a call costing more than the rest
/// of the fast path), which is why the cache keeps time in jiffies.
#[inline(always)]
fn jiffies() -> u64 {
    unsafe { bpf_jiffies64() }
}

/// The slot of a packet's tuple in `dir`.
#[inline(always)]
fn slot(pkt: &Packet, ifindex: u32, dir: u8) -> u32 {
    slot_of(
        pkt,
        (pkt.sport as u32) << 16 | pkt.dport as u32,
        ifindex,
        dir,
    )
}

/// The slot of `pkt`'s addresses with `ports` (its own, or swapped for
/// the flow's other direction: the addresses' part is symmetric).
#[inline(always)]
fn slot_of(pkt: &Packet, ports: u32, ifindex: u32, dir: u8) -> u32 {
    let mut h = pkt.saddr[0] ^ pkt.daddr[0] ^ pkt.saddr[3] ^ pkt.daddr[3] ^ ports ^ ifindex;
    h ^= h >> 16;
    h ^= h >> 8;
    let family = if pkt.is_v4() { 0 } else { 1 };
    (family * 2 + dir as u32) * capacity::FLOW_CACHE_SLOTS + (h & (capacity::FLOW_CACHE_SLOTS - 1))
}

/// Whether the packet could change its conntrack entry (TCP SYN, FIN, RST;
/// SCTP INIT and INIT ACK): such packets always take the full path (where
/// a SYN or an INIT is judged by policy, see `conntrack`). The answer to
/// an opening packet goes there too (a SYN-ACK carries SYN; an INIT ACK
/// is listed); an allowed SYN or INIT that replaced an answered entry also
/// clears this CPU's slot of the other direction ([`forget_answer`]), so
/// that an answer of another kind reaches the entry too.
#[inline(always)]
fn changes_state(pkt: &Packet) -> bool {
    match pkt.proto {
        proto::TCP => pkt.l4_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0,
        proto::SCTP => pkt.l4_flags == SCTP_INIT || pkt.l4_flags == SCTP_INIT_ACK,
        _ => false,
    }
}

/// Clears the slot of the other direction of `pkt`'s flow (the slot its
/// answer would hit) on this CPU. An opening packet that replaced an
/// answered entry leaves it unanswered: its answer must reach the entry to
/// mark it answered again, not pass from a slot filled before (an SCTP
/// answer need not be INIT ACK, and a TCP one after a retried SYN may be a
/// plain ACK).
#[inline(always)]
pub fn forget_answer(pkt: &Packet, ifindex: u32, dir: u8) {
    let ports = (pkt.dport as u32) << 16 | pkt.sport as u32;
    if let Some(e) = FLOW_CACHE.get_ptr_mut(slot_of(pkt, ports, ifindex, dir ^ 1)) {
        unsafe { (*e).valid = 0 };
    }
}

#[inline(always)]
fn same_flow(e: &FlowCacheEntry, pkt: &Packet, ifindex: u32) -> bool {
    e.saddr[0] == pkt.saddr[0]
        && e.daddr[0] == pkt.daddr[0]
        && e.sport == pkt.sport
        && e.dport == pkt.dport
        && e.ifindex == ifindex
        && e.proto == pkt.proto
        && (pkt.is_v4()
            || (e.saddr[1] == pkt.saddr[1]
                && e.saddr[2] == pkt.saddr[2]
                && e.saddr[3] == pkt.saddr[3]
                && e.daddr[1] == pkt.daddr[1]
                && e.daddr[2] == pkt.daddr[2]
                && e.daddr[3] == pkt.daddr[3]))
}

/// Whether a live slot says this (unfragmented) packet belongs to an
/// established flow whose entry it would not change.
#[inline(always)]
pub fn hit(pkt: &Packet, ifindex: u32, dir: u8, epoch: u32) -> bool {
    if changes_state(pkt) {
        return false;
    }
    match FLOW_CACHE.get(slot(pkt, ifindex, dir)) {
        Some(e) => {
            e.valid == 1
                && e.epoch == epoch
                && same_flow(e, pkt, ifindex)
                && jiffies() <= e.fresh_until_jiffies
        }
        None => false,
    }
}

/// Fills (or clears) the packet's slot after the full path matched it to
/// `entry` and updated the entry, or created `entry` for it. Only a flow
/// that later plain packets like this one leave untouched is cached:
/// answered (the opener's packets on an unanswered entry are judged by
/// policy), not audited (revalidated when audit ends) and not closing. The packet
/// itself may be a SYN, SYN-ACK or FIN: the entry already holds what it
/// changed, and packets that could change it again (SYN, FIN, RST, SCTP
/// INIT and INIT ACK) are never answered from the cache.
#[inline(always)]
pub fn remember(pkt: &Packet, ifindex: u32, dir: u8, entry: &CtValue, now: u64, cfg: &Config) {
    let Some(e) = FLOW_CACHE.get_ptr_mut(slot(pkt, ifindex, dir)) else {
        return;
    };
    let e = unsafe { &mut *e };
    let closing = entry.flags & ct_flags::RST != 0
        || entry.flags & (ct_flags::FIN_ORIGINAL | ct_flags::FIN_REPLY)
            == (ct_flags::FIN_ORIGINAL | ct_flags::FIN_REPLY);
    // Unanswered: the opener's packets are judged by policy (conntrack).
    let unanswered = entry.flags & ct_flags::REPLY_SEEN == 0;
    if closing || unanswered || entry.flags & ct_flags::AUDITED != 0 {
        // Whatever the slot held, a stale copy of this flow must not answer.
        e.valid = 0;
        return;
    }
    // The full path rewrites the deadline once `now + lifetime` exceeds it
    // by the refresh slack; until then a packet changes nothing.
    let lifetime = conntrack::lifetime(cfg, pkt.proto, entry.flags);
    let rewrite_at = (entry.expires_ns + conntrack::REFRESH_SLACK_NS).saturating_sub(lifetime);
    let fresh_until = if rewrite_at < entry.expires_ns {
        rewrite_at
    } else {
        entry.expires_ns
    };
    // In jiffies, rounded down and less one for the partly elapsed
    // current jiffy, so the slot never answers past `fresh_until`.
    let budget = (fresh_until.saturating_sub(now) / MAX_JIFFY_NS).saturating_sub(1);
    if budget == 0 {
        e.valid = 0;
        return;
    }
    e.saddr = pkt.saddr;
    e.daddr = pkt.daddr;
    e.sport = pkt.sport;
    e.dport = pkt.dport;
    e.ifindex = ifindex;
    e.proto = pkt.proto;
    e.epoch = cfg.policy_epoch;
    e.fresh_until_jiffies = jiffies() + budget;
    e.valid = 1;
}
