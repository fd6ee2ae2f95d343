//! Parses a frame into a [`Packet`]: Ethernet, IPv4 with options, IPv6 with a
//! bounded walk over extension headers (hop-by-hop, routing, destination
//! options, fragment, AH), then TCP, UDP, SCTP, ICMP and ICMPv6.
//!
//! Every header is bounds-checked against both the frame and the length the
//! IP header announces, so padding after a short IP packet is never read as
//! a transport header. A header that does not fit is [`DropReason::Truncated`],
//! an impossible field is [`DropReason::Malformed`]; the caller decides
//! whether that drops (it does when the pod is isolated in that direction).

use core::mem::size_of;

use aya_ebpf::programs::TcContext;
use palisade_common::{Addr, DropReason, family, proto};

use crate::{
    packet::{Fragment, Packet},
    wire::{ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPV6_HLEN, SCTP_HLEN},
};

/// What kind of frame this is.
pub enum Frame {
    /// ARP: link control that always passes.
    Control,
    /// IPv6 neighbour discovery or MLD (link control) from this source
    /// address: passes, after source verification on a pod's egress.
    Neighbour(Addr),
    /// Neither IPv4, IPv6 nor ARP.
    OtherL3,
    /// An IP packet.
    Ip(Packet),
}

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// Extension headers walked before giving up with
/// [`DropReason::ExtensionHeaderLimit`].
pub const MAX_EXT_HEADERS: usize = 8;
/// Transport headers must start within this many bytes of the frame.
const MAX_L4_OFFSET: usize = 512;
/// Bytes pulled into the linear area when headers are not there yet.
const PULL_LEN: u32 = 256;

/// ICMP types that carry the header of the packet they are about.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;
const ICMP_ECHO: u8 = 8;
const ICMP_ECHOREPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

#[repr(C)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    proto: [u8; 2],
}

// Addresses are read as words: the kernel keeps IP headers 4-byte aligned
// (NET_IP_ALIGN), and BPF packet loads need no alignment on the JIT targets
// we run on (the verifier checks alignment only with BPF_F_STRICT_ALIGNMENT).
// Word loads keep address copies and hashing to 4 and 16 instructions.
#[repr(C)]
struct Ipv4Hdr {
    version_ihl: u8,
    tos: u8,
    tot_len: [u8; 2],
    id: [u8; 2],
    frag_off: [u8; 2],
    ttl: u8,
    proto: u8,
    check: [u8; 2],
    saddr: u32,
    daddr: u32,
}

#[repr(C)]
struct Ipv6Hdr {
    version_tc: u8,
    tc_flow: [u8; 3],
    payload_len: [u8; 2],
    nexthdr: u8,
    hop_limit: u8,
    saddr: [u32; 4],
    daddr: [u32; 4],
}

/// The fixed 20 bytes of a TCP header.
#[repr(C)]
struct TcpHdr {
    sport: [u8; 2],
    dport: [u8; 2],
    _seq: [u8; 4],
    _ack: [u8; 4],
    doff: u8,
    flags: u8,
    _window: [u8; 2],
    _check: [u8; 2],
    _urgent: [u8; 2],
}

/// A UDP header.
#[repr(C)]
struct UdpHdr {
    ports: Ports,
    _len: [u8; 2],
    _check: [u8; 2],
}

/// The SCTP common header: ports, verification tag, checksum.
#[repr(C)]
struct SctpHdr {
    ports: Ports,
    _vtag: [u8; 4],
    _check: [u8; 4],
}

const _: () = assert!(size_of::<SctpHdr>() == SCTP_HLEN);

/// The SCTP common header and the first byte after it: the first chunk's
/// type. Read as one header from the start of the common header: the
/// verifier accepts the bounds check of a 13-byte header, where the check
/// of a lone byte compiles to a form it does not (`ptr >= end`).
#[repr(C)]
struct SctpFirstChunk {
    common: SctpHdr,
    chunk_type: u8,
}

#[repr(C)]
struct Ports {
    sport: [u8; 2],
    dport: [u8; 2],
}

