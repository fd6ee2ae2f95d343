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
//!
//! # Tiers
//!
//! For a direction in which some ClusterNetworkPolicy applies to the
//! endpoint (`TIERED_*` in its old or new flags), the entries of a flow
//! are not ORed but weighed against each other (the earliest rule of a
//! tier wins), so one entry at its new value beside another at its old
//! one could allow what neither contents allow. There every changed entry
//! is first written to a value that says less than both its old and new
//! values (`Verdicts::meet`, see `verdicts.rs`) and only after the ipcache
//! switch to its new value: before that every flow sees old values or
//! meets (no more than the old contents allow), after it new values or
//! meets (no more than the new ones allow). Such an endpoint's flags
//! change between the two (step 3½), while its changed entries hold their
//! meets; if the ipcache changes in the same diff, the entries of the
//! identities that gain or lose addresses are held at
//! `Verdicts::bottom()` meanwhile, so that an address read with its old
//! identities and the new flags (or the reverse) is denied. A retiring
//! row's entry goes to the bottom, not away, where the plain rule empties
//! it; and where a retiring row has no entry for an identity gaining
//! addresses (a pod re-created while an address moves to an identity new
//! to the cluster), one is added at the bottom and removed last: in a
//! tiered direction a missing entry reads "no rule matches", not a drop.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_common::{IpcacheValue, PolicyKey, PolicyValue, endpoint_flags};

use crate::ports::CLASSES;
use crate::state::{EndpointEntry, Tables, Write};
use crate::verdicts::Verdicts;

/// One policy key whose value changes, with what each value says
/// (`None`: no entry, or an entry that says nothing).
#[derive(Clone, Debug)]
pub struct PolicyChange {
    /// The key.
    pub key: PolicyKey,
    /// The value before.
    pub old: Option<PolicyValue>,
    /// The value after (`None`: removed).
    pub new: Option<PolicyValue>,
    /// What `old` says.
    pub old_says: Option<Verdicts>,
    /// What `new` says.
    pub new_says: Option<Verdicts>,
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
/// ids `placed_new`) into writes, port and tier tables excepted (see the
/// module documentation). `changes.policy` must hold every row of a
/// retiring endpoint id, changed or not. `narrowed` gives the value of a
/// transient value (a meet or the bottom; `None`: none can be had, the
/// entry is removed meanwhile, which for a tiered direction is not safe
/// and so only happens when ids are exhausted).
pub fn order<K: Ord + Clone, E: EndpointEntry + Clone>(
    changes: Changes<K, E>,
    old: &Tables<K, E>,
    placed_new: &HashSet<u32>,
    narrowed: &mut dyn FnMut(&Verdicts) -> Option<PolicyValue>,
) -> Vec<Write<K, E>> {
    let classes = Classes::of(&changes, old);
    let placed_old: HashSet<u32> = old.endpoints.values().map(E::ep_id).collect();

    // Directions in which the tiers weigh entries, before or after.
    let mut flags_old: HashMap<u32, u32> = HashMap::new();
    for e in old.endpoints.values() {
        *flags_old.entry(e.ep_id()).or_default() |= e.flags();
    }
    let mut tiered_bits = flags_old.clone();
    let mut flipping: HashSet<u32> = HashSet::new();
    for (_, o, n) in &changes.endpoints {
        if let Some(n) = n {
            *tiered_bits.entry(n.ep_id()).or_default() |= n.flags();
        }
        if let (Some(o), Some(n)) = (o, n)
            && o.ep_id() == n.ep_id()
            && o.flags() != n.flags()
        {
            flipping.insert(n.ep_id());
        }
    }
    let tiered = |ep_id: u32, dir: u8| {
        tiered_bits
            .get(&ep_id)
            .is_some_and(|f| f & endpoint_flags::tiered(dir) != 0)
    };
    flipping.retain(|&ep| tiered(ep, 0) || tiered(ep, 1));

    let (mut pre, mut post, mut late, mut retire) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());

