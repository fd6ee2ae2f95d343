//! Byte-level helpers shared by probes and raw-packet tests: the Internet
//! checksum, ICMP echo messages, stripping the IPv4 header raw sockets
//! deliver, and plain IPv4/IPv6/UDP builders for crafting packets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 "more fragments" flag, for [`ipv4_packet`]'s `flags_fragment`.
pub const IPV4_MF: u16 = 0x2000;
/// IPv4 "don't fragment" flag.
pub const IPV4_DF: u16 = 0x4000;

/// ICMPv4 echo request type.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMPv4 echo reply type.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request type.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply type.
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// RFC 1071 Internet checksum of `data` (ones' complement of the ones'
/// complement sum), ready to store big-endian.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request for `dst`'s family. The ICMPv4 checksum is filled
/// in; for ICMPv6 the kernel computes it on raw sockets.
pub fn icmp_echo_request(dst: IpAddr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let kind = match dst {
        IpAddr::V4(_) => ICMP_ECHO_REQUEST,
        IpAddr::V6(_) => ICMPV6_ECHO_REQUEST,
    };
    let mut msg = vec![kind, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(payload);
    if dst.is_ipv4() {
        let sum = internet_checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    msg
}

/// Whether `msg` (an ICMP message, IP header already stripped) is the echo
/// reply to [`icmp_echo_request`] with these values.
pub fn is_icmp_echo_reply(v6: bool, msg: &[u8], id: u16, seq: u16, payload: &[u8]) -> bool {
    let kind = if v6 {
        ICMPV6_ECHO_REPLY
    } else {
        ICMP_ECHO_REPLY
    };
    msg.len() >= 8
        && msg[0] == kind
        && msg[1] == 0
        && msg[4..6] == id.to_be_bytes()
        && msg[6..8] == seq.to_be_bytes()
        && &msg[8..] == payload
}

/// The payload after the IPv4 header of a datagram read from a raw IPv4
/// socket, or `None` if it is too short.
pub fn strip_ipv4_header(datagram: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(datagram.first()? & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    datagram.get(ihl..)
}

/// An IPv4 packet: 20-byte header (checksum filled in) + `payload`.
/// `flags_fragment` is the raw flags/fragment-offset field (offset in 8-byte
/// units), e.g. `IPV4_MF | 0` for a first fragment.
pub fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
    flags_fragment: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut pkt = vec![0x45, 0];
    pkt.extend_from_slice(&total.to_be_bytes());
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&flags_fragment.to_be_bytes());
    pkt.extend_from_slice(&[64, protocol, 0, 0]);
    pkt.extend_from_slice(&src.octets());
    pkt.extend_from_slice(&dst.octets());
    let sum = internet_checksum(&pkt);
    pkt[10..12].copy_from_slice(&sum.to_be_bytes());
    pkt.extend_from_slice(payload);
    pkt
}

/// An IPv6 packet: 40-byte header + `payload` (which may start with
/// extension headers; `next_header` names the first).
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut pkt = vec![0x60, 0, 0, 0];
    pkt.extend_from_slice(&len.to_be_bytes());
    pkt.extend_from_slice(&[next_header, 64]);
    pkt.extend_from_slice(&src.octets());
    pkt.extend_from_slice(&dst.octets());
    pkt.extend_from_slice(payload);
    pkt
}

/// A UDP datagram (header + `payload`) with its checksum computed over the
/// pseudo-header of `src` → `dst` (both of one family).
pub fn udp_datagram(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let mut dgram = Vec::with_capacity(usize::from(len));
    dgram.extend_from_slice(&sport.to_be_bytes());
    dgram.extend_from_slice(&dport.to_be_bytes());
    dgram.extend_from_slice(&len.to_be_bytes());
    dgram.extend_from_slice(&[0, 0]);
    dgram.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(40 + dgram.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&len.to_be_bytes());
        }
        _ => {
            pseudo.extend_from_slice(&to_v6(src).octets());
            pseudo.extend_from_slice(&to_v6(dst).octets());
            pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        }
    }
    pseudo.extend_from_slice(&dgram);
    let sum = match internet_checksum(&pseudo) {
        0 => 0xffff,
        sum => sum,
    };
    dgram[6..8].copy_from_slice(&sum.to_be_bytes());
    dgram
}

fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksums_to_zero() {
        let pkt = ipv4_packet(
            "198.18.1.10".parse().unwrap(),
            "198.18.1.11".parse().unwrap(),
            17,
            1,
            IPV4_MF,
            b"x",
        );
        assert_eq!(internet_checksum(&pkt[..20]), 0);
        assert_eq!(pkt.len(), 21);
    }

    #[test]
    fn udp_checksum_verifies() {
        let (s, d): (IpAddr, IpAddr) = (
            "2001:db8:1::a".parse().unwrap(),
            "2001:db8:1::b".parse().unwrap(),
        );
        let dgram = udp_datagram(s, d, 1000, 53, b"abc");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&to_v6(s).octets());
        pseudo.extend_from_slice(&to_v6(d).octets());
        pseudo.extend_from_slice(&(dgram.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(&dgram);
        assert_eq!(internet_checksum(&pseudo), 0);
    }

    #[test]
    fn echo_request_checksums_to_zero() {
        let msg = icmp_echo_request("198.18.1.10".parse().unwrap(), 7, 1, b"hello");
        assert_eq!(internet_checksum(&msg), 0);
        assert_eq!(msg[0], ICMP_ECHO_REQUEST);
    }
}
