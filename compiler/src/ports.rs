//! Port sets: the normalised union of inclusive port ranges a policy entry
//! allows, the protocol classes of the `POLICY` key, and the conversion of a
//! set to the datapath's representation (an inline range or a bitmap).

use palisade_common::{PORT_BITMAP_WORDS, PortBitmap, proto};

/// The protocol classes of [`palisade_common::PolicyKey::proto`], in the
/// order used for per-class arrays.
pub(crate) const CLASSES: [u8; 4] = [proto::TCP, proto::UDP, proto::SCTP, proto::OTHER];

/// Index of a protocol class in [`CLASSES`].
pub(crate) const fn class_index(class: u8) -> usize {
    match class {
        proto::TCP => 0,
        proto::UDP => 1,
        proto::SCTP => 2,
        _ => 3,
    }
}

/// A set of ports, kept as sorted, disjoint, non-adjacent inclusive ranges,
/// so equal sets have equal representations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    /// No port.
    pub const fn new() -> Self {
        PortSet(Vec::new())
    }

    /// Every port, `0..=65535`.
    pub fn all() -> Self {
        PortSet(vec![(0, u16::MAX)])
    }

    /// The inclusive range `lo..=hi` (empty if `lo > hi`).
    pub fn range(lo: u16, hi: u16) -> Self {
        let mut s = PortSet::new();
        s.insert(lo, hi);
        s
    }

    /// Builds a set from arbitrary inclusive ranges.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u16, u16)>) -> Self {
        let mut s = PortSet::new();
        for (lo, hi) in ranges {
            s.insert(lo, hi);
        }
        s
    }

    /// Adds the inclusive range `lo..=hi` (ignored if `lo > hi`).
    pub fn insert(&mut self, lo: u16, hi: u16) {
        if lo > hi {
            return;
        }
        let (mut lo, mut hi) = (lo, hi);
        // First range that could touch [lo, hi]: its end + 1 >= lo.
        let start = self.0.partition_point(|&(_, h)| (h as u32) + 1 < lo as u32);
        let mut end = start;
        while end < self.0.len() && (self.0[end].0 as u32) <= hi as u32 + 1 {
            lo = lo.min(self.0[end].0);
            hi = hi.max(self.0[end].1);
            end += 1;
        }
        self.0.splice(start..end, std::iter::once((lo, hi)));
    }

    /// Adds every port of `other`.
    pub fn union_with(&mut self, other: &PortSet) {
        for &(lo, hi) in &other.0 {
            self.insert(lo, hi);
        }
    }

    /// The ports in both sets.
    pub fn intersection(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a_lo, a_hi) = self.0[i];
            let (b_lo, b_hi) = other.0[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        PortSet(out)
    }

    /// Whether every port of `self` is in `other`.
    pub fn is_subset(&self, other: &PortSet) -> bool {
        self.intersection(other) == *self
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < port);
        i < self.0.len() && self.0[i].0 <= port
    }

    /// Whether the set has no port.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The normalised ranges, ascending.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }

    /// The set's only range, if it is one contiguous range.
    pub fn as_single_range(&self) -> Option<(u16, u16)> {
        match self.0.as_slice() {
            [r] => Some(*r),
            _ => None,
        }
    }

    /// The `PORTSETS` bitmap of the set.
    pub fn to_bitmap(&self) -> Box<PortBitmap> {
        let mut b = Box::new(PortBitmap {
            words: [0; PORT_BITMAP_WORDS],
        });
        for &(lo, hi) in &self.0 {
            b.insert_range(lo, hi);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_adjacent_and_overlapping() {
        let s = PortSet::from_ranges([(80, 80), (81, 81), (90, 100), (95, 120), (10, 5)]);
        assert_eq!(s.ranges(), &[(80, 81), (90, 120)]);
        assert!(s.contains(81) && !s.contains(82) && s.contains(120) && !s.contains(121));
        assert_eq!(PortSet::from_ranges([(0, 65535), (7, 9)]), PortSet::all());
        assert_eq!(
            PortSet::from_ranges([(65535, 65535), (0, 65534)]),
            PortSet::all()
        );
    }

    #[test]
    fn bitmap_matches_ranges() {
        let s = PortSet::from_ranges([(0, 0), (63, 64), (65535, 65535)]);
        let b = s.to_bitmap();
        for p in [0u16, 63, 64, 65535] {
            assert!(b.contains(p), "{p}");
        }
        for p in [1u16, 62, 65, 65534] {
            assert!(!b.contains(p), "{p}");
        }
    }

    proptest! {
        #[test]
        fn set_algebra_matches_naive(a in prop::collection::vec((0u16..200, 0u16..20), 0..6),
                                     b in prop::collection::vec((0u16..200, 0u16..20), 0..6)) {
            let to_set = |v: &[(u16, u16)]| PortSet::from_ranges(v.iter().map(|&(lo, len)| (lo, lo + len)));
            let naive = |v: &[(u16, u16)], p: u16| v.iter().any(|&(lo, len)| p >= lo && p <= lo + len);
            let (sa, sb) = (to_set(&a), to_set(&b));
            let mut u = sa.clone();
            u.union_with(&sb);
            let i = sa.intersection(&sb);
            for p in 0u16..230 {
                prop_assert_eq!(sa.contains(p), naive(&a, p));
                prop_assert_eq!(u.contains(p), naive(&a, p) || naive(&b, p));
                prop_assert_eq!(i.contains(p), naive(&a, p) && naive(&b, p));
            }
            prop_assert_eq!(sa.is_subset(&u), true);
            prop_assert_eq!(i.is_subset(&sa), true);
            // normalised: no two ranges touch
            for w in u.ranges().windows(2) {
                prop_assert!((w[0].1 as u32) + 1 < w[1].0 as u32);
            }
        }
    }
}