    // Tiered rows whose flags flip while the ipcache moves addresses: the
    // entries of moving identities hold the bottom meanwhile.
    let mut bottomed: HashSet<PolicyKey> = HashSet::new();
    let moving: BTreeSet<u32> = classes.gain.union(&classes.lose).copied().collect();
    if !moving.is_empty() {
        for &ep_id in &flipping {
            for dir in [0u8, 1] {
                if !tiered(ep_id, dir) {
                    continue;
                }
                for &identity in &moving {
                    for proto in CLASSES {
                        bottomed.insert(PolicyKey {
                            ep_id,
                            identity,
                            direction: dir,
                            proto,
                            view: 0,
                            _pad: 0,
                        });
                    }
                }
            }
        }
        let bottom = Verdicts::bottom();
        let mut keys: Vec<&PolicyKey> = bottomed.iter().collect();
        keys.sort();
        for key in keys {
            // Already there (maps cut short in the middle of a diff).
            let hold = narrowed(&bottom);
            if old.policy.get(key).copied() != hold {
                pre.push(write(*key, hold));
            }
        }
    }
    // Retiring rows of tiered directions: where such a row has no entry
    // for an identity gaining addresses, those addresses would read "no
    // rule matches" (the default) once switched, not what the old
    // contents say; they hold the bottom until the endpoint entry goes or
    // switches. (Rows it has are held by the loop below.)
    if !classes.gain.is_empty() {
        let mut retiring: Vec<u32> = placed_old
            .iter()
            .filter(|id| !placed_new.contains(id))
            .copied()
            .collect();
        retiring.sort();
        let mut gaining: Vec<u32> = classes.gain.iter().copied().collect();
        gaining.sort();
        for ep_id in retiring {
            for dir in [0u8, 1] {
                if !tiered(ep_id, dir) {
                    continue;
                }
                for &identity in &gaining {
                    for proto in CLASSES {
                        let key = PolicyKey {
                            ep_id,
                            identity,
                            direction: dir,
                            proto,
                            view: 0,
                            _pad: 0,
                        };
                        if old.policy.contains_key(&key) {
                            continue;
                        }
                        if let Some(hold) = narrowed(&Verdicts::bottom()) {
                            pre.push(write(key, Some(hold)));
                            retire.push(write(key, None));
                        }
                    }
                }
            }
        }
    }
    let changed: HashSet<PolicyKey> = changes.policy.iter().map(|c| c.key).collect();
    let mut restore: Vec<&PolicyKey> = bottomed.iter().filter(|k| !changed.contains(k)).collect();
    restore.sort();
    for key in restore {
        post.push(write(*key, old.policy.get(key).copied()));
    }

