//! The recent drops, counted for `palisade graph --live`: every drop event
//! read from the ring, kept as a count per (source address, destination
//! address, protocol, destination port, reason) and per time slot, for
//! [`KEEP_SECONDS`]. A query sums the slots of the window it asks for.
//!
//! Memory is bounded: at most [`MAX_ENTRIES`] keys, each with at most
//! `KEEP_SECONDS / SLOT_SECONDS` slots. A drop of a new key when every
//! entry is taken (after expired ones are let go) is not kept but counted
//! as overflow, per slot, so an answer can say its counts are partial;
//! so are the events the datapath itself suppressed (rate limit, full
//! ring), which the reader reports as they are counted.
//!
//! Times are whole seconds of a monotonic clock the caller chooses (the
//! reader's: seconds since the hub started), so tests can drive it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Drops are kept this long (the longest window a query gets).
pub const KEEP_SECONDS: u64 = 15 * 60;
/// Counts are kept per slot of this many seconds.
pub const SLOT_SECONDS: u64 = 10;
/// At most this many keys are kept.
pub const MAX_ENTRIES: usize = 4096;
/// The window a query gets when it names none.
pub const DEFAULT_WINDOW_SECONDS: u64 = 5 * 60;

/// What a drop is counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    /// The packet's source.
    pub src: IpAddr,
    /// The packet's destination.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
    /// [`palisade_common::DropReason`] value.
    pub reason: u8,
}

/// Counts per slot, oldest first: `(slot, count)`.
#[derive(Clone, Debug, Default)]
struct Slots(VecDeque<(u64, u64)>);

impl Slots {
    fn add(&mut self, slot: u64, n: u64) {
        match self.0.back_mut() {
            Some((s, c)) if *s == slot => *c += n,
            _ => self.0.push_back((slot, n)),
        }
    }

    /// Lets go of slots before `first`.
    fn expire(&mut self, first: u64) {
        while self.0.front().is_some_and(|(s, _)| *s < first) {
            self.0.pop_front();
        }
    }

    fn sum_since(&self, first: u64) -> u64 {
        self.0
            .iter()
            .rev()
            .take_while(|(s, _)| *s >= first)
            .map(|(_, c)| c)
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The counts of one query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// The window they cover, in seconds (the one asked for, capped at
    /// [`KEEP_SECONDS`]).
    pub window_seconds: u64,
    /// Per key, the drops in the window (keys without any are left out),
    /// sorted by key.
    pub drops: Vec<(DropKey, u64)>,
    /// Drops in the window that were not kept: the aggregate was full.
    pub overflowed: u64,
    /// Events in the window the datapath did not report (rate limit, full
    /// ring).
    pub suppressed: u64,
}

impl Counts {
    /// Why the counts are incomplete, in words (empty: complete).
    pub fn partial(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.overflowed > 0 {
            out.push(format!(
                "{} drop(s) not counted: the agent keeps at most {MAX_ENTRIES} kinds of drops",
                self.overflowed
            ));
        }
        if self.suppressed > 0 {
            out.push(format!(
                "{} drop or audit event(s) not reported by the datapath (rate limit or full ring)",
                self.suppressed
            ));
        }
        out
    }
}

/// The aggregate.
#[derive(Debug)]
pub struct Aggregate {
    cap: usize,
    entries: HashMap<DropKey, Slots>,
    overflowed: Slots,
    suppressed: Slots,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate::with_capacity(MAX_ENTRIES)
    }
}

fn slot(now: u64) -> u64 {
    now / SLOT_SECONDS
}

/// The first slot a window of `window` seconds ending at `now` covers.
fn first_slot(now: u64, window: u64) -> u64 {
    slot(now.saturating_sub(window.saturating_sub(1)))
}

impl Aggregate {
    /// An aggregate of at most `cap` keys.
    pub fn with_capacity(cap: usize) -> Aggregate {
        Aggregate {
            cap,
            entries: HashMap::new(),
            overflowed: Slots::default(),
            suppressed: Slots::default(),
        }
    }