#[repr(C)]
struct IcmpHdr {
    ty: u8,
    code: u8,
    check: [u8; 2],
    id: [u8; 2],
    seq: [u8; 2],
}

#[repr(C)]
struct ExtHdr {
    nexthdr: u8,
    len: u8,
}

#[repr(C)]
struct FragHdr {
    nexthdr: u8,
    _reserved: u8,
    off_flags: [u8; 2],
    id: [u8; 4],
}

/// A header of type `T` at `off`, if it lies entirely inside the linear data.
#[inline(always)]
fn header<T>(ctx: &TcContext, off: usize) -> Result<*const T, DropReason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return Err(DropReason::Truncated);
    }
    Ok((start + off) as *const T)
}

/// Same as [`header`] but also inside the IP packet's announced length.
#[inline(always)]
fn l4_header<T>(ctx: &TcContext, off: usize, ip_end: usize) -> Result<*const T, DropReason> {
    if off + size_of::<T>() > ip_end {
        return Err(DropReason::Truncated);
    }
    header(ctx, off)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Pulls up to [`PULL_LEN`] bytes into the linear area when the frame is
/// longer than its linear part; returns whether it did. Called only after a
/// header did not fit: pulling makes the skb writable, which copies the head
/// of a cloned skb (every TCP transmit), so it must stay off the hot path.
#[inline(always)]
pub fn pull_headers(ctx: &TcContext) -> bool {
    let linear = (ctx.data_end() - ctx.data()) as u32;
    let len = ctx.len();
    if linear >= len || linear >= PULL_LEN {
        return false;
    }
    let want = if len < PULL_LEN { len } else { PULL_LEN };
    ctx.pull_data(want).is_ok()
}

/// Parses the frame.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Frame, DropReason> {
    let eth: *const EthHdr = header(ctx, 0)?;
    let ethertype = be16(unsafe { (*eth).proto });
    match ethertype {
        ETH_P_IP => parse_v4(ctx).map(Frame::Ip),
        ETH_P_IPV6 => parse_v6(ctx),
        ETH_P_ARP => Ok(Frame::Control),
        _ => Ok(Frame::OtherL3),
    }
}

#[inline(always)]
fn parse_v4(ctx: &TcContext) -> Result<Packet, DropReason> {
    let ip: *const Ipv4Hdr = header(ctx, ETH_HLEN)?;
    let (version_ihl, tot_len, frag, ip_proto, saddr4, daddr4, id) = unsafe {
        (
            (*ip).version_ihl,
            be16((*ip).tot_len) as usize,
            be16((*ip).frag_off),
            (*ip).proto,
            (*ip).saddr,
            (*ip).daddr,
            be16((*ip).id),
        )
    };
    if version_ihl >> 4 != 4 {
        return Err(DropReason::Malformed);
    }
    let hlen = ((version_ihl & 0x0f) as usize) * 4;
    if hlen < 20 || tot_len < hlen {
        return Err(DropReason::Malformed);
    }
    let ip_end = ETH_HLEN + tot_len;
    if ip_end > ctx.len() as usize {
        return Err(DropReason::Truncated);
    }
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    let fragment = if offset != 0 {
        Fragment::Later
    } else if more {
        Fragment::First
    } else {
        Fragment::None
    };
    let mut pkt = Packet::new(family::V4, ip_proto, [saddr4, 0, 0, 0], [daddr4, 0, 0, 0]);
    pkt.fragment = fragment;
    pkt.frag_id = id as u32;
    pkt.l4_offset = (ETH_HLEN + hlen) as u32;
    if fragment != Fragment::Later {
        parse_l4(ctx, &mut pkt, ETH_HLEN + hlen, ip_end)?;
    }
    Ok(pkt)
}

