//! "May this peer reach this endpoint on this protocol and port?" A fixed
//! sequence of at most three hash lookups (peer identity, peer CIDR
//! identity, any peer), independent of the number of policies, rules,
//! identities or CIDRs; the port is checked against an inclusive range or a
//! 64 Ki-bit bitmap, so `endPort` ranges are exact whatever their alignment.

use palisade_common::{IDENTITY_ANY, IpcacheValue, PolicyKey, PolicyValue, proto};

use crate::{POLICY, PORTSETS};

/// Whether entries of `view` allow IP protocol `ip_proto` to destination
/// port `port` (0 for protocols without ports) between endpoint `ep_id` and
/// `peer` in `dir`.
#[inline(always)]
pub fn allows(ep_id: u32, dir: u8, view: u8, peer: &IpcacheValue, ip_proto: u8, port: u16) -> bool {
    let mut key = PolicyKey {
        ep_id,
        identity: peer.identity,
        direction: dir,
        proto: proto::policy_class(ip_proto),
        view,
        _pad: 0,
    };
    if entry_allows(&key, port) {
        return true;
    }
    if peer.cidr_identity != peer.identity {
        key.identity = peer.cidr_identity;
        if entry_allows(&key, port) {
            return true;
        }
    }
    key.identity = IDENTITY_ANY;
    entry_allows(&key, port)
}

#[inline(always)]
fn entry_allows(key: &PolicyKey, port: u16) -> bool {
    let Some(v) = (unsafe { POLICY.get(key) }) else {
        return false;
    };
    let v: PolicyValue = *v;
    if v.portset == 0 {
        return v.port_lo <= port && port <= v.port_hi;
    }
    match unsafe { PORTSETS.get(&v.portset) } {
        Some(bitmap) => {
            let word =
                bitmap.words[(port >> 6) as usize & (palisade_common::PORT_BITMAP_WORDS - 1)];
            (word >> (port & 63)) & 1 == 1
        }
        // A dangling reference allows nothing (fail closed).
        None => false,
    }
}
