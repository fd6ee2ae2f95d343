//! IP fragments: remember allowed first fragments so later fragments of the
//! same datagram pass; later fragments without state are the caller's to drop.

use palisade_common::FragValue;

use crate::{FRAGS, packet::Packet};

/// Records that the datagram of first fragment `pkt` was allowed.
#[inline(always)]
pub fn remember(pkt: &Packet, ifindex: u32, dir: u8, now: u64, timeout_ns: u64) {
    let v = FragValue {
        expires_ns: now + timeout_ns,
        sport: pkt.sport,
        dport: pkt.dport,
        _pad: 0,
    };
    let _ = FRAGS.insert(&pkt.frag_key(ifindex, dir), &v, 0);
}

/// The ports of the allowed datagram a later fragment `pkt` belongs to.
#[inline(always)]
pub fn lookup(pkt: &Packet, ifindex: u32, dir: u8, now: u64) -> Option<(u16, u16)> {
    let v = unsafe { FRAGS.get(&pkt.frag_key(ifindex, dir)) }?;
    if v.expires_ns < now {
        return None;
    }
    Some((v.sport, v.dport))
}
