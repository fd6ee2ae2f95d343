//! Adding up per-CPU map values: the one place that turns what each CPU
//! counted into a node total.

use palisade_common::{Counter, event::EventStats};

/// A per-CPU value that adds up across CPUs (wrapping, like the kernel's
/// own counters).
pub trait CpuSum: Copy + Default {
    /// `self + other`, field by field.
    fn plus(self, other: Self) -> Self;
}

impl CpuSum for u64 {
    fn plus(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
}

impl CpuSum for Counter {
    fn plus(self, o: Self) -> Self {
        Counter {
            packets: self.packets.plus(o.packets),
            bytes: self.bytes.plus(o.bytes),
        }
    }
}

impl CpuSum for EventStats {
    fn plus(self, o: Self) -> Self {
        EventStats {
            emitted: self.emitted.plus(o.emitted),
            rate_limited: self.rate_limited.plus(o.rate_limited),
            ring_full: self.ring_full.plus(o.ring_full),
        }
    }
}

/// The sum over CPUs of one map value.
pub fn sum_cpus<T: CpuSum>(values: &[T]) -> T {
    values.iter().fold(T::default(), |a, v| a.plus(*v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_field() {
        let c = sum_cpus(&[
            Counter {
                packets: 1,
                bytes: 60,
            },
            Counter {
                packets: 2,
                bytes: 1500,
            },
        ]);
        assert_eq!((c.packets, c.bytes), (3, 1560));
        assert_eq!(sum_cpus(&[u64::MAX, 2]), 1);
        assert_eq!(sum_cpus::<u64>(&[]), 0);
    }
}
