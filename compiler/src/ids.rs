//! Numeric id allocation: the allocator behind pod identities, CIDR region
//! identities, endpoint ids and portset ids, which are the numbers the
//! datapath's maps hold (one numbering: nobody translates them).
//!
//! Three rules keep a number from meaning two things at once:
//!
//! * **Quarantine.** An id freed while a commit is being prepared must not
//!   be handed out again in that same commit: the old meaning of the id may
//!   still be referenced by entries the diff removes only later. Frees are
//!   queued with [`Numbers::release_later`] and become reusable after
//!   [`Numbers::flush`], which the compiler calls once the commit's diff is
//!   complete.
//! * **Remembered meanings.** After a restart the maps still hold the
//!   previous process's numbers. [`Numbers::remember`] takes a number back
//!   for its recorded meaning: it is handed out only to that meaning
//!   ([`Numbers::number_for`]), so unchanged objects get their old numbers
//!   and the first reconcile compares states that agree on every number.
//! * **Reservations.** Numbers the maps hold whose meaning is not known (a
//!   lost record, or writes that failed part way) are [`Numbers::reserve`]d:
//!   never handed out until [`Numbers::settle`], which the owner calls once
//!   the maps hold only numbers the compiler knows.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Ids further than this beyond the next never-used one are taken without
/// marking the ids before them free (they are then never handed out: a
/// few lost numbers, not a huge free list from one odd value).
const MAX_GAP: u32 = 1 << 16;

/// Hands out the lowest free id of a half-open range.
#[derive(Clone, Debug)]
struct IdAlloc {
    start: u32,
    next: u32,
    end: u32,
    free: BTreeSet<u32>,
    pending: Vec<u32>,
}

impl IdAlloc {
    fn new(start: u32, end: u32) -> Self {
        IdAlloc {
            start,
            next: start,
            end,
            free: BTreeSet::new(),
            pending: Vec::new(),
        }
    }

    /// The lowest reusable id, else the next never-used one; `None` when the
    /// range is exhausted.
    fn alloc(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        if self.next < self.end {
            let id = self.next;
            self.next += 1;
            Some(id)
        } else {
            None
        }
    }

    /// Takes `id` if nobody holds it (free, or never handed out).
    fn take(&mut self, id: u32) -> bool {
        if id < self.start || id >= self.end {
            return false;
        }
        if self.free.remove(&id) {
            return true;
        }
        if id < self.next {
            return false;
        }
        if id - self.next <= MAX_GAP {
            self.free.extend(self.next..id);
        }
        self.next = id + 1;
        true
    }
}

/// The numbers of one space, with the meanings remembered from a previous
/// process (`K`: what a number stands for in this space).
#[derive(Clone, Debug)]
pub(crate) struct Numbers<K> {
    alloc: IdAlloc,
    remembered: HashMap<K, u32>,
    reserved: BTreeSet<u32>,
    /// Counts changes to which number means what (see
    /// [`Numbers::generation`]).
    generation: u64,
}

impl<K: Hash + Eq + Clone> Numbers<K> {
    /// Ids from `start` (inclusive) to `end` (exclusive).
    pub(crate) fn new(start: u32, end: u32) -> Self {
        Numbers {
            alloc: IdAlloc::new(start, end),
            remembered: HashMap::new(),
            reserved: BTreeSet::new(),
            generation: 0,
        }
    }

    /// A number for `meaning`, which has none now: the remembered one if
    /// there is one, else the lowest free; `None` when the space is
    /// exhausted.
    pub(crate) fn number_for(&mut self, meaning: &K) -> Option<u32> {
        self.number_with(|| meaning.clone())
    }

    /// [`Numbers::number_for`] with the meaning built only when some
    /// number is remembered (after a restart, until the first reconcile).
    pub(crate) fn number_with(&mut self, meaning: impl FnOnce() -> K) -> Option<u32> {
        self.generation += 1;
        if !self.remembered.is_empty()
            && let Some(id) = self.remembered.remove(&meaning())
            && self.reserved.remove(&id)
        {
            return Some(id);
        }
        self.alloc.alloc()
    }

    /// Queues `id` to become reusable at the next [`Numbers::flush`].
    pub(crate) fn release_later(&mut self, id: u32) {
        self.generation += 1;
        self.alloc.pending.push(id);
    }

    /// Makes every queued id reusable.
    pub(crate) fn flush(&mut self) {
        let pending = std::mem::take(&mut self.alloc.pending);
        self.alloc.free.extend(pending);
    }

    /// Keeps `id` for `meaning` (a number the maps may hold with that
    /// meaning). Ignored if the id is in use already.
    pub(crate) fn remember(&mut self, meaning: K, id: u32) {
        if self.alloc.take(id) {
            self.generation += 1;
            self.reserved.insert(id);
            self.remembered.insert(meaning, id);
        }
    }

    /// Keeps `id` from being handed out (a number the maps may hold with a
    /// meaning not known here). Ignored if the id is in use already.
    pub(crate) fn reserve(&mut self, id: u32) {
        if self.alloc.take(id) {
            self.reserved.insert(id);
        }
    }

    /// Forgets remembered meanings nobody claimed and frees every
    /// reservation: the maps now hold only numbers in use.
    pub(crate) fn settle(&mut self) {
        self.generation += 1;
        self.remembered.clear();
        let reserved = std::mem::take(&mut self.reserved);
        self.alloc.free.extend(reserved);
    }

    /// A count that moves whenever a number gains or loses a meaning here
    /// (an owner can skip re-reading the numbering while it stands still).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The remembered meanings not claimed yet.
    pub(crate) fn remembered(&self) -> impl Iterator<Item = (&K, u32)> {
        self.remembered.iter().map(|(k, id)| (k, *id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_until_flush() {
        let mut a: Numbers<&str> = Numbers::new(5, 8);
        assert_eq!(a.number_for(&"a"), Some(5));
        assert_eq!(a.number_for(&"b"), Some(6));
        a.release_later(5);
        assert_eq!(a.number_for(&"c"), Some(7));
        assert_eq!(a.number_for(&"d"), None, "5 is quarantined until flush");
        a.flush();
        assert_eq!(a.number_for(&"d"), Some(5));
    }

    #[test]
    fn remembered_numbers_go_to_their_meaning_only() {
        let mut a: Numbers<&str> = Numbers::new(1, 100);
        a.remember("web", 7);
        a.reserve(3);
        let fresh: Vec<u32> = (0..5).map(|_| a.number_for(&"other").unwrap()).collect();
        assert_eq!(fresh, vec![1, 2, 4, 5, 6], "7 and 3 are kept");
        assert_eq!(a.number_for(&"web"), Some(7));
        assert_eq!(a.number_for(&"next"), Some(8));
        a.settle();
        assert_eq!(a.number_for(&"late"), Some(3), "the reservation ends");
    }

    #[test]
    fn numbers_in_use_cannot_be_remembered_or_reserved() {
        let mut a: Numbers<&str> = Numbers::new(1, 100);
        assert_eq!(a.number_for(&"a"), Some(1));
        a.remember("b", 1);
        a.reserve(1);
        assert_eq!(a.number_for(&"b"), Some(2));
        a.settle();
        assert_eq!(a.number_for(&"c"), Some(3), "1 is still a's");
    }
}
