//! Numeric id allocation with quarantine: the allocator behind pod
//! identities, CIDR region identities, endpoint ids and portset ids.
//!
//! An id freed while a commit is being prepared must not be handed out again
//! in that same commit: the old meaning of the id may still be referenced by
//! entries the diff removes only later. Frees are therefore queued with
//! [`IdAlloc::release_later`] and become reusable after [`IdAlloc::flush`],
//! which the compiler calls once the commit's diff is complete.

use std::collections::BTreeSet;

/// Hands out the lowest free id of a half-open range.
#[derive(Clone, Debug)]
pub(crate) struct IdAlloc {
    next: u32,
    end: u32,
    free: BTreeSet<u32>,
    pending: Vec<u32>,
}

impl IdAlloc {
    /// Ids from `start` (inclusive) to `end` (exclusive).
    pub(crate) fn new(start: u32, end: u32) -> Self {
        IdAlloc {
            next: start,
            end,
            free: BTreeSet::new(),
            pending: Vec::new(),
        }
    }

    /// The lowest reusable id, else the next never-used one; `None` when the
    /// range is exhausted.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
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

    /// Queues `id` to become reusable at the next [`IdAlloc::flush`].
    pub(crate) fn release_later(&mut self, id: u32) {
        self.pending.push(id);
    }

    /// Makes every queued id reusable.
    pub(crate) fn flush(&mut self) {
        self.free.extend(self.pending.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_until_flush() {
        let mut a = IdAlloc::new(5, 8);
        assert_eq!(a.alloc(), Some(5));
        assert_eq!(a.alloc(), Some(6));
        a.release_later(5);
        assert_eq!(a.alloc(), Some(7));
        assert_eq!(a.alloc(), None, "5 is quarantined until flush");
        a.flush();
        assert_eq!(a.alloc(), Some(5));
    }
}
