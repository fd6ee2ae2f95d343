//! Connection tracking in our own LRU map (kernel conntrack kfuncs are not
//! usable from aya yet). One entry per connection per endpoint interface,
//! keyed by the opener's tuple; see `palisade_common::CtKey`.
//!
//! Expiry needs no userspace sweep: every entry carries its deadline, a dead
//! entry is treated as absent (and overwritten when the flow is judged
//! again), and the LRU map evicts the least recently used entries when full.
//!
//! TCP: a SYN opens a half-open entry (short timeout); any reply makes it
//! established (long timeout); FIN from both sides or a RST moves it to the
//! closing timeout; a new SYN on a closed entry is judged as a new flow.
//! Mid-stream packets with no entry are judged by policy like a new flow and,
//! if allowed, picked up as established (so an evicted entry never breaks a
//! connection that policy allows).

use palisade_common::{Config, CtKey, CtValue, ct_flags, defaults, proto};

use crate::{CT, packet::Packet};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const NS: u64 = 1_000_000_000;
/// Deadline moves smaller than this are not written back (saves a store
/// per packet on busy flows).
const REFRESH_SLACK_NS: u64 = NS;

/// A live entry matching a packet.
pub struct Hit {
    /// The entry.
    pub value: *mut CtValue,
    /// The packet travels opposite to the opener.
    pub reply: bool,
}

#[inline(always)]
fn or_default(v: u32, d: u32) -> u64 {
    (if v == 0 { d } else { v }) as u64 * NS
}

/// Idle timeout for a flow of `ip_proto` in state `flags`.
#[inline(always)]
fn lifetime(cfg: &Config, ip_proto: u8, flags: u16) -> u64 {
    match ip_proto {
        proto::TCP => {
            if flags & ct_flags::RST != 0
                || flags & (ct_flags::FIN_ORIGINAL | ct_flags::FIN_REPLY)
                    == (ct_flags::FIN_ORIGINAL | ct_flags::FIN_REPLY)
            {
                or_default(cfg.tcp_close_timeout_s, defaults::TCP_CLOSE_TIMEOUT_S)
            } else if flags & ct_flags::REPLY_SEEN != 0 {
                or_default(
                    cfg.tcp_established_timeout_s,
                    defaults::TCP_ESTABLISHED_TIMEOUT_S,
                )
            } else {
                or_default(cfg.tcp_syn_timeout_s, defaults::TCP_SYN_TIMEOUT_S)
            }
        }
        proto::UDP => or_default(cfg.udp_timeout_s, defaults::UDP_TIMEOUT_S),
        proto::SCTP => or_default(cfg.sctp_timeout_s, defaults::SCTP_TIMEOUT_S),
        _ => or_default(cfg.other_timeout_s, defaults::OTHER_TIMEOUT_S),
    }
}

/// Whether an entry is dead for this packet: expired, or a closed TCP
/// connection that a fresh SYN reopens.
#[inline(always)]
fn dead(v: &CtValue, pkt: &Packet, now: u64) -> bool {
    if v.expires_ns < now {
        return true;
    }
    pkt.proto == proto::TCP
        && pkt.l4_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        && (v.flags & ct_flags::RST != 0
            || v.flags & (ct_flags::FIN_ORIGINAL | ct_flags::FIN_REPLY)
                == (ct_flags::FIN_ORIGINAL | ct_flags::FIN_REPLY))
}

/// Finds the live entry `pkt` belongs to on `ifindex` in `dir`.
#[inline(always)]
pub fn lookup(pkt: &Packet, ifindex: u32, dir: u8, now: u64) -> Option<Hit> {
    if let Some(v) = CT.get_ptr_mut(&pkt.ct_key(ifindex, dir)) {
        if !dead(unsafe { &*v }, pkt, now) {
            return Some(Hit {
                value: v,
                reply: false,
            });
        }
    }
    if let Some(v) = CT.get_ptr_mut(&pkt.reverse_ct_key(ifindex, dir)) {
        if !dead(unsafe { &*v }, pkt, now) {
            return Some(Hit {
                value: v,
                reply: true,
            });
        }
    }
    None
}

/// Whether a live entry exists for `key`.
#[inline(always)]
pub fn exists(key: &CtKey, now: u64) -> bool {
    match unsafe { CT.get(key) } {
        Some(v) => v.expires_ns >= now,
        None => false,
    }
}

/// Removes the entry for `key`.
#[inline(always)]
pub fn remove(key: &CtKey) {
    let _ = CT.remove(key);
}

/// Advances the entry's state and deadline for a packet that matched it.
#[inline(always)]
pub fn update(v: &mut CtValue, pkt: &Packet, reply: bool, now: u64, cfg: &Config) {
    let mut flags = v.flags;
    if reply {
        flags |= ct_flags::REPLY_SEEN;
    }
    if pkt.proto == proto::TCP {
        if pkt.l4_flags & TCP_RST != 0 {
            flags |= ct_flags::RST;
        }
        if pkt.l4_flags & TCP_FIN != 0 {
            flags |= if reply {
                ct_flags::FIN_REPLY
            } else {
                ct_flags::FIN_ORIGINAL
            };
        }
    }
    let expires = now + lifetime(cfg, pkt.proto, flags);
    if flags != v.flags {
        v.flags = flags;
        v.expires_ns = expires;
    } else if expires > v.expires_ns + REFRESH_SLACK_NS {
        v.expires_ns = expires;
    }
}

/// Opens an entry for a flow that policy just allowed. A RST never opens
/// one.
#[inline(always)]
pub fn create(
    pkt: &Packet,
    ifindex: u32,
    dir: u8,
    now: u64,
    cfg: &Config,
    peer_identity: u32,
    extra_flags: u16,
) {
    let mut flags = extra_flags;
    if pkt.proto == proto::TCP {
        if pkt.l4_flags & TCP_RST != 0 {
            return;
        }
        if pkt.l4_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            flags |= ct_flags::SYN_SEEN;
        } else {
            // Mid-stream pickup: the connection already exists.
            flags |= ct_flags::REPLY_SEEN;
        }
        if pkt.l4_flags & TCP_FIN != 0 {
            flags |= ct_flags::FIN_ORIGINAL;
        }
    }
    let v = CtValue {
        expires_ns: now + lifetime(cfg, pkt.proto, flags),
        epoch: cfg.policy_epoch,
        flags,
        _pad: 0,
        peer_identity,
        _pad2: 0,
    };
    let _ = CT.insert(&pkt.ct_key(ifindex, dir), &v, 0);
}
