//! Connection tracking in our own LRU map (kernel conntrack kfuncs are not
//! usable from aya yet). One entry per connection per endpoint interface,
//! keyed by the opener's tuple; see `palisade_common::CtKey4`. IPv4 and IPv6
//! have their own maps so the common case hashes a 20-byte key.
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

use aya_ebpf::maps::LruHashMap;
use palisade_common::{Config, CtKey4, CtKey6, CtValue, ct_flags, defaults, proto};

use crate::{
    CT_V4, CT_V6,
    packet::{Packet, opposite},
    wire::tcp_flags::{ACK as TCP_ACK, FIN as TCP_FIN, RST as TCP_RST, SYN as TCP_SYN},
};

const NS: u64 = 1_000_000_000;
/// Deadline moves smaller than this are not written back (saves a store
/// per packet on busy flows).
pub const REFRESH_SLACK_NS: u64 = NS;

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
pub fn lifetime(cfg: &Config, ip_proto: u8, flags: u16) -> u64 {
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

/// A family's connection-tracking map and key.
trait Table {
    type Key: 'static;
    fn map() -> &'static LruHashMap<Self::Key, CtValue>;
    /// The key of `pkt` as the opener of a connection on `ifindex` in `dir`.
    fn key(pkt: &Packet, ifindex: u32, dir: u8) -> Self::Key;
    /// The key of the connection `pkt` would be a reply to.
    fn reverse_key(pkt: &Packet, ifindex: u32, dir: u8) -> Self::Key;
}

struct V4;
struct V6;

impl Table for V4 {
    type Key = CtKey4;
    #[inline(always)]
    fn map() -> &'static LruHashMap<CtKey4, CtValue> {
        &CT_V4
    }
    #[inline(always)]
    fn key(pkt: &Packet, ifindex: u32, dir: u8) -> CtKey4 {
        CtKey4 {
            saddr: pkt.saddr[0],
            daddr: pkt.daddr[0],
            sport: pkt.sport,
            dport: pkt.dport,
            ifindex,
            proto: pkt.proto,
            direction: dir,
            _pad: [0; 2],
        }
    }
    #[inline(always)]
    fn reverse_key(pkt: &Packet, ifindex: u32, dir: u8) -> CtKey4 {
        CtKey4 {
            saddr: pkt.daddr[0],
            daddr: pkt.saddr[0],
            sport: pkt.dport,
            dport: pkt.sport,
            ifindex,
            proto: pkt.proto,
            direction: opposite(dir),
            _pad: [0; 2],
        }
    }
}

impl Table for V6 {
    type Key = CtKey6;
    #[inline(always)]
    fn map() -> &'static LruHashMap<CtKey6, CtValue> {
        &CT_V6
    }
    #[inline(always)]
    fn key(pkt: &Packet, ifindex: u32, dir: u8) -> CtKey6 {
        CtKey6 {
            saddr: pkt.saddr,
            daddr: pkt.daddr,
            sport: pkt.sport,
            dport: pkt.dport,
            ifindex,
            proto: pkt.proto,
            direction: dir,
            _pad: [0; 2],
        }
    }
    #[inline(always)]
    fn reverse_key(pkt: &Packet, ifindex: u32, dir: u8) -> CtKey6 {
        CtKey6 {
            saddr: pkt.daddr,
            daddr: pkt.saddr,
            sport: pkt.dport,
            dport: pkt.sport,
            ifindex,
            proto: pkt.proto,
            direction: opposite(dir),
            _pad: [0; 2],
        }
    }
}

#[inline(always)]
fn lookup_in<T: Table>(pkt: &Packet, ifindex: u32, dir: u8, now: u64) -> Option<Hit> {
    if let Some(v) = T::map().get_ptr_mut(&T::key(pkt, ifindex, dir))
        && !dead(unsafe { &*v }, pkt, now)
    {
        return Some(Hit {
            value: v,
            reply: false,
        });
    }
    if let Some(v) = T::map().get_ptr_mut(&T::reverse_key(pkt, ifindex, dir))
        && !dead(unsafe { &*v }, pkt, now)
    {
        return Some(Hit {
            value: v,
            reply: true,
        });
    }
    None
}

/// Finds the live entry `pkt` belongs to on `ifindex` in `dir`.
#[inline(always)]
pub fn lookup(pkt: &Packet, ifindex: u32, dir: u8, now: u64) -> Option<Hit> {
    if pkt.is_v4() {
        lookup_in::<V4>(pkt, ifindex, dir, now)
    } else {
        lookup_in::<V6>(pkt, ifindex, dir, now)
    }
}

#[inline(always)]
fn live<T: Table>(key: &T::Key, now: u64) -> bool {
    match unsafe { T::map().get(key) } {
        Some(v) => v.expires_ns >= now,
        None => false,
    }
}

#[inline(always)]
fn related_in<T: Table>(quoted: &Packet, ifindex: u32, dir: u8, now: u64) -> bool {
    live::<T>(&T::key(quoted, ifindex, dir), now)
        || live::<T>(&T::reverse_key(quoted, ifindex, dir), now)
}

/// Whether a live connection exists that `quoted` (a packet quoted by an
/// ICMP error, which travelled on `ifindex` in `dir`) opened or replied to.
#[inline(always)]
pub fn related(quoted: &Packet, ifindex: u32, dir: u8, now: u64) -> bool {
    if quoted.is_v4() {
        related_in::<V4>(quoted, ifindex, dir, now)
    } else {
        related_in::<V6>(quoted, ifindex, dir, now)
    }
}

/// Removes the entry `pkt` matched (`reply` as in its [`Hit`]).
#[inline(always)]
pub fn remove(pkt: &Packet, ifindex: u32, dir: u8, reply: bool) {
    if pkt.is_v4() {
        let k = if reply {
            V4::reverse_key(pkt, ifindex, dir)
        } else {
            V4::key(pkt, ifindex, dir)
        };
        let _ = CT_V4.remove(&k);
    } else {
        let k = if reply {
            V6::reverse_key(pkt, ifindex, dir)
        } else {
            V6::key(pkt, ifindex, dir)
        };
        let _ = CT_V6.remove(&k);
    }
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
    if pkt.is_v4() {
        let _ = CT_V4.insert(&V4::key(pkt, ifindex, dir), &v, 0);
    } else {
        let _ = CT_V6.insert(&V6::key(pkt, ifindex, dir), &v, 0);
    }
}
