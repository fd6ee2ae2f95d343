//! The order of a commit's map operations ([`MapOp`], owned by `state.rs`):
//! how its changes become a sequence the agent can apply one by one while
//! packets flow, such that no intermediate state allows a flow that neither
//! the old nor the new state allows (make before break).
//!
//! # The verdict and what can change it
//!
//! For a local endpoint `E` (ENDPOINTS entry: `ep_id`, isolation flags),
//! direction `d` and peer address `A`, a new flow is allowed iff `E` is not
//! isolated for `d`, or one of the keys `(ep_id, id, d, class)` for `id` in
//! `ids(A) ∪ {ANY}` allows the port, where `ids(A)` = {identity,
//! cidr_identity} of `A`'s ipcache entry (exact, else longest LPM prefix,
//! else WORLD).
//!
//! * A policy entry at its old value only allows what the old state
//!   allows, at its new value only what the new state allows — *as long as
//!   the addresses mapped to its identity are mapped to it in that state
//!   too*. Flags are likewise always old or new. So with an unchanged
//!   ipcache, entries and flags can be written in any order.
//! * The ipcache changes. An identity *gains* an address when the address
//!   maps to it in the new state but not in the old, and *loses* one in the
//!   opposite case ([`Classes`]). The entries of an identity that only
//!   gains must reach their new value before the switch (while they apply
//!   to old addresses only, old and new agree on them); those of an
//!   identity that only loses keep their old value until after it; an
//!   identity that both gains and loses is narrowed to `old ∩ new` before
//!   the switch and set to its new value after (the only case where one
//!   entry gets two writes).
//! * LPM prefixes are added longest first and removed shortest first, so
//!   every address resolves to either its old or its new region at every
//!   step (never to a third one).
//! * Identities, endpoint ids and portset ids freed by a commit are not
//!   reused within it, so an id never means two things in one diff.
//!
//! # Order
//!
//! 1. `PortsetUpsert` of new bitmaps (nothing references them yet).
//! 2. `EndpointRemove` of gone endpoints; endpoint updates that only clear
//!    bits (losing isolation is what the new state wants; early is kindest).
//! 3. Policy writes that widen (new keys, grown sets) for identities with
//!    unchanged addresses; every write of gain-only identities; the
//!    `old ∩ new` narrowing of gain-and-lose identities.
//! 4. Ipcache: LPM adds (longest first), exact upserts, exact removes, LPM
//!    removes (shortest first).
//! 5. Policy writes of lose-only identities; final values of gain-and-lose
//!    identities.
//! 6. Other endpoint upserts (new endpoints, isolation set), after the
//!    entries they need.
//! 7. Policy removals and narrowings for identities with unchanged
//!    addresses (after whatever replaces them is in).
//! 8. `PortsetRemove` of unused bitmaps.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_common::{IpcacheValue, PolicyKey, PolicyValue};

use crate::ports::PortSet;
use crate::portsets::Portsets;
use crate::state::{DesiredState, Endpoint, MapOp, PodRef};

/// The ordered operations of one commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// [`crate::Compiler::revision`] after this diff (unchanged if `ops`
    /// is empty).
    pub revision: u64,
    /// Operations, to be applied in order.
    pub ops: Vec<MapOp>,
}

/// The changed entries of a commit, `(key, old, new)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes {
    pub(crate) endpoints: Vec<(PodRef, Option<Endpoint>, Option<Endpoint>)>,
    pub(crate) policy: Vec<(PolicyKey, Option<PortSet>, Option<PortSet>)>,
    pub(crate) exact: Vec<(IpAddr, Option<IpcacheValue>, Option<IpcacheValue>)>,
    pub(crate) lpm: Vec<(IpNet, Option<IpcacheValue>, Option<IpcacheValue>)>,
}

/// Identities whose set of addresses grows or shrinks in a commit (both
/// over-approximated: an identity missing from a set really does not gain,
/// resp. lose, any address).
#[derive(Debug, Default)]
pub(crate) struct Classes {
    pub(crate) gain: HashSet<u32>,
    pub(crate) lose: HashSet<u32>,
}

impl Classes {
    /// Computes the classes from the ipcache changes; `old` is the state
    /// before the commit.
    pub(crate) fn of(changes: &Changes, old: &DesiredState) -> Classes {
        let mut c = Classes::default();
        for (_, o, n) in &changes.exact {
            match (o, n) {
                (Some(o), Some(n)) => {
                    let (oi, ni) = ([o.identity, o.cidr_identity], [n.identity, n.cidr_identity]);
                    c.lose.extend(oi.iter().filter(|i| !ni.contains(i)));
                    c.gain.extend(ni.iter().filter(|i| !oi.contains(i)));
                }
                // The cidr side of an added or removed exact entry equals the
                // LPM fallback unless prefixes containing the address change;
                // those are classified below.
                (Some(o), None) => {
                    c.lose.insert(o.identity);
                }
                (None, Some(n)) => {
                    c.gain.insert(n.identity);
                }
                (None, None) => {}
            }
        }
        let removed: HashSet<IpNet> = changes
            .lpm
            .iter()
            .filter(|(_, o, n)| o.is_some() && n.is_none())
            .map(|(p, _, _)| *p)
            .collect();
        for (net, o, n) in &changes.lpm {
            if let Some(o) = o {
                c.lose.insert(o.identity);
            }
            if let Some(n) = n {
                c.gain.insert(n.identity);
            }
            // Prefixes present before and after that contain `net` lose the
            // addresses of an added `net` and gain those of a removed one.
            for len in 0..net.prefix_len() {
                let Ok(sup) = IpNet::new(net.network(), len).map(|s| s.trunc()) else {
                    continue;
                };
                if removed.contains(&sup) {
                    continue;
                }
                if let Some(v) = old.lpm(&sup) {
                    if n.is_some() {
                        c.lose.insert(v.identity);
                    }
                    if o.is_some() {
                        c.gain.insert(v.identity);
                    }
                }
            }
        }
        c
    }
}

