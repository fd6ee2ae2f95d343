//! Builds Ethernet frames byte by byte for BPF_PROG_TEST_RUN and raw
//! injection: IPv4 (with options and fragments), IPv6 (with extension
//! headers and fragments), TCP, UDP, SCTP, ICMP, ICMPv6, ARP, and truncated
//! or malformed variants. Transport checksums are left zero (the datapath
//! does not verify them); the IPv4 header checksum is computed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits.
pub mod tcp {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// SCTP chunk types (RFC 9260, section 3.2).
pub mod sctp {
    /// DATA.
    pub const DATA: u8 = 0;
    /// INIT: opens an association.
    pub const INIT: u8 = 1;
    /// INIT ACK.
    pub const INIT_ACK: u8 = 2;
    /// SACK.
    pub const SACK: u8 = 3;
    /// ABORT.
    pub const ABORT: u8 = 6;
    /// SHUTDOWN.
    pub const SHUTDOWN: u8 = 7;
    /// COOKIE ECHO.
    pub const COOKIE_ECHO: u8 = 10;
}

/// An IPv6 extension header to insert before the transport header.
#[derive(Clone, Debug)]
pub enum Ext {
    /// Hop-by-hop options (next header 0) with `n` 8-byte units.
    HopByHop(u8),
    /// Routing header (43).
    Routing(u8),
    /// Destination options (60).
    DestOpts(u8),
    /// Authentication header (51) with `n` 4-byte units beyond the first 8 bytes.
    Auth(u8),
    /// Fragment header (44): offset in 8-byte units, more-fragments flag, id.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext {
    fn code(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::Routing(_) => 43,
            Ext::DestOpts(_) => 60,
            Ext::Auth(_) => 51,
            Ext::Fragment { .. } => 44,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop(n) | Ext::Routing(n) | Ext::DestOpts(n) => {
                let mut b = vec![0u8; (*n as usize + 1) * 8];
                b[0] = next;
                b[1] = *n;
                if let Ext::HopByHop(_) | Ext::DestOpts(_) = self {
                    // PadN filling the rest.
                    b[2] = 1;
                    b[3] = (b.len() - 4) as u8;
                }
                b
            }
            Ext::Auth(n) => {
                let mut b = vec![0u8; (*n as usize + 2) * 4];
                b[0] = next;
                b[1] = *n;
                b
            }
            Ext::Fragment { offset, more, id } => {
                let mut b = vec![0u8; 8];
                b[0] = next;
                let v = (offset << 3) | u16::from(*more);
                b[2..4].copy_from_slice(&v.to_be_bytes());
                b[4..8].copy_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

/// The transport part of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    /// TCP with flags.
    Tcp { sport: u16, dport: u16, flags: u8 },
    /// UDP.
    Udp { sport: u16, dport: u16 },
    /// SCTP common header, then a first chunk of this type (an INIT
    /// chunk with its fixed fields for [`sctp::INIT`], a bare 4-byte chunk
    /// header otherwise), or no chunk at all (`None`).
    Sctp {
        sport: u16,
        dport: u16,
        chunk: Option<u8>,
    },
    /// ICMP or ICMPv6 (chosen by family) with type, code and identifier;
    /// `quote` is the IP packet an error message carries.
    Icmp {
        ty: u8,
        code: u8,
        id: u16,
        quote: Vec<u8>,
    },
    /// Any other protocol number with a raw payload.
    Raw { proto: u8, payload: Vec<u8> },
}

impl L4 {
    /// IP protocol number (ICMP vs ICMPv6 decided by `v6`).
    pub fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Sctp { .. } => 132,
            L4::Icmp { .. } => {
                if v6 {
                    58
                } else {
                    1
                }
            }
            L4::Raw { proto, .. } => *proto,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut b = vec![0u8; 20];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..8].copy_from_slice(&1u32.to_be_bytes());
                b[12] = 5 << 4;
                b[13] = *flags;
                b[14..16].copy_from_slice(&64240u16.to_be_bytes());
                b
            }
            L4::Udp { sport, dport } => {
                let mut b = vec![0u8; 8];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..6].copy_from_slice(&8u16.to_be_bytes());
                b
            }
            L4::Sctp {
                sport,
                dport,
                chunk,
            } => {
                let mut b = vec![0u8; 12];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..8].copy_from_slice(&0x0bad_cafeu32.to_be_bytes());
                match *chunk {
                    None => {}
                    Some(sctp::INIT) => {
                        // INIT chunk: type 1, length 20, initiate tag,
                        // a_rwnd, streams, TSN; an INIT's packet carries
                        // verification tag 0.
                        b[4..8].fill(0);
                        b.resize(12 + 20, 0);
                        b[12] = sctp::INIT;
                        b[14..16].copy_from_slice(&20u16.to_be_bytes());
                        b[16..20].copy_from_slice(&0x1234_5678u32.to_be_bytes());
                        b[20..24].copy_from_slice(&65535u32.to_be_bytes());
                        b[24..26].copy_from_slice(&1u16.to_be_bytes());
                        b[26..28].copy_from_slice(&1u16.to_be_bytes());
                    }
                    Some(ty) => b.extend_from_slice(&[ty, 0, 0, 4]),
                }
                b
            }
            L4::Icmp {
                ty,
                code,
                id,
                quote,
            } => {
                let mut b = vec![0u8; 8];
                b[0] = *ty;
                b[1] = *code;
                b[4..6].copy_from_slice(&id.to_be_bytes());
                b.extend_from_slice(quote);
                b
            }
            L4::Raw { payload, .. } => payload.clone(),
        }
    }
}

