//! The fast path for the most common packet: an unfragmented TCP segment or
//! UDP datagram of an established flow, with plain headers (IPv4 without
//! options, IPv6 without extension headers) in the linear area. It checks
//! that exact shape with as few loads and bounds checks as possible and asks
//! the flow cache; anything else, or a cache miss, takes the full pipeline.
//!
//! Exactness: a packet passes here only if the full path would parse it to
//! the same tuple without error (every length check of `parse` is repeated
//! for this shape) and the flow cache holds a live entry for it, i.e. the
//! full path would find an established conntrack entry that this packet
//! leaves unchanged and pass it too.
//!
//! No source verification here, and none needed: a slot holds a tuple the
//! full path verified on that interface (the argument is in `source`).

use aya_ebpf::programs::TcContext;
use palisade_common::{family, proto};

use crate::{
    flowcache,
    packet::Packet,
    wire::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN, TCP_HLEN, UDP_HLEN},
};

/// IPv4 flags and fragment offset bits that make a packet a fragment (MF
/// and the offset; DF is fine).
const IPV4_FRAGMENT_BITS: u16 = 0x3fff;

/// A big-endian 16-bit field at an even offset of the frame (one load; see
/// `parse` on why packet loads need no alignment here).
#[inline(always)]
fn be16(p: *const u8) -> u16 {
    u16::from_be(unsafe { *(p as *const u16) })
}

/// Source and destination port (host order) at `l4`, which the caller has
/// bounds-checked.
#[inline(always)]
fn ports(l4: *const u8) -> (u16, u16) {
    (be16(l4), be16(unsafe { l4.add(2) }))
}

/// What the fast path found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A plain packet of an established, cached flow: pass it.
    Cached,
    /// A plain packet the cache does not hold: the full path need not ask
    /// the cache again.
    NotCached,
    /// Not of the plain shape (or not in the linear area): the full path
    /// parses it and may still find it in the cache.
    NotPlain,
}

/// Checks the packet's shape and, for a plain packet, asks the flow cache.
#[inline(always)]
pub fn established(ctx: &TcContext, dir: u8, ifindex: u32, epoch: u32) -> Outcome {
    let data = ctx.data();
    let end = ctx.data_end();
    if data + ETH_HLEN + IPV4_HLEN + UDP_HLEN > end {
        return Outcome::NotPlain;
    }
    let frame = data as *const u8;
    let ethertype = be16(unsafe { frame.add(12) });
    let len = ctx.len() as usize;
    let mut pkt = Packet::new(family::V4, 0, [0; 4], [0; 4]);
    // (offset of the L4 header, end of the IP packet)
    let (l4_off, ip_end) = if ethertype == ETH_P_IP {
        let ip = unsafe { frame.add(ETH_HLEN) };
        let tot_len = be16(unsafe { ip.add(2) }) as usize;
        if unsafe { *ip } != 0x45 || be16(unsafe { ip.add(6) }) & IPV4_FRAGMENT_BITS != 0 {
            return Outcome::NotPlain;
        }
        pkt.proto = unsafe { *ip.add(9) };
        unsafe {
            pkt.saddr[0] = *(ip.add(12) as *const u32);
            pkt.daddr[0] = *(ip.add(16) as *const u32);
        }
        (ETH_HLEN + IPV4_HLEN, ETH_HLEN + tot_len)
    } else if ethertype == ETH_P_IPV6 {
        if data + ETH_HLEN + IPV6_HLEN + UDP_HLEN > end {
            return Outcome::NotPlain;
        }
        let ip = unsafe { frame.add(ETH_HLEN) };
        let payload_len = be16(unsafe { ip.add(4) }) as usize;
        // A zero payload length (jumbogram) takes the full path.
        if unsafe { *ip } >> 4 != 6 || payload_len == 0 {
            return Outcome::NotPlain;
        }
        pkt.family = family::V6;
        pkt.proto = unsafe { *ip.add(6) };
        unsafe {
            pkt.saddr = *(ip.add(8) as *const [u32; 4]);
            pkt.daddr = *(ip.add(24) as *const [u32; 4]);
        }
        (ETH_HLEN + IPV6_HLEN, ETH_HLEN + IPV6_HLEN + payload_len)
    } else {
        return Outcome::NotPlain;
    };
    if ip_end > len {
        return Outcome::NotPlain;
    }
    match pkt.proto {
        proto::TCP => {
            if data + l4_off + TCP_HLEN > end || l4_off + TCP_HLEN > ip_end {
                return Outcome::NotPlain;
            }
            let l4 = unsafe { frame.add(l4_off) };
            let doff = (unsafe { *l4.add(12) } >> 4) as usize;
            if doff < 5 || l4_off + doff * 4 > ip_end {
                return Outcome::NotPlain;
            }
            (pkt.sport, pkt.dport) = ports(l4);
            pkt.l4_flags = unsafe { *l4.add(13) };
        }
        proto::UDP => {
            if data + l4_off + UDP_HLEN > end || l4_off + UDP_HLEN > ip_end {
                return Outcome::NotPlain;
            }
            (pkt.sport, pkt.dport) = ports(unsafe { frame.add(l4_off) });
        }
        _ => return Outcome::NotPlain,
    }
    if flowcache::hit(&pkt, ifindex, dir, epoch) {
        Outcome::Cached
    } else {
        Outcome::NotCached
    }
}
