//! Verifier state barriers.
//!
//! The verifier walks every path through a program and tracks the values it
//! can know. After parsing, the packet's family, protocol, fragment
//! position, flags and offsets are often constants that differ from one
//! parse path to the next (IPv4 or IPv6, each extension header, each
//! transport protocol); the same holds for the drop or forward reason that
//! counting and reporting use as an index. Paths whose states differ in a
//! value the verifier must keep precise are not merged, so the code after
//! such a point is verified once per path that reaches it. Passing a value
//! through per-CPU memory the verifier cannot see into turns it into an
//! unknown number, and the paths meet in one state. Measured on the
//! conntrack change that ordered the key's ends: without these barriers
//! the programs went over the kernel's limit of a million processed
//! instructions; with them they took about 0.54 and 0.65 million (figures
//! at present, source verification and the half-open rule included, in
//! `tests/tests/verifier_budget.rs`' output and the README).
//!
//! The cost is a store and a load of a hot per-CPU slot on the full path
//! only. TC programs do not nest on one CPU (they run with bottom halves
//! disabled), so a slot is never overwritten while a program uses it.
//!
//! Nothing after the packet barrier may read the packet at an offset taken
//! from the parse result (the verifier no longer knows how it was bounded):
//! whatever needs that (the packet an ICMP error quotes) is parsed before.

use crate::{OPAQUE_SCRATCH, PACKET_SCRATCH, packet::Packet};

/// What parsing learnt about an IP packet.
#[derive(Clone, Copy)]
pub struct Parsed {
    /// The packet.
    pub pkt: Packet,
    /// For an ICMP error, the packet it quotes (valid if `has_inner`).
    pub inner: Packet,
    /// 1 if `inner` is set.
    pub has_inner: u8,
}

/// The parse result, kept in this CPU's scratch slot and read from there
/// from now on (so it costs no stack either), as far as the verifier knows
/// with no field known. `None` only if the slot is missing, which cannot
/// happen (index 0 of a one-entry array); callers fail closed.
#[inline(always)]
pub fn forget(pkt: &Packet, inner: Option<Packet>) -> Option<&'static Parsed> {
    let slot = PACKET_SCRATCH.get_ptr_mut(0)?;
    unsafe {
        (*slot).pkt = *pkt;
        match inner {
            Some(i) => {
                (*slot).inner = i;
                (*slot).has_inner = 1;
            }
            None => (*slot).has_inner = 0,
        }
    }
    // The compiler must assume the slot changed behind its back, so every
    // later read is a load from the map (which the verifier cannot see
    // through) rather than the value it stored.
    let slot = core::hint::black_box(slot);
    Some(unsafe { &*slot })
}

impl Parsed {
    /// The packet an ICMP error quotes, if it is one.
    #[inline(always)]
    pub fn inner(&self) -> Option<&Packet> {
        if self.has_inner != 0 {
            Some(&self.inner)
        } else {
            None
        }
    }
}

/// `v`, as far as the verifier knows, any number.
#[inline(always)]
pub fn opaque(v: u8) -> u8 {
    opaque64(v as u64) as u8
}

/// [`opaque`] for a wider value.
#[inline(always)]
pub fn opaque64(v: u64) -> u64 {
    match OPAQUE_SCRATCH.get_ptr_mut(0) {
        Some(slot) => unsafe {
            core::ptr::write_volatile(slot, v);
            core::ptr::read_volatile(slot)
        },
        None => v,
    }
}
