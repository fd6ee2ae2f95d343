//! The order of writes that takes the maps from one [`DpState`] to
//! another while packets flow, such that no intermediate state allows a
//! flow that neither state allows. Used after a restart, to go from what
//! the pinned maps hold to the first compiled state (in steady state the
//! compiler's own ordered diff is applied instead).
//!
//! Both states must agree on what every number means (the allocation table
//! of `idmap` guarantees it): an endpoint id belongs to one interface, an
//! identity to one peer set. The rules are the compiler's (`diff.rs`),
//! applied to whole states:
//!
//! 1. new port sets; 2. endpoint removals and updates that only clear
//!    isolation bits; 3. policy writes that widen, and every write for
//!    identities that only gain addresses, and the `old ∩ new` narrowing of
//!    identities that gain and lose; 4. ipcache: LPM adds (longest first),
//!    exact upserts, exact removes, LPM removes (shortest first); 5. writes
//!    for identities that lose addresses, final values of gain-and-lose
//!    ones; 6. other endpoint upserts; 7. policy removals and narrowings
//!    for identities with unchanged addresses, and every write to the rows
//!    of endpoint ids that leave all interfaces; 8. unused port sets.
//!    Rows of endpoint ids on no interface before get their final value in
//!    step 3 (nothing consults them until step 6); rows of endpoint ids
//!    that leave every interface are emptied in step 3 for identities that
//!    gain addresses (conservative: those peers are denied on that
//!    interface until it switches to its new endpoint in step 6).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_common::{EndpointInfo, IpcacheValue, PolicyKey, PolicyValue};
use palisade_compiler::PortSet;

use super::{DpOp, DpState};

#[derive(Default)]
struct Classes {
    gain: HashSet<u32>,
    lose: HashSet<u32>,
}

type Change<K, V> = (K, Option<V>, Option<V>);

fn changes<K: Ord + Clone, V: PartialEq + Clone>(
    old: impl Iterator<Item = (K, V)>,
    new: impl Iterator<Item = (K, V)>,
) -> Vec<Change<K, V>> {
    let mut all: BTreeMap<K, (Option<V>, Option<V>)> = BTreeMap::new();
    for (k, v) in old {
        all.entry(k).or_default().0 = Some(v);
    }
    for (k, v) in new {
        all.entry(k).or_default().1 = Some(v);
    }
    all.into_iter()
        .filter(|(_, (o, n))| o != n)
        .map(|(k, (o, n))| (k, o, n))
        .collect()
}

fn classes(
    exact: &[Change<IpAddr, IpcacheValue>],
    lpm: &[Change<IpNet, IpcacheValue>],
    old: &DpState,
) -> Classes {
    let mut c = Classes::default();
    for (_, o, n) in exact {
        match (o, n) {
            (Some(o), Some(n)) => {
                let (oi, ni) = ([o.identity, o.cidr_identity], [n.identity, n.cidr_identity]);
                c.lose.extend(oi.iter().filter(|i| !ni.contains(i)));
                c.gain.extend(ni.iter().filter(|i| !oi.contains(i)));
            }
            (Some(o), None) => {
                c.lose.insert(o.identity);
            }
            (None, Some(n)) => {
                c.gain.insert(n.identity);
            }
            (None, None) => {}
        }
    }
    let removed: HashSet<IpNet> = lpm
        .iter()
        .filter(|(_, o, n)| o.is_some() && n.is_none())
        .map(|(p, _, _)| *p)
        .collect();
    for (net, o, n) in lpm {
        if let Some(o) = o {
            c.lose.insert(o.identity);
        }
        if let Some(n) = n {
            c.gain.insert(n.identity);
        }
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

fn write(key: PolicyKey, value: Option<PolicyValue>) -> DpOp {
    match value {
        Some(value) => DpOp::PolicyUpsert { key, value },
        None => DpOp::PolicyRemove { key },
    }
}

/// Port sets needed only while the transition runs (narrowed values).
struct Transient<'a> {
    by_set: BTreeMap<PortSet, u32>,
    known: &'a BTreeMap<PortSet, u32>,
    next: u32,
}

impl Transient<'_> {
    fn value(&mut self, set: &PortSet) -> PolicyValue {
        if let Some((lo, hi)) = set.as_single_range() {
            return PolicyValue::range(lo, hi);
        }
        let id = match self.known.get(set) {
            Some(id) => *id,
            None => *self.by_set.entry(set.clone()).or_insert_with(|| {
                self.next += 1;
                self.next - 1
            }),
        };
        PolicyValue {
            port_lo: 0,
            port_hi: 0,
            portset: id,
        }
    }
}

