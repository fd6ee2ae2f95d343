//! "What do this endpoint's policies say of this peer, protocol and
//! port?" A fixed sequence of at most three hash lookups (peer identity,
//! peer CIDR identity, any peer), independent of the number of policies,
//! rules, priorities, identities or CIDRs. NetworkPolicy ports are checked
//! against an inclusive range or a 64 Ki-bit bitmap, so `endPort` ranges
//! are exact whatever their alignment; ClusterNetworkPolicy codes are an
//! inline range or a segment table searched in `log2(TIER_SEGMENTS)`
//! fixed steps.

use palisade_common::{
    IDENTITY_ANY, IpcacheValue, PolicyKey, PolicyValue, TIER_SEGMENTS, TierCodes, TierTable, proto,
    tier_code,
};

use crate::{POLICY, PORTSETS, TIERSETS};

/// What the entries consulted for a flow say, all tiers together.
#[derive(Clone, Copy, Default)]
pub struct Said {
    /// Some NetworkPolicy entry allows the port.
    pub allowed: bool,
    /// The Admin tier's first matching rule (`tier_code`), 0 if none.
    pub admin: u32,
    /// The Baseline tier's first matching rule, 0 if none.
    pub baseline: u32,
}

/// The key of entries of `view` for `ep_id`, `dir` and IP protocol
/// `ip_proto` (the identity is filled in per lookup).
#[inline(always)]
fn key(ep_id: u32, dir: u8, view: u8, ip_proto: u8) -> PolicyKey {
    PolicyKey {
        ep_id,
        identity: 0,
        direction: dir,
        proto: proto::policy_class(ip_proto),
        view,
        _pad: 0,
    }
}

/// Whether NetworkPolicy entries of `view` allow IP protocol `ip_proto` to
/// destination port `port` (0 for protocols without ports) between
/// endpoint `ep_id` and `peer` in `dir`. Stops at the first entry that
/// allows.
#[inline(always)]
pub fn allows(ep_id: u32, dir: u8, view: u8, peer: &IpcacheValue, ip_proto: u8, port: u16) -> bool {
    let mut key = key(ep_id, dir, view, ip_proto);
    key.identity = peer.identity;
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

/// Everything the entries of `view` say of the flow with a peer of pod
/// identity `identity` and CIDR identity `cidr_identity`, for an endpoint
/// some ClusterNetworkPolicy applies to: every entry is consulted, the
/// NetworkPolicy allows are ORed and each tier's codes give the largest
/// (its first matching rule across the three entries).
#[inline(always)]
pub fn said(
    ep_id: u32,
    dir: u8,
    view: u8,
    identity: u32,
    cidr_identity: u32,
    ip_proto: u8,
    port: u16,
) -> Said {
    let mut key = key(ep_id, dir, view, ip_proto);
    let mut said = Said::default();
    key.identity = identity;
    entry_says(&key, port, &mut said);
    if cidr_identity != identity {
        key.identity = cidr_identity;
        entry_says(&key, port, &mut said);
    }
    key.identity = IDENTITY_ANY;
    entry_says(&key, port, &mut said);
    said
}

#[inline(always)]
fn entry_allows(key: &PolicyKey, port: u16) -> bool {
    match unsafe { POLICY.get(key) } {
        Some(v) => value_allows(v, port),
        None => false,
    }
}

#[inline(always)]
fn entry_says(key: &PolicyKey, port: u16, said: &mut Said) {
    let Some(v) = (unsafe { POLICY.get(key) }) else {
        return;
    };
    if value_allows(v, port) {
        said.allowed = true;
    }
    let codes = codes_of(v, port);
    said.admin = said.admin.max(codes.admin);
    said.baseline = said.baseline.max(codes.baseline);
}

#[inline(always)]
fn value_allows(v: &PolicyValue, port: u16) -> bool {
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

#[inline(always)]
fn codes_of(v: &PolicyValue, port: u16) -> TierCodes {
    if v.tierset == 0 {
        return if v.tier_lo <= port && port <= v.tier_hi {
            v.codes
        } else {
            TierCodes::NONE
        };
    }
    let Some(table) = (unsafe { TIERSETS.get(&v.tierset) }) else {
        // A dangling reference denies ahead of every rule (fail closed).
        return TierCodes {
            admin: tier_code::BOTTOM,
            baseline: tier_code::BOTTOM,
        };
    };
    let found = palisade_tier_search(table as *const TierTable, port as u32);
    TierCodes {
        admin: (found >> 32) as u32,
        baseline: found as u32,
    }
}

/// `TierTable::lookup`: the codes of `port` in `table`, as `admin << 32 |
/// baseline`. A global function: the verifier checks it once, on its own,
/// instead of once per path that reaches a lookup (three per walk), which
/// multiplied the walk's states. The verifier treats the argument as
/// possibly null; it never is (a null table denies ahead of every rule all
/// the same: fail closed).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn palisade_tier_search(table: *const TierTable, port: u32) -> u64 {
    let Some(table) = (unsafe { table.as_ref() }) else {
        return (tier_code::BOTTOM as u64) << 32 | tier_code::BOTTOM as u64;
    };
    let mut lo = 0usize;
    let mut step = TIER_SEGMENTS / 2;
    while step > 0 {
        if table.starts[(lo + step) & (TIER_SEGMENTS - 1)] as u32 <= port {
            lo += step;
        }
        step /= 2;
    }
    let c = table.codes[lo & (TIER_SEGMENTS - 1)];
    (c.admin as u64) << 32 | c.baseline as u64
}
