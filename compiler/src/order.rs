//! Make before break: the one place that orders writes to the maps so
//! that, applied one by one while packets flow, no intermediate state
//! allows a flow that neither the old nor the new contents allow. Used for
//! every commit's incremental diff (`diff.rs`, endpoints by pod) and for
//! the agent's reconcile after a start, from whatever the pinned maps hold
//! (endpoints by host interface, [`reconcile`]).
//!
//! Both contents must agree on what every number means (one numbering,
//! `numbering.rs`): an endpoint id stands for one pod, an identity for one
//! peer set, a portset id for one set of ports.
//!
//! # The verdict and what can change it
//!
//! For an endpoint entry `E` (endpoint id, isolation flags), direction `d`
//! and peer address `A`, a new flow is allowed iff `E` is not isolated for
//! `d`, or one of the keys `(ep_id, id, d, class)` for `id` in `ids(A) ∪
//! {ANY}` allows the port, where `ids(A)` = {identity, cidr_identity} of
//! `A`'s ipcache entry (exact, else longest LPM prefix, else WORLD).
//!
//! * A policy entry at its old value only allows what the old contents
//!   allow, at its new value only what the new contents allow — *as long
//!   as the addresses mapped to its identity are mapped to it in those
//!   contents too, and the endpoint id is consulted where it is in them*.
//!   Flags are likewise always old or new. So with an unchanged ipcache
//!   and unchanged endpoint placement, entries and flags can be written in
//!   any order.
//! * The ipcache changes. An identity *gains* an address when the address
//!   maps to it in the new contents but not in the old, and *loses* one in
//!   the opposite case ([`Classes`]). The entries of an identity that only
//!   gains must reach their new value before the switch (while they apply
//!   to old addresses only, old and new agree on them); those of an
//!   identity that only loses keep their old value until after it; an
//!   identity that both gains and loses is narrowed to `old ∩ new` before
//!   the switch and set to its new value after (the only case where one
//!   entry gets two writes).
//! * LPM prefixes are added longest first and removed shortest first, so
//!   every address resolves to either its old or its new region at every
//!   step (never to a third one).
//! * Endpoint ids on no endpoint entry before are consulted by nobody
//!   until the endpoint upserts: their rows take their final value first.
//!   Endpoint ids on some entry before and on none after (*retiring*: a
//!   pod gone, or an interface switching to another endpoint) are
//!   consulted until their entry goes or switches, which is after the
//!   ipcache switch: their rows keep old values (emptied early for
//!   identities that gain addresses, so old ports never reach new peers)
//!   and change last.
//!
//! # Order
//!
//! 1. Port sets the new values need (the caller's: [`order`] does not
//!    write port sets).
//! 2. Endpoint removals; endpoint updates that only clear bits (losing
//!    isolation is what the new contents want; early is kindest).
//! 3. Policy writes that widen (new keys, grown sets) for identities with
//!    unchanged addresses; every write of gain-only identities; the
//!    `old ∩ new` narrowing of gain-and-lose identities; rows of endpoint
//!    ids nobody consulted before; the emptying of retiring rows of
//!    gaining identities.
//! 4. Ipcache: LPM adds (longest first), exact upserts, exact removes, LPM
//!    removes (shortest first).
//! 5. Policy writes of lose-only identities; final values of gain-and-lose
//!    identities.
//! 6. Other endpoint upserts (new endpoints, isolation set, an entry
//!    switching endpoint id), after the entries they need.
//! 7. Policy removals and narrowings for identities with unchanged
//!    addresses (after whatever replaces them is in); then every other
//!    write to retiring rows.
//! 8. Port sets no longer used (the caller's).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_common::{IpcacheValue, PolicyKey, PolicyValue};

use crate::ports::PortSet;
use crate::state::{EndpointEntry, Tables, Write};

/// One policy key whose value changes, with the ports each value means
/// (`None`: no entry, or an empty set).
#[derive(Clone, Debug)]
pub struct PolicyChange {
    /// The key.
    pub key: PolicyKey,
    /// The value before.
    pub old: Option<PolicyValue>,
    /// The value after (`None`: removed).
    pub new: Option<PolicyValue>,
    /// What `old` allows.
    pub old_ports: Option<PortSet>,
    /// What `new` allows.
    pub new_ports: Option<PortSet>,
}

/// The changed entries between two contents, `(where, old, new)`.
#[derive(Clone, Debug)]
pub struct Changes<K, E> {
    /// Endpoint entries.
    pub endpoints: Vec<(K, Option<E>, Option<E>)>,
    /// Policy entries.
    pub policy: Vec<PolicyChange>,
    /// Exact ipcache entries.
    pub exact: Vec<(IpAddr, Option<IpcacheValue>, Option<IpcacheValue>)>,
    /// LPM ipcache entries.
    pub lpm: Vec<(IpNet, Option<IpcacheValue>, Option<IpcacheValue>)>,
}

impl<K, E> Default for Changes<K, E> {
    fn default() -> Self {
        Changes {
            endpoints: Vec::new(),
            policy: Vec::new(),
            exact: Vec::new(),
            lpm: Vec::new(),
        }
    }
}

