//! The SCTP wire format the lab needs: the common header with its CRC32c
//! checksum, INIT and INIT-ACK chunks (RFC 9260 sections 3 and 3.3.2-3).
//!
//! The kernel has no SCTP module here, so probes and responders speak these
//! packets over raw `IPPROTO_SCTP` sockets.

/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: i32 = 132;
/// Chunk type INIT.
pub const CHUNK_INIT: u8 = 1;
/// Chunk type INIT ACK.
pub const CHUNK_INIT_ACK: u8 = 2;
/// Chunk type ABORT.
pub const CHUNK_ABORT: u8 = 6;
/// Parameter type State Cookie (in INIT ACK).
pub const PARAM_STATE_COOKIE: u16 = 7;

const COMMON_HEADER_LEN: usize = 12;
/// Length of the fixed part of INIT and INIT ACK chunks, header included.
const INIT_FIXED_LEN: usize = 20;

/// CRC32c (Castagnoli, reflected, polynomial 0x82F63B78) as SCTP uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The first chunk of an SCTP packet with its common header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub vtag: u32,
    /// Type of the first chunk.
    pub chunk_type: u8,
    /// Flags of the first chunk.
    pub chunk_flags: u8,
    /// Value of the first chunk (after its 4-byte header).
    pub chunk_value: &'a [u8],
}

impl Packet<'_> {
    /// The Initiate Tag of an INIT or INIT ACK chunk.
    pub fn initiate_tag(&self) -> Option<u32> {
        if !matches!(self.chunk_type, CHUNK_INIT | CHUNK_INIT_ACK) {
            return None;
        }
        Some(u32::from_be_bytes(
            self.chunk_value.get(..4)?.try_into().ok()?,
        ))
    }

    /// The State Cookie parameter of an INIT ACK chunk.
    pub fn state_cookie(&self) -> Option<&[u8]> {
        if self.chunk_type != CHUNK_INIT_ACK {
            return None;
        }
        let mut params = self.chunk_value.get(INIT_FIXED_LEN - 4..)?;
        // Bounded: each step consumes at least 4 bytes.
        while params.len() >= 4 {
            let kind = u16::from_be_bytes([params[0], params[1]]);
            let len = usize::from(u16::from_be_bytes([params[2], params[3]]));
            if len < 4 || len > params.len() {
                return None;
            }
            if kind == PARAM_STATE_COOKIE {
                return Some(&params[4..len]);
            }
            params = params.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        }
        None
    }
}

/// Parses an SCTP packet (starting at the common header) and checks its
/// CRC32c; `None` if it is truncated or the checksum is wrong.
pub fn parse(bytes: &[u8]) -> Option<Packet<'_>> {
    if bytes.len() < COMMON_HEADER_LEN + 4 {
        return None;
    }
    let stored = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let mut copy = bytes.to_vec();
    copy[8..12].fill(0);
    if crc32c(&copy) != stored {
        return None;
    }
    let chunk_len = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if chunk_len < 4 || COMMON_HEADER_LEN + chunk_len > bytes.len() {
        return None;
    }
    Some(Packet {
        src_port: u16::from_be_bytes([bytes[0], bytes[1]]),
        dst_port: u16::from_be_bytes([bytes[2], bytes[3]]),
        vtag: u32::from_be_bytes(bytes[4..8].try_into().ok()?),
        chunk_type: bytes[12],
        chunk_flags: bytes[13],
        chunk_value: &bytes[COMMON_HEADER_LEN + 4..COMMON_HEADER_LEN + chunk_len],
    })
}

/// An INIT from `src_port` to `dst_port` offering `initiate_tag`.
pub fn init(src_port: u16, dst_port: u16, initiate_tag: u32) -> Vec<u8> {
    let chunk = init_chunk(CHUNK_INIT, initiate_tag, &[]);
    packet(src_port, dst_port, 0, &chunk)
}

/// The INIT ACK answering `init`: ports swapped, verification tag = the
/// INIT's Initiate Tag, our own `initiate_tag`, and `cookie` as State Cookie.
/// `None` if `init` is not an INIT.
pub fn init_ack(init: &Packet<'_>, initiate_tag: u32, cookie: &[u8]) -> Option<Vec<u8>> {
    let peer_tag = init
        .initiate_tag()
        .filter(|_| init.chunk_type == CHUNK_INIT)?;
    let param_len = u16::try_from(4 + cookie.len()).ok()?;
    let mut param = Vec::with_capacity(usize::from(param_len).next_multiple_of(4));
    param.extend_from_slice(&PARAM_STATE_COOKIE.to_be_bytes());
    param.extend_from_slice(&param_len.to_be_bytes());
    param.extend_from_slice(cookie);
    param.resize(param.len().next_multiple_of(4), 0);
    let chunk = init_chunk(CHUNK_INIT_ACK, initiate_tag, &param);
    Some(packet(init.dst_port, init.src_port, peer_tag, &chunk))
}

fn init_chunk(kind: u8, initiate_tag: u32, params: &[u8]) -> Vec<u8> {
    // The chunk length excludes the final padding; parameters are padded
    // already, so it is the full length here.
    let len = u16::try_from(INIT_FIXED_LEN + params.len()).unwrap_or(u16::MAX);
    let mut chunk = vec![kind, 0];
    chunk.extend_from_slice(&len.to_be_bytes());
    chunk.extend_from_slice(&initiate_tag.to_be_bytes());
    chunk.extend_from_slice(&65_535u32.to_be_bytes()); // a_rwnd
    chunk.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    chunk.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    chunk.extend_from_slice(&initiate_tag.to_be_bytes()); // initial TSN
    chunk.extend_from_slice(params);
    chunk
}

fn packet(src_port: u16, dst_port: u16, vtag: u32, chunk: &[u8]) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(COMMON_HEADER_LEN + chunk.len());
    pkt.extend_from_slice(&src_port.to_be_bytes());
    pkt.extend_from_slice(&dst_port.to_be_bytes());
    pkt.extend_from_slice(&vtag.to_be_bytes());
    pkt.extend_from_slice(&[0; 4]);
    pkt.extend_from_slice(chunk);
    // The kernel stores the CRC in little-endian byte order (sctp_checksum.h).
    let crc = crc32c(&pkt);
    pkt[8..12].copy_from_slice(&crc.to_le_bytes());
    pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn init_and_init_ack_round_trip() {
        let raw = init(40_000, 9000, 0xdead_beef);
        let init_pkt = parse(&raw).expect("valid INIT");
        assert_eq!(init_pkt.chunk_type, CHUNK_INIT);
        assert_eq!(init_pkt.vtag, 0);
        assert_eq!(init_pkt.initiate_tag(), Some(0xdead_beef));

        let ack_raw = init_ack(&init_pkt, 0x1234_5678, b"web").expect("INIT ACK");
        let ack = parse(&ack_raw).expect("valid INIT ACK");
        assert_eq!((ack.src_port, ack.dst_port), (9000, 40_000));
        assert_eq!(ack.vtag, 0xdead_beef);
        assert_eq!(ack.initiate_tag(), Some(0x1234_5678));
        assert_eq!(ack.state_cookie(), Some(&b"web"[..]));
    }

    #[test]
    fn corrupted_packet_is_rejected() {
        let mut raw = init(1, 2, 3);
        raw[20] ^= 1;
        assert_eq!(parse(&raw), None);
    }
}
