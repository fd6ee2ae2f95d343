//! Connection tracking in our own LRU map (kernel conntrack kfuncs are not
//! usable from aya yet). One entry per connection per endpoint interface,
//! keyed by the tuple with its two ends in a fixed order, so one hash lookup
//! finds the connection from a packet in either direction (a reply, or a
//! new flow's miss, would otherwise cost a second lookup into a cold bucket;
//! those lookups were most of the programs' time in real traffic); see
//! `palisade_common::CtKey4`. IPv4 and IPv6 have their own maps so the
//! common case hashes a 20-byte key.
//!
//! Expiry needs no userspace sweep: every entry carries its deadline, a dead
//! entry is treated as absent (and overwritten when the flow is judged
//! again), and the LRU map evicts the least recently used entries when full.
//!
//! TCP: a SYN opens a half-open entry (short timeout); any reply makes it
//! established (long timeout); FIN from both sides or a RST moves it to the
//! closing timeout. SCTP: an INIT opens the entry like a SYN (one timeout
//! for every state; ABORT and SHUTDOWN are not tracked). Mid-stream packets with no entry are judged by policy
//! like a new flow and, if allowed, picked up (so an evicted entry never
//! breaks a connection that policy allows).
//!
//! What an entry exempts from policy (fail closed: state only ever stands
//! for what the other end has confirmed). [`lookup`] finds no entry for:
//!
//! * a packet that opens a connection, whatever the entry's state: a TCP
//!   SYN without ACK (a reused client port, a retransmitted or a
//!   reply-direction SYN) or an SCTP packet whose first chunk is INIT (an
//!   association re-opened with the same ports, from either end; RFC 9260
//!   never bundles INIT with other chunks). Policy judges it and, if it is
//!   allowed, it replaces the entry (unanswered again);
//! * a packet travelling the opener's way on an entry that has never seen
//!   a reply (a half-open TCP connection, a UDP/SCTP/ICMP flow nobody has
//!   answered, a picked-up flow): until the other end answers, each attempt
//!   is judged by the policy in force, and one it denies does not refresh
//!   the entry.
//!
//! Replies always match. An entry is written only for a packet policy
//! allowed in its own direction (`create`), never for a RST or an ICMP
//! error (the datapath's choice), so spoofed reply-shaped packets cannot
//! open anything policy would not open for them as first packets.

use aya_ebpf::maps::LruHashMap;
use palisade_common::{Config, CtKey4, CtKey6, CtValue, ct_flags, defaults, direction, proto};