    for c in changes.policy {
        let key = c.key;
        let (gain, lose) = (
            classes.gain.contains(&key.identity),
            classes.lose.contains(&key.identity),
        );
        let weighed = tiered(key.ep_id, key.direction);
        if placed_old.contains(&key.ep_id) && !placed_new.contains(&key.ep_id) {
            // Retiring: consulted until its entry goes or switches, after
            // the ipcache switch. An identity gaining addresses must not
            // carry old ports to them, so those rows go empty (tiered: to
            // the bottom) until then.
            if gain && c.old.is_some() {
                let hold = if weighed {
                    narrowed(&Verdicts::bottom())
                } else {
                    None
                };
                if c.old != hold {
                    pre.push(write(key, hold));
                }
                if c.new.is_some() || hold.is_some() {
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
        if bottomed.contains(&key) {
            post.push(write(key, c.new));
            continue;
        }
        if c.old_says == c.new_says {
            // Same meaning: only the representation differs (another
            // table id, written before this): early is safe.
            if c.old != c.new {
                pre.push(write(key, c.new));
            }
            continue;
        }
        if weighed || (gain && lose) {
            let empty = Verdicts::default();
            let mid = c
                .old_says
                .as_ref()
                .unwrap_or(&empty)
                .meet(c.new_says.as_ref().unwrap_or(&empty));
            let mid = (!mid.is_empty()).then_some(mid);
            if mid != c.old_says {
                pre.push(write(key, mid.as_ref().and_then(&mut *narrowed)));
            }
            if c.new_says != mid {
                post.push(write(key, c.new));
            }
        } else if gain {
            pre.push(write(key, c.new));
        } else if lose {
            post.push(write(key, c.new));
        } else {
            let widens = match (&c.old_says, &c.new_says) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(o), Some(n)) => !n.says_less(o),
            };
            if widens {
                pre.push(write(key, c.new));
            } else {
                late.push(write(key, c.new));
            }
        }
    }

    let (mut ep_early, mut ep_mid, mut ep_late) = (Vec::new(), Vec::new(), Vec::new());
    for (at, o, n) in changes.endpoints {
        match (o, n) {
            (Some(_), None) => ep_early.push(Write::EndpointRemove { at }),
            (Some(o), Some(n)) if o.ep_id() == n.ep_id() && flipping.contains(&n.ep_id()) => {
                ep_mid.push(Write::EndpointUpsert { at, endpoint: n })
            }
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
    ops.append(&mut ep_mid);
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
    let nonempty = |s: Option<Verdicts>| s.filter(|s| !s.is_empty());
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
        let old_says = nonempty(o.and_then(|v| old.value_says(&v)));
        let new_says = nonempty(n.and_then(|v| new.value_says(&v)));
        // The same value may name a port set whose bitmap differs between
        // the contents: compare what they mean too. Unchanged rows of a
        // retiring endpoint id are changes too: they may have to go empty
        // while the ipcache switches (see `order`).
        if o != n || old_says != new_says || retiring.contains(&key.ep_id) {
            changes.policy.push(PolicyChange {
                key,
                old: o,
                new: n,
                old_says,
                new_says,
            });
        }
    }

    // Tables usable meanwhile: those of both contents, and transient ones
    // above every id either uses.
    let mut ports = Transient::new(&old.portsets, &new.portsets);
    let mut codes = Transient::new(&old.tiersets, &new.tiersets);
    let mut narrowed = |v: &Verdicts| -> Option<PolicyValue> {
        let mut value = PolicyValue::NOTHING;
        match v.allow.as_single_range() {
            Some((lo, hi)) => (value.port_lo, value.port_hi) = (lo, hi),
            None if v.allow.is_empty() => {}
            None => {
                (value.port_lo, value.port_hi) = (0, 0);
                value.portset = ports.id(&v.allow)?;
            }
        }
        match v.codes.inline_or_table() {
            Some(Ok((lo, hi, c))) => (value.tier_lo, value.tier_hi, value.codes) = (lo, hi, c),
            Some(Err(_)) => value.tierset = codes.id(&v.codes)?,
            None => value.tierset = codes.id(&Verdicts::bottom().codes)?,
        }
        Some(value)
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
    for (id, c) in &new.tiersets {
        if old.tiersets.get(id) != Some(c) {
            ops.push(Write::TiersetUpsert {
                id: *id,
                codes: c.clone(),
            });
        }
    }
    for (set, id) in &ports.transient {
        ops.push(Write::PortsetUpsert {
            id: *id,
            ports: set.clone(),
        });
    }
    for (c, id) in &codes.transient {
        ops.push(Write::TiersetUpsert {
            id: *id,
            codes: c.clone(),
        });
    }
    ops.extend(middle);
    for id in old.portsets.keys() {
        if !new.portsets.contains_key(id) {
            ops.push(Write::PortsetRemove { id: *id });
        }
    }
    for id in old.tiersets.keys() {
        if !new.tiersets.contains_key(id) {
            ops.push(Write::TiersetRemove { id: *id });
        }
    }
    for id in ports.transient.values() {
        ops.push(Write::PortsetRemove { id: *id });
    }
    for id in codes.transient.values() {
        ops.push(Write::TiersetRemove { id: *id });
    }
    ops
}

/// The ids of one table space during a reconcile: the tables both
/// contents hold, and transient ones above every id either uses.
struct Transient<S: Ord + Clone> {
    known: BTreeMap<S, u32>,
    transient: BTreeMap<S, u32>,
    next: u32,
}

impl<S: Ord + Clone> Transient<S> {
    fn new(old: &BTreeMap<u32, S>, new: &BTreeMap<u32, S>) -> Self {
        // New ids first: an old id the new contents redefine holds the new
        // table once those are written (before the middle writes).
        let mut known = BTreeMap::new();
        for (id, set) in new {
            known.entry(set.clone()).or_insert(*id);
        }
        for (id, set) in old {
            if new.get(id).is_none_or(|s| s == set) {
                known.entry(set.clone()).or_insert(*id);
            }
        }
        let next = old
            .keys()
            .chain(new.keys())
            .max()
            .map_or(1, |m| m.saturating_add(1));
        Transient {
            known,
            transient: BTreeMap::new(),
            next,
        }
    }

    /// The id of `set` (`None` when no id is left).
    fn id(&mut self, set: &S) -> Option<u32> {
        if let Some(id) = self.known.get(set).or_else(|| self.transient.get(set)) {
            return Some(*id);
        }
        if self.next == u32::MAX {
            return None;
        }
        self.transient.insert(set.clone(), self.next);
        self.next += 1;
        Some(self.next - 1)
    }
}