    /// Keys kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn oldest_kept(now: u64) -> u64 {
        first_slot(now, KEEP_SECONDS)
    }

    /// Counts one drop of `key` at `now`.
    pub fn record(&mut self, key: DropKey, now: u64) {
        let s = slot(now);
        if let Some(e) = self.entries.get_mut(&key) {
            e.expire(Self::oldest_kept(now));
            e.add(s, 1);
            return;
        }
        if self.entries.len() >= self.cap {
            self.expire(now);
        }
        if self.entries.len() >= self.cap {
            self.overflowed.add(s, 1);
            return;
        }
        let mut e = Slots::default();
        e.add(s, 1);
        self.entries.insert(key, e);
    }

    /// Counts `n` events the datapath did not report, at `now`.
    pub fn note_suppressed(&mut self, n: u64, now: u64) {
        if n > 0 {
            self.suppressed.expire(Self::oldest_kept(now));
            self.suppressed.add(slot(now), n);
        }
    }

    /// Lets go of everything older than [`KEEP_SECONDS`].
    pub fn expire(&mut self, now: u64) {
        let first = Self::oldest_kept(now);
        self.entries.retain(|_, e| {
            e.expire(first);
            !e.is_empty()
        });
        self.overflowed.expire(first);
        self.suppressed.expire(first);
    }

    /// The drops of the last `window` seconds up to `now` (whole slots:
    /// the window is rounded up to slot boundaries), capped at
    /// [`KEEP_SECONDS`].
    pub fn counts(&self, window: u64, now: u64) -> Counts {
        let window = window.clamp(1, KEEP_SECONDS);
        let first = first_slot(now, window);
        let mut drops: Vec<(DropKey, u64)> = self
            .entries
            .iter()
            .map(|(k, e)| (*k, e.sum_since(first)))
            .filter(|(_, n)| *n > 0)
            .collect();
        drops.sort();
        Counts {
            window_seconds: window,
            drops,
            overflowed: self.overflowed.sum_since(first),
            suppressed: self.suppressed.sum_since(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> DropKey {
        DropKey {
            src: IpAddr::from([192, 0, 2, n]),
            dst: IpAddr::from([198, 51, 100, 1]),
            protocol: 6,
            port: 80,
            reason: 1,
        }
    }

    #[test]
    fn window_counts_only_recent_slots() {
        let mut a = Aggregate::default();
        // Three drops at t=0, two at t=100, one at t=295.
        for t in [0, 0, 0, 100, 100, 295] {
            a.record(key(1), t);
        }
        a.record(key(2), 290);
        let at = |w| a.counts(w, 300).drops;
        assert_eq!(at(300), vec![(key(1), 6), (key(2), 1)]);
        // The last minute: slots 24..=30 (t 240..300).
        assert_eq!(at(60), vec![(key(1), 1), (key(2), 1)]);
        // The last 250 s: slots from t=50, so the t=100 drops count.
        assert_eq!(at(250), vec![(key(1), 3), (key(2), 1)]);
        // Asking for more than is kept gets what is kept.
        let c = a.counts(3600, 300);
        assert_eq!(c.window_seconds, KEEP_SECONDS);
        assert_eq!(c.drops, vec![(key(1), 6), (key(2), 1)]);
        // Later, the old slots fall out of every window and out of memory.
        let later = 100 + KEEP_SECONDS + SLOT_SECONDS;
        assert_eq!(
            a.counts(KEEP_SECONDS, later).drops,
            vec![(key(1), 1), (key(2), 1)]
        );
        a.expire(later + KEEP_SECONDS);
        assert!(a.is_empty());
    }

    #[test]
    fn full_aggregate_counts_overflow_and_frees_expired_entries() {
        let mut a = Aggregate::with_capacity(3);
        for n in 0..3 {
            a.record(key(n), 10);
        }
        // Full: a new kind is not kept, but counted; known kinds still are.
        a.record(key(9), 20);
        a.record(key(9), 20);
        a.record(key(0), 20);
        assert_eq!(a.len(), 3);
        let c = a.counts(300, 30);
        assert_eq!(c.overflowed, 2);
        assert_eq!(c.drops.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert_eq!(c.partial().len(), 1, "{:?}", c.partial());
        assert!(c.partial()[0].starts_with("2 drop(s) not counted"));
        // Once key(1) and key(2) expire, new kinds fit again.
        let later = 20 + KEEP_SECONDS;
        a.record(key(9), later);
        a.record(key(8), later);
        assert_eq!(a.len(), 3, "key(0) (t=20) is still kept");
        let c = a.counts(60, later);
        assert_eq!(c.drops, vec![(key(8), 1), (key(9), 1)]);
        assert_eq!(c.overflowed, 0);
        assert!(c.partial().is_empty());
    }

    #[test]
    fn suppressed_events_are_windowed_too() {
        let mut a = Aggregate::default();
        a.note_suppressed(5, 10);
        a.note_suppressed(0, 200);
        a.note_suppressed(2, 290);
        assert_eq!(a.counts(300, 300).suppressed, 7);
        assert_eq!(a.counts(60, 300).suppressed, 2);
        assert!(a.counts(60, 300).partial()[0].starts_with("2 drop or audit"));
    }
}
