//! What one policy entry says of every port ([`Verdicts`]): the ports
//! NetworkPolicy allows and, per port, the first matching
//! ClusterNetworkPolicy rule of each tier ([`PortCodes`]); the conversion
//! of codes to the datapath's representation; and the order "says less
//! than" with its meet, which `order.rs` uses to change entries that are
//! read together without an intermediate state allowing more than both
//! ends.
//!
//! # The order on codes
//!
//! For a flow, the datapath takes each tier's largest code over the
//! entries it reads (`policy::said`): a code of one entry is weighed
//! against the others' best `m`, and a Pass or no match leaves the verdict
//! to what comes after the tier (`R`: NetworkPolicy or Baseline, allowed
//! or not). Code `x` *says less than* `y` (`x ≤ y`) when, for every `m`
//! and `R`, the flow allowed with `x` in place is allowed with `y` too:
//!
//! * `Deny@p ≤ y` iff `y` accepts, or `y`'s precedence is at most `p`
//!   (no match counts as precedence 0);
//! * `Accept@p ≤ y` and `Pass@p ≤ y` iff `y` is `Accept@q` with `q ≥ p`
//!   (or `y = x`);
//! * no match `≤ y` iff `y` accepts or matches nothing.
//!
//! The verdict is monotone in every entry under this order (and under
//! set inclusion of the allowed ports), so writing each changed entry
//! first to a lower bound of its old and new value and then to its new
//! value never allows what neither end allows. [`meet`] is that lower
//! bound: the smaller of the two when they compare, else a Deny at the
//! earlier of their precedences, which only catches flows one of the two
//! rules decides.

use palisade_common::{TIER_SEGMENTS, TierCodes, TierTable, tier_code};

use crate::ports::PortSet;

/// The codes of every port, as segments: `(first port, codes)` with the
/// first segment at port 0, ascending, no two neighbours equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortCodes(Vec<(u16, TierCodes)>);

impl Default for PortCodes {
    fn default() -> Self {
        PortCodes::none()
    }
}

impl PortCodes {
    /// No rule matches any port.
    pub fn none() -> Self {
        PortCodes(vec![(0, TierCodes::NONE)])
    }

    /// Every port has `codes`.
    pub fn uniform(codes: TierCodes) -> Self {
        PortCodes(vec![(0, codes)])
    }

    /// Whether no rule matches any port.
    pub fn is_none(&self) -> bool {
        self.0.len() == 1 && self.0[0].1 == TierCodes::NONE
    }

    /// The segments, ascending.
    pub fn segments(&self) -> &[(u16, TierCodes)] {
        &self.0
    }