use crate::{
    CT_V4, CT_V6,
    packet::Packet,
    wire::{
        sctp_chunk::INIT as SCTP_INIT,
        tcp_flags::{ACK as TCP_ACK, FIN as TCP_FIN, RST as TCP_RST, SYN as TCP_SYN},
    },
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

/// Whether `pkt` opens a TCP connection (SYN without ACK).
#[inline(always)]
pub fn is_tcp_open(pkt: &Packet) -> bool {
    pkt.proto == proto::TCP && pkt.l4_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// Whether `pkt` is SCTP whose first chunk is INIT.
#[inline(always)]
fn is_sctp_init(pkt: &Packet) -> bool {
    pkt.proto == proto::SCTP && pkt.l4_flags == SCTP_INIT
}

/// Whether `pkt` opens a connection (TCP SYN without ACK, SCTP INIT).
#[inline(always)]
pub fn opens(pkt: &Packet) -> bool {
    is_tcp_open(pkt) || is_sctp_init(pkt)
}

/// A packet's conntrack key and which way it travels along it.
struct Oriented<K> {
    key: K,
    /// 1 if the packet travels from the key's hi end to its lo end, else 0
    /// (a number, not a bool, so no branch is needed to compute it).
    swap: u64,
}

/// A family's connection-tracking map and key.
trait Table {
    type Key: 'static;
    fn map() -> &'static LruHashMap<Self::Key, CtValue>;
    /// The key of the connection `pkt` belongs to on `ifindex` in `dir`.
    fn key(pkt: &Packet, ifindex: u32, dir: u8) -> Oriented<Self::Key>;
}

struct V4;
struct V6;

// The ordering below is computed without branches: a branch per
// comparison would multiply the verifier's states along the rest of the
// program (with branches the program no longer verified within the
// instruction limit). `swap` is 1 when the packet travels hi to lo; it goes
// through `black_box` so the compiler cannot turn the masks back into
// branches.

// `direction ^ 1` is the opposite direction.
const _: () = assert!(direction::INGRESS ^ 1 == direction::EGRESS);

/// The bit of [`ct_flags::OPENED_HI_TO_LO`].
const OPENED_SHIFT: u32 = ct_flags::OPENED_HI_TO_LO.trailing_zeros();

/// 1 if `a > b`, else 0 (both below 2^63). The difference goes through
/// `black_box`: otherwise LLVM sees that the inputs are small, turns the
/// shift back into a compare, and BPF has no conditional move, so every
/// comparison became a branch (ten for an IPv6 key, each splitting the
/// verifier's states).
#[inline(always)]
fn greater(a: u64, b: u64) -> u64 {
    core::hint::black_box(b.wrapping_sub(a)) >> 63
}

/// All ones if `swap` is 1, zero if it is 0.
#[inline(always)]
fn mask(swap: u64) -> u64 {
    0u64.wrapping_sub(core::hint::black_box(swap))
}

/// `a` or, under an all-ones `m`, `b`.
#[inline(always)]
fn pick<T>(a: T, b: T, m: T) -> T
where
    T: Copy + core::ops::BitXor<Output = T> + core::ops::BitAnd<Output = T>,
{
    a ^ ((a ^ b) & m)
}

impl Table for V4 {
    type Key = CtKey4;
    #[inline(always)]
    fn map() -> &'static LruHashMap<CtKey4, CtValue> {
        &CT_V4
    }
    #[inline(always)]
    fn key(pkt: &Packet, ifindex: u32, dir: u8) -> Oriented<CtKey4> {
        // (address, port) as one 48-bit number per end.
        let src = (pkt.saddr[0] as u64) << 16 | pkt.sport as u64;
        let dst = (pkt.daddr[0] as u64) << 16 | pkt.dport as u64;
        let swap = greater(src, dst);
        let m = mask(swap);
        let lo = pick(src, dst, m);
        let hi = src ^ dst ^ lo;
        Oriented {
            key: CtKey4 {
                addr_lo: (lo >> 16) as u32,
                addr_hi: (hi >> 16) as u32,
                port_lo: lo as u16,
                port_hi: hi as u16,
                ifindex,
                proto: pkt.proto,
                direction: dir ^ swap as u8,
                _pad: [0; 2],
            },
            swap,
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
    fn key(pkt: &Packet, ifindex: u32, dir: u8) -> Oriented<CtKey6> {
        // Lexicographic (address words, port): the first word that differs
        // decides; `decided` is 1 once one has.
        let (mut swap, mut decided) = (0u64, 0u64);
        for i in 0..4 {
            let (s, d) = (pkt.saddr[i] as u64, pkt.daddr[i] as u64);
            let (gt, lt) = (greater(s, d), greater(d, s));
            swap |= gt & (decided ^ 1);
            decided |= gt | lt;
        }
        swap |= greater(pkt.sport as u64, pkt.dport as u64) & (decided ^ 1);
        let m64 = mask(swap);
        let m = m64 as u32;
        let mut addr_lo = [0u32; 4];
        let mut addr_hi = [0u32; 4];
        for i in 0..4 {
            addr_lo[i] = pick(pkt.saddr[i], pkt.daddr[i], m);
            addr_hi[i] = pkt.saddr[i] ^ pkt.daddr[i] ^ addr_lo[i];
        }
        let port_lo = pick(pkt.sport, pkt.dport, m as u16);
        Oriented {
            key: CtKey6 {
                addr_lo,
                addr_hi,
                port_lo,
                port_hi: pkt.sport ^ pkt.dport ^ port_lo,
                ifindex,
                proto: pkt.proto,
                direction: dir ^ swap as u8,
                _pad: [0; 2],
            },
            swap,
        }
    }
}

#[inline(always)]
fn lookup_in<T: Table>(pkt: &Packet, ifindex: u32, dir: u8, now: u64) -> Option<Hit> {
    let k = T::key(pkt, ifindex, dir);
    let v = T::map().get_ptr_mut(&k.key)?;
    let entry = unsafe { &*v };
    if entry.expires_ns < now {
        return None;
    }
    let opened_swap = (entry.flags & ct_flags::OPENED_HI_TO_LO) as u64 >> OPENED_SHIFT;
    let reply = k.swap != opened_swap;
    // Fail closed: the opener's own packets ride on the entry only once the
    // other end has answered; before that each is judged by policy.
    if !reply && entry.flags & ct_flags::REPLY_SEEN == 0 {
        return None;
    }
    Some(Hit { value: v, reply })
}

/// Finds the live entry that exempts `pkt` from policy on `ifindex` in
/// `dir` (see the module's documentation for what does not match).
#[inline(always)]
pub fn lookup(pkt: &Packet, ifindex: u32, dir: u8, now: u64) -> Option<Hit> {
    // Fail closed: a SYN or an INIT opens a connection, so policy judges it
    // even where an entry exists.
    if opens(pkt) {
        return None;
    }
    if pkt.is_v4() {
        lookup_in::<V4>(pkt, ifindex, dir, now)
    } else {
        lookup_in::<V6>(pkt, ifindex, dir, now)
    }
}

#[inline(always)]
fn related_in<T: Table>(quoted: &Packet, ifindex: u32, dir: u8, now: u64) -> bool {
    match unsafe { T::map().get(&T::key(quoted, ifindex, dir).key) } {
        Some(v) => v.expires_ns >= now,
        None => false,
    }
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

/// Removes the entry of the connection `pkt` belongs to.
#[inline(always)]
pub fn remove(pkt: &Packet, ifindex: u32, dir: u8) {
    if pkt.is_v4() {
        let _ = CT_V4.remove(&V4::key(pkt, ifindex, dir).key);
    } else {
        let _ = CT_V6.remove(&V6::key(pkt, ifindex, dir).key);
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

/// Opens (or replaces) the entry for a flow that policy just allowed, as
/// unanswered, and returns what it wrote (`None`: nothing was written). A
/// RST never opens one.
#[inline(always)]
pub fn create(
    pkt: &Packet,
    ifindex: u32,
    dir: u8,
    now: u64,
    cfg: &Config,
    peer_identity: u32,
    extra_flags: u16,
) -> Option<CtValue> {
    let mut flags = extra_flags;
    if pkt.proto == proto::TCP {
        if pkt.l4_flags & TCP_RST != 0 {
            return None;
        }
        // A mid-stream pickup starts unanswered like a SYN: the other end's
        // next packet confirms the connection.
        if is_tcp_open(pkt) {
            flags |= ct_flags::SYN_SEEN;
        }
        if pkt.l4_flags & TCP_FIN != 0 {
            flags |= ct_flags::FIN_ORIGINAL;
        }
    }
    let expires_ns = now + lifetime(cfg, pkt.proto, flags);
    let value = |swap: u64| CtValue {
        expires_ns,
        epoch: cfg.policy_epoch,
        flags: flags | (swap as u16) << OPENED_SHIFT,
        _pad: 0,
        peer_identity,
        _pad2: 0,
    };
    let (written, value) = if pkt.is_v4() {
        let k = V4::key(pkt, ifindex, dir);
        let v = value(k.swap);
        (CT_V4.insert(&k.key, &v, 0), v)
    } else {
        let k = V6::key(pkt, ifindex, dir);
        let v = value(k.swap);
        (CT_V6.insert(&k.key, &v, 0), v)
    };
    written.ok().map(|()| value)
}
