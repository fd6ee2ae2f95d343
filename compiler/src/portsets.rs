//! The registries of the tables policy values refer to: `PORTSETS`
//! bitmaps (one id per distinct multi-range port set) and `TIERSETS`
//! segment tables (one id per distinct multi-segment [`PortCodes`]), each
//! refcounted by the policy entries (and transient entries of a diff) that
//! use it, and [`Values`], which gives a [`Verdicts`] its policy value.
//! Tables that lose their last user stay until the commit's sweep, so
//! their id is never reused within the diff that stops using it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use palisade_common::PolicyValue;

use crate::ids::Numbers;
use crate::ports::PortSet;
use crate::verdicts::{PortCodes, Verdicts};

/// One id space of refcounted tables of `S`.
#[derive(Clone, Debug)]
pub(crate) struct Registry<S: Clone + Eq + Hash + Ord> {
    by_set: HashMap<S, u32>,
    by_id: BTreeMap<u32, (S, u32)>,
    created: BTreeSet<u32>,
    pub(crate) alloc: Numbers<S>,
}

impl<S: Clone + Eq + Hash + Ord> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            by_set: HashMap::new(),
            by_id: BTreeMap::new(),
            created: BTreeSet::new(),
            alloc: Numbers::new(1, u32::MAX),
        }
    }
}

impl<S: Clone + Eq + Hash + Ord> Registry<S> {
    /// A reference to the (possibly new) table of `set`; `None` only if no
    /// id is left.
    fn acquire(&mut self, set: &S) -> Option<u32> {
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
        Some(id)
    }

    /// Drops a reference (no-op for id 0).
    fn release(&mut self, id: u32) {
        if id != 0
            && let Some(e) = self.by_id.get_mut(&id)
        {
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// The table of an id.
    pub(crate) fn get(&self, id: u32) -> Option<&S> {
        self.by_id.get(&id).map(|e| &e.0)
    }

    /// Ids created since the last call, with their tables.
    pub(crate) fn take_created(&mut self) -> Vec<(u32, S)> {
        let created = std::mem::take(&mut self.created);
        created
            .into_iter()
            .filter_map(|id| self.get(id).map(|s| (id, s.clone())))
            .collect()
    }

    /// Removes unused tables; returns their ids (reusable after `flush`).
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

/// Both registries: what policy values refer to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Values {
    pub(crate) portsets: Registry<PortSet>,
    pub(crate) tiersets: Registry<PortCodes>,
}

impl Values {
    /// The policy value of a non-empty [`Verdicts`]: a port range inline or
    /// a bitmap reference, the codes inline or a table reference. `None`
    /// only if no id is left (the entry is then left out: fail closed for
    /// the allows). Codes with more segments than a table holds are stored
    /// as a Deny ahead of every rule on every port (fail closed; the
    /// compiler reports it).
    pub(crate) fn acquire(&mut self, v: &Verdicts) -> Option<PolicyValue> {
        let mut value = PolicyValue::NOTHING;
        match v.allow.as_single_range() {
            Some((lo, hi)) => (value.port_lo, value.port_hi) = (lo, hi),
            None if v.allow.is_empty() => {}
            None => {
                value.port_lo = 0;
                value.port_hi = 0;
                value.portset = self.portsets.acquire(&v.allow)?;
            }
        }
        let codes = match v.codes.inline_or_table() {
            Some(_) => &v.codes,
            None => &Verdicts::bottom().codes,
        };
        match codes.inline_or_table() {
            Some(Ok((lo, hi, c))) => {
                value.tier_lo = lo;
                value.tier_hi = hi;
                value.codes = c;
            }
            _ => match self.tiersets.acquire(codes) {
                Some(id) => value.tierset = id,
                None => {
                    self.portsets.release(value.portset);
                    return None;
                }
            },
        }
        Some(value)
    }

    /// Drops the references a policy value holds.
    pub(crate) fn release(&mut self, value: &PolicyValue) {
        self.portsets.release(value.portset);
        self.tiersets.release(value.tierset);
    }

    /// Makes swept ids reusable.
    pub(crate) fn flush(&mut self) {
        self.portsets.flush();
        self.tiersets.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_common::{TierCodes, tier_code};

    #[test]
    fn dedupe_refcount_sweep() {
        let mut p = Values::default();
        let single = p
            .acquire(&Verdicts::allowing(PortSet::range(80, 90)))
            .unwrap();
        assert_eq!(single, PolicyValue::range(80, 90));
        let two = Verdicts::allowing(PortSet::from_ranges([(80, 80), (443, 443)]));
        let a = p.acquire(&two).unwrap();
        let b = p.acquire(&two).unwrap();
        assert!(a.portset != 0 && a == b);
        assert_eq!(
            p.portsets.take_created(),
            vec![(a.portset, two.allow.clone())]
        );
        p.release(&a);
        assert!(p.portsets.sweep().is_empty());
        p.release(&b);
        assert_eq!(p.portsets.sweep(), vec![a.portset]);
        assert!(p.portsets.get(a.portset).is_none());
    }

    #[test]
    fn codes_inline_or_in_a_table() {
        let mut p = Values::default();
        let deny = TierCodes {
            admin: tier_code::of(3, tier_code::DENY),
            baseline: tier_code::NONE,
        };
        let mut one = Verdicts::default();
        one.codes.raise(80, 80, deny);
        let v = p.acquire(&one).unwrap();
        assert_eq!(
            (v.tier_lo, v.tier_hi, v.codes, v.tierset),
            (80, 80, deny, 0)
        );
        let mut two = one.clone();
        two.codes.raise(443, 443, deny);
        let v = p.acquire(&two).unwrap();
        assert!(v.tierset != 0);
        assert_eq!(p.tiersets.get(v.tierset), Some(&two.codes));
    }
}
