//! Constants of the wire formats the datapath reads: header lengths,
//! ethertypes, TCP flag bits and SCTP chunk types.

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// IPv4 ethertype.
pub const ETH_P_IP: u16 = 0x0800;
/// IPv6 ethertype.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// ARP ethertype.
pub const ETH_P_ARP: u16 = 0x0806;
/// IPv4 header length without options.
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HLEN: usize = 40;
/// TCP header length without options.
pub const TCP_HLEN: usize = 20;
/// UDP header length.
pub const UDP_HLEN: usize = 8;
/// SCTP common header length (ports, verification tag, checksum).
pub const SCTP_HLEN: usize = 12;

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// SCTP chunk types (RFC 9260, section 3.2: the first byte of a chunk).
pub mod sctp_chunk {
    /// INIT: opens an association (section 3.3.2); it is never bundled
    /// with other chunks, so it is the first chunk of its packet.
    pub const INIT: u8 = 1;
    /// INIT ACK: the answer to an INIT (section 3.3.3).
    pub const INIT_ACK: u8 = 2;
}