fn write(key: PolicyKey, value: Option<PolicyValue>) -> MapOp {
    match value {
        Some(value) => MapOp::PolicyUpsert { key, value },
        None => MapOp::PolicyRemove { key },
    }
}

fn nonempty(s: PortSet) -> Option<PortSet> {
    if s.is_empty() { None } else { Some(s) }
}

/// Orders the changes into operations, applies them to `state`, and
/// maintains the portset registry.
pub(crate) fn build(
    changes: Changes,
    state: &mut DesiredState,
    portsets: &mut Portsets,
) -> Vec<MapOp> {
    let classes = Classes::of(&changes, state);
    let mut pre = Vec::new();
    let mut post = Vec::new();
    let mut late = Vec::new();
    let mut transient = Vec::new();
    let mut released = Vec::new();
    for (key, old, new) in &changes.policy {
        // An exhausted portset space leaves the entry out (fail closed).
        let new_v = new.as_ref().and_then(|s| portsets.acquire(s));
        if let Some(v) = state.policy.get(key) {
            released.push(*v);
        }
        let id = key.identity;
        let (gain, lose) = (classes.gain.contains(&id), classes.lose.contains(&id));
        if gain && lose {
            let mid = match (old, new) {
                (Some(a), Some(b)) => nonempty(a.intersection(b)),
                _ => None,
            };
            if mid != *old {
                let mid_v = mid.as_ref().and_then(|m| portsets.acquire(m));
                if let Some(v) = mid_v {
                    transient.push(v);
                }
                pre.push(write(*key, mid_v));
            }
            if *new != mid {
                post.push(write(*key, new_v));
            }
        } else if gain {
            pre.push(write(*key, new_v));
        } else if lose {
            post.push(write(*key, new_v));
        } else {
            let widens = match (old, new) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(o), Some(n)) => !n.is_subset(o),
            };
            if widens {
                pre.push(write(*key, new_v))
            } else {
                late.push(write(*key, new_v))
            }
        }
    }
    for v in released.iter().chain(transient.iter()) {
        portsets.release(v);
    }

    let mut ep_early = Vec::new();
    let mut ep_late = Vec::new();
    for (pod, old, new) in changes.endpoints {
        match (old, new) {
            (Some(o), None) => ep_early.push(MapOp::EndpointRemove {
                pod,
                ep_id: o.ep_id,
            }),
            (Some(o), Some(n)) if o.ep_id == n.ep_id && n.flags & !o.flags == 0 => {
                ep_early.push(MapOp::EndpointUpsert { pod, endpoint: n })
            }
            (_, Some(n)) => ep_late.push(MapOp::EndpointUpsert { pod, endpoint: n }),
            (None, None) => {}
        }
    }

    let mut lpm_add: Vec<(IpNet, IpcacheValue)> = changes
        .lpm
        .iter()
        .filter_map(|(p, _, n)| n.map(|v| (*p, v)))
        .collect();
    lpm_add.sort_by_key(|(p, _)| (std::cmp::Reverse(p.prefix_len()), *p));
    let mut lpm_del: Vec<IpNet> = changes
        .lpm
        .iter()
        .filter(|(_, o, n)| o.is_some() && n.is_none())
        .map(|(p, _, _)| *p)
        .collect();
    lpm_del.sort_by_key(|p| (p.prefix_len(), *p));

    let mut ops: Vec<MapOp> = portsets
        .take_created()
        .into_iter()
        .map(|(id, ports)| MapOp::PortsetUpsert { id, ports })
        .collect();
    ops.extend(ep_early);
    ops.extend(pre);
    ops.extend(
        lpm_add
            .into_iter()
            .map(|(prefix, value)| MapOp::IpcacheLpmUpsert { prefix, value }),
    );
    for (addr, _, n) in &changes.exact {
        if let Some(value) = n {
            ops.push(MapOp::IpcacheExactUpsert {
                addr: *addr,
                value: *value,
            });
        }
    }
    for (addr, _, n) in &changes.exact {
        if n.is_none() {
            ops.push(MapOp::IpcacheExactRemove { addr: *addr });
        }
    }
    ops.extend(
        lpm_del
            .into_iter()
            .map(|prefix| MapOp::IpcacheLpmRemove { prefix }),
    );
    ops.extend(post);
    ops.extend(ep_late);
    ops.extend(late);
    ops.extend(
        portsets
            .sweep()
            .into_iter()
            .map(|id| MapOp::PortsetRemove { id }),
    );
    portsets.flush();
    for op in &ops {
        state.apply(op);
    }
    ops
}