    /// The segments as `(first, last, codes)`.
    pub fn ranges(&self) -> impl Iterator<Item = (u16, u16, TierCodes)> + '_ {
        self.0.iter().enumerate().map(|(i, &(lo, c))| {
            let hi = self.0.get(i + 1).map_or(u16::MAX, |&(next, _)| next - 1);
            (lo, hi, c)
        })
    }

    /// The codes of `port`.
    pub fn get(&self, port: u16) -> TierCodes {
        let i = self.0.partition_point(|&(lo, _)| lo <= port);
        self.0[i.saturating_sub(1)].1
    }

    /// Builds the canonical form of possibly unmerged segments.
    fn from_segments(segs: impl IntoIterator<Item = (u16, TierCodes)>) -> Self {
        let mut out: Vec<(u16, TierCodes)> = Vec::new();
        for (lo, c) in segs {
            match out.last_mut() {
                Some(last) if last.0 == lo => last.1 = c,
                _ => out.push((lo, c)),
            }
        }
        out.dedup_by(|later, earlier| later.1 == earlier.1);
        if out.first().is_none_or(|s| s.0 != 0) {
            out.insert(0, (0, TierCodes::NONE));
            out.dedup_by(|later, earlier| later.1 == earlier.1);
        }
        PortCodes(out)
    }

    /// The function of a list of `(first port, codes)` segments (as
    /// recorded in a numbering).
    pub fn from_segment_list(segs: impl IntoIterator<Item = (u16, TierCodes)>) -> Self {
        let mut segs: Vec<(u16, TierCodes)> = segs.into_iter().collect();
        segs.sort_by_key(|s| s.0);
        PortCodes::from_segments(segs)
    }

    /// Combines two functions port by port.
    fn zip(&self, other: &PortCodes, f: impl Fn(TierCodes, TierCodes) -> TierCodes) -> PortCodes {
        let mut starts: Vec<u16> = self.0.iter().chain(other.0.iter()).map(|s| s.0).collect();
        starts.sort_unstable();
        starts.dedup();
        PortCodes::from_segments(
            starts
                .into_iter()
                .map(|p| (p, f(self.get(p), other.get(p)))),
        )
    }

    /// Raises the codes of ports `lo..=hi` to at least `codes`, tier by
    /// tier (a rule joins the ones already matching: the earliest wins).
    pub fn raise(&mut self, lo: u16, hi: u16, codes: TierCodes) {
        if lo > hi {
            return;
        }
        let mut add = vec![(0, TierCodes::NONE), (lo, codes)];
        if hi < u16::MAX {
            add.push((hi + 1, TierCodes::NONE));
        }
        *self = self.zip(&PortCodes::from_segments(add), |a, b| TierCodes {
            admin: a.admin.max(b.admin),
            baseline: a.baseline.max(b.baseline),
        });
    }

    /// Raises every port to at least the codes `other` gives it.
    pub fn raise_all(&mut self, other: &PortCodes) {
        *self = self.zip(other, |a, b| TierCodes {
            admin: a.admin.max(b.admin),
            baseline: a.baseline.max(b.baseline),
        });
    }

    /// Whether, port by port and tier by tier, `self` says less than
    /// `other` (see the module documentation).
    pub fn says_less(&self, other: &PortCodes) -> bool {
        let mut starts: Vec<u16> = self.0.iter().chain(other.0.iter()).map(|s| s.0).collect();
        starts.sort_unstable();
        starts.dedup();
        starts.into_iter().all(|p| {
            let (a, b) = (self.get(p), other.get(p));
            code_le(a.admin, b.admin) && code_le(a.baseline, b.baseline)
        })
    }

    /// A lower bound of both, port by port (see [`meet`]).
    pub fn meet(&self, other: &PortCodes) -> PortCodes {
        self.zip(other, |a, b| TierCodes {
            admin: meet(a.admin, b.admin),
            baseline: meet(a.baseline, b.baseline),
        })
    }

    /// The datapath's representation: `Ok((lo, hi, codes))` when every
    /// port outside `lo..=hi` has no code (inline in the policy value;
    /// `lo > hi` for none), else `Err(table)` with at most
    /// [`TIER_SEGMENTS`] segments. `None` if there are more segments than a
    /// table holds.
    pub fn inline_or_table(&self) -> Option<Result<(u16, u16, TierCodes), Box<TierTable>>> {
        let ranges: Vec<(u16, u16, TierCodes)> = self.ranges().collect();
        let coded: Vec<&(u16, u16, TierCodes)> =
            ranges.iter().filter(|r| r.2 != TierCodes::NONE).collect();
        match coded.as_slice() {
            [] => return Some(Ok((1, 0, TierCodes::NONE))),
            [(lo, hi, c)] => return Some(Ok((*lo, *hi, *c))),
            _ => {}
        }
        self.to_table().map(Err)
    }

    /// The segment table of the function (`None` with more segments than
    /// a table holds).
    pub fn to_table(&self) -> Option<Box<TierTable>> {
        if self.0.len() > TIER_SEGMENTS {
            return None;
        }
        let last = self.0[self.0.len() - 1].1;
        let mut t = Box::new(TierTable {
            starts: [u16::MAX; TIER_SEGMENTS],
            codes: [last; TIER_SEGMENTS],
        });
        for (i, &(lo, c)) in self.0.iter().enumerate() {
            t.starts[i] = lo;
            t.codes[i] = c;
        }
        Some(t)
    }

    /// The function a table holds.
    pub fn from_table(t: &TierTable) -> PortCodes {
        PortCodes::from_segments(t.starts.iter().copied().zip(t.codes.iter().copied()))
    }

    /// The function an inline range holds.
    pub fn from_inline(lo: u16, hi: u16, codes: TierCodes) -> PortCodes {
        let mut c = PortCodes::none();
        if lo <= hi {
            // `raise` from nothing sets exactly these codes.
            c.raise(lo, hi, codes);
        }
        c
    }
}

