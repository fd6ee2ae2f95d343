//! The parsed view of a packet the rest of the pipeline works on.

use palisade_common::{Addr, FragKey, direction, family, proto};

/// Where a packet stands with respect to IP fragmentation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment (or an atomic IPv6 fragment).
    None,
    /// Offset 0 with more fragments: carries the L4 header.
    First,
    /// Offset > 0: no L4 header; judged by the first fragment's state.
    Later,
}

/// Addresses, protocol and ports of an IP packet.
#[derive(Clone, Copy)]
pub struct Packet {
    /// [`family`] tag.
    pub family: u8,
    /// L4 protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source address (IPv4 in the first word).
    pub saddr: Addr,
    /// Destination address.
    pub daddr: Addr,
    /// Source port, host order; ICMP echo: identifier for requests, 0 for replies.
    pub sport: u16,
    /// Destination port, host order; ICMP echo: identifier for replies, 0 for requests.
    pub dport: u16,
    /// TCP flags, the ICMP/ICMPv6 type, or the type of SCTP's first chunk
    /// (0, which is also DATA's, when the packet has no chunk).
    pub l4_flags: u8,
    /// Fragment position.
    pub fragment: Fragment,
    /// Fragment identification (meaningful when `fragment != None`).
    pub frag_id: u32,
    /// Offset of the L4 header from the start of the frame (meaningful when
    /// `fragment != Later`).
    pub l4_offset: u32,
}

impl Packet {
    /// A packet of `family` carrying `proto` between two addresses, with no
    /// ports or flags read yet, not a fragment, L4 offset unknown.
    #[inline(always)]
    pub fn new(family: u8, proto: u8, saddr: Addr, daddr: Addr) -> Self {
        Packet {
            family,
            proto,
            saddr,
            daddr,
            sport: 0,
            dport: 0,
            l4_flags: 0,
            fragment: Fragment::None,
            frag_id: 0,
            l4_offset: 0,
        }
    }

    /// Fragment-state key.
    #[inline(always)]
    pub fn frag_key(&self, ifindex: u32, dir: u8) -> FragKey {
        FragKey {
            saddr: self.saddr,
            daddr: self.daddr,
            id: self.frag_id,
            ifindex,
            proto: self.proto,
            direction: dir,
            family: self.family,
            _pad: 0,
        }
    }

    /// The peer's address: the source for ingress, the destination for egress.
    #[inline(always)]
    pub fn peer_addr(&self, dir: u8) -> &Addr {
        if dir == direction::INGRESS {
            &self.saddr
        } else {
            &self.daddr
        }
    }

    /// The port a NetworkPolicy rule is matched against (the destination
    /// port; 0 for protocols without ports).
    #[inline(always)]
    pub fn policy_port(&self) -> u16 {
        if proto::has_ports(self.proto) {
            self.dport
        } else {
            0
        }
    }

    /// Whether this is IPv4.
    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.family == family::V4
    }
}

/// The other direction.
#[inline(always)]
pub const fn opposite(dir: u8) -> u8 {
    if dir == direction::INGRESS {
        direction::EGRESS
    } else {
        direction::INGRESS
    }
}
