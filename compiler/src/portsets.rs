//! The `PORTSETS` registry: one id per distinct multi-range port set,
//! refcounted by the policy entries (and transient entries of a diff) that
//! use it. Sets that lose their last user stay until the commit's sweep, so
//! their id is never reused within the diff that stops using it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_common::PolicyValue;

use crate::ids::Numbers;
use crate::ports::PortSet;

/// Registry of port sets stored as bitmaps.
#[derive(Clone, Debug)]
pub(crate) struct Portsets {
    by_set: HashMap<PortSet, u32>,
    by_id: BTreeMap<u32, (PortSet, u32)>,
    created: BTreeSet<u32>,
    pub(crate) alloc: Numbers<PortSet>,
}

impl Default for Portsets {
    fn default() -> Self {
        Portsets {
            by_set: HashMap::new(),
            by_id: BTreeMap::new(),
            created: BTreeSet::new(),
            alloc: Numbers::new(1, u32::MAX),
        }
    }
}

impl Portsets {
    /// The policy value for a non-empty set: inline if it is one range,
    /// otherwise a reference to a (possibly new) bitmap. `None` only if no
    /// portset id is left (the entry is then left out: fail closed).
    pub(crate) fn acquire(&mut self, set: &PortSet) -> Option<PolicyValue> {
        if let Some((lo, hi)) = set.as_single_range() {
            return Some(PolicyValue::range(lo, hi));
        }
        let id = match self.by_set.get(set) {
            Some(&id) => id,
            None => {
                let id = self.alloc.number_for(set)?;
                self.by_set.insert(set.clone(), id);
                self.by_id.insert(id, (set.clone(), 0));
                self.created.insert(id);
                id
            }
        };
        if let Some(e) = self.by_id.get_mut(&id) {
            e.1 += 1;
        }
        Some(PolicyValue {
            port_lo: 0,
            port_hi: 0,
            portset: id,
        })
    }

    /// Drops the reference a policy value holds (no-op for inline values).
    pub(crate) fn release(&mut self, value: &PolicyValue) {
        if value.portset != 0
            && let Some(e) = self.by_id.get_mut(&value.portset)
        {
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// The set of a portset id.
    pub(crate) fn get(&self, id: u32) -> Option<&PortSet> {
        self.by_id.get(&id).map(|e| &e.0)
    }

    /// Ids created since the last call, with their sets.
    pub(crate) fn take_created(&mut self) -> Vec<(u32, PortSet)> {
        let created = std::mem::take(&mut self.created);
        created
            .into_iter()
            .filter_map(|id| self.get(id).map(|s| (id, s.clone())))
            .collect()
    }

    /// Removes unused sets; returns their ids (reusable after `flush`).
    pub(crate) fn sweep(&mut self) -> Vec<u32> {
        let dead: Vec<u32> = self
            .by_id
            .iter()
            .filter(|(_, e)| e.1 == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            if let Some((set, _)) = self.by_id.remove(id) {
                self.by_set.remove(&set);
            }
            self.alloc.release_later(*id);
        }
        dead
    }

    /// Makes swept ids reusable.
    pub(crate) fn flush(&mut self) {
        self.alloc.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_refcount_sweep() {
        let mut p = Portsets::default();
        let single = p.acquire(&PortSet::range(80, 90)).unwrap();
        assert_eq!(single, PolicyValue::range(80, 90));
        let two = PortSet::from_ranges([(80, 80), (443, 443)]);
        let a = p.acquire(&two).unwrap();
        let b = p.acquire(&two).unwrap();
        assert!(a.portset != 0 && a == b);
        assert_eq!(p.take_created(), vec![(a.portset, two.clone())]);
        p.release(&a);
        assert!(p.sweep().is_empty());
        p.release(&b);
        assert_eq!(p.sweep(), vec![a.portset]);
        assert!(p.get(a.portset).is_none());
    }
}