/// The byte payload is filled with.
pub const PAYLOAD_FILL: u8 = 0xab;

/// A packet description that renders to bytes.
#[derive(Clone, Debug)]
pub struct PacketSpec {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport.
    pub l4: L4,
    /// IPv4 options (padded to 4 bytes).
    pub ipv4_options: Vec<u8>,
    /// IPv4 fragment: (id, offset in 8-byte units, more fragments).
    pub ipv4_fragment: Option<(u16, u16, bool)>,
    /// IPv6 extension headers, in order.
    pub ipv6_ext: Vec<Ext>,
    /// Bytes of payload after the transport header.
    pub payload: usize,
    /// Omit the transport header (a later fragment carries none).
    pub no_l4: bool,
}

impl PacketSpec {
    /// A packet with defaults.
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        PacketSpec {
            src,
            dst,
            l4,
            ipv4_options: Vec::new(),
            ipv4_fragment: None,
            ipv6_ext: Vec::new(),
            payload: 0,
            no_l4: false,
        }
    }

    /// TCP.
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Tcp {
                sport,
                dport,
                flags,
            },
        )
    }

    /// UDP.
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Udp { sport, dport })
    }

    /// SCTP INIT.
    pub fn sctp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::sctp_chunk(src, dst, sport, dport, Some(sctp::INIT))
    }

    /// SCTP with this first chunk type (`None`: the common header only).
    pub fn sctp_chunk(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, chunk: Option<u8>) -> Self {
        Self::new(
            src,
            dst,
            L4::Sctp {
                sport,
                dport,
                chunk,
            },
        )
    }

    /// The type of the first SCTP chunk, read as a receiver would: the
    /// byte after the 12-byte common header, if the packet has one (the
    /// payload filler when no chunk was asked for). `None` for other
    /// protocols, SCTP without a byte there and packets without a
    /// transport header.
    pub fn sctp_first_chunk(&self) -> Option<u8> {
        match &self.l4 {
            L4::Sctp { chunk, .. } if !self.no_l4 => {
                chunk.or((self.payload > 0).then_some(PAYLOAD_FILL))
            }
            _ => None,
        }
    }

    /// ICMP echo request (v4 type 8, v6 type 128).
    pub fn ping(src: IpAddr, dst: IpAddr, id: u16) -> Self {
        let ty = if src.is_ipv6() { 128 } else { 8 };
        Self::new(
            src,
            dst,
            L4::Icmp {
                ty,
                code: 0,
                id,
                quote: Vec::new(),
            },
        )
    }

    /// The IP packet (no Ethernet header).
    pub fn ip_bytes(&self) -> Vec<u8> {
        let v6 = self.src.is_ipv6();
        let mut l4 = if self.no_l4 {
            Vec::new()
        } else {
            self.l4.bytes()
        };
        l4.extend(std::iter::repeat_n(PAYLOAD_FILL, self.payload));
        let proto = self.l4.proto(v6);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ipv4(s, d, proto, &self.ipv4_options, self.ipv4_fragment, &l4)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, proto, &self.ipv6_ext, &l4),
            _ => panic!("mixed address families"),
        }
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let ethertype = if self.src.is_ipv6() { 0x86dd } else { 0x0800 };
        ethernet(ethertype, &self.ip_bytes())
    }
}

/// Wraps an L3 payload in an Ethernet header.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP request frame.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
    a.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    ethernet(0x0806, &a)
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    fragment: Option<(u16, u16, bool)>,
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let hlen = 20 + opts.len();
    let total = hlen + payload.len();
    let mut h = vec![0u8; 20];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let (id, off, more) = fragment.unwrap_or((0x4242, 0, false));
    h[4..6].copy_from_slice(&id.to_be_bytes());
    let frag = (off & 0x1fff)
        | if more { 0x2000 } else { 0 }
        | if fragment.is_none() { 0x4000 } else { 0 };
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h.extend_from_slice(&opts);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 packet with extension headers.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, ext: &[Ext], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, e) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map(Ext::code).unwrap_or(proto);
        body.extend(e.bytes(next));
    }
    body.extend_from_slice(payload);
    let first = ext.first().map(Ext::code).unwrap_or(proto);
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    h[6] = first;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend(body);
    h
}