/// Whether code `x` says less than code `y` in one tier (see the module
/// documentation).
pub(crate) fn code_le(x: u32, y: u32) -> bool {
    if x == y {
        return true;
    }
    let accepts = |c: u32| tier_code::action(c) == tier_code::ACCEPT;
    let prec = |c: u32| if c == tier_code::NONE { 0 } else { c >> 2 };
    match tier_code::action(x) {
        tier_code::DENY => accepts(y) || prec(y) <= prec(x),
        tier_code::ACCEPT | tier_code::PASS => accepts(y) && prec(y) >= prec(x),
        _ => accepts(y),
    }
}

/// A code that says less than both `x` and `y`, and no less than needed:
/// the smaller when they compare, else a Deny at the earlier precedence.
pub(crate) fn meet(x: u32, y: u32) -> u32 {
    if code_le(x, y) {
        x
    } else if code_le(y, x) {
        y
    } else {
        (x >> 2).max(y >> 2) << 2 | tier_code::DENY
    }
}

/// What one policy entry says of every port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verdicts {
    /// The ports NetworkPolicy allows.
    pub allow: PortSet,
    /// The tiers' codes.
    pub codes: PortCodes,
}

impl Verdicts {
    /// NetworkPolicy allows only.
    pub fn allowing(allow: PortSet) -> Self {
        Verdicts {
            allow,
            codes: PortCodes::none(),
        }
    }