/// Identities whose set of addresses grows or shrinks (both
/// over-approximated: an identity missing from a set really does not gain,
/// resp. lose, any address).
#[derive(Debug, Default)]
pub(crate) struct Classes {
    pub(crate) gain: HashSet<u32>,
    pub(crate) lose: HashSet<u32>,
}

impl Classes {
    /// The classes of the ipcache changes; `old` holds the contents before.
    pub(crate) fn of<K: Ord + Clone, E: Clone>(
        changes: &Changes<K, E>,
        old: &Tables<K, E>,
    ) -> Classes {
        let mut c = Classes::default();
        for (_, o, n) in &changes.exact {
            match (o, n) {
                (Some(o), Some(n)) => {
                    let (oi, ni) = ([o.identity, o.cidr_identity], [n.identity, n.cidr_identity]);
                    c.lose.extend(oi.iter().filter(|i| !ni.contains(i)));
                    c.gain.extend(ni.iter().filter(|i| !oi.contains(i)));
                }
                // The cidr side of an added or removed exact entry equals
                // the LPM fallback unless prefixes containing the address
                // change; those are classified below.
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

fn write<K, E>(key: PolicyKey, value: Option<PolicyValue>) -> Write<K, E> {
    match value {
        Some(value) => Write::PolicyUpsert { key, value },
        None => Write::PolicyRemove { key },
    }
}

/// Orders `changes` (from `old` to contents whose endpoint entries use the
/// ids `placed_new`) into writes, port sets excepted (see the module
/// documentation). `changes.policy` must hold every row of a retiring
/// endpoint id, changed or not. `narrowed` gives the value of a transient `old ∩ new`
/// set (`None`: none can be had, the entry is removed meanwhile, which
/// only denies).
pub fn order<K: Ord + Clone, E: EndpointEntry + Clone>(
    changes: Changes<K, E>,
    old: &Tables<K, E>,
    placed_new: &HashSet<u32>,
    narrowed: &mut dyn FnMut(&PortSet) -> Option<PolicyValue>,
) -> Vec<Write<K, E>> {
    let classes = Classes::of(&changes, old);
    let placed_old: HashSet<u32> = old.endpoints.values().map(E::ep_id).collect();
    let (mut pre, mut post, mut late, mut retire) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in changes.policy {
        let key = c.key;
        let (gain, lose) = (
            classes.gain.contains(&key.identity),
            classes.lose.contains(&key.identity),
        );
        if placed_old.contains(&key.ep_id) && !placed_new.contains(&key.ep_id) {
            // Retiring: consulted until its entry goes or switches, after
            // the ipcache switch. An identity gaining addresses must not
            // carry old ports to them, so those rows go empty until then.
            if gain && c.old.is_some() {
                pre.push(write(key, None));
                if c.new.is_some() {
                    retire.push(write(key, c.new));
                }
            } else if c.old != c.new {
                retire.push(write(key, c.new));
            }
            continue;
        }
        if !placed_old.contains(&key.ep_id) {
            // Nobody consults these rows before the endpoint upserts.
            if c.old != c.new {
                pre.push(write(key, c.new));
            }
            continue;
        }
        if c.old_ports == c.new_ports {
            // Same ports: only the representation differs (another portset
            // id, written before this): early is safe.
            if c.old != c.new {
                pre.push(write(key, c.new));
            }
            continue;
        }
        if gain && lose {
            let mid = match (&c.old_ports, &c.new_ports) {
                (Some(a), Some(b)) => Some(a.intersection(b)).filter(|s| !s.is_empty()),
                _ => None,
            };
            if mid != c.old_ports {
                pre.push(write(key, mid.as_ref().and_then(&mut *narrowed)));
            }
            if c.new_ports != mid {
                post.push(write(key, c.new));
            }
        } else if gain {
            pre.push(write(key, c.new));
        } else if lose {
            post.push(write(key, c.new));
        } else {
            let widens = match (&c.old_ports, &c.new_ports) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(o), Some(n)) => !n.is_subset(o),
            };
            if widens {
                pre.push(write(key, c.new));
            } else {
                late.push(write(key, c.new));
            }
        }
    }

    let (mut ep_early, mut ep_late) = (Vec::new(), Vec::new());
    for (at, o, n) in changes.endpoints {
        match (o, n) {
            (Some(_), None) => ep_early.push(Write::EndpointRemove { at }),
            (Some(o), Some(n)) if o.ep_id() == n.ep_id() && n.flags() & !o.flags() == 0 => {
                ep_early.push(Write::EndpointUpsert { at, endpoint: n })
            }
            (_, Some(n)) => ep_late.push(Write::EndpointUpsert { at, endpoint: n }),
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

    let mut ops = ep_early;
    ops.append(&mut pre);
    ops.extend(
        lpm_add
            .into_iter()
            .map(|(prefix, value)| Write::IpcacheLpmUpsert { prefix, value }),
    );
    for (addr, _, n) in &changes.exact {
        if let Some(value) = n {
            ops.push(Write::IpcacheExactUpsert {
                addr: *addr,
                value: *value,
            });
        }
    }
    for (addr, _, n) in &changes.exact {
        if n.is_none() {
            ops.push(Write::IpcacheExactRemove { addr: *addr });
        }
    }
    ops.extend(
        lpm_del
            .into_iter()
            .map(|prefix| Write::IpcacheLpmRemove { prefix }),
    );
    ops.append(&mut post);
    ops.append(&mut ep_late);
    ops.append(&mut late);
    ops.append(&mut retire);
    ops
}

type Change<K, V> = (K, Option<V>, Option<V>);

fn compare<K: Ord, V: PartialEq>(
    old: impl Iterator<Item = (K, V)>,
    new: impl Iterator<Item = (K, V)>,
) -> Vec<Change<K, V>> {
    let mut all: BTreeMap<K, (Option<V>, Option<V>)> = BTreeMap::new();
    for (k, v) in old {
        all.entry(k).or_insert((None, None)).0 = Some(v);
    }
    for (k, v) in new {
        all.entry(k).or_insert((None, None)).1 = Some(v);
    }
    all.into_iter()
        .filter(|(_, (o, n))| o != n)
        .map(|(k, (o, n))| (k, o, n))
        .collect()
}

/// The ordered writes from whatever `old` holds to `new` (the agent's
/// reconcile after a start), port sets included: the new ones first,
/// transient `old ∩ new` sets under ids neither contents use, and every
/// port set `new` does not hold last.
pub fn reconcile<K: Ord + Clone, E: EndpointEntry + Clone + PartialEq>(
    old: &Tables<K, E>,
    new: &Tables<K, E>,
) -> Vec<Write<K, E>> {
    let nonempty = |s: Option<PortSet>| s.filter(|s| !s.is_empty());
    let keys: BTreeSet<PolicyKey> = old
        .policy
        .keys()
        .chain(new.policy.keys())
        .copied()
        .collect();
    let mut changes = Changes {
        endpoints: compare(
            old.endpoints.iter().map(|(k, v)| (k.clone(), v.clone())),
            new.endpoints.iter().map(|(k, v)| (k.clone(), v.clone())),
        ),
        policy: Vec::new(),
        exact: compare(old.exact_entries(), new.exact_entries()),
        lpm: compare(old.lpm_entries(), new.lpm_entries()),
    };
    let placed_new: HashSet<u32> = new.endpoints.values().map(E::ep_id).collect();
    let retiring: HashSet<u32> = old
        .endpoints
        .values()
        .map(E::ep_id)
        .filter(|id| !placed_new.contains(id))
        .collect();
    for key in keys {
        let (o, n) = (old.policy.get(&key).copied(), new.policy.get(&key).copied());
        let old_ports = nonempty(o.and_then(|v| old.value_ports(&v)));
        let new_ports = nonempty(n.and_then(|v| new.value_ports(&v)));
        // The same value may name a port set whose bitmap differs between
        // the contents: compare what they mean too. Unchanged rows of a
        // retiring endpoint id are changes too: they may have to go empty
        // while the ipcache switches (see `order`).
        if o != n || old_ports != new_ports || retiring.contains(&key.ep_id) {
            changes.policy.push(PolicyChange {
                key,
                old: o,
                new: n,
                old_ports,
                new_ports,
            });
        }
    }

    // Port sets usable meanwhile: those of both contents, and transient
    // ones above every id either uses.
    let mut known: BTreeMap<PortSet, u32> = BTreeMap::new();
    for (id, set) in old.portsets.iter().chain(new.portsets.iter()) {
        known.entry(set.clone()).or_insert(*id);
    }
    let mut next = old
        .portsets
        .keys()
        .chain(new.portsets.keys())
        .max()
        .map_or(1, |m| m.saturating_add(1));
    let mut transient: BTreeMap<PortSet, u32> = BTreeMap::new();
    let mut narrowed = |set: &PortSet| -> Option<PolicyValue> {
        if let Some((lo, hi)) = set.as_single_range() {
            return Some(PolicyValue::range(lo, hi));
        }
        let id = match known.get(set).or_else(|| transient.get(set)) {
            Some(id) => *id,
            None if next == u32::MAX => return None,
            None => {
                transient.insert(set.clone(), next);
                next += 1;
                next - 1
            }
        };
        Some(PolicyValue {
            port_lo: 0,
            port_hi: 0,
            portset: id,
        })
    };
    let middle = order(changes, old, &placed_new, &mut narrowed);

    let mut ops: Vec<Write<K, E>> = Vec::new();
    for (id, set) in &new.portsets {
        if old.portsets.get(id) != Some(set) {
            ops.push(Write::PortsetUpsert {
                id: *id,
                ports: set.clone(),
            });
        }
    }
    for (set, id) in &transient {
        ops.push(Write::PortsetUpsert {
            id: *id,
            ports: set.clone(),
        });
    }
    ops.extend(middle);
    for id in old.portsets.keys() {
        if !new.portsets.contains_key(id) {
            ops.push(Write::PortsetRemove { id: *id });
        }
    }
    for id in transient.values() {
        ops.push(Write::PortsetRemove { id: *id });
    }
    ops
}
