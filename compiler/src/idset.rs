//! A compact sorted set of `u32` ids, used for the (potentially large) sets
//! of identities a compiled rule matches: 4 bytes per member instead of a
//! B-tree node share, with logarithmic lookups.

/// Sorted, duplicate-free vector of ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdSet(Vec<u32>);

impl IdSet {
    /// Adds `id`; returns whether it was absent.
    pub(crate) fn insert(&mut self, id: u32) -> bool {
        match self.0.binary_search(&id) {
            Ok(_) => false,
            Err(pos) => {
                self.0.insert(pos, id);
                true
            }
        }
    }

    /// Removes `id`; returns whether it was present.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        match self.0.binary_search(&id) {
            Ok(pos) => {
                self.0.remove(pos);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether `id` is a member.
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.0.binary_search(&id).is_ok()
    }

    /// Members in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Number of members.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<u32> for IdSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut v: Vec<u32> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        IdSet(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique() {
        let mut s: IdSet = [5, 1, 5, 3].into_iter().collect();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1, 3, 5]);
        assert!(s.insert(2));
        assert!(!s.insert(2));
        assert!(s.remove(1));
        assert!(!s.remove(1));
        assert!(s.contains(3) && !s.contains(1));
        assert_eq!(s.len(), 3);
    }
}