    /// Whether the entry says nothing (no allow, no code): no entry.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.codes.is_none()
    }

    /// Whether the entry says less than `other` whatever the other entries
    /// of the flow say.
    pub fn says_less(&self, other: &Verdicts) -> bool {
        self.allow.is_subset(&other.allow) && self.codes.says_less(&other.codes)
    }

    /// A lower bound of both (see the module documentation).
    pub fn meet(&self, other: &Verdicts) -> Verdicts {
        Verdicts {
            allow: self.allow.intersection(&other.allow),
            codes: self.codes.meet(&other.codes),
        }
    }

    /// Denies every port ahead of every rule: below every value.
    pub fn bottom() -> Verdicts {
        Verdicts {
            allow: PortSet::new(),
            codes: PortCodes::uniform(TierCodes {
                admin: tier_code::BOTTOM,
                baseline: tier_code::BOTTOM,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_common::tier_code::{ACCEPT, DENY, NONE, PASS, of};
    use proptest::prelude::*;

    /// The tier's verdict for the largest of `codes` when what follows the
    /// tier says `rest`.
    fn outcome(codes: &[u32], rest: bool) -> bool {
        let best = codes.iter().copied().max().unwrap_or(NONE);
        match tier_code::action(best) {
            ACCEPT => true,
            DENY => false,
            _ => rest,
        }
    }

    fn any_code() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(NONE),
            (1u32..6, prop_oneof![Just(ACCEPT), Just(DENY), Just(PASS)])
                .prop_map(|(r, a)| of(r, a)),
        ]
    }

    /// The action of each rank 1..=5 in one test case: a rank is one rule,
    /// so every code of that rank has its action, except the Deny that
    /// [`meet`] writes at any rank.
    fn rule_actions() -> impl Strategy<Value = [u32; 5]> {
        [0u32..3, 0..3, 0..3, 0..3, 0..3].prop_map(|a| a.map(|i| [ACCEPT, DENY, PASS][i as usize]))
    }

    /// A code drawn as (rank, whether it is a meet's Deny): rank 0 is
    /// [`NONE`].
    fn code_pick() -> impl Strategy<Value = (u32, bool)> {
        (0u32..6, prop::bool::weighted(0.2))
    }

    fn code(actions: &[u32; 5], (rank, meets_deny): (u32, bool)) -> u32 {
        match rank {
            0 => NONE,
            r if meets_deny => of(r, DENY),
            r => of(r, actions[r as usize - 1]),
        }
    }

    proptest! {
        /// `code_le` is sound: whatever the other entries and what follows
        /// the tier, the smaller code never allows more.
        #[test]
        fn le_is_sound(acts in rule_actions(), x in code_pick(), y in code_pick(), m in code_pick(), rest: bool) {
            let (x, y, m) = (code(&acts, x), code(&acts, y), code(&acts, m));
            if code_le(x, y) {
                prop_assert!(outcome(&[x, m], rest) <= outcome(&[y, m], rest));
            }
        }

        /// The meet says less than both ends, in every context.
        #[test]
        fn meet_is_a_lower_bound(acts in rule_actions(), x in code_pick(), y in code_pick(), m in code_pick(), rest: bool) {
            let (x, y, m) = (code(&acts, x), code(&acts, y), code(&acts, m));
            let z = meet(x, y);
            prop_assert!(code_le(z, x) && code_le(z, y));
            prop_assert!(outcome(&[z, m], rest) <= outcome(&[x, m], rest));
            prop_assert!(outcome(&[z, m], rest) <= outcome(&[y, m], rest));
        }

        /// Mixing entries at old, meet and new values never allows what
        /// neither all-old nor all-new allows when each entry only moves
        /// old → meet → new.
        #[test]
        fn mixtures_of_meets_are_safe(
            acts_old in rule_actions(),
            acts_new in rule_actions(),
            olds in prop::collection::vec(0u32..6, 3),
            news in prop::collection::vec(0u32..6, 3),
            stage in prop::collection::vec(0u8..3, 3),
            rest_old: bool, rest_new: bool,
        ) {
            // Before any entry reaches its new value, or after all left
            // their old one.
            // Each state's codes are its rules' (no meets left).
            let olds: Vec<u32> = olds.into_iter().map(|r| code(&acts_old, (r, false))).collect();
            let news: Vec<u32> = news.into_iter().map(|r| code(&acts_new, (r, false))).collect();
            let pre = stage.iter().all(|s| *s < 2);
            let post = stage.iter().all(|s| *s > 0);
            let mix: Vec<u32> = (0..3).map(|i| match stage[i] {
                0 => olds[i],
                1 => meet(olds[i], news[i]),
                _ => news[i],
            }).collect();
            if pre {
                prop_assert!(outcome(&mix, rest_old) <= outcome(&olds, rest_old));
            }
            if post {
                prop_assert!(outcome(&mix, rest_new) <= outcome(&news, rest_new));
            }
        }

        /// Tables and inline values hold exactly the function.
        #[test]
        fn representations_round_trip(
            rules in prop::collection::vec((0u16..400, 0u16..50, any_code(), any_code()), 0..8),
        ) {
            let mut c = PortCodes::none();
            for (lo, len, a, b) in &rules {
                c.raise(*lo, lo + len, TierCodes { admin: *a, baseline: *b });
            }
            match c.inline_or_table().unwrap() {
                Ok((lo, hi, codes)) => prop_assert_eq!(PortCodes::from_inline(lo, hi, codes), c.clone()),
                Err(t) => {
                    prop_assert_eq!(PortCodes::from_table(&t), c.clone());
                    for p in 0u16..500 {
                        prop_assert_eq!(t.lookup(p), c.get(p));
                    }
                    prop_assert_eq!(t.lookup(u16::MAX), c.get(u16::MAX));
                }
            }
            for p in 0u16..500 {
                let want = rules.iter().filter(|(lo, len, _, _)| p >= *lo && p <= lo + len)
                    .fold(TierCodes::NONE, |acc, (_, _, a, b)| TierCodes {
                        admin: acc.admin.max(*a), baseline: acc.baseline.max(*b) });
                prop_assert_eq!(c.get(p), want);
            }
        }
    }
}
