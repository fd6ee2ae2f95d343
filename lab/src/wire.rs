//! Byte-level helpers shared by probes and raw tests: the Internet checksum,
//! ICMP echo messages and stripping the IPv4 header raw sockets deliver.

use std::net::IpAddr;

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
    let kind = if v6 { ICMPV6_ECHO_REPLY } else { ICMP_ECHO_REPLY };
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
    fn echo_request_checksums_to_zero() {
        let msg = icmp_echo_request("198.18.1.10".parse().unwrap(), 7, 1, b"hello");
        assert_eq!(internet_checksum(&msg), 0);
        assert_eq!(msg[0], ICMP_ECHO_REQUEST);
    }
}