#[inline(always)]
fn parse_v6(ctx: &TcContext) -> Result<Frame, DropReason> {
    let ip: *const Ipv6Hdr = header(ctx, ETH_HLEN)?;
    let (version, payload_len, first_next, saddr, daddr) = unsafe {
        (
            (*ip).version_tc >> 4,
            be16((*ip).payload_len) as usize,
            (*ip).nexthdr,
            (*ip).saddr,
            (*ip).daddr,
        )
    };
    if version != 6 {
        return Err(DropReason::Malformed);
    }
    // A zero payload length announces a jumbogram; bound by the frame instead.
    let ip_end = if payload_len == 0 {
        ctx.len() as usize
    } else {
        ETH_HLEN + IPV6_HLEN + payload_len
    };
    if ip_end > ctx.len() as usize {
        return Err(DropReason::Truncated);
    }
    let mut pkt = Packet::new(family::V6, first_next, saddr, daddr);
    let mut off = ETH_HLEN + IPV6_HLEN;
    let mut next = first_next;
    let mut done = false;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let h: *const ExtHdr = l4_header(ctx, off, ip_end)?;
                let (n, len) = unsafe { ((*h).nexthdr, (*h).len) };
                next = n;
                off += (len as usize + 1) * 8;
            }
            NEXTHDR_AUTH => {
                let h: *const ExtHdr = l4_header(ctx, off, ip_end)?;
                let (n, len) = unsafe { ((*h).nexthdr, (*h).len) };
                next = n;
                off += (len as usize + 2) * 4;
            }
            NEXTHDR_FRAGMENT => {
                let h: *const FragHdr = l4_header(ctx, off, ip_end)?;
                let (n, off_flags, id) = unsafe {
                    (
                        (*h).nexthdr,
                        be16((*h).off_flags),
                        u32::from_be_bytes((*h).id),
                    )
                };
                next = n;
                off += size_of::<FragHdr>();
                pkt.frag_id = id;
                if off_flags >> 3 != 0 {
                    pkt.fragment = Fragment::Later;
                    done = true;
                    break;
                } else if off_flags & 1 != 0 {
                    pkt.fragment = Fragment::First;
                }
            }
            _ => {
                done = true;
                break;
            }
        }
        if off > MAX_L4_OFFSET {
            return Err(DropReason::ExtensionHeaderLimit);
        }
    }
    if !done {
        return Err(DropReason::ExtensionHeaderLimit);
    }
    if off > MAX_L4_OFFSET {
        return Err(DropReason::ExtensionHeaderLimit);
    }
    pkt.proto = next;
    pkt.l4_offset = off as u32;
    if pkt.fragment == Fragment::Later {
        return Ok(Frame::Ip(pkt));
    }
    if next == proto::ICMPV6 {
        let h: *const [u8; 4] = l4_header(ctx, off, ip_end)?;
        let ty = unsafe { (*h)[0] };
        // Neighbour discovery (133-137) and multicast listener discovery
        // (130-132, 143) keep the link working; they never leave the link.
        if matches!(ty, 130..=137 | 143) {
            return Ok(Frame::Neighbour(saddr));
        }
    }
    parse_l4(ctx, &mut pkt, off, ip_end)?;
    Ok(Frame::Ip(pkt))
}