/// The ordered writes from `old` to `new`.
pub fn transition(old: &DpState, new: &DpState) -> Vec<DpOp> {
    let exact = changes(old.exact_entries(), new.exact_entries());
    let lpm = changes(old.lpm_entries(), new.lpm_entries());
    let cl = classes(&exact, &lpm, old);

    // Port sets usable during the transition: those of both states.
    let mut known: BTreeMap<PortSet, u32> = BTreeMap::new();
    for (id, set) in old.portsets.iter().chain(new.portsets.iter()) {
        known.entry(set.clone()).or_insert(*id);
    }
    let max_id = old
        .portsets
        .keys()
        .chain(new.portsets.keys())
        .max()
        .copied()
        .unwrap_or(0);
    let mut transient = Transient {
        by_set: BTreeMap::new(),
        known: &known,
        next: max_id.saturating_add(1),
    };

    // Endpoint ids on some interface now and on none afterwards: their
    // rows are consulted until their interface switches, so they change
    // last (no interface consults them then).
    let placed_new: HashSet<u32> = new.endpoints.values().map(|e| e.ep_id).collect();
    let placed_old: HashSet<u32> = old.endpoints.values().map(|e| e.ep_id).collect();
    let retiring: HashSet<u32> = old
        .endpoints
        .values()
        .map(|e| e.ep_id)
        .filter(|id| !placed_new.contains(id))
        .collect();
    let mut retire = Vec::new();

    let (mut pre, mut post, mut late) = (Vec::new(), Vec::new(), Vec::new());
    let keys: BTreeSet<PolicyKey> = old
        .policy
        .keys()
        .chain(new.policy.keys())
        .copied()
        .collect();
    for key in keys {
        let (ov, nv) = (old.policy.get(&key), new.policy.get(&key));
        if retiring.contains(&key.ep_id) {
            // Consulted until its interface switches, which is after the
            // ipcache switch: an identity gaining addresses must not carry
            // the old ports to them, so those rows go empty until then.
            if cl.gain.contains(&key.identity) && ov.is_some() {
                pre.push(write(key, None));
                if nv.is_some() {
                    retire.push(write(key, nv.copied()));
                }
            } else if ov != nv {
                retire.push(write(key, nv.copied()));
            }
            continue;
        }
        if ov == nv && ov.is_some_and(|v| v.portset == 0) {
            continue;
        }
        if !placed_old.contains(&key.ep_id) {
            // No interface consults these rows before the endpoint
            // upserts: they can take their final value first.
            pre.push(write(key, nv.copied()));
            continue;
        }
        let o = ov
            .and_then(|v| old.value_ports(v))
            .filter(|s| !s.is_empty());
        let n = nv
            .and_then(|v| new.value_ports(v))
            .filter(|s| !s.is_empty());
        if o == n {
            // Same ports: only the representation may differ (another
            // portset id); new ids are written first, so early is safe.
            if ov != nv {
                pre.push(write(key, nv.copied()));
            }
            continue;
        }
        let (gain, lose) = (
            cl.gain.contains(&key.identity),
            cl.lose.contains(&key.identity),
        );
        if gain && lose {
            let mid = match (&o, &n) {
                (Some(a), Some(b)) => Some(a.intersection(b)).filter(|s| !s.is_empty()),
                _ => None,
            };
            if mid != o {
                pre.push(write(key, mid.as_ref().map(|m| transient.value(m))));
            }
            if n != mid {
                post.push(write(key, nv.copied()));
            }
        } else if gain {
            pre.push(write(key, nv.copied()));
        } else if lose {
            post.push(write(key, nv.copied()));
        } else {
            let widens = match (&o, &n) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(o), Some(n)) => !n.is_subset(o),
            };
            if widens {
                pre.push(write(key, nv.copied()));
            } else {
                late.push(write(key, nv.copied()));
            }
        }
    }

    let (mut ep_early, mut ep_late) = (Vec::new(), Vec::new());
    for (ifindex, o, n) in changes::<u32, EndpointInfo>(
        old.endpoints.iter().map(|(k, v)| (*k, *v)),
        new.endpoints.iter().map(|(k, v)| (*k, *v)),
    ) {
        match (o, n) {
            (Some(_), None) => ep_early.push(DpOp::EndpointRemove { ifindex }),
            (Some(o), Some(n)) if o.ep_id == n.ep_id && n.flags & !o.flags == 0 => {
                ep_early.push(DpOp::EndpointUpsert { ifindex, info: n })
            }
            (_, Some(n)) => ep_late.push(DpOp::EndpointUpsert { ifindex, info: n }),
            (None, None) => {}
        }
    }

    let mut ops: Vec<DpOp> = Vec::new();
    for (id, set) in &new.portsets {
        if old.portsets.get(id) != Some(set) {
            ops.push(DpOp::PortsetUpsert {
                id: *id,
                ports: set.clone(),
            });
        }
    }
    for (set, id) in &transient.by_set {
        ops.push(DpOp::PortsetUpsert {
            id: *id,
            ports: set.clone(),
        });
    }
    ops.extend(ep_early);
    ops.extend(pre);
    let mut lpm_add: Vec<(IpNet, IpcacheValue)> = lpm
        .iter()
        .filter_map(|(p, _, n)| n.map(|v| (*p, v)))
        .collect();
    lpm_add.sort_by_key(|(p, _)| (std::cmp::Reverse(p.prefix_len()), *p));
    ops.extend(
        lpm_add
            .into_iter()
            .map(|(prefix, value)| DpOp::LpmUpsert { prefix, value }),
    );
    for (addr, _, n) in &exact {
        if let Some(value) = n {
            ops.push(DpOp::ExactUpsert {
                addr: *addr,
                value: *value,
            });
        }
    }
    for (addr, _, n) in &exact {
        if n.is_none() {
            ops.push(DpOp::ExactRemove { addr: *addr });
        }
    }
    let mut lpm_del: Vec<IpNet> = lpm
        .iter()
        .filter(|(_, o, n)| o.is_some() && n.is_none())
        .map(|(p, _, _)| *p)
        .collect();
    lpm_del.sort_by_key(|p| (p.prefix_len(), *p));
    ops.extend(lpm_del.into_iter().map(|prefix| DpOp::LpmRemove { prefix }));
    ops.extend(post);
    ops.extend(ep_late);
    ops.extend(late);
    ops.extend(retire);
    for id in old.portsets.keys() {
        if !new.portsets.contains_key(id) {
            ops.push(DpOp::PortsetRemove { id: *id });
        }
    }
    for id in transient.by_set.values() {
        ops.push(DpOp::PortsetRemove { id: *id });
    }
    ops
}

#[cfg(test)]
mod tests;