#[inline(always)]
fn parse_l4(
    ctx: &TcContext,
    pkt: &mut Packet,
    off: usize,
    ip_end: usize,
) -> Result<(), DropReason> {
    if off > MAX_L4_OFFSET {
        return Err(DropReason::ExtensionHeaderLimit);
    }
    match pkt.proto {
        proto::TCP => {
            let h: *const TcpHdr = l4_header(ctx, off, ip_end)?;
            let (sport, dport, doff, flags) = unsafe {
                (
                    be16((*h).sport),
                    be16((*h).dport),
                    (*h).doff >> 4,
                    (*h).flags,
                )
            };
            if doff < 5 {
                return Err(DropReason::Malformed);
            }
            if off + (doff as usize) * 4 > ip_end {
                return Err(DropReason::Truncated);
            }
            pkt.sport = sport;
            pkt.dport = dport;
            pkt.l4_flags = flags;
        }
        proto::UDP => {
            let h: *const UdpHdr = l4_header(ctx, off, ip_end)?;
            unsafe {
                pkt.sport = be16((*h).ports.sport);
                pkt.dport = be16((*h).ports.dport);
            }
        }
        proto::SCTP => {
            let h: *const SctpHdr = l4_header(ctx, off, ip_end)?;
            unsafe {
                pkt.sport = be16((*h).ports.sport);
                pkt.dport = be16((*h).ports.dport);
            }
            // The first chunk's type, if the IP packet has a byte after the
            // common header (a packet of the common header alone carries no
            // chunk and is read as before). Fail closed: a byte the IP
            // length announces is read, and if it lies beyond the linear
            // data this is `Truncated` (the caller pulls it in and parses
            // again), never a packet taken for one without an INIT.
            if off + size_of::<SctpFirstChunk>() <= ip_end {
                let c: *const SctpFirstChunk = header(ctx, off)?;
                pkt.l4_flags = unsafe { (*c).chunk_type };
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            let h: *const IcmpHdr = l4_header(ctx, off, ip_end)?;
            let (ty, id) = unsafe { ((*h).ty, be16((*h).id)) };
            pkt.l4_flags = ty;
            match (pkt.proto, ty) {
                (proto::ICMP, ICMP_ECHO) | (proto::ICMPV6, ICMPV6_ECHO_REQUEST) => pkt.sport = id,
                (proto::ICMP, ICMP_ECHOREPLY) | (proto::ICMPV6, ICMPV6_ECHO_REPLY) => {
                    pkt.dport = id
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `pkt` is an ICMP/ICMPv6 error (it quotes another packet).
#[inline(always)]
pub fn is_icmp_error(pkt: &Packet) -> bool {
    match pkt.proto {
        proto::ICMP => matches!(
            pkt.l4_flags,
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB
        ),
        proto::ICMPV6 => matches!(pkt.l4_flags, 1..=4),
        _ => false,
    }
}

/// For an ICMP/ICMPv6 error, the tuple of the packet it quotes (as that
/// packet travelled), so it can be matched against connection tracking.
#[inline(always)]
pub fn icmp_error_inner(ctx: &TcContext, pkt: &Packet) -> Option<Packet> {
    if !is_icmp_error(pkt) || pkt.fragment != Fragment::None {
        return None;
    }
    let off = pkt.l4_offset as usize + size_of::<IcmpHdr>();
    if off > MAX_L4_OFFSET {
        return None;
    }
    let mut inner = *pkt;
    let l4_off;
    if pkt.family == family::V4 {
        let ip: *const Ipv4Hdr = header(ctx, off).ok()?;
        let (vihl, p, s, d) = unsafe { ((*ip).version_ihl, (*ip).proto, (*ip).saddr, (*ip).daddr) };
        let hlen = ((vihl & 0x0f) as usize) * 4;
        if vihl >> 4 != 4 || hlen < 20 {
            return None;
        }
        inner.proto = p;
        inner.saddr = [s, 0, 0, 0];
        inner.daddr = [d, 0, 0, 0];
        l4_off = off + hlen;
    } else {
        let ip: *const Ipv6Hdr = header(ctx, off).ok()?;
        let (p, s, d) = unsafe { ((*ip).nexthdr, (*ip).saddr, (*ip).daddr) };
        inner.proto = p;
        inner.saddr = s;
        inner.daddr = d;
        l4_off = off + IPV6_HLEN;
    }
    if l4_off > MAX_L4_OFFSET + 64 {
        return None;
    }
    inner.sport = 0;
    inner.dport = 0;
    match inner.proto {
        proto::TCP | proto::UDP | proto::SCTP => {
            let h: *const Ports = header(ctx, l4_off).ok()?;
            unsafe {
                inner.sport = be16((*h).sport);
                inner.dport = be16((*h).dport);
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            let h: *const IcmpHdr = header(ctx, l4_off).ok()?;
            let (ty, id) = unsafe { ((*h).ty, be16((*h).id)) };
            match ty {
                ICMP_ECHO | ICMPV6_ECHO_REQUEST => inner.sport = id,
                ICMP_ECHOREPLY | ICMPV6_ECHO_REPLY => inner.dport = id,
                _ => return None,
            }
        }
        _ => return None,
    }
    Some(inner)
}
